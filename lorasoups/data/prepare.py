"""Stage 01: load every dataset of each setting for a profile, check leakage, build the CAT mixture.

Later stages call :func:`lorasoups.data.load` themselves (it is deterministic under the seed); this
stage fails early on a missing or malformed file, refuses leaked target examples, and records which
source, version and fingerprint each dataset had, so results can be traced to their data.
"""
from __future__ import annotations

from typing import Any

from lorasoups.data.config import DataConfig
from lorasoups.data.leakage import check_leakage
from lorasoups.data.loading import identity, load
from lorasoups.data.mixture import cat_mixture
from lorasoups.data.registry import SETTINGS, get_setting


def setting_datasets(setting: str, cfg: DataConfig, profile: str) -> dict[str, Any]:
    """Skill train/validation sets, target test sets and the CAT mixture of one setting."""
    s = get_setting(setting)
    common = {"source": cfg.source, "seed": cfg.seed, "mirror": cfg.mirror}
    skills = {n: load(n, "train", size=cfg.size(profile, name=n), **common) for n in s.skills}
    validation = {n: load(n, "validation", size=cfg.size(profile, name=n), **common) for n in s.skills}
    targets = {t: load(t, "test", size=cfg.size(profile, target=True, name=t), **common) for t in s.targets}
    for ds in targets.values():
        check_leakage(ds, skills)
    mixture = cat_mixture(skills, fraction=cfg.cat_fraction, seed=cfg.seed)
    return {"skills": skills, "validation": validation, "targets": targets, "cat_mixture": mixture}


def prepare(cfg: DataConfig, profile: str, settings: list[str] | None = None) -> dict[str, Any]:
    """Identities and sizes of every dataset of ``settings`` (default: all four)."""
    out: dict[str, Any] = {}
    for name in settings or list(SETTINGS):
        sets = setting_datasets(name, cfg, profile)
        out[name] = {
            group: {n: identity(ds) for n, ds in members.items()} if isinstance(members, dict)
            else identity(members)
            for group, members in sets.items()
        }
    return out


def summary_rows(prepared: dict[str, Any]) -> list[tuple[str, str, str, str, int]]:
    """(setting, group, dataset, source, rows) for printing."""
    rows = []
    for setting, groups in prepared.items():
        for group, members in groups.items():
            items = members.items() if group != "cat_mixture" else [("cat_mixture", members)]
            for name, ident in items:
                rows.append((setting, group, name, ident.get("source", "mixture"), ident["num_rows"]))
    return rows
