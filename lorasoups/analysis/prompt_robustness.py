"""Prompt robustness: Figures 10a-c, accuracy on held-out prompt formats, one per training pair.

Skills are task 161 in two training formats (10a: formats 1 + 4, setting ``prompt_robustness_1_4``;
10b: 1 + 2, ``prompt_robustness``; 10c: 2 + 4, ``prompt_robustness_2_4``); targets are the unseen
formats 3, 7, 8 and 10. Left:
the grid of accuracy per (method, format), mean over seeds (:class:`RobustnessGrid` draws it, as
in the paper's Figure 10). Right: each method's accuracy averaged over the formats, mean and 95%
t-CI over seeds, so the seeds' spread is visible even though the grid shows means.
"""
from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from lorasoups.analysis import load
from lorasoups.analysis.methods import display_name, order_labels, records_caption, skill_names
from lorasoups.analysis.outcome import Outcome
from lorasoups.analysis.save import save_figure
from lorasoups.analysis.stats import mean_ci
from lorasoups.evaluation.robustness import RobustnessGrid

#: Figure panel -> the setting whose pair of training formats it shows (the paper's Figure 10).
PANELS = {"a": "prompt_robustness_1_4", "b": "prompt_robustness", "c": "prompt_robustness_2_4"}
REQUIRED = ("base", "skill1", "skill2", "cat")


def _targets(setting: str) -> tuple[str, ...]:
    from lorasoups.data.registry import get_setting

    return get_setting(setting).targets


def pair_name(setting: str) -> str:
    """``formats 1 + 4`` for a setting's training formats."""
    from lorasoups.data.registry import get_setting

    return "formats " + " + ".join(format_name(k).removeprefix("format ") for k in get_setting(setting).skills)


def format_name(target: str) -> str:
    """``count_format10`` -> ``format 10``."""
    return "format " + target.removeprefix("count_format") if target.startswith("count_format") else target


def robustness_cells(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[int, float]]]:
    """``[label][target][seed]`` -> accuracy (one result per cell and seed)."""
    cells: dict[str, dict[str, dict[int, float]]] = {}
    for r in records:
        per_seed = cells.setdefault(r["label"], {}).setdefault(r["target"], {})
        if r["seed"] in per_seed:
            raise load.ResultsError(f"{r['path']}: a second result for {r['label']}, {r['target']}, seed {r['seed']}")
        per_seed[r["seed"]] = float(r["metrics"]["accuracy"])
    return cells


def figure_10(records: list[dict[str, Any]], profile: str, targets: tuple[str, ...],
              skills: tuple[str, ...] | None = None, panel: str = "b",
              pair: str = "formats 1 + 2") -> tuple[Figure, dict[str, Any]]:
    """Grid of mean accuracy per (method, held-out format) and per-method mean over formats.

    Every method must have every target for the same seeds (the caller keeps only such methods).
    """
    cells = robustness_cells(records)
    labels = order_labels(cells)
    names = {lb: display_name(lb, skills) for lb in labels}
    grid = RobustnessGrid({names[lb]: {format_name(t): sum(cells[lb][t].values()) / len(cells[lb][t])
                                       for t in targets} for lb in labels})
    overall = {}
    for lb in labels:
        seeds = sorted(cells[lb][targets[0]])
        overall[lb] = mean_ci([sum(cells[lb][t][s] for t in targets) / len(targets) for s in seeds])
    fig = Figure(figsize=(1.2 * len(targets) + 9.0, 0.5 * len(labels) + 2.2))
    ax_grid, ax_bar = fig.subplots(1, 2, gridspec_kw={"width_ratios": [len(targets) + 2, 4]})
    grid.plot(ax_grid)
    for i, lb in enumerate(labels):
        summ = overall[lb]
        y = len(labels) - 1 - i  # same top-to-bottom order as the grid
        ax_bar.barh(y, summ["mean"], color="tab:red" if lb == "cat" else "tab:blue", alpha=0.8)
        if summ["low"] is not None:
            ax_bar.errorbar(summ["mean"], y, xerr=[[summ["mean"] - summ["low"]], [summ["high"] - summ["mean"]]],
                            color="k", capsize=3, lw=1)
    ax_bar.set_yticks(range(len(labels)), [names[lb] for lb in reversed(labels)])
    ax_bar.set_xlim(0, 1.05)
    ax_bar.set_xlabel("accuracy, mean over held-out formats")
    fig.suptitle(f"Figure 10{panel} (reproduction): task 161 trained on {pair}, accuracy on unseen prompt formats\n"
                 + records_caption(profile, records), fontsize=9)
    fig.tight_layout()
    numbers = {"mean_over_formats": {lb: overall[lb]["mean"] for lb in labels},
               "worst_format": {lb: grid.summary()[names[lb]]["min"] for lb in labels}}
    return fig, numbers


def make_figure_10(profile: str, seeds: list[int] | None = None, panel: str = "b") -> Outcome:
    """Figure 10``panel`` from the results of its setting (:data:`PANELS`)."""
    setting = PANELS[panel]
    seeds = load.resolve_seeds(profile, setting, seeds)
    targets = _targets(setting)
    out = Outcome(f"figure_10{panel}", f"accuracy on held-out prompt formats, trained on {pair_name(setting)}", profile)
    out.missing = load.missing([load.eval_path(profile, setting, lb, t, s)
                                for lb in REQUIRED for t in targets for s in seeds])
    if out.missing:
        return out
    records = [r for r in load.eval_records(profile, setting, seeds=seeds) if r["target"] in targets]
    cells = robustness_cells(records)
    incomplete = [lb for lb in cells if any(set(cells[lb].get(t, {})) != set(seeds) for t in targets)]
    for lb in incomplete:
        out.notes.append(f"{lb}: left out, it lacks some (format, seed) results of {len(targets)} formats x seeds {seeds}")
    records = [r for r in records if r["label"] not in incomplete]
    fig, out.numbers = figure_10(records, profile, targets, skill_names(setting, records), panel, pair_name(setting))
    out.files = save_figure(fig, out.name, profile)
    return out


def make_figure_10a(profile: str, seeds: list[int] | None = None) -> Outcome:
    return make_figure_10(profile, seeds, "a")


def make_figure_10b(profile: str, seeds: list[int] | None = None) -> Outcome:
    return make_figure_10(profile, seeds, "b")


def make_figure_10c(profile: str, seeds: list[int] | None = None) -> Outcome:
    return make_figure_10(profile, seeds, "c")


__all__ = ["PANELS", "REQUIRED", "figure_10", "format_name", "make_figure_10", "make_figure_10a",
           "make_figure_10b", "make_figure_10c", "robustness_cells"]
