"""The sandbox against a corpus of hostile programs, run in one parallel batch with good programs."""
from __future__ import annotations

import json
import math
import os
import signal
import sys
from pathlib import Path

import pytest
from hostile_corpus import CORPUS, canary_problems, check_hostile_batch, load_corpus, make_canary

from lorasoups.evaluation.sandbox import SandboxConfig, run_program, run_programs


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    return make_canary(tmp_path)


def _canary_intact(canary: Path) -> None:
    assert not canary_problems(canary)


def test_corpus_is_large_enough():
    assert len(list(CORPUS.glob("*.txt"))) >= 30


def test_hostile_batch_survives_and_good_answers_score(canary, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-must-not-leak")
    bad, _ = check_hostile_batch(canary)
    assert not bad, "\n".join(bad)


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


POISON = """
import builtins, math, sys
math.pi = 3
builtins.abs = lambda x: -1
sys.modules["fractions"] = None
def solution():
    return math.pi
"""
CHECK = """
import math
from fractions import Fraction
def solution():
    return math.pi + abs(-1) + float(Fraction(1, 2))
"""


def test_programs_cannot_reach_the_next_one():
    """Each program runs in a fresh fork of a server that never runs programs: a program that
    poisons modules and builtins leaves the next one untouched, on every server used."""
    for _ in range(4):  # the idle servers are taken in turn, so each serves a poisoned program
        assert run_program(POISON, timeout=5).answer == 3.0
    res = run_program(CHECK, timeout=5)
    assert res.status == "ok" and res.answer == pytest.approx(math.pi + 1.5), res


def test_a_dead_server_is_replaced():
    from lorasoups.evaluation import sandbox

    run_program("x = 1\n", timeout=5)
    killed = []
    while not sandbox._IDLE.empty():
        server = sandbox._IDLE.get_nowait()
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        killed.append(server)
    for server in killed:  # dead servers back in the pool, as a crash would leave them
        sandbox._IDLE.put(server)
    res = run_program("def solution():\n    return 5\n", timeout=5)
    assert res.status == "ok" and res.answer == 5.0, res


def _busy_servers() -> dict[int, list[int]]:
    """This process's fork servers that have a child running, with those children (from /proc)."""
    ppid = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z":
                ppid[int(d.name)] = int(fields[1])
    mine = [p for p, parent in ppid.items() if parent == os.getpid()]
    busy = {p: [c for c, parent in ppid.items() if parent == p] for p in mine}
    return {p: kids for p, kids in busy.items() if kids}


def test_a_server_dying_mid_program_is_retried():
    """A server killed while its program runs: the program dies with it (no unsupervised
    orphan) and is run again on a fresh server."""
    import threading
    import time

    out = {}
    code = "import time\ntime.sleep(1.5)\n\ndef solution():\n    return 3\n"
    worker = threading.Thread(target=lambda: out.setdefault("res", run_program(code, timeout=10)))
    worker.start()
    deadline = time.monotonic() + 5
    while not (busy := _busy_servers()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert busy, "no busy fork server found"
    server, children = next(iter(busy.items()))
    os.killpg(server, signal.SIGKILL)
    time.sleep(0.5)
    alive = [c for c in children if Path(f"/proc/{c}/stat").exists()
             and Path(f"/proc/{c}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive, f"programs outlived their server: {alive}"
    worker.join(20)
    res = out["res"]
    assert res.status == "ok" and res.answer == 3.0, res


def test_bad_input_type_is_a_clear_error():
    with pytest.raises(TypeError, match="code must be a str"):
        run_program(b"print(1)", timeout=1)  # type: ignore[arg-type]


UNPRIVILEGED_DRIVER = '''
import json, sys
from pathlib import Path
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
import os
from hostile_corpus import check_hostile_batch, make_canary
from lorasoups.evaluation.sandbox import run_program
canary = make_canary(Path(sys.argv[2]))
bad, layers = check_hostile_batch(canary)
print(json.dumps({"euid": os.geteuid(), "bad": bad, "layers": sorted({l for ls in layers for l in ls}),
                  "ok_layers": run_program("x = 1\\n", timeout=5).layers}))
'''


@pytest.mark.slow
def test_hostile_batch_as_an_unprivileged_user(tmp_path):
    """The whole evaluator as an ordinary user (created here), where the network namespace and the
    drop to ``nobody`` are unavailable: rlimits (NPROC = 0 holds for non-root) and the audit hook
    must still contain 100 % of the corpus, with files of that user's own as the canary."""
    import pwd
    import shutil
    import subprocess
    import tempfile

    from lorasoups import paths

    if os.geteuid() != 0:
        pytest.skip("needs root to create the user (an unprivileged run tests this in the batch test above)")
    user = "lorasoups-sbx"
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user], check=True)
        pw = pwd.getpwnam(user)

    def as_user(*cmd: str, **kw):
        return subprocess.run(["runuser", "-u", user, "--", *cmd], capture_output=True, text=True, **kw)

    # The interpreter must be one the user can run: this one may live under /root (mode 700); the
    # sandbox needs the standard library only.
    python = next((p for p in (sys.executable, shutil.which("python3"), "/usr/bin/python3")
                   if p and as_user(p, "-c", "pass").returncode == 0), None)
    if python is None or as_user(python, "-c", f"import os; os.listdir({str(paths.ROOT)!r})").returncode != 0:
        pytest.skip(f"no interpreter and checkout that user {user} can read (checkout {paths.ROOT})")
    work = Path(tempfile.mkdtemp(prefix="lorasoups-sbx-user-", dir="/tmp"))
    try:
        os.chown(work, pw.pw_uid, pw.pw_gid)
        (work / "driver.py").write_text(UNPRIVILEGED_DRIVER)
        done = as_user("env", "OPENAI_API_KEY=sk-secret-must-not-leak", python, str(work / "driver.py"),
                       str(paths.ROOT), str(work), timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["euid"] == pw.pw_uid != 0
        assert not report["bad"], "\n".join(report["bad"])
        # which layers stood in: no namespace and no uid drop without root, rlimits and audit always
        assert "netns" not in report["layers"] and "nobody" not in report["layers"]
        assert {"rlimits", "audit"} <= set(report["ok_layers"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
