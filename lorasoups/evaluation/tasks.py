"""One call per (model, task) for the notebooks: generate, score, write the result JSON and the
per-example JSONL beside it.

Prompts come in ready-made (the data registry formats them, chat template included), so this
module only wires generation to the right scorer and to the results spine.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lorasoups.config import did_you_mean
from lorasoups.evaluation.fastgen import generate_auto
from lorasoups.evaluation.generation import GenerationConfig
from lorasoups.evaluation.gsm_hard import score_gsm_hard
from lorasoups.evaluation.qa_metrics import score_qa
from lorasoups.evaluation.reporting import save_evaluation
from lorasoups.evaluation.robustness import score_prompt_format
from lorasoups.results import Timer

Scorer = Callable[[Sequence[str], Sequence[Any]], tuple[dict[str, Any], list[dict[str, Any]]]]

#: task kind -> scorer(generations, golds) -> (metrics, rows)
SCORERS: dict[str, Scorer] = {
    "gsm_hard": lambda gens, golds: score_gsm_hard(gens, golds),
    "qa": score_qa,
    "prompt_format": score_prompt_format,
}


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
    """Generate for ``prompts``, score against ``golds`` with the task's scorer, and (when ``out``
    is given) write ``out`` through :func:`lorasoups.results.write_result` plus
    ``<out>.examples.jsonl`` with every generation and score (prompts as digests: ``reporting.compact_rows``).
    Returns (metrics, rows)."""
    if scorer is None:
        if task not in SCORERS:
            raise ValueError(f"unknown task kind '{task}' (known: {', '.join(SCORERS)}){did_you_mean(task, SCORERS)}")
        scorer = SCORERS[task]
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


__all__ = ["SCORERS", "evaluate"]
