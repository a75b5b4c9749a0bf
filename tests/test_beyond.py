"""Experiments beyond the paper: specs, variant namespaces and the summary numbers (by hand).
The end-to-end run of a variant on the tiny model is notebooks/09_beyond.ipynb under nbval."""
from __future__ import annotations

import pytest
import yaml

from lorasoups import beyond, paths, pipeline
from lorasoups.analysis.beyond import summarise
from lorasoups.config import ConfigError


def test_namespace_moves_results_and_restores(monkeypatch, tmp_path):
    monkeypatch.setenv("LORASOUPS_RESULTS", str(tmp_path))
    monkeypatch.delenv("LORASOUPS_NAMESPACE", raising=False)
    assert paths.results_dir("smoke") == tmp_path / "smoke"
    with paths.in_namespace("beyond/rank/r8"):
        assert paths.results_dir("smoke") == tmp_path / "smoke" / "beyond" / "rank" / "r8"
        assert paths.results_dir() == tmp_path  # the root itself is not namespaced
        with paths.in_namespace(None):
            assert paths.results_dir("smoke") == tmp_path / "smoke"
        assert paths.namespace() == "beyond/rank/r8"
    assert paths.namespace() is None and paths.results_dir("full") == tmp_path / "full"
    for bad in ("../x", "/abs"):
        with pytest.raises(ValueError, match="relative path"):
            with paths.in_namespace(bad):
                pass


@pytest.mark.parametrize("name", beyond.names())
@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_every_shipped_variant_resolves(name, profile, tmp_path):
    """Each variant's overlay is a valid config (unknown keys would be errors) and changes what it says."""
    spec = beyond.load_spec(name)
    plan = beyond.plan(spec, profile)
    assert plan and set(plan) <= set(spec.variants)
    for variant, overlay in plan.items():
        f = tmp_path / f"{variant}.yaml"
        f.write_text(yaml.safe_dump(overlay))
        cfg = pipeline.resolve(profile, [str(f)])
        assert cfg["evaluation"].labels == spec.labels
        assert cfg["experiment"].settings == (getattr(spec, profile).settings or spec.settings)
        if name == "rank":
            assert cfg["sft"].r == int(variant[1:]) and cfg["sft"].lora_alpha == 2 * cfg["sft"].r
        if name == "granularity":
            g, p = variant.split("-")
            assert cfg["cat"].soup["granularity"] == g and cfg["cat"].soup["parameterisation"] == p
        if name == "cat_data":
            assert cfg["data"].cat_fraction == pytest.approx(float(variant[1:]) / 100)


def test_spec_errors_name_the_problem(monkeypatch, tmp_path):
    monkeypatch.setattr(beyond, "BEYOND", tmp_path)
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({
        "title": "t", "question": "q", "axis": "a", "stages": ["learn_cat"], "settings": ["math_code"],
        "labels": ["cat"], "variants": {"v1": {}}, "smoke": {"variants": ["v2"]}}))
    with pytest.raises(ConfigError, match="smoke.variants names 'v2'"):
        beyond.load_spec("mine")
    with pytest.raises(ConfigError, match="no experiment 'mien'.*did you mean 'mine'"):
        beyond.load_spec("mien")
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({
        "title": "t", "question": "q", "axis": "a", "stages": ["learn_cta"], "settings": ["math_code"],
        "labels": ["cat"], "variants": {"v1": {}}}))
    with pytest.raises(ConfigError, match="learn_cta"):
        beyond.load_spec("mine")


def test_plan_layers_overlays_in_order():
    spec = beyond.BeyondSpec(
        title="t", question="q", axis="a", stages=["learn_cat"], settings=["math_code", "qabot"],
        labels=["cat"], overlay={"cat": {"max_steps": 5, "learning_rate": 0.1}},
        variants={"a": {"cat": {"max_steps": 7}}, "b": {}},
        smoke=beyond.ProfileOverride(variants=["a"], settings=["qabot"], overlay={"cat": {"learning_rate": 0.2}}))
    smoke = beyond.plan(spec, "smoke")
    assert list(smoke) == ["a"]
    assert smoke["a"]["cat"] == {"max_steps": 7, "learning_rate": 0.2}  # variant > profile > shared
    assert smoke["a"]["experiment"] == {"settings": ["qabot"]}
    full = beyond.plan(spec, "full")
    assert list(full) == ["a", "b"] and full["b"]["cat"] == {"max_steps": 5, "learning_rate": 0.1}
    with pytest.raises(ConfigError, match="unknown variant 'c'"):
        beyond.plan(spec, "full", ["c"])


def test_summary_numbers_by_hand():
    per_seed = {"base": {0: 0.1, 1: 0.2}, "skill1": {0: 0.2, 1: 0.3}, "skill2": {0: 0.15, 1: 0.2},
                "cat": {0: 0.4, 1: 0.5}, "cat_static": {0: 0.3, 1: 0.5}}
    out = summarise({"r8": {"math_code": {"metric": "exec_accuracy", "targets": ["gsm_hard"],
                                          "models": ["m"], "per_seed": per_seed}}})
    row = out["r8"]["math_code"]
    assert row["scores"]["cat"]["mean"] == pytest.approx(0.45) and row["scores"]["cat"]["seeds"] == [0, 1]
    # learned - static: 0.1, 0.0
    assert row["cat_minus_static"]["mean"] == pytest.approx(0.05) and row["cat_minus_static"]["n"] == 2
    # super-linearity: seed 0: 0.3 - (0.1 + 0.05) = 0.15; seed 1: 0.3 - (0.1 + 0.0) = 0.2
    assert row["cat_superlinearity"]["mean"] == pytest.approx(0.175)
    # t-interval with n=2: half width = 12.706 * sd / sqrt(2), sd = 0.0354
    assert row["cat_superlinearity"]["high"] - 0.175 == pytest.approx(12.7062 * 0.0353553 / 2 ** 0.5, rel=1e-3)
