"""One result JSON per (model, task) through the results spine, per-example outputs beside it."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lorasoups.results import write_result


def examples_path(result_json: str | Path) -> Path:
    """``results/x/m--v.json`` -> ``results/x/m--v.examples.jsonl``."""
    p = Path(result_json)
    return p.with_name(p.name[: -len(p.suffix)] + ".examples.jsonl" if p.suffix else p.name + ".examples.jsonl")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows atomically (temp file + rename), one JSON object per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a bad line is an error naming the file and line."""
    rows = []
    with open(path) as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{i}: not valid JSON ({exc.msg})") from exc
    return rows


def save_evaluation(
    path: str | Path,
    *,
    config: Any,
    metrics: dict[str, Any],
    examples: list[dict[str, Any]],
    timings: dict[str, float] | None = None,
    model: dict[str, Any] | None = None,
    datasets: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the per-example JSONL, then the result JSON that names it; returns the JSON path."""
    ex_path = write_jsonl(examples_path(path), examples)
    return write_result(
        path, config=config, metrics=metrics, timings=timings, model=model, datasets=datasets,
        extra={"examples_file": ex_path.name, "n_examples": len(examples), **(extra or {})},
    )


__all__ = ["examples_path", "read_jsonl", "save_evaluation", "write_jsonl"]
