"""One JSON per run: resolved config, metrics, timings, memory, versions, identities, git state.

Follows peft's ``method_comparison`` layout (``results/<experiment>/<method>--<variant>.json``):
everything needed to tell later where a number came from sits in the file next to it.
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from lorasoups import paths
from lorasoups.config import to_dict

#: Packages whose versions every result records.
#: Every model label of ``results/README.md``, in the order figures and tables show them (``skill<k>``
#: for any k, and a registry merge method's name, are labels too; see :func:`is_model_label`).
MODEL_LABELS = ("base", "skill1", "skill2", "skill3", "skill4", "datamix", "datamix_seq", "linear", "ties", "dare",
                "lorahub", "moe", "cat_static", "cat", "cat_converge", "cat_paper", "cat_released", "cat_lorahub",
                "cat_svd", "random_alpha", "cat_random", "cat_data_lora", "oracle", "rag")


def is_model_label(label: str, methods: Any = ()) -> bool:
    """True for a label a result file can carry: :data:`MODEL_LABELS`, ``skill<k>``, or ``methods``."""
    return label in MODEL_LABELS or label in methods or (label.startswith("skill") and label[5:].isdigit())


TRACKED_PACKAGES = (
    "lorasoups", "torch", "transformers", "peft", "trl", "datasets", "accelerate", "gguf", "numpy",
)


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (None when absent)."""
    out: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(root: Path = paths.ROOT) -> dict[str, Any]:
    """Commit sha and whether the work tree differs from it (None outside a git checkout)."""
    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": None if status is None else bool(status)}


@functools.cache
def package_source_sha(parts: tuple[str, ...] | None = None) -> str:
    """sha256 of the package's ``*.py`` files (path and bytes), all of them or those under ``parts``
    (files or folders relative to ``lorasoups/``): a cached result keyed by it is recomputed after any
    change to that code. A stage names the code it runs, so an edit elsewhere (a data generator, the
    analysis) does not force hours of recomputation in a study that spans sessions."""
    h = hashlib.sha256()
    pkg = Path(__file__).resolve().parent
    files = sorted(pkg.rglob("*.py"))
    if parts is not None:
        for part in parts:
            if not (pkg / part).exists():
                raise ValueError(f"package_source_sha: lorasoups/{part} does not exist")
        files = [f for f in files if any(f == pkg / p or (pkg / p) in f.parents for p in parts)]
    for f in files:
        h.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def fingerprint(obj: Any) -> str:
    """Stable short sha256 of JSON-able data (configs, dataset records, model identities)."""
    blob = json.dumps(to_dict(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _proc_status_kib(field: str) -> int | None:
    """One ``/proc/self/status`` field in KiB (``VmHWM``: the resident high-water mark; ``VmRSS``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


_PEAK_SINCE = "process start"  # what peak_memory's CPU figure covers: "reset" once a reset took
_SCOPES: list[list[float]] = []  # the running peak (CPU, CUDA MiB) of each open peak_scope


def reset_peak_memory() -> bool:
    """Start a new peak: a kernel that trains or scores several models one after another would
    otherwise report the largest of all of them for each (``ru_maxrss`` never resets). Linux resets
    ``VmHWM`` through ``/proc/self/clear_refs``; CUDA through its peak statistics.

    Returns whether the CPU peak restarted. Some sandboxes (gVisor, as in some CI) accept the write
    and keep the old mark, so the reset is checked (``VmHWM`` back near ``VmRSS``) and
    :func:`peak_memory` then says its figure covers the whole process."""
    global _PEAK_SINCE
    if _SCOPES:  # an inner reset: fold the peak so far into every open scope first
        now = peak_memory()
        for box in _SCOPES:
            box[0], box[1] = max(box[0], now["cpu_rss_mib"]), max(box[1], now["cuda_mib"] or 0.0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux, or not allowed: the process peak is reported instead
        pass
    hwm, rss = _proc_status_kib("VmHWM"), _proc_status_kib("VmRSS")
    took = hwm is not None and rss is not None and hwm <= rss + 16 * 1024
    _PEAK_SINCE = "reset" if took else "process start"
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return took


def peak_memory() -> dict[str, float | str | None]:
    """Peak resident memory and peak CUDA memory in MiB since the last :func:`reset_peak_memory`;
    ``cpu_rss_since`` says whether the CPU figure covers that ("reset") or the whole process
    ("process start": no reset made, or the platform kept the old mark)."""
    rss_kib = _proc_status_kib("VmHWM")
    if rss_kib is None:
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    cuda = None
    try:
        import torch

        if torch.cuda.is_available():
            cuda = torch.cuda.max_memory_allocated() / 2**20
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return {"cpu_rss_mib": round(rss_kib / 1024, 1), "cuda_mib": None if cuda is None else round(cuda, 1),
            "cpu_rss_since": _PEAK_SINCE}


@contextmanager
def peak_scope() -> Iterator[Callable[[], dict[str, float | str | None]]]:
    """The peak memory of a block whose code restarts the peak itself (an evaluation does, per
    result): ``with peak_scope() as peak: ...`` then ``peak()``, the largest of every part."""
    reset_peak_memory()
    box = [0.0, 0.0]
    _SCOPES.append(box)

    def peak() -> dict[str, float | str | None]:
        now = peak_memory()
        cuda = None if now["cuda_mib"] is None else max(now["cuda_mib"], box[1])
        return {**now, "cpu_rss_mib": max(now["cpu_rss_mib"], box[0]), "cuda_mib": cuda}

    try:
        yield peak
    finally:
        _SCOPES.remove(box)


class Timer:
    """Named wall-clock timings: ``with timer("train"): ...`` then ``timer.seconds``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


def result_path(experiment: str, method: str, variant: str = "default", profile: str = "full") -> Path:
    """``results/<profile>/<experiment>/<method>--<variant>.json`` (see :func:`paths.results_dir`)."""
    return paths.results_dir(profile) / experiment / f"{method}--{variant}.json"


def write_result(
    path: str | Path,
    *,
    config: Any,
    metrics: dict[str, Any],
    timings: dict[str, float] | None = None,
    model: dict[str, Any] | None = None,
    datasets: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    peak: dict[str, Any] | None = None,
) -> Path:
    """Write one run's result JSON atomically (temp file + rename) and return its path.

    ``model`` and ``datasets`` are identities (name, source, revision or content hash), so two
    results can be compared only when they used the same inputs. ``peak``: the peak memory of the
    process that computed the result where that was not this one (a reused training run).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _refuse_other_model(path, model)
    record = {
        "config": to_dict(config),
        "config_hash": fingerprint(config),
        "metrics": to_dict(metrics),
        "timings_s": timings or {},
        "peak_memory": peak or peak_memory(),
        "model": model or {},
        "datasets": datasets or {},
        "versions": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git": git_state(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    text = json.dumps(record, indent=2, sort_keys=False, default=str) + "\n"
    if _same_but_provenance(path, text):
        return path  # a rerun that reused the same run: keep the commit and time that first wrote it
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path


#: fields that say when, from which commit and at what cost a result was written, not what it is
_PROVENANCE = ("git", "created", "timings_s", "peak_memory")


def _same_but_provenance(path: Path, text: str) -> bool:
    """True when ``path`` already holds this record apart from :data:`_PROVENANCE`: a stage rerun
    that reuses a finished run (or recomputes the same numbers, e.g. an F1-decided ELO) would
    otherwise restamp its result with today's commit, time and cost; the file keeps those of the
    run that first wrote it. A record marked ``reused`` is also compared without ``reused``."""
    if not path.is_file():
        return False
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    new = json.loads(text)
    if not isinstance(old, dict):
        return False
    ignore = set(_PROVENANCE) | ({"reused"} if new.get("reused") is True else set())
    return {k: v for k, v in old.items() if k not in ignore} == {k: v for k, v in new.items() if k not in ignore}


class ResultsError(ValueError):
    """A result file that exists but cannot be used; the message names the file and field."""


def _refuse_other_model(path: Path, model: dict[str, Any] | None) -> None:
    """A result of one base model is never replaced by another's: result paths do not name the
    model, so a second model (the CPU study's Gemma-3-270M beside SmolLM2-135M) runs in a
    namespace of its own. A rerun of the same model replaces its result as before."""
    new = (model or {}).get("name")
    if not new or not path.is_file():
        return
    try:
        old = (json.loads(path.read_text()).get("model") or {}).get("name")
    except (OSError, ValueError, AttributeError):
        return  # an unreadable old file is replaced, as before
    if old and old != new:
        ns = Path(str(new).rstrip("/")).name
        raise ResultsError(
            f"{path}: holds a result of model '{old}'; refusing to overwrite it with one of '{new}'. "
            f"Run the second model in a namespace of its own, e.g. LORASOUPS_NAMESPACE={ns} "
            f"(results then go to results/<profile>/{ns}/)")


def read_result(path: str | Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a result JSON written by :func:`write_result`; a file that is not one (edited by hand,
    cut off) raises :class:`ResultsError` naming the file, line or missing ``required`` field."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{p}: result file not found") from None
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{p}: line {exc.lineno}: not valid JSON ({exc.msg}); fix it, or delete it and "
                           f"rerun the stage that wrote it") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{p}: cannot be read ({exc})") from exc
    if not isinstance(data, dict):
        raise ResultsError(f"{p}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ResultsError(f"{p}: missing field '{missing[0]}'")
    return data
