"""Results spine: one JSON per run with everything needed to trace a number back."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from lorasoups import paths, results


@dataclass
class Cfg:
    lr: float = 1e-4
    method: str = "cat"


def test_write_result_records_provenance(tmp_path):
    path = results.write_result(
        tmp_path / "exp" / "cat--default.json",
        config=Cfg(),
        metrics={"accuracy": 0.5},
        timings={"train": 1.25},
        model={"name": "tiny-random-llama"},
        datasets={"gsm_hard": {"source": "mirror", "fingerprint": "abc"}},
    )
    rec = json.loads(path.read_text())
    assert rec["config"] == {"lr": 1e-4, "method": "cat"}
    assert rec["config_hash"] == results.fingerprint(Cfg())
    assert rec["metrics"] == {"accuracy": 0.5}
    assert rec["timings_s"] == {"train": 1.25}
    assert rec["peak_memory"]["cpu_rss_mib"] > 10
    assert rec["versions"]["torch"] and rec["versions"]["peft"] and rec["versions"]["transformers"]
    assert len(rec["git"]["sha"] or "x" * 40) == 40 and rec["git"]["dirty"] in (True, False, None)
    assert rec["datasets"]["gsm_hard"]["source"] == "mirror"
    assert not list(path.parent.glob(".*.tmp"))  # the temp file was renamed into place


def test_rewriting_the_same_result_keeps_its_provenance(tmp_path):
    """A stage rerun that reuses a finished run writes the same record (now marked reused, its peak
    unknown): the file keeps the commit, time and peak of the run that first wrote it; any other
    difference (a metric) rewrites it; the same numbers computed again keep the first file too."""
    kw = dict(config=Cfg(), metrics={"train_loss": 0.5}, model={"base": "tiny-random-llama"},
              peak={"cpu_rss_mib": 100.0, "cuda_mib": None}, extra={"reused": False})
    path = results.write_result(tmp_path / "skill1--s0.json", **kw)
    first = json.loads(path.read_text())
    first["git"], first["created"] = {"sha": "0" * 40, "dirty": False}, "2026-01-01T00:00:00+00:00"
    path.write_text(json.dumps(first, indent=2) + "\n")  # as written by an older commit
    rerun = {**kw, "peak": {"cpu_rss_mib": None, "cuda_mib": None}, "extra": {"reused": True}}
    results.write_result(path, **rerun)
    assert json.loads(path.read_text()) == first
    results.write_result(path, **{**rerun, "metrics": {"train_loss": 0.25}})
    again = json.loads(path.read_text())
    assert again["metrics"] == {"train_loss": 0.25} and again["created"] != first["created"] and again["reused"]
    # a record that is not a reuse must match in every field but git, created, time and peak
    results.write_result(path, **{**kw, "metrics": {"train_loss": 0.25}, "extra": {"reused": True}})
    results.write_result(path, **{**kw, "metrics": {"train_loss": 0.25}})
    before = json.loads(path.read_text())
    assert before["reused"] is False
    # the same numbers computed again, at another time and peak: the first computation's file stays
    results.write_result(path, **{**kw, "metrics": {"train_loss": 0.25}, "timings": {"train": 9.0},
                                  "peak": {"cpu_rss_mib": 5.0, "cuda_mib": None}})
    assert json.loads(path.read_text()) == before


def test_fingerprint_is_stable_and_sensitive():
    assert results.fingerprint(Cfg()) == results.fingerprint({"lr": 1e-4, "method": "cat"})
    assert results.fingerprint(Cfg(lr=2e-4)) != results.fingerprint(Cfg())


def test_result_path_layout(monkeypatch, tmp_path):
    monkeypatch.setenv("LORASOUPS_RESULTS", str(tmp_path))
    p = results.result_path("hard_math", "cat", "layer", profile="full")
    assert p == tmp_path / "full" / "hard_math" / "cat--layer.json"
    assert paths.results_dir() == tmp_path


def test_timer_accumulates():
    t = results.Timer()
    with t("a"):
        pass
    with t("a"):
        pass
    assert set(t.seconds) == {"a"} and t.seconds["a"] >= 0


def test_read_result_refuses_a_hand_edited_file_naming_file_and_field(tmp_path):
    import pytest

    from lorasoups import analysis

    path = results.write_result(tmp_path / "train" / "skill1--s0.json", config=Cfg(), metrics={},
                                extra={"label": "skill1", "location": "x"})
    assert results.read_result(path, required=("label", "location"))["label"] == "skill1"
    text = path.read_text()
    path.write_text(text.replace('"label": "skill1",', '"label": "skill1"'))  # a comma lost in an edit
    with pytest.raises(results.ResultsError, match=rf"{path}: line \d+: not valid JSON \(Expecting ',' delimiter\)"):
        results.read_result(path)
    path.write_text("[1, 2]")
    with pytest.raises(results.ResultsError, match=rf"{path}: expected a JSON object, got list"):
        results.read_result(path)
    path.write_text(json.dumps({"label": "skill1"}))
    with pytest.raises(results.ResultsError, match=rf"{path}: missing field 'location'"):
        results.read_result(path, required=("label", "location"))
    assert path.read_text() == json.dumps({"label": "skill1"})  # reading never rewrites
    with pytest.raises(results.ResultsError, match="result file not found"):
        results.read_result(tmp_path / "absent.json")
    assert analysis.ResultsError is results.ResultsError  # one error type for stages and analysis


def test_a_result_of_one_model_is_never_overwritten_by_another_models(tmp_path):
    write_result, ResultsError = results.write_result, results.ResultsError
    """Result paths do not name the base model: a second model must run in its own namespace."""
    p = tmp_path / "train" / "skill1--s0.json"
    write_result(p, config={"a": 1}, metrics={"x": 1}, model={"name": "smollm2-135m-instruct"})
    write_result(p, config={"a": 1}, metrics={"x": 2}, model={"name": "smollm2-135m-instruct"})  # a rerun
    with pytest.raises(ResultsError, match="holds a result of model 'smollm2-135m-instruct'.*"
                                           "LORASOUPS_NAMESPACE=gemma3-270m-instruct"):
        write_result(p, config={"a": 1}, metrics={"x": 3}, model={"name": "gemma3-270m-instruct"})
    assert json.loads(p.read_text())["metrics"] == {"x": 2}


def test_package_source_sha_covers_only_the_named_code(tmp_path, monkeypatch):
    """A stage's cache key changes with the code it runs and not with code elsewhere in the package."""
    import importlib
    import shutil

    from lorasoups import results as res
    from lorasoups.stages.evaluate import EVAL_CODE

    pkg = tmp_path / "lorasoups"
    shutil.copytree(Path(res.__file__).resolve().parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in list(__import__("sys").modules) if m == "lorasoups" or m.startswith("lorasoups.")]:
        monkeypatch.delitem(__import__("sys").modules, name)
    copy = importlib.import_module("lorasoups.results")
    assert Path(copy.__file__).resolve().parent == pkg
    before, whole = copy.package_source_sha(EVAL_CODE), copy.package_source_sha()
    copy.package_source_sha.cache_clear()
    (pkg / "data" / "gen_reading.py").write_text((pkg / "data" / "gen_reading.py").read_text() + "\n# edit\n")
    assert copy.package_source_sha(EVAL_CODE) == before      # outside EVAL_CODE: results reused
    assert copy.package_source_sha() != whole                # the whole package did change
    copy.package_source_sha.cache_clear()
    (pkg / "evaluation" / "extract.py").write_text((pkg / "evaluation" / "extract.py").read_text() + "\n# edit\n")
    assert copy.package_source_sha(EVAL_CODE) != before      # scoring code: recomputed
    with pytest.raises(ValueError, match="lorasoups/nope.py does not exist"):
        copy.package_source_sha(("nope.py",))


def test_a_namespace_puts_figures_beside_its_results_not_over_the_main_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("LORASOUPS_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("LORASOUPS_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("LORASOUPS_NAMESPACE", raising=False)
    main = paths.figures_dir("cpu")
    with paths.in_namespace("generated"):
        assert paths.figures_dir("cpu") == main / "generated"
        assert paths.results_dir("cpu") == tmp_path / "results" / "cpu" / "generated"
    assert paths.figures_dir("cpu") == tmp_path / "figures" / "cpu" and paths.figures_dir("full") == tmp_path / "figures"


def _resident_mib() -> float:
    return results._proc_status_kib("VmRSS") / 1024


def test_peak_memory_can_restart_so_each_run_reports_its_own():
    """A kernel that trains several runs reports each run's peak, not the largest so far; where the
    platform keeps the old mark the record says so. Some sandboxes (gVisor, as in CI) also keep freed
    pages in VmRSS: there the restarted peak is checked against what is resident, and the 400 MiB
    drop, which such a platform cannot show, is skipped with its reason."""
    import numpy as np

    results.reset_peak_memory()
    big = np.ones(400 * 2**20 // 8)  # ~400 MiB resident
    high = results.peak_memory()
    del big
    resident = _resident_mib()
    took = results.reset_peak_memory()
    low = results.peak_memory()
    if not took:
        assert low["cpu_rss_mib"] >= high["cpu_rss_mib"] and low["cpu_rss_since"] == "process start"
        return
    assert low["cpu_rss_since"] == "reset" and low["cpu_rss_mib"] <= resident + 16  # restarted at RSS
    if high["cpu_rss_mib"] - resident < 300:
        pytest.skip(f"freeing 400 MiB left VmRSS at {resident:.0f} MiB (peak {high['cpu_rss_mib']})")
    assert high["cpu_rss_mib"] - low["cpu_rss_mib"] > 300


def test_a_peak_scope_keeps_the_largest_part_across_inner_restarts():
    """A gate evaluates several models, each restarting the peak: the gate's own peak is the largest."""
    import numpy as np

    if not results.reset_peak_memory():
        pytest.skip("this platform keeps the old high-water mark (the record says 'process start')")
    with results.peak_scope() as peak:
        big = np.ones(400 * 2**20 // 8)  # ~400 MiB, freed before the inner restart
        with_big = _resident_mib()
        del big
        if with_big - _resident_mib() < 300:
            pytest.skip("this platform keeps freed pages in VmRSS: no smaller part to tell apart")
        results.reset_peak_memory()  # what an evaluation inside does
        small = results.peak_memory()["cpu_rss_mib"]
        whole = peak()["cpu_rss_mib"]
    assert whole - small > 300 and peak()["cpu_rss_since"] == "reset"
