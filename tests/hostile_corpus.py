"""The hostile-program corpus and the batch check of the sandbox, without pytest: imported by
``test_eval_sandbox.py`` and run by a plain interpreter as an unprivileged user."""
from __future__ import annotations

import os
import re
from pathlib import Path

from lorasoups.evaluation.sandbox import STATUSES, SandboxConfig, run_programs

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
        if not expect:
            raise ValueError(f"{path.name}: missing '# expect:' line")
        statuses = set(expect.group(1).strip().split("|"))
        if not statuses <= set(STATUSES):
            raise ValueError(f"{path.name}: unknown status in {statuses}")
        answer = re.search(r"^# answer: (.+)$", text, re.M)
        out.append((path.stem, statuses, answer.group(1) if answer else None, text.replace("{CANARY}", str(canary))))
    return out


def make_canary(directory: Path) -> Path:
    d = directory / "canary"
    d.mkdir()
    (d / "keep.txt").write_text("precious")
    return d


def canary_problems(canary: Path) -> list[str]:
    names = sorted(p.name for p in canary.iterdir())
    if names != ["keep.txt"]:
        return [f"canary directory now holds {names}"]
    keep = canary / "keep.txt"
    if keep.read_text() != "precious" or keep.stat().st_mode & 0o777 == 0:
        return ["canary file changed"]
    return []


def check_hostile_batch(canary: Path) -> tuple[list[str], list[list[str]]]:
    """Run every hostile program in one parallel batch with good ones interleaved; return what went
    wrong (empty: 100 % contained, every good answer exact) and the layers each program ran under."""
    hostile = load_corpus(canary)
    codes, slots = [], []
    for i, item in enumerate(hostile):
        if i % 10 == 0:  # good, hostile, hostile, ...: good programs share the batch with every kind
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
    bad = []
    if (os.getpid(), os.getppid()) != (pid, ppid):
        bad.append("the evaluator changed")
    if len(results) != len(codes):
        bad.append(f"{len(results)} results for {len(codes)} programs")
    for (kind, item), res in zip(slots, results):
        if kind == "good":
            code, answer = item
            if not (res.status == "ok" and res.answer is not None and abs(res.answer - answer) <= 1e-9):
                bad.append(f"good program {code!r}: {res.status} {res.answer} {res.error}")
            continue
        name, statuses, answer, _ = item
        if res.status not in statuses:
            bad.append(f"{name}: got {res.status} ({res.error}), expected {statuses}")
        if answer is not None and (res.answer is None or abs(res.answer - float(answer)) > 1e-9):
            bad.append(f"{name}: answer {res.answer} != {answer}")
        if name == "env_has_no_secret" and res.answer_repr != "'absent'":
            bad.append(f"{name}: the program saw the evaluator's environment: {res.answer_repr}")
        if name == "huge_print" and len(res.stdout) > SandboxConfig().output_chars:
            bad.append(f"{name}: {len(res.stdout)} characters of stdout came back")
    return bad + canary_problems(canary), [list(r.layers) for r in results]
