"""Every path the project uses, anchored at the repository root.

papermill runs notebooks from the caller's directory and nbval from the notebook's own, so no
module may build a path from the current working directory: take them from here.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The repository root (the folder holding ``pyproject.toml``).
ROOT: Path = Path(__file__).resolve().parent.parent
CONFIGS: Path = ROOT / "configs"
NOTEBOOKS: Path = ROOT / "notebooks"
RESULTS: Path = ROOT / "results"
FIGURES: Path = ROOT / "figures"
DATA: Path = ROOT / "data"
BENCHMARKS: Path = ROOT / "benchmarks"


def runs_dir() -> Path:
    """Git-ignored scratch folder for runs, checkpoints, adapters and executed notebooks.

    Override with ``LORASOUPS_RUNS`` (e.g. a scratch disk on a cluster).
    """
    return Path(os.environ.get("LORASOUPS_RUNS", ROOT / "runs"))


def cache_dir() -> Path:
    """User cache for converted base models (``~/.cache/lorasoups`` unless ``LORASOUPS_CACHE``)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lorasoups"
    return Path(os.environ.get("LORASOUPS_CACHE", default))


def data_mirror() -> Path | None:
    """Read-only local mirror of the paper's datasets, or None when there is none.

    ``LORASOUPS_DATA_MIRROR`` wins; otherwise ``../shared/datasets`` beside the repo when it exists.
    """
    env = os.environ.get("LORASOUPS_DATA_MIRROR")
    if env:
        return Path(env)
    default = ROOT.parent / "shared" / "datasets"
    return default if default.is_dir() else None


def namespace() -> str | None:
    """The results sub-folder of an experiment variant (``LORASOUPS_NAMESPACE``, e.g.
    ``beyond/rank/r16``), or None for the main reproduction. Set it with :func:`in_namespace`."""
    ns = os.environ.get("LORASOUPS_NAMESPACE", "").strip("/")
    return ns or None


@contextmanager
def in_namespace(ns: str | None) -> Iterator[None]:
    """Within the block (and in notebooks it launches), results go to ``results/<profile>/<ns>/``.

    Why an environment variable: papermill kernels inherit it, so every stage notebook of a
    variant reads and writes that variant's results without a parameter of its own."""
    if ns is not None and (ns.startswith("/") or ".." in Path(ns).parts):
        raise ValueError(f"namespace must be a relative path without '..', got {ns!r}")
    old = os.environ.get("LORASOUPS_NAMESPACE")
    if ns:
        os.environ["LORASOUPS_NAMESPACE"] = ns
    else:
        os.environ.pop("LORASOUPS_NAMESPACE", None)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("LORASOUPS_NAMESPACE", None)
        else:
            os.environ["LORASOUPS_NAMESPACE"] = old


def results_dir(profile: str | None = None) -> Path:
    """Where result JSON goes: ``results/<profile>/`` (``LORASOUPS_RESULTS`` overrides the root),
    or ``results/<profile>/<namespace>/`` inside an experiment variant (:func:`in_namespace`).

    Only ``results/full/`` (the GPU reproduction) is committed; ``results/smoke/`` is git-ignored
    because every CPU smoke run rewrites it. Tests point ``LORASOUPS_RESULTS`` at a scratch folder
    so they never touch committed files.
    """
    root = Path(os.environ.get("LORASOUPS_RESULTS", RESULTS))
    if not profile:
        return root
    ns = namespace()
    return root / profile / ns if ns else root / profile


def figures_dir(profile: str = "full") -> Path:
    """``figures/`` for the full profile (committed); ``figures/<profile>/`` otherwise; inside an
    experiment variant (:func:`in_namespace`) a sub-folder of it, as its results have, so a variant's
    figures never overwrite the main ones."""
    root = Path(os.environ.get("LORASOUPS_FIGURES", FIGURES))
    out = root if profile == "full" else root / profile
    ns = namespace()
    return out / ns if ns else out
