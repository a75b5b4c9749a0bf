"""Notebook runner: config validation before running, papermill execution, up-to-date skipping."""
from __future__ import annotations

import json

import pytest

from lorasoups import pipeline
from lorasoups.config import ConfigError


def test_resolve_profiles():
    smoke = pipeline.resolve("smoke")
    full = pipeline.resolve("full")
    assert smoke["run"].profile == "smoke" and full["run"].profile == "full"
    assert smoke["model"].name == "smollm2-135m-instruct"


def test_bad_config_fails_before_running(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("check_base_model:\n  max_new_tokns: 4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:check_base_model: unknown key 'max_new_tokns'.*did you mean 'max_new_tokens'"):
        pipeline.resolve("smoke", [bad])
    bad.write_text("modle:\n  name: x\n")
    with pytest.raises(ConfigError, match=r"unknown section 'modle'; did you mean 'model'"):
        pipeline.resolve("smoke", [bad])
    bad.write_text("check_base_model:\n  max_new_tokens: many\n")
    with pytest.raises(ConfigError, match=r"max_new_tokens: expected int, got 'many'"):
        pipeline.resolve("smoke", [bad])
    assert pipeline.main(["run", "--profile", "smoke", "--config", str(bad)]) == 2


def test_unknown_stage():
    with pytest.raises(ConfigError, match=r"unknown stage 'check_base'.*did you mean 'check_base_model'"):
        pipeline.run("smoke", ["check_base"])


def test_every_stage_notebook_declares_its_parameters():
    cfg = pipeline.resolve("smoke")
    for stage in pipeline.STAGES:
        declared = pipeline.notebook_parameters(pipeline.paths.NOTEBOOKS / stage.notebook)
        assert set(pipeline.stage_parameters(stage, cfg)) == set(declared), stage.notebook


def test_run_then_skip(monkeypatch, tmp_path):
    """A real papermill run of stage 00 on the tiny model; the second run is skipped."""
    monkeypatch.setenv("LORASOUPS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("LORASOUPS_RESULTS", str(tmp_path / "results"))
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("model:\n  name: tiny-random-llama\ncheck_base_model:\n  max_new_tokens: 4\n")
    first = pipeline.run("smoke", ["check_base_model"], extra=[tiny])
    assert first[0]["ran"] is True
    rec = json.loads((tmp_path / "results" / "smoke" / "check_base_model" / "tiny-random-llama--default.json").read_text())
    assert rec["metrics"]["deterministic"] is True
    assert (tmp_path / "runs" / "notebooks" / "smoke" / "00_check_base_model.ipynb").is_file()
    second = pipeline.run("smoke", ["check_base_model"], extra=[tiny])
    assert second[0]["ran"] is False
    tiny.write_text("model:\n  name: tiny-random-llama\ncheck_base_model:\n  max_new_tokens: 5\n")
    assert pipeline.run("smoke", ["check_base_model"], extra=[tiny])[0]["ran"] is True  # params changed


@pytest.mark.slow
def test_every_stage_runs_on_real_data_with_the_tiny_model(monkeypatch, tmp_path):
    """Stages 00-08 and the analysis notebooks, end to end through papermill, with ``data.source:
    auto`` (the paper's data wherever the mirror has it, generated elsewhere). Mirror targets are
    test sets only: LoraHub and the sweep tune on held-out examples that are never scored."""
    from lorasoups import paths

    if paths.data_mirror() is None:
        pytest.skip("no data mirror beside the checkout")
    monkeypatch.setenv("LORASOUPS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("LORASOUPS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LORASOUPS_FIGURES", str(tmp_path / "figures"))
    cfg = tmp_path / "auto.yaml"
    cfg.write_text("model:\n  name: tiny-random-llama\ndata:\n  source: auto\n"
                   "sweep:\n  settings: [math_code, prompt_robustness]\n"
                   "evaluation:\n  max_new_tokens: 8\n")
    report = pipeline.run("smoke", extra=[cfg])
    assert [r["stage"] for r in report] == [s.name for s in pipeline.STAGES] and all(r["ran"] for r in report)
    res = tmp_path / "results" / "smoke"
    sources = {}
    for f in sorted((res / "eval").glob("*/base--*-s0.json")):
        rec = json.loads(f.read_text())
        (ident,) = rec["datasets"].values()
        sources[ident["name"]] = ident["source"]
    assert {sources[t] for t in ("gsm_hard", "qabot_dnd", "bioasq_rc", "count_format3")} == {"mirror"}
    # the base model gets the 8-shot PAL prompt, a trained model the 1-shot one, and the JSON says so
    base = json.loads((res / "eval" / "math_code" / "base--gsm_hard-s0.json").read_text())
    cat = json.loads((res / "eval" / "math_code" / "cat--gsm_hard-s0.json").read_text())
    assert base["config"]["run"]["demonstrations"]["shots"] == 8 and len(base["config"]["run"]["demonstrations"]["ids"]) == 8
    assert cat["config"]["run"]["demonstrations"]["shots"] == 1
    # LoraHub tuned on held-out examples: GSM-Hard's generated suite; prompt robustness on its training formats
    hub = json.loads((res / "train" / "math_code" / "lorahub--s0.json").read_text())
    assert hub["datasets"]["examples"]["source"] == "generated" and hub["datasets"]["examples"]["split"] == "validation"
    hub_pr = json.loads((res / "train" / "prompt_robustness" / "lorahub--s0.json").read_text())
    assert set(hub_pr["datasets"]["examples"]["skills"]) == {"count_format1", "count_format2"}
    learned = json.loads((res / "train" / "math_code" / "cat--s0.json").read_text())
    assert learned["metrics"]["alpha_drift"] and learned["metrics"]["best_step"] >= 1
