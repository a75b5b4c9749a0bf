"""The task table: every record kind and every scored task, declared once.

A dataset entry has a record *kind* (the columns its records carry); a kind that is scored names
its *task*: how generations are scored, which column holds the gold answer, which metrics every
result of it carries, the number models are compared on (the headline), the metric a sweep
maximises, and the per-example score the gate and the verdicts compare item by item. The data
registry, the evaluation and gate stages, the sweep and the analysis all read this table; adding a
task kind is one entry here plus its scorer.

This module imports nothing of the package at import time (the data layer sits under it); a
scorer is named as ``module:function`` and imported when first used.
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Scorer = Callable[..., tuple[dict[str, Any], list[dict[str, Any]]]]


@dataclass(frozen=True)
class Task:
    """A scored task: ``scorer(generations, golds) -> (metrics, rows)``."""

    name: str
    scorer_ref: str
    """``module:function`` of the scorer."""
    gold: str
    """The record column holding the gold answer."""
    metrics: tuple[str, ...]
    """Keys every result's metrics carry (``results/README.md``, "Metrics by task kind")."""
    headline: tuple[str, ...]
    """The number models are compared on when printed: the first of these a result carries (QA:
    the judge's accuracy where an endpoint scored it, else token F1)."""
    sweep_metric: str
    """What a merge sweep maximises on validation data (the ablations compare on ``headline``)."""
    item_score: str
    """Per-example score column of the ``.examples.jsonl`` rows that the gate and the verdicts
    compare models on item by item."""
    solved_flag: str | None = None
    """Per-example 0/1 correctness flag (None where the rows carry graded scores only)."""
    options: tuple[str, ...] = ()
    """Scorer keywords a run's config may set (the program sandbox's ``workers``)."""

    @property
    def scorer(self) -> Scorer:
        module, function = self.scorer_ref.split(":")
        return getattr(importlib.import_module(module), function)


@dataclass(frozen=True)
class RecordKind:
    """What a record of a dataset carries, and the task that scores it (None: trained on only)."""

    columns: tuple[str, ...]
    task: str | None = None


TASKS: dict[str, Task] = {t.name: t for t in [
    Task("gsm_hard", "lorasoups.evaluation.gsm_hard:score_gsm_hard", gold="target", metrics=("n", "exec_accuracy"),
         headline=("exec_accuracy",), sweep_metric="exec_accuracy", item_score="exec_correct",
         solved_flag="exec_correct", options=("workers",)),
    Task("qa", "lorasoups.evaluation.qa_metrics:score_qa", gold="answer",
         metrics=("n", "exact_match", "f1", "contains"), headline=("judge_accuracy", "f1"), sweep_metric="f1",
         item_score="f1"),
    Task("prompt_format", "lorasoups.evaluation.robustness:score_prompt_format", gold="answer",
         metrics=("n", "accuracy"), headline=("accuracy",), sweep_metric="accuracy", item_score="correct",
         solved_flag="correct"),
]}

_PROMPTED = ("id", "instruction", "prompt", "completion")
RECORD_KINDS: dict[str, RecordKind] = {
    "sft": RecordKind(_PROMPTED),
    "corpus": RecordKind(("id", "text")),
    "math": RecordKind((*_PROMPTED, "question", "answer", "target"), task="gsm_hard"),
    "program": RecordKind((*_PROMPTED, "question", "answer", "target", "code"), task="gsm_hard"),
    "qa": RecordKind((*_PROMPTED, "question", "answer", "context"), task="qa"),
    "count": RecordKind((*_PROMPTED, "answer", "format"), task="prompt_format"),
    "fewshot": RecordKind(("id", "instruction", "completion", "answer")),
}


def get_task(name: str) -> Task:
    """The task ``name``, or a clear error naming the known ones."""
    if name not in TASKS:
        from lorasoups.config import did_you_mean

        raise ValueError(f"unknown task kind '{name}' (known: {', '.join(TASKS)}){did_you_mean(name, TASKS)}")
    return TASKS[name]


def task_of_kind(kind: str) -> Task | None:
    """The task that scores records of ``kind`` (None: a kind only trained on)."""
    name = RECORD_KINDS[kind].task
    return None if name is None else TASKS[name]


def headline(by_target: dict[str, dict[str, Any]], digits: int = 3) -> dict[str, float]:
    """``{target: headline metric}`` rounded, for printing a setting's scores on one line: each
    result's first headline key of any task (no two tasks share a headline key)."""
    keys = [k for t in TASKS.values() for k in t.headline]
    out = {}
    for target, metrics in by_target.items():
        key = next((k for k in keys if isinstance(metrics.get(k), int | float)), None)
        if key is not None:
            out[target] = round(float(metrics[key]), digits)
    return out


def score(task: str, generations: Sequence[str], golds: Sequence[Any], **options: Any):
    """Score ``generations`` against ``golds`` with the task's scorer (``options``: scorer keywords,
    e.g. ``workers`` of the program sandbox)."""
    return get_task(task).scorer(generations, golds, **options)


def bound_scorer(task: str, **options: Any) -> Scorer:
    """The task's scorer with those ``options`` it declares set (a None value keeps the scorer's
    default). A config's options serve every task a run scores, so one a scorer does not take (the
    sandbox's ``workers`` for QA) is left out here rather than each caller naming tasks."""
    spec = get_task(task)
    kept = {k: v for k, v in options.items() if k in spec.options and v is not None}
    return functools.partial(spec.scorer, **kept) if kept else spec.scorer


__all__ = ["RECORD_KINDS", "RecordKind", "TASKS", "Task", "bound_scorer", "get_task", "headline", "score",
           "task_of_kind"]
