"""GSM-Hard scoring, both ways: execution accuracy of the model's program (ours) and last-number
accuracy on the model's own answer (how the authors' released code scores, minus its bug of
reading the first demonstration; see :func:`lorasoups.evaluation.extract.authors_response_split`).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from lorasoups.evaluation.extract import close_enough, extract_program, last_number
from lorasoups.evaluation.sandbox import STATUSES, SandboxConfig, run_programs

#: The authors' tolerance: GSM-Hard golds are floats.
TOLERANCE = 1e-3


def score_gsm_hard(
    generations: Sequence[str],
    golds: Sequence[float | int | str],
    timeout: float = 5.0,
    workers: int | None = None,
    tol: float = TOLERANCE,
    config: SandboxConfig | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score generations against gold answers; returns (metrics, per-example rows).

    A generation without a program counts as wrong for execution accuracy (status
    ``no_program``) and is still scored by its last number.
    """
    if len(generations) != len(golds):
        raise ValueError(f"score_gsm_hard: {len(generations)} generations but {len(golds)} golds")
    gold_values = []
    for i, g in enumerate(golds):
        try:
            gold_values.append(float(g))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"score_gsm_hard: gold answer of example {i} is not a number: {g!r}") from exc
    programs = [extract_program(text or "") for text in generations]
    todo = [i for i, p in enumerate(programs) if p is not None]
    ran = run_programs([programs[i] for i in todo], timeout=timeout, workers=workers, config=config,
                       progress=progress)
    by_index = dict(zip(todo, ran))
    rows = []
    for i, (text, program, gold) in enumerate(zip(generations, programs, gold_values)):
        res = by_index.get(i)
        lastnum = last_number(text or "")
        rows.append({
            "index": i,
            "gold": gold,
            "generation": text,
            "program": program,
            "status": res.status if res else "no_program",
            "exec_answer": res.answer if res else None,
            "exec_correct": bool(res and res.ok and close_enough(res.answer, gold, tol)),
            "error": res.error if res else None,
            "last_number": lastnum,
            "last_number_correct": close_enough(lastnum, gold, tol),
        })
    n = len(rows)
    counts = Counter(r["status"] for r in rows)
    metrics = {
        "n": n,
        "exec_accuracy": sum(r["exec_correct"] for r in rows) / n if n else 0.0,
        "last_number_accuracy": sum(r["last_number_correct"] for r in rows) / n if n else 0.0,
        "program_found": sum(p is not None for p in programs) / n if n else 0.0,
        "status_counts": {k: counts.get(k, 0) for k in (*STATUSES, "no_program")},
        "tolerance": tol,
    }
    return metrics, rows


__all__ = ["TOLERANCE", "score_gsm_hard"]
