"""The task table: each scored task's declarations agree with what its scorer really returns, and
every dataset's record kind is in the table."""
from __future__ import annotations

import pytest

from lorasoups.data import REGISTRY, DataError
from lorasoups.data.registry import Entry
from lorasoups.task_kinds import RECORD_KINDS, TASKS, get_task, headline, score, task_of_kind

#: one right and one wrong generation per task, with their golds
EXAMPLES = {
    "gsm_hard": (["def solution():\n    return 3\n", "def solution():\n    return 4\n"], [3.0, 3.0]),
    "qa": (["Paris", "the city of Lyon"], ["Paris", "Paris"]),
    "prompt_format": (["The answer is 2", "The answer is 5"], ["2", "2"]),
}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_task_declares_what_its_scorer_returns(task):
    spec = TASKS[task]
    gens, golds = EXAMPLES[task]
    metrics, rows = score(task, gens, golds)
    assert set(spec.metrics) <= set(metrics), f"{task}: declared metrics missing from the scorer's"
    assert spec.sweep_metric in metrics and spec.headline[-1] in metrics
    assert [float(r[spec.item_score]) for r in rows][0] == 1.0 and float(rows[1][spec.item_score]) < 1.0
    if spec.solved_flag:
        assert [r[spec.solved_flag] for r in rows] == [True, False] or [r[spec.solved_flag] for r in rows] == [1, 0]
    assert headline({"t": metrics}) == {"t": round(float(metrics[spec.headline[-1]]), 3)}
    kinds = [k for k, v in RECORD_KINDS.items() if v.task == task]
    assert kinds and all(spec.gold in RECORD_KINDS[k].columns for k in kinds), "gold column not in the records"


def test_every_dataset_kind_is_in_the_table_and_an_unknown_one_is_refused():
    assert {e.kind for e in REGISTRY.values()} <= set(RECORD_KINDS)
    assert task_of_kind("sft") is None and task_of_kind("program").name == "gsm_hard"
    entry = next(iter(REGISTRY.values()))
    with pytest.raises(DataError, match="unknown record kind 'qaa'.*did you mean 'qa'"):
        Entry(**{**{f: getattr(entry, f) for f in entry.__dataclass_fields__}, "kind": "qaa"})
    with pytest.raises(ValueError, match="unknown task kind 'gsm'"):
        get_task("gsm")


def test_a_bound_scorer_takes_only_the_options_its_task_declares(monkeypatch):
    import lorasoups.evaluation.gsm_hard as gsm_hard
    import lorasoups.evaluation.qa_metrics as qa_metrics
    from lorasoups.task_kinds import bound_scorer

    seen = {}
    real = gsm_hard.score_gsm_hard

    def spy(gens, golds, **kw):
        seen.update(kw)
        return real(gens, golds, **kw)

    monkeypatch.setattr(gsm_hard, "score_gsm_hard", spy)
    gens, golds = EXAMPLES["gsm_hard"]
    metrics, _ = bound_scorer("gsm_hard", workers=1)(gens, golds)
    assert seen == {"workers": 1} and metrics["exec_accuracy"] == 0.5
    seen.clear()
    bound_scorer("gsm_hard", workers=None)(gens, golds)
    assert seen == {}, "None keeps the scorer's default"
    # QA's scorer takes no workers: the option is left out, not passed (it would be a TypeError)
    assert bound_scorer("qa", workers=2) is qa_metrics.score_qa
    metrics, _ = bound_scorer("qa", workers=2)(*EXAMPLES["qa"])
    assert metrics["exact_match"] == 0.5


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_declared_option_is_a_keyword_of_the_scorer(task):
    import inspect

    params = inspect.signature(TASKS[task].scorer).parameters
    assert all(opt in params for opt in TASKS[task].options), "a declared option the scorer does not take is dropped"
