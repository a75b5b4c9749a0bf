"""Reading comprehension (setting ``reading_comprehension``, target BioASQ): Figure 6a and Table 2.

* Figure 6a: ELO rating of each method from pairwise LLM-judge battles (the paper's §C.3 recipe,
  :func:`lorasoups.evaluation.elo.bootstrap_elo`): with one seed the bootstrap median and its 95%
  interval over resampled battles; with several seeds the mean of the per-seed medians and a 95%
  t-CI over seeds (dots: each seed's median). We could not read the paper's figure offline; its
  reading-comprehension comparison is an ELO ranking, which is what this draws.
* Table 2: per method, token F1 / exact match / containment on BioASQ (and the judge's accuracy and
  the ELO when they exist): the mean over seeds, its 95% t-CI and the bootstrap over questions.
  Which of these columns the paper's Table 2 holds we could not confirm; all are shown. Below it,
  how each method answers (:func:`answer_profile`): token F1 against BioASQ's sentence-long ideal
  answers rewards length, so a method that answers in SQuAD's short spans, or abstains as SQuAD v2
  teaches, loses F1 for its format rather than its content.
"""
from __future__ import annotations

import statistics
from typing import Any

from matplotlib.figure import Figure

from lorasoups.analysis import load
from lorasoups.analysis.methods import (
    display_name,
    method_scores,
    order_labels,
    records_caption,
    score_table,
    skill_names,
)
from lorasoups.analysis.outcome import Outcome
from lorasoups.analysis.save import save_figure, save_table
from lorasoups.analysis.stats import caption, fmt, mean_ci
from lorasoups.data.formatting import NOT_IN_CONTEXT

SETTING, TARGET = "reading_comprehension", "bioasq_rc"
REQUIRED = ("base", "skill1", "skill2", "cat")


def elo_scores(elo_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model, best first: ``{"label", "values": {seed: median}, "summary", "interval"}``.

    One seed: ``summary`` is the bootstrap median with its 95% bootstrap interval. Several seeds:
    the mean of the medians and a 95% t-CI over seeds (a model must be rated in every seed).
    """
    if not elo_records:
        raise ValueError("elo_scores: no ELO results")
    seeds = sorted(r["seed"] for r in elo_records)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"elo_scores: more than one ELO result per seed ({seeds})")
    models = set().union(*(r["elo"]["median"] for r in elo_records))
    out = []
    for label in models:
        lacking = [r["path"].name for r in elo_records if label not in r["elo"]["median"]]
        if lacking:
            raise load.ResultsError(f"{lacking[0]}: no ELO for {label!r}, which other seeds rate")
        values = {r["seed"]: float(r["elo"]["median"][label]) for r in sorted(elo_records, key=lambda r: r["seed"])}
        if len(elo_records) == 1:
            m = elo_records[0]["elo"]
            summ = {"mean": values[seeds[0]], "low": float(m["ci_low"][label]), "high": float(m["ci_high"][label]),
                    "n": 1}
            interval = "95% bootstrap interval over battles"
        else:
            summ = mean_ci(list(values.values()))
            interval = "95% t-CI over seeds"
        out.append({"label": label, "values": values, "summary": summ, "interval": interval})
    return sorted(out, key=lambda s: (-s["summary"]["mean"], s["label"]))


def battle_source(elo_records: list[dict[str, Any]]) -> str:
    """What decided the battles, for the title: one kind for every seed, never a mix."""
    kinds = {r.get("decided_by", "judge") for r in elo_records}
    if len(kinds) != 1:
        raise load.ResultsError(f"ELO results decided by different judges across seeds: {sorted(kinds)}")
    kind = kinds.pop()
    if kind.startswith("reference_"):
        metric = kind.removeprefix("reference_").replace("f1", "token-F1").replace("_", " ")
        return f"pairwise {metric} battles against the gold answer (no LLM judge)"
    return f"pairwise LLM-judge battles ({kind})"


def figure_6a(elo_records: list[dict[str, Any]], profile: str, skills: tuple[str, ...] | None = None,
              models: list[str] | None = None) -> tuple[Figure, dict[str, Any]]:
    """ELO per method with its interval, best at the top: the figure and its numbers.

    ``models``: the base model(s) for the caption (the ELO file itself may not name one).
    """
    scores = elo_scores(elo_records)
    cap = caption(profile, models or [r["model"] for r in elo_records],
                  [r["n_battles"] for r in elo_records if r["n_battles"] is not None],
                  [r["seed"] for r in elo_records], unit="battles")
    fig = Figure(figsize=(6.5, 0.45 * len(scores) + 1.8))
    ax = fig.add_subplot()
    for i, s in enumerate(scores):
        y = len(scores) - 1 - i
        summ = s["summary"]
        color = "tab:red" if s["label"] == "cat" else "tab:blue"
        ax.errorbar(summ["mean"], y, xerr=[[summ["mean"] - summ["low"]], [summ["high"] - summ["mean"]]],
                    fmt="o", color=color, capsize=4)
        if len(s["values"]) > 1:
            ax.scatter(list(s["values"].values()), [y] * len(s["values"]), color="k", s=8, zorder=3)
    ax.set_yticks(range(len(scores)), [display_name(s["label"], skills) for s in reversed(scores)])
    ax.set_xlabel(f"ELO rating ({scores[0]['interval']})")
    ax.set_title(f"Figure 6a (reproduction): reading comprehension ({TARGET}) ELO from {battle_source(elo_records)}\n{cap}",
                 fontsize=9)
    fig.tight_layout()
    numbers = {"elo": {s["label"]: s["summary"]["mean"] for s in scores},
               "elo_interval": {s["label"]: [s["summary"]["low"], s["summary"]["high"]] for s in scores}}
    return fig, numbers


def table_2(records: list[dict[str, Any]], elo_records: list[dict[str, Any]], profile: str,
            skills: tuple[str, ...] | None = None) -> tuple[str, dict[str, Any]]:
    """Markdown: per method token F1, exact match and containment (and the judge's accuracy when
    a judge ran), each as the mean over seeds, its 95 % t-CI over seeds and the 95 % bootstrap over
    the questions (:func:`lorasoups.analysis.methods.score_table`, as Figures 4 and 5), with the
    ELO beside them."""
    columns = [("f1", "f1", "token F1"), ("exact_match", "exact_match", "exact match"),
               ("contains", "contains", "containment")]
    if all(isinstance(r["metrics"].get("judge_accuracy"), int | float) for r in records):
        columns.append(("judge_accuracy", None, "accuracy (LLM judge)"))
    elo = {s["label"]: s["summary"] for s in elo_scores(elo_records)} if elo_records else {}
    unrated = sorted(set(elo) - {r["label"] for r in records})
    if unrated:  # the battles are between scored models, so an ELO without scores is a stale file
        raise load.ResultsError(f"{elo_records[0]['path'].name}: ELO for {unrated}, which have no score file")
    title = (f"**Table 2 (reproduction): reading comprehension on {TARGET}**"
             + (f" (ELO from {battle_source(elo_records)})" if elo else ""))
    # models outside the profile's elo_labels (controls, cat_paper) are scored but not rated
    extra = ("ELO", lambda runs: fmt(elo[runs[0]["label"]], digits=1) if runs[0]["label"] in elo else "—") \
        if elo else None
    table, boot = score_table(records, title, records_caption(profile, records), columns, unit="questions",
                              skills=skills, extra=extra)
    numbers: dict[str, Any] = {m: {s["label"]: s["summary"]["mean"] for s in method_scores(records, m)}
                               for m, _, _ in columns}
    if boot["f1"]:
        numbers["f1_bootstrap95"] = boot["f1"]
    if elo:
        numbers["elo"] = {lb: s["mean"] for lb, s in elo.items()}
        numbers["elo_decided_by"] = elo_records[0].get("decided_by", "judge")
    return table, numbers


def _words(row: dict[str, Any], field_: str, where: str) -> int:
    """Words in a row's text field, or an error naming the file, line and field."""
    text = row.get(field_)
    if not isinstance(text, str):
        raise load.ResultsError(f"{where}: field '{field_}' should be text, got {type(text).__name__}")
    return len(text.split())


def answer_profile(records: list[dict[str, Any]], skills: tuple[str, ...] | None = None) -> tuple[str, dict[str, Any]]:
    """Markdown: per method, the median length of its scored answers in words and the share that
    abstain, the whole answer being SQuAD v2's "Not in context" (which the reading prompt offers;
    an answer that adds it after other words is not counted), each the mean over seeds, beside the
    gold answers' median length (the same items for every model). Descriptive only: no verdict
    reads it."""
    gold_words: list[int] = []
    by_label: dict[str, list[tuple[float, float]]] = {}
    for rec in records:
        rows = load.example_rows(rec)
        if not rows:
            raise load.ResultsError(f"{load.examples_path(rec['path'])}: no per-example rows")
        where = f"{load.examples_path(rec['path'])}:{{}}"
        words = [_words(row, "prediction", where.format(i)) for i, row in rows]
        golds = [_words(row, "gold", where.format(i)) for i, row in rows]
        abstain = [row["prediction"].strip().rstrip(".").lower() == NOT_IN_CONTEXT.lower() for _, row in rows]
        gold_words = gold_words or golds
        by_label.setdefault(rec["label"], []).append((statistics.median(words), sum(abstain) / len(abstain)))
    numbers = {"answer_words_median": {}, "not_in_context_share": {}}
    lines = [f"**How each method answers** (median words per answer; share whose whole answer is \"{NOT_IN_CONTEXT}\"; "
             f"mean over seeds; the gold answers' median: {statistics.median(gold_words):g} words)", "",
             "| method | median words | \"" + NOT_IN_CONTEXT + "\" |", "|---|---|---|"]
    for label in order_labels(by_label):
        words = statistics.fmean(w for w, _ in by_label[label])
        share = statistics.fmean(a for _, a in by_label[label])
        numbers["answer_words_median"][label], numbers["not_in_context_share"][label] = words, share
        lines.append(f"| {display_name(label, skills)} | {words:g} | {share:.1%} |")
    return "\n".join(lines), numbers


def _elo_records(profile: str, seeds: list[int]) -> tuple[list[dict[str, Any]], list, list[str]]:
    """ELO records with ratings, the absent ELO files, and notes on files without ratings."""
    files = [load.elo_path(profile, SETTING, TARGET, s) for s in seeds]
    recs = [load.elo_record(f) for f in files if f.is_file()]
    empty = [f"{r['path'].name}: no ELO ratings (the judge gave no usable battle)" for r in recs if r["elo"] is None]
    return [r for r in recs if r["elo"] is not None], load.missing(files), empty


def position_bias_notes(elo_record: dict[str, Any]) -> list[str]:
    """One note on the pairwise judge's order effects in one ELO result (none without a judge)."""
    pb = elo_record.get("position_bias")
    if not pb or not pb.get("verdicts"):
        return []
    flips = (f"; {pb['flipped_pairs']} of {pb['pairs_both_orders']} pairs ({pb['flip_share']:.0%}) changed verdict "
             "with the order" if pb.get("pairs_both_orders") else "")
    return [f"seed {elo_record['seed']} judge position bias: Choice 1 won {pb['first_position_win_share']:.0%}, "
            f"Choice 2 {pb['second_position_win_share']:.0%} of {pb['verdicts']} single-order verdicts{flips}"]


def make_figure_6a(profile: str, seeds: list[int] | None = None) -> Outcome:
    seeds = load.resolve_seeds(profile, SETTING, seeds)
    out = Outcome("figure_6a", "reading comprehension ELO per method", profile)
    elo, out.missing, out.notes = _elo_records(profile, seeds)
    if out.missing or out.notes:
        return out
    records = load.eval_records(profile, SETTING, TARGET, seeds)
    fig, out.numbers = figure_6a(elo, profile, skill_names(SETTING, records),
                                 models=[r["model"] for r in records] or None)
    out.numbers["elo_decided_by"] = elo[0]["decided_by"]
    if elo[0]["decided_by"].startswith("reference_"):
        out.notes.append("no LLM judge: ELO battles were decided by token overlap with the gold answer")
    for r in elo:
        out.notes += position_bias_notes(r)
    out.files = save_figure(fig, out.name, profile)
    return out


def make_table_2(profile: str, seeds: list[int] | None = None) -> Outcome:
    seeds = load.resolve_seeds(profile, SETTING, seeds)
    out = Outcome("table_2", "reading comprehension scores per method", profile)
    records, out.missing = load.gather(profile, SETTING, TARGET, seeds, REQUIRED)
    if out.missing:
        return out
    elo, elo_missing, empty = _elo_records(profile, seeds)
    if elo_missing or empty:
        if elo_missing:
            out.notes.append(f"no ELO column: {len(elo_missing)} ELO result(s) missing")
        out.notes += [f"no ELO column: {e}" for e in empty]
        elo = []
    out.notes += load.partial_seeds(records, seeds)
    skills = skill_names(SETTING, records)
    out.table, out.numbers = table_2(records, elo, profile, skills)
    profile_md, answers = answer_profile(records, skills)
    out.table += "\n\n" + profile_md
    out.numbers.update(answers)
    out.files = [save_table(out.table, out.name, profile)]
    return out


__all__ = [
    "REQUIRED", "answer_profile", "battle_source", "elo_scores", "figure_6a", "make_figure_6a", "make_table_2", "position_bias_notes",
    "table_2",
]
