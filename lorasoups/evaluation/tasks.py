"""One call per (model, task) for the notebooks: generate, score, write the result JSON and the
per-example JSONL beside it.

Prompts come in ready-made (the data registry formats them, chat template included), so this
module only wires generation to the right scorer and to the results spine.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lorasoups.evaluation.fastgen import generate_auto
from lorasoups.evaluation.generation import GenerationConfig
from lorasoups.evaluation.reporting import save_evaluation
from lorasoups.results import Timer
from lorasoups.task_kinds import get_task

Scorer = Callable[[Sequence[str], Sequence[Any]], tuple[dict[str, Any], list[dict[str, Any]]]]

def evaluate(
    model,
    tokenizer,
    task: str,
    prompts: Sequence[str],
    golds: Sequence[Any],
    *,
    generation: GenerationConfig | None = None,
    out: str | Path | None = None,
    config: Any = None,
    model_identity: dict[str, Any] | None = None,
    datasets: dict[str, Any] | None = None,
    scorer: Scorer | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Generate for ``prompts``, score against ``golds`` with the task's scorer (:data:`lorasoups.task_kinds.TASKS`), and (when ``out``
    is given) write ``out`` through :func:`lorasoups.results.write_result` plus
    ``<out>.examples.jsonl`` with every generation and score (prompts as digests: ``reporting.compact_rows``).
    Returns (metrics, rows)."""
    if scorer is None:
        scorer = get_task(task).scorer
    if len(prompts) != len(golds):
        raise ValueError(f"evaluate({task}): {len(prompts)} prompts but {len(golds)} gold answers")
    gen_cfg = generation or GenerationConfig()
    timer = Timer()
    with timer("generate"):
        generations = generate_auto(model, tokenizer, prompts, gen_cfg, progress=progress)
    with timer("score"):
        metrics, rows = scorer(generations, golds)
    for row, prompt, text in zip(rows, prompts, generations):
        row.setdefault("prompt", prompt)
        row.setdefault("generation", text)
    if out is not None:
        save_evaluation(
            out,
            config={"task": task, "generation": gen_cfg, **({"run": config} if config is not None else {})},
            metrics=metrics, examples=rows, timings=timer.seconds, model=model_identity, datasets=datasets,
        )
    return metrics, rows


__all__ = ["Scorer", "evaluate"]
