"""The study's wall time, read back from the committed results (the README states it per slice).

Every stage records its own seconds: training results ``timings_s`` (``train_last_session``: the
session in which a run finished, so a run resumed across sessions counts only its last part), the
merge sweeps per grid point (``seconds``: merge, generate, score), evaluation ``timings_s.evaluate``
per model and target; merge exports their seconds like a training run's (``training: <method>``).
Recorded seconds include any time the process was paused. The gate's and the ELO's own timings
(in their result files) are not in this table: the gate's base and oracle scores are ordinary
evaluation results, and an ELO from F1 battles takes seconds.

    python -m lorasoups.analysis.budget --profile cpu     # figures_dir(profile)/wall_time.md
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lorasoups import paths
from lorasoups.analysis import load
from lorasoups.analysis.outcome import Outcome
from lorasoups.analysis.save import save_table
from lorasoups.analysis.verdicts import SETTINGS

#: training labels grouped as the pipeline's stages train them (other labels are listed by name).
GROUPS: dict[str, tuple[str, ...]] = {
    "skill LoRAs": ("skill1", "skill2", "skill3"),
    "DATA-MIX": ("datamix", "datamix_seq"),
    "oracle and cat_data_lora LoRAs": ("oracle", "cat_data_lora"),
    "learned CAT (our recipe, the paper's, cat_random)": ("cat", "cat_paper", "cat_random"),
    "MoE router": ("moe",),
    "LoraHub search": ("lorahub",),
}


def _seconds(timings: Any) -> float:
    return sum(v for v in (timings or {}).values() if isinstance(v, int | float))


def sweep_seconds(path: Path) -> tuple[float, int]:
    """(seconds, points) of one sweep file: the sum over its grid points. Read here rather than with
    ``lorasoups.sweep.read_sweep``, whose module imports torch and the generator: analysis stays light."""
    total, n = 0.0, 0
    for i, line in enumerate(path.read_text().splitlines(), 1):
        row = json.loads(line)
        if row.get("kind") == "header":
            continue
        secs = row.get("seconds")
        if not isinstance(secs, dict):
            raise load.ResultsError(f"{path}:{i}: field 'seconds' should be an object, got {type(secs).__name__}")
        total += _seconds(secs)
        n += 1
    return total, n


def slice_rows(profile: str, setting: str, seed: int) -> list[tuple[str, float | None, str]]:
    """(what, seconds, note) for one setting and seed, in pipeline order, then the results that
    record no time (seconds None); empty when nothing ran."""
    root = load.root(profile)
    rows: list[tuple[str, float | None, str]] = []
    train: dict[str, float] = {}
    untimed: list[str] = []
    for path in sorted((root / "train" / setting).glob(f"*--s{seed}.json")):
        label = path.name.rsplit("--", 1)[0]
        secs = _seconds(load.read_json(path).get("timings_s"))
        if secs:
            train[label] = secs
        else:
            untimed.append(label)
    for group, labels in GROUPS.items():
        got = [lb for lb in labels if lb in train]
        if got:
            rows.append((group, sum(train.pop(lb) for lb in got), ", ".join(got)))
    rows += [(f"training: {lb}", s, "") for lb, s in sorted(train.items())]
    for path in sorted((root / "sweep" / setting).glob(f"*--s{seed}.jsonl")):
        secs, n = sweep_seconds(path)
        rows.append((f"{path.name.split('--')[0].upper()} sweep", secs, f"{n} grid points"))
    evals = []
    for path in sorted((root / "eval" / setting).glob(f"*-s{seed}.json")):
        if path.name.startswith("elo--"):
            continue
        name = path.name.rsplit("-s", 1)[0]
        secs = _seconds(load.read_json(path).get("timings_s"))
        if secs:
            evals.append((name, secs))
        else:
            untimed.append(name)
    if evals:
        slowest = max(evals, key=lambda e: e[1])
        rows.append(("evaluation", sum(s for _, s in evals),
                     f"{len(evals)} model-target pairs; slowest {slowest[0]} {slowest[1] / 60:.0f} min"))
    if untimed:
        # shown, not counted as 0: static merge exports take seconds and record none, and results
        # written before a stage kept its time (or by a stage that did not) would read as free
        rows.append(("no time recorded", None, ", ".join(untimed)))
    return rows


def _recorded(rows: list[tuple[str, float | None, str]]) -> float:
    return sum(r[1] for r in rows if r[1] is not None)


def wall_time_table(profile: str, slices: dict[tuple[str, int], list[tuple[str, float | None, str]]]) -> str:
    ns = paths.namespace()
    where = f"profile {profile}" + (f", results namespace '{ns}'" if ns else "")
    lines = [f"**Wall time recorded by each stage** ({where}; seconds as the results record them: a "
             "training run resumed across sessions counts its last session only, and pauses count)", "",
             "| setting | seed | stage | minutes | note |", "|---|---|---|---|---|"]
    for (setting, seed), rows in slices.items():
        for what, secs, note in rows:
            lines.append(f"| {setting} | {seed} | {what} | {'-' if secs is None else f'{secs / 60:.1f}'} | {note} |")
        total = _recorded(rows)
        lines.append(f"| {setting} | {seed} | **all recorded** | **{total / 60:.1f}** | {total / 3600:.2f} h |")
    return "\n".join(lines)


def make_wall_time(profile: str, seeds: list[int] | None = None) -> Outcome:
    """Per setting and seed with results: what each stage recorded; ``wall_time.md``."""
    out = Outcome("wall_time", "wall time recorded per stage", profile)
    slices: dict[tuple[str, int], list[tuple[str, float | None, str]]] = {}
    for setting in SETTINGS:
        found = sorted(set(load.seeds_found(profile, setting)) | set(load.seeds_found(profile, setting, "train")))
        for seed in (s for s in found if not seeds or s in seeds):
            rows = slice_rows(profile, setting, seed)
            if rows:
                slices[(setting, seed)] = rows
                out.numbers[f"{setting}/s{seed}"] = _recorded(rows)
    if not slices:
        out.missing = [load.root(profile) / "train"]
        return out
    out.table = wall_time_table(profile, slices)
    out.files = [save_table(out.table, out.name, profile)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lorasoups.analysis.budget", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seed", type=int, action="append", help="only these seeds (default: every seed found)")
    args = ap.parse_args(argv)
    out = make_wall_time(args.profile, args.seed)
    print(out.table or out.status())
    return 0


__all__ = ["GROUPS", "make_wall_time", "slice_rows", "sweep_seconds", "wall_time_table"]

if __name__ == "__main__":
    raise SystemExit(main())
