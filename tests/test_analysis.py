"""The analysis layer against a small synthetic results tree written as results/README.md lays it out.

Every expected number below is worked out by hand from the flags and accuracies written here
(not by calling the code under test), e.g. cat on GSM-Hard over seeds 0-2: 1.0, 0.6, 0.8 -> mean
0.8, sd 0.2, 95% t half-width 4.303 * 0.2 / sqrt(3) = 0.49687.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lorasoups import analysis, paths
from lorasoups.analysis import load, methods, stats
from lorasoups.evaluation.elo import bootstrap_elo
from lorasoups.evaluation.reporting import write_jsonl
from lorasoups.results import ResultsError, write_result

MODEL = {"name": "tiny-random-llama"}
SKILLS = {"math_code": ["metamathqa", "code_alpaca"], "qabot": ["dnd_manual", "alpaca"],
          "reading_comprehension": ["biomed_textbooks", "squad"],
          "prompt_robustness": ["count_format1", "count_format2"]}
FORMATS = ("count_format3", "count_format7", "count_format8", "count_format10")

# GSM-Hard solved flags per seed (5 problems)
GSM = {
    0: {"base": "00000", "skill1": "11000", "skill2": "01100", "cat": "11111", "cat_static": "11100", "ties": "10000"},
    1: {"base": "00000", "skill1": "10000", "skill2": "01000", "cat": "11100", "cat_static": "11000", "ties": "00000"},
    2: {"base": "10000", "skill1": "11000", "skill2": "10100", "cat": "11110", "cat_static": "11110", "ties": "10000"},
}
# QABot metrics (seed 0 only, no judge)
QABOT = {"base": (0.0, 0.10, 0.25), "skill1": (0.25, 0.30, 0.50), "skill2": (0.0, 0.20, 0.25),
         "cat": (0.50, 0.60, 0.75)}  # exact_match, f1, contains
# prompt-format accuracy per seed, in FORMATS order (10 examples each)
ROBUST = {
    "base": {0: (0.2, 0.2, 0.2, 0.2), 1: (0.2, 0.2, 0.2, 0.2)},
    "skill1": {0: (0.5, 0.3, 0.4, 0.2), 1: (0.5, 0.3, 0.4, 0.2)},
    "skill2": {0: (0.3, 0.5, 0.2, 0.4), 1: (0.3, 0.5, 0.2, 0.4)},
    "cat": {0: (0.8, 0.6, 0.7, 0.5), 1: (0.6, 0.6, 0.5, 0.3)},
}
BATTLES = ([("cat", "base", "model_a")] * 6 + [("cat", "skill1", "model_a")] * 4 + [("skill1", "base", "model_a")] * 3
           + [("cat", "skill1", "model_b")] + [("skill2", "base", "tie")] * 2)
MODULES = [f"base_model.model.model.layers.{layer}.self_attn.{kind}" for layer in (0, 1) for kind in ("q_proj", "v_proj")]
ALPHAS = {0: [0.2, 0.8, 0.4, 0.6, 0.5, 0.5, 0.1, 0.9], 1: [0.4, 0.6, 0.4, 0.6, 0.3, 0.7, 0.3, 0.7]}


def _eval(root: Path, setting: str, label: str, target: str, seed: int, task: str, metrics: dict,
          rows: list[dict] | None) -> Path:
    path = root / "eval" / setting / f"{label}--{target}-s{seed}.json"
    run = {"setting": setting, "label": label, "target": target, "task": task, "seed": seed,
           "skills": SKILLS[setting], "source": "generated"}
    write_result(path, config={"task": task, "generation": {"greedy": True}, "run": run}, metrics=metrics,
                 model=MODEL, extra={"examples_file": path.name[:-5] + ".examples.jsonl"})
    if rows is not None:
        write_jsonl(load.examples_path(path), rows)
    return path


def _elo_file(path: Path, elo: dict | None, decided_by: str = "local") -> None:
    """As stage 08 writes it: ``metrics.elo`` = EloResult.to_dict() (None without battles)."""
    write_result(path, config={"run": {"setting": "reading_comprehension", "target": "bioasq_rc", "seed": 0,
                                       "judge": "local", "battles_decided_by": decided_by}},
                 metrics={"elo": elo, "judgments": len(BATTLES), "battles": len(BATTLES) if elo else 0,
                          "unparseable": 0 if elo else len(BATTLES), "judge_model": "m", "both_orders": True})
    write_jsonl(load.examples_path(path), [{"model_a": a, "model_b": b, "winner": w} for a, b, w in BATTLES])


def build_results(root: Path) -> None:
    """results/<profile>/ for the tests and the notebooks' papermill check."""
    for seed, labels in GSM.items():
        for label, bits in labels.items():
            flags = [b == "1" for b in bits]
            _eval(root, "math_code", label, "gsm_hard", seed, "gsm_hard",
                  {"n": 5, "exec_accuracy": sum(flags) / 5, "last_number_accuracy": 0.0, "program_found": 1.0,
                   "status_counts": {"ok": 5}, "tolerance": 0.001},
                  [{"index": i, "exec_correct": f, "last_number_correct": False} for i, f in enumerate(flags)])
    for label, (em, f1, contains) in QABOT.items():
        _eval(root, "qabot", label, "qabot_dnd", 0, "qa", {"n": 4, "exact_match": em, "f1": f1, "contains": contains},
              [{"index": i, "exact_match": float(i < round(4 * em)), "f1": f1, "contains": float(i < round(4 * contains))}
               for i in range(4)])
        _eval(root, "reading_comprehension", label, "bioasq_rc", 0, "qa",
              {"n": 4, "exact_match": em / 2, "f1": f1 / 2, "contains": contains / 2},
              [{"index": i, "exact_match": 0.5 * (i < round(4 * em)), "f1": f1 * (i % 2 == 0),
                "contains": 0.5 * (i < round(4 * contains)), "gold": "the gold answer here",
                # answers of 1-4 words; skill2 abstains on the first two questions, as SQuAD v2 teaches
                "prediction": "Not in context" if label == "skill2" and i < 2 else " ".join(["word"] * (i + 1))}
               for i in range(4)])  # the means above
    elo = bootstrap_elo(BATTLES, n_bootstrap=50, seed=0)
    _elo_file(root / "eval" / "reading_comprehension" / "elo--bioasq_rc-s0.json", elo.to_dict())
    for label, per_seed in ROBUST.items():
        for seed, accs in per_seed.items():
            for target, acc in zip(FORMATS, accs):
                k = round(acc * 10)
                _eval(root, "prompt_robustness", label, target, seed, "prompt_format", {"n": 10, "accuracy": acc},
                      [{"index": i, "correct": i < k} for i in range(10)])
    for target in FORMATS[:3]:  # an incomplete method: only 3 of the 4 formats
        _eval(root, "prompt_robustness", "ties", target, 0, "prompt_format", {"n": 10, "accuracy": 0.1}, None)
    for seed, values in ALPHAS.items():
        rows = [{"module": m, "layer": int(m.split(".")[4]), "kind": m.rsplit(".", 1)[1], "group": m,
                 "skill": skill, "alpha": values[2 * i + j]}
                for i, m in enumerate(MODULES) for j, skill in enumerate(("metamathqa", "code_alpaca"))]
        # the drift as a learned run logs it: per step, mean and max |alpha - alpha_0| per skill
        drift = [{"step": st, "mean": {"metamathqa": d, "code_alpaca": d / 2}, "max": {"metamathqa": 2 * d, "code_alpaca": d}}
                 for st, d in ((0, 0.0), (5, 0.1 * (seed + 1)), (10, 0.2 * (seed + 1)))]
        write_result(root / "train" / "math_code" / f"cat--s{seed}.json", config={"lr": 1e-3},
                     metrics={"train_loss": 1.0, "eval_loss": 1.0, "alphas": rows, "alpha_drift": drift,
                              "eval_points": [{"step": 0, "eval_loss": 0.5}, {"step": 10, "eval_loss": 0.4}],
                              "eval_loss_before": 0.5, "eval_loss_best": 0.4, "best_step": 10},
                     model={"base": "tiny-random-llama"}, extra={"label": "cat", "setting": "math_code", "seed": seed})
    write_result(root / "train" / "math_code" / "cat_paper--s0.json", config={"lr": 1e-3},  # drift without alphas
                 metrics={"alpha_drift": [{"step": 0, "mean": {"a": 0.0}, "max": {"a": 0.0}},
                                          {"step": 3, "mean": {"a": 2e-4}, "max": {"a": 3e-4}}]},
                 model={"base": "tiny-random-llama"}, extra={"label": "cat_paper", "setting": "math_code", "seed": 0})


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("analysis")
    build_results(base / "results" / "synthetic")
    return base


@pytest.fixture
def env(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("LORASOUPS_RESULTS", str(tree / "results"))
    monkeypatch.setenv("LORASOUPS_FIGURES", str(tmp_path / "figures"))
    return paths.figures_dir("synthetic")


HALF3 = 4.303 * 0.2 / math.sqrt(3)  # t_{0.975,2} * sd / sqrt(n) for three values with sd 0.2


def test_mean_ci_by_hand():
    s = stats.mean_ci([1.0, 0.6, 0.8])
    assert s["mean"] == pytest.approx(0.8) and s["n"] == 3
    assert (s["low"], s["high"]) == pytest.approx((0.8 - HALF3, 0.8 + HALF3))
    one = stats.mean_ci([0.4])
    assert one == {"mean": 0.4, "low": None, "high": None, "n": 1}
    assert stats.t975(1) == 12.706 and stats.t975(100) == 2.042
    assert "n=1" in stats.seeds_text([0]) and "3 seeds" in stats.seeds_text([0, 1, 2])


def test_figure_4_numbers_and_files(env):
    out = analysis.make("figure_4", "synthetic")
    assert [f.name for f in out.files] == ["figure_4.png", "figure_4.pdf", "figure_4.md"]
    assert all(f.parent == env and f.stat().st_size > 1000 for f in out.files[:2])
    # the numbers' table: mean over seeds, t-CI over seeds, bootstrap over problems (flags averaged
    # over seeds per problem, so the interval holds the mean), share of answers with a program
    boot = out.numbers["exec_accuracy"]["bootstrap95"]
    assert set(boot) == set(out.numbers["exec_accuracy"]["mean"])
    assert all(lo <= out.numbers["exec_accuracy"]["mean"][lb] + 1e-9 and lo <= hi for lb, (lo, hi) in boot.items())
    assert "| method | accuracy | 95 % t-CI over seeds | 95 % bootstrap over problems | programs found |" in out.table
    assert (env / "figure_4.md").read_text().startswith("**Figure 4 (reproduction), the numbers")
    mean = out.numbers["exec_accuracy"]["mean"]
    assert mean["cat"] == pytest.approx(0.8)
    assert mean["base"] == pytest.approx(1 / 15)  # 0, 0, 0.2
    assert mean["ties"] == pytest.approx(2 / 15)  # 0.2, 0, 0.2
    assert out.numbers["exec_accuracy"]["ci95"]["cat"] == pytest.approx([0.8 - HALF3, 0.8 + HALF3])
    assert list(mean) == ["base", "skill1", "skill2", "ties", "cat_static", "cat"]  # the paper's order


def test_item_bootstrap_averages_each_problem_over_seeds(env, tmp_path):
    """The bootstrap over problems resamples each problem's solved flag averaged over the method's
    seeds (an independent numpy percentile bootstrap with the same resampling draws)."""
    records = [r for r in load.eval_records("synthetic", "math_code", "gsm_hard") if r["label"] == "cat"]
    flags = [[b == "1" for b in GSM[seed]["cat"]] for seed in sorted(GSM) if "cat" in GSM[seed]]
    assert len(records) == len(flags) == 3
    per_problem = np.mean(np.array(flags, dtype=float), axis=0)
    idx = np.random.default_rng(0).integers(0, per_problem.size, size=(2000, per_problem.size))
    means = per_problem[idx].mean(axis=1)
    assert methods.item_bootstrap(records) == pytest.approx([np.percentile(means, 2.5), np.percentile(means, 97.5)])
    assert methods.item_bootstrap([{**records[0], "path": records[0]["path"].with_name("absent.json")}]) is None
    # a seed scored on other items is refused, naming its file (no silent intersection)
    short = tmp_path / "cat--gsm_hard-s9.json"
    short.write_text("{}")
    lines = load.examples_path(records[1]["path"]).read_text().splitlines()[:4]
    load.examples_path(short).write_text("\n".join(lines) + "\n")
    with pytest.raises(ResultsError, match="cat--gsm_hard-s9.json: scored items differ"):
        methods.item_bootstrap([records[0], {**records[1], "path": short, "n": 4}])


def test_a_generated_skill_is_named_as_such(tree, tmp_path, monkeypatch):
    """A skill LoRA trained on the package's generated miniature is labelled '<name> (generated)'
    in every table, from its train result's datasets; without a train result the name stays."""
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(tree / "results", copy)
    write_result(copy / "synthetic" / "train" / "math_code" / "skill1--s0.json", config={}, metrics={},
                 datasets={"metamathqa": {"name": "metamathqa", "source": "generated", "version": "1.0+math-1"}})
    write_result(copy / "synthetic" / "train" / "math_code" / "skill2--s0.json", config={}, metrics={},
                 datasets={"code_alpaca": {"name": "code_alpaca", "source": "mirror"}})
    monkeypatch.setenv("LORASOUPS_RESULTS", str(copy))
    monkeypatch.setenv("LORASOUPS_FIGURES", str(tmp_path / "figures"))
    records = load.eval_records("synthetic", "math_code", "gsm_hard", seeds=[0])
    assert methods.skill_names("math_code", records) == ("metamathqa (generated)", "code_alpaca")
    out = analysis.make("figure_4", "synthetic")
    assert "| skill1: metamathqa (generated) |" in out.table and "| skill2: code_alpaca |" in out.table
    monkeypatch.setenv("LORASOUPS_RESULTS", str(tree / "results"))
    assert methods.skill_names("math_code", load.eval_records("synthetic", "math_code", "gsm_hard")) == (
        "metamathqa", "code_alpaca")


def test_table_1_superlinearity_sets(env):
    out = analysis.make("table_1", "synthetic")
    cat = out.numbers["cat"]
    # seed 0: skills {0,1} and {1,2}, cat {0..4}: union 3, intersection 1, merge-only {3,4}
    # seed 1: {0}, {1}, cat {0,1,2}: union 2, intersection 0, merge-only {2}
    # seed 2: base {0}, {0,1}, {0,2}, cat {0,1,2,3}: union 3, intersection 1, merge-only {3}
    assert cat["union"] == pytest.approx(8 / 3) and cat["intersection"] == pytest.approx(2 / 3)
    assert cat["merge_only"] == pytest.approx(4 / 3)
    assert cat["superlinear_seeds"] == "3/3"
    # gains over base: cat 1.0, 0.6, 0.6; skills 0.4+0.4, 0.2+0.2, 0.2+0.2
    assert cat["gain_merged"] == pytest.approx(2.2 / 3) and cat["gain_skill1_plus_skill2"] == pytest.approx(1.6 / 3)
    assert out.numbers["ties"]["superlinear_seeds"] == "0/3" and out.numbers["ties"]["merge_only"] == 0
    md = (env / "table_1.md").read_text()
    assert "| CAT (learned) s0 | 0.000 | 0.400 | 0.400 | 1.000 | +1.000 | +0.800 | 2 | 3 | 1 |" in md
    assert "skill1 = metamathqa" in md and "3 seeds" in md


def test_figure_5_uses_containment_without_judge(env):
    out = analysis.make("figure_5", "synthetic")
    assert out.numbers["contains"]["mean"] == {"base": 0.25, "skill1": 0.5, "skill2": 0.25, "cat": 0.75}
    assert out.numbers["f1"]["mean"]["cat"] == 0.6 and "ci95" not in out.numbers["contains"]
    assert any("containment" in n for n in out.notes)
    assert (env / "figure_5.png").is_file()
    # the numbers' table (figure_5.md): per metric the mean, t-CI over seeds, bootstrap over questions
    assert [f.name for f in out.files] == ["figure_5.png", "figure_5.pdf", "figure_5.md"]
    assert ("| method | accuracy (answer containment) | 95 % t-CI over seeds | 95 % bootstrap over questions "
            "| token F1 |") in out.table
    assert out.numbers["f1"]["bootstrap95"]["cat"] == pytest.approx([0.6, 0.6])  # the same F1 on every question
    lo, hi = out.numbers["contains"]["bootstrap95"]["cat"]  # 3 of 4 questions contain the answer
    assert 0.25 <= lo < 0.75 < hi <= 1.0
    assert (env / "figure_5.md").read_text().splitlines()[5].startswith("| base | 0.2500 | - | [0.0000, 0.7500] |")


def test_figure_6a_and_table_2_read_the_elo_file(env):
    elo = bootstrap_elo(BATTLES, n_bootstrap=50, seed=0)  # the same call that wrote the file
    out = analysis.make("figure_6a", "synthetic")
    assert out.numbers["elo"] == pytest.approx(elo.median)
    assert load.elo_record(load.elo_path("synthetic", "reading_comprehension", "bioasq_rc", 0))["n_battles"] == 16
    assert out.numbers["elo_interval"]["cat"] == pytest.approx([elo.ci_low["cat"], elo.ci_high["cat"]])
    assert list(out.numbers["elo"])[0] == "cat"  # best first: cat wins 10 of 11 battles
    t2 = analysis.make("table_2", "synthetic")
    assert t2.numbers["f1"] == {"base": 0.05, "skill1": 0.15, "skill2": 0.1, "cat": 0.3}
    # F1's bootstrap over the questions: CAT's per-question F1 is 0.6, 0, 0.6, 0 (an independent
    # numpy percentile bootstrap with the same draws)
    idx = np.random.default_rng(0).integers(0, 4, size=(2000, 4))
    means = np.array([0.6, 0.0, 0.6, 0.0])[idx].mean(axis=1)
    ref = [np.percentile(means, 2.5), np.percentile(means, 97.5)]
    assert t2.numbers["f1_bootstrap95"]["cat"] == pytest.approx(ref)
    line = next(x for x in t2.table.splitlines() if x.startswith("| CAT (learned)"))
    # as Figures 4 and 5: per metric the mean, the t-CI over seeds ("-": one seed), the bootstrap
    em = np.array([0.5, 0.5, 0.0, 0.0])[idx].mean(axis=1)  # exact match 0.25: rows 0.5, 0.5, 0, 0
    contains = np.array([0.5, 0.5, 0.5, 0.0])[idx].mean(axis=1)
    cells = [f"[{np.percentile(m, 2.5):.4f}, {np.percentile(m, 97.5):.4f}]" for m in (means, em, contains)]
    assert line == (f"| CAT (learned) | 0.3000 | - | {cells[0]} | 0.2500 | - | {cells[1]} | 0.3750 | - | {cells[2]} "
                    f"| {elo.median['cat']:.1f} [{elo.ci_low['cat']:.1f}, {elo.ci_high['cat']:.1f}] |")
    assert t2.table.splitlines()[3].startswith("| method | token F1 | 95 % t-CI over seeds | 95 % bootstrap over "
                                               "questions | exact match |")
    # how each method answers: median words and the abstention share ("Not in context")
    assert t2.numbers["answer_words_median"] == {"base": 2.5, "skill1": 2.5, "skill2": 3, "cat": 2.5}
    assert t2.numbers["not_in_context_share"] == {"base": 0.0, "skill1": 0.0, "skill2": 0.5, "cat": 0.0}
    assert "the gold answers' median: 4 words" in t2.table and "| skill2: squad | 3 | 50.0% |" in t2.table


def test_figure_6a_names_a_reference_judge(tree, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(tree / "results", copy)
    elo = bootstrap_elo(BATTLES, n_bootstrap=50, seed=0)
    _elo_file(copy / "synthetic" / "eval" / "reading_comprehension" / "elo--bioasq_rc-s0.json", elo.to_dict(),
              decided_by="reference_f1")
    monkeypatch.setenv("LORASOUPS_RESULTS", str(copy))
    monkeypatch.setenv("LORASOUPS_FIGURES", str(tmp_path / "figures"))
    fig = analysis.make("figure_6a", "synthetic")
    assert fig.numbers["elo_decided_by"] == "reference_f1" and any("no LLM judge" in n for n in fig.notes)
    t2 = analysis.make("table_2", "synthetic")
    assert "token-F1 battles against the gold answer (no LLM judge)" in t2.table.splitlines()[0]


def test_judged_results_show_accuracy_mean_score_and_position_bias(tree, tmp_path, monkeypatch):
    """With the LLM judges' keys (stage 08 with a judge): Figure 5 plots judge_accuracy with the
    mean 0-2 score beside it; Figure 6a notes the pairwise judge's position bias."""
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(tree / "results", copy)
    root = copy / "synthetic"
    judged = {"base": (0.25, 1.0), "skill1": (0.5, 1.25), "skill2": (0.0, 0.5), "cat": (0.75, 1.75)}
    for label, (acc, mean) in judged.items():
        em, f1, contains = QABOT[label]
        _eval(root, "qabot", label, "qabot_dnd", 0, "qa",
              {"n": 4, "exact_match": em, "f1": f1, "contains": contains, "judge_n": 4, "judge_accuracy": acc,
               "judge_mean_score": mean, "judge_unparseable": 1, "judge_unparseable_share": 0.25}, None)
    path = root / "eval" / "reading_comprehension" / "elo--bioasq_rc-s0.json"
    _elo_file(path, bootstrap_elo(BATTLES, n_bootstrap=50, seed=0).to_dict())
    data = json.loads(path.read_text())
    data["metrics"]["position_bias"] = {"verdicts": 20, "first_position_win_share": 0.7,
                                        "second_position_win_share": 0.2, "pairs_both_orders": 10,
                                        "flipped_pairs": 4, "flip_share": 0.4}
    path.write_text(json.dumps(data))
    monkeypatch.setenv("LORASOUPS_RESULTS", str(copy))
    monkeypatch.setenv("LORASOUPS_FIGURES", str(tmp_path / "figures"))
    f5 = analysis.make("figure_5", "synthetic")
    assert f5.numbers["judge_accuracy"]["mean"] == {lb: a for lb, (a, _) in judged.items()}
    assert f5.numbers["judge_mean_score"]["mean"]["cat"] == 1.75 and "contains" not in f5.numbers
    assert f5.numbers["judge_unparseable_share"]["mean"]["base"] == 0.25
    f6 = analysis.make("figure_6a", "synthetic")
    assert ("seed 0 judge position bias: Choice 1 won 70%, Choice 2 20% of 20 single-order verdicts; "
            "4 of 10 pairs (40%) changed verdict with the order") in f6.notes


def test_elo_file_without_battles_is_skipped_with_a_note(tree, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(tree / "results", copy)
    _elo_file(copy / "synthetic" / "eval" / "reading_comprehension" / "elo--bioasq_rc-s0.json", None)
    monkeypatch.setenv("LORASOUPS_RESULTS", str(copy))
    monkeypatch.setenv("LORASOUPS_FIGURES", str(tmp_path / "figures"))
    fig = analysis.make("figure_6a", "synthetic")
    assert fig.skipped and fig.notes == ["elo--bioasq_rc-s0.json: no ELO ratings (the judge gave no usable battle)"]
    t2 = analysis.make("table_2", "synthetic")
    assert not t2.skipped and "| ELO |" not in t2.table and "elo" not in t2.numbers
    assert any("no usable battle" in n for n in t2.notes)


def test_figure_10_grid_and_incomplete_method(env):
    assert analysis.make("figure_10a", "synthetic").skipped  # no results of the 1 + 4 pair
    out = analysis.make("figure_10b", "synthetic")
    overall = out.numbers["mean_over_formats"]
    assert overall["cat"] == pytest.approx((0.65 + 0.5) / 2) and overall["base"] == pytest.approx(0.2)
    assert out.numbers["worst_format"]["cat"] == pytest.approx(0.4)  # format 10: (0.5 + 0.3) / 2
    assert "ties" not in overall and any(n.startswith("ties: left out") for n in out.notes)


def test_figure_9_learned_vs_static_paired(env):
    out = analysis.make("figure_9", "synthetic")
    assert [f.name for f in out.files] == ["figure_9.md", "figure_9.png", "figure_9.pdf"]
    row = out.numbers["math_code/gsm_hard"]
    # cat 1.0, 0.6, 0.8; static 0.6, 0.4, 0.8 -> differences 0.4, 0.2, 0.0
    assert row["learned"] == pytest.approx(0.8) and row["static"] == pytest.approx(0.6)
    assert row["difference"] == pytest.approx(0.2)
    assert f"0.200 [{0.2 - HALF3:.3f}, {0.2 + HALF3:.3f}]" in out.table
    assert any(n.startswith("qabot: left out") for n in out.notes)


def test_figure_9_sets_each_recipe_against_static_cat():
    from lorasoups.analysis.ablations import figure_9_table, learned_vs_static

    def rec(label, seed, v):
        return {"label": label, "seed": seed, "setting": "math_code", "target": "gsm_hard", "task": "gsm_hard",
                "metrics": {"exec_accuracy": v}, "model": "m", "n": 10, "path": f"{label}-{seed}"}

    records = [rec("cat_static", s, 0.2) for s in (0, 1)] + [rec("cat", 0, 0.5), rec("cat", 1, 0.3),
                                                               rec("cat_paper", 0, 0.2), rec("cat_paper", 1, 0.2)]
    rows = learned_vs_static(records) + learned_vs_static(records, "cat_paper")
    assert [r["learned_label"] for r in rows] == ["cat", "cat_paper"]
    table, numbers = figure_9_table(rows, "synthetic")
    assert numbers["math_code/gsm_hard"]["difference"] == pytest.approx(0.2)
    assert numbers["math_code/gsm_hard/cat_paper"]["difference"] == pytest.approx(0.0)
    assert "| cat_paper |" in table


def test_alphas_by_layer_mean_alphas(env):
    out = analysis.make("alphas_by_layer", "synthetic")
    assert [f.name for f in out.files] == ["alphas_by_layer_math_code.png", "alphas_by_layer_math_code.pdf"]
    # means of ALPHAS[0] and ALPHAS[1]: 0.3 0.7 0.4 0.6 0.4 0.6 0.2 0.8
    assert out.numbers["math_code"]["alpha_min"] == pytest.approx(0.2)
    assert out.numbers["math_code"]["alpha_max"] == pytest.approx(0.8)
    assert out.numbers["math_code"]["alpha_spread"] == "6.0e-01"
    from lorasoups.analysis.ablations import mean_alphas

    table = mean_alphas([[{"module": "m", "skill": "a", "alpha": 0.2}],
                        [{"module": "m", "skill": "a", "alpha": 0.6}]])
    assert table[0]["alpha"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="other"):
        mean_alphas([[{"module": "m", "skill": "a", "alpha": 0.2}],
                    [{"module": "n", "skill": "a", "alpha": 0.6}]])


def test_alpha_drift_per_recipe_and_seed(env):
    out = analysis.make("alpha_drift", "synthetic")
    assert [f.name for f in out.files] == ["alpha_drift_math_code.png", "alpha_drift_math_code.pdf"]
    # seed 1 at its last step: mean over skills of (0.4, 0.2) = 0.3, the largest of (0.8, 0.4) = 0.8
    assert out.numbers["math_code/cat/s1"] == {"steps": 10, "final_drift_mean": "3.0e-01", "final_drift_max": "8.0e-01",
                                               "eval_loss_before": 0.5, "eval_loss_best": 0.4, "best_step": 10}
    assert out.numbers["math_code/cat_paper/s0"]["final_drift_mean"] == "2.0e-04"
    from lorasoups.analysis.ablations import drift_series

    with pytest.raises(analysis.ResultsError, match="alpha_drift is missing"):
        drift_series({"metrics": {}, "path": "x.json"})


def test_pdf_has_no_creation_date_and_is_reproducible(env):
    analysis.make("figure_4", "synthetic", verbose=False)
    first = (env / "figure_4.pdf").read_bytes()
    assert b"/CreationDate" not in first and first.startswith(b"%PDF")
    analysis.make("figure_4", "synthetic", verbose=False)
    assert (env / "figure_4.pdf").read_bytes() == first
    analysis.make("alphas_by_layer", "synthetic", verbose=False)
    assert b"/CreationDate" not in (env / "alphas_by_layer_math_code.pdf").read_bytes()


def test_missing_results_skip_with_the_file_names(env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LORASOUPS_RESULTS", str(tmp_path / "empty"))
    outs = [analysis.make(name, "synthetic") for name in analysis.ARTIFACTS]
    assert all(o.skipped and o.missing for o in outs)
    printed = capsys.readouterr().out
    assert "figure_4: skipped" in printed and "synthetic/eval/math_code/cat--gsm_hard-s0.json" in printed
    assert "synthetic/eval/reading_comprehension/elo--bioasq_rc-s0.json" in printed
    text = analysis.summary(outs)
    assert text.endswith(f"0 of {len(outs)} artifacts written, {len(outs)} skipped")
    assert not env.exists() or not any(env.iterdir())


def test_one_missing_file_is_named(tree, tmp_path, monkeypatch, capsys):
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(tree / "results", copy)
    (copy / "synthetic" / "eval" / "math_code" / "skill2--gsm_hard-s1.json").unlink()
    monkeypatch.setenv("LORASOUPS_RESULTS", str(copy))
    monkeypatch.setenv("LORASOUPS_FIGURES", str(tmp_path / "figures"))
    out = analysis.make("figure_4", "synthetic")
    assert out.skipped and [p.name for p in out.missing] == ["skill2--gsm_hard-s1.json"]
    assert "missing synthetic/eval/math_code/skill2--gsm_hard-s1.json" in capsys.readouterr().out


def _corrupt(tree: Path, tmp_path: Path, monkeypatch, rel: str, text: str) -> Path:
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(tree / "results", copy)
    path = copy / "synthetic" / rel
    path.write_text(text)
    monkeypatch.setenv("LORASOUPS_RESULTS", str(copy))
    monkeypatch.setenv("LORASOUPS_FIGURES", str(tmp_path / "figures"))
    return path


def test_malformed_json_names_the_file(tree, tmp_path, monkeypatch):
    path = _corrupt(tree, tmp_path, monkeypatch, "eval/math_code/cat--gsm_hard-s0.json", '{"metrics": ')
    with pytest.raises(analysis.ResultsError, match=rf"{path}: line 1: not valid JSON"):
        analysis.make("figure_4", "synthetic")


def test_missing_metric_names_file_and_field(tree, tmp_path, monkeypatch):
    rel = "eval/math_code/ties--gsm_hard-s2.json"
    data = json.loads((tree / "results" / "synthetic" / rel).read_text())
    del data["metrics"]["exec_accuracy"]
    path = _corrupt(tree, tmp_path, monkeypatch, rel, json.dumps(data))
    with pytest.raises(analysis.ResultsError, match=rf"{path}: metrics.exec_accuracy is missing"):
        analysis.make("figure_4", "synthetic")


def test_name_content_mismatch_and_bad_examples_line(tree, tmp_path, monkeypatch):
    rel = "eval/math_code/cat--gsm_hard-s0.json"
    data = json.loads((tree / "results" / "synthetic" / rel).read_text())
    data["config"]["run"]["seed"] = 7
    path = _corrupt(tree, tmp_path, monkeypatch, rel, json.dumps(data))
    with pytest.raises(analysis.ResultsError, match=rf"{path}: config.run.seed is 7 but the file name says 0"):
        load.eval_record(path)
    ex = path.parent / "base--gsm_hard-s0.examples.jsonl"
    ex.write_text('{"index": 0, "exec_correct": true}\n{"index": 1}\n')
    with pytest.raises(analysis.ResultsError, match=rf"{ex}:2: missing field 'exec_correct'"):
        load.solved(load.eval_record(path.parent / "base--gsm_hard-s0.json"))


def test_unknown_artifact_suggests():
    with pytest.raises(ValueError, match="did you mean 'figure_4'"):
        analysis.make("figure4", "synthetic")


def test_alpha_heatmap_grid_by_hand():
    from lorasoups.analysis.ablations import alpha_heatmap

    rows = [{"module": f"l{layer}.{kind}", "layer": layer, "kind": kind, "skill": skill, "alpha": a}
            for (layer, kind, skill, a) in [(0, "q_proj", "math", 0.1), (1, "q_proj", "math", 0.2),
                                            (0, "v_proj", "math", 0.3), (1, "v_proj", "math", 0.4),
                                            (0, "q_proj", "code", 0.9), (1, "q_proj", "code", 0.8),
                                            (0, "v_proj", "code", 0.7), (1, "v_proj", "code", 0.6)]]
    fig = alpha_heatmap(rows, "t")
    math_ax, code_ax = fig.axes[:2]
    assert math_ax.images[0].get_array().tolist() == [[0.1, 0.2], [0.3, 0.4]]  # rows: kinds, columns: layers
    assert code_ax.images[0].get_array().tolist() == [[0.9, 0.8], [0.7, 0.6]]
    assert math_ax.images[0].get_clim() == (0.1, 0.9)  # one colour scale for both skills


def test_analysis_notebooks_are_thin():
    import nbformat

    names = {"hard_math_code", "qabot", "reading_comprehension", "prompt_robustness", "ablations"}
    found = {p.stem: p for p in (paths.NOTEBOOKS / "analysis").glob("*.ipynb")}
    assert names <= set(found)
    for name in names:
        nb = nbformat.read(found[name], as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert not any(line.lstrip().startswith(("def ", "class ")) for c in code for line in c.source.splitlines())
        tags = [c.metadata.get("tags", []) for c in code]
        assert ["parameters"] in tags and tags[-1] == ["nbval-check-output"], name
        assert 'profile = "smoke"' in next(c.source for c in code if "parameters" in c.metadata.get("tags", []))


def test_table_1_needs_the_per_example_files(tree, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(tree / "results", copy)
    (copy / "synthetic" / "eval" / "math_code" / "skill1--gsm_hard-s2.examples.jsonl").unlink()
    monkeypatch.setenv("LORASOUPS_RESULTS", str(copy))
    monkeypatch.setenv("LORASOUPS_FIGURES", str(tmp_path / "figures"))
    out = analysis.make("table_1", "synthetic")
    assert out.skipped and [p.name for p in out.missing] == ["skill1--gsm_hard-s2.examples.jsonl"]
    assert not analysis.make("figure_4", "synthetic").skipped  # Figure 4 needs only the JSON


def test_caption_names_a_generated_stand_in_target(tmp_path):
    gen = {"gsm_hard": {"source": "generated", "version": "1.0+math-1"}}
    assert load.target_data(gen, "gsm_hard") == "gsm_hard: generated stand-in 1.0+math-1"
    assert load.target_data({"gsm_hard": {"source": "generated"}}, "gsm_hard") == "gsm_hard: generated stand-in"
    assert load.target_data({"gsm_hard": {"source": "mirror"}}, "gsm_hard") is None  # real data: no note
    assert load.target_data(None, "gsm_hard") is None and load.target_data(["x"], "gsm_hard") is None
    # read from a result file, into the caption and Figure 9's target column
    records = []
    for label, acc in (("cat", 0.5), ("cat_static", 0.25)):
        path = _eval(tmp_path, "math_code", label, "gsm_hard", 0, "gsm_hard",
                     {"n": 4, "exec_accuracy": acc, "last_number_accuracy": acc}, None)
        data = json.loads(path.read_text())
        data["datasets"] = gen
        path.write_text(json.dumps(data))
        records.append(load.eval_record(path))
    assert records[0]["target_data"] == "gsm_hard: generated stand-in 1.0+math-1"
    from lorasoups.analysis.ablations import figure_9_table, learned_vs_static
    from lorasoups.analysis.methods import records_caption

    assert "target gsm_hard: generated stand-in 1.0+math-1" in records_caption("cpu", records)
    md, _ = figure_9_table(learned_vs_static(records), "cpu")
    assert "| math_code | gsm_hard: generated stand-in 1.0+math-1 | exec_accuracy |" in md
    for r in records:
        r["target_data"] = None  # the real target: the plain name, no note in the caption
    md, _ = figure_9_table(learned_vs_static(records), "cpu")
    assert "| math_code | gsm_hard | exec_accuracy |" in md
    assert "target" not in records_caption("cpu", records).replace("targets", "")


def test_wall_time_sums_what_each_stage_recorded(tmp_path, monkeypatch):
    from lorasoups.analysis import budget

    root = tmp_path / "results" / "wt"
    monkeypatch.setenv("LORASOUPS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LORASOUPS_FIGURES", str(tmp_path / "figures"))
    for label, secs in (("skill1", 60.0), ("skill2", 120.0), ("cat", 30.0), ("ties", None), ("odd", 6.0)):
        write_result(root / "train" / "math_code" / f"{label}--s0.json", config={}, metrics={},
                     timings={"train_last_session": secs} if secs else {})
    sweep = root / "sweep" / "math_code" / "ties--s0.jsonl"
    sweep.parent.mkdir(parents=True)
    points = [{"kind": "point", "seconds": {"merge": 1.0, "generate": 59.0, "score_wait": 0.0}}] * 2
    sweep.write_text("\n".join(json.dumps(r) for r in [{"kind": "header"}, *points]) + "\n")
    for label, secs in (("base", 300.0), ("cat", 120.0)):
        _eval(root, "math_code", label, "gsm_hard", 0, "gsm_hard",
              {"n": 4, "exec_accuracy": 0.5, "last_number_accuracy": 0.5}, None)
        p = root / "eval" / "math_code" / f"{label}--gsm_hard-s0.json"
        d = json.loads(p.read_text())
        d["timings_s"] = {"evaluate": secs}
        p.write_text(json.dumps(d))
    rows = budget.slice_rows("wt", "math_code", 0)
    assert rows == [("skill LoRAs", 180.0, "skill1, skill2"),
                    ("learned CAT (our recipe, the paper's, cat_random)", 30.0, "cat"),
                    ("training: odd", 6.0, ""), ("TIES sweep", 120.0, "2 grid points"),
                    ("evaluation", 420.0, "2 model-target pairs; slowest base--gsm_hard 5 min"),
                    ("no time recorded", None, "ties")]
    out = analysis.make("wall_time", "wt", verbose=False)
    assert out.numbers == {"math_code/s0": 756.0} and "| math_code | 0 | **all recorded** | **12.6** |" in out.table
    assert "| math_code | 0 | no time recorded | - | ties |" in out.table
    sweep.write_text(json.dumps({"kind": "point", "seconds": 3}) + "\n")
    with pytest.raises(analysis.ResultsError, match=r"ties--s0\.jsonl:1: field 'seconds' should be an object"):
        budget.slice_rows("wt", "math_code", 0)


def test_table_1_warns_when_a_skill_is_below_the_base():
    from lorasoups.analysis.hard_math import table_1

    # 10 problems: base solves 0-3, skill1 none, skill2 problem 9, the merge none. Gains: skill1
    # -0.4, skill2 -0.3 (sum -0.7); merge -0.4 > -0.7, so the rule calls it super-linear.
    flags = {"base": {0: {i: i < 4 for i in range(10)}}, "skill1": {0: {i: False for i in range(10)}},
             "skill2": {0: {i: i == 9 for i in range(10)}}, "cat": {0: {i: False for i in range(10)}}}
    md, numbers = table_1(flags, "caption")
    assert numbers["cat"]["superlinear_seeds"] == "1/1"
    assert "Note: a skill's gain over the base is negative (s0 skill1 -0.400, s0 skill2 -0.300)" in md
    flags["skill1"][0] = {i: i < 6 for i in range(10)}
    flags["skill2"][0] = {i: i < 5 for i in range(10)}
    assert "Note:" not in table_1(flags, "caption")[0]
    # skills exactly at the base (gains 0) and a merge above it: genuine, no note
    flags["skill1"][0] = flags["skill2"][0] = flags["base"][0]
    flags["cat"][0] = {i: i < 6 for i in range(10)}
    md, numbers = table_1(flags, "caption")
    assert numbers["cat"]["superlinear_seeds"] == "1/1" and "Note:" not in md
