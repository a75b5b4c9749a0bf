"""The CAT learning set (min 5 % of each skill) and the leakage check."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import datasets
import pytest

from lorasoups.data import DataError, cat_mixture, check_leakage, find_leaks, identity, load, mirror_root


def _ds(n: int, tag: str) -> datasets.Dataset:
    return datasets.Dataset.from_list([{"id": f"{tag}{i}", "instruction": f"{tag} task {i}", "prompt": f"P {tag} {i}",
                                        "completion": f"C {tag} {i}"} for i in range(n)])


def test_mixture_takes_five_percent_of_the_smallest_skill_from_each():
    a, b = _ds(400, "a"), _ds(100, "b")
    mix = cat_mixture({"math": a, "code": b}, fraction=0.05, seed=0)
    # hand-computed: 5 % of min(400, 100) = 5 records from each skill
    assert Counter(mix["skill"]) == {"math": 5, "code": 5}
    assert len(set(mix["id"])) == 10
    assert all(i.startswith("a") for i, s in zip(mix["id"], mix["skill"]) if s == "math")
    for r in mix:  # every mixed record is exactly a source record
        src = a if r["skill"] == "math" else b
        k = int(r["id"][1:])
        assert (r["prompt"], r["completion"]) == (src[k]["prompt"], src[k]["completion"])
    assert mix["skill"] != ["math"] * 5 + ["code"] * 5 and mix["skill"] != ["code"] * 5 + ["math"] * 5
    assert cat_mixture({"math": a, "code": b}, seed=0).to_list() == mix.to_list()
    assert cat_mixture({"math": a, "code": b}, seed=1).to_list() != mix.to_list()
    ident = identity(mix)
    assert ident["per_skill"] == {"math": 5, "code": 5} and ident["fraction"] == 0.05 and ident["seed"] == 0
    assert Counter(cat_mixture([a, b], fraction=0.2)["skill"]) == {"skill0": 20, "skill1": 20}
    # without balancing: 5 % of each (floor(20.0) = 20 and floor(5.0) = 5)
    assert Counter(cat_mixture({"math": a, "code": b}, equal=False)["skill"]) == {"math": 20, "code": 5}


def test_mixture_of_corpus_and_instructions_and_errors():
    corpus = load("dnd_manual", "train", source="generated")
    inst = load("alpaca", "train", source="generated", size=200)
    mix = cat_mixture([corpus, inst], fraction=0.5)
    n = len(corpus) // 2
    assert Counter(mix["skill"]) == {"dnd_manual": n, "alpaca": n}
    assert all(r["prompt"] == "" and r["completion"] in corpus["text"] for r in mix if r["skill"] == "dnd_manual")
    assert set(identity(mix)["skills"]) == {"dnd_manual", "alpaca"}
    with pytest.raises(DataError, match="fraction"):
        cat_mixture([inst], fraction=0)
    with pytest.raises(DataError, match="empty"):
        cat_mixture({"x": inst, "y": inst.select([])})


def test_generated_settings_have_no_leakage():
    for target, skills in [("gsm_hard", ("metamathqa", "code_alpaca")), ("qabot_dnd", ("dnd_manual", "alpaca")),
                           ("bioasq_rc", ("biomed_textbooks", "squad")), ("count_format3",
                                                                          ("count_format1", "count_format2"))]:
        t = load(target, "test", source="generated", size=100)
        check_leakage(t, {s: load(s, "train", source="generated", size=500) for s in skills})


def test_leakage_check_refuses_a_verbatim_target_example():
    t = load("gsm_hard", "test", source="generated", size=20)
    skill = load("metamathqa", "train", source="generated", size=50).to_list()
    skill[7]["completion"] += " Also: " + t[3]["question"].upper()  # case and spacing are normalised away
    leaks = find_leaks(t, {"math": skill})
    assert leaks == [(t[3]["id"], "math", skill[7]["id"])]
    with pytest.raises(DataError, match=f"target '{t[3]['id']}' appears in skill 'math' record '{skill[7]['id']}'"):
        check_leakage(t, {"math": skill})


@pytest.mark.skipif(mirror_root() is None or not Path(mirror_root()).is_dir(), reason="data mirror absent")
def test_mirrored_gsm_hard_does_not_leak_into_the_math_and_code_skills():
    t = load("gsm_hard", "test", source="mirror")
    check_leakage(t, {"gsm8k": load("gsm8k", "train", source="mirror"),
                      "code": load("code_alpaca", "train", source="mirror")})
