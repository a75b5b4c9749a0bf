"""Mean and 95% confidence interval over seeds (Student t), and the caption every figure carries.

Why a t table instead of ``scipy.stats.t.ppf``: scipy is not a dependency of the project and the
headline comparisons use 3 seeds, so 30 rows of the standard table cover every case we run.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

#: two-sided 95% Student t quantiles t_{0.975, df} for df = 1..30 (standard table).
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """t_{0.975, df}; beyond df = 30 the df = 30 value (slightly wider than the true interval)."""
    if df < 1:
        raise ValueError(f"t quantile needs df >= 1, got {df}")
    return T975[min(df, len(T975)) - 1]


def mean_ci(values: Sequence[float]) -> dict[str, float | int | None]:
    """``{"mean", "low", "high", "n"}``: the mean and its 95% t interval; low/high are None for n = 1."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        raise ValueError("mean_ci: no values")
    mean = sum(vals) / n
    if n == 1:
        return {"mean": mean, "low": None, "high": None, "n": 1}
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def bootstrap_mean_ci(values: Sequence[float], rounds: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean of ``values`` and its percentile bootstrap 95 % interval (values resampled): the gate's
    paired gaps and the verdicts' per-item differences."""
    import numpy as np

    d = np.asarray(values, dtype=float)
    if d.size == 0:
        raise ValueError("bootstrap_mean_ci: no values")
    idx = np.random.default_rng(seed).integers(0, d.size, size=(rounds, d.size))
    means = d[idx].mean(axis=1)
    return {"diff": float(d.mean()), "lo": float(np.percentile(means, 2.5)), "hi": float(np.percentile(means, 97.5))}


def seeds_text(seeds: Iterable[int]) -> str:
    """``seed 0 (n=1, no CI over seeds)`` or ``3 seeds (0, 1, 2): mean and 95% t-CI``."""
    s = sorted(set(seeds))
    if len(s) == 1:
        return f"seed {s[0]} (n=1, no CI over seeds)"
    return f"{len(s)} seeds ({', '.join(map(str, s))}): mean and 95% t-CI"


def caption(profile: str, models: Iterable[str], n_examples: Iterable[int], seeds: Iterable[int],
            unit: str = "examples", data: Iterable[str | None] = ()) -> str:
    """What every figure states: profile, model, number of examples (or battles; left out when
    none is given, e.g. for training results), seeds, and where the target data came from when
    the results say (``data``: e.g. ``gsm_hard: generated stand-in 1.0+math-1``)."""
    ms = sorted(set(models))
    ns = sorted(set(int(n) for n in n_examples))
    parts = [f"profile {profile}", f"model {', '.join(ms) or '?'}"]
    if ns:
        parts.append((f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}-{ns[-1]}") + f" {unit}")
    sources = sorted({d for d in data if d})
    if sources:
        parts.append("target " + "; ".join(sources))
    return " · ".join([*parts, seeds_text(seeds)])


def fmt(summary: dict, digits: int = 3) -> str:
    """``0.412 [0.301, 0.523]`` or ``0.412`` for one seed."""
    if summary["low"] is None:
        return f"{summary['mean']:.{digits}f}"
    return f"{summary['mean']:.{digits}f} [{summary['low']:.{digits}f}, {summary['high']:.{digits}f}]"


__all__ = ["T975", "bootstrap_mean_ci", "caption", "fmt", "mean_ci", "seeds_text", "t975"]
