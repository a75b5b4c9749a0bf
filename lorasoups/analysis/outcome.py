"""What building one figure or table produced: files written, or the result files it lacked.

Analysis notebooks run before every experiment has results (a smoke run that stopped early, a
setting not run yet); an artifact whose inputs are absent is *skipped* with the list of missing
files rather than crashing the notebook, and the summary cell reports it.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorasoups import paths


@dataclass
class Outcome:
    """One artifact (``figure_4``, ``table_1``, ...) after :func:`lorasoups.analysis.make`."""

    name: str
    """File stem, named after the paper's figure or table."""
    title: str
    """What it shows (with profile, model, examples and seeds once built)."""
    profile: str
    files: list[Path] = field(default_factory=list)
    """Files written under ``figures_dir(profile)``."""
    missing: list[Path] = field(default_factory=list)
    """Result files it needed and did not find (then it was skipped)."""
    notes: list[str] = field(default_factory=list)
    """What the reader should know (methods without results, seeds missing for a method, ...)."""
    numbers: dict[str, Any] = field(default_factory=dict)
    """Headline numbers, unrounded (the summary rounds them)."""
    table: str | None = None
    """The markdown of a table artifact."""

    @property
    def skipped(self) -> bool:
        return not self.files

    def status(self) -> str:
        """One line (and the missing files, relative to the results root) for the notebook."""
        if not self.skipped:
            return f"{self.name}: wrote {', '.join(f.name for f in self.files)}"
        rel = [_relative(p) for p in self.missing]
        head = f"{self.name}: skipped, {len(rel)} result file(s) missing" if rel else f"{self.name}: skipped"
        return "\n".join([head, *(f"  missing {r}" for r in rel)])

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        """The figure (PNG) or table (markdown) in Jupyter; the status line as plain text."""
        bundle: dict[str, Any] = {"text/plain": self.status()}
        png = next((f for f in self.files if f.suffix == ".png"), None)
        if png is not None:
            bundle["image/png"] = base64.b64encode(png.read_bytes()).decode()
        elif self.table is not None:
            bundle["text/markdown"] = self.table
        return bundle


def _relative(path: Path) -> str:
    """A result path relative to the results root (stable across machines for nbval)."""
    try:
        return str(Path(path).relative_to(paths.results_dir()))
    except ValueError:
        return str(path)


def _round(value: Any, digits: int = 3) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_round(v, digits) for v in value]
    return value


def summary(outcomes: list[Outcome], digits: int = 3) -> str:
    """The summary cell's text: per artifact, written or skipped (with what is missing), its notes,
    and its headline numbers rounded to ``digits``."""
    lines = []
    for o in outcomes:
        lines.append(o.status())
        lines.extend(f"  note: {n}" for n in o.notes)
        for key, value in o.numbers.items():
            lines.append(f"  {key}: {_round(value, digits)}")
    written = sum(not o.skipped for o in outcomes)
    lines.append(f"{written} of {len(outcomes)} artifacts written, {len(outcomes) - written} skipped")
    return "\n".join(lines)


__all__ = ["Outcome", "summary"]
