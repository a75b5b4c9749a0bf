"""Program extraction, last-number reading, GSM-Hard scoring and per-example result files."""
from __future__ import annotations

import json

import pytest

from lorasoups import paths
from lorasoups.evaluation.extract import (
    authors_response_split,
    close_enough,
    extract_program,
    last_number,
    numbers,
)
from lorasoups.evaluation.gsm_hard import score_gsm_hard
from lorasoups.evaluation.reporting import examples_path, read_jsonl, save_evaluation
from lorasoups.results import read_result


@pytest.mark.parametrize(
    "text, expected",
    [
        ("```python\ndef solution():\n    return 1\n```\nDone.", "def solution():\n    return 1\n"),
        ("Sure:\n'''\ndef solution():\n    return 2\n'''", "def solution():\n    return 2\n"),
        ("```\nx = 1\n```\n```py\ndef solution():\n    return x\n```", "def solution():\n    return x\n"),
        ("```\ndef solution():\n    return 3", "def solution():\n    return 3\n"),  # cut off, no closing fence
        ("Here.\nimport math\n\ndef solution():\n    a = 1\n\n    return a\nThe answer is 1.",
         "import math\ndef solution():\n    a = 1\n\n    return a\n"),  # imports above a blank line kept
        ("import math\ndef solution():\n    return math.pi\nprint(solution())", "import math\ndef solution():\n    return math.pi\n"),
        ("The answer is 42.", None),
        ("", None),
    ],
)
def test_extract_program(text, expected):
    assert extract_program(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("She makes 9867630 dollars.", 9867630.0),
        ("Total: 1,234,567.5 and then -3", -3.0),
        ("values 3,4", 4.0),  # not a thousands group: two numbers
        ("x2 y3 z", None),  # digits glued to words are not numbers
        ("costs $.5 each", 0.5),
        ("1e3 items", 1000.0),
        ("no numbers", None),
    ],
)
def test_last_number(text, expected):
    assert last_number(text) == expected


def test_numbers_and_tolerance():
    assert numbers("a -2.5 b 10") == [-2.5, 10.0]
    assert close_enough(3431580.0005, 3431580.0) and not close_enough(3431580.002, 3431580.0)
    assert not close_enough(float("nan"), 1.0) and not close_enough(None, 1.0)


def test_authors_split_reads_first_demonstration():
    decoded = "### Instruction:\nQ1\n### Response:\nA1 is 8\n### Instruction:\nQ\n### Response:\nmine is 5"
    # [1] of a split on the marker is the first demonstration's response, not the model's answer
    assert authors_response_split(decoded).split("### Instruction:")[0].strip() == "A1 is 8"
    assert authors_response_split("no marker 3") == "no marker 3"


def test_few_shot_demonstrations_execute_to_their_answers():
    """The authors' 8 PAL demonstrations are real programs with known answers."""
    mirror = paths.data_mirror()
    path = mirror / "lorasoups-paper" / "few_shot" / "math.json" if mirror else None
    if path is None or not path.is_file():
        pytest.skip("dataset mirror not available")
    demos = json.loads(path.read_text())
    metrics, rows = score_gsm_hard([d["output"] for d in demos], [d["answer"] for d in demos], workers=2)
    assert metrics["exec_accuracy"] == 1.0, [r for r in rows if not r["exec_correct"]]
    assert metrics["n"] == 8 and metrics["program_found"] == 1.0


def test_score_gsm_hard_both_scorings():
    generations = [
        "```python\ndef solution():\n    return 2287720 * 1.5\n```",  # right program
        "```python\ndef solution():\n    return 2287720 + 1\n```\nSo the answer is 3431580.",  # wrong program, right text
        "The answer is 3431580.",  # no program at all
        "```python\ndef solution():\n    while True:\n        pass\n```",  # hostile
        "```python\ndef solution():\n    return 3431580.0004\n```",  # within 0.001
    ]
    golds = [3431580.0, 3431580.0, 3431580.0, 3431580.0, "3431580"]
    # 3 s: a fresh interpreter per program can take over 1 s to start on 2 loaded cores (a good
    # program timed out at 1 s in a fresh-clone run); the busy loop still times out
    metrics, rows = score_gsm_hard(generations, golds, timeout=3.0, workers=2)
    assert [r["exec_correct"] for r in rows] == [True, False, False, False, True]
    assert [r["last_number_correct"] for r in rows] == [False, True, True, False, True]
    assert [r["status"] for r in rows] == ["ok", "ok", "no_program", "timeout", "ok"]
    assert metrics["exec_accuracy"] == pytest.approx(2 / 5)
    assert metrics["last_number_accuracy"] == pytest.approx(3 / 5)
    assert metrics["status_counts"]["timeout"] == 1 and metrics["status_counts"]["no_program"] == 1


def test_score_gsm_hard_bad_input():
    with pytest.raises(ValueError, match="2 generations but 1 golds"):
        score_gsm_hard(["a", "b"], [1.0])
    with pytest.raises(ValueError, match="example 1 is not a number"):
        score_gsm_hard(["a", "b"], [1.0, "seven"])


def test_save_evaluation_writes_result_and_examples(tmp_path):
    out = tmp_path / "gsm_hard" / "base--default.json"
    rows = [{"index": 0, "gold": 1.0, "exec_correct": True}, {"index": 1, "gold": 2.0, "exec_correct": False}]
    path = save_evaluation(out, config={"task": "gsm_hard"}, metrics={"exec_accuracy": 0.5}, examples=rows)
    rec = read_result(path)
    assert rec["metrics"] == {"exec_accuracy": 0.5} and rec["n_examples"] == 2
    assert examples_path(out).name == "base--default.examples.jsonl" == rec["examples_file"]
    assert read_jsonl(examples_path(out)) == rows
    # a row's prompt is committed as its SHA-256 prefix (hashlib here is the independent reference)
    import hashlib
    prompt = "Q: 2 + 2?\n# solution in Python:\n"
    save_evaluation(out, config={"task": "gsm_hard"}, metrics={}, examples=[{**rows[0], "prompt": prompt}])
    assert read_jsonl(examples_path(out)) == [{**rows[0], "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest()[:16]}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_jsonl(bad)
