"""Experiments beyond the paper: specs, variant namespaces and the summary numbers (by hand).
The end-to-end run of a variant on the tiny model is notebooks/09_beyond.ipynb under nbval."""
from __future__ import annotations

import pytest
import yaml

from lorasoups import paths, pipeline, variants
from lorasoups.analysis.variants import summarise
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


@pytest.mark.parametrize("name", variants.names())
@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_every_shipped_variant_resolves(name, profile, tmp_path):
    """Each variant's overlay is a valid config (unknown keys would be errors) and changes what it says."""
    spec = variants.load_spec(name)
    plan = variants.plan(spec, profile)
    assert plan and set(plan) <= set(spec.variants)
    for variant, overlay in plan.items():
        f = tmp_path / f"{variant}.yaml"
        f.write_text(yaml.safe_dump(overlay))
        cfg = pipeline.resolve(profile, [str(f)])
        assert cfg["evaluation"].labels == spec.labels
        columns = getattr(spec, profile).settings or spec.settings
        assert cfg["experiment"].settings == list(variants.variant_settings(spec, variant, columns).values())
        if name == "rank":
            assert cfg["sft"].r == int(variant[1:]) and cfg["sft"].lora_alpha == 2 * cfg["sft"].r
        if name == "granularity":
            g, p = variant.split("-")
            assert cfg["cat"].soup["granularity"] == g and cfg["cat"].soup["parameterisation"] == p
        if name == "skills":  # variant kN runs the k = N member of every family it draws
            from lorasoups.data import get_setting

            assert {get_setting(st).k for st in cfg["experiment"].settings} == {int(variant[1:])}
            assert {get_setting(st).group for st in cfg["experiment"].settings} == set(columns)
            assert cfg["experiment"].static_alpha is None and cfg["sweep"].settings is None
        if name == "cat_extensions":  # the compressed rank stays below the fold's (2 skills of rank r)
            assert cfg["experiment"].cat_svd_rank == int(variant[3:]) < 2 * cfg["sft"].r
            assert cfg["experiment"].cat_from_lorahub
        if name == "cat_data":
            assert cfg["data"].cat_fraction == pytest.approx(float(variant[1:]) / 100)


def test_spec_errors_name_the_problem(monkeypatch, tmp_path):
    monkeypatch.setattr(variants, "BEYOND", tmp_path)
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({
        "title": "t", "question": "q", "axis": "a", "stages": ["learn_cat"], "settings": ["math_code"],
        "labels": ["cat"], "variants": {"v1": {}}, "smoke": {"variants": ["v2"]}}))
    with pytest.raises(ConfigError, match="smoke.variants names 'v2'"):
        variants.load_spec("mine")
    with pytest.raises(ConfigError, match="no experiment 'mien'.*did you mean 'mine'"):
        variants.load_spec("mien")
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({
        "title": "t", "question": "q", "axis": "a", "stages": ["learn_cta"], "settings": ["math_code"],
        "labels": ["cat"], "variants": {"v1": {}}}))
    with pytest.raises(ConfigError, match="learn_cta"):
        variants.load_spec("mine")


def test_plan_layers_overlays_in_order():
    spec = variants.BeyondSpec(
        title="t", question="q", axis="a", stages=["learn_cat"], settings=["math_code", "qabot"],
        labels=["cat"], overlay={"cat": {"max_steps": 5, "learning_rate": 0.1}},
        variants={"a": {"cat": {"max_steps": 7}}, "b": {}},
        smoke=variants.ProfileOverride(variants=["a"], settings=["qabot"], overlay={"cat": {"learning_rate": 0.2}}))
    smoke = variants.plan(spec, "smoke")
    assert list(smoke) == ["a"]
    assert smoke["a"]["cat"] == {"max_steps": 7, "learning_rate": 0.2}  # variant > profile > shared
    assert smoke["a"]["experiment"] == {"settings": ["qabot"]}
    full = variants.plan(spec, "full")
    assert list(full) == ["a", "b"] and full["b"]["cat"] == {"max_steps": 5, "learning_rate": 0.1}
    with pytest.raises(ConfigError, match="unknown variant 'c'"):
        variants.plan(spec, "full", ["c"])


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


def test_panels_give_each_variant_its_own_settings(monkeypatch, tmp_path):
    spec = variants.BeyondSpec(
        title="t", question="q", axis="k", stages=["learn_cat"], settings=["fam"], labels=["cat"],
        panels={"fam": {"k2": "math_code", "k3": "math_code_k3"}}, variants={"k2": {}, "k3": {}})
    plan = variants.plan(spec, "full")
    assert plan["k2"]["experiment"]["settings"] == ["math_code"]
    assert plan["k3"]["experiment"]["settings"] == ["math_code_k3"]
    monkeypatch.setattr(variants, "BEYOND", tmp_path)
    bad = {"title": "t", "question": "q", "axis": "a", "stages": ["learn_cat"], "settings": ["fam"],
           "labels": ["cat"], "variants": {"k2": {}}, "panels": {"fam": {"k2": "math_code", "k5": "math_code"}}}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="panels.fam names variant 'k5'"):
        variants.load_spec("mine")
    bad["panels"] = {"fam": {"k2": "math_cod"}}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(Exception, match="unknown setting 'math_cod'.*did you mean 'math_code'"):
        variants.load_spec("mine")
    bad["panels"] = {"family": {"k2": "math_code"}}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="settings names 'fam', which is not a panel"):
        variants.load_spec("mine")


def test_superlinearity_sums_every_skill_of_a_k3_setting():
    per_seed = {"base": {0: 0.1}, "skill1": {0: 0.2}, "skill2": {0: 0.15}, "skill3": {0: 0.12},
                "cat": {0: 0.5}, "datamix": {0: 0.3}}
    out = summarise({"k3": {"math_code": {"setting": "math_code_k3", "k": 3, "metric": "exec_accuracy",
                                          "targets": ["gsm_hard"], "models": ["m"], "per_seed": per_seed}}})
    row = out["k3"]["math_code"]
    # 0.4 - (0.1 + 0.05 + 0.02) = 0.23; learned CAT - DATA-MIX = 0.2
    assert row["cat_superlinearity"]["mean"] == pytest.approx(0.23) and row["k"] == 3
    assert row["cat_minus_datamix"]["mean"] == pytest.approx(0.2) and row["setting"] == "math_code_k3"
    # without skill3's score the k = 3 super-linearity is not computed from two skills
    del per_seed["skill3"]
    out = summarise({"k3": {"math_code": {"setting": "math_code_k3", "k": 3, "metric": "exec_accuracy",
                                          "targets": ["gsm_hard"], "models": ["m"], "per_seed": per_seed}}})
    assert "cat_superlinearity" not in out["k3"]["math_code"]


def test_layer_alphas_average_modules_and_seeds_by_hand(monkeypatch, tmp_path):
    import json

    from lorasoups.analysis.variants import alpha_figure, layer_alphas

    monkeypatch.setenv("LORASOUPS_RESULTS", str(tmp_path))
    ns = "beyond/granularity/module-softmax"

    def row(layer, kind, skill, alpha):
        return {"module": f"model.layers.{layer}.self_attn.{kind}", "layer": layer, "kind": kind,
                "group": f"m{layer}{kind}", "skill": skill, "alpha": alpha}

    for seed, shift in ((0, 0.0), (1, 0.2)):
        rows = [row(0, "q_proj", "math", 0.2 + shift), row(0, "v_proj", "math", 0.4 + shift),
                row(0, "q_proj", "code", 0.8 - shift), row(0, "v_proj", "code", 0.6 - shift),
                row(1, "q_proj", "math", 0.5), row(1, "v_proj", "math", 0.5),
                row(1, "q_proj", "code", 0.5), row(1, "v_proj", "code", 0.5)]
        with paths.in_namespace(ns):
            f = paths.results_dir("smoke") / "train" / "math_code" / f"cat--s{seed}.json"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps({"metrics": {"alphas": rows}, "model": {"base": "m"}}))
    got = layer_alphas("smoke", ns, "math_code", None)
    # layer 0, math: modules 0.2/0.4 (seed 0) and 0.4/0.6 (seed 1) -> 0.4; code: 0.7 and 0.5 -> 0.6
    assert got["math"][0] == [0, pytest.approx(0.4)] and got["code"][0] == [0, pytest.approx(0.6)]
    assert got["math"][1] == [1, pytest.approx(0.5)]
    assert layer_alphas("smoke", "beyond/granularity/other", "math_code", None) == {}
    spec = variants.load_spec("granularity")
    fig = alpha_figure(spec, {"module-softmax": {"math_code": got}}, "smoke")
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "math_code · skill 1"


def test_compression_numbers_average_the_seeds(monkeypatch, tmp_path):
    import json

    from lorasoups.analysis.variants import compression

    monkeypatch.setenv("LORASOUPS_RESULTS", str(tmp_path))
    ns = "beyond/cat_extensions/svd8"
    for seed, kept in ((0, 0.8), (1, 0.9)):
        with paths.in_namespace(ns):
            f = paths.results_dir("smoke") / "train" / "math_code" / f"cat_svd--s{seed}.json"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps({"metrics": {"rank_before": 16, "rank_after": 8, "energy_kept": kept,
                                             "rel_error": (1 - kept) ** 0.5}, "model": {"base": "m"}}))
    got = compression("smoke", ns, "math_code", None)
    assert got["rank_after"] == 8 and got["energy_kept"]["mean"] == pytest.approx(0.85)
    assert got["energy_kept"]["n"] == 2 and got["rel_error"]["mean"] == pytest.approx((0.2 ** 0.5 + 0.1 ** 0.5) / 2)
    assert compression("smoke", "beyond/cat_extensions/svd4", "math_code", None) == {}
