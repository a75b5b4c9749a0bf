"""Few-shot prompts of the targets (issue 13 §2): GSM-Hard, QABot and BioASQ prompts start with the
paper's demonstrations (1 shot; 8 PAL shots for the base model on GSM-Hard), the generated suites
with generated ones of the same kind, no demonstration is a scored item, training data stays
zero-shot, and stage 08's result JSON records shots, ids and where the demos came from.

References are independent of the loader: the mirror's JSON files read directly and the Alpaca
template written out here.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorasoups.data import REGISTRY, DataConfig, identity, load, mirror_root
from lorasoups.data.loading import DROPPED_AS_DEMO

MIRROR = mirror_root()
needs_mirror = pytest.mark.skipif(MIRROR is None or not Path(MIRROR).is_dir(), reason="data mirror absent")
PAPER = "lorasoups-paper/"
HEAD = "Below is an instruction that describes a task. Write a response that appropriately completes the request."


def alpaca(instruction: str) -> str:
    return f"{HEAD}\n\n### Instruction:\n{instruction}\n\n### Response:\n"


def raw(rel: str) -> list[dict]:
    return json.loads((Path(MIRROR) / PAPER / rel).read_text())


def test_every_target_with_demos_names_a_fewshot_entry_with_the_same_sources():
    with_demos = {n for n, e in REGISTRY.items() if e.demos}
    assert with_demos == {"gsm_hard", "qabot_dnd", "qabot_biology", "bioasq_rc"}
    for n in with_demos:
        e, f = REGISTRY[n], REGISTRY[REGISTRY[n].demos]
        assert e.role == "target" and f.role == "fewshot" and f.setting == e.setting
        assert f.generator and f.mirror_files  # a generated target gets generated demos; a mirrored one the paper's
    assert not any(e.demos for e in REGISTRY.values() if e.role != "target")


@needs_mirror
def test_mirror_demos_have_stable_positional_ids_in_file_order():
    for name, rel, prefix in (("qa_fewshot", "few_shot/qa.json", "qa"), ("rc_fewshot", "few_shot/rc.json", "rc"),
                              ("pal_fewshot", "few_shot/math.json", "pal")):
        ds, file = load(name, "test", source="mirror"), raw(rel)
        assert list(ds["id"]) == [f"{prefix}-{i}" for i in range(len(file))]
        assert list(ds["instruction"]) == [r["instruction"] for r in file]


@needs_mirror
@pytest.mark.parametrize("name,rel", [("qabot_dnd", "qabot_dnd_test.json"),
                                      ("qabot_biology", "qabot_biology_test.json")])
def test_qabot_prompts_are_one_shot_with_qa_json_first_demo(name, rel):
    qa, items = raw("few_shot/qa.json"), raw(rel)
    ds = load(name, "test", source="mirror")
    assert list(ds["question"]) == [r["instruction"] for r in items]  # every item scored, none dropped
    demo = alpaca(qa[0]["instruction"]) + qa[0]["output"] + "\n\n"
    for r, item in zip(ds, items):
        assert r["prompt"] == demo + alpaca(item["instruction"])
        assert r["prompt"].count("### Instruction:") == 2
        assert not any(d["instruction"] in r["prompt"] for d in qa[1:])
    assert identity(ds)["demonstrations"] == {"dataset": "qa_fewshot", "source": "mirror", "shots": 1, "ids": ["qa-0"]}


@needs_mirror
def test_bioasq_prompt_demo_is_rc_json_first_and_that_item_is_not_scored():
    rc, items = raw("few_shot/rc.json"), raw("bioasq_rc_test.json")
    assert rc[0]["instruction"] == items[0]["instruction"]  # the reason: the demo is test item 1
    ds = load("bioasq_rc", "test", source="mirror")
    demo = alpaca(rc[0]["instruction"]) + rc[0]["answer"] + "\n\n"
    assert list(ds["instruction"]) == [r["instruction"] for r in items[1:]]
    for r in ds:
        assert r["prompt"].startswith(demo) and r["prompt"].count("### Instruction:") == 2
        # no scored item is a demonstration of its own prompt (compared by text)
        shown = [d["instruction"] for d in rc if d["instruction"] in r["prompt"][:len(demo)]]
        assert r["instruction"] not in shown and rc[1]["instruction"] not in r["prompt"]
    ident = identity(ds)
    assert ident["demonstrations"] == {"dataset": "rc_fewshot", "source": "mirror", "shots": 1, "ids": ["rc-0"]}
    assert ident["num_rows"] == len(items) - 1 == 200
    assert ident["dropped"][DROPPED_AS_DEMO] == ["bioasq_rc_test.json#0 (= rc-0)"]
    # a capped smoke-size load still skips the demo item and keeps its size
    assert list(load("bioasq_rc", "test", source="mirror", size=5)["instruction"]) == [
        r["instruction"] for r in items[1:6]]


@pytest.mark.parametrize("name", ["qabot_dnd", "qabot_biology", "bioasq_rc", "gsm_hard"])
def test_generated_targets_get_generated_demos_of_the_same_kind(name):
    fewshot = REGISTRY[name].demos
    d = load(fewshot, "test", source="generated")[0]
    for split in ("validation", "test"):
        ds = load(name, split, source="generated", size=30)
        assert identity(ds)["demonstrations"] == {"dataset": fewshot, "source": "generated", "shots": 1,
                                                  "ids": [d["id"]]}
        assert str(d["id"]).startswith(("gen:", "pal_demo-"))
        for r in ds:
            assert r["prompt"] == alpaca(d["instruction"]) + d["completion"] + "\n\n" + alpaca(r["instruction"])
            assert r["instruction"] != d["instruction"]
    if name == "bioasq_rc":  # a context and a question, in the test's own instruction
        assert "\n\nContext: " in d["instruction"] and "\n\nQuestion: " in d["instruction"]
    elif name != "gsm_hard":  # a closed-book question without an input, as qa.json's
        assert d["instruction"].endswith("?") and "\n" not in d["instruction"]
    else:
        assert "def solution():" in d["completion"]


@pytest.mark.parametrize("name,split", [("alpaca", "train"), ("squad", "train"), ("code_alpaca", "train"),
                                        ("metamathqa", "validation"), ("count_format3", "test")])
def test_training_data_and_format_targets_stay_zero_shot(name, split):
    ds = load(name, split, source="generated", size=10)
    assert "demonstrations" not in identity(ds)
    assert all(r["prompt"].count("### Response:") == 1 for r in ds)


def test_tuning_examples_of_a_target_have_the_scored_prompt_format():
    from lorasoups.stages.common import tuning_examples

    gen = DataConfig(source="generated")
    for setting, target in (("qabot", "qabot_dnd"), ("reading_comprehension", "bioasq_rc")):
        val = tuning_examples(setting, target, gen, 4)
        test = load(target, "test", source="generated", size=4)
        assert identity(val)["demonstrations"] == identity(test)["demonstrations"]
        head = test[0]["prompt"][:-len(alpaca(test[0]["instruction"]))]
        assert all(r["prompt"] == head + alpaca(r["instruction"]) for r in val)


@needs_mirror
def test_stage_08_records_the_shots_ids_and_source_of_each_target():
    from lorasoups.stages.evaluate import BASE_PAL_SHOTS, demonstrations, target_prompts

    data = DataConfig(source="mirror")
    targets = {t: load(t, "test", source="mirror", size=data.size("smoke", target=True))
               for t in ("gsm_hard", "qabot_dnd", "bioasq_rc", "count_format3")}
    sets = {"targets": targets}
    got = {(t, label): demonstrations(target_prompts(sets, t, label, data, "smoke"))
           for t in targets for label in ("base", "cat")}
    assert got["qabot_dnd", "base"] == got["qabot_dnd", "cat"] == {
        "shots": 1, "ids": ["qa-0"], "dataset": "qa_fewshot", "source": "mirror"}
    assert got["bioasq_rc", "base"] == got["bioasq_rc", "cat"] == {
        "shots": 1, "ids": ["rc-0"], "dataset": "rc_fewshot", "source": "mirror"}
    assert got["gsm_hard", "base"] == {"shots": BASE_PAL_SHOTS, "ids": [f"pal-{i}" for i in range(8)],
                                       "dataset": "pal_fewshot", "source": "mirror"}
    assert got["gsm_hard", "cat"]["shots"] == 1 and got["gsm_hard", "cat"]["ids"] == ["pal-0"]
    assert got["count_format3", "cat"] == {"shots": 0, "ids": [], "dataset": None, "source": None}
