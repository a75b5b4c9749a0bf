"""Ablations: learned vs. static CAT (the paper's Figure 9) and the learned alphas per layer.

* Figure 9 (§5, "Learning the weights of CAT"): per setting and target, the primary metric of
  static CAT (alpha = 0.5) and learned CAT, bars per panel and a table with the learned-minus-static
  difference paired by seed (mean [95% t-CI] over seeds). The paper's Table 3 is a different
  experiment (CAT vs DATA-MIX on two prompt versions of commonsense QA, hub-only data): not here.
* ``alphas_by_layer``: the learned alpha per layer (x) and module kind (y), one panel per skill,
  averaged over seeds, one file per setting (``alphas_by_layer_<setting>``); the paper shows no such
  figure. It reads the rows of :func:`lorasoups.merging.alphas_table` from the train result; it does
  not call :func:`~lorasoups.merging.plot_alphas` because that draws one row per module (150 rows
  for a 30-layer model) with a one-line title, while a paper figure needs layers along x and the
  profile / model / seeds caption.
* ``alpha_drift``: how far the alphas moved from their start during learning (mean and largest
  |alpha - alpha_0| over modules and skills, per logged step) beside the validation loss, for each
  learned-CAT recipe run (the default ``cat``, the paper's ``cat_paper``) and the ``cat_random``
  control, one file per setting (``alpha_drift_<setting>``): whether a recipe moved alpha at all.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from lorasoups.analysis import load
from lorasoups.analysis.load import ResultsError
from lorasoups.analysis.methods import method_scores, plot_method_bars
from lorasoups.analysis.outcome import Outcome
from lorasoups.analysis.save import save_figure, save_table
from lorasoups.analysis.stats import fmt, mean_ci, seeds_text
from lorasoups.task_kinds import TASKS

SETTINGS = ("math_code", "qabot", "reading_comprehension", "prompt_robustness", "prompt_robustness_1_4",
            "prompt_robustness_2_4")
#: module kinds top to bottom, in the order a decoder layer applies them
KIND_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
def primary_metric(records: list[dict[str, Any]]) -> str:
    """The metric the task is compared on: its first headline key every record carries (QA: the
    judge when every result has it, else F1; :data:`lorasoups.task_kinds.TASKS`)."""
    task = TASKS[records[0]["task"]]
    return next((k for k in task.headline if all(isinstance(r["metrics"].get(k), int | float) for r in records)),
                task.headline[-1])


#: Learned-CAT labels Figure 9 sets against static CAT: ``cat`` (the ``cat`` section's recipe) and
#: the other recipes of ``experiment.cat_recipes`` where they were run.
LEARNED_CAT = ("cat", "cat_converge", "cat_paper", "cat_released")


def learned_vs_static(records: list[dict[str, Any]], learned: str = "cat") -> list[dict[str, Any]]:
    """Rows per (setting, target) with ``learned`` and ``cat_static`` results for the same seeds:
    metric, static and learned summaries, and the paired difference (learned - static)."""
    groups: dict[tuple[str, str], dict[str, dict[int, dict[str, Any]]]] = {}
    for r in records:
        if r["label"] in (learned, "cat_static"):
            groups.setdefault((r["setting"], r["target"]), {}).setdefault(r["label"], {})[r["seed"]] = r
    rows = []
    order = {s: i for i, s in enumerate(SETTINGS)}
    for (setting, target), by_label in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0])):
        if set(by_label) != {learned, "cat_static"}:
            continue
        seeds = sorted(set(by_label[learned]) & set(by_label["cat_static"]))
        if not seeds:
            continue
        pair = [by_label[lb][s] for lb in (learned, "cat_static") for s in seeds]
        metric = primary_metric(pair)
        scores = [float(by_label[learned][s]["metrics"][metric]) for s in seeds]
        static = [float(by_label["cat_static"][s]["metrics"][metric]) for s in seeds]
        rows.append({"setting": setting, "target": target, "learned_label": learned, "metric": metric, "seeds": seeds,
                     "static": mean_ci(static), "learned": mean_ci(scores),
                     "difference": mean_ci([a - b for a, b in zip(scores, static)]),
                     "models": sorted({r["model"] for r in pair}), "n": sorted({r["n"] for r in pair}),
                     "target_data": sorted({r["target_data"] for r in pair if r.get("target_data")})})
    return rows


def figure_9_table(rows: list[dict[str, Any]], profile: str) -> tuple[str, dict[str, Any]]:
    """Markdown of :func:`learned_vs_static` rows and the numbers for the summary."""
    models = sorted({m for r in rows for m in r["models"]})
    lines = [
        "**Figure 9 (reproduction): learned vs. static CAT** (static: alpha = 0.5; difference paired by seed; "
        "mean [95% t-CI] over seeds)",
        f"_profile {profile} · model {', '.join(models)}_",
        "",
        "| setting | target | metric | n | seeds | CAT static | learned | CAT learned | learned - static |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    numbers: dict[str, Any] = {}
    for r in rows:
        n = "/".join(map(str, r["n"]))
        label = r.get("learned_label", "cat")
        target = "; ".join(r.get("target_data") or []) or r["target"]  # names a generated stand-in
        lines.append(f"| {r['setting']} | {target} | {r['metric']} | {n} | {seeds_text(r['seeds'])} | "
                     f"{fmt(r['static'])} | {label} | {fmt(r['learned'])} | {fmt(r['difference'])} |")
        key = f"{r['setting']}/{r['target']}" + ("" if label == "cat" else f"/{label}")
        numbers[key] = {"static": r["static"]["mean"], "learned": r["learned"]["mean"],
                        "difference": r["difference"]["mean"]}
    return "\n".join(lines), numbers


def mean_alphas(tables: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The alpha table averaged over seeds; every seed must cover the same (module, skill) cells."""
    if not tables:
        raise ValueError("mean_alphas: no alpha tables")
    keys = [[(r["module"], r["skill"]) for r in t] for t in tables]
    for i, k in enumerate(keys[1:], 1):
        if set(k) != set(keys[0]):
            raise ValueError(f"mean_alphas: alpha table {i} covers other (module, skill) cells than table 0")
    values: dict[tuple[str, str], list[float]] = {}
    for t in tables:
        for r in t:
            values.setdefault((r["module"], r["skill"]), []).append(float(r["alpha"]))
    first = {(r["module"], r["skill"]): r for r in tables[0]}
    return [{**first[k], "alpha": sum(v) / len(v)} for k, v in values.items()]


def alpha_heatmap(table: list[dict[str, Any]], title: str) -> Figure:
    """Heatmap per skill: alpha by layer (x) and module kind (y), a shared colour scale."""
    skills = list(dict.fromkeys(r["skill"] for r in table))
    found = set(r["kind"] for r in table)
    kinds = [k for k in KIND_ORDER if k in found] + sorted(found - set(KIND_ORDER))
    layers = sorted({r["layer"] for r in table}, key=lambda x: (x is None, x if x is not None else 0))
    sums = {sk: np.zeros((len(kinds), len(layers))) for sk in skills}
    counts = {sk: np.zeros((len(kinds), len(layers))) for sk in skills}
    for r in table:  # one module per (layer, kind) in a decoder; the mean if a model has more
        i, j = kinds.index(r["kind"]), layers.index(r["layer"])
        sums[r["skill"]][i, j] += r["alpha"]
        counts[r["skill"]][i, j] += 1
    grids = {sk: np.where(counts[sk] > 0, sums[sk] / np.maximum(counts[sk], 1), np.nan) for sk in skills}
    vals = [r["alpha"] for r in table]
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    fig = Figure(figsize=(max(6.0, 0.28 * len(layers) + 3.0), (0.32 * len(kinds) + 1.0) * len(skills) + 1.2),
                 layout="constrained")
    axes = fig.subplots(len(skills), 1, squeeze=False)[:, 0]
    for ax, sk in zip(axes, skills):
        im = ax.imshow(grids[sk], vmin=lo, vmax=hi, cmap="viridis", aspect="auto")
        ax.set_yticks(range(len(kinds)), kinds, fontsize=8)
        step = max(1, len(layers) // 16)
        ax.set_xticks(range(0, len(layers), step), [str(layers[k]) for k in range(0, len(layers), step)], fontsize=8)
        ax.set_title(f"skill: {sk}", fontsize=9)
    axes[-1].set_xlabel("layer")
    bar = fig.colorbar(im, ax=list(axes), label="alpha")
    bar.formatter.set_useOffset(False)  # print 0.50006, not 0.00006 under a "+5e-1" offset
    fig.suptitle(title, fontsize=9)
    return fig


def make_figure_9(profile: str, seeds: list[int] | None = None) -> Outcome:
    from lorasoups.data.registry import get_setting

    out = Outcome("figure_9", "learned vs. static CAT", profile)
    records, absent = [], []
    for setting in SETTINGS:
        s_seeds = load.resolve_seeds(profile, setting, seeds)
        need = [load.eval_path(profile, setting, lb, t, s) for lb in ("cat", "cat_static")
                for t in get_setting(setting).targets for s in s_seeds]
        lacking = load.missing(need)
        if lacking:
            absent += lacking
            out.notes.append(f"{setting}: left out, {len(lacking)} CAT / static CAT result(s) missing")
            continue
        records += [r for r in load.eval_records(profile, setting, seeds=s_seeds)
                    if r["label"] in ("cat_static", *LEARNED_CAT) and r["target"] in get_setting(setting).targets]
    rows = [row for lb in LEARNED_CAT for row in learned_vs_static(records, lb)]
    if not rows:
        out.missing, out.notes = absent, []
        return out
    out.table, out.numbers = figure_9_table(rows, profile)
    panels = []
    for row in [r for r in rows if r["learned_label"] == "cat"]:  # one panel per (setting, target), every recipe
        recs = [r for r in records if (r["setting"], r["target"]) == (row["setting"], row["target"])
                and r["seed"] in row["seeds"]]
        panels.append((method_scores(recs, row["metric"]), f"{row['setting']} / {row['target']}: {row['metric']}"))
    models = ", ".join(sorted({m for r in rows for m in r["models"]}))
    fig = plot_method_bars(panels, f"Figure 9 (reproduction): learned (each recipe run) vs. static CAT (alpha = 0.5)\n"
                                   f"profile {profile} · model {models}")
    out.files = [save_table(out.table, out.name, profile), *save_figure(fig, out.name, profile)]
    return out


def make_alphas_by_layer(profile: str, seeds: list[int] | None = None) -> Outcome:
    out = Outcome("alphas_by_layer", "learned CAT alpha per layer and module", profile)
    absent: list[Path] = []
    for setting in SETTINGS:
        s_seeds = load.resolve_seeds(profile, setting, seeds, folder="train")
        files = [load.train_path(profile, setting, "cat", s) for s in s_seeds]
        lacking = load.missing(files)
        if lacking:
            absent += lacking
            continue
        recs = [load.train_record(f) for f in files]
        table = mean_alphas([load.alpha_rows(r) for r in recs])
        models = ", ".join(sorted({r["model"] for r in recs}))
        seeds_txt = (f"seed {s_seeds[0]} (n=1)" if len(s_seeds) == 1
                     else f"mean over {len(s_seeds)} seeds ({', '.join(map(str, s_seeds))})")
        title = (f"Learned CAT alpha per layer, {setting}\n"
                 f"profile {profile} · model {models} · {seeds_txt}")
        out.files += save_figure(alpha_heatmap(table, title), f"alphas_by_layer_{setting}", profile)
        vals = [r["alpha"] for r in table]
        out.numbers[setting] = {"alpha_min": min(vals), "alpha_max": max(vals), "alpha_mean": sum(vals) / len(vals),
                                # a string: 3-digit rounding would show a barely trained CAT as exactly 0
                                "alpha_spread": f"{max(vals) - min(vals):.1e}"}
    return _with_absent(out, absent, profile)


def _with_absent(out: Outcome, absent: list[Path], profile: str) -> Outcome:
    """Settings without a learned CAT run: notes beside the files drawn, else what is missing."""
    if out.files:
        out.notes += [f"no learned CAT run: {p.relative_to(load.root(profile))}" for p in absent]
    else:
        out.missing = absent
    return out


#: learned runs whose alpha drift is drawn: every recipe of Figure 9, and the random-LoRA control
DRIFT_LABELS = (*LEARNED_CAT, "cat_random")


def drift_series(record: dict[str, Any]) -> dict[str, Any]:
    """Per logged step of a learned run: mean and max |alpha - alpha_0| (mean / max over skills of
    the per-skill figures the run logged) and the validation loss points."""
    m, path = record["metrics"], record["path"]
    drift, points = m.get("alpha_drift"), m.get("eval_points")
    if not isinstance(drift, list) or not drift:
        raise ResultsError(f"{path}: metrics.alpha_drift is missing or empty (a learned CAT run records it)")
    rows = []
    for i, d in enumerate(drift):
        if not isinstance(d, dict) or not all(k in d for k in ("step", "mean", "max")):
            raise ResultsError(f"{path}: metrics.alpha_drift[{i}]: needs 'step', 'mean' and 'max'")
        rows.append((int(d["step"]), float(np.mean(list(d["mean"].values()))), float(max(d["max"].values()))))
    loss = [(int(p["step"]), float(p["eval_loss"])) for p in points or []]
    return {"steps": [r[0] for r in rows], "mean": [r[1] for r in rows], "max": [r[2] for r in rows],
            "loss_steps": [p[0] for p in loss], "loss": [p[1] for p in loss]}


def drift_figure(series: dict[tuple[str, int], dict[str, Any]], title: str) -> Figure:
    """Left: |alpha - alpha_0| per step (solid: mean, dotted: largest), right: validation loss."""
    fig = Figure(figsize=(10.0, 3.6), layout="constrained")
    ax_d, ax_l = fig.subplots(1, 2)
    colours = {lb: f"C{i}" for i, lb in enumerate(DRIFT_LABELS)}
    for (label, seed), s in sorted(series.items()):
        tag = f"{label} s{seed}"
        ax_d.plot(s["steps"], s["mean"], color=colours[label], marker=".", label=f"{tag} (mean)")
        ax_d.plot(s["steps"], s["max"], color=colours[label], linestyle=":", label=f"{tag} (largest)")
        if s["loss"]:
            ax_l.plot(s["loss_steps"], s["loss"], color=colours[label], marker=".", label=tag)
    ax_d.set_xlabel("step")
    ax_d.set_ylabel("|alpha - alpha_0|")
    ax_d.set_yscale("symlog", linthresh=1e-4)  # the paper's recipe moves alpha by ~1e-4, ours by ~0.3
    ax_d.legend(fontsize=7)
    ax_l.set_xlabel("step")
    ax_l.set_ylabel("validation loss")
    ax_l.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig


def make_alpha_drift(profile: str, seeds: list[int] | None = None) -> Outcome:
    out = Outcome("alpha_drift", "alpha drift during learning, per recipe", profile)
    absent: list[Path] = []
    for setting in SETTINGS:
        s_seeds = load.resolve_seeds(profile, setting, seeds, folder="train")
        files = {(lb, s): load.train_path(profile, setting, lb, s) for lb in DRIFT_LABELS for s in s_seeds}
        found = {k: f for k, f in files.items() if f.is_file()}
        if not any(lb == "cat" for lb, _ in found):
            absent += [files["cat", s] for s in s_seeds]
            continue
        recs = {k: load.train_record(f) for k, f in found.items()}
        series = {k: drift_series(r) for k, r in recs.items()}
        models = ", ".join(sorted({r["model"] for r in recs.values()}))
        title = (f"Alpha drift during learning, {setting}\n"
                 f"profile {profile} · model {models} · seeds {', '.join(map(str, s_seeds))}, a line each")
        out.files += save_figure(drift_figure(series, title), f"alpha_drift_{setting}", profile)
        for (label, seed), s in series.items():
            m = recs[label, seed]["metrics"]
            out.numbers[f"{setting}/{label}/s{seed}"] = {
                "steps": s["steps"][-1], "final_drift_mean": f"{s['mean'][-1]:.1e}", "final_drift_max": f"{s['max'][-1]:.1e}",
                "eval_loss_before": m.get("eval_loss_before"), "eval_loss_best": m.get("eval_loss_best"),
                "best_step": m.get("best_step")}
    return _with_absent(out, absent, profile)


__all__ = ["alpha_heatmap", "drift_figure", "drift_series", "figure_9_table", "learned_vs_static", "make_alpha_drift",
           "make_alphas_by_layer", "make_figure_9", "mean_alphas", "primary_metric"]
