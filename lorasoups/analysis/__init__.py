"""The paper's figures and tables, rebuilt from ``results/<profile>/`` only.

One call per artifact for the analysis notebooks::

    from lorasoups import analysis
    fig4 = analysis.make("figure_4", profile)      # figures_dir(profile)/figure_4.png + .pdf
    print(analysis.summary([fig4]))

``make`` skips an artifact whose result files are absent (printing which) instead of failing, so
a notebook runs through on a partial smoke run; a result file that exists but is malformed raises
:class:`ResultsError` naming it. Modules: ``load`` (read and validate results), ``stats`` (mean,
95% t-CI, captions), ``methods`` (per-method bars), one module per experiment family
(``hard_math``, ``qabot``, ``reading``, ``prompt_robustness``, ``ablations``), ``save``
(PNG + date-free PDF, markdown tables), ``outcome`` (what a build produced).
"""
from __future__ import annotations

from collections.abc import Callable

from lorasoups.analysis.load import ResultsError
from lorasoups.analysis.outcome import Outcome, summary

#: artifact name -> (module, builder name); imported on use so each notebook pays for what it draws.
ARTIFACTS: dict[str, tuple[str, str]] = {
    "figure_4": ("hard_math", "make_figure_4"),
    "table_1": ("hard_math", "make_table_1"),
    "figure_5": ("qabot", "make_figure_5"),
    "figure_6a": ("reading", "make_figure_6a"),
    "table_2": ("reading", "make_table_2"),
    "figure_10a": ("prompt_robustness", "make_figure_10a"),  # trained on formats 1 + 4
    "figure_10b": ("prompt_robustness", "make_figure_10b"),  # 1 + 2
    "figure_10c": ("prompt_robustness", "make_figure_10c"),  # 2 + 4
    "figure_9": ("ablations", "make_figure_9"),  # learned vs static CAT (the paper's Table 3 is hub-only)
    "alphas_by_layer": ("ablations", "make_alphas_by_layer"),
    "alpha_drift": ("ablations", "make_alpha_drift"),  # per recipe: did alpha move at all
    "verdicts": ("verdicts", "make_verdicts"),  # a verdict per claim of the paper (README "Results")
    "wall_time": ("budget", "make_wall_time"),  # seconds each stage recorded, per setting and seed
    # beyond the paper (configs/beyond/): one figure + summary.json per experiment
    "beyond_granularity": ("variants", "make_beyond_granularity"),
    "beyond_rank": ("variants", "make_beyond_rank"),
    "beyond_cat_data": ("variants", "make_beyond_cat_data"),
    "beyond_skills": ("variants", "make_beyond_skills"),
    "beyond_cat_extensions": ("variants", "make_beyond_cat_extensions"),
}


def builder(name: str) -> Callable[..., Outcome]:
    """The function that builds artifact ``name``; a ValueError with a "did you mean" otherwise."""
    import importlib

    from lorasoups.config import did_you_mean

    if name not in ARTIFACTS:
        raise ValueError(f"unknown artifact '{name}'{did_you_mean(name, ARTIFACTS)}; known: {', '.join(ARTIFACTS)}")
    module, fn = ARTIFACTS[name]
    return getattr(importlib.import_module(f"lorasoups.analysis.{module}"), fn)


def make(name: str, profile: str = "smoke", seeds: list[int] | None = None, verbose: bool = True) -> Outcome:
    """Build artifact ``name`` from ``results/<profile>/`` (``seeds``: None = every seed found),
    write it into ``figures_dir(profile)``, print what was written or which results are missing."""
    out = builder(name)(profile, list(seeds) if seeds else None)
    if verbose:
        print(out.status())
        for note in out.notes:
            print(f"  note: {note}")
    return out


def inventory(profile: str = "smoke") -> str:
    """What ``results/<profile>/`` holds: result files per folder (the analysis notebooks' inputs)."""
    from lorasoups.analysis.load import root

    base = root(profile)
    if not base.is_dir():
        return f"results/{profile}/: not found (run the pipeline first); every artifact will be skipped"
    lines = [f"results/{profile}/:"]
    for folder in sorted(p for p in base.rglob("*") if p.is_dir()):
        n = sum(1 for f in folder.iterdir() if f.is_file() and f.suffix in (".json", ".jsonl"))
        if n:
            lines.append(f"  {folder.relative_to(base)}: {n} file(s)")
    return "\n".join(lines)


__all__ = ["ARTIFACTS", "Outcome", "ResultsError", "builder", "inventory", "make", "summary"]
