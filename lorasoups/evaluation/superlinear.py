"""Super-linearity analysis (the paper's Table 1): does the merge solve more than its parts?

For base, skill-1 only, skill-2 only and the merged model, each scored per example (True when the
problem is solved): the fraction solved, the improvement over base, and the set analysis: problems
the merge solves that neither skill model does, and the union and intersection of the single-skill
solved sets. The merge is super-linear when its improvement exceeds the sum of the two skill
models' improvements.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _solved(name: str, flags: Sequence[bool] | Mapping[Any, bool], ids: list[Any] | None) -> tuple[set, list]:
    if isinstance(flags, Mapping):
        keys = list(flags)
        if ids is not None and set(keys) != set(ids):
            missing, extra = set(ids) - set(keys), set(keys) - set(ids)
            raise ValueError(f"superlinearity: {name} covers other examples than base "
                             f"(missing {sorted(missing, key=str)[:5]}, extra {sorted(extra, key=str)[:5]})")
        return {k for k, v in flags.items() if bool(v)}, keys
    keys = list(range(len(flags)))
    if ids is not None and len(keys) != len(ids):
        raise ValueError(f"superlinearity: {name} has {len(keys)} results, base has {len(ids)}")
    return {i for i, v in enumerate(flags) if bool(v)}, keys


def superlinearity(
    base: Sequence[bool] | Mapping[Any, bool],
    skill1: Sequence[bool] | Mapping[Any, bool],
    skill2: Sequence[bool] | Mapping[Any, bool],
    merged: Sequence[bool] | Mapping[Any, bool],
    names: tuple[str, str, str, str] = ("base", "skill1", "skill2", "merged"),
) -> dict[str, Any]:
    """Table 1 for one merge. Inputs are per-example solved flags, as lists in the same order or
    dicts keyed by example id (then the keys must match)."""
    b, ids = _solved(names[0], base, None)
    s1, _ = _solved(names[1], skill1, ids)
    s2, _ = _solved(names[2], skill2, ids)
    m, _ = _solved(names[3], merged, ids)
    n = len(ids)
    if n == 0:
        raise ValueError("superlinearity: no examples")
    frac = {names[0]: len(b) / n, names[1]: len(s1) / n, names[2]: len(s2) / n, names[3]: len(m) / n}
    improvement = {k: v - frac[names[0]] for k, v in frac.items() if k != names[0]}
    union, inter = s1 | s2, s1 & s2
    merge_only = m - union
    return {
        "n": n,
        "fraction_solved": frac,
        "improvement_over_base": improvement,
        "sum_of_skill_improvements": improvement[names[1]] + improvement[names[2]],
        # compared in solved counts, exactly (fractions would round: 0.4-0.1 > 0.3-0.1 + 0.2-0.1)
        "superlinear": len(m) - len(b) > (len(s1) - len(b)) + (len(s2) - len(b)),
        "sets": {
            "merge_only": len(merge_only),
            "skill_union": len(union),
            "skill_intersection": len(inter),
            "merge_and_union": len(m & union),
            "union_not_merge": len(union - m),
        },
        "merge_only_ids": sorted(merge_only, key=str),
    }


def table_markdown(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown table of several :func:`superlinearity` results keyed by merge name."""
    head = "| merge | base | skill1 | skill2 | merged | gain merged | gain s1+s2 | merge-only | union | intersection |"
    lines = [head, "|" + "---|" * 10]
    for name, r in rows.items():
        f = list(r["fraction_solved"].values())
        imp = list(r["improvement_over_base"].values())
        s = r["sets"]
        lines.append(
            f"| {name} | {f[0]:.3f} | {f[1]:.3f} | {f[2]:.3f} | {f[3]:.3f} | {imp[2]:+.3f} | "
            f"{r['sum_of_skill_improvements']:+.3f} | {s['merge_only']} | {s['skill_union']} | {s['skill_intersection']} |"
        )
    return "\n".join(lines)


__all__ = ["superlinearity", "table_markdown"]
