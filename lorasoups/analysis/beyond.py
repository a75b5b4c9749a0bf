"""Beyond the paper: one figure and one result JSON per experiment of ``configs/beyond/``.

For each variant (x axis, in the spec's order), setting (one panel each) and compared model (one
line each): the setting's primary metric (exec accuracy, prompt-format accuracy averaged over the
unseen formats, the QA judge's accuracy when every result has it, else token F1), mean and 95%
t-CI over seeds. The numbers also hold, per variant and setting, learned minus static CAT and
CAT's super-linearity (its gain over the base model minus the two skills' gains), both paired by
seed. ``results/<profile>/beyond/<name>/summary.json`` keeps them; the figure is
``beyond_<name>`` in ``figures_dir(profile)``.
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


def variant_scores(profile: str, variant: str, ns: str, settings: list[str], labels: list[str],
                   seeds: list[int] | None) -> dict[str, Any]:
    """``{setting: {"metric", "per_seed": {label: {seed: value}}}}`` of one variant's namespace
    (targets of a setting averaged per seed; a label needs every target for a seed to count)."""
    out: dict[str, Any] = {}
    with paths.in_namespace(ns):
        for setting in settings:
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
            out[setting] = {"metric": metric, "targets": targets, "per_seed": per_seed,
                            "models": sorted({r["model"] for r in recs})}
    return out


def _paired(a: dict[int, float], b: dict[int, float]) -> list[float]:
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def summarise(scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean [CI] per variant / setting / label, learned - static CAT and CAT's super-linearity."""
    out: dict[str, Any] = {}
    for variant, by_setting in scores.items():
        for setting, sc in by_setting.items():
            ps = sc["per_seed"]
            row: dict[str, Any] = {"metric": sc["metric"], "targets": sc["targets"], "models": sc["models"],
                                   "scores": {lb: {**mean_ci(list(v.values())), "seeds": sorted(v)}
                                              for lb, v in ps.items() if v}}
            if "cat" in ps and "cat_static" in ps and _paired(ps["cat"], ps["cat_static"]):
                row["cat_minus_static"] = mean_ci(_paired(ps["cat"], ps["cat_static"]))
            if all(k in ps for k in ("cat", "base", "skill1", "skill2")):
                seeds = sorted(set(ps["cat"]) & set(ps["base"]) & set(ps["skill1"]) & set(ps["skill2"]))
                sl = [(ps["cat"][s] - ps["base"][s]) - ((ps["skill1"][s] - ps["base"][s]) + (ps["skill2"][s] - ps["base"][s]))
                      for s in seeds]
                if sl:
                    row["cat_superlinearity"] = mean_ci(sl)
            out.setdefault(variant, {})[setting] = row
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


def make_beyond(name: str, profile: str, seeds: list[int] | None = None) -> Outcome:
    """Figure ``beyond_<name>`` and ``results/<profile>/beyond/<name>/summary.json``."""
    from lorasoups.beyond import load_spec, namespace, variant_dirs

    spec = load_spec(name)
    prof = getattr(spec, profile, None)
    settings = (prof.settings if prof is not None and prof.settings else None) or spec.settings
    out = Outcome(f"beyond_{name}", spec.title, profile)
    found = variant_dirs(name, profile, spec)  # the spec read above, not read again
    if not found:
        out.missing = [paths.results_dir(profile) / "beyond" / name / v for v in spec.variants]
        return out
    scores = {v: variant_scores(profile, v, namespace(name, v), settings, spec.labels, seeds) for v in found}
    scores = {v: s for v, s in scores.items() if s}
    if not scores:
        out.notes.append("variant folders exist but hold no evaluation results yet")
        return out
    absent = [v for v in spec.variants if v not in scores]
    if absent:
        out.notes.append(f"variants without results (not drawn): {', '.join(absent)}")
    out.numbers = summarise(scores)
    drawn = [s for s in settings if any(s in out.numbers[v] for v in out.numbers)]
    out.files = save_figure(figure(spec, out.numbers, profile, drawn, spec.labels), out.name, profile)
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

__all__ = ["figure", "make_beyond", "summarise", "variant_scores"]
