"""Notebook runner: config validation before running, papermill execution, up-to-date skipping."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorasoups import pipeline
from lorasoups.config import ConfigError
from lorasoups.pipeline import cli as pipeline_cli


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
    assert pipeline_cli.main(["run", "--profile", "smoke", "--config", str(bad)]) == 2


@pytest.mark.parametrize("yaml_text, message", [
    ("cat:\n  soup:\n    granularty: layer\n",
     r"bad\.yaml:cat\.soup: unknown key 'granularty' for CatParams; did you mean 'granularity'\?"),
    ("moe:\n  soup:\n    top_k: two\n", r"bad\.yaml:moe\.soup\.top_k: expected int \| None, got 'two'"),
    ("cat:\n  soup:\n    parameterisation: softmx\n",
     r"bad\.yaml:cat\.soup\.parameterisation: 'softmx' is not one of .*did you mean 'softmax'\?"),
    ("experiment:\n  merges: [cat_static, tie]\n",
     r"bad\.yaml:experiment\.merges: unknown static merge 'tie'; did you mean 'ties'\?"),
    ("experiment:\n  merges: [moe]\n", r"experiment\.merges: unknown static merge 'moe' \(moe is learned by its own stage"),
    ("experiment:\n  settings: [math_cod]\n",
     r"bad\.yaml:experiment\.settings: unknown setting 'math_cod'; did you mean 'math_code'\?"),
    ("experiment:\n  datamix: [concatt]\n", r"experiment\.datamix: unknown DATA-MIX variant 'concatt'"),
    ("sweep:\n  methods: [dare_tie]\n", r"bad\.yaml:sweep\.methods: unknown sweep method 'dare_tie'"),
    ("data:\n  sizes: {count_fromat1: 10}\n",
     r"bad\.yaml:data\.sizes: unknown dataset 'count_fromat1'; did you mean 'count_format1'\?"),
    ("evaluation:\n  labels: [base, cat_statc]\n",
     r"bad\.yaml:evaluation\.labels: unknown model label 'cat_statc'; did you mean 'cat_static'\?"),
    ("evaluation:\n  elo_labels: [base, skil1]\n",
     r"bad\.yaml:evaluation\.elo_labels: unknown model label 'skil1'; did you mean 'skill1'\?"),
])
def test_soup_parameters_and_names_are_checked_before_any_stage(tmp_path, monkeypatch, capsys, yaml_text, message):
    """Issue 15 item 4: a mistyped soup parameter (``cat.soup`` / ``moe.soup``), setting, merge or
    sweep method fails at resolve time, naming the file and key, instead of at stage 04 hours later."""
    monkeypatch.setenv("LORASOUPS_RUNS", str(tmp_path / "runs"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        pipeline.resolve("smoke", [bad])
    assert pipeline_cli.main(["run", "--profile", "smoke", "--config", str(bad)]) == 2
    assert "config error:" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing ran, nothing was written


def test_every_model_label_passes_the_label_check():
    from lorasoups.merging import METHODS
    from lorasoups.results import MODEL_LABELS, is_model_label

    assert all(is_model_label(v, METHODS) for v in [*MODEL_LABELS, *METHODS, "skill7"])
    assert not any(is_model_label(v, METHODS) for v in ["skill", "skillx", "cats", ""])


def test_profiles_are_the_config_files():
    assert {"smoke", "cpu", "full"} <= set(pipeline.profiles()) and "base" not in pipeline.profiles()
    with pytest.raises(ConfigError, match=r"unknown profile 'cpus'; did you mean 'cpu'"):
        pipeline.resolve("cpus")
    cfg = pipeline.resolve("cpu")
    assert cfg["run"].profile == "cpu" and cfg["data"].size("cpu", target=True, name="count_format3") is None


STUDY = sorted((Path(__file__).parents[1] / "configs" / "study").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDY, ids=[p.name for p in STUDY])
def test_every_study_slice_resolves_on_the_cpu_profile(path):
    """A slice file with a typo must fail here, not hours into a study run; with the seed overlay
    layered on top, as the queue runs seeds 1 and 2."""
    cfg = pipeline.resolve("cpu", [str(path), str(path.parent / "seed1.yaml")])
    assert cfg["run"].profile == "cpu" and cfg["experiment"].seeds == [1]


def test_unknown_stage():
    with pytest.raises(ConfigError, match=r"unknown stage 'check_base'.*did you mean 'check_base_model'"):
        pipeline.run("smoke", ["check_base"])


def test_every_stage_notebook_declares_its_parameters_in_a_short_cell():
    """Each notebook's parameters cell holds exactly what the pipeline passes, in at most 15 lines."""
    cfg = pipeline.resolve("smoke")
    for stage in pipeline.STAGES:
        declared = pipeline.notebook_parameters(pipeline.paths.NOTEBOOKS / stage.notebook)
        assert set(pipeline.stage_parameters(stage, cfg)) == set(declared), stage.notebook
    for nb in [*pipeline.paths.NOTEBOOKS.glob("*.ipynb"), *pipeline.paths.NOTEBOOKS.glob("analysis/*.ipynb")]:
        cells = [c for c in json.loads(nb.read_text())["cells"] if "parameters" in c["metadata"].get("tags", [])]
        assert len(cells) == 1 and len("".join(cells[0]["source"]).splitlines()) <= 15, nb.name


def test_a_notebook_resolves_the_config_the_pipeline_runs(tmp_path):
    """stage_config(profile, config_files, overrides) is the pipeline's resolve(): the same sections,
    validated (a typo in a layered file fails there), and the stamp follows the files' content."""
    layer = tmp_path / "slice.yaml"
    layer.write_text("experiment:\n  settings: [qabot]\n  seeds: [1]\nsft:\n  learning_rate: 0.001\n")
    stage = pipeline.get_stage("train_skills")
    cfg = pipeline.resolve("smoke", [str(layer)])
    params = pipeline.stage_parameters(stage, cfg, [str(layer)])
    assert params == {"profile": "smoke", "config_files": [str(layer.resolve())], "overrides": {}}
    nb = pipeline.stage_config("train_skills", **params)
    assert list(nb) == ["run", "model", "data", "experiment", "sft"]
    assert {k: v for k, v in nb.items()} == {k: cfg[k] for k in nb}
    assert nb["sft"].learning_rate == 0.001 and "learning_rate: 0.001" in repr(nb)
    before = pipeline._stamp(stage, cfg)
    layer.write_text("experiment:\n  settings: [qabot]\n  seeds: [1]\nsft:\n  learning_rate: 0.002\n")
    assert pipeline._stamp(stage, pipeline.resolve("smoke", [str(layer)])) != before
    layer.write_text("sft:\n  learnig_rate: 0.002\n")
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        pipeline.stage_config("train_skills", "smoke", [str(layer)])


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
    assert pipeline.run("smoke", ["check_base_model"], extra=[tiny])[0]["ran"] is False
    monkeypatch.setattr(pipeline, "package_source_sha", lambda: "a-fix-in-the-package")
    assert pipeline.run("smoke", ["check_base_model"], extra=[tiny])[0]["ran"] is True  # code changed


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
    _sigkill_during_evaluation_then_rerun(res, cfg, tmp_path)


#: Fields of a result JSON that say when and where it was written, not what it holds.
_VOLATILE = ("created", "timings_s", "peak_memory", "git", "platform", "python", "versions")


def _eval_files(res) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in sorted((res / "eval").rglob("*")):
        if f.suffix == ".json":
            out[str(f.relative_to(res))] = {k: v for k, v in json.loads(f.read_text()).items() if k not in _VOLATILE}
        elif f.suffix == ".jsonl":
            out[str(f.relative_to(res))] = f.read_text()
    return out


def _sigkill_during_evaluation_then_rerun(res, cfg, tmp_path) -> None:
    """Stage 08 killed (SIGKILL, with its notebook kernel) after its first result lands: no file
    is left half-written, and the rerun reuses what finished, decodes the rest, and ends with the
    uninterrupted run's result files (when they were written aside)."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    want = _eval_files(res)
    shutil.rmtree(res / "eval")
    cmd = [sys.executable, "-m", "lorasoups.pipeline", "run", "--profile", "smoke", "--stage", "evaluate",
           "--config", str(cfg), "--force"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None and not list((res / "eval").rglob("*.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the pipeline and its papermill kernel, as a kill -9 of the job
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = _eval_files(res)
    assert 1 <= len(partial) < len(want)
    assert all(want[name] == got for name, got in partial.items())  # nothing cut off, nothing different
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert _eval_files(res) == want
    executed = (tmp_path / "runs" / "notebooks" / "smoke" / "08_evaluate.ipynb").read_text()
    assert "reused" in executed and "prompts" in executed  # some results reused, the rest decoded


def _notebook(path, *cells):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def test_success_is_quiet_and_a_failure_names_its_cell(tmp_path, capfd):
    """Issue 15 item 6: no kernel WARNING / ERROR on the console of a run that succeeds; a failing
    cell still raises, naming the cell, with its traceback kept in the executed notebook."""
    import asyncio

    from papermill.exceptions import PapermillExecutionError

    km = pipeline.kernel_manager_class()()
    assert km.transport_encryption == "auto"  # CurveZMQ keys for ipykernel: no "TCP without encryption"
    km.shutting_down = True
    asyncio.run(km._async_interrupt_kernel())  # shutdown sends no SIGINT (no "KeyboardInterrupt caught")
    km.shutting_down = False
    with pytest.raises(RuntimeError, match="No kernel is running"):  # a real interrupt still goes through
        asyncio.run(km._async_interrupt_kernel())

    capfd.readouterr()
    pipeline.execute(_notebook(tmp_path / "ok.ipynb", "print(x + 1)"), tmp_path / "ok-out.ipynb", {"x": 41})
    out, err = capfd.readouterr()
    assert "WARNING" not in out + err and "ERROR" not in out + err and "Traceback" not in out + err, out + err
    assert "42" in json.dumps(json.loads((tmp_path / "ok-out.ipynb").read_text())["cells"])

    bad = _notebook(tmp_path / "bad.ipynb", "y = x", "raise ValueError(f'boom {y}')")
    # cells: parameters, papermill's injected parameters, y = x, the raise
    with pytest.raises(PapermillExecutionError, match=r"(?s)In \[4\].*raise ValueError.*ValueError: boom 7") as exc:
        pipeline.execute(bad, tmp_path / "bad-out.ipynb", {"x": 7})
    assert exc.value.ename == "ValueError"
    cells = json.loads((tmp_path / "bad-out.ipynb").read_text())["cells"]
    assert any(o.get("ename") == "ValueError" for c in cells for o in c.get("outputs", []))


def test_stage_03_expects_a_datamix_file_only_when_concat_datamix_is_trained():
    """A gate slice (``datamix: []``) trains only the controls in stage 03: the pipeline must not
    wait for a DATA-MIX result it never asked for."""
    from lorasoups import paths

    stage = pipeline.get_stage("train_datamix")

    def cfg(datamix):
        return pipeline.resolve("smoke", overrides={"experiment": {"settings": ["prompt_robustness"], "seeds": [0],
                                                                   "datamix": datamix}})
    res = paths.results_dir("smoke")
    assert pipeline._outputs(stage, cfg([])) == []
    assert pipeline._outputs(stage, cfg(["concat", "sequential"])) == [
        res / "train" / "prompt_robustness" / "datamix--s0.json"]


def test_a_section_seed_the_pipeline_overrides_is_refused():
    """sft.seed (and cat/moe/lorahub/sweep's) would do nothing: each run takes a seed of experiment.seeds."""
    with pytest.raises(ConfigError, match=r"sft.seed is 3.*experiment.seeds"):
        pipeline.resolve("smoke", overrides={"sft": {"seed": 3}})
    assert pipeline.resolve("smoke", overrides={"experiment": {"seeds": [3]}})["experiment"].seeds == [3]
