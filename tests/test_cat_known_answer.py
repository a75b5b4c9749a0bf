"""Learned CAT must learn: a problem whose answer is known, under the default recipe and the paper's.

Two skill LoRAs on the tiny model, one that always answers X, one that always answers Y; CAT
learns on X data only. The right soup weights the X skill: its mean alpha must end >= 0.75 and
the validation loss below static CAT's (the equal start). The paper's recipe (lr 1e-4, 1 epoch)
is run on the same problem to show what it does: alpha hardly moves.
"""
from __future__ import annotations

import json

import pytest
from datasets import Dataset

from lorasoups.training.sft import SftConfig, train_sft
from lorasoups.training.soup import RECIPES, SoupTrainConfig, train_cat

X, Y = "apple apple apple", "zebra zebra zebra"
SKILL = dict(r=4, lora_alpha=8, max_steps=30, per_device_train_batch_size=8, gradient_accumulation_steps=1,
             warmup_steps=0, learning_rate=2e-2, save_steps=30, logging_steps=10, max_length=32)


def answers(n: int, answer: str, start: int = 0) -> Dataset:
    return Dataset.from_list([{"id": str(i), "prompt": f"Item {i}: name a word.\nAnswer:", "completion": " " + answer}
                              for i in range(start, start + n)])


@pytest.fixture(scope="module")
def xy_skills(tiny_dir, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORASOUPS_RUNS", str(tmp_path_factory.mktemp("xy-runs")))
        x = train_sft(str(tiny_dir), answers(16, X), SftConfig(**SKILL), name="x").adapter_dir
        y = train_sft(str(tiny_dir), answers(16, Y), SftConfig(**SKILL), name="y").adapter_dir
    return [x, y]


def mean_alpha(run_dir, skill: str) -> float:
    table = json.loads((run_dir / "alphas.json").read_text())
    vals = [r["alpha"] for r in table if r["skill"] == skill]
    return sum(vals) / len(vals)


def test_default_recipe_finds_the_useful_skill(tiny_dir, xy_skills, tmp_path, monkeypatch):
    monkeypatch.setenv("LORASOUPS_RUNS", str(tmp_path / "runs"))
    cfg = SoupTrainConfig(max_length=32, logging_steps=1)  # the default recipe, as a stage runs it
    assert cfg.recipe == "converge" and cfg.resolved().learning_rate == RECIPES["converge"]["learning_rate"]
    res = train_cat(str(tiny_dir), xy_skills, answers(24, X, 100), answers(8, X, 200), cfg, name="known")
    s = res.summary
    assert mean_alpha(res.run_dir, "x") >= 0.75
    assert s["eval_loss_best"] < s["eval_loss_before"]
    # validation selected among >= 5 points spread over the run, the last one included
    steps = [p["step"] for p in s["eval_points"]]
    assert steps[0] == 0 and len(steps) >= 6 and steps[-1] == s["global_step"]
    best = min(s["eval_points"][1:], key=lambda p: p["eval_loss"])
    assert s["best_step"] == best["step"] and s["best_checkpoint"].endswith(f"checkpoint-{best['step']}")
    # drift: logged at every step (and 0 at the step-0 evaluation), for both skills; the final
    # drift is the exported alphas'
    assert [d["step"] for d in s["alpha_drift"]] == list(range(0, s["global_step"] + 1))
    assert s["alpha_drift"][0]["max"] == {"x": 0.0, "y": 0.0}
    table = json.loads((res.run_dir / "alphas.json").read_text())
    by_group = {r["group"]: r["alpha"] for r in table if r["skill"] == "x"}  # layer granularity: one per layer
    want = sum(abs(a - 0.5) for a in by_group.values()) / len(by_group)
    assert s["final_drift"]["mean"]["x"] == pytest.approx(want, abs=1e-6)
    log = json.loads((res.run_dir / "log_history.json").read_text())
    assert any("drift_max/x" in r for r in log)


def test_paper_recipe_hardly_moves_alpha(tiny_dir, xy_skills, tmp_path, monkeypatch):
    monkeypatch.setenv("LORASOUPS_RUNS", str(tmp_path / "runs"))
    cfg = SoupTrainConfig(recipe="paper", max_length=32, logging_steps=1, per_device_train_batch_size=4,
                          gradient_accumulation_steps=1)  # 6 steps: more than the paper's 4x8 batch gives
    res = train_cat(str(tiny_dir), xy_skills, answers(24, X, 100), answers(8, X, 200), cfg, name="paper")
    s = res.summary
    assert s["global_step"] == 6 and len(s["eval_points"]) == 7
    assert max(s["final_drift"]["max"].values()) < 0.01
    assert abs(mean_alpha(res.run_dir, "x") - 0.5) < 0.01


def test_released_init_is_seeded_by_the_run_seed(tiny_dir, xy_skills, tmp_path, monkeypatch):
    """init: released draws one N(0, 1) logit per group and skill from the run seed."""
    import torch

    from lorasoups.merging import build, trainable_parameters
    from lorasoups.training.sft import load_for_training

    monkeypatch.setenv("LORASOUPS_RUNS", str(tmp_path / "runs"))
    cfg = SoupTrainConfig(max_steps=1, learning_rate=0.0, max_length=32, seed=7, soup={"init": "released"})
    res = train_cat(str(tiny_dir), xy_skills, answers(8, X), answers(4, X, 50), cfg, name="released")
    (name, learned), = trainable_parameters(res.model).items()
    model, _ = load_for_training(str(tiny_dir))
    want = torch.randn(learned.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(learned.detach(), want)
    other = build("cat", model, [str(a) for a in xy_skills], init="released", seed=8)
    assert not torch.equal(trainable_parameters(other)[name].detach(), want)
