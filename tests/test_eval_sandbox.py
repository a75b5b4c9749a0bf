"""The sandbox against a corpus of hostile programs, run in one parallel batch with good programs."""
from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest

from lorasoups.evaluation.sandbox import STATUSES, SandboxConfig, run_program, run_programs

CORPUS = Path(__file__).parent / "hostile_programs"
GOOD = [  # (program, hand-computed answer)
    ("def solution():\n    return 16 - 3 - 4\n", 9.0),
    ("def solution():\n    money = 23\n    return money - 5 * 3\n", 8.0),
    ("import math\n\ndef solution():\n    return math.sqrt(2) * 10\n", 14.142135623730951),
    ("from fractions import Fraction\n\ndef solution():\n    return Fraction(7, 4)\n", 1.75),
    ("def solution():\n    return '1,234.5'\n", 1234.5),
]


def load_corpus(canary: Path) -> list[tuple[str, set[str], str | None, str]]:
    """(name, acceptable statuses, expected answer, code) for every hostile program."""
    out = []
    for path in sorted(CORPUS.glob("*.txt")):
        text = path.read_text()
        expect = re.search(r"^# expect: (.+)$", text, re.M)
        assert expect, f"{path.name}: missing '# expect:' line"
        statuses = set(expect.group(1).strip().split("|"))
        assert statuses <= set(STATUSES), f"{path.name}: unknown status in {statuses}"
        answer = re.search(r"^# answer: (.+)$", text, re.M)
        out.append((path.stem, statuses, answer.group(1) if answer else None, text.replace("{CANARY}", str(canary))))
    return out


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    d = tmp_path / "canary"
    d.mkdir()
    (d / "keep.txt").write_text("precious")
    return d


def _canary_intact(canary: Path) -> None:
    assert sorted(p.name for p in canary.iterdir()) == ["keep.txt"]
    assert (canary / "keep.txt").read_text() == "precious"
    assert (canary / "keep.txt").stat().st_mode & 0o777 != 0


def test_corpus_is_large_enough():
    assert len(list(CORPUS.glob("*.txt"))) >= 30


def test_hostile_batch_survives_and_good_answers_score(canary, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-must-not-leak")
    hostile = load_corpus(canary)
    # interleave: good, hostile, hostile, ..., so good programs share the batch with every kind
    codes, slots = [], []
    for i, item in enumerate(hostile):
        if i % 10 == 0:
            g = GOOD[(i // 10) % len(GOOD)]
            codes.append(g[0])
            slots.append(("good", g))
        codes.append(item[3])
        slots.append(("hostile", item))
    for g in GOOD:
        codes.append(g[0])
        slots.append(("good", g))
    pid, ppid = os.getpid(), os.getppid()
    results = run_programs(codes, timeout=2.0, workers=2, config=SandboxConfig(memory_mb=512))
    assert os.getpid() == pid and os.getppid() == ppid  # the evaluator is alive and unchanged
    assert len(results) == len(codes)
    bad = []
    for (kind, item), res in zip(slots, results):
        if kind == "good":
            code, answer = item
            if not (res.status == "ok" and res.answer is not None and abs(res.answer - answer) <= 1e-9):
                bad.append(f"good program {code!r}: {res.status} {res.answer} {res.error}")
        else:
            name, statuses, answer, _ = item
            if res.status not in statuses:
                bad.append(f"{name}: got {res.status} ({res.error}), expected {statuses}")
            if answer is not None and (res.answer is None or abs(res.answer - float(answer)) > 1e-9):
                bad.append(f"{name}: answer {res.answer} != {answer}")
            if name == "env_has_no_secret" and res.answer_repr != "'absent'":
                bad.append(f"{name}: the program saw the evaluator's environment: {res.answer_repr}")
            if name == "huge_print":
                assert len(res.stdout) <= SandboxConfig().output_chars
    assert not bad, "\n".join(bad)
    _canary_intact(canary)


def test_audit_layer_alone_protects_files(canary):
    """Without the privilege drop (root only), the audit hook alone still refuses every write."""
    if os.geteuid() != 0:
        pytest.skip("the privilege drop only happens as root; this run already tests the audit layer")
    names = {"rmtree_canary", "remove_canary_file", "write_new_file_outside", "append_canary",
             "truncate_canary_os_open", "rename_canary", "chmod_canary", "symlink_escape",
             "pathlib_write", "chdir_then_write", "dirfd_escape"}
    progs = [p for p in load_corpus(canary) if p[0] in names]
    assert len(progs) == len(names)
    cfg = SandboxConfig(drop_privileges=False)
    escape = Path(sys.prefix) / "lorasoups-sandbox-escape-test"
    try:
        results = run_programs([p[3] for p in progs], timeout=5.0, workers=2, config=cfg)
        assert not escape.exists(), "a program wrote into sys.prefix through dir_fd"
    finally:
        escape.unlink(missing_ok=True)
    for (name, *_), res in zip(progs, results):
        assert res.status == "forbidden", (name, res)
        assert "nobody" not in res.layers
    _canary_intact(canary)


def test_timeout_kills_whole_group_and_is_wall_clock():
    res = run_program("import time\ntime.sleep(30)\n", timeout=0.5)
    assert res.status == "timeout"
    assert res.seconds < 5


def test_result_fields_and_stdout():
    res = run_program("print('hello')\n\ndef solution():\n    return 2 ** 10\n", timeout=5)
    assert (res.status, res.answer, res.answer_repr, res.stdout) == ("ok", 1024.0, "1024", "hello\n")
    assert "audit" in res.layers and "rlimits" in res.layers
    none = run_program("x = 1\n", timeout=5)
    assert none.status == "ok" and none.answer is None and none.answer_repr == "None"


def test_evaluator_signal_handlers_untouched():
    before = signal.getsignal(signal.SIGTERM)
    run_program("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n", timeout=5)
    assert signal.getsignal(signal.SIGTERM) == before


def test_bad_input_type_is_a_clear_error():
    with pytest.raises(TypeError, match="code must be a str"):
        run_program(b"print(1)", timeout=1)  # type: ignore[arg-type]
