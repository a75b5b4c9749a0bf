"""The child side of the sandbox: a fork server that runs each untrusted program in a fresh process.

Started as ``python -I -S -B _sandbox_child.py STATIC_JSON`` by ``sandbox.py``; standard library
only, and no import of ``lorasoups``: it must start fast and trust nothing. It imports what programs
commonly need once, then reads one request per line on stdin (a JSON object: the program's temp
dir, where ``program.py`` waits, and its limits), forks, and answers one JSON line on stdout with
the child's exit status. The server never runs untrusted code itself: each program runs in its own
forked process (a copy of the pristine server, so nothing a program changes reaches the next one),
which applies the layers below, runs the program and exits; the server enforces the wall-clock
timeout (SIGKILL to the child's process group) and reaps it.

Why a fork server: an interpreter start plus the imports (json, ctypes, the modules programs use)
cost ~70 ms of CPU per program, which capped the sandbox at ~22 programs/s on 2 cores; a fork of
the warmed server costs a few ms (``benchmarks/bench_sandbox.py`` measures both).

Layers, in the order each child applies them (each one alone stops most hostile programs; together
they make the sandbox; see ``sandbox.py`` for the parent side):

1. stdout/stderr are redirected to files inside the temp dir, and the result goes to a file
   opened before the program runs (``result.json``); nothing the program writes reaches the parent
   except through these size-capped files (the server's pipes are closed in the child).
2. When run as root: ``unshare(CLONE_NEWNET)`` puts the process in an empty network namespace
   (no interface but a down loopback), then it drops to ``nobody`` (uid/gid 65534, no groups),
   which can write only in its own temp dir (and world-writable dirs, which layer 4 closes) and
   cannot signal the evaluator's processes.
3. rlimits (soft = hard, so they cannot be raised again): CPU seconds, address space, file size
   (output cap), open files, core dumps off, and NPROC = 0, which stops fork bombs and threads for
   any non-root process (root ignores NPROC, hence the privilege drop).
4. A ``sys.addaudithook`` hook (cannot be removed once added) that refuses: process creation
   (fork, exec, spawn, system, subprocess), signalling other processes, sockets and DNS, ctypes
   and other native escape hatches, rlimit changes, writes/deletes/renames/chmods outside the temp
   dir, links, and reads outside the interpreter's own prefixes and the temp dir. A refusal raises
   ``SandboxViolation``, a BaseException that ``except Exception`` does not swallow, and is
   recorded so the run is reported ``forbidden`` even if the program catches it anyway.
"""
import json
import os
import select
import sys
import time

# ``-B`` is on the command line, so Python never writes .pyc files (which layer 4 would refuse).
STATIC = json.loads(sys.argv[1])

# ``-S`` skipped site.py (and its .pth files: ~20 ms per start); the parent passes the
# site-packages folders so programs can still import installed packages.
sys.path.extend(p for p in STATIC.get("site_packages", []) if p not in sys.path)

# Modules a program-aided answer may need, imported once here: a child that dropped to ``nobody``
# cannot read a standard library that sits under /root, and a forked child gets them for free.
PREIMPORT = (
    "math", "cmath", "fractions", "decimal", "datetime", "itertools", "functools", "collections",
    "statistics", "re", "random", "string", "operator", "heapq", "bisect", "copy", "time",
)
for _name in PREIMPORT:
    try:
        __import__(_name)
    except Exception:  # noqa: BLE001 - an interpreter without one of them still runs programs
        pass

import builtins  # noqa: E402
import errno  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import traceback  # noqa: E402

try:  # for prctl(2) and unshare(2), which Python 3.11 lacks
    import ctypes

    _LIBC = ctypes.CDLL(None, use_errno=True)
except Exception:  # noqa: BLE001 - no libc handle: the other layers remain
    _LIBC = None
_PR_SET_PDEATHSIG = 1
_SERVER_PID = os.getpid()


def _die_with_server() -> None:
    """Ask the kernel to SIGKILL this child when the server dies; exit if it already has."""
    prctl = getattr(_LIBC, "prctl", None)  # Linux only; elsewhere the server's timeout still holds
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != _SERVER_PID:
        os._exit(1)

_pwrite = os.pwrite
_ftruncate = os.ftruncate
_BUILTINS = dict(builtins.__dict__)
_dumps = json.dumps

# Set in each forked child from its request (module globals, read by the hook and the reporter).
CONFIG: dict = {}
SANDBOX = ""
RESULT_FD = -1
CODE = ""
LAYERS: list = []
_violations: list = []


def _restore_builtins() -> None:
    """Undo ``builtins.x = ...`` tampering before the runner's own code needs them again."""
    try:
        builtins.__dict__.update(_BUILTINS)
    except BaseException:  # noqa: BLE001
        pass


def _report(status: str, **fields) -> None:
    """Write the result for the parent (fields are capped well below the read limit)."""
    _restore_builtins()
    try:
        blob = _dumps({"status": status, "violations": _violations[:10], **fields}, default=str)
    except BaseException:  # noqa: BLE001 - the program sabotaged json: report that, by hand
        blob = '{"status": "error", "error": "the program broke the result encoder"}'
    try:
        data = blob.encode("utf-8", "replace")[:60000]
        _pwrite(RESULT_FD, data, 0)  # at the start, over anything the program wrote there
        _ftruncate(RESULT_FD, len(data))
    except OSError:
        pass


def _isolate(request: dict) -> None:
    """In the forked child: take the request, then apply layers 1-4 (in that order)."""
    global CONFIG, SANDBOX, RESULT_FD, CODE, _LIBC
    CONFIG = request
    SANDBOX = os.path.realpath(request["dir"])
    # A child outlives nothing: should the server die, the kernel kills the child too (else the
    # program would run on unsupervised, and a retried request would share its temp dir).
    _die_with_server()
    os.setsid()  # its own session and process group: the server kills the whole group on timeout
    os.closerange(3, 1024)  # the server's pipes and anything else it holds
    # The result goes to a file opened now, while the program cannot interfere; the file-size
    # rlimit caps it like any output, and the parent reads only its head (a pipe would let a
    # program stream gigabytes into the evaluator's memory).
    RESULT_FD = os.open(os.path.join(SANDBOX, "result.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(os.path.join(SANDBOX, "program.py"), encoding="utf-8", errors="replace") as src:
        CODE = src.read()
    os.environ["HOME"] = os.environ["TMPDIR"] = SANDBOX
    # ---------------------------------------------------------------- layer 1: output files
    for _fd, _name in ((1, "stdout.txt"), (2, "stderr.txt")):
        _f = os.open(os.path.join(SANDBOX, _name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(_f, _fd)
        os.close(_f)
    _null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(_null, 0)
    os.close(_null)
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    os.chdir(SANDBOX)

    # ---------------------------------------------------------------- layer 2: namespace + user
    if os.geteuid() == 0 and CONFIG.get("drop_privileges", True):
        try:
            if _LIBC is not None and _LIBC.unshare(0x40000000) == 0:  # CLONE_NEWNET
                LAYERS.append("netns")
        except Exception:  # noqa: BLE001 - no CAP_SYS_ADMIN in this container: the audit hook remains
            pass
        try:
            os.chown(SANDBOX, 65534, 65534)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            LAYERS.append("nobody")
        except OSError:  # e.g. a user namespace without uid 65534: rlimits and the audit hook remain
            pass
    _die_with_server()  # again: a change of uid clears the parent-death signal
    _LIBC = None  # the program gets no handle on libc (and ctypes calls are audited anyway)
    globals().pop("ctypes", None)
    for _mod in ("ctypes", "_ctypes", "ctypes._endian"):
        sys.modules.pop(_mod, None)
    os.nice(5)  # keep the evaluator responsive when all cores run programs

    # ---------------------------------------------------------------- layer 3: rlimits
    limits = {
        resource.RLIMIT_CPU: int(CONFIG["cpu_seconds"]),
        resource.RLIMIT_AS: int(CONFIG["memory_bytes"]),
        resource.RLIMIT_FSIZE: int(CONFIG["file_bytes"]),
        resource.RLIMIT_NOFILE: 32,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_NPROC: 0,
    }
    for _res, _val in limits.items():
        try:
            resource.setrlimit(_res, (_val, _val))
        except (ValueError, OSError):  # e.g. a hard limit already lower: keep the lower one
            pass
    LAYERS.append("rlimits")
    # Past the file-size cap a write fails with EFBIG (reported as output_limit) instead of SIGXFSZ.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

# ---------------------------------------------------------------- layer 4: audit hook


class SandboxViolation(BaseException):
    """Raised by the audit hook; BaseException so ``except Exception`` in the program misses it."""


_ALLOWED_READ = tuple(
    {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                                   *STATIC.get("site_packages", []))}
)
_DEVICES = {"/dev/null", "/dev/urandom", "/dev/random", "/dev/zero"}
_BANNED_EVENTS = (
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
    "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill", "os.symlink", "os.link",
    "resource.setrlimit", "resource.prlimit", "socket.", "ctypes.", "sys.remote_exec",
    "_xxsubinterpreters",
)
_BANNED_IMPORTS = {
    "ctypes", "_ctypes", "_posixsubprocess", "subprocess", "multiprocessing", "_multiprocessing",
    "socket", "_socket", "ssl", "_ssl", "pty", "_xxsubinterpreters",
}
_PATH_EVENTS = {
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
    "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.copymode", "shutil.copystat",
    "shutil.copytree", "shutil.move", "os.chflags", "os.lchflags", "os.setxattr", "os.removexattr",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_files_created = [0]


def _inside(path, roots) -> bool:
    if isinstance(path, int):  # an already open descriptor: its opening was checked
        return True
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return real in _DEVICES or any(real == r or real.startswith(r + os.sep) for r in roots)


def _deny(what: str):
    _violations.append(what[:200])
    raise SandboxViolation(what)


def _hook(event: str, args: tuple) -> None:
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and mode is None and bool(flags & _WRITE_FLAGS)
        )
        if writing:
            if not _inside(path, (SANDBOX,)):
                _deny(f"write outside the sandbox: {path!r}")
            _files_created[0] += 1
            if _files_created[0] > 64:
                _deny("too many files opened for writing")
        elif mode is None and not _inside(path, (SANDBOX,)):
            # os.open (mode None) can return a directory descriptor, and calls taking dir_fd are
            # audited with the relative path only: so low-level opens stay inside the sandbox.
            _deny(f"os.open outside the sandbox: {path!r}")
        elif not _inside(path, (SANDBOX, *_ALLOWED_READ)):
            _deny(f"read outside the sandbox: {path!r}")
    elif event == "import":
        top = str(args[0]).split(".")[0]
        if top in _BANNED_IMPORTS or args[0] in _BANNED_IMPORTS:
            _deny(f"import {args[0]}")
    elif event in _PATH_EVENTS:
        for p in args[:2]:
            if isinstance(p, (str, bytes, os.PathLike)) and not _inside(p, (SANDBOX,)):
                _deny(f"{event} outside the sandbox: {p!r}")
    elif event.startswith(_BANNED_EVENTS):
        _deny(f"{event}{tuple(args)!r}"[:200])


def _install_hook() -> None:
    sys.addaudithook(_hook)
    LAYERS.append("audit")

# ---------------------------------------------------------------- run
_float = float
_repr = repr
_isinstance = isinstance


def _numeric(value):
    """The answer as a float when it is a number (or a numeric string), else None."""
    if _isinstance(value, str):
        try:
            return _float(value.strip().replace(",", ""))
        except ValueError:
            return None
    if _isinstance(value, (list, tuple, dict, set, type(None))):
        return None
    try:
        return _float(value)
    except Exception:  # noqa: BLE001 - arbitrary user objects
        return None


def _main() -> None:
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    entry = CONFIG.get("entry") or "solution"
    try:
        code_obj = compile(CODE, "<program>", "exec")
        exec(code_obj, namespace)  # noqa: S102 - the whole point, inside the layers above
        fn = namespace.get(entry)
        has_entry = callable(fn)
        answer = fn() if has_entry else None
        _restore_builtins()
        try:
            text = _repr(answer)[:2000]
        except Exception:  # noqa: BLE001 - e.g. int too large to print
            text = "<unprintable>"
        number = _numeric(answer)
        sys.stdout.flush()
        status = "forbidden" if _violations else "ok"
        _report(status, answer=number, answer_repr=text, has_entry=has_entry, layers=LAYERS)
    except SandboxViolation as exc:
        _report("forbidden", error=str(exc)[:500], layers=LAYERS)
    except MemoryError:
        _report("forbidden" if _violations else "memory", error="MemoryError", layers=LAYERS)
    except RecursionError as exc:
        _report("forbidden" if _violations else "error", error=f"RecursionError: {exc}"[:500], layers=LAYERS)
    except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt, anything
        _restore_builtins()
        if _isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            status = "output_limit"
        elif _isinstance(exc, PermissionError):  # the kernel refused (layers 2-3): same verdict
            status = "forbidden"
        else:
            status = "forbidden" if _violations else "error"
        tb = ""
        try:
            tb = "".join(traceback.format_exception_only(type(exc), exc))[-1000:]
        except BaseException:  # noqa: BLE001
            tb = type(exc).__name__
        _report(status, error=tb.strip(), layers=LAYERS)



def _child(request: dict) -> None:
    """A forked child's whole life: isolate, run the program, report, exit (never returns)."""
    try:
        _isolate(request)
        _install_hook()
        _main()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001 - output cap reached: the result is already sent
            pass
    finally:
        os._exit(0)


def _reap(pid: int, timeout: float):
    """The child's wait status, or None when it still runs after ``timeout`` seconds. A pidfd
    wakes the server the moment the child exits (Linux >= 5.3); elsewhere it polls every 2 ms."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            ready = select.select([fd], [], [], timeout)[0]
        finally:
            os.close(fd)
        return os.waitpid(pid, 0)[1] if ready else None
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.002)


def _supervise(request: dict) -> dict:
    """Fork one child for ``request``, enforce its wall-clock timeout, reap it."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        _child(request)
    status = _reap(pid, float(request["timeout"]))
    timed_out = status is None
    if timed_out:
        for kill in (os.killpg, os.kill):  # SIGKILL cannot be blocked or ignored
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        status = os.waitpid(pid, 0)[1]
    return {"returncode": os.waitstatus_to_exitcode(status), "timed_out": timed_out,
            "seconds": round(time.perf_counter() - start, 4)}


def _serve() -> None:
    """One request line in, one reply line out, until the parent closes stdin."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    for line in requests:
        try:
            reply = _supervise(json.loads(line))
        except Exception as exc:  # noqa: BLE001 - a bad request or a failed fork: say so, go on
            reply = {"server_error": f"{type(exc).__name__}: {exc}"}
        os.write(replies, (_dumps(reply) + "\n").encode())


_serve()
