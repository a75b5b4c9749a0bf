"""What every stage shares: the setting's data, and the train-result records later stages read."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from lorasoups import paths, results
from lorasoups.config import ConfigError
from lorasoups.data import DataConfig, DataError, identity, load
from lorasoups.data.prepare import setting_datasets

#: The code a merge export (static merges, random alpha, the random-LoRA control, SVD compression)
#: is built by: part of its cache key, so a fix there rebuilds the export instead of reusing it.
MERGE_CODE = ("merging",)


@lru_cache(maxsize=8)
def _cached(setting: str, cfg_json: str, profile: str) -> dict[str, Any]:
    return setting_datasets(setting, DataConfig(**json.loads(cfg_json)), profile)


def data_for(setting: str, cfg: DataConfig, profile: str) -> dict[str, Any]:
    """Skill train/validation sets, target test sets and the CAT mixture (cached per process)."""
    return _cached(setting, json.dumps(cfg.__dict__, sort_keys=True), profile)


@dataclass
class Exported:
    """Enough of a training RunResult for :func:`write_train_result`: a model written by a merge
    (static merges, compressed CAT, random-alpha CAT) rather than by a training run."""

    run_dir: Path
    adapter_dir: Path
    reused: bool
    summary: dict[str, Any]


@contextmanager
def measured() -> Iterator[dict[str, Any]]:
    """The time and peak memory of one export (a merge, a compression): the ``summary`` of an
    :class:`Exported`, which :func:`write_train_result` records like a training run's."""
    start = time.perf_counter()
    out: dict[str, Any] = {}
    with results.peak_scope() as peak:
        yield out
        out.update(seconds=round(time.perf_counter() - start, 1), peak_memory=peak())


def train_result_path(profile: str, setting: str, label: str, seed: int) -> Path:
    """``results/<profile>/train/<setting>/<label>--s<seed>.json``."""
    return results.result_path(f"train/{setting}", label, f"s{seed}", profile=profile)


def write_train_result(profile: str, setting: str, label: str, seed: int, run: Any, config: Any,
                       model: str, datasets: dict[str, Any] | None = None,
                       metrics: dict[str, Any] | None = None, kind: str = "adapter") -> Path:
    """Record one trained model: its run folder, adapter (or soup) folder and training metrics.

    ``kind``: ``adapter`` (a standard PEFT adapter, loaded with PeftModel) or ``soup`` (a saved
    soup that only :func:`lorasoups.merging.load_soup` can rebuild, e.g. MoE).
    """
    summary = dict(getattr(run, "summary", {}) or {})
    keep = ("train_loss", "eval_loss_before", "eval_loss_best", "global_step", "recipe",
            "best_step", "eval_points", "alpha_drift", "final_drift", "loss_tokens",
            "records_without_completion")
    found = {k: summary[k] for k in keep if summary.get(k) is not None}
    run_dir = Path(run.run_dir)
    location = run_dir / "soup" if kind == "soup" else Path(run.adapter_dir)
    # what the run was keyed by and trained with (``config`` above is the stage's request: e.g. the
    # batch before sft.max_batch_tokens split it, or corpus_epochs before skill_sft applied it)
    run_config = run_dir / "config.json"
    trained_with = json.loads(run_config.read_text()).get("config") if run_config.is_file() else None
    seconds = summary.get("seconds_this_session", summary.get("seconds"))  # LoraHub records "seconds"
    return results.write_result(
        train_result_path(profile, setting, label, seed),
        config=config,
        metrics={**found, **(metrics or {})},
        model={"base": model},
        datasets=datasets or {},
        # the training process's own peak and time (its last session, where it was resumed), also
        # when this call only reused the finished run
        timings=None if seconds is None else {"train_last_session": seconds},
        # a run finished before runs stored their peak: unknown, not the reader's
        peak=summary.get("peak_memory") or ({"cpu_rss_mib": None, "cuda_mib": None} if run.reused else None),
        extra={"label": label, "setting": setting, "seed": seed, "kind": kind,
               "location": str(location), "run_dir": str(run_dir), "reused": bool(run.reused),
               **({"run_config": trained_with} if trained_with else {})},
    )


def trained(profile: str, setting: str, seed: int) -> dict[str, dict[str, Any]]:
    """Every model trained for (setting, seed): ``{label: {"kind", "location", ...}}``."""
    folder = paths.results_dir(profile) / "train" / setting
    out: dict[str, dict[str, Any]] = {}
    for f in sorted(folder.glob(f"*--s{seed}.json")):
        # A file edited by hand is refused, naming it and the field, before any stage reads or rewrites it.
        rec = results.read_result(f, required=("label", "seed", "kind", "location"))
        label = f.name[: -len(f"--s{seed}.json")]
        for key, want in (("label", label), ("seed", seed)):
            if rec[key] != want:
                raise results.ResultsError(f"{f}: field '{key}' is {rec[key]!r} but the file name says {want!r}")
        for key, ok in (("kind", rec["kind"] in ("adapter", "soup")), ("location", isinstance(rec["location"], str))):
            if not ok:
                raise results.ResultsError(f"{f}: field '{key}' is {rec[key]!r} (kind: 'adapter' or 'soup'; "
                                           f"location: a path)")
        if not Path(rec["location"]).exists():
            raise ConfigError(f"{f}: the model it records is gone ({rec['location']}); rerun its stage")
        out[rec["label"]] = rec
    return out


def skill_adapters(profile: str, setting: str, seed: int, model: str | None = None) -> list[str]:
    """The setting's k skill LoRAs, ``skill1`` .. ``skill<k>`` in order (stage 02 must have run).

    ``model``: the run's base model; every skill LoRA must have been trained on it (a ConfigError
    naming the adapter otherwise, before anything is built: a LoRA of another base model with the
    same shapes would merge without complaint)."""
    from lorasoups.data import get_setting
    from lorasoups.training import check_adapter_base

    labels = get_setting(setting).labels
    found = trained(profile, setting, seed)
    missing = [label for label in labels if label not in found]
    if missing:
        raise ConfigError(
            f"setting {setting}, seed {seed}: no trained {', '.join(missing)} in "
            f"{paths.results_dir(profile) / 'train' / setting}; run stage train_skills first"
        )
    adapters = [found[label]["location"] for label in labels]
    if model is not None:
        check_adapter_base(adapters, model)
    return adapters


def identities(**named: Any) -> dict[str, Any]:
    """``identity`` of each named dataset, for a result's ``datasets`` field."""
    return {k: identity(v) for k, v in named.items()}


def tuning_sets(setting: str) -> tuple[str, ...]:
    """The datasets whose held-out examples tune a setting (the TIES/DARE sweep, LoraHub): its
    targets, or its skills for a setting with ``tune_on: skills`` (prompt robustness)."""
    from lorasoups.data import get_setting

    s = get_setting(setting)
    return s.skills if s.tune_on == "skills" else s.targets


def tuning_examples(setting: str, name: str, data: DataConfig, size: int | None, mode: str = "auto"):
    """Held-out examples of ``name`` (one of :func:`tuning_sets`) that are never scored. A skill:
    its validation split. A target, by ``mode``: ``same``, the validation split of the run's source
    (an error where it has none); ``auto``, that, else the generated suite of the same target (the
    mirrored paper targets are test sets only, and tuning on them would leak the test);
    ``generated``, always the generated suite. The dataset's identity records its source."""
    from lorasoups.data import get_entry

    common = {"seed": data.seed, "size": size, "mirror": data.mirror}
    if get_entry(name).role != "target":
        return load(name, "validation", source=data.source, **common)
    source = "generated" if mode == "generated" else data.source
    try:
        return load(name, "validation", source=source, **common)
    except DataError as exc:
        if mode != "auto" or source == "generated" or "no 'validation' split" not in str(exc):
            raise
        print(f"[{setting}] {name}: the {source} source has no validation split; tuning uses the "
              f"generated suite of the same target instead (recorded)", flush=True)
        return load(name, "validation", source="generated", **common)
