"""The controls beside CAT (issue 13 §7) on the tiny model: cat_random's random LoRA, random_alpha,
cat_data_lora and the oracle, each checked against an independent computation."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_stage_merge import DATA, stage_env  # noqa: F401  (the fixture: two recorded skill LoRAs)

from lorasoups.config import ConfigError
from lorasoups.data import DataConfig, load
from lorasoups.merging.random_lora import random_lora_like
from lorasoups.stages import train
from lorasoups.stages.common import trained
from lorasoups.stages.config import ExperimentConfig
from lorasoups.training import SftConfig, SoupTrainConfig

SMALL = DataConfig(source="generated", smoke_size=8, cat_fraction=0.5)
SOUP = SoupTrainConfig(max_steps=2, per_device_train_batch_size=2, gradient_accumulation_steps=1, max_length=64,
                       logging_steps=1, eval_points=5)
SFT = SftConfig(r=4, lora_alpha=8, max_steps=2, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                warmup_steps=0, max_length=512, logging_steps=1, save_steps=2)  # 1-shot PAL prompts are long


def _updates(adapter: Path) -> dict[str, torch.Tensor]:
    """module -> B @ A straight from the safetensors file (independent of lorasoups' reader)."""
    t = load_file(str(adapter / "adapter_model.safetensors"))
    return {k[: -len(".lora_A.weight")]: t[k.replace("lora_A", "lora_B")] @ t[k] for k in t if "lora_A" in k}


def test_random_lora_matches_each_modules_update_norm_and_nothing_else(stage_env, tmp_path):  # noqa: F811
    src = stage_env / "skills" / "skill2"
    report = random_lora_like(src, tmp_path / "r0", seed=0)
    trained_dw, random_dw = _updates(src), _updates(tmp_path / "r0")
    assert trained_dw.keys() == random_dw.keys() and len(report["modules"]) == len(trained_dw)
    for m, dw in trained_dw.items():
        r = random_dw[m]
        assert r.shape == dw.shape
        assert torch.linalg.matrix_norm(r) == pytest.approx(float(torch.linalg.matrix_norm(dw)), rel=1e-5)
        cos = float((r * dw).sum() / (r.norm() * dw.norm()))
        assert abs(cos) < 0.3, f"{m}: the random update is aligned with the trained one (cos {cos:.2f})"
    src_cfg = json.loads((src / "adapter_config.json").read_text())
    assert json.loads((tmp_path / "r0" / "adapter_config.json").read_text()) == src_cfg
    # seeded: the same seed gives the same bytes, another seed other tensors
    random_lora_like(src, tmp_path / "r0b", seed=0)
    random_lora_like(src, tmp_path / "r1", seed=1)
    a, b, c = (load_file(str(tmp_path / d / "adapter_model.safetensors")) for d in ("r0", "r0b", "r1"))
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)
    with pytest.raises(Exception, match="not empty"):
        random_lora_like(src, tmp_path / "r0", seed=0)  # never overwrites


def test_random_alpha_is_the_released_init_folded_untrained(stage_env, tiny):  # noqa: F811
    import copy

    from lorasoups.merging import build, export_adapter

    cfg = SoupTrainConfig(soup={"granularity": "layer"})
    exp = ExperimentConfig(settings=["math_code"], controls=["random_alpha"])
    train.learn_controls("tiny-random-llama", "math_code", 0, SMALL, cfg, exp, "smoke")
    rec = trained("smoke", "math_code", 0)["random_alpha"]
    assert rec["config"]["params"]["init"] == "released" and rec["config"]["params"]["seed"] == 0
    table = rec["metrics"]["alphas"]
    alphas = [r["alpha"] for r in table]
    assert min(alphas) < 0.4 and max(alphas) > 0.6  # N(0,1) logits: far from static CAT's 0.5
    # an independent fold: cat_static at the recorded alpha of each layer gives the same adapter
    groups = list(dict.fromkeys(r["group"] for r in table))
    names = list(dict.fromkeys(r["skill"] for r in table))
    rows = [[next(r["alpha"] for r in table if r["group"] == g and r["skill"] == s) for s in names] for g in groups]
    skills = [str(stage_env / "skills" / "skill1"), str(stage_env / "skills" / "skill2")]
    ref = export_adapter(build("cat_static", copy.deepcopy(tiny[0]), skills, alphas=rows, granularity="layer"),
                         stage_env / "ref_random_alpha")
    want, got = _updates(ref), _updates(Path(rec["location"]))
    assert want.keys() == got.keys()
    assert all(torch.allclose(want[m], got[m], atol=1e-6) for m in want)
    # rerun: reused, the same record
    assert train.random_alpha_cat("tiny-random-llama", "math_code", 0, cfg, "smoke") == pytest.approx(
        rec["metrics"]["mean_abs_alpha_minus_equal"])


def test_controls_train_and_record_their_labels(stage_env):  # noqa: F811
    exp = ExperimentConfig(settings=["math_code"], controls=["cat_random", "cat_data_lora", "oracle"])
    out = train.train_controls("tiny-random-llama", "math_code", 0, SMALL, SFT, "smoke", exp)
    assert set(out) == {"cat_data_lora", "oracle"} and all(isinstance(v, float) for v in out.values())
    train.learn_controls("tiny-random-llama", "math_code", 0, SMALL, SOUP, exp, "smoke")
    recs = trained("smoke", "math_code", 0)
    assert {"cat_random", "cat_data_lora", "oracle"} <= set(recs)
    cr = recs["cat_random"]
    assert cr["metrics"]["random_skill"] == "skill2" and Path(cr["metrics"]["random_lora"]).is_dir()
    assert any("random" in r["skill"] for r in cr["metrics"]["alphas"])
    # cat_data_lora learned on exactly the CAT mixture; the oracle on generated held-out target items
    assert recs["cat_data_lora"]["datasets"]["cat_mixture"]["name"] == "cat_mixture"
    oracle_targets = recs["oracle"]["datasets"]["oracle_data"]["targets"]
    assert oracle_targets["gsm_hard"]["split"] == "validation" and oracle_targets["gsm_hard"]["source"] == "generated"
    with pytest.raises(ConfigError, match="has 2 skills"):
        train.learn_controls("tiny-random-llama", "math_code", 0, SMALL, SOUP,
                             ExperimentConfig(controls=["cat_random"], control_random_skill=3), "smoke")


def test_oracle_data_is_never_a_scored_item_and_is_refused_where_too_small():
    ds, why = train.oracle_data("math_code", DATA, "smoke", min_records=8)
    assert why is None and len(ds) == DATA.size("smoke")
    scored = {r["question"] for r in load("gsm_hard", "test", source="generated", size=400)}
    trained_q = {r["prompt"].rsplit("### Instruction:\n", 1)[-1].split("\n\n### Response:")[0] for r in ds}
    assert trained_q and not trained_q & scored
    ds4, _ = train.oracle_data("prompt_robustness", DATA, "smoke", min_records=8)
    assert len(ds4) == DATA.size("smoke") and len(json.loads(ds4.info.description)["targets"]) == 4
    none, why = train.oracle_data("qabot", DATA, "smoke", min_records=32)
    assert none is None and "qabot_dnd" in why and "oracle_min_records" in why


def test_cat_recipes_learn_beside_cat_under_their_own_recipe(stage_env):  # noqa: F811
    """experiment.cat_recipes: stage 04 learns cat_<recipe> with that recipe's values and the rest of
    the cat section unchanged (the CPU study's Figure 9 compares both recipes)."""
    from lorasoups import pipeline

    assert train.learn_cat_recipes("tiny-random-llama", "math_code", 0, SMALL, SOUP, ExperimentConfig(),
                                   "smoke") == {}
    out = train.learn_cat_recipes("tiny-random-llama", "math_code", 0, SMALL, SOUP,
                                  ExperimentConfig(cat_recipes=["paper"]), "smoke")
    assert list(out) == ["cat_paper"] and out["cat_paper"]["eval_loss_best"] is not None
    rec = trained("smoke", "math_code", 0)["cat_paper"]
    cfg = rec["config"]
    assert cfg["recipe"] == "paper" and cfg["max_steps"] == SOUP.max_steps
    assert rec["metrics"]["alphas"] and rec["kind"] == "adapter"
    for bad, msg in (({"experiment": {"cat_recipes": ["papr"]}}, "unknown CAT recipe 'papr'; did you mean 'paper'"),
                     ({"experiment": {"cat_recipes": ["converge"]}}, "'converge' is learned twice")):
        with pytest.raises(ConfigError, match=msg):
            pipeline.resolve("smoke", overrides=bad)
