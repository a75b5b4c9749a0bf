"""Every path the project uses, anchored at the repository root.

papermill runs notebooks from the caller's directory and nbval from the notebook's own, so no
module may build a path from the current working directory: take them from here.
"""
from __future__ import annotations

import os
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


def results_dir(profile: str | None = None) -> Path:
    """Where result JSON goes: ``results/<profile>/`` (``LORASOUPS_RESULTS`` overrides the root).

    Only ``results/full/`` (the GPU reproduction) is committed; ``results/smoke/`` is git-ignored
    because every CPU smoke run rewrites it. Tests point ``LORASOUPS_RESULTS`` at a scratch folder
    so they never touch committed files.
    """
    root = Path(os.environ.get("LORASOUPS_RESULTS", RESULTS))
    return root / profile if profile else root


def figures_dir(profile: str = "full") -> Path:
    """``figures/`` for the full profile (committed); ``figures/smoke/`` (ignored) otherwise."""
    root = Path(os.environ.get("LORASOUPS_FIGURES", FIGURES))
    return root if profile == "full" else root / profile
