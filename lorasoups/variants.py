"""Beyond the paper: its open questions (§6) as experiments over variants of the same pipeline.

An experiment is a file ``configs/beyond/<name>.yaml`` naming the stages to run, the settings and
models to compare, and its variants (each a config overlay, e.g. ``sft: {r: 16}``). Every variant
is an ordinary :func:`lorasoups.pipeline.run` in its own results namespace
(``results/<profile>/beyond/<name>/<variant>/``), so the stage notebooks, result JSON and skip
rules are the reproduction's own; trained runs are shared by config hash, so a variant retrains
only what its overlay changes (the granularity variants reuse one pair of skill LoRAs).

    python -m lorasoups.pipeline beyond rank --profile full
    lorasoups.variants.run_experiment("granularity", "smoke", variants=["layer-softmax"])

The analysis (``lorasoups.analysis.variants``, ``notebooks/analysis/beyond.ipynb``) reads the
namespaces back and draws one figure per experiment.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lorasoups import paths
from lorasoups.config import ConfigError, deep_merge, did_you_mean, from_dict, read_yaml

BEYOND = paths.CONFIGS / "beyond"


@dataclass
class ProfileOverride:
    """What changes for one profile (the CPU smoke run uses fewer variants and settings)."""

    variants: list[str] | None = None
    """Variants to run under this profile (None: all)."""
    settings: list[str] | None = None
    """Settings under this profile (None: the experiment's)."""
    overlay: dict[str, Any] = field(default_factory=dict)
    """Config overlay for every variant under this profile."""


@dataclass
class BeyondSpec:
    """``configs/beyond/<name>.yaml``: one open question as an experiment."""

    title: str
    """What the figure is titled."""
    question: str
    """The paper's open question this answers, in a sentence."""
    axis: str
    """What varies across variants (the x axis label)."""
    stages: list[str]
    """Pipeline stages each variant runs (``python -m lorasoups.pipeline stages``)."""
    settings: list[str]
    """Settings each variant runs."""
    labels: list[str]
    """Models compared (``results/README.md`` labels); evaluation scores only these."""
    variants: dict[str, dict[str, Any]]
    """Variant name -> config overlay, in the order the figure draws them."""
    overlay: dict[str, Any] = field(default_factory=dict)
    """Overlay shared by every variant (before the variant's own)."""
    panels: dict[str, dict[str, str]] = field(default_factory=dict)
    """When each variant runs *other* settings (k = 2, 3, 4 skills): panel -> variant -> the setting
    it runs. ``settings`` then names panels, and a variant runs the settings of its panels."""
    figure_labels: list[str] | None = None
    """Models the figure draws (None: ``labels``); the summary keeps every label."""
    smoke: ProfileOverride = field(default_factory=ProfileOverride)
    """Changes for the smoke profile."""
    full: ProfileOverride = field(default_factory=ProfileOverride)
    """Changes for the full profile."""


def names() -> list[str]:
    """The experiments in ``configs/beyond/``."""
    return sorted(p.stem for p in BEYOND.glob("*.yaml"))


def load_spec(name: str) -> BeyondSpec:
    """The validated spec of experiment ``name`` (errors name the file and field)."""
    path = BEYOND / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no experiment '{name}' in {BEYOND}{did_you_mean(name, names())}; known: {', '.join(names())}")
    data = read_yaml(path)
    where = str(path.relative_to(paths.ROOT)) if path.is_relative_to(paths.ROOT) else str(path)
    spec = from_dict(BeyondSpec, data, where)
    if not spec.variants:
        raise ConfigError(f"{path}: variants is empty")
    for prof in ("smoke", "full"):
        for v in getattr(spec, prof).variants or []:
            if v not in spec.variants:
                raise ConfigError(f"{path}: {prof}.variants names '{v}', which is not a variant"
                                  f"{did_you_mean(v, spec.variants)}")
    from lorasoups.data import get_setting
    from lorasoups.pipeline import get_stage

    for s in spec.stages:
        get_stage(s)
    columns = {*spec.settings, *(spec.smoke.settings or []), *(spec.full.settings or [])}
    for col in sorted(columns):
        if spec.panels and col not in spec.panels:
            raise ConfigError(f"{path}: settings names '{col}', which is not a panel{did_you_mean(col, spec.panels)}")
        for v, setting in (spec.panels.get(col) or {}).items():
            if v not in spec.variants:
                raise ConfigError(f"{path}: panels.{col} names variant '{v}'{did_you_mean(v, spec.variants)}")
            get_setting(setting)
        if not spec.panels:
            get_setting(col)
    return spec


def variant_settings(spec: BeyondSpec, variant: str, columns: list[str]) -> dict[str, str]:
    """Panel (figure column) -> the setting ``variant`` runs for it; without ``panels`` every column
    is a setting run by every variant."""
    if not spec.panels:
        return {c: c for c in columns}
    return {c: spec.panels[c][variant] for c in columns if variant in spec.panels[c]}


def namespace(name: str, variant: str) -> str:
    """``beyond/<name>/<variant>``: the results sub-folder of one variant."""
    return f"beyond/{name}/{variant}"


def plan(spec: BeyondSpec, profile: str, variants: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Variant -> the full overlay it runs with under ``profile`` (validated against the config
    sections by :func:`lorasoups.pipeline.resolve` before anything runs)."""
    prof: ProfileOverride = getattr(spec, profile)
    chosen = variants or prof.variants or list(spec.variants)
    unknown = [v for v in chosen if v not in spec.variants]
    if unknown:
        raise ConfigError(f"unknown variant '{unknown[0]}'{did_you_mean(unknown[0], spec.variants)}; "
                          f"known: {', '.join(spec.variants)}")
    columns = prof.settings or spec.settings
    out = {}
    for v in chosen:
        settings = list(variant_settings(spec, v, columns).values())
        if not settings:
            raise ConfigError(f"variant '{v}' runs no setting under profile {profile} (panels {columns})")
        common = {"experiment": {"settings": settings}, "evaluation": {"labels": spec.labels}}
        out[v] = deep_merge(deep_merge(deep_merge(common, spec.overlay), prof.overlay), spec.variants[v])
    return out


def run_experiment(name: str, profile: str = "auto", variants: list[str] | None = None,
                   extra: list[str] | None = None, force: bool = False,
                   overrides: dict[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Run every (chosen) variant of experiment ``name``; returns variant -> the pipeline's report.

    ``extra``: YAML files layered under each variant (e.g. a model change); ``overrides``: one more
    overlay on top of everything (the notebook uses it to put the tiny model under nbval).
    """
    from lorasoups import pipeline

    spec = load_spec(name)
    prof = pipeline.resolve(profile, extra)["run"].profile
    overlays = plan(spec, prof, variants)
    folder = paths.runs_dir() / "beyond" / name
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for v, overlay in overlays.items():  # write and validate every variant before running any
        f = folder / f"{v}.yaml"
        f.write_text(yaml.safe_dump(deep_merge(overlay, overrides or {}), sort_keys=False))
        pipeline.resolve(prof, [*(extra or []), str(f)])
        files[v] = f
    report = {}
    for v, f in files.items():
        print(f"[beyond {name}] variant {v}", flush=True)
        report[v] = pipeline.run(prof, spec.stages, force, [*(extra or []), str(f)], namespace=namespace(name, v))
    manifest = paths.results_dir(prof) / "beyond" / name / "variants.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(manifest.read_text()).get("variants", {}) if manifest.is_file() else {}
    known.update({v: overlays[v] for v in overlays})
    manifest.write_text(json.dumps({"experiment": name, "profile": prof, "axis": spec.axis,
                                    "variants": {v: known[v] for v in spec.variants if v in known}}, indent=2) + "\n")
    return report


def variant_dirs(name: str, profile: str, spec: BeyondSpec | None = None) -> dict[str, Path]:
    """Variants of ``name`` that have results under ``profile``, in the spec's order."""
    spec = spec or load_spec(name)
    root = paths.results_dir(profile) / "beyond" / name
    return {v: root / v for v in spec.variants if (root / v).is_dir()}


__all__ = ["BeyondSpec", "ProfileOverride", "load_spec", "names", "namespace", "plan", "run_experiment",
           "variant_dirs", "variant_settings"]

