"""One score per method (mean and 95% CI over seeds) and the bar chart Figures 4 and 5 share."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lorasoups.analysis import load
from lorasoups.analysis.load import ResultsError
from lorasoups.analysis.stats import bootstrap_mean_ci, caption, mean_ci
from lorasoups.results import MODEL_LABELS

#: the order methods appear in every figure and table (results/README.md labels).
LABEL_ORDER = MODEL_LABELS
NAMES = {"base": "base", "datamix": "DATA-MIX", "datamix_seq": "DATA-MIX (seq.)", "linear": "linear",
         "ties": "TIES", "dare": "DARE", "lorahub": "LoraHub", "moe": "MoE", "cat_static": "CAT static",
         "cat": "CAT (learned)", "cat_converge": "CAT (converged recipe)", "cat_paper": "CAT (paper recipe)",
         "cat_released": "CAT (released recipe)", "cat_lorahub": "CAT (from LoraHub)", "cat_svd": "CAT (SVD export)",
         "random_alpha": "CAT (random α)", "cat_random": "CAT (random skill)", "cat_data_lora": "LoRA on CAT's data",
         "oracle": "oracle (target data)", "rag": "RAG bound"}
_SKILL = re.compile(r"^skill(\d+)$")


def skill_names(setting: str, records: Iterable[dict[str, Any]] = ()) -> tuple[str, ...]:
    """The setting's skill dataset names (k of them): from the records' ``config.run.skills`` when
    they are a list of names, else from the data registry. A skill whose LoRA was trained on the
    package's generated miniature (its train result says ``source: generated``) is named
    ``<name> (generated)``: a registry name such as ``metamathqa`` must not pass for the real data."""
    records = list(records)
    for r in records:
        s = r.get("skills")
        if isinstance(s, list | tuple) and len(s) >= 2 and all(isinstance(x, str) for x in s):
            return tuple(f"{n} (generated)" if _generated_skill(records, k, n) else n for k, n in enumerate(s, 1))
    from lorasoups.data.registry import get_setting

    return get_setting(setting).skills


def _generated_skill(records: Sequence[dict[str, Any]], k: int, name: str) -> bool:
    """Whether skill ``k``'s train result (beside the records' eval folder) names ``name`` as generated."""
    for r in records:
        if not isinstance(r.get("path"), Path):
            continue
        train = load.train_path_beside(r, f"skill{k}")
        if train.is_file():
            info = (load.read_json(train).get("datasets") or {}).get(name)
            return isinstance(info, dict) and info.get("source") == "generated"
    return False


def display_name(label: str, skills: tuple[str, ...] | None = None) -> str:
    """``CAT (learned)``, ``skill1: metamathqa``, ... (unknown labels as they are)."""
    m = _SKILL.match(label)
    if m and skills and 1 <= int(m[1]) <= len(skills):
        return f"{label}: {skills[int(m[1]) - 1]}"
    return NAMES.get(label, label)


def order_labels(labels: Iterable[str]) -> list[str]:
    """Labels in :data:`LABEL_ORDER`, unknown ones after, alphabetically."""
    uniq = set(labels)
    known = [lb for lb in LABEL_ORDER if lb in uniq]
    return known + sorted(uniq - set(LABEL_ORDER))


def records_caption(profile: str, records: Sequence[dict[str, Any]]) -> str:
    """The caption (profile, model, examples, seeds) of the records a figure is drawn from."""
    return caption(profile, [r["model"] for r in records], [r["n"] for r in records],
                   [r["seed"] for r in records], data=[r.get("target_data") for r in records])


def headline(scores: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Summary numbers: mean per label, and the 95% CI per label when there are several seeds."""
    out: dict[str, Any] = {"mean": {s["label"]: s["summary"]["mean"] for s in scores}}
    ci = {s["label"]: [s["summary"]["low"], s["summary"]["high"]] for s in scores if s["summary"]["low"] is not None}
    if ci:
        out["ci95"] = ci
    return out


def method_scores(records: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Per label: ``{"label", "values": {seed: v}, "summary": mean_ci(...)}`` of ``metrics[metric]``.

    The records must be of one target (two results for the same label and seed is an error).
    """
    by_label: dict[str, dict[int, float]] = {}
    for r in records:
        value = r["metrics"].get(metric)
        if not isinstance(value, int | float):
            raise ResultsError(f"{r['path']}: metrics.{metric} is missing or not a number")
        seeds = by_label.setdefault(r["label"], {})
        if r["seed"] in seeds:
            raise ResultsError(f"{r['path']}: a second result for label {r['label']!r}, seed {r['seed']}")
        seeds[r["seed"]] = float(value)
    return [{"label": lb, "values": dict(sorted(by_label[lb].items())),
             "summary": mean_ci(list(by_label[lb].values()))} for lb in order_labels(by_label)]


def item_bootstrap(runs: Sequence[dict[str, Any]], column: str | None = None) -> list[float] | None:
    """95 % percentile bootstrap over items of one method: each item's per-example score
    (``column``; default the task's, :data:`lorasoups.task_kinds.TASKS`' ``item_score``) averaged over
    the method's seeds, resampled over the items (every seed must have scored the same ones). None
    when a run has no per-example file (the interval over seeds is then all there is)."""
    if not runs:
        raise ValueError("item_bootstrap: no runs")
    if not all(load.examples_path(r["path"]).is_file() for r in runs):
        return None
    per_seed = [load.per_example(r, column) for r in runs]
    items = sorted(per_seed[0])
    for r, scores in zip(runs[1:], per_seed[1:]):
        if set(scores) != set(items):  # seeds scored on different items cannot be averaged per item
            raise ResultsError(f"{r['path']}: scored items differ from {runs[0]['path'].name}'s")
    ci = bootstrap_mean_ci([sum(s[i] for s in per_seed) / len(per_seed) for i in items])
    return [ci["lo"], ci["hi"]]


#: one column group of :func:`score_table`: (metric in the result JSON, per-example column or None
#: for the task's own, header).
Column = tuple[str, "str | None", str]


def score_table(records: Sequence[dict[str, Any]], title: str, caption_line: str, columns: Sequence[Column],
                unit: str = "items", skills: tuple[str, ...] | None = None,
                extra: tuple[str, Callable[[list[dict[str, Any]]], str]] | None = None,
                ) -> tuple[str, dict[str, dict[str, list[float]]]]:
    """The numbers behind a per-method figure, as markdown: per method and metric the mean over
    seeds, its 95 % t-CI over seeds (from 2 seeds) and the 95 % bootstrap over ``unit``
    (:func:`item_bootstrap`); ``extra`` adds one column (header, function of the method's runs).
    Returns the markdown and the bootstrap intervals per metric and label."""
    by_label: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_label.setdefault(r["label"], []).append(r)
    scores = {metric: {s["label"]: s["summary"] for s in method_scores(records, metric)} for metric, _, _ in columns}
    head = ["method"]
    for _, _, name in columns:
        head += [name, "95 % t-CI over seeds", f"95 % bootstrap over {unit}"]
    if extra:
        head.append(extra[0])
    lines = [title, f"_{caption_line}_", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    boot: dict[str, dict[str, list[float]]] = {metric: {} for metric, _, _ in columns}
    for label in order_labels(by_label):
        cells = [display_name(label, skills)]
        for metric, column, _ in columns:
            summary = scores[metric][label]
            ci = item_bootstrap(by_label[label], column)
            if ci is not None:
                boot[metric][label] = ci
            cells += [f"{summary['mean']:.4f}",
                      "-" if summary["low"] is None else f"[{summary['low']:.4f}, {summary['high']:.4f}]",
                      "- (no per-example file)" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]"]
        if extra:
            cells.append(extra[1](by_label[label]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), boot


def plot_method_bars(panels: Sequence[tuple[Sequence[dict[str, Any]], str]], title: str,
                     skills: tuple[str, ...] | None = None, unit_interval: bool = True) -> Figure:
    """One bar panel per ``(scores, ylabel)``: bars at the mean over seeds, a 95% CI whisker when
    there are several seeds, one dot per seed; learned CAT in red, base in grey."""
    width = max(5.0, 0.75 * max(len(sc) for sc, _ in panels) + 2.0)
    fig = Figure(figsize=(width * len(panels), 4.4))
    for p, (scores, ylabel) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        for i, s in enumerate(scores):
            summ = s["summary"]
            color = "tab:red" if s["label"] == "cat" else ("tab:gray" if s["label"] == "base" else "tab:blue")
            ax.bar(i, summ["mean"], color=color, alpha=0.8)
            if summ["low"] is not None:
                ax.errorbar(i, summ["mean"], yerr=[[summ["mean"] - summ["low"]], [summ["high"] - summ["mean"]]],
                            color="k", capsize=4, lw=1)
            vals = list(s["values"].values())
            ax.scatter([i] * len(vals), vals, color="k", s=10, zorder=3)
            ax.annotate(f"{summ['mean']:.2f}", (i, summ["mean"]), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(scores)), [display_name(s["label"], skills) for s in scores],
                      rotation=30, ha="right")
        ax.set_ylabel(ylabel)
        if unit_interval:
            ax.set_ylim(0, 1.05)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


__all__ = ["LABEL_ORDER", "NAMES", "Column", "display_name", "headline", "item_bootstrap", "method_scores",
           "order_labels", "plot_method_bars", "records_caption", "score_table", "skill_names"]
