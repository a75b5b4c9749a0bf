"""The informativeness gate on the tiny model: its NLL measure against transformers' own loss, its
floor and interval rules on hand-made numbers, and both gates end to end on recorded LoRAs."""
from __future__ import annotations

import copy
import dataclasses
import json
from collections import Counter

import numpy as np
import pytest
import torch
from test_stage_merge import TARGETS, _Run

from lorasoups import paths, pipeline
from lorasoups.data import DataConfig, load
from lorasoups.results import ResultsError
from lorasoups.stages import gate
from lorasoups.stages.common import write_train_result
from lorasoups.stages.config import EvalConfig, GateConfig

DATA = DataConfig(source="generated")
EV = EvalConfig(max_new_tokens=6, greedy=True, batch_size=4)
GATE = GateConfig(size=4, max_length=64, batch_size=3)


def _record_skills(tiny, tmp_path, setting: str) -> None:
    from peft import LoraConfig, get_peft_model

    for label, seed in (("skill1", 21), ("skill2", 22)):
        torch.manual_seed(seed)
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False)
        out = tmp_path / "skills" / setting / label
        get_peft_model(copy.deepcopy(tiny[0]), cfg).save_pretrained(str(out))
        write_train_result("smoke", setting, label, 0, _Run(out, out), {}, "tiny-random-llama")


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("LORASOUPS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LORASOUPS_RUNS", str(tmp_path / "runs"))
    return tmp_path


def test_completion_nll_equals_transformers_loss_on_the_completion(tiny):
    model, tok = tiny
    recs = [{"prompt": "Q: what is 2 + 3?\nA:", "completion": " 5"},
            {"prompt": "Name a colour.", "completion": " Blue, the colour of the sky."},
            {"text": "A corpus record is scored on every token."}]
    got = gate.completion_nll(model, tok, recs, max_length=64, batch_size=2)  # padded batches
    for rec, nll in zip(recs, got):
        if "text" in rec:
            ids = tok(rec["text"] + tok.eos_token, add_special_tokens=False).input_ids
            labels = list(ids)
        else:
            p = tok(rec["prompt"], add_special_tokens=False).input_ids
            ids = p + tok(rec["completion"] + tok.eos_token, add_special_tokens=False).input_ids
            labels = [-100] * len(p) + ids[len(p):]
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
        assert nll == pytest.approx(float(ref), rel=1e-5)


def test_floor_is_the_better_of_base_and_the_majority_answer():
    golds = ["0", "0", "0", "2", "3"]
    name, floor = gate.floor_of(golds, [0, 0, 0, 1, 0])
    assert name == "majority answer '0'" and floor == [1, 1, 1, 0, 0]
    name, floor = gate.floor_of(golds, [1, 1, 1, 1, 0])
    assert name == "base" and floor == [1, 1, 1, 1, 0]


def test_paired_interval_and_the_accuracy_rule():
    ci = gate.paired_ci([1, 1, 1, 1], [0, 0, 0, 0])
    assert ci == {"diff": 1.0, "lo": 1.0, "hi": 1.0}
    rng = np.random.default_rng(1)
    a, b = rng.random(400), rng.random(400)
    ci = gate.paired_ci(a, b)
    assert ci["lo"] < ci["diff"] < ci["hi"] and ci["diff"] == pytest.approx(float((a - b).mean()))
    assert gate.accuracy_verdict([1] * 9 + [0], "base", [0] * 10)["passed"]
    small_gap = [1] * 41 + [0] * 59
    assert not gate.accuracy_verdict(small_gap, "base", [1] * 40 + [0] * 60)["passed"]  # +1 point only


def test_a_corpus_skill_is_gated_in_sample():
    """A manual's validation text is part of its train text (no held-out text exists): the corpus
    skill is gated on its train split, an instruction skill on its held-out test split."""
    val = set(load("dnd_manual", "validation", source="generated")["text"])
    assert val <= set(load("dnd_manual", "train", source="generated")["text"])
    assert gate.held_out_split("dnd_manual") == "train" and gate.held_out_split("alpaca") == "test"


def test_oracle_rows_pair_with_the_base_by_id():
    base = [{"id": "a", "correct": 1}, {"id": "b", "correct": 0}]
    oracle = [{"id": "b", "correct": 1}, {"id": "a", "correct": 0}]
    assert [r["id"] for r in gate.paired_rows({"base": base, "oracle": oracle}, "x")["oracle"]] == ["a", "b"]
    with pytest.raises(ResultsError, match="x: base and oracle were scored on different items"):
        gate.paired_rows({"base": base, "oracle": [{"id": "a"}, {"id": "c"}]}, "x")
    same = [{"id": "x", "correct": 1}, {"id": "x", "correct": 0}]  # repeated ids: by position
    assert gate.paired_rows({"base": same, "oracle": same[::-1]}, "x")["oracle"] == same[::-1]
    with pytest.raises(ResultsError, match="base has 2 scored items, the oracle 1"):
        gate.paired_rows({"base": [{"i": 0}, {"i": 1}], "oracle": [{"i": 0}]}, "x")


def test_skill_gate_on_a_text_and_a_scored_setting(env, tiny):
    _record_skills(tiny, env, "math_code")
    rows = gate.skill_gate("tiny-random-llama", "math_code", 0, DATA, EV, GATE, "smoke")
    assert [r["label"] for r in rows] == ["skill1", "skill2"]
    for r in rows:
        assert r["rule"] == "skill_text" and r["n"] == GATE.size
        # the verdict is the rule applied to the numbers it reports
        assert r["passed"] == (r["metric"] <= 0.9 * r["base"] and r["gap"]["lo"] > 0)
    # the base's NLL, recomputed independently of the gate's loop
    ds = load("metamathqa", "test", source="generated", seed=0, size=GATE.size)
    base_nll = gate.completion_nll(tiny[0], tiny[1], list(ds), GATE.max_length, batch_size=1)
    assert rows[0]["base"] == pytest.approx(float(np.mean(base_nll)), rel=1e-5)

    _record_skills(tiny, env, "prompt_robustness")
    rows = gate.skill_gate("tiny-random-llama", "prompt_robustness", 0, DATA, EV, GATE, "smoke")
    for r in rows:
        assert r["rule"] == "skill_scored" and r["metric_name"] == "correct"
        assert r["passed"] == (r["gap"]["diff"] >= gate.ACC_MARGIN and r["gap"]["lo"] > 0)
        assert 0 <= r["floor"] <= 1 and r["floor"] >= r["base"]
        # beside each accuracy, how often the model gave the majority answer (a floor-scorer gives it always)
        golds = load(r["skill"], "test", source="generated", seed=0, size=GATE.size)["answer"]
        assert r["majority_answer"] == Counter(str(g) for g in golds).most_common(1)[0][0]
        assert set(r["majority_share"]) == {"base", r["label"]}
        assert all(0 <= v <= 1 for v in r["majority_share"].values())


def test_run_gate_writes_its_verdict_and_names_a_missing_oracle(env, tiny):
    _record_skills(tiny, env, "math_code")
    cfg = pipeline.resolve("smoke")
    cfg["model"] = dataclasses.replace(cfg["model"], name="tiny-random-llama")
    cfg["data"], cfg["evaluation"], cfg["gate"] = DATA, EV, GATE
    out = gate.run_gate(cfg, "math_code", 0)
    assert out["oracle"] == [] and "no oracle" in out["oracle_absent"]
    rec = json.loads((paths.results_dir("smoke") / "gate" / "math_code" / "gate--s0.json").read_text())
    assert rec["metrics"]["passed"] == all(r["passed"] for r in rec["metrics"]["skills"])
    assert set(rec["metrics"]["rules"]) == {"skill_scored", "skill_text", "oracle"}


def test_the_gate_refuses_a_setting_without_trained_skills(env):
    with pytest.raises(Exception, match="no trained skill1"):
        gate.skill_gate("tiny-random-llama", "qabot", 0, DATA, EV, GATE, "smoke")


def test_oracle_gate_scores_base_and_oracle_as_stage_08_results(env, tiny):
    from peft import LoraConfig, get_peft_model

    _record_skills(tiny, env, "prompt_robustness")
    torch.manual_seed(5)
    out = env / "skills" / "oracle"
    get_peft_model(copy.deepcopy(tiny[0]), LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS,
                                                      init_lora_weights=False)).save_pretrained(str(out))
    write_train_result("smoke", "prompt_robustness", "oracle", 0, _Run(out, out), {}, "tiny-random-llama")
    data = dataclasses.replace(DATA, eval_smoke_size=6)
    ev = dataclasses.replace(EV, max_new_tokens_by_task={"prompt_format": 3})
    rows, why = gate.oracle_gate("tiny-random-llama", "prompt_robustness", 0, data, ev, "smoke")
    assert why is None and [r["target"] for r in rows] == ["count_format3", "count_format7", "count_format8",
                                                           "count_format10"]
    for r in rows:
        ex = [json.loads(line) for line in (paths.results_dir("smoke") / "eval" / "prompt_robustness" /
                                            f"oracle--{r['target']}-s0.examples.jsonl").read_text().splitlines()]
        assert r["n"] == len(ex) == 6 and r["metric"] == pytest.approx(np.mean([e["correct"] for e in ex]))
        assert r["passed"] == (r["gap"]["diff"] >= gate.ACC_MARGIN and r["gap"]["lo"] > 0)
    rec = json.loads((paths.results_dir("smoke") / "eval" / "prompt_robustness" /
                      "base--count_format3-s0.json").read_text())
    assert rec["config"]["generation"]["max_new_tokens"] == 3  # the task kind's own cap


def test_a_skills_only_gate_leaves_the_verdict_open_unless_a_skill_failed(env, monkeypatch):
    """``--skills-only`` never passes a setting (its oracle is unseen), but a failed skill fails it;
    the oracle gate is not run at all."""
    cfg = pipeline.resolve("smoke")
    cfg["model"] = dataclasses.replace(cfg["model"], name="tiny-random-llama")
    monkeypatch.setattr(gate, "oracle_gate", lambda *a, **k: pytest.fail("the oracle gate ran"))
    for skill_passes, expected in ((True, None), (False, False)):
        rows = [{"label": "skill1", "passed": True}, {"label": "skill2", "passed": skill_passes}]
        monkeypatch.setattr(gate, "skill_gate", lambda *a, rows=rows, **k: rows)
        out = gate.run_gate(cfg, "math_code", 0, skills_only=True)
        assert out["passed"] is expected and out["oracle"] == [] and "--skills-only" in out["oracle_absent"]
