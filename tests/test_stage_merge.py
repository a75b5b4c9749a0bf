"""Stage 05 on the tiny model: the sweep's best point becomes the exported TIES merge, and the
exported adapter equals the same merge built independently with peft (lorasoups.merging.build)."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lorasoups import paths
from lorasoups.data import DataConfig
from lorasoups.evaluation.fastgen import FastGenConfig
from lorasoups.merging import build
from lorasoups.stages import merge
from lorasoups.stages.common import write_train_result
from lorasoups.stages.config import ExperimentConfig
from lorasoups.sweep import GridConfig, SweepConfig, read_sweep

TARGETS = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]


@dataclass
class _Run:
    run_dir: Path
    adapter_dir: Path
    reused: bool = False
    summary: dict | None = None


@pytest.fixture
def stage_env(tiny, tmp_path, monkeypatch):
    """Results and runs in tmp_path, with two recorded skill LoRAs of math_code (seed 0)."""
    from peft import LoraConfig, get_peft_model

    monkeypatch.setenv("LORASOUPS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LORASOUPS_RUNS", str(tmp_path / "runs"))
    for label, seed in (("skill1", 21), ("skill2", 22)):
        torch.manual_seed(seed)
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False)
        out = tmp_path / "skills" / label
        get_peft_model(copy.deepcopy(tiny[0]), cfg).save_pretrained(str(out))
        write_train_result("smoke", "math_code", label, 0, _Run(out, out), {}, "tiny-random-llama")
    return tmp_path


SWEEP = SweepConfig(methods=["ties"], grid=GridConfig(density=[0.0, 1.0, 0.5], alpha=[1.0, 2.0, 1.0]),
                    validation_size=3, generation=FastGenConfig(max_new_tokens=6, batch_size=3))
DATA = DataConfig(source="generated")


def test_sweep_then_merge_uses_the_best_point(stage_env, tiny):
    exp = ExperimentConfig(settings=["math_code"], merges=["cat_static", "ties"])
    swept = merge.sweep_setting("tiny-random-llama", "math_code", 0, exp, DATA, SWEEP, "smoke", device="cpu")
    assert list(swept) == ["ties"]  # dare is not among the merges
    header, rows = read_sweep(paths.results_dir("smoke") / "sweep" / "math_code" / "ties--s0.jsonl")
    assert header["n_prompts"] == 3 and len(rows) == 12  # 3 densities x 2 x 2 alphas
    best = swept["ties"]["best"]
    assert best["density"] != 0  # density 0 (the base model) is never chosen as a merge
    values = [r["metrics"]["exec_accuracy"] for r in rows if r["density"] != 0]
    assert best["value"] == max(values)
    assert swept["ties"]["params"] == {"alphas": best["alphas"], "density": best["density"]}
    assert swept["ties"]["validation"]["gsm_hard"]["split"] == "validation"

    done = merge.static_merges("tiny-random-llama", "math_code", 0, exp, "smoke", swept)
    assert done["ties"] == swept["ties"]["params"] and done["cat_static"] == {"alphas": [0.5, 0.5]}
    rec = json.loads((paths.results_dir("smoke") / "train" / "math_code" / "ties--s0.json").read_text())
    assert rec["config"]["params_from"] == "sweep" and rec["config"]["sweep"]["best"]["point"] == best["point"]
    static = json.loads((paths.results_dir("smoke") / "train" / "math_code" / "cat_static--s0.json").read_text())
    assert static["config"]["params_from"] == "experiment"

    # the exported adapter is the same merge built independently through peft
    skills = [str(stage_env / "skills" / "skill1"), str(stage_env / "skills" / "skill2")]
    ref = build("ties", copy.deepcopy(tiny[0]), skills, **swept["ties"]["params"])
    got = load_file(str(Path(rec["location"]) / "adapter_model.safetensors"))
    names = [n for n, _ in ref.named_parameters() if "lora_" in n]
    assert names
    for n in names:
        key = n.replace(".default", "")
        assert key in got, key
        torch.testing.assert_close(got[key], dict(ref.named_parameters())[n].detach(), rtol=1e-5, atol=1e-6)

    # a rerun resumes: nothing is recomputed, the same best point comes back
    again = merge.sweep_setting("tiny-random-llama", "math_code", 0, exp, DATA, SWEEP, "smoke", device="cpu")
    assert again["ties"]["best"] == best


def test_sweep_skips_settings_and_methods_not_asked(stage_env):
    exp = ExperimentConfig(settings=["math_code"], merges=["linear"])
    assert merge.sweep_setting("tiny-random-llama", "math_code", 0, exp, DATA, SWEEP, "smoke", device="cpu") == {}
    other = SweepConfig(methods=["ties"], settings=["qabot"])
    exp = ExperimentConfig(settings=["math_code"], merges=["ties"])
    assert merge.sweep_setting("tiny-random-llama", "math_code", 0, exp, DATA, other, "smoke", device="cpu") == {}


def test_validation_set_pools_targets_and_falls_back_from_the_mirror():
    sweep = SweepConfig(validation_size=2)
    pr = merge.validation_set("prompt_robustness", DATA, sweep, "smoke")
    assert pr["task"] == "prompt_format" and len(pr["prompts"]) == 8 and len(pr["datasets"]) == 4
    if paths.data_mirror() is None:
        pytest.skip("no data mirror beside the checkout")
    mirrored = DataConfig(source="mirror")
    got = merge.validation_set("math_code", mirrored, sweep, "smoke")  # the mirror has GSM-Hard's test only
    assert got["datasets"]["gsm_hard"]["source"] == "generated"
    with pytest.raises(Exception, match="no 'validation' split"):
        merge.validation_set("math_code", mirrored, SweepConfig(validation_size=2, validation_source="same"), "smoke")
