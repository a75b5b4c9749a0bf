"""``load(name, split)``: one dataset split from the hub, the mirror or a generator, formatted,
with its provenance attached so every result can record where its data came from.

Provenance lives in ``ds.info.description`` as JSON (it survives ``select``/``shuffle``/``map``
and adds no column that TRL would have to drop); :func:`identity` reads it back, ready for
``results.write_result(..., datasets={...})``.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from lorasoups import paths
from lorasoups.config import did_you_mean
from lorasoups.data import formatting as F
from lorasoups.data import generated, hub, mirror
from lorasoups.data.errors import DataError
from lorasoups.data.registry import Entry, get_entry
from lorasoups.data.splits import SPLITS, carve

SOURCES = ("auto", "hub", "mirror", "generated")
#: Fraction of a corpus shown as its validation split (a subset of train: corpora are memorised).
CORPUS_VAL_FRACTION = 0.05
#: Key of ``identity(ds)["dropped"]`` listing the items left out for being a demo of their own prompt.
DROPPED_AS_DEMO = "a demonstration of the prompt (ids)"


class SourceUnavailable(DataError):
    """A source that is absent (no hub, no mirror directory): ``auto`` moves on to the next one."""


def mirror_root(override: str | Path | None = None) -> Path | None:
    """The mirror directory: ``override``, else ``LORASOUPS_DATA_MIRROR``, else ``../shared/datasets``."""
    if override is not None:
        return Path(override)
    return paths.data_mirror()


def _records_fingerprint(records: Sequence[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


_FILE_HASHES: dict[tuple[str, float], str] = {}


def _files_version(files: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        key = (str(f), f.stat().st_mtime)
        if key not in _FILE_HASHES:
            _FILE_HASHES[key] = hashlib.sha256(f.read_bytes()).hexdigest()
        h.update(_FILE_HASHES[key].encode())
    return "sha256:" + h.hexdigest()[:12]


def _pick_split(entry: Entry, pools: dict[str, list[dict]], split: str, seed: int, val_fraction: float,
                test_fraction: float, where: str) -> tuple[list[dict], dict[str, Any] | None]:
    """The requested split from a source's pools, carving validation/test off train by seed."""
    if entry.role == "corpus":
        train = pools.get("train", [])
        if split == "train":
            return train, None
        k = max(1, round(len(train) * CORPUS_VAL_FRACTION)) if train else 0
        idx = sorted(random.Random(seed).sample(range(len(train)), k))
        return [train[i] for i in idx], {"seed": seed, "validation_is_subset_of_train": True, "fraction":
                                         CORPUS_VAL_FRACTION, "pool_size": len(train)}
    if entry.role == "skill" and "train" in pools and ("validation" not in pools or "test" not in pools):
        # Carve only the splits the source lacks (GSM8K has a test file; SQuAD a validation set).
        parts, spec = carve(pools["train"], seed, 0.0 if "validation" in pools else val_fraction,
                            0.0 if "test" in pools else test_fraction)
        merged = {**pools, "train": parts["train"]}
        for k in ("validation", "test"):
            merged.setdefault(k, parts[k])
        return merged[split], spec.to_dict()
    if split in pools:
        return pools[split], None
    hint = "; source='generated' has one" if entry.generator and split in entry.splits else ""
    raise DataError(f"dataset '{entry.name}' from {where} has no '{split}' split (it has: "
                    f"{', '.join(sorted(pools)) or 'none'}){hint}")


def _from_hub(entry: Entry, split: str, seed: int, vf: float, tf: float) -> tuple[list[dict], dict[str, Any]]:
    try:
        pools, revision = hub.read(entry, split)
    except hub.HubSchemaError:
        raise
    except DataError as exc:
        raise SourceUnavailable(str(exc)) from exc
    recs, spec = _pick_split(entry, pools, split, seed, vf, tf, f"hub '{entry.hub_id}'")
    return recs, {"origin": entry.hub_id, "hub_config": entry.hub_config, "source_version": revision,
                  "split_spec": spec}


def _from_mirror(entry: Entry, split: str, seed: int, vf: float, tf: float,
                 root: Path | None) -> tuple[list[dict], dict[str, Any]]:
    if not entry.mirror_files:
        raise SourceUnavailable(f"dataset '{entry.name}' is not in the mirror ({entry.missing})")
    if root is None:
        raise SourceUnavailable("no data mirror (LORASOUPS_DATA_MIRROR unset and ../shared/datasets absent)")
    pools, files = mirror.read(entry, root)
    pools = dict(pools)
    dropped = pools.pop("_dropped", None)
    recs, spec = _pick_split(entry, pools, split, seed, vf, tf, f"mirror '{root}'")
    meta = {"origin": [str(f.relative_to(root)) for f in files], "mirror_root": str(root),
            "source_version": _files_version(files), "split_spec": spec}
    if entry.mirror_note:
        meta["stand_in"] = entry.mirror_note
    if dropped:
        meta["dropped"] = dropped
    return recs, meta


def _from_generator(entry: Entry, split: str, seed: int, size: int | None) -> tuple[list[dict], dict[str, Any]]:
    if not entry.generator:
        raise SourceUnavailable(f"dataset '{entry.name}' has no generator")
    if entry.role == "corpus":
        pool, version = generated.generate(entry, "train", size or entry.generated_size, seed)
        recs, spec = _pick_split(entry, {"train": pool}, split, seed, 0, 0, "generator")
    else:
        recs, version = generated.generate(entry, split, size or entry.generated_size, seed)
        spec = {"method": "sha256 hash partition of each instance's text (seed-independent)"}
    return recs, {"origin": f"lorasoups.data.generated:{entry.generator}", "source_version": version,
                  "split_spec": spec, "stand_in": f"generated offline miniature of '{entry.name}'"}


def demonstrations_for(name: str, source: str, root: Path | None = None,
                       seed: int = 0) -> tuple[list[dict], str, str] | None:
    """The demonstrations that prefix target ``name``'s prompts (its registry ``demos`` entry),
    matching where the target's data came from (``source``): the paper's, from the mirror, when
    it came from the hub or the mirror; else that entry's generated ones, of the same kind (PAL
    programs, closed-book questions, context + question). Returns (records, demo entry, demo
    source), or None for a target without demonstrations (and for every skill or corpus)."""
    entry = get_entry(name)
    if not entry.demos:
        return None
    fewshot = get_entry(entry.demos)
    if source != "generated" and root is not None:
        try:
            return _from_mirror(fewshot, "test", seed, 0, 0, root)[0], fewshot.name, "mirror"
        except SourceUnavailable:
            pass
    return _from_generator(fewshot, "test", seed, None)[0], fewshot.name, "generated"


def _norm(text: str) -> str:
    return " ".join(str(text).split()).lower()


def _with_demos(entry: Entry, recs: list[dict], src: str, root: Path | None, seed: int, shots: int,
                meta: dict[str, Any]) -> list[dict]:
    """``recs`` with ``shots``-shot prompts (:func:`demonstrations_for`), recorded in ``meta``.

    No demonstration may be a scored item: a record whose instruction is, whitespace and case
    aside, a demonstration's in its own prompt is left out and counted in ``meta['dropped']``.
    The one case in the paper's data: rc.json's first demo (rc-0) is BioASQ test item 1, so the
    mirrored BioASQ target scores 200 of its 201 items. Why rc-0 rather than rc-1 (the other
    demo, qa.json's "three primary colors" without a context): the paper prompts 1-shot "to
    ensure the output is of consistent format" (§B.2) and rc-0 is the only demo in the test's own
    context-and-question layout; it is also the first demo of the authors' RC prompt (their code
    prepends both, 2 shots, against the paper's 1), so we keep their leading demo and drop the
    other. A demo's answer is its record's ``completion`` (rc.json's ``answer``, without the
    "the correct answer is" of its ``output``): the form of the gold answers and of the SQuAD
    skill's completions.
    """
    found = demonstrations_for(entry.name, src, root, seed)
    if found is None or shots <= 0:
        return recs
    demos, demo_entry, demo_src = found
    if shots > len(demos):
        raise DataError(f"dataset '{entry.name}': {shots} shots requested but '{demo_entry}' has only "
                        f"{len(demos)} demonstrations")
    used = demos[:shots]
    seen = {_norm(d["instruction"]): str(d["id"]) for d in used}
    kept, dropped = [], []
    for r in recs:
        if _norm(r["instruction"]) in seen:
            dropped.append(f"{r['id']} (= {seen[_norm(r['instruction'])]})")
        else:
            kept.append({**r, "prompt": F.fewshot_prompt(r["instruction"], used, shots)})
    meta["demonstrations"] = {"dataset": demo_entry, "source": demo_src, "shots": shots,
                              "ids": [str(d["id"]) for d in used]}
    if dropped:
        meta["dropped"] = {**(meta.get("dropped") or {}), DROPPED_AS_DEMO: dropped}
    return kept


def load(
    name: str,
    split: str,
    source: str = "auto",
    seed: int = 0,
    size: int | None = None,
    *,
    mirror: str | Path | None = None,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    shots: int = 1,
) -> datasets.Dataset:
    """One split of a registry dataset as a ``datasets.Dataset`` of formatted records.

    ``source="auto"`` tries the hub, then the mirror, then the generator, moving on only when a
    source is *absent* (hub unreachable, no mirror directory); a broken mirror file is an error,
    never a silent fallback. ``seed`` fixes generated content and carved splits; ``size`` caps the
    number of records (generated: how many to make). A target with demonstrations (registry
    ``demos``) gets a ``shots``-shot prompt, every split of it (so tuning examples read like the
    scored ones): the paper's 1 shot for every model, 8 PAL shots for the base model on GSM-Hard
    (``lorasoups.stages.evaluate.BASE_PAL_SHOTS``); skills and corpora stay zero-shot. The
    identity's ``demonstrations`` records the demo entry, its source, the shots and the ids.
    """
    entry = get_entry(name)
    if split not in SPLITS:
        raise DataError(f"dataset '{name}': unknown split '{split}'{did_you_mean(split, SPLITS)}; "
                        f"choose one of {', '.join(SPLITS)}")
    if split not in entry.splits:
        raise DataError(f"dataset '{name}' ({entry.role}) has no '{split}' split; it has: {', '.join(entry.splits)}")
    if source not in SOURCES:
        raise DataError(f"unknown source '{source}'{did_you_mean(source, SOURCES)}; choose one of {SOURCES}")
    if size is not None and size < 1:
        raise DataError(f"dataset '{name}': size must be >= 1, got {size}")
    if source != "auto" and source not in entry.sources:
        raise DataError(f"dataset '{name}' has no {source} source (it has: {', '.join(entry.sources)})"
                        + (f"; {entry.missing}" if entry.missing else ""))
    root = mirror_root(mirror)
    order = [s for s in ("hub", "mirror", "generated") if s in entry.sources] if source == "auto" else [source]
    skipped: dict[str, str] = {}
    for src in order:
        try:
            if src == "hub":
                recs, meta = _from_hub(entry, split, seed, val_fraction, test_fraction)
            elif src == "mirror":
                recs, meta = _from_mirror(entry, split, seed, val_fraction, test_fraction, root)
            else:
                recs, meta = _from_generator(entry, split, seed, size)
        except SourceUnavailable as exc:
            if source != "auto":
                raise
            skipped[src] = str(exc)
            continue
        break
    else:
        raise DataError(f"dataset '{name}': no source available: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    recs = _with_demos(entry, recs, src, root, seed, shots, meta)
    if size is not None:
        recs = recs[:size]
    where = f"dataset '{name}' split '{split}' from {src}"
    if not recs:
        left_out = f" (every record was left out: {meta['dropped']})" if meta.get("dropped") else ""
        raise DataError(f"{where}: no records{left_out}")
    cols = entry.columns
    rows = []
    for r in recs:
        missing = [c for c in cols if c not in r]
        if missing:
            raise DataError(f"{where}: record '{r.get('id', '?')}' lacks field(s) {missing}")
        rows.append({c: r[c] for c in cols})
    ident = {
        "name": name, "split": split, "source": src, "version": f"{entry.version}+{meta.pop('source_version')}",
        "setting": entry.setting, "role": entry.role, "kind": entry.kind, "seed": seed, "size_requested": size,
        "num_rows": len(rows), "fingerprint": _records_fingerprint(rows), **meta,
    }
    if skipped:
        ident["skipped_sources"] = skipped
    ds = datasets.Dataset.from_list(rows)
    ds.info.description = json.dumps(ident, ensure_ascii=False)
    ds.info.dataset_name = name
    return ds


def identity(ds: datasets.Dataset) -> dict[str, Any]:
    """The provenance :func:`load` attached: name, split, source, version, fingerprint, seed, ..."""
    try:
        ident = json.loads(ds.info.description or "")
    except json.JSONDecodeError:
        ident = None
    if not isinstance(ident, dict) or "source" not in ident:
        raise DataError("this dataset carries no lorasoups provenance (was it made by lorasoups.data.load?)")
    return ident


def registry_table() -> list[dict[str, Any]]:
    """One row per registry entry (for the README, notebooks and ``print``)."""
    from lorasoups.data.registry import REGISTRY

    return [{"name": e.name, "setting": e.setting, "role": e.role, "kind": e.kind, "sources": ",".join(e.sources),
             "paper_size": e.paper_size, "mirror_size": e.mirror_size, "generated_size": e.generated_size,
             "version": e.version, "hub_id": e.hub_id, "stand_in": e.mirror_note} for e in REGISTRY.values()]
