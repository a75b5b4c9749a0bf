"""Run untrusted model-written programs safely: one fresh process per program, killed on timeout.

``run_program(code, timeout)`` is the stable entry point; ``run_programs`` runs a batch in parallel
across cores (each worker thread only waits on its fork server, so threads are enough).

What is enforced and how (the child side, ``_sandbox_child.py``, documents each layer):

* a separate process per program, forked from a ``python -I -S -B`` fork server that never runs
  untrusted code (no state shared between programs), in its own session/process group, in a fresh
  empty temporary directory that is deleted afterwards;
* wall-clock timeout measured here; on expiry the whole process group gets SIGKILL (which no
  signal tampering can block), and RLIMIT_CPU backs it up inside the child;
* rlimits: address space (memory bombs -> ``memory``), CPU, file size (huge prints ->
  ``output_limit``; stdout/stderr and the result go to files in the temp dir, of which this
  process reads only the head, so no program can flood the evaluator's memory), open files, core
  dumps, NPROC = 0 (fork bombs, threads);
* when this process is root: an empty network namespace and a drop to uid/gid ``nobody`` (so the
  evaluator's files are not writable and its processes cannot be signalled);
* an audit hook refusing process creation, signals, sockets, ctypes, rlimit changes, and file
  writes/deletes outside the temp dir (reported ``forbidden``).

Programs get the standard library (and pure-Python installed packages); numpy and anything else
that loads ``ctypes`` is refused. A program can only ever affect its own result (it could forge it, as it could return any value).
Not a security boundary against a determined attacker with a kernel exploit; it is meant for
model-written code, which is mostly harmless and occasionally destructive by accident. Without
root (no namespace, no uid drop), files the evaluator's user can write are protected by the
audit hook alone, and the program could read what that user can read outside the interpreter's
prefixes only by defeating the hook.
"""
from __future__ import annotations

import atexit
import json
import math
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["ok", "error", "timeout", "memory", "forbidden", "output_limit", "crash"]
STATUSES: tuple[str, ...] = ("ok", "error", "timeout", "memory", "forbidden", "output_limit", "crash")

_CHILD = Path(__file__).with_name("_sandbox_child.py")
_NOBODY = 65534


@dataclass
class ProgramResult:
    """What one program did: ``status`` is ``ok`` or a failure kind from :data:`STATUSES`."""

    status: Status
    answer: float | None = None
    """``solution()``'s return value as a float when it is a number (None otherwise)."""
    answer_repr: str | None = None
    """``repr`` of the return value (first 2,000 characters)."""
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    seconds: float = 0.0
    layers: list[str] = field(default_factory=list)
    """Isolation layers the child confirmed (netns, nobody, rlimits, audit)."""
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SandboxConfig:
    """Limits for each program."""

    timeout: float = 5.0
    """Wall-clock seconds before the program's process group is killed."""
    memory_mb: int = 1024
    """Address-space limit (RLIMIT_AS) in MiB."""
    output_bytes: int = 1 << 20
    """Largest file the program may write, stdout and stderr included (RLIMIT_FSIZE)."""
    output_chars: int = 10_000
    """Characters of stdout/stderr kept in the result."""
    entry: str = "solution"
    """Function called after the program ran; its return value is the answer."""
    tmp_root: str | None = None
    """Where the per-program temporary directories go (the system default when None)."""
    drop_privileges: bool = True
    """When running as root: empty network namespace and uid ``nobody`` in the child. Off only
    to test that the remaining layers (rlimits, audit hook) hold on their own."""


def _site_packages() -> list[str]:
    import site

    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    return [d for d in dirs if os.path.isdir(d)]


def _read_head(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group (it is the group leader: start_new_session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def _cleanup(directory: str) -> None:
    def unlock(func, path, _exc):  # a program may have chmod-ed its files read-only
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            func(path)
        except OSError:
            pass

    shutil.rmtree(directory, onerror=unlock)


class _Server:
    """One fork server (``_sandbox_child.py``): runs one program at a time for one thread.

    The server imports once what every program needs and forks a fresh child per program, which
    is what makes the sandbox fast (see the child's docstring); it supervises the child's timeout
    itself, so a reply always comes, and exits when its stdin closes (also when this process dies).
    """

    def __init__(self) -> None:
        static = {"site_packages": _site_packages()}
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        # no inherited variables: API keys and tokens never reach a program
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", str(_CHILD), json.dumps(static)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            cwd="/", env=env, start_new_session=True, close_fds=True,
        )

    def run(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        # The server kills the child at ``timeout``; this wait only guards against a server bug.
        ready = select.select([self.proc.stdout], [], [], timeout + 30.0)[0]
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            raise BrokenPipeError("the sandbox server did not answer")
        reply = json.loads(line)
        if "server_error" in reply:
            raise RuntimeError(f"sandbox server: {reply['server_error']}")
        return reply

    def close(self) -> None:
        _kill_group(self.proc)
        self.proc.wait()


_IDLE: queue.SimpleQueue[_Server] = queue.SimpleQueue()
"""Idle servers: each thread of ``run_programs`` takes one (or starts one) and puts it back."""


def _take_server() -> _Server:
    """An idle live server (dead ones are dropped), or a new one."""
    while True:
        try:
            server = _IDLE.get_nowait()
        except queue.Empty:
            return _Server()
        if server.proc.poll() is None:
            return server
        server.close()


def _run_on_server(request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one request on an idle server; a server that died is replaced, and the request retried
    once (programs never run inside the server, so its death is not the program's doing)."""
    for attempt in range(2):
        server = _take_server()
        try:
            reply = server.run(request, timeout)
        except (BrokenPipeError, OSError, ValueError):
            server.close()
            if attempt:
                raise RuntimeError("the sandbox server died twice running this program") from None
            continue
        _IDLE.put(server)
        return reply
    raise AssertionError("unreachable")


@atexit.register
def _close_servers() -> None:
    while True:
        try:
            _IDLE.get_nowait().close()
        except queue.Empty:
            return


def run_program(code: str, timeout: float = 5.0, config: SandboxConfig | None = None) -> ProgramResult:
    """Execute ``code`` in a fresh sandboxed process and return its answer or failure kind.

    The program's ``solution()`` (``config.entry``) is called when defined; its return value is
    the answer. Never raises for anything the program does.
    """
    cfg = config or SandboxConfig()
    timeout = float(timeout if timeout is not None else cfg.timeout)
    if not isinstance(code, str):
        raise TypeError(f"run_program: code must be a str, not {type(code).__name__}")
    directory = tempfile.mkdtemp(prefix="lorasoups-sbx-", dir=cfg.tmp_root)
    os.chmod(directory, 0o700)
    Path(directory, "program.py").write_text(code, encoding="utf-8", errors="replace")
    request = {
        "dir": directory,
        "timeout": timeout,
        "cpu_seconds": max(1, math.ceil(timeout) + 1),
        "memory_bytes": int(cfg.memory_mb) << 20,
        "file_bytes": int(cfg.output_bytes),
        "entry": cfg.entry,
        "drop_privileges": bool(cfg.drop_privileges),
    }
    try:
        reply = _run_on_server(request, timeout)
    except OSError as exc:
        _cleanup(directory)
        return ProgramResult("error", error=f"cannot start the sandbox: {exc}")
    except RuntimeError as exc:
        _cleanup(directory)
        return ProgramResult("error", error=str(exc))
    out_dir = Path(directory)
    raw = _read_head(out_dir / "result.json", 64_000).encode()
    result = _interpret(raw, reply["returncode"], reply["timed_out"])
    result.seconds = reply["seconds"]  # the server times the child from fork to reap
    result.stdout = _read_head(out_dir / "stdout.txt", cfg.output_chars)
    result.stderr = _read_head(out_dir / "stderr.txt", cfg.output_chars)
    _cleanup(directory)
    return result


def _interpret(raw: bytes, returncode: int | None, timed_out: bool) -> ProgramResult:
    report: dict[str, Any] | None = None
    if raw:
        try:
            report = json.loads(raw.decode("utf-8", "replace"))
            if not isinstance(report, dict) or report.get("status") not in STATUSES:
                report = None
        except ValueError:
            report = None
    if timed_out:
        return ProgramResult("timeout", error="wall-clock timeout: process group killed")
    if report is None:
        if returncode is not None and returncode < 0:
            sig = -returncode
            if sig == signal.SIGXCPU:
                return ProgramResult("timeout", error="CPU time limit (SIGXCPU)")
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            return ProgramResult("crash", error=f"killed by signal {name}")
        return ProgramResult("error", error=f"exited with code {returncode} without a result")
    answer = report.get("answer")
    return ProgramResult(
        status=report["status"],
        answer=float(answer) if isinstance(answer, (int, float)) and not isinstance(answer, bool) else None,
        answer_repr=report.get("answer_repr"),
        error=report.get("error"),
        layers=list(report.get("layers") or []),
        violations=list(report.get("violations") or []),
    )


def run_programs(
    codes: Sequence[str],
    timeout: float = 5.0,
    workers: int | None = None,
    config: SandboxConfig | None = None,
    progress: bool = False,
) -> list[ProgramResult]:
    """Run many programs, ``workers`` at a time (default: one per CPU core), results in order."""
    workers = max(1, workers or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_program, c, timeout, config) for c in codes]
        iterator = futures
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(futures, total=len(futures), desc="programs")
        return [f.result() for f in iterator]


def isolation_layers() -> list[str]:
    """The layers this machine actually enforces, by running a trivial program."""
    return run_program("def solution():\n    return 1\n", timeout=10).layers


__all__ = ["STATUSES", "ProgramResult", "SandboxConfig", "isolation_layers", "run_program", "run_programs"]
