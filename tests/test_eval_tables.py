"""Robustness grid (Figure 10) and super-linearity table (Table 1) against hand-computed values."""
from __future__ import annotations

import json

import pytest

from lorasoups import paths
from lorasoups.evaluation.robustness import RobustnessGrid, gold_count, predicted_count, score_prompt_format
from lorasoups.evaluation.superlinear import superlinearity, table_markdown


def _flags(solved: set[int], n: int = 10) -> list[bool]:
    return [i in solved for i in range(n)]


def test_superlinearity_hand_computed():
    base, s1, s2 = {0}, {0, 1, 2}, {0, 3}
    merged = {0, 1, 4, 5, 6}
    r = superlinearity(_flags(base), _flags(s1), _flags(s2), _flags(merged))
    assert r["fraction_solved"] == {"base": 0.1, "skill1": 0.3, "skill2": 0.2, "merged": 0.5}
    assert r["improvement_over_base"] == pytest.approx({"skill1": 0.2, "skill2": 0.1, "merged": 0.4})
    assert r["sum_of_skill_improvements"] == pytest.approx(0.3)
    assert r["superlinear"] is True
    assert r["sets"] == {"merge_only": 3, "skill_union": 4, "skill_intersection": 1,
                         "merge_and_union": 2, "union_not_merge": 2}
    assert r["merge_only_ids"] == [4, 5, 6]
    # one fewer merge-only problem: gain 0.3 == 0.2 + 0.1 is linear, not super-linear
    assert superlinearity(_flags(base), _flags(s1), _flags(s2), _flags({0, 1, 4, 5}))["superlinear"] is False
    md = table_markdown({"CAT": r})
    assert "| CAT | 0.100 | 0.300 | 0.200 | 0.500 | +0.400 | +0.300 | 3 | 4 | 1 |" in md


def test_superlinearity_by_id_and_errors():
    r = superlinearity({"a": True, "b": False}, {"b": True, "a": False}, {"a": False, "b": False},
                       {"a": False, "b": True})
    assert r["sets"]["merge_only"] == 0 and r["fraction_solved"]["merged"] == 0.5
    with pytest.raises(ValueError, match="skill1 has 2 results, base has 3"):
        superlinearity([True] * 3, [True] * 2, [True] * 3, [True] * 3)
    with pytest.raises(ValueError, match="merged covers other examples"):
        superlinearity({"a": 1}, {"a": 1}, {"a": 1}, {"z": 1})
    with pytest.raises(ValueError, match="no examples"):
        superlinearity([], [], [], [])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("the correct answer is 3", 3),
        ("The correct answer is: 12. Also 5 other", 12),
        ("There are 4 words, so 2", 2),
        ("answer2.5", None),
        ("none", None),
    ],
)
def test_predicted_count(text, expected):
    assert predicted_count(text) == expected


def test_score_prompt_format_and_gold_forms():
    assert gold_count("answer3") == gold_count("the correct answer is 3") == gold_count(3) == 3
    with pytest.raises(ValueError, match="no trailing count"):
        gold_count("answer")
    m, rows = score_prompt_format(["the correct answer is 3", "the correct answer is 1", "I think 0"],
                                  ["answer3", "answer2", "answer0"])
    assert m == {"n": 3, "accuracy": pytest.approx(2 / 3), "majority_answer": 3,  # ties: the first seen
                 "majority_floor": pytest.approx(1 / 3), "majority_share": pytest.approx(1 / 3)}
    m, _ = score_prompt_format(["the correct answer is 0"] * 3 + ["7"], ["answer0", "answer0", "answer2", "answer1"])
    assert (m["majority_answer"], m["majority_floor"], m["majority_share"]) == (0, 0.5, 0.75)
    assert [r["correct"] for r in rows] == [True, False, True]


def test_held_out_format_gold_outputs_score_perfectly():
    mirror = paths.data_mirror()
    path = mirror / "lorasoups-paper" / "prompt_formats" / "test_format3.json" if mirror else None
    if path is None or not path.is_file():
        pytest.skip("dataset mirror not available")
    recs = json.loads(path.read_text())
    m, _ = score_prompt_format([r["output"] for r in recs], [r["answer"] for r in recs])
    assert m["n"] == 417 and m["accuracy"] == 1.0


def test_robustness_grid():
    grid = RobustnessGrid({"format1-lora": {"f3": 0.5, "f7": 0.9}, "CAT": {"f3": 0.8, "f7": 0.7}})
    s = grid.summary()
    assert s["format1-lora"] == pytest.approx({"mean": 0.7, "min": 0.5, "max": 0.9, "spread": 0.4})
    assert s["CAT"] == pytest.approx({"mean": 0.75, "min": 0.7, "max": 0.8, "spread": 0.1})
    assert grid.to_markdown().splitlines()[2] == "| format1-lora | 0.500 | 0.900 | 0.700 | 0.500 |"
    with pytest.raises(ValueError, match=r"missing cells.*\('CAT', 'f8'\)"):
        RobustnessGrid({"a": {"f3": 1.0, "f8": 1.0}, "CAT": {"f3": 1.0}})
    import matplotlib

    matplotlib.use("Agg")
    ax = grid.plot()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["f3", "f7"]
