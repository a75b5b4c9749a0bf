"""A verdict per claim of the paper: holds / does not hold / inconclusive, with the test used.

The rules are fixed here before the CPU study scored its first merge, and are not tuned afterwards:

* **One comparison** (method A beats method B on a setting's targets): the per-example score
  difference A - B (execution / exact-count correctness as 0/1, token F1 for QA), paired on the
  same items of every target of the setting, averaged over the seeds both methods have. Its 95 %
  interval is a percentile bootstrap over items (:data:`BOOTSTRAP` resamples; an item keeps all its
  seeds, so the interval covers example noise, and the per-seed means are reported beside it for
  the training noise).

  - *holds*: the interval lies above 0 **and** A - B > 0 in every seed;
  - *does not hold*: the interval's upper end is at most 0 (no advantage at all is within it);
  - *inconclusive*: anything else, a setting that failed (or has not run) the informativeness gate
    (its numbers are still shown), or a method without results (then "not run").

* **A claim on a setting** is the conjunction of its comparisons: it holds when every comparison
  holds, does not hold when any comparison does not hold, else it is inconclusive.

* **Super-linearity** (Table 1) is one comparison of a per-example quantity:
  (CAT - base) - ((skill1 - base) + (skill2 - base)) = CAT - skill1 - skill2 + base, on the same
  rule (above 0: CAT's gain exceeds the sum of the skills' gains).

    python -m lorasoups.analysis.verdicts --profile cpu      # prints the table, writes verdicts.md
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lorasoups import paths
from lorasoups.analysis import load
from lorasoups.analysis.methods import display_name
from lorasoups.analysis.outcome import Outcome
from lorasoups.analysis.save import save_table
from lorasoups.analysis.stats import bootstrap_mean_ci
from lorasoups.results import result_path

BOOTSTRAP = 2000
HOLDS, FAILS, INCONCLUSIVE, NOT_RUN = "holds", "does not hold", "inconclusive", "not run"
#: settings in the order of the paper's sections; prompt robustness is the Figure 10 family
SETTINGS = ("math_code", "qabot", "reading_comprehension", "prompt_robustness", "prompt_robustness_1_4",
            "prompt_robustness_2_4")
ROBUSTNESS = ("prompt_robustness", "prompt_robustness_1_4", "prompt_robustness_2_4")


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims: a name, its text, and the comparisons that make it up.

    A comparison is ``(name, terms)``: ``terms`` is ``{label: coefficient}``, the per-item quantity
    whose mean must be above 0 (``{"cat": 1, "datamix": -1}``, or the super-linearity sum)."""

    key: str
    text: str
    comparisons: tuple[tuple[str, dict[str, int]], ...]
    settings: tuple[str, ...] = SETTINGS


def _vs(a: str, b: str) -> tuple[str, dict[str, int]]:
    return f"{display_name(a)} - {display_name(b)}", {a: 1, b: -1}


CLAIMS: tuple[Claim, ...] = (
    Claim("1", "CAT beats DATA-MIX", (_vs("cat", "datamix"),)),
    Claim("2", "CAT beats TIES, DARE, LoraHub and MoE",
          tuple(_vs("cat", b) for b in ("ties", "dare", "lorahub", "moe"))),
    Claim("3", "CAT's gain over the base is super-linear (Table 1)",
          (("(CAT - base) - (skill1 - base) - (skill2 - base)", {"cat": 1, "skill1": -1, "skill2": -1, "base": 1}),)),
    Claim("4a", "learned CAT beats static CAT (Figure 9, default recipe)", (_vs("cat", "cat_static"),)),
    Claim("4b", "learned CAT beats static CAT (Figure 9, the paper's recipe)", (_vs("cat_paper", "cat_static"),)),
    Claim("5", "merging gives robustness to unseen prompt formats: CAT beats each format's LoRA (Figure 10)",
          (_vs("cat", "skill1"), _vs("cat", "skill2")), ROBUSTNESS),
    Claim("6a", "control: CAT beats CAT with a random LoRA in place of a skill", (_vs("cat", "cat_random"),)),
    Claim("6b", "control: CAT beats a LoRA trained on CAT's data alone", (_vs("cat", "cat_data_lora"),)),
    Claim("6c", "control: learned CAT beats random alpha", (_vs("cat", "random_alpha"),)),
)


def paired_verdict(per_seed: dict[int, dict[Any, float]], rounds: int = BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """The rule of the module docstring on per-item differences ``per_seed[seed][item]``.

    Items are those every seed has (a ValueError names the seeds whose items differ)."""
    seeds = sorted(per_seed)
    if not seeds:
        raise ValueError("paired_verdict: no seeds")
    items = sorted(per_seed[seeds[0]], key=str)
    for s in seeds[1:]:
        if set(per_seed[s]) != set(items):
            raise ValueError(f"paired_verdict: seed {s} covers other items than seed {seeds[0]}")
    if not items:
        raise ValueError("paired_verdict: no items")
    d = np.array([[per_seed[s][i] for i in items] for s in seeds], dtype=float)  # seeds x items
    ci = bootstrap_mean_ci(d.mean(axis=0), rounds, seed)
    lo, hi = ci["lo"], ci["hi"]
    seed_means = {s: float(d[k].mean()) for k, s in enumerate(seeds)}
    if lo > 0 and all(v > 0 for v in seed_means.values()):
        verdict = HOLDS
    elif hi <= 0:
        verdict = FAILS
    else:
        verdict = INCONCLUSIVE
    return {"diff": ci["diff"], "lo": lo, "hi": hi, "per_seed": seed_means, "n_items": len(items),
            "verdict": verdict}


def combine(verdicts: Sequence[str]) -> str:
    """A claim on a setting from its comparisons' verdicts (see the module docstring): one
    comparison that does not hold decides it even where others were not run."""
    if FAILS in verdicts:
        return FAILS
    if not verdicts or NOT_RUN in verdicts:
        return NOT_RUN
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    return INCONCLUSIVE


def item_scores(profile: str, setting: str, label: str, seed: int) -> dict[Any, float] | None:
    """Per-item scores of ``label`` over every target of ``setting`` (items keyed ``(target, id)``:
    the dataset record's id where the rows carry it, else the row's index), or None when a
    target's result is absent."""
    from lorasoups.data.registry import get_setting

    out: dict[Any, float] = {}
    for target in get_setting(setting).targets:
        path = load.eval_path(profile, setting, label, target, seed)
        if not path.is_file():
            return None
        rec = load.eval_record(path)
        out.update({(target, i): v for i, v in load.per_example(rec, key="auto").items()})
    return out


def gate_status(profile: str, setting: str, seeds: Sequence[int]) -> tuple[bool, str]:
    """(passed for every seed, why not): the gate results of ``results/<profile>/gate/<setting>/``."""
    why = []
    for s in seeds:
        path = result_path(f"gate/{setting}", "gate", f"s{s}", profile=profile)  # as the gate writes it
        if not path.is_file():
            why.append(f"s{s}: gate not run")
            continue
        passed = load.read_json(path).get("metrics", {}).get("passed")
        if passed is not True:
            why.append(f"s{s}: gate {'failed' if passed is False else 'undecided'}")
    return not why, "; ".join(why)


def judge_setting(profile: str, setting: str, claim: Claim, seeds: Sequence[int],
                  gate: tuple[bool, str] | None = None) -> dict[str, Any]:
    """Every comparison of ``claim`` on ``setting`` and the claim's verdict there."""
    gate_ok, gate_why = gate if gate is not None else gate_status(profile, setting, seeds)
    cache: dict[tuple[str, int], dict[Any, float] | None] = {}
    rows = []
    for name, terms in claim.comparisons:
        per_seed: dict[int, dict[Any, float]] = {}
        absent = []
        for s in seeds:  # the seeds every label of the comparison has
            parts = {}
            for label in terms:
                if (label, s) not in cache:
                    cache[label, s] = item_scores(profile, setting, label, s)
                if cache[label, s] is None:
                    absent.append(f"{label} s{s}")
                else:
                    parts[label] = cache[label, s]
            if len(parts) == len(terms):
                items = set.intersection(*(set(p) for p in parts.values()))
                if any(set(p) != items for p in parts.values()):
                    raise load.ResultsError(f"{setting} seed {s}: {', '.join(terms)} were scored on different items")
                per_seed[s] = {i: sum(c * parts[lb][i] for lb, c in terms.items()) for i in items}
        row: dict[str, Any] = {"comparison": name}
        if not per_seed:
            row.update(verdict=NOT_RUN, absent=absent)
        else:
            row.update(paired_verdict(per_seed))
            if absent:
                row["absent"] = absent  # seeds left out of this comparison
            if not gate_ok:
                row["measured"] = row["verdict"]
                row["verdict"] = INCONCLUSIVE
        if "skill1" in terms and "base" in terms and per_seed:
            row["note"] = gain_note(cache, sorted(per_seed))
        rows.append(row)
    verdict = combine([r["verdict"] for r in rows])
    return {"claim": claim.key, "setting": setting, "seeds": list(seeds), "comparisons": rows, "verdict": verdict,
            "gate": "passed" if gate_ok else gate_why}


def gain_note(cache: dict[tuple[str, int], dict[Any, float] | None], seeds: Sequence[int]) -> str:
    """The skills' mean gains over the base beside the super-linearity test: a descriptive note, not
    part of the verdict. A negative skill gain lowers the skills' sum, so the test (fixed before any
    merge was scored) can "hold" for a merge that composes nothing: such a gain is flagged."""
    gains = {}
    for skill in ("skill1", "skill2"):
        diffs = [np.mean([cache[skill, s][i] - cache["base", s][i] for i in cache["base", s]]) for s in seeds]
        gains[skill] = float(np.mean(diffs))
    text = ", ".join(f"{k} {v:+.3f}" for k, v in gains.items())
    flag = " (negative: the paper's premise of positive skill gains fails)" if any(v < 0 for v in gains.values()) else ""
    return f"skill gains over the base: {text}{flag}"


def _fmt_row(r: dict[str, Any]) -> str:
    if r["verdict"] == NOT_RUN:
        return f"not run (no {', '.join(r['absent'][:3])}{'...' if len(r['absent']) > 3 else ''})"
    seeds = ", ".join(f"s{k} {v:+.3f}" for k, v in r["per_seed"].items())
    measured = f"; measured: {r['measured']}" if "measured" in r else ""
    absent = f"; no {', '.join(r['absent'])}" if r.get("absent") else ""
    note = f"; {r['note']}" if r.get("note") else ""
    return f"{r['diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] ({seeds}; {r['n_items']} items{absent}){measured}{note}"


def verdicts_table(results: list[dict[str, Any]], profile: str, seeds_note: str,
                   expected: Sequence[int] | None = None) -> str:
    """The markdown the README's results section quotes: a row per comparison with its own verdict,
    and the claim's verdict on the setting (the conjunction) on the claim's first row. A setting
    judged on fewer seeds than ``expected`` (the profile's) is marked partial."""
    ns = paths.namespace()
    where = f"profile {profile}" + (f", results namespace '{ns}'" if ns else "")
    lines = [f"**Verdicts per claim** ({where}; {seeds_note}; difference of per-item scores, "
             "mean over seeds [95 % bootstrap interval over items]; rules in `lorasoups/analysis/verdicts.py`)",
             "", "| claim | setting | gate | comparison: difference [95 % CI] | comparison | claim on the setting |",
             "|---|---|---|---|---|---|"]
    text = {c.key: c.text for c in CLAIMS}
    for res in results:
        setting = res["setting"]
        if expected and set(res["seeds"]) < set(expected):
            setting += f" (partial: seeds {', '.join(map(str, res['seeds']))} of {', '.join(map(str, expected))})"
        for i, r in enumerate(res["comparisons"]):
            first = i == 0
            lines.append(f"| {res['claim'] + ' ' + text[res['claim']] if first else ''} | "
                         f"{setting if first else ''} | {res['gate'] if first else ''} | "
                         f"{r['comparison']}: {_fmt_row(r)} | {r['verdict']} | {res['verdict'] if first else ''} |")
    lines += ["", "Per claim, over settings:"]
    for c in CLAIMS:
        by: dict[str, list[str]] = {}
        for res in results:
            if res["claim"] == c.key:
                by.setdefault(res["verdict"], []).append(res["setting"])
        lines.append(f"- {c.key} {c.text}: " + ("; ".join(f"{v}: {', '.join(s)}" for v, s in by.items()) or "-"))
    return "\n".join(lines)


def judge_all(profile: str, seeds: list[int] | None = None) -> tuple[list[dict[str, Any]], set[int], list[str]]:
    """Every claim on every setting with eval results in the current results namespace: the
    per-claim results, the seeds used and notes on settings without results."""
    results, used, notes = [], set(), []
    for setting in SETTINGS:
        found = load.seeds_found(profile, setting)
        if not found:
            notes.append(f"{setting}: no eval results")
            continue
        s_seeds = sorted(set(seeds) & set(found)) if seeds else found
        if not s_seeds:
            notes.append(f"{setting}: none of seeds {seeds} has eval results")
            continue
        used.update(s_seeds)
        gate = gate_status(profile, setting, s_seeds)
        for claim in CLAIMS:
            if setting in claim.settings:
                results.append(judge_setting(profile, setting, claim, s_seeds, gate))
    return results, used, notes


def make_verdicts(profile: str, seeds: list[int] | None = None, expected: Sequence[int] | None = None) -> Outcome:
    """Every claim on every setting with eval results; ``verdicts.md`` in ``figures_dir(profile)``
    (of the results namespace, as the results). ``expected``: the seeds the study is to have (a
    setting with fewer is marked partial in the table)."""
    out = Outcome("verdicts", "a verdict per claim of the paper", profile)
    results, used, out.notes = judge_all(profile, seeds)
    if not results:
        out.missing = [load.root(profile) / "eval"]
        return out
    out.table = verdicts_table(results, profile, f"seeds {', '.join(map(str, sorted(used)))}", expected)
    out.numbers = {f"{r['claim']}/{r['setting']}": r["verdict"] for r in results}
    out.files = [save_table(out.table, out.name, profile)]
    return out


def _namespace_model(profile: str) -> str:
    for setting in SETTINGS:
        records = load.eval_records(profile, setting)
        if records:
            return records[0]["model"]
    return "no results"


def verdicts_by_model(profile: str, namespaces: Sequence[str], expected: Sequence[int] | None = None) -> Outcome:
    """A row per claim and setting, a column per results namespace (a model, or the same model on
    other suites): the claim's verdict in each, so a reader sees whether it holds at both model
    sizes. ``verdicts_by_model.md`` in the profile's main figures folder. A verdict judged on fewer
    seeds than ``expected`` says on how many; a setting a namespace has no results for reads "-"."""
    out = Outcome("verdicts_by_model", "each claim's verdict per model (results namespace)", profile)
    columns: list[tuple[str, dict[tuple[str, str], str]]] = []
    for ns in namespaces:
        with paths.in_namespace(ns or None):
            results, _, _ = judge_all(profile)
            model = _namespace_model(profile)
        cells = {}
        for r in results:
            if r["verdict"] == NOT_RUN:
                why = " (gate failed)" if "failed" in str(r["gate"]) else ""
            elif expected and set(r["seeds"]) < set(expected):
                why = f" ({len(r['seeds'])} of {len(expected)} seeds)"
            else:
                why = ""
            cells[(r["claim"], r["setting"])] = r["verdict"] + why
        columns.append((f"{model}" + (f" (`{ns}`)" if ns else ""), cells))
    rows = [(c, s) for c in CLAIMS for s in SETTINGS if any((c.key, s) in cells for _, cells in columns)]
    if not rows:
        out.missing = [load.root(profile) / "eval"]
        return out
    lines = [f"**Verdicts per claim and model** (profile {profile}; each column a results namespace, judged as in "
             "its `verdicts.md`; \"-\": the setting has no results there)", "",
             "| claim | setting | " + " | ".join(name for name, _ in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for claim, setting in rows:
        cells = [cols.get((claim.key, setting), "-") for _, cols in columns]
        lines.append(f"| {claim.key} {claim.text} | {setting} | " + " | ".join(cells) + " |")
        out.numbers[f"{claim.key}/{setting}"] = dict(zip((name for name, _ in columns), cells))
    out.table = "\n".join(lines)
    with paths.in_namespace(None):
        out.files = [save_table(out.table, out.name, profile)]
    return out


__all__ = ["CLAIMS", "Claim", "combine", "gain_note", "gate_status", "judge_all", "judge_setting", "make_verdicts",
           "paired_verdict", "verdicts_by_model", "verdicts_table"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lorasoups.analysis.verdicts", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--seed", type=int, action="append", help="only these seeds (default: every seed found)")
    ap.add_argument("--by-model", nargs="+", metavar="NAMESPACE",
                    help="instead: one column per results namespace ('' the main one), verdicts_by_model.md")
    args = ap.parse_args(argv)
    from lorasoups.pipeline import resolve  # the profile's seeds (here only: pipeline imports the stages)

    if args.by_model:
        out = verdicts_by_model(args.profile, args.by_model, resolve(args.profile)["experiment"].seeds)
        print(out.table or "no eval results in any of the namespaces")
        for f in out.files:
            print(f"wrote {f}")
        return 0
    out = make_verdicts(args.profile, args.seed, resolve(args.profile)["experiment"].seeds)
    print(out.table or f"no eval results under {load.root(args.profile) / 'eval'}")
    for f in out.files:
        print(f"wrote {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

