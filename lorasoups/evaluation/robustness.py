"""Prompt-format robustness (the paper's Figure 10): accuracy of each model on held-out formats.

The task is SuperNaturalInstructions task 161 (count the words containing a letter) rendered in
formats 1, 2, 4 (skill training) and 3, 7, 8, 10 (held out). Gold outputs read
``the correct answer is N`` (the ``answer`` field is ``answerN``).
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from lorasoups.evaluation.extract import last_number

_STATED = re.compile(r"correct\s+answer\s+is\s*:?\s*(-?\d+)", re.I)
_GOLD = re.compile(r"(-?\d+)\s*$")


def gold_count(gold: str | int) -> int:
    """The count from ``answer3``, ``the correct answer is 3`` or ``3``."""
    if isinstance(gold, int):
        return gold
    m = _GOLD.search(str(gold).strip())
    if not m:
        raise ValueError(f"prompt-format gold answer {gold!r} has no trailing count")
    return int(m.group(1))


def predicted_count(generation: str) -> int | None:
    """The count the model stated: the number after the first ``correct answer is``, else the
    last integer-valued number in the text; None when there is none."""
    m = _STATED.search(generation or "")
    if m:
        return int(m.group(1))
    value = last_number(generation or "")
    return int(value) if value is not None and float(value).is_integer() else None


def score_prompt_format(
    generations: Sequence[str], golds: Sequence[str | int]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Accuracy on one format; returns (metrics, per-example rows).

    Beside the accuracy: the majority answer of these items (the most common gold count), the
    accuracy of always giving it (``majority_floor``: a model must beat this, not only the base),
    and the share of the model's answers that are it (``majority_share``: a model that learned the
    format but not the count answers the majority and scores the floor)."""
    if len(generations) != len(golds):
        raise ValueError(f"score_prompt_format: {len(generations)} generations but {len(golds)} golds")
    rows = []
    for i, (text, gold) in enumerate(zip(generations, golds)):
        g, p = gold_count(gold), predicted_count(text)
        rows.append({"index": i, "generation": text, "gold": g, "predicted": p, "correct": p == g})
    n = len(rows)
    metrics: dict[str, Any] = {"n": n, "accuracy": sum(r["correct"] for r in rows) / n if n else 0.0}
    if n:
        majority = Counter(r["gold"] for r in rows).most_common(1)[0][0]
        metrics.update(majority_answer=majority,
                       majority_floor=sum(r["gold"] == majority for r in rows) / n,
                       majority_share=sum(r["predicted"] == majority for r in rows) / n)
    return metrics, rows


class RobustnessGrid:
    """Accuracy per (model, held-out format), with per-model mean, worst case and spread."""

    def __init__(self, accuracy: Mapping[str, Mapping[str, float]]) -> None:
        self.models = list(accuracy)
        formats: list[str] = []
        for m in self.models:
            for f in accuracy[m]:
                if f not in formats:
                    formats.append(f)
        missing = [(m, f) for m in self.models for f in formats if f not in accuracy[m]]
        if missing:
            raise ValueError(f"robustness grid: missing cells (model, format): {missing[:5]}")
        self.formats = formats
        self.accuracy = {m: {f: float(accuracy[m][f]) for f in formats} for m in self.models}

    def summary(self) -> dict[str, dict[str, float]]:
        """Per model: mean, min, max and spread (max - min) over the formats."""
        out = {}
        for m, row in self.accuracy.items():
            vals = list(row.values())
            out[m] = {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals),
                      "spread": max(vals) - min(vals)}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"formats": self.formats, "accuracy": self.accuracy, "summary": self.summary()}

    def to_markdown(self, digits: int = 3) -> str:
        head = "| model | " + " | ".join(self.formats) + " | mean | min |"
        lines = [head, "|" + "---|" * (len(self.formats) + 3)]
        summ = self.summary()
        for m in self.models:
            cells = " | ".join(f"{self.accuracy[m][f]:.{digits}f}" for f in self.formats)
            lines.append(f"| {m} | {cells} | {summ[m]['mean']:.{digits}f} | {summ[m]['min']:.{digits}f} |")
        return "\n".join(lines)

    def plot(self, ax=None):
        """Heatmap (models x formats) in the style of the paper's Figure 10; returns the axes."""
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(1.2 * len(self.formats) + 3, 0.5 * len(self.models) + 1.5))[1]
        data = [[self.accuracy[m][f] for f in self.formats] for m in self.models]
        im = ax.imshow(data, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(self.formats)), self.formats)
        ax.set_yticks(range(len(self.models)), self.models)
        for i, row in enumerate(data):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.5 else "k", fontsize=8)
        ax.figure.colorbar(im, ax=ax, label="accuracy")
        ax.set_xlabel("held-out prompt format")
        return ax


__all__ = ["RobustnessGrid", "gold_count", "predicted_count", "score_prompt_format"]
