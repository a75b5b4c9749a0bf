"""The hyper-parameter grid of the static merges (the paper's TIES/DARE sweep, §4):
λ (density, the fraction of each LoRA factor kept) in [0, 1] and one weight α_k per skill in
[1, 2], both in steps of 0.2: 6 x 6 x 6 = 216 points for two skills. Above two skills the
weights are shared by default (one α axis: 36 points), since a per-skill grid grows as 6^k.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from lorasoups.merging.registry import METHODS


def sweep_methods() -> list[str]:
    """What the in-place engine can merge: every registered method with a factor-space merge
    (``Method.inplace``); ``linear`` sweeps only the skill weights, a method with a density λ too."""
    return [name for name, m in METHODS.items() if m.sweepable]


def has_density(method: str) -> bool:
    """Whether ``method``'s merge takes a density (λ): a grid axis, and 0 means the zero adapter."""
    return method in METHODS and METHODS[method].density


@dataclass
class GridConfig:
    """Axes of the sweep, each ``[start, stop, step]`` (stop included)."""

    density: list[float] | None = None
    """λ axis: fraction of entries kept; default ``[0.0, 1.0, 0.2]`` (the paper)."""
    alpha: list[float] | None = None
    """Weight axis of every skill; default ``[1.0, 2.0, 0.2]`` (the paper)."""
    shared_alpha: bool | None = None
    """One weight for every skill instead of one axis per skill. None: per skill up to k = 2 (the
    paper's grid), shared above (per skill, the paper's grid would grow to 6 x 6^k points: 1,296
    at k = 3, 7,776 at k = 4)."""


def axis(spec: list[float], name: str) -> list[float]:
    """``[start, stop, step]`` -> the values, rounded so 0.6000000000000001 does not leak into keys."""
    if len(spec) != 3:
        raise ValueError(f"sweep grid: {name} must be [start, stop, step], got {spec}")
    start, stop, step = (float(v) for v in spec)
    if step <= 0 or stop < start:
        raise ValueError(f"sweep grid: {name} needs step > 0 and stop >= start, got {spec}")
    n = int(round((stop - start) / step)) + 1
    values = [round(start + i * step, 10) for i in range(n)]
    return [v for v in values if v <= stop + 1e-9]


def points(method: str, k: int, grid: GridConfig | None = None) -> list[dict[str, Any]]:
    """Every grid point of ``method`` for ``k`` skills, in a fixed order (density outermost, then
    α_1, α_2, ...): ``{"density": λ or None, "alphas": [α_1, ..., α_k]}``."""
    if method not in sweep_methods():
        raise ValueError(f"sweep: method '{method}' cannot be swept in place; choose one of {sweep_methods()}")
    g = grid or GridConfig()
    dens = axis(g.density or [0.0, 1.0, 0.2], "density")
    alphas = axis(g.alpha or [1.0, 2.0, 0.2], "alpha")
    if any(d < 0 or d > 1 for d in dens):
        raise ValueError(f"sweep grid: density values must lie in [0, 1], got {dens}")
    if any(a < 0 for a in alphas):
        raise ValueError(f"sweep grid: alphas must be >= 0 (each weights both LoRA factors), got {alphas}")
    shared = g.shared_alpha if g.shared_alpha is not None else k > 2
    combos = [(a,) * k for a in alphas] if shared else list(itertools.product(alphas, repeat=k))
    out = []
    for d in (dens if has_density(method) else [None]):
        for combo in combos:
            out.append({"density": d, "alphas": list(combo)})
    return out


def point_key(point: dict[str, Any]) -> str:
    """Stable name of a point in the results file, e.g. ``d0.4-a1.2,2.0``."""
    d = "none" if point["density"] is None else f"{point['density']:g}"
    return f"d{d}-a" + ",".join(f"{a:g}" for a in point["alphas"])


def equivalence_key(method: str, point: dict[str, Any]) -> str:
    """Points with the same key merge to the same adapter: at density 0 every entry is pruned,
    whatever the weights, so the 36 λ=0 points of the paper's grid are one evaluation."""
    if has_density(method) and point["density"] == 0:
        return "zero-adapter"
    return point_key(point)


__all__ = ["GridConfig", "axis", "equivalence_key", "has_density", "point_key", "points", "sweep_methods"]
