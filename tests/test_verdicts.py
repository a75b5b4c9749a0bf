"""The verdict rules (lorasoups.analysis.verdicts) against per-item numbers worked out by hand.

Each case writes per-example results as stage 08 lays them out and states the verdict the rule in
the module docstring gives, reasoned from the items (not from the code under test): e.g. CAT right
on 30 more of 40 items than DATA-MIX in both seeds has every bootstrap mean at 0.75 -> holds.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorasoups.analysis import load, verdicts
from lorasoups.evaluation.reporting import write_jsonl
from lorasoups.results import write_result

MODEL = {"name": "tiny-random-llama"}
N = 40


def _eval(root: Path, label: str, seed: int, flags: list[int], setting: str = "math_code",
          target: str = "gsm_hard", ids: list[str] | None = None) -> None:
    path = root / "eval" / setting / f"{label}--{target}-s{seed}.json"
    run = {"setting": setting, "label": label, "target": target, "task": "gsm_hard", "seed": seed}
    write_result(path, config={"task": "gsm_hard", "run": run},
                 metrics={"n": len(flags), "exec_accuracy": sum(flags) / len(flags)}, model=MODEL)
    rows = [{"index": i, "exec_correct": bool(f), **({"id": ids[i]} if ids else {})} for i, f in enumerate(flags)]
    write_jsonl(load.examples_path(path), rows)


def _gate(root: Path, seed: int, passed: bool | None, setting: str = "math_code") -> None:
    write_result(root / "gate" / setting / f"gate--s{seed}.json", config={"run": {"seed": seed}},
                 metrics={"passed": passed}, model=MODEL)


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LORASOUPS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LORASOUPS_FIGURES", str(tmp_path / "figures"))
    return tmp_path / "results" / "cpu"


def test_paired_verdict_rules_by_hand():
    ones = {i: 1.0 for i in range(N)}
    r = verdicts.paired_verdict({0: ones, 1: ones})
    assert (r["verdict"], r["diff"], r["lo"], r["hi"]) == ("holds", 1.0, 1.0, 1.0)
    zeros = {i: 0.0 for i in range(N)}
    assert verdicts.paired_verdict({0: zeros})["verdict"] == "does not hold"  # no advantage within the CI
    # +1 on half the items, -1 on the other half: mean 0, interval around 0
    mixed = {i: (1.0 if i % 2 else -1.0) for i in range(N)}
    r = verdicts.paired_verdict({0: mixed})
    assert r["verdict"] == "inconclusive" and r["diff"] == 0.0 and r["lo"] < 0 < r["hi"]
    # every item +0.5 on average (seed 0: +1, seed 1: 0): the interval is [0.5, 0.5] but seed 1 shows no gain
    r = verdicts.paired_verdict({0: ones, 1: zeros})
    assert r["lo"] == 0.5 and r["per_seed"] == {0: 1.0, 1: 0.0} and r["verdict"] == "inconclusive"
    with pytest.raises(ValueError, match="seed 1 covers other items"):
        verdicts.paired_verdict({0: ones, 1: {i: 1.0 for i in range(N + 1)}})


def test_combine():
    assert verdicts.combine(["holds", "holds"]) == "holds"
    assert verdicts.combine(["holds", "inconclusive"]) == "inconclusive"
    assert verdicts.combine(["holds", "does not hold", "inconclusive"]) == "does not hold"
    assert verdicts.combine(["holds", "not run"]) == "not run"
    assert verdicts.combine(["does not hold", "not run"]) == "does not hold"  # one failure decides


def test_claims_on_a_setting(root, monkeypatch):
    # per seed: base 0/40, skill1 right on items 0-9, skill2 on 10-19, cat on 0-29, datamix on 0-4,
    # cat_static equals cat; seed 1 the same.
    for s in (0, 1):
        _eval(root, "base", s, [0] * N)
        _eval(root, "skill1", s, [int(i < 10) for i in range(N)])
        _eval(root, "skill2", s, [int(10 <= i < 20) for i in range(N)])
        _eval(root, "cat", s, [int(i < 30) for i in range(N)])
        _eval(root, "datamix", s, [int(i < 5) for i in range(N)])
        _eval(root, "cat_static", s, [int(i < 30) for i in range(N)])
        _gate(root, s, True)
    c = {k.key: k for k in verdicts.CLAIMS}
    one = verdicts.judge_setting("cpu", "math_code", c["1"], [0, 1])
    # cat - datamix: +1 on items 5-29 (25 of 40), 0 elsewhere -> mean 0.625, every resample > 0
    assert one["verdict"] == "holds" and one["comparisons"][0]["diff"] == pytest.approx(25 / 40)
    # super-linearity: cat - s1 - s2 + base = +1 on items 20-29, 0 elsewhere -> 0.25 > 0
    three = verdicts.judge_setting("cpu", "math_code", c["3"], [0, 1])
    assert three["verdict"] == "holds" and three["comparisons"][0]["diff"] == pytest.approx(10 / 40)
    assert three["comparisons"][0]["note"] == "skill gains over the base: skill1 +0.250, skill2 +0.250"
    # learned = static on every item: no advantage -> does not hold
    assert verdicts.judge_setting("cpu", "math_code", c["4a"], [0, 1])["verdict"] == "does not hold"
    # no TIES/DARE/LoraHub/MoE results: not run, naming what is absent
    two = verdicts.judge_setting("cpu", "math_code", c["2"], [0, 1])
    assert two["verdict"] == "not run" and "ties s0" in two["comparisons"][0]["absent"]
    # a failed gate keeps the numbers but reads inconclusive
    _gate(root, 1, False)
    one = verdicts.judge_setting("cpu", "math_code", c["1"], [0, 1])
    assert one["verdict"] == "inconclusive" and one["comparisons"][0]["measured"] == "holds"
    assert one["gate"] == "s1: gate failed"

    out = verdicts.make_verdicts("cpu")
    text = Path(out.files[0]).read_text()
    assert out.numbers["1/math_code"] == "inconclusive" and out.numbers["3/math_code"] == "inconclusive"
    assert "CAT (learned) - DATA-MIX: +0.625 [" in text and "seeds 0, 1;" in text
    # every comparison shows its own verdict; the claim's comes once, on its first row
    rows = [line for line in text.splitlines() if line.startswith("| 2 CAT beats TIES") or "CAT (learned) - DARE" in line]
    assert rows[0].endswith("| not run | not run |") and rows[1].endswith("| not run |  |")
    partial = verdicts.make_verdicts("cpu", expected=[0, 1, 2])
    assert "math_code (partial: seeds 0, 1 of 0, 1, 2)" in partial.table
    assert "results namespace" not in partial.table
    monkeypatch.setenv("LORASOUPS_NAMESPACE", "generated")
    assert "results namespace 'generated'" in verdicts.verdicts_table([], "cpu", "seeds 0")
    assert "qabot: no eval results" in out.notes


def test_partial_seeds_and_items_paired_by_id(root):
    c = {k.key: k for k in verdicts.CLAIMS}
    # cat has seeds 0 and 1, datamix only seed 0: the comparison uses seed 0 and says what it lacks
    _eval(root, "cat", 0, [1] * N)
    _eval(root, "cat", 1, [1] * N)
    _eval(root, "datamix", 0, [0] * N)
    one = verdicts.judge_setting("cpu", "math_code", c["1"], [0, 1], gate=(True, ""))
    row = one["comparisons"][0]
    assert one["verdict"] == "holds" and row["per_seed"] == {0: 1.0} and row["absent"] == ["datamix s1"]
    # rows keyed by dataset id: the base scored one item fewer (a dropped demo), in another order
    ids = [f"q{i}" for i in range(N)]
    _eval(root, "cat_static", 0, [int(i % 2 == 0) for i in range(N)], ids=ids)
    _eval(root, "cat", 0, [int(i % 2 == 0) for i in range(N)], ids=ids)
    learned = verdicts.judge_setting("cpu", "math_code", c["4a"], [0], gate=(True, ""))
    assert learned["comparisons"][0]["diff"] == 0.0 and learned["verdict"] == "does not hold"
    _eval(root, "cat_static", 0, [int(i % 2 == 1) for i in range(N - 1)], ids=list(reversed(ids[1:])))
    with pytest.raises(load.ResultsError, match="scored on different items"):
        verdicts.judge_setting("cpu", "math_code", c["4a"], [0], gate=(True, ""))
    # a --seed that matches no result is a note, not a crash
    assert "math_code: none of seeds [7] has eval results" in verdicts.make_verdicts("cpu", [7]).notes


def test_per_example_refuses_a_non_number(root):
    _eval(root, "base", 0, [0, 1])
    path = root / "eval" / "math_code" / "base--gsm_hard-s0.examples.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[1]["exec_correct"] = "yes"
    write_jsonl(path, rows)
    rec = load.eval_record(root / "eval" / "math_code" / "base--gsm_hard-s0.json")
    with pytest.raises(load.ResultsError, match=r"examples.jsonl:2: field 'exec_correct' is 'yes'"):
        load.per_example(rec)
    rows[1]["exec_correct"] = float("nan")
    write_jsonl(path, rows)
    with pytest.raises(load.ResultsError, match=r"examples.jsonl:2: field 'exec_correct' is nan"):
        load.per_example(rec)


def test_super_linearity_flags_skills_below_the_base(root):
    """The generated math+code slice's shape: base right on 8 of 40, skills on none and 1, CAT on none.
    cat - s1 - s2 + base per item: +1 on the base's 8 items, -1 on the one skill2 alone gets right
    -> (8 - 1) / 40 = +0.175, its bootstrap interval above 0: the test holds, and the note says both
    skill gains (-8/40 and -7/40) are negative."""
    _eval(root, "base", 0, [int(i < 8) for i in range(N)])
    _eval(root, "skill1", 0, [0] * N)
    _eval(root, "skill2", 0, [int(i == 10) for i in range(N)])
    _eval(root, "cat", 0, [0] * N)
    _gate(root, 0, True)
    c = {k.key: k for k in verdicts.CLAIMS}
    three = verdicts.judge_setting("cpu", "math_code", c["3"], [0])
    row = three["comparisons"][0]
    assert three["verdict"] == "holds" and row["diff"] == pytest.approx(7 / 40)
    assert row["note"] == "skill gains over the base: skill1 -0.200, skill2 -0.175 (negative: the paper's premise of positive skill gains fails)"
    assert "(negative: the paper's premise of positive skill gains fails)" in verdicts.make_verdicts("cpu").table


def test_verdicts_by_model_puts_each_namespace_in_a_column(root):
    # the main namespace: CAT right on 30 more of 40 items than DATA-MIX in seed 0 (claim 1 holds
    # on 1 of 3 seeds); a second model's namespace: CAT equal to DATA-MIX (every difference 0:
    # the interval's upper end is 0, "does not hold"); a third namespace without results
    for ns, cat in (("", [int(i < 30) for i in range(N)]), ("bigger", [0] * N)):
        where = root / ns if ns else root
        _eval(where, "cat", 0, cat)
        _eval(where, "datamix", 0, [0] * N)
        _gate(where, 0, True)
    _gate(root, 0, False, setting="qabot")  # a setting whose gate failed: base only
    _eval(root, "base", 0, [0] * N, setting="qabot", target="qabot_dnd")
    out = verdicts.verdicts_by_model("cpu", ["", "bigger", "empty"], expected=[0, 1, 2])
    one = "1 " + next(c.text for c in verdicts.CLAIMS if c.key == "1")
    assert out.numbers["1/math_code"] == {"tiny-random-llama": "holds (1 of 3 seeds)",
                                            "tiny-random-llama (`bigger`)": "does not hold (1 of 3 seeds)",
                                            "no results (`empty`)": "-"}
    assert out.numbers["1/qabot"]["tiny-random-llama"] == "not run (gate failed)"
    assert f"| {one} | math_code | holds (1 of 3 seeds) | does not hold (1 of 3 seeds) | - |" in out.table
    assert out.files == [root.parent.parent / "figures" / "cpu" / "verdicts_by_model.md"]
