"""Beyond the paper: one figure and one result JSON per experiment of ``configs/beyond/``.

For each variant (x axis, in the spec's order), setting (one panel each) and compared model (one
line each): the setting's primary metric (exec accuracy, prompt-format accuracy averaged over the
unseen formats, the QA judge's accuracy when every result has it, else token F1), mean and 95%
t-CI over seeds. The numbers also hold, per variant and setting, learned minus static CAT, learned
CAT minus DATA-MIX and CAT's super-linearity (its gain over the base model minus the sum of the k
skills' gains), all paired by seed. An experiment whose variants run different settings (k = 2, 3,
4 skills) names panels in its spec; each panel then shows one family across the variants.
``results/<profile>/beyond/<name>/summary.json`` keeps them; the figure is ``beyond_<name>`` in
``figures_dir(profile)``.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from lorasoups import paths
from lorasoups.analysis import load
from lorasoups.analysis.ablations import primary_metric
from lorasoups.analysis.methods import display_name
from lorasoups.analysis.outcome import Outcome
from lorasoups.analysis.save import save_figure
from lorasoups.analysis.stats import mean_ci, seeds_text


def variant_scores(profile: str, variant: str, ns: str, panels: dict[str, str], labels: list[str],
                   seeds: list[int] | None) -> dict[str, Any]:
    """``{panel: {"setting", "k", "metric", "per_seed": {label: {seed: value}}}}`` of one variant's
    namespace. ``panels``: panel -> the setting the variant ran for it
    (:func:`lorasoups.variants.variant_settings`). Targets of a setting are averaged per seed; a
    label needs every target for a seed."""
    from lorasoups.data import get_setting

    out: dict[str, Any] = {}
    with paths.in_namespace(ns):
        for panel, setting in panels.items():
            recs = [r for r in load.eval_records(profile, setting, seeds=seeds) if r["label"] in labels]
            if not recs:
                continue
            metric = primary_metric(recs)
            targets = sorted({r["target"] for r in recs})
            per: dict[str, dict[int, list[float]]] = {}
            for r in recs:
                per.setdefault(r["label"], {}).setdefault(r["seed"], []).append(float(r["metrics"][metric]))
            per_seed = {lb: {s: float(np.mean(v)) for s, v in by.items() if len(v) == len(targets)}
                        for lb, by in per.items()}
            out[panel] = {"setting": setting, "k": get_setting(setting).k, "metric": metric, "targets": targets,
                          "per_seed": per_seed, "models": sorted({r["model"] for r in recs})}
    return out


def _paired(a: dict[int, float], b: dict[int, float]) -> list[float]:
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def superlinearity(ps: dict[str, dict[int, float]], skills: list[str], merged: str = "cat") -> list[float]:
    """Per seed: the merge's gain over the base minus the sum of the k skills' gains (seeds where
    the base, the merge and every skill have a score)."""
    need = ["base", merged, *skills]
    if not all(lb in ps for lb in need):
        return []
    seeds = sorted(set.intersection(*(set(ps[lb]) for lb in need)))
    return [(ps[merged][s] - ps["base"][s]) - sum(ps[sk][s] - ps["base"][s] for sk in skills) for s in seeds]


#: paired differences kept in the summary: (name, model, reference)
CONTRASTS = (("cat_minus_static", "cat", "cat_static"), ("cat_minus_datamix", "cat", "datamix"),
             ("cat_lorahub_minus_cat", "cat_lorahub", "cat"), ("cat_svd_minus_cat", "cat_svd", "cat"))


def summarise(scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean [CI] per variant / panel / label, paired differences (learned - static CAT, learned CAT -
    DATA-MIX, LoraHub-started and SVD-compressed CAT - learned CAT) and CAT's super-linearity over
    the setting's k skills, all paired by seed."""
    from lorasoups.data import get_setting

    out: dict[str, Any] = {}
    for variant, by_panel in scores.items():
        for panel, sc in by_panel.items():
            ps = sc["per_seed"]
            row: dict[str, Any] = {"setting": sc.get("setting", panel), "k": sc.get("k"), "metric": sc["metric"],
                                   "targets": sc["targets"], "models": sc["models"],
                                   "scores": {lb: {**mean_ci(list(v.values())), "seeds": sorted(v)}
                                              for lb, v in ps.items() if v}}
            for name, a, b in CONTRASTS:
                if a in ps and b in ps and _paired(ps[a], ps[b]):
                    row[name] = mean_ci(_paired(ps[a], ps[b]))
            sl = superlinearity(ps, get_setting(row["setting"]).labels)
            if sl:
                row["cat_superlinearity"] = mean_ci(sl)
            out.setdefault(variant, {})[panel] = row
    return out


def figure(spec, summary: dict[str, Any], profile: str, settings: list[str], labels: list[str]) -> Figure:
    """One panel per setting: the metric per variant (x), one line per model with 95% CI bars."""
    variants = list(summary)
    fig = Figure(figsize=(4.2 * len(settings) + 1.5, 3.8))
    axes = fig.subplots(1, len(settings), squeeze=False)[0]
    x = np.arange(len(variants))
    seeds_all: set[int] = set()
    models: set[str] = set()
    for ax, setting in zip(axes, settings):
        metric = next((summary[v][setting]["metric"] for v in variants if setting in summary[v]), "")
        for i, label in enumerate(labels):
            ys, lo, hi, xs = [], [], [], []
            for j, v in enumerate(variants):
                sc = summary[v].get(setting, {}).get("scores", {}).get(label)
                if sc is None:
                    continue
                seeds_all.update(sc["seeds"])
                models.update(summary[v][setting]["models"])
                xs.append(j + (i - len(labels) / 2) * 0.04)
                ys.append(sc["mean"])
                lo.append(sc["mean"] - (sc["low"] if sc["low"] is not None else sc["mean"]))
                hi.append((sc["high"] if sc["high"] is not None else sc["mean"]) - sc["mean"])
            if xs:
                style = "-o" if label in ("cat", "cat_static") else "--."
                ax.errorbar(xs, ys, yerr=[lo, hi], fmt=style, capsize=3, label=display_name(label))
        ax.set_xticks(x, variants, rotation=30, ha="right", fontsize=8)
        ax.set_title(setting, fontsize=9)
        ax.set_ylabel(metric)
        ax.set_xlabel(spec.axis, fontsize=8)
    axes[-1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{spec.title}\nprofile {profile} · model {', '.join(sorted(models))} · "
                 f"{seeds_text(sorted(seeds_all))} · mean and 95% t-CI over seeds", fontsize=9)
    fig.tight_layout()
    return fig


def _train_records(profile: str, ns: str, setting: str, label: str, seeds: list[int] | None) -> list[dict[str, Any]]:
    """The train records of ``label`` in one variant's namespace, for the seeds that have one."""
    with paths.in_namespace(ns):
        s_seeds = load.resolve_seeds(profile, setting, seeds, folder="train")
        files = [load.train_path(profile, setting, label, s) for s in s_seeds]
        return [load.train_record(f) for f in files if f.is_file()]


def layer_alphas(profile: str, ns: str, setting: str, seeds: list[int] | None) -> dict[str, list[list[float]]]:
    """Learned CAT's alpha per layer in one variant's namespace: ``{skill: [[layer, alpha], ...]}``,
    alpha averaged over the layer's modules and over seeds ({} when no learned CAT run is recorded)."""
    from lorasoups.analysis.ablations import mean_alphas

    recs = _train_records(profile, ns, setting, "cat", seeds)
    if not recs:
        return {}
    by: dict[str, dict[int, list[float]]] = {}
    for r in mean_alphas([load.alpha_rows(rec) for rec in recs]):
        if r["layer"] is not None:
            by.setdefault(str(r["skill"]), {}).setdefault(int(r["layer"]), []).append(float(r["alpha"]))
    return {sk: [[layer, float(np.mean(v))] for layer, v in sorted(layers.items())] for sk, layers in by.items()}


def compression(profile: str, ns: str, setting: str, seeds: list[int] | None) -> dict[str, Any]:
    """What the SVD export of learned CAT kept, over seeds: ``{"rank_before", "rank_after",
    "energy_kept": mean_ci, "rel_error": mean_ci}`` ({} when no ``cat_svd`` run is recorded)."""
    recs = _train_records(profile, ns, setting, "cat_svd", seeds)
    if not recs:
        return {}
    return {"rank_before": recs[0]["metrics"].get("rank_before"), "rank_after": recs[0]["metrics"].get("rank_after"),
            **{k: mean_ci([float(r["metrics"][k]) for r in recs]) for k in ("energy_kept", "rel_error")}}


def alpha_figure(spec, alphas: dict[str, dict[str, dict[str, list[list[float]]]]], profile: str) -> Figure:
    """Learned alpha by layer: one row per panel, one column per skill (in order), one line per variant."""
    panels = list(dict.fromkeys(p for by in alphas.values() for p in by))  # the spec's column order
    k = max(len(sk) for by in alphas.values() for sk in by.values())
    fig = Figure(figsize=(3.6 * k + 1.0, 2.8 * len(panels) + 0.8))
    axes = fig.subplots(len(panels), k, squeeze=False)
    for row, panel in enumerate(panels):
        for i, (variant, by) in enumerate(alphas.items()):
            for col, pts in enumerate((by.get(panel) or {}).values()):
                ax = axes[row][col]  # one colour per variant in every panel, whichever skills it has
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", ms=3, label=variant, color=f"C{i % 10}")
                ax.set_title(f"{panel} · skill {col + 1}", fontsize=8)
                ax.set_xlabel("layer", fontsize=8)
                ax.set_ylabel("alpha (mean over modules)", fontsize=7)
        axes[row][0].legend(fontsize=6, loc="best")  # skill 1 exists in every variant: the full legend
    fig.suptitle(f"{spec.title}: learned CAT alpha by layer\nprofile {profile} · mean over the layer's modules "
                 f"and over seeds", fontsize=9)
    fig.tight_layout()
    return fig


def make_beyond(name: str, profile: str, seeds: list[int] | None = None) -> Outcome:
    """Figure ``beyond_<name>`` and ``results/<profile>/beyond/<name>/summary.json``."""
    from lorasoups.variants import load_spec, namespace, variant_dirs, variant_settings

    spec = load_spec(name)
    prof = getattr(spec, profile, None)
    settings = (prof.settings if prof is not None and prof.settings else None) or spec.settings
    out = Outcome(f"beyond_{name}", spec.title, profile)
    found = variant_dirs(name, profile, spec)  # the spec read above, not read again
    if not found:
        out.missing = [paths.results_dir(profile) / "beyond" / name / v for v in spec.variants]
        return out
    panels = {v: variant_settings(spec, v, settings) for v in found}  # panel -> setting, per variant
    scores = {v: variant_scores(profile, v, namespace(name, v), panels[v], spec.labels, seeds) for v in found}
    scores = {v: s for v, s in scores.items() if s}
    if not scores:
        out.notes.append("variant folders exist but hold no evaluation results yet")
        return out
    absent = [v for v in spec.variants if v not in scores]
    if absent:
        out.notes.append(f"variants without results (not drawn): {', '.join(absent)}")
    out.numbers = summarise(scores)
    drawn = [s for s in settings if any(s in out.numbers[v] for v in out.numbers)]
    out.files = save_figure(figure(spec, out.numbers, profile, drawn, spec.figure_labels or spec.labels),
                            out.name, profile)
    alphas: dict[str, dict[str, Any]] = {}
    for v in scores:
        for panel, st in panels[v].items():
            ns = namespace(name, v)
            if a := layer_alphas(profile, ns, st, seeds):  # the paper's §6, question 2: alpha by layer
                alphas.setdefault(v, {})[panel] = a
                out.numbers.setdefault(v, {}).setdefault(panel, {})["cat_alpha_by_layer"] = a
            if panel in out.numbers.get(v, {}) and (c := compression(profile, ns, st, seeds)):
                out.numbers[v][panel]["cat_svd_compression"] = c  # the bonus: what the SVD export keeps
    if alphas:
        out.files += save_figure(alpha_figure(spec, alphas, profile), f"{out.name}_alphas", profile)
    result = paths.results_dir(profile) / "beyond" / name / "summary.json"
    result.write_text(json.dumps({"experiment": name, "title": spec.title, "question": spec.question,
                                  "axis": spec.axis, "profile": profile, "variants": out.numbers},
                                 indent=2, default=float) + "\n")
    out.files.append(result)
    return out


def _builder(name: str):
    def build(profile: str, seeds: list[int] | None = None) -> Outcome:
        return make_beyond(name, profile, seeds)
    return build


make_beyond_granularity = _builder("granularity")
make_beyond_rank = _builder("rank")
make_beyond_cat_data = _builder("cat_data")
make_beyond_skills = _builder("skills")
make_beyond_cat_extensions = _builder("cat_extensions")

__all__ = ["CONTRASTS", "figure", "make_beyond", "summarise", "superlinearity", "variant_scores"]
