"""Write figures (PNG + PDF) and tables (markdown) into ``figures/`` under the paper's names.

The PDF is written without a creation date (``metadata={"CreationDate": None}``) so rerunning an
unchanged analysis leaves the committed files byte-identical and git quiet.
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from lorasoups import paths


def save_figure(fig: Figure, name: str, profile: str) -> list[Path]:
    """``<figures_dir(profile)>/<name>.png`` and ``.pdf``; returns both paths."""
    out = paths.figures_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    png, pdf = out / f"{name}.png", out / f"{name}.pdf"
    fig.savefig(png, dpi=150, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None})
    return [png, pdf]


def save_table(markdown: str, name: str, profile: str) -> Path:
    """``<figures_dir(profile)>/<name>.md``; returns its path."""
    out = paths.figures_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.md"
    path.write_text(markdown.rstrip("\n") + "\n")
    return path


__all__ = ["save_figure", "save_table"]
