"""Repo-wide pytest setup (unit tests and nbval alike).

Runs before any test or notebook kernel starts, so kernels inherit these variables: results and
figures written during tests go to a scratch folder, never over committed files.
"""
import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parent
os.environ.setdefault("LORASOUPS_RESULTS", str(_ROOT / "runs" / "test-results"))
os.environ.setdefault("LORASOUPS_FIGURES", str(_ROOT / "runs" / "test-figures"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
