"""QABot (setting ``qabot``, target ``qabot_dnd``): Figure 5, accuracy per method.

The paper scores QABot answers with an LLM judge (Figure 11's QA judge, a 0-2 CORRECTNESS score;
§C.2 reports accuracy). Here accuracy (``judge_accuracy``) is the share of judged items scored 2;
1, 0 and unparseable verdicts count as not correct; the judge's mean 0-2 score over the parsed
verdicts is reported beside it (``judge_mean_score``). We could not read its Figure 5 offline; it is the QABot comparison of the methods, drawn
here as bars with a 95% t-CI over seeds. When no judge ran (the CPU smoke profile has none), the
figure uses answer containment (the gold answer appears in the output, normalised) and says so in
its axis label and title; token F1 is the second panel either way.
"""
from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from lorasoups.analysis import load
from lorasoups.analysis.methods import (
    headline,
    method_scores,
    plot_method_bars,
    records_caption,
    score_table,
    skill_names,
)
from lorasoups.analysis.outcome import Outcome
from lorasoups.analysis.save import save_figure, save_table

SETTING, TARGET = "qabot", "qabot_dnd"
REQUIRED = ("base", "skill1", "skill2", "cat")
METRIC_NAMES = {"judge_accuracy": "accuracy (LLM judge)", "contains": "accuracy (answer containment)",
                "f1": "token F1"}


def accuracy_metric(records: list[dict[str, Any]]) -> str:
    """``judge_accuracy`` when every record has it, else ``contains`` (never a mix of the two)."""
    if records and all(isinstance(r["metrics"].get("judge_accuracy"), int | float) for r in records):
        return "judge_accuracy"
    return "contains"


def figure_5(records: list[dict[str, Any]], profile: str) -> tuple[Figure, dict[str, Any]]:
    """QABot accuracy per method (judge, or containment without a judge): figure and numbers."""
    metric = accuracy_metric(records)
    scores = method_scores(records, metric)
    judge = "" if metric == "judge_accuracy" else "; no LLM judge ran"
    title = (f"Figure 5 (reproduction): QABot ({TARGET}) {METRIC_NAMES[metric]} per method{judge}\n"
             + records_caption(profile, records))
    f1 = method_scores(records, "f1")
    fig = plot_method_bars([(scores, METRIC_NAMES[metric]), (f1, METRIC_NAMES["f1"])], title,
                           skills=skill_names(SETTING, records))
    numbers = {metric: headline(scores), "f1": headline(f1)}
    if metric == "judge_accuracy":  # the mean 0-2 score and the unparseable share beside the accuracy
        for key in ("judge_mean_score", "judge_unparseable_share"):
            if all(isinstance(r["metrics"].get(key), int | float) for r in records):
                numbers[key] = headline(method_scores(records, key))
    return fig, numbers


def figure_5_table(records: list[dict[str, Any]], caption: str) -> tuple[str, dict[str, dict[str, list[float]]]]:
    """Figure 5's numbers per method: answer containment and token F1, each as the mean over seeds,
    its 95 % t-CI over seeds and the 95 % bootstrap over the questions; the judge's accuracy
    (mean over seeds) beside them when a judge ran. Returns the markdown and the bootstrap
    intervals per metric and label."""
    extra = None
    if accuracy_metric(records) == "judge_accuracy":
        judged = {s["label"]: s["summary"]["mean"] for s in method_scores(records, "judge_accuracy")}
        extra = ("accuracy (LLM judge), mean over seeds", lambda runs: f"{judged[runs[0]['label']]:.4f}")
    return score_table(records, f"**Figure 5 (reproduction), the numbers: QABot ({TARGET}) per method**", caption,
                       [("contains", "contains", METRIC_NAMES["contains"]), ("f1", "f1", METRIC_NAMES["f1"])],
                       unit="questions", skills=skill_names(SETTING, records), extra=extra)


def make_figure_5(profile: str, seeds: list[int] | None = None) -> Outcome:
    seeds = load.resolve_seeds(profile, SETTING, seeds)
    out = Outcome("figure_5", "QABot accuracy per method", profile)
    records, out.missing = load.gather(profile, SETTING, TARGET, seeds, REQUIRED)
    if out.missing:
        return out
    fig, out.numbers = figure_5(records, profile)
    out.table, boot = figure_5_table(records, records_caption(profile, records))
    for metric, intervals in boot.items():  # the table has containment's even when the judge's accuracy leads
        if intervals and metric in out.numbers:
            out.numbers[metric]["bootstrap95"] = intervals
    out.notes = load.partial_seeds(records, seeds)
    if accuracy_metric(records) == "contains":
        out.notes.append("no LLM judge scores in these results: accuracy is answer containment")
    out.files = [*save_figure(fig, out.name, profile), save_table(out.table, out.name, profile)]
    return out


__all__ = ["REQUIRED", "accuracy_metric", "figure_5", "figure_5_table", "make_figure_5"]
