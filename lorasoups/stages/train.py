"""Stages 02-04 and 06-07: skill LoRAs, DATA-MIX, learned CAT, MoE routers, LoraHub weights."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from lorasoups import paths
from lorasoups.config import ConfigError
from lorasoups.data import DataConfig, DataError, cat_mixture, get_entry, get_setting, identity
from lorasoups.merging import METHODS
from lorasoups.results import file_sha256, fingerprint, package_source_sha
from lorasoups.stages.common import (
    MERGE_CODE,
    Exported,
    data_for,
    identities,
    measured,
    skill_adapters,
    trained,
    tuning_examples,
    tuning_sets,
    write_train_result,
)
from lorasoups.stages.config import ExperimentConfig
from lorasoups.training import (
    LoraHubConfig,
    SftConfig,
    SoupTrainConfig,
    train_datamix_concat,
    train_datamix_sequential,
    train_lorahub,
    train_sft,
    train_soup,
)


def _progress(msg: str) -> None:
    print(msg, flush=True)


def train_skills(model: str, setting: str, seed: int, data: DataConfig, sft: SftConfig, profile: str) -> dict:
    """One LoRA per skill of ``setting`` (the paper §B.1 recipe in ``sft``)."""
    s = get_setting(setting)
    sets = data_for(setting, data, profile)
    cfg = dataclasses.replace(sft, seed=seed)
    out = {}
    for label, name in zip(s.labels, s.skills, strict=True):
        skill_cfg = skill_sft(cfg, name)
        _progress(f"[{setting}] {label}: {name} (max_length {skill_cfg.max_length}"
                  f"{', packed' if skill_cfg.packing else ''})")
        # Named by the dataset, not the setting: a skill LoRA is the same run wherever it is composed
        # (math_code and math_code_k3 share metamathqa's), and the key still covers config and data.
        run = train_sft(model, sets["skills"][name], skill_cfg, name=f"skill-{name}")
        write_train_result(profile, setting, label, seed, run, skill_cfg, model,
                           identities(**{name: sets["skills"][name]}))
        out[label] = run.summary.get("train_loss")
    return out


def paper_length(cfg: SftConfig, names: list[str]) -> SftConfig:
    """``cfg`` at the paper's sequence length for datasets ``names`` (the longest ``Entry.max_length``
    among them, §B.2; ``cfg.max_length`` where none has one, or with ``cfg.lengths: uniform``)."""
    lengths = [n for n in (get_entry(name).max_length for name in names) if n is not None]
    if cfg.lengths != "paper" or not lengths:
        return cfg
    return dataclasses.replace(cfg, max_length=max(lengths))


def skill_sft(cfg: SftConfig, name: str) -> SftConfig:
    """``cfg`` for the skill LoRA of dataset ``name``: the paper's sequence length for that data
    (``Entry.max_length``, §B.2) unless ``cfg.lengths`` is ``uniform``; a text corpus packed into
    blocks of that length (TRL's ``wrapped``), so a short length never cuts text off, for
    ``cfg.corpus_epochs`` epochs where set."""
    out = paper_length(cfg, [name])
    if get_entry(name).kind == "corpus":
        epochs = out.num_train_epochs if out.corpus_epochs is None else out.corpus_epochs
        # corpus_epochs is folded into num_train_epochs and cleared: the run's key then names the
        # epochs it trained, and a profile without it keeps its runs' keys
        out = dataclasses.replace(out, packing=True, num_train_epochs=epochs, corpus_epochs=None,
                                  trainer={"packing_strategy": "wrapped", **out.trainer})
    return out


def _is_corpus(name: str) -> bool:
    return get_entry(name).kind == "corpus"


def train_datamix(model: str, setting: str, seed: int, data: DataConfig, sft: SftConfig, profile: str,
                  variants: list[str]) -> dict:
    """DATA-MIX: (a) ``concat``, one LoRA of rank k*r on every skill's data; (b) ``sequential``,
    corpus LoRA merged into the base, then one epoch on the instruction data (two-skill settings
    whose first skill is a corpus: the paper's continual-training baseline)."""
    s = get_setting(setting)
    sets = data_for(setting, data, profile)
    cfg = dataclasses.replace(sft, seed=seed)
    skills = {name: sets["skills"][name] for name in s.skills}
    out = {}
    if "concat" in variants:
        _progress(f"[{setting}] datamix (concat)")
        run = train_datamix_concat(model, skills, cfg, name=f"{setting}-datamix", seed=seed)
        write_train_result(profile, setting, "datamix", seed, run, cfg, model, identities(**skills))
        out["datamix"] = run.summary.get("train_loss")
    if "sequential" in variants and _is_corpus(s.skill1) and s.k == 2:
        _progress(f"[{setting}] datamix (sequential)")
        run = train_datamix_sequential(model, skills[s.skill1], skills[s.skill2], skill_sft(cfg, s.skill1),
                                       dataclasses.replace(cfg, num_train_epochs=1.0),
                                       name=f"{setting}-datamix-seq")
        stages = run.summary.get("stages", {})
        losses = {f"{k}_train_loss": v.get("train_loss") for k, v in stages.items()}
        write_train_result(profile, setting, "datamix_seq", seed, run, cfg, model, identities(**skills), losses)
        out["datamix_seq"] = losses.get("instructions_train_loss")
    return out


def _validation_mixture(sets: dict[str, Any], data: DataConfig, seed: int):
    """The split that picks CAT's / MoE's best checkpoint: the same share (``data.cat_fraction``)
    of each skill's *validation* split as the training mixture takes of its train split."""
    return cat_mixture(sets["validation"], fraction=data.cat_fraction, seed=seed)


def learn_soup(method: str, model: str, setting: str, seed: int, data: DataConfig, cfg: SoupTrainConfig,
               profile: str, label: str | None = None, extra: dict[str, Any] | None = None,
               adapters: list[str] | None = None) -> dict:
    """A learnable soup method (``cat``: only the alphas train; ``moe``: only the routers; any
    registered ``Method`` with ``learnable``) on the CAT mixture (``data.cat_fraction`` of each skill), best checkpoint by validation loss.
    ``label``: the result label (default: ``method``); ``extra``: more metrics to record;
    ``adapters``: the LoRAs to combine (default: the setting's skill LoRAs)."""
    label = label or method
    sets = data_for(setting, data, profile)
    adapters = adapters or skill_adapters(profile, setting, seed, model)
    cfg = dataclasses.replace(cfg, seed=seed)
    _progress(f"[{setting}] {label}: {len(sets['cat_mixture'])} mixture records")
    run = train_soup(method, model, adapters, sets["cat_mixture"], _validation_mixture(sets, data, seed), cfg,
                     name=f"{setting}-{label}")
    extra = dict(extra or {})
    alphas = Path(run.run_dir) / "alphas.json"
    if alphas.is_file():
        extra["alphas"] = json.loads(alphas.read_text())
    write_train_result(profile, setting, label, seed, run, cfg, model,
                       identities(cat_mixture=sets["cat_mixture"]), extra,
                       kind="adapter" if METHODS[method].exportable else "soup")
    drift = (run.summary.get("final_drift") or {}).get("max", {})
    return {**{k: run.summary.get(k) for k in ("eval_loss_before", "eval_loss_best", "best_step")},
            **{f"max_drift/{skill}": v for skill, v in drift.items()}}


def alphas_figure(profile: str, setting: str, seed: int, label: str = "cat") -> Path:
    """The heatmap of a learned CAT's alphas by layer and skill (``alphas.png`` beside its adapter)."""
    record = trained(profile, setting, seed).get(label)
    if record is None:
        raise FileNotFoundError(f"no train/{setting}/{label}--s{seed}.json under results/{profile}/: run learn_cat first")
    path = Path(record["location"]).parent / "alphas.png"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the run of {label} (setting {setting}, seed {seed}) has no alphas heatmap")
    return path


def learn_cat_recipes(model: str, setting: str, seed: int, data: DataConfig, cfg: SoupTrainConfig,
                      exp: ExperimentConfig, profile: str) -> dict[str, dict]:
    """Learned CAT under each recipe of ``exp.cat_recipes`` (label ``cat_<recipe>``), the rest of
    the ``cat`` section as it is: ``{label: learn_soup's summary}`` ({} when none is asked for)."""
    return {f"cat_{r}": learn_soup("cat", model, setting, seed, data, dataclasses.replace(cfg, recipe=r), profile,
                                   label=f"cat_{r}")
            for r in exp.cat_recipes}


def round_robin(parts: list[Any], n: int | None = None) -> list[dict[str, Any]]:
    """Records of ``parts`` taken in turn (one of each, then the next of each, ...), at most ``n``."""
    rounds = (d[i] for i in range(max(map(len, parts))) for d in parts if i < len(d))
    return [r for r, _ in zip(rounds, range(n))] if n is not None else list(rounds)


def lorahub_examples(setting: str, data: DataConfig, n: int):
    """LoraHub's few examples, never scored (:func:`lorasoups.stages.common.tuning_examples`, the
    sweep's rule): the first target's held-out examples, or, for a setting that tunes on its skills
    (prompt robustness), the skills' validation splits in turn, so the scored formats stay unseen."""
    names = tuning_sets(setting)
    try:
        if get_setting(setting).tune_on != "skills":
            return tuning_examples(setting, names[0], data, max(n, 1))
        per = [tuning_examples(setting, k, data, max(n, 1)) for k in names]
    except DataError as exc:
        raise DataError(f"LoraHub needs {n} examples of {names[0]} outside its test split: {exc}") from exc
    import datasets

    rows = round_robin(per, max(n, 1))
    ds = datasets.Dataset.from_list(rows)
    ds.info.description = json.dumps({"name": "lorahub_examples", "source": "skills' validation splits",
                                      "skills": {k: identity(d) for k, d in zip(names, per)}, "num_rows": len(rows)})
    return ds


def search_lorahub(model: str, setting: str, seed: int, data: DataConfig, cfg: LoraHubConfig,
                   profile: str) -> dict:
    """LoraHub: gradient-free (nevergrad) weights for the skill LoRAs on a few target examples."""
    adapters = skill_adapters(profile, setting, seed, model)
    cfg = dataclasses.replace(cfg, seed=seed)
    examples = lorahub_examples(setting, data, cfg.n_examples)
    if len(examples) < cfg.n_examples:  # tiny generated validation splits (QABot's manual has few facts)
        _progress(f"[{setting}] lorahub: only {len(examples)} validation examples, using them all")
        cfg = dataclasses.replace(cfg, n_examples=len(examples))
    _progress(f"[{setting}] lorahub: {cfg.budget} evaluations on {cfg.n_examples} examples")
    run = train_lorahub(model, adapters, examples, cfg, name=f"{setting}-lorahub")
    weights = Path(run.run_dir) / "weights.json"
    extra = {"weights": json.loads(weights.read_text()).get("weights")} if weights.is_file() else {}
    write_train_result(profile, setting, "lorahub", seed, run, cfg, model, identities(examples=examples), extra)
    return extra


def learn_cat_from_lorahub(model: str, setting: str, seed: int, data: DataConfig, cfg: SoupTrainConfig,
                           exp: ExperimentConfig, profile: str) -> dict:
    """Learned CAT whose alpha starts at LoraHub's weights (label ``cat_lorahub``).

    LoraHub searches one global weight per skill, possibly negative, which a softmax cannot start
    from, so this soup learns free alphas (``parameterisation: free``) at the configured granularity,
    every group starting at LoraHub's solution; the rest of the recipe is ``cfg`` (the ``cat:``
    section). Needs stage 07's LoraHub result of the same seed. A no-op unless
    ``experiment.cat_from_lorahub``."""
    if not exp.cat_from_lorahub:
        return {}
    rec = trained(profile, setting, seed).get("lorahub")
    weights = ((rec or {}).get("metrics") or {}).get("weights")
    if not isinstance(weights, dict) or len(weights) != get_setting(setting).k:
        raise ConfigError(f"setting {setting}, seed {seed}: learned CAT from LoraHub needs LoraHub's weights "
                          f"(one per skill) in results train/{setting}/lorahub--s{seed}.json; run search_lorahub first")
    init = [float(w) for w in weights.values()]
    _progress(f"[{setting}] cat_lorahub: alpha starts at LoraHub's {[round(w, 3) for w in init]}")
    soup = {**cfg.soup, "parameterisation": "free", "init": "weights", "init_weights": init}
    return learn_soup("cat", model, setting, seed, data, dataclasses.replace(cfg, soup=soup), profile,
                      label="cat_lorahub", extra={"init_weights": init})


# ---- controls: stage 03 trains cat_data_lora and oracle, stage 04 cat_random and random_alpha


def oracle_data(setting: str, data: DataConfig, profile: str, min_records: int):
    """The ``oracle``'s training set: held-out records of each target, never scored (the pool
    :func:`lorasoups.stages.common.tuning_examples` tunes on): the run's source where it has such a
    pool (BioASQ: 358 golden-batch questions that share nothing with the RC test file), else the target's generated
    suite (disjoint from every scored item by its hash partition); targets taken in turn, at most
    the profile's ``oracle_data`` size. Returns
    ``(dataset, None)``, or ``(None, why)`` where a target's suite holds fewer than ``min_records``
    (its prompts are the scored prompts' format: PAL targets get the same 1-shot demonstration)."""
    import datasets

    size = data.size(profile, name="oracle_data")
    per = {}
    for target in get_setting(setting).targets:
        try:
            ds = tuning_examples(setting, target, data, None if size is None else max(size, min_records),
                                 mode="auto")
        except DataError as exc:
            return None, f"{target} has no held-out split ({exc})"
        if len(ds) < min_records:
            return None, (f"{target} holds {len(ds)} held-out records ({identity(ds)['source']}), fewer than "
                          f"experiment.oracle_min_records = {min_records}")
        per[target] = ds
    rows = [{"id": str(r["id"]), "prompt": r["prompt"], "completion": r["completion"]}
            for r in round_robin(list(per.values()), size)]
    ds = datasets.Dataset.from_list(rows)
    sources = sorted({identity(d)["source"] for d in per.values()})
    ds.info.description = json.dumps({"name": "oracle_data", "source": "+".join(sources), "num_rows": len(rows),
                                      "targets": {t: identity(d) for t, d in per.items()}})
    return ds, None


def train_controls(model: str, setting: str, seed: int, data: DataConfig, sft: SftConfig, profile: str,
                   exp: ExperimentConfig) -> dict:
    """The trained-LoRA controls of ``exp.controls``: ``cat_data_lora`` (one LoRA of the skills' rank
    r on the CAT mixture alone: is CAT's gain its data?) and ``oracle`` (a LoRA on the target's own
    data: is the setting learnable at all?). Returns ``{label: train loss or why it was skipped}``."""
    from lorasoups.training.datamix import as_prompt_completion

    cfg = dataclasses.replace(sft, seed=seed)
    out: dict[str, Any] = {}
    if "cat_data_lora" in exp.controls:
        sets = data_for(setting, data, profile)
        _progress(f"[{setting}] cat_data_lora: {len(sets['cat_mixture'])} mixture records")
        mix = as_prompt_completion(sets["cat_mixture"], f"{setting}: cat_mixture")
        run = train_sft(model, mix, cfg, name=f"{setting}-cat-data-lora", kind="cat_data_lora")
        write_train_result(profile, setting, "cat_data_lora", seed, run, cfg, model,
                           identities(cat_mixture=sets["cat_mixture"]))
        out["cat_data_lora"] = run.summary.get("train_loss")
    if "oracle" in exp.controls:
        ds, why = oracle_data(setting, data, profile, exp.oracle_min_records)
        if ds is None:
            _progress(f"[{setting}] oracle: none ({why})")
            out["oracle"] = f"none: {why}"
        else:
            ocfg = paper_length(cfg, list(get_setting(setting).targets))  # §B.2: 2048 for RC
            _progress(f"[{setting}] oracle: {len(ds)} held-out records of the targets "
                      f"(max_length {ocfg.max_length})")
            run = train_sft(model, ds, ocfg, name=f"{setting}-oracle", kind="oracle")
            write_train_result(profile, setting, "oracle", seed, run, ocfg, model, identities(oracle_data=ds))
            out["oracle"] = run.summary.get("train_loss")
    return out


def learn_controls(model: str, setting: str, seed: int, data: DataConfig, cfg: SoupTrainConfig,
                   exp: ExperimentConfig, profile: str) -> dict:
    """The CAT controls of ``exp.controls``: ``cat_random`` (learned CAT, the ``cat`` recipe, with
    skill ``exp.control_random_skill`` replaced by a random LoRA of its rank and per-module update
    norm: does the skill matter?) and ``random_alpha`` (CAT with alpha drawn as the released code's
    init, N(0, 1) logits seeded by the run seed, not trained: does learning alpha matter?)."""
    out: dict[str, Any] = {}
    if "cat_random" in exp.controls:
        adapters = skill_adapters(profile, setting, seed, model)
        i = exp.control_random_skill - 1
        if i >= len(adapters):
            raise ConfigError(f"experiment.control_random_skill = {exp.control_random_skill}, but setting "
                              f"'{setting}' has {len(adapters)} skills")
        random_dir = random_skill_lora(setting, adapters[i], i + 1, seed)
        adapters[i] = str(random_dir)
        res = learn_soup("cat", model, setting, seed, data, cfg, profile, label="cat_random", adapters=adapters,
                         extra={"random_skill": f"skill{i + 1}", "random_lora": str(random_dir)})
        out["cat_random"] = res.get("eval_loss_best")
    if "random_alpha" in exp.controls:
        out["random_alpha"] = random_alpha_cat(model, setting, seed, cfg, profile)
    return out


def random_skill_lora(setting: str, adapter: str, skill: int, seed: int) -> Path:
    """``adapter`` as a random LoRA (:func:`lorasoups.merging.random_lora.random_lora_like`), made
    once per (adapter content, seed) under ``runs/controls/``."""
    from lorasoups.merging.random_lora import REPORT, random_lora_like

    key = fingerprint({"source_sha256": file_sha256(Path(adapter) / "adapter_model.safetensors"), "seed": seed,
                       "code": package_source_sha(MERGE_CODE)})
    out = paths.runs_dir() / "controls" / f"{setting}-skill{skill}-random-{key}"
    if not (out / REPORT).is_file():
        random_lora_like(adapter, out, seed)
    _progress(f"[{setting}] cat_random: skill{skill} replaced by the random LoRA {out.name}")
    return out


def random_alpha_cat(model: str, setting: str, seed: int, cfg: SoupTrainConfig, profile: str) -> float:
    """CAT with the released init's random alpha, folded and exported like a static merge (label
    ``random_alpha``; its train JSON holds the alpha table). Returns the mean |alpha - 1/k|."""
    from lorasoups.merging import alphas_table, build, export_adapter
    from lorasoups.models import load_base

    adapters = skill_adapters(profile, setting, seed, model)
    params = {"seed": seed, **cfg.soup, "init": "released"}
    key = fingerprint({"method": "random_alpha", "params": params, "adapters": adapters, "base": model,
                       "code": package_source_sha(MERGE_CODE)})
    out = paths.runs_dir() / "merges" / f"{setting}-random_alpha-{key}"
    table_file = out / "alphas.json"
    reused = table_file.is_file()
    summary: dict[str, Any] = {}
    if not reused:
        with measured() as summary:
            base, _ = load_base(model, device="cpu", dtype="float32")
            soup = build("cat", base, adapters, **params)
            table = alphas_table(soup)
            export_adapter(soup, out, overwrite=True)
            table_file.write_text(json.dumps(table, indent=2) + "\n")
    table = json.loads(table_file.read_text())
    k = len(adapters)
    spread = sum(abs(r["alpha"] - 1.0 / k) for r in table) / len(table)
    _progress(f"[{setting}] random_alpha: mean |alpha - 1/k| = {spread:.3f} ({'reused' if reused else 'exported'})")
    write_train_result(profile, setting, "random_alpha", seed, Exported(out, out, reused, summary),
                       {"method": "cat", "params": params, "adapters": adapters}, model,
                       metrics={"alphas": table, "mean_abs_alpha_minus_equal": spread})
    return spread
