"""Read ``results/<profile>/`` (the layout of ``results/README.md``) into plain, validated records.

Analysis reads nothing else. Every record is a dict (no pandas: a few dozen files, and plain dicts
print and test well). A file that is present but unusable (bad JSON, a missing field, a name that
disagrees with its content) raises :class:`ResultsError` naming the file, line and field: a wrong
number in a figure is worse than no figure. A file that is *absent* is not an error here; the
artifact builders list what they need and skip with the list of missing paths.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lorasoups import paths
from lorasoups.results import ResultsError
from lorasoups.task_kinds import TASKS

#: fields of an ELO result's metrics (``EloResult.to_dict()``).
ELO_METRICS = ("median", "ci_low", "ci_high")

_EVAL = re.compile(r"^(?P<label>[A-Za-z0-9_]+)--(?P<target>[A-Za-z0-9_.+]+)-s(?P<seed>\d+)\.json$")
_TRAIN = re.compile(r"^(?P<label>[A-Za-z0-9_]+)--s(?P<seed>\d+)\.json$")


def root(profile: str) -> Path:
    """``results/<profile>/`` (``LORASOUPS_RESULTS`` overrides the root)."""
    return paths.results_dir(profile)


def eval_path(profile: str, setting: str, label: str, target: str, seed: int) -> Path:
    return root(profile) / "eval" / setting / f"{label}--{target}-s{seed}.json"


def elo_path(profile: str, setting: str, target: str, seed: int) -> Path:
    return eval_path(profile, setting, "elo", target, seed)


def train_path(profile: str, setting: str, label: str, seed: int) -> Path:
    return root(profile) / "train" / setting / f"{label}--s{seed}.json"


def train_path_beside(record: dict[str, Any], label: str) -> Path:
    """The train result of ``label`` for an eval record's setting and seed, in the same results root."""
    path = Path(record["path"])
    return path.parent.parent.parent / "train" / path.parent.name / f"{label}--s{record['seed']}.json"


def examples_path(result: Path) -> Path:
    """``x--t-s0.json`` -> ``x--t-s0.examples.jsonl`` (as :mod:`lorasoups.evaluation.reporting`)."""
    return result.with_name(result.name[: -len(".json")] + ".examples.jsonl")


def read_json(path: Path) -> dict[str, Any]:
    """A result JSON as a dict; ResultsError naming the file when it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path}: result file not found") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _field(data: dict[str, Any], path: Path, *keys: str) -> Any:
    cur: Any = data
    for i, key in enumerate(keys):
        if not isinstance(cur, dict) or key not in cur:
            raise ResultsError(f"{path}: missing field '{'.'.join(keys[: i + 1])}'")
        cur = cur[key]
    return cur


def model_name(data: dict[str, Any]) -> str:
    """The base model a result used: ``model.name`` (or ``model.base``), else ``config.run.model``."""
    model = data.get("model") or {}
    run = (data.get("config") or {}).get("run") or {}
    return str(model.get("name") or model.get("base") or run.get("model") or "unknown model")


def eval_record(path: str | Path) -> dict[str, Any]:
    """One eval JSON: setting, label, target, seed, task, metrics, model, skills, path.

    The file name (``<label>--<target>-s<seed>.json``) must agree with ``config.run``.
    """
    path = Path(path)
    m = _EVAL.match(path.name)
    if not m or m["label"] == "elo":
        raise ResultsError(f"{path}: not an eval result name '<label>--<target>-s<seed>.json'")
    data = read_json(path)
    run = _field(data, path, "config", "run")
    named = {"setting": path.parent.name, "label": m["label"], "target": m["target"], "seed": int(m["seed"])}
    for key, value in named.items():
        if key in run and run[key] != value:
            raise ResultsError(f"{path}: config.run.{key} is {run[key]!r} but the file name says {value!r}")
    task = run.get("task") or (data.get("config") or {}).get("task")
    if task not in TASKS:
        raise ResultsError(f"{path}: config.run.task is {task!r}, expected one of {list(TASKS)}")
    metrics = _field(data, path, "metrics")
    for key in TASKS[task].metrics:
        if not isinstance(metrics.get(key), int | float):
            raise ResultsError(f"{path}: metrics.{key} is missing or not a number (task '{task}')")
    return {**named, "task": task, "metrics": metrics, "n": int(metrics["n"]), "model": model_name(data),
            "skills": run.get("skills"), "target_data": target_data(data.get("datasets"), m["target"]),
            "path": path}


def target_data(datasets: Any, target: str) -> str | None:
    """``"<target>: generated stand-in <version>"`` when a result's target items were generated,
    else None: a stand-in scored under a real dataset's name (``gsm_hard`` in the generated
    math+code slice) must say so on every figure; real data needs no note."""
    info = datasets.get(target) if isinstance(datasets, dict) else None
    if not isinstance(info, dict) or info.get("source") != "generated":
        return None
    return f"{target}: generated stand-in {info.get('version') or ''}".rstrip()


def eval_records(profile: str, setting: str, target: str | None = None,
                 seeds: list[int] | None = None) -> list[dict[str, Any]]:
    """Every eval record of a setting (optionally one target, some seeds), sorted by name."""
    folder = root(profile) / "eval" / setting
    out = []
    for f in sorted(folder.glob("*.json")):
        if f.name.startswith("elo--"):
            continue
        rec = eval_record(f)
        if (target is None or rec["target"] == target) and (seeds is None or rec["seed"] in seeds):
            out.append(rec)
    return out


def item_keys(rows: list[dict[str, Any]]) -> list[str] | None:
    """The rows' dataset record ids when every row carries one and no two repeat, else None (then
    items pair by position; the BioASQ mirror file is one JSON line, so its ids repeat). An id
    pairs items across models whose scored sets were built apart (8-shot vs 1-shot prompts)."""
    ids = [r.get("id") for r in rows]
    return ids if None not in ids and len(set(ids)) == len(ids) else None


def example_rows(record: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of an eval record's ``.examples.jsonl``, for errors that name the line."""
    path = examples_path(record["path"])
    if not path.is_file():
        raise ResultsError(f"{path}: per-example results not found (written beside {record['path'].name})")
    rows: list[tuple[int, dict[str, Any]]] = []
    with open(path) as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append((i, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ResultsError(f"{path}:{i}: not valid JSON ({exc.msg})") from exc
    return rows


def per_example(record: dict[str, Any], column: str | None = None, key: str = "index") -> dict[Any, float]:
    """Per-example scores of an eval record, keyed by ``key`` (``index``; ``id``: the dataset
    record's id; ``auto``: the id where :func:`item_keys` finds unique ones, else the index), from
    its ``.examples.jsonl``: ``column`` (default: the task's ``item_score``, :data:`lorasoups.task_kinds.TASKS`) as a float."""
    column = column or (TASKS[record["task"]].item_score if record["task"] in TASKS else None)
    if column is None:
        raise ResultsError(f"{record['path']}: task '{record['task']}' has no per-example score; pass column=")
    path = examples_path(record["path"])
    rows = example_rows(record)
    if key == "auto":
        key = "id" if item_keys([r for _, r in rows]) is not None else "index"
    out: dict[Any, float] = {}
    for i, row in rows:
        for field_ in (key, column):
            if field_ not in row:
                raise ResultsError(f"{path}:{i}: missing field '{field_}'")
        if row[key] in out:
            raise ResultsError(f"{path}:{i}: {key} {row[key]} appears twice")
        value = row[column]
        if not isinstance(value, bool | int | float) or value != value:  # NaN != NaN
            raise ResultsError(f"{path}:{i}: field '{column}' is {value!r}, not a number")
        out[row[key]] = float(value)
    if len(out) != record["n"]:
        raise ResultsError(f"{path}: {len(out)} examples but {record['path'].name} says n={record['n']}")
    return out


def solved(record: dict[str, Any], flag: str | None = None) -> dict[int, bool]:
    """Per-example solved flags of an eval record, keyed by ``index``, from its ``.examples.jsonl``."""
    flag = flag or (TASKS[record["task"]].solved_flag if record["task"] in TASKS else None)
    if flag is None:
        raise ResultsError(f"{record['path']}: task '{record['task']}' has no solved flag; pass flag=")
    return {i: bool(v) for i, v in per_example(record, flag).items()}


def elo_record(path: str | Path) -> dict[str, Any]:
    """One ELO JSON (``elo--<target>-s<seed>.json``): ``metrics.elo`` is ``EloResult.to_dict()``
    (median, ci_low, ci_high per model, n_battles), or null when the judge gave no usable battle;
    then the record's ``elo`` is None. (A file with the ratings at the top of ``metrics`` is read too.)
    """
    path = Path(path)
    m = _EVAL.match(path.name)
    if not m or m["label"] != "elo":
        raise ResultsError(f"{path}: not an ELO result name 'elo--<target>-s<seed>.json'")
    data = read_json(path)
    metrics = _field(data, path, "metrics")
    where = "metrics.elo" if "elo" in metrics else "metrics"
    elo = metrics["elo"] if "elo" in metrics else metrics
    run = (data.get("config") or {}).get("run") or {}
    rec = {"setting": path.parent.name, "target": m["target"], "seed": int(m["seed"]), "elo": None,
           "n_battles": None, "model": model_name(data), "path": path,
           # who decided the battles: an LLM judge (its kind) or reference_f1 (no judge)
           "decided_by": run.get("battles_decided_by") or run.get("judge") or "judge",
           # the LLM judge's order effects (judge.position_bias); None without an LLM judge
           "position_bias": metrics.get("position_bias")}
    if elo is None:
        return rec
    if not isinstance(elo, dict):
        raise ResultsError(f"{path}: {where} is not an object")
    for key in ELO_METRICS:
        if not isinstance(elo.get(key), dict) or not elo[key]:
            raise ResultsError(f"{path}: {where}.{key} is missing or not a rating per model")
    for key in ("ci_low", "ci_high"):
        if set(elo[key]) != set(elo["median"]):
            raise ResultsError(f"{path}: {where}.{key} rates other models than {where}.median")
    return {**rec, "elo": elo, "n_battles": elo.get("n_battles")}


def train_record(path: str | Path) -> dict[str, Any]:
    """One train JSON (``<label>--s<seed>.json``): setting, label, seed, metrics, model, path."""
    path = Path(path)
    m = _TRAIN.match(path.name)
    if not m:
        raise ResultsError(f"{path}: not a train result name '<label>--s<seed>.json'")
    data = read_json(path)
    return {"setting": path.parent.name, "label": m["label"], "seed": int(m["seed"]),
            "metrics": _field(data, path, "metrics"), "model": model_name(data), "path": path}


def alpha_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The learned alphas of a CAT train record (rows of module, layer, kind, group, skill, alpha)."""
    rows = record["metrics"].get("alphas")
    path = record["path"]
    if not isinstance(rows, list) or not rows:
        raise ResultsError(f"{path}: metrics.alphas is missing or empty (a learned CAT run records it)")
    for i, row in enumerate(rows):
        for key in ("module", "layer", "kind", "skill", "alpha"):
            if not isinstance(row, dict) or key not in row:
                raise ResultsError(f"{path}: metrics.alphas[{i}]: missing field '{key}'")
    return rows


def seeds_found(profile: str, setting: str, folder: str = "eval") -> list[int]:
    """Seeds that have at least one result of ``setting`` under ``eval/`` (or ``train/``)."""
    pattern = _EVAL if folder == "eval" else _TRAIN
    found = set()
    for f in (root(profile) / folder / setting).glob("*.json"):
        m = pattern.match(f.name)
        if m:
            found.add(int(m["seed"]))
    return sorted(found)


def missing(files: list[Path]) -> list[Path]:
    """The files of ``files`` that do not exist."""
    return [f for f in files if not Path(f).is_file()]


def resolve_seeds(profile: str, setting: str, seeds: list[int] | None, folder: str = "eval") -> list[int]:
    """``seeds`` as given, else every seed found for ``setting``, else ``[0]`` (for the message)."""
    return sorted(set(seeds)) if seeds else (seeds_found(profile, setting, folder) or [0])


def gather(profile: str, setting: str, target: str, seeds: list[int],
           required: tuple[str, ...]) -> tuple[list[dict[str, Any]], list[Path]]:
    """The eval records of (setting, target, seeds) and the files of ``required`` labels that are absent."""
    need = [eval_path(profile, setting, label, target, s) for label in required for s in seeds]
    return eval_records(profile, setting, target, seeds), missing(need)


def partial_seeds(records: list[dict[str, Any]], seeds: list[int]) -> list[str]:
    """Notes for labels that have results for only some of ``seeds`` (their mean uses fewer)."""
    have: dict[str, set[int]] = {}
    for r in records:
        have.setdefault(r["label"], set()).add(r["seed"])
    return [f"{label}: results for seed(s) {sorted(s)} of {sorted(seeds)} only"
            for label, s in sorted(have.items()) if s != set(seeds)]


__all__ = [
    "ResultsError", "alpha_rows", "elo_path", "elo_record", "eval_path", "eval_record", "eval_records", "example_rows",
    "examples_path", "gather", "missing", "model_name", "partial_seeds", "item_keys", "per_example", "read_json", "resolve_seeds", "root",
    "seeds_found", "solved", "target_data", "train_path", "train_record",
]
