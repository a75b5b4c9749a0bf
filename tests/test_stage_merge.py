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
    # prompt robustness tunes on held-out records of its training formats, never on the scored formats
    pr = merge.validation_set("prompt_robustness_1_4", DATA, sweep, "smoke")
    assert pr["task"] == "prompt_format" and len(pr["prompts"]) == 4
    assert set(pr["datasets"]) == {"count_format1", "count_format4"}
    assert all(d["split"] == "validation" for d in pr["datasets"].values())
    qa = merge.validation_set("qabot", DATA, sweep, "smoke")
    assert set(qa["datasets"]) == {"qabot_dnd"}
    if paths.data_mirror() is None:
        pytest.skip("no data mirror beside the checkout")
    mirrored = DataConfig(source="mirror")
    got = merge.validation_set("math_code", mirrored, sweep, "smoke")  # the mirror has GSM-Hard's test only
    assert got["datasets"]["gsm_hard"]["source"] == "generated"
    with pytest.raises(Exception, match="no 'validation' split"):
        merge.validation_set("math_code", mirrored, SweepConfig(validation_size=2, validation_source="same"), "smoke")


def test_merge_params_follow_the_number_of_skills():
    from lorasoups.config import ConfigError
    from lorasoups.stages.config import ExperimentConfig
    from lorasoups.stages.merge import merge_params

    exp = ExperimentConfig()
    assert merge_params("cat_static", exp, 3, 0) == {"alphas": [0.5, 0.5, 0.5]}  # the paper's value
    assert merge_params("cat_static", ExperimentConfig(static_alpha=None), 4, 0) == {"alphas": [0.25] * 4}
    assert merge_params("ties", exp, 3, 0) == {"alphas": [1.0, 1.0, 1.0], "density": 0.5}
    assert merge_params("dare", exp, 2, 7) == {"alphas": [1.0, 1.0], "density": 0.5, "seed": 7}
    with pytest.raises(ConfigError, match="merge_alphas has 2 weights but 3 skills .*setting 'math_code_k3'"):
        merge_params("ties", ExperimentConfig(merge_alphas=[1.0, 1.5]), 3, 0, "math_code_k3")
    # static CAT takes static_alpha, never merge_alphas; a *_svd pruning merge gets the density too
    assert merge_params("cat_static", ExperimentConfig(merge_alphas=[1.0, 1.5]), 3, 0) == {"alphas": [0.5] * 3}
    assert merge_params("ties_svd", exp, 2, 0) == {"alphas": [1.0, 1.0], "density": 0.5}


def test_three_skill_setting_sweeps_a_shared_weight_and_exports_every_merge(stage_env, tiny):
    """math_code_k3: stage 05 needs skill1..skill3, sweeps one weight for all three skills, and the
    exported merges equal peft's own three-adapter merge and the 1/k static CAT."""
    from peft import LoraConfig, get_peft_model

    from lorasoups.config import ConfigError
    from lorasoups.stages.common import skill_adapters

    skills = []
    for label, seed in (("skill1", 31), ("skill2", 32), ("skill3", 33)):
        if label == "skill3":
            with pytest.raises(ConfigError, match="no trained skill3"):
                skill_adapters("smoke", "math_code_k3", 0)
        torch.manual_seed(seed)
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False)
        out = stage_env / "skills_k3" / label
        get_peft_model(copy.deepcopy(tiny[0]), cfg).save_pretrained(str(out))
        write_train_result("smoke", "math_code_k3", label, 0, _Run(out, out), {}, "tiny-random-llama")
        skills.append(str(out))
    assert skill_adapters("smoke", "math_code_k3", 0) == skills

    exp = ExperimentConfig(settings=["math_code_k3"], merges=["cat_static", "ties"], static_alpha=None)
    swept = merge.sweep_setting("tiny-random-llama", "math_code_k3", 0, exp, DATA, SWEEP, "smoke", device="cpu")
    _, rows = read_sweep(paths.results_dir("smoke") / "sweep" / "math_code_k3" / "ties--s0.jsonl")
    assert len(rows) == 6  # 3 densities x 2 shared weights
    assert all(len(r["alphas"]) == 3 and len(set(r["alphas"])) == 1 for r in rows)
    done = merge.static_merges("tiny-random-llama", "math_code_k3", 0, exp, "smoke", swept)
    assert done["cat_static"] == {"alphas": [1 / 3] * 3}
    for method in ("ties", "cat_static"):
        rec = json.loads((paths.results_dir("smoke") / "train" / "math_code_k3" / f"{method}--s0.json").read_text())
        ref = build(method, copy.deepcopy(tiny[0]), skills, **done[method])
        got = load_file(str(Path(rec["location"]) / "adapter_model.safetensors"))
        ref_params = {n.replace(".default", ""): p for n, p in ref.named_parameters() if "lora_" in n}
        if method == "ties":
            for key, p in ref_params.items():
                torch.testing.assert_close(got[key], p.detach(), rtol=1e-5, atol=1e-6)
        else:  # the CAT fold: rank 3 * 4, lora_A the skills' A stacked
            a_keys = [k for k in got if k.endswith("lora_A.weight")]
            assert a_keys and all(got[k].shape[0] == 12 for k in a_keys)


def test_compress_cat_writes_the_svd_of_learned_cats_fold(stage_env, tiny):
    """Stage 05's cat_svd: the recorded adapter is compress_adapter's output on the recorded CAT
    fold, its numbers are in the result JSON, and nothing is built unless asked for."""
    from lorasoups.config import ConfigError
    from lorasoups.merging import compress_adapter, export_adapter
    from lorasoups.stages.common import trained

    exp = ExperimentConfig(settings=["math_code"], cat_svd_rank=3)
    assert merge.compress_cat("tiny-random-llama", "math_code", 0, ExperimentConfig(), "smoke") == {}
    with pytest.raises(ConfigError, match="run stage learn_cat first"):
        merge.compress_cat("tiny-random-llama", "math_code", 0, exp, "smoke")
    skills = [str(stage_env / "skills" / "skill1"), str(stage_env / "skills" / "skill2")]
    fold = stage_env / "cat_fold"  # stands in for learned CAT's exported fold (rank 4 + 4)
    export_adapter(build("cat_static", copy.deepcopy(tiny[0]), skills, alphas=[0.7, 0.2]), fold)
    write_train_result("smoke", "math_code", "cat", 0, _Run(fold, fold), {}, "tiny-random-llama")

    got = merge.compress_cat("tiny-random-llama", "math_code", 0, exp, "smoke")
    ref = compress_adapter(copy.deepcopy(tiny[0]), fold, stage_env / "ref", 3)
    assert got == {k: ref[k] for k in ("rank_before", "rank_after", "rel_error", "energy_kept")}
    assert got["rank_before"] == 8 and got["rank_after"] == 3 and 0 < got["energy_kept"] < 1
    rec = trained("smoke", "math_code", 0)["cat_svd"]
    assert rec["metrics"]["energy_kept"] == got["energy_kept"]
    a = load_file(str(Path(rec["location"]) / "adapter_model.safetensors"))
    b = load_file(str(stage_env / "ref" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert merge.compress_cat("tiny-random-llama", "math_code", 0, exp, "smoke") == got  # reused


def test_cat_from_lorahub_starts_at_lorahubs_weights(stage_env):
    """With a zero learning rate the learned alphas stay where they started: LoraHub's weights."""
    from lorasoups.config import ConfigError
    from lorasoups.stages import train
    from lorasoups.stages.common import trained
    from lorasoups.training import SoupTrainConfig

    cfg = SoupTrainConfig(max_steps=1, learning_rate=0.0, per_device_train_batch_size=2,
                          gradient_accumulation_steps=1, max_length=64, logging_steps=1)
    data = DataConfig(source="generated", smoke_size=8, cat_fraction=0.5)
    on = ExperimentConfig(settings=["math_code"], cat_from_lorahub=True)
    assert train.learn_cat_from_lorahub("tiny-random-llama", "math_code", 0, data, cfg, ExperimentConfig(),
                                        "smoke") == {}
    with pytest.raises(ConfigError, match="run search_lorahub first"):
        train.learn_cat_from_lorahub("tiny-random-llama", "math_code", 0, data, cfg, on, "smoke")
    hub = stage_env / "skills" / "skill1"  # any existing folder: only the weights are read
    write_train_result("smoke", "math_code", "lorahub", 0, _Run(hub, hub), {}, "tiny-random-llama",
                       metrics={"weights": {"skill1": 0.7, "skill2": -0.4}})
    train.learn_cat_from_lorahub("tiny-random-llama", "math_code", 0, data, cfg, on, "smoke")
    rec = trained("smoke", "math_code", 0)["cat_lorahub"]
    assert rec["metrics"]["init_weights"] == [0.7, -0.4]
    assert rec["config"]["soup"]["parameterisation"] == "free"
    by_skill: dict[int, set] = {}
    for row in rec["metrics"]["alphas"]:
        by_skill.setdefault(row["skill"] if isinstance(row["skill"], int) else row["skill"], set()).add(
            round(row["alpha"], 6))
    assert sorted(v for vals in by_skill.values() for v in vals) == [-0.4, 0.7]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# case -> (how the user broke an input, the error type's name, the message naming the file and field)
BAD_STAGE_INPUTS = {
    "truncated adapter weights": (lambda env: _truncate(env / "skills" / "skill2" / "adapter_model.safetensors"),
                                  "MergeError", r"adapter '.*skills/skill2': adapter_model\.safetensors is "
                                                r"unreadable \(corrupt\?\)"),
    "corrupt adapter config": (lambda env: _truncate(env / "skills" / "skill2" / "adapter_config.json"),
                               "ConfigError", r"adapter '.*skills/skill2': adapter_config\.json is unreadable or "
                                              r"not valid JSON"),
    "adapter of another base model": (
        lambda env: _edit_json(env / "skills" / "skill2" / "adapter_config.json",
                               base_model_name_or_path="some-org/other-model"),
        "ConfigError", r"adapter '.*skills/skill2' was trained on base model 'some-org/other-model', but this "
                       r"run's base is 'tiny-random-llama' \(adapter_config\.json base_model_name_or_path\)"),
    "result JSON cut off": (lambda env: _truncate(env / "results" / "smoke" / "train" / "math_code" / "skill2--s0.json"),
                            "ResultsError", r"train/math_code/skill2--s0\.json: line \d+: not valid JSON"),
    "result JSON without its location": (
        lambda env: _edit_json(env / "results" / "smoke" / "train" / "math_code" / "skill2--s0.json", location=None),
        "ResultsError", r"skill2--s0\.json: field 'location' is None"),
    "result JSON relabelled": (
        lambda env: _edit_json(env / "results" / "smoke" / "train" / "math_code" / "skill2--s0.json", label="skill1"),
        "ResultsError", r"skill2--s0\.json: field 'label' is 'skill1' but the file name says 'skill2'"),
}


@pytest.mark.parametrize("case", list(BAD_STAGE_INPUTS))
def test_bad_stage_inputs_fail_naming_file_and_field_and_write_nothing(stage_env, case):
    """Issue 15 item 4: the path a user hits (stage 05's merges, stage 04's learned CAT) refuses a
    broken skill adapter or hand-edited result JSON with one error naming the file and field, before
    any merge or training output exists, and leaves every file as it was (nothing rewritten)."""
    from lorasoups.stages import train
    from lorasoups.training import SoupTrainConfig

    break_it, kind, message = BAD_STAGE_INPUTS[case]
    break_it(stage_env)
    before = _snapshot(stage_env)
    exp = ExperimentConfig(settings=["math_code"], merges=["cat_static", "linear"])
    with pytest.raises(Exception, match=message) as err:
        merge.static_merges("tiny-random-llama", "math_code", 0, exp, "smoke")
    assert type(err.value).__name__ == kind
    small = DataConfig(source="generated", smoke_size=8, cat_fraction=0.5)
    soup = SoupTrainConfig(max_steps=1, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                           max_length=64, eval_points=5)
    with pytest.raises(Exception, match=message):
        train.learn_soup("cat", "tiny-random-llama", "math_code", 0, small, soup, "smoke")
    assert _snapshot(stage_env) == before  # no merge, no training run, no result written or rewritten
