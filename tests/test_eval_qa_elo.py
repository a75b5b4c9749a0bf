"""QA metrics and ELO against hand-computed values."""
from __future__ import annotations

import pytest

from lorasoups.evaluation.elo import Battle, bootstrap_elo, compute_elo, reference_battles, win_fraction
from lorasoups.evaluation.qa_metrics import containment, exact_match, normalize_answer, score_qa, token_f1


def test_normalize_answer():
    assert normalize_answer("  The  Cat's \u201cmat\u201d, an apple!") == "cats mat apple"


def test_qa_metrics_hand_computed():
    # pred -> "cat sat on mat" (4 tokens), gold -> "cat on mat" (3): 3 shared, P=3/4, R=1
    assert token_f1("The cat sat on the mat", "a cat on a mat") == pytest.approx(2 * 0.75 / 1.75)
    assert exact_match("The cat sat on the mat", "a cat on a mat") == 0.0
    assert containment("The cat sat on the mat", "a cat on a mat") == 0.0
    # pred -> "answer paris france", gold "paris": P=1/3, R=1 -> F1 = 0.5
    assert token_f1("Answer: Paris, France.", "paris") == pytest.approx(0.5)
    assert containment("Answer: Paris, France.", "paris") == 1.0
    assert containment("Parisian food", "paris") == 0.0  # whole words only
    assert exact_match("  PARIS. ", ["Lyon", "paris"]) == 1.0
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0


def test_score_qa_means_and_errors():
    metrics, rows = score_qa(["Paris", "the cat sat"], ["paris", "a dog sat"])
    assert metrics["exact_match"] == pytest.approx(0.5)
    assert metrics["f1"] == pytest.approx((1.0 + 2 * 0.5 * 0.5 / 1.0) / 2)  # "cat sat" vs "dog sat"
    assert rows[1]["contains"] == 0.0
    with pytest.raises(ValueError, match="2 predictions but 1"):
        score_qa(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="prediction 0 is NoneType"):
        score_qa([None], ["a"])


def test_elo_hand_computed_example():
    """Four battles, initial 200, base 10, scale 400, K=4, computed by hand (40-digit decimals):

    1. A beats B at 200/200: E=0.5 -> A=202, B=198
    2. A ties B: E_A = 1/(1+10^(-4/400)) = 0.505756208411144927...
       -> A=201.976975166355420, B=198.023024833644580
    3. C (model_b) beats B -> B=196.034405094688576, C=201.988619738956004
    4. C (model_a) beats A -> A=199.977042197903606, C=203.988552707407818
    """
    battles = [("A", "B", "model_a"), ("A", "B", "tie"), ("B", "C", "model_b"), ("C", "A", "model_a")]
    r = compute_elo(battles)
    assert r["A"] == pytest.approx(199.9770421979036061669, rel=1e-13)
    assert r["B"] == pytest.approx(196.0344050946885760726, rel=1e-13)
    assert r["C"] == pytest.approx(203.9885527074078177605, rel=1e-13)
    assert sum(r.values()) == pytest.approx(600.0, rel=1e-13)  # Elo is zero-sum
    wf = win_fraction(battles)
    assert wf["A"]["B"] == 0.5 and wf["B"]["A"] == 0.0  # the tie counts as a battle, not a win
    assert wf["C"]["B"] == 1.0 and wf["C"]["A"] == 1.0 and wf["A"]["C"] == 0.0


def test_bootstrap_hand_computed_distribution():
    """Two battles (A wins, B wins): each resample is one of 4 equally likely orderings whose A
    ratings are, by hand: aa 203.976975166355, ab 199.976975166355, ba 200.023024833645,
    bb 196.023024833645. The 2.5% and 97.5% quantiles are the extremes; the median lies between
    the middle two."""
    res = bootstrap_elo([Battle("A", "B", "model_a"), Battle("A", "B", "model_b")], n_bootstrap=5000, seed=1)
    assert res.ci_low["A"] == pytest.approx(196.023024833645, abs=1e-9)
    assert res.ci_high["A"] == pytest.approx(203.976975166355, abs=1e-9)
    assert 199.976975166 <= res.median["A"] <= 200.023024834
    assert res.rating["A"] == pytest.approx(199.976975166355, abs=1e-9)
    assert res.n_bootstrap == 5000 and res.params["k"] == 4.0 and res.params["init"] == 200.0
    again = bootstrap_elo([Battle("A", "B", "model_a"), Battle("A", "B", "model_b")], n_bootstrap=5000, seed=1)
    assert again.to_dict() == res.to_dict()  # deterministic under a seed


def test_bootstrap_of_identical_battles_has_no_spread():
    res = bootstrap_elo([("A", "B", "model_a")] * 3, n_bootstrap=200)
    for m in ("A", "B"):
        assert res.ci_low[m] == pytest.approx(res.rating[m]) == pytest.approx(res.ci_high[m])
    assert res.ranking() == ["A", "B"]
    md = res.to_markdown().splitlines()
    assert md[2].startswith("| A | ") and md[3].startswith("| B | ")
    import matplotlib

    matplotlib.use("Agg")
    ax = res.plot_win_fraction()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"]


def test_bad_battles():
    with pytest.raises(ValueError, match="winner 'draw'"):
        compute_elo([("A", "B", "draw")])
    with pytest.raises(ValueError, match="against itself"):
        compute_elo([("A", "A", "tie")])
    with pytest.raises(ValueError, match="battle 0: missing field 'winner'"):
        compute_elo([{"model_a": "A", "model_b": "B"}])
    with pytest.raises(ValueError, match="no battles"):
        bootstrap_elo([])


def test_reference_battles_by_hand():
    answers = {"a": ["Paris", "blue", "x"], "b": ["Paris, France", "red", "x"], "c": ["Lyon", "blue sky", "y"]}
    golds = ["paris", "blue", "x"]
    battles, rows, info = reference_battles(answers, golds)
    # F1 per question: a = 1, 1, 1; b = 2/3, 0, 1; c = 0, 2/3, 0
    expected = [("a", "b", "model_a"), ("a", "c", "model_a"), ("b", "c", "model_a"),
                ("a", "b", "model_a"), ("a", "c", "model_a"), ("b", "c", "model_b"),
                ("a", "b", "tie"), ("a", "c", "model_a"), ("b", "c", "model_a")]
    assert [(b.model_a, b.model_b, b.winner) for b in battles] == expected
    assert rows[0]["f1_b"] == pytest.approx(2 / 3) and info["battles"] == 9 and info["unparseable"] == 0
    assert "no LLM judge" in info["judge_model"]
    assert [b.winner for b in reference_battles(answers, golds, metric="exact_match")[0]][:3] == \
        ["model_a", "model_a", "tie"]
    with pytest.raises(ValueError, match="has 2 answers for 3 golds"):
        reference_battles({"a": ["x", "y"], "b": ["x", "y", "z"]}, golds)
