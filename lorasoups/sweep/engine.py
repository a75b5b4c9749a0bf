"""The merge sweep: every grid point merged in place, its validation split decoded with the fast
generator, scored on CPU workers while the next point decodes, one JSON line per point.

    merger = InPlaceMerger(base_model.to("cuda"), [skill1_dir, skill2_dir])
    rows = run_sweep(merger, tok, "ties", prompts, golds, task="gsm_hard",
                     out=sweep_path("full", "math_code", "ties", seed=0))
    best = best_point(rows)            # -> {"density": ..., "alphas": [...], "metric": ...}
    build("ties", fresh_base, adapters, **best_params(best, "ties", seed=0))

The results file (``results/<profile>/sweep/<setting>/<method>--s<seed>.jsonl``) starts with a
header line (what was swept, on which adapters and prompts); a rerun with the same header skips
every point already in the file, so an interrupted sweep continues where it stopped. A file made
with a different header is an error, never overwritten.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lorasoups import paths
from lorasoups.config import did_you_mean, to_dict
from lorasoups.evaluation.fastgen import FastGenConfig, FastGenerator
from lorasoups.merging.registry import METHODS
from lorasoups.results import fingerprint
from lorasoups.sweep.grid import GridConfig, equivalence_key, point_key, points
from lorasoups.sweep.inplace import InPlaceMerger
from lorasoups.task_kinds import bound_scorer, get_task

Scorer = Callable[[Sequence[str], Sequence[Any]], tuple[dict[str, Any], list[dict[str, Any]]]]

FORMAT = "lorasoups-sweep/1"


@dataclass
class SweepConfig:
    """``sweep:`` section: the grid and how points are evaluated."""

    grid: GridConfig = field(default_factory=GridConfig)
    """The λ and α axes (default: the paper's [0,1] x [1,2] x [1,2], step 0.2)."""
    metric: str | None = None
    """Validation metric to maximise (default per task: exec_accuracy, f1, accuracy)."""
    seed: int = 0
    """DARE's mask seed (the same for every point, as one ``build(..., seed=seed)`` would use)."""
    majority_sign_method: str = "total"
    """TIES sign election (peft): ``total`` or ``frequency``."""
    generation: FastGenConfig = field(default_factory=FastGenConfig)
    """Greedy decoding of the validation prompts."""
    score_workers: int | None = None
    """Sandbox processes for program execution (default: one per CPU core)."""
    methods: list[str] = field(default_factory=lambda: ["ties", "dare"])
    """Static merges whose hyper-parameters stage 05 sweeps (the paper: TIES and DARE); [] keeps
    ``experiment.merge_alphas`` / ``merge_density`` for every merge."""
    settings: list[str] | None = None
    """Settings to sweep (None: every setting of the run)."""
    validation_size: int | None = None
    """Validation prompts per target (None: the whole validation split)."""
    validation_source: Literal["auto", "same", "generated"] = "auto"
    """Where the validation prompts come from. ``same``: the run's data source (an error when it
    has no validation split); ``auto``: that, else the generated suite of the same target (the
    mirrored paper targets are test sets only, and tuning on them would leak the test);
    ``generated``: always the generated suite. Recorded in each sweep's result."""


def sweep_path(profile: str, setting: str, method: str, seed: int) -> Path:
    """``results/<profile>/sweep/<setting>/<method>--s<seed>.jsonl`` (results/README.md)."""
    return paths.results_dir(profile) / "sweep" / setting / f"{method}--s{seed}.jsonl"


def read_sweep(path: str | Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(header, point rows) of a sweep file. A last line cut off by an interruption is dropped
    with a warning (the point is recomputed); a broken line elsewhere is an error naming it."""
    p = Path(path)
    if not p.is_file():
        return None, []
    text = p.read_text()
    lines = text.split("\n")
    header, rows = None, []
    complete = text.endswith("\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if n == len(lines) and not complete:
                warnings.warn(f"{p}: line {n} was cut off (interrupted write); that point is redone",
                              RuntimeWarning, stacklevel=2)
                continue
            raise ValueError(f"{p}: line {n} is not valid JSON ({exc.msg})") from exc
        if not isinstance(rec, dict) or rec.get("kind") not in ("header", "point"):
            raise ValueError(f"{p}: line {n} has no field kind = 'header' or 'point'")
        if rec["kind"] == "header":
            if header is not None or rows:
                raise ValueError(f"{p}: line {n}: a header line after the first line")
            header = rec
        else:
            rows.append(rec)
    if rows and header is None:
        raise ValueError(f"{p}: point lines without a header line")
    return header, rows


def _rewrite_complete(path: Path) -> None:
    """Drop an unterminated last line so appending starts on a fresh line."""
    text = path.read_text()
    if text and not text.endswith("\n"):
        path.write_text(text[: text.rfind("\n") + 1])


def best_point(rows: Sequence[dict[str, Any]], metric: str | None = None) -> dict[str, Any]:
    """The point with the highest validation metric. Ties go to the earliest point in grid order
    (lowest ``index``: smaller λ, then smaller α_1, α_2, ...), so reruns pick the same point."""
    if not rows:
        raise ValueError("best_point: no sweep rows")
    metric = metric or rows[0].get("metric_name")
    scored = []
    for r in rows:
        if metric not in r["metrics"]:
            raise ValueError(f"best_point: point {r['point']} has no metric '{metric}'"
                             f"{did_you_mean(metric, r['metrics'])}")
        v = float(r["metrics"][metric])
        scored.append((-(v if math.isfinite(v) else -math.inf), r["index"], r))
    _, _, best = min(scored, key=lambda t: (t[0], t[1]))
    return {"point": best["point"], "density": best["density"], "alphas": best["alphas"],
            "metric": metric, "value": best["metrics"][metric], "index": best["index"]}


def best_params(best: dict[str, Any], method: str, seed: int = 0) -> dict[str, Any]:
    """``lorasoups.merging.build`` keyword arguments of a best point (what ``stages.merge`` takes
    as an override). A density-0 winner is the zero adapter, which build() cannot express."""
    params: dict[str, Any] = {"alphas": list(best["alphas"])}
    if best["density"] is not None:
        if best["density"] == 0:
            raise ValueError(f"best point of '{method}' has density 0: the base model without LoRA wins")
        params["density"] = best["density"]
    if METHODS[method].seeded:
        params["seed"] = seed
    return params


def run_sweep(
    merger: InPlaceMerger,
    tokenizer,
    method: str,
    prompts: Sequence[str],
    golds: Sequence[Any],
    *,
    task: str = "gsm_hard",
    out: str | Path,
    config: SweepConfig | None = None,
    scorer: Scorer | None = None,
    generator: FastGenerator | None = None,
    progress: bool = True,
    on_point: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate every grid point of ``method`` (skipping those already in ``out``); returns all
    point rows, in grid order. ``on_point`` is called after each line is written."""
    cfg = config or SweepConfig()
    if len(prompts) != len(golds):
        raise ValueError(f"run_sweep: {len(prompts)} prompts but {len(golds)} golds")
    metric = cfg.metric or get_task(task).sweep_metric
    if metric is None:
        raise ValueError(f"run_sweep: no default metric for task '{task}'; set SweepConfig.metric")
    score = scorer or bound_scorer(task, workers=cfg.score_workers)
    grid = points(method, len(merger.skills), cfg.grid)
    header = {
        "kind": "header", "format": FORMAT, "method": method, "task": task, "metric": metric,
        "seed": cfg.seed, "majority_sign_method": cfg.majority_sign_method,
        "grid": to_dict(cfg.grid), "n_points": len(grid),
        # skills by content (not path), so a sweep can resume from another checkout or machine
        "skills": [{k: v for k, v in s.summary().items() if k != "path"} for s in merger.skills],
        "prompts": fingerprint(list(prompts)), "golds": fingerprint([str(g) for g in golds]),
        # only what changes the texts: batch size, compilation and cache kind do not
        "generation": {k: to_dict(cfg.generation)[k] for k in ("max_new_tokens", "stop_strings", "eos_token_ids")},
        "n_prompts": len(prompts),
    }
    header = json.loads(json.dumps(header))  # compare as it reads back from the file
    path = Path(out)
    old_header, old_rows = read_sweep(path)
    if old_header is not None:
        if old_header != header:
            diff = sorted(k for k in set(header) | set(old_header) if header.get(k) != old_header.get(k))
            raise ValueError(f"{path}: was written by a different sweep (fields {diff} differ); "
                             f"move it away or write to another path")
        _rewrite_complete(path)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.read_text().strip():
            raise ValueError(f"{path}: exists but has no sweep header; refusing to overwrite it")
        path.write_text(json.dumps(header) + "\n")
    done = {r["point"]: r for r in old_rows}
    by_equiv: dict[str, dict[str, Any]] = {}
    for r in old_rows:
        by_equiv.setdefault(r["equivalence"], r)
    gen = generator or FastGenerator(merger.model, tokenizer, cfg.generation)
    todo = [(i, p) for i, p in enumerate(grid) if point_key(p) not in done]

    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(grid), initial=len(grid) - len(todo), desc=f"sweep {method}")
    best_so_far = max((float(r["metrics"][metric]) for r in old_rows), default=float("nan"))

    def write(row: dict[str, Any]) -> None:
        nonlocal best_so_far
        with open(path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
        done[row["point"]] = row
        by_equiv.setdefault(row["equivalence"], row)
        v = float(row["metrics"][metric])
        best_so_far = v if math.isnan(best_so_far) else max(best_so_far, v)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({metric: f"{best_so_far:.4f}"})
        if on_point is not None:
            on_point(row)

    def finish(pending: tuple[dict[str, Any], Future]) -> None:
        row, fut = pending
        t0 = time.perf_counter()
        metrics, _ = fut.result()
        row["seconds"]["score_wait"] = round(time.perf_counter() - t0, 4)
        row["metrics"] = _plain_metrics(metrics)
        write(row)

    pending: tuple[dict[str, Any], Future] | None = None
    # one scoring thread: it hands the programs to the sandbox's own worker pool, so program
    # execution for point i runs on the CPU cores while point i+1 decodes on the device
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            for index, p in todo:
                key, equiv = point_key(p), equivalence_key(method, p)
                base = {"kind": "point", "index": index, "point": key, "equivalence": equiv,
                        "density": p["density"], "alphas": p["alphas"], "metric_name": metric}
                same = by_equiv.get(equiv)
                if same is None and pending is not None and pending[0]["equivalence"] == equiv:
                    finish(pending)
                    pending = None
                    same = by_equiv.get(equiv)
                if same is not None:  # an equivalent point was evaluated: reuse its scores
                    write({**base, "metrics": same["metrics"], "same_as": same["point"],
                           "tokens": same.get("tokens", 0), "seconds": {}})
                    continue
                t0 = time.perf_counter()
                merger.apply(method, p["alphas"], p["density"], seed=cfg.seed,
                             majority_sign_method=cfg.majority_sign_method)  # type: ignore[arg-type]
                t1 = time.perf_counter()
                texts = gen.generate(prompts, progress=False)
                t2 = time.perf_counter()
                if pending is not None:
                    finish(pending)
                fut = pool.submit(score, texts, golds)
                row = {**base, "tokens": gen.stats.tokens,
                       "seconds": {"merge": round(t1 - t0, 4), "generate": round(t2 - t1, 4)}}
                pending = (row, fut)
            if pending is not None:
                finish(pending)
                pending = None
        finally:
            if bar is not None:
                bar.close()
    return sorted(done.values(), key=lambda r: r["index"])


def _plain_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(to_dict(metrics), default=str))


__all__ = ["SweepConfig", "best_params", "best_point", "read_sweep", "run_sweep", "sweep_path"]
