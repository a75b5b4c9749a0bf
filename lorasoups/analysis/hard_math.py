"""Hard math with code (setting ``math_code``, target GSM-Hard): Figure 4 and Table 1.

* Figure 4: GSM-Hard execution accuracy of every method (base, the math and code skill LoRAs,
  DATA-MIX, the static merges, LoraHub, MoE, static and learned CAT). We could not read the
  paper's figure offline; this is the experiment its hard-math section reports as the headline
  comparison (CAT vs. DATA-MIX and TIES/DARE), drawn as bars with a 95% t-CI over seeds.
* Table 1: super-linearity, the fraction solved by base / skill 1 / skill 2 / merge, the merge's
  gain against the sum of the skills' gains, and the problems only the merge solves, the union and
  the intersection of the skills' solved sets (:func:`lorasoups.evaluation.superlinear.superlinearity`).
"""
from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from lorasoups.analysis import load
from lorasoups.analysis.methods import (
    display_name,
    headline,
    method_scores,
    order_labels,
    plot_method_bars,
    records_caption,
    score_table,
    skill_names,
)
from lorasoups.analysis.outcome import Outcome
from lorasoups.analysis.save import save_figure, save_table
from lorasoups.evaluation.superlinear import superlinearity, table_markdown

SETTING, TARGET = "math_code", "gsm_hard"
#: what Figure 4 and Table 1 cannot do without (other methods are drawn when present).
REQUIRED = ("base", "skill1", "skill2", "cat")
#: labels that are not merges of the two skills (never a Table 1 row).
NOT_MERGES = ("base", "skill1", "skill2", "rag")


def figure_4(records: list[dict[str, Any]], profile: str) -> tuple[Figure, dict[str, Any]]:
    """GSM-Hard execution accuracy per method: the figure and its headline numbers."""
    scores = method_scores(records, "exec_accuracy")
    title = ("Figure 4 (reproduction): GSM-Hard execution accuracy per method\n"
             + records_caption(profile, records))
    fig = plot_method_bars([(scores, "execution accuracy (|pred - gold| <= 1e-3)")], title,
                           skills=skill_names(SETTING, records))
    return fig, {"exec_accuracy": headline(scores)}


def table_1(flags: dict[str, dict[int, dict[Any, bool]]], caption: str,
            skills: tuple[str, ...] | None = None) -> tuple[str, dict[str, Any]]:
    """Super-linearity rows for every merge and seed; ``flags[label][seed]`` = solved per example.

    Needs ``base``, ``skill1`` and ``skill2`` for every seed a merge has.
    """
    merges = [lb for lb in order_labels(flags) if lb not in NOT_MERGES]
    rows: dict[str, dict[str, Any]] = {}
    numbers: dict[str, Any] = {}
    negative: set[str] = set()  # skill gains below 0, as "s<seed> <skill> <gain>"
    for merge in merges:
        per_seed = []
        for seed in sorted(flags[merge]):
            parts = [flags.get(lb, {}).get(seed) for lb in ("base", "skill1", "skill2")]
            if any(p is None for p in parts):
                raise ValueError(f"table_1: {merge} seed {seed} needs base, skill1 and skill2 of that seed")
            r = superlinearity(*parts, flags[merge][seed])
            rows[f"{display_name(merge)} s{seed}"] = r
            per_seed.append(r)
            negative |= {f"s{seed} {sk} {r['improvement_over_base'][sk]:+.3f}" for sk in ("skill1", "skill2")
                         if r["improvement_over_base"][sk] < 0}
        k = len(per_seed)
        numbers[merge] = {
            "superlinear_seeds": f"{sum(r['superlinear'] for r in per_seed)}/{k}",
            "gain_merged": sum(r["improvement_over_base"]["merged"] for r in per_seed) / k,
            "gain_skill1_plus_skill2": sum(r["sum_of_skill_improvements"] for r in per_seed) / k,
            "merge_only": sum(r["sets"]["merge_only"] for r in per_seed) / k,
            "union": sum(r["sets"]["skill_union"] for r in per_seed) / k,
            "intersection": sum(r["sets"]["skill_intersection"] for r in per_seed) / k,
        }
    s1, s2 = (skills or ("skill1", "skill2"))[:2]  # Table 1 is the two-skill setting
    md = "\n".join([
        "**Table 1 (reproduction): super-linearity on GSM-Hard** "
        f"(skill1 = {s1}, skill2 = {s2}; fractions solved; gains over base; set sizes in problems)",
        f"_{caption}_",
        "",
        table_markdown(rows),
        "",
        *(f"- {display_name(m)}: super-linear in {numbers[m]['superlinear_seeds']} seed(s); "
          f"solved only by the merge: {numbers[m]['merge_only']:.1f} (mean over seeds)" for m in merges),
        *_negative_gain_note(negative),
    ])
    return md, numbers


def _negative_gain_note(negative: set[str]) -> list[str]:
    """A warning line when a skill's gain over the base is negative in some seed: a negative gain
    lowers the skills' sum, so there "super-linear" can mean only that the merge lost less than the
    skills' summed losses, not that it composed them (the paper's Table 1 has positive gains)."""
    if not negative:
        return []
    return ["", f"Note: a skill's gain over the base is negative ({', '.join(sorted(negative))}), so \"super-linear\" "
            "can mean here only that the merge lost less than the skills' losses added, not that it composed them."]


def accuracy_table(records: list[dict[str, Any]], caption: str) -> tuple[str, dict[str, list[float]]]:
    """Per method: execution accuracy (mean over seeds), its 95 % t-CI over seeds, the 95 %
    bootstrap over problems (:func:`lorasoups.analysis.methods.score_table`) and the share of
    answers that hold a program. Returns the markdown and the bootstrap intervals per label."""

    def programs(runs: list[dict[str, Any]]) -> str:
        found = [r["metrics"].get("program_found") for r in runs]
        return f"{sum(found) / len(found):.3f}" if all(isinstance(v, int | float) for v in found) else "-"

    table, boot = score_table(records, "**Figure 4 (reproduction), the numbers: execution accuracy per method**",
                              caption, [("exec_accuracy", None, "accuracy")], unit="problems",
                              skills=skill_names(SETTING, records), extra=("programs found", programs))
    return table, boot["exec_accuracy"]


def make_figure_4(profile: str, seeds: list[int] | None = None) -> Outcome:
    seeds = load.resolve_seeds(profile, SETTING, seeds)
    out = Outcome("figure_4", "GSM-Hard execution accuracy per method", profile)
    records, out.missing = load.gather(profile, SETTING, TARGET, seeds, REQUIRED)
    if out.missing:
        return out
    fig, out.numbers = figure_4(records, profile)
    out.table, out.numbers["exec_accuracy"]["bootstrap95"] = accuracy_table(records, records_caption(profile, records))
    out.notes = load.partial_seeds(records, seeds)
    out.files = [*save_figure(fig, out.name, profile), save_table(out.table, out.name, profile)]
    return out


def make_table_1(profile: str, seeds: list[int] | None = None) -> Outcome:
    seeds = load.resolve_seeds(profile, SETTING, seeds)
    out = Outcome("table_1", "super-linearity on GSM-Hard", profile)
    records, out.missing = load.gather(profile, SETTING, TARGET, seeds, REQUIRED)
    present = [load.eval_path(profile, SETTING, lb, TARGET, s) for lb in REQUIRED for s in seeds]
    out.missing += load.missing([load.examples_path(p) for p in present if p.is_file()])
    if out.missing:
        return out
    flags: dict[str, dict[int, dict[Any, bool]]] = {}
    for r in records:
        if r["label"] == "rag":
            continue
        if not load.examples_path(r["path"]).is_file():
            out.notes.append(f"{r['path'].name}: no per-example file beside it, left out of Table 1")
            continue
        flags.setdefault(r["label"], {})[r["seed"]] = load.solved(r)
    used = [r for r in records if r["label"] in flags and r["seed"] in flags[r["label"]]]
    out.table, out.numbers = table_1(flags, records_caption(profile, used), skill_names(SETTING, records))
    out.files = [save_table(out.table, out.name, profile)]
    return out


__all__ = ["REQUIRED", "accuracy_table", "figure_4", "make_figure_4", "make_table_1", "table_1"]
