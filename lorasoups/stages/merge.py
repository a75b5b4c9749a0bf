"""Stage 05: the static merges (static CAT, linear, TIES, DARE) of each setting's skill LoRAs,
exported as standard PEFT adapters so evaluation loads every model the same way.

TIES and DARE get their hyper-parameters (λ, α₁, α₂) from a grid sweep on the setting's validation
prompts first, as the paper did (§4): :func:`sweep_setting` runs :mod:`lorasoups.sweep` and the
best point becomes the merge's parameters; a method not swept keeps ``experiment.merge_*``."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from lorasoups import paths
from lorasoups.config import ConfigError
from lorasoups.data import DataConfig, get_entry, identity
from lorasoups.merging import METHODS, MergeDefaults, build, export_adapter
from lorasoups.models import load_base
from lorasoups.results import file_sha256, fingerprint, package_source_sha
from lorasoups.stages.common import (
    MERGE_CODE,
    Exported,
    measured,
    skill_adapters,
    trained,
    tuning_examples,
    tuning_sets,
    write_train_result,
)
from lorasoups.stages.config import ExperimentConfig
from lorasoups.sweep import SweepConfig
from lorasoups.task_kinds import task_of_kind


def merge_params(method: str, exp: ExperimentConfig, k: int, seed: int, setting: str = "") -> dict[str, Any]:
    """Hyper-parameters of a static merge of ``k`` skills (the sweep stage, when run, overrides them):
    the method's own defaults (``Method.default_params``) from the experiment's values."""
    try:
        return METHODS[method].default_params(MergeDefaults(k=k, alphas=exp.merge_alphas, density=exp.merge_density,
                                                            static_alpha=exp.static_alpha, seed=seed))
    except ValueError as exc:
        raise ConfigError(f"{exc} (setting '{setting}', method '{method}'); give {k} weights or null (1.0 each)") from exc


def validation_set(setting: str, data: DataConfig, sweep: SweepConfig, profile: str) -> dict[str, Any]:
    """The prompts a sweep scores, pooled (one task kind per setting): every target's held-out
    examples (:func:`lorasoups.stages.common.tuning_examples`), or, for a setting that tunes on its skills (prompt
    robustness), every skill's validation split, so the scored formats stay unseen.
    Returns ``{"task", "prompts", "golds", "datasets": {name: identity}}``."""
    size = sweep.validation_size or data.size(profile, target=True)
    prompts: list[str] = []
    golds: list[Any] = []
    idents: dict[str, Any] = {}
    tasks = set()
    for target in tuning_sets(setting):
        ds = tuning_examples(setting, target, data, size, sweep.validation_source)
        spec = task_of_kind(get_entry(target).kind)
        task, gold_col = spec.name, spec.gold
        tasks.add(task)
        prompts += list(ds["prompt"])
        golds += list(ds[gold_col])
        idents[target] = identity(ds)
    if len(tasks) != 1:
        raise ValueError(f"setting '{setting}': its targets mix task kinds {sorted(tasks)}; a sweep needs one metric")
    return {"task": tasks.pop(), "prompts": prompts, "golds": golds, "datasets": idents}


def sweep_setting(model: str, setting: str, seed: int, exp: ExperimentConfig, data: DataConfig,
                  sweep: SweepConfig, profile: str, device: str = "auto") -> dict[str, dict[str, Any]]:
    """Sweep each method of ``sweep.methods`` that ``exp.merges`` builds; returns method ->
    ``{"params": build kwargs of the best point, "best": ..., "file": ..., "validation": ...}``."""
    from lorasoups.sweep import InPlaceMerger, best_params, best_point, run_sweep, sweep_path

    methods = [m for m in sweep.methods if m in exp.merges]
    if not methods or (sweep.settings is not None and setting not in sweep.settings):
        return {}
    adapters = skill_adapters(profile, setting, seed, model)
    val = validation_set(setting, data, sweep, profile)
    cfg = dataclasses.replace(sweep, seed=seed)  # DARE's masks: the run's seed, as the final build
    base, tok = load_base(model, device=device)
    merger = InPlaceMerger(base, adapters)
    out = {}
    for method in methods:
        path = sweep_path(profile, setting, method, seed)
        rows = run_sweep(merger, tok, method, val["prompts"], val["golds"], task=val["task"], out=path,
                         config=cfg, progress=False)
        realisable = [r for r in rows if r["density"] != 0]  # density 0 is the base model, not a merge
        best = best_point(realisable)
        overall = best_point(rows)
        print(f"[{setting}] {method} sweep: {len(rows)} points on {len(val['prompts'])} prompts; "
              f"best {best['point']} {best['metric']}={best['value']:.4f}", flush=True)
        out[method] = {"params": best_params(best, method, seed), "best": best,
                       "best_including_density_0": overall, "file": str(path.relative_to(paths.ROOT))
                       if path.is_relative_to(paths.ROOT) else str(path),
                       "n_points": len(rows), "validation": val["datasets"]}
    del merger, base
    return out


def static_merges(model: str, setting: str, seed: int, exp: ExperimentConfig, profile: str,
                  overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Build each merge of ``exp.merges`` on a fresh base and export it; returns method -> params.

    ``overrides``: method -> ``{"params": ...}`` (what :func:`sweep_setting` returns) or plain
    build kwargs; the sweep's record is kept in the merge's result JSON."""
    adapters = skill_adapters(profile, setting, seed, model)
    done = {}
    for method in exp.merges:
        over = (overrides or {}).get(method)
        swept = over if over and "params" in over else None
        params = (swept["params"] if swept else over) or merge_params(method, exp, len(adapters), seed, setting)
        key = fingerprint({"method": method, "params": params, "adapters": adapters, "base": model,
                           "code": package_source_sha(MERGE_CODE)})
        out = paths.runs_dir() / "merges" / f"{setting}-{method}-{key}"
        reused = (out / "adapter_model.safetensors").is_file()
        summary: dict[str, Any] = {}
        if not reused:
            with measured() as summary:
                base, _ = load_base(model, device="cpu", dtype="float32")  # merging is exact fp32 arithmetic
                export_adapter(build(method, base, adapters, **params), out)
        print(f"[{setting}] {method}: {'reused' if reused else 'exported'} {out.name}", flush=True)
        write_train_result(profile, setting, method, seed, Exported(out, out, reused, summary),
                           {"method": method, "params": params, "adapters": adapters,
                            "params_from": "sweep" if swept else ("override" if over else "experiment"),
                            **({"sweep": swept} if swept else {})}, model)
        done[method] = params
    return done


def compress_cat(model: str, setting: str, seed: int, exp: ExperimentConfig, profile: str) -> dict[str, Any]:
    """Learned CAT's fold (rank sum_k r_k) compressed by truncated SVD to ``exp.cat_svd_rank``
    (label ``cat_svd``; what does a rank-r export of the soup cost?). Returns the
    overall relative Frobenius error and the share of sum(sigma^2) kept; {} unless asked for."""
    from lorasoups.merging import compress_adapter
    from lorasoups.merging.compress import REPORT

    rank = exp.cat_svd_rank
    if rank is None:
        return {}
    cat = trained(profile, setting, seed).get("cat")
    if cat is None:
        raise ConfigError(f"setting {setting}, seed {seed}: experiment.cat_svd_rank compresses learned CAT, "
                          f"but no train/{setting}/cat--s{seed}.json exists; run stage learn_cat first")
    source = cat["location"]
    key = fingerprint({"method": "cat_svd", "rank": rank, "source": source,
                       "source_sha256": file_sha256(Path(source) / "adapter_model.safetensors"), "base": model,
                       "code": package_source_sha(MERGE_CODE)})
    out = paths.runs_dir() / "merges" / f"{setting}-cat_svd-{key}"
    reused = (out / REPORT).is_file()
    summary: dict[str, Any] = {}
    if reused:
        report = json.loads((out / REPORT).read_text())
    else:
        with measured() as summary:
            base, _ = load_base(model, device="cpu", dtype="float32")
            report = compress_adapter(base, source, out, rank)
    numbers = {k: report[k] for k in ("rank_before", "rank_after", "rel_error", "energy_kept")}
    print(f"[{setting}] cat_svd: rank {numbers['rank_before']} -> {rank}, energy kept "
          f"{numbers['energy_kept']:.4f} ({'reused' if reused else 'exported'} {out.name})", flush=True)
    write_train_result(profile, setting, "cat_svd", seed, Exported(out, out, reused, summary),
                       {"method": "cat_svd", "rank": rank, "source": source}, model, metrics=numbers)
    return numbers
