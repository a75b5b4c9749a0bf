"""One result JSON per (model, task) through the results spine, per-example outputs beside it."""
from __future__ import annotations

import hashlib
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


def prompt_digest(prompt: str) -> str:
    """The first 16 hex digits of the prompt's SHA-256: what a committed example row keeps of it."""
    return hashlib.sha256(prompt.encode()).hexdigest()[:16]


def compact_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Example rows without their prompt text, which holds most of a row's bytes (an 8-shot PAL
    prompt is ~4.7 kB of a ~5.8 kB GSM-Hard row; the CPU study's rows would be ~100 MB with them).
    The prompt is rebuilt from the result's dataset identity and the row's ``index``; the row keeps
    ``prompt_sha256`` so a rebuilt prompt can be checked against the one that was scored."""
    return [{**{k: v for k, v in r.items() if k != "prompt"}, "prompt_sha256": prompt_digest(r["prompt"])}
            if isinstance(r.get("prompt"), str) else dict(r) for r in rows]


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
    """Write the per-example JSONL (prompts as digests, :func:`compact_rows`), then the result JSON
    that names it; returns the JSON path."""
    ex_path = write_jsonl(examples_path(path), compact_rows(examples))
    return write_result(
        path, config=config, metrics=metrics, timings=timings, model=model, datasets=datasets,
        extra={"examples_file": ex_path.name, "n_examples": len(examples), **(extra or {})},
    )


__all__ = ["compact_rows", "examples_path", "prompt_digest", "read_jsonl", "save_evaluation", "write_jsonl"]
