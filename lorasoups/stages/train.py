"""Stages 02-04 and 06-07: skill LoRAs, DATA-MIX, learned CAT, MoE routers, LoraHub weights."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from lorasoups.config import ConfigError
from lorasoups.data import DataConfig, DataError, cat_mixture, get_entry, get_setting, identity
from lorasoups.stages.common import (
    data_for,
    identities,
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
    train_cat,
    train_datamix_concat,
    train_datamix_sequential,
    train_lorahub,
    train_moe,
    train_sft,
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
        _progress(f"[{setting}] {label}: {name}")
        # Named by the dataset, not the setting: a skill LoRA is the same run wherever it is composed
        # (math_code and math_code_k3 share metamathqa's), and the key still covers config and data.
        run = train_sft(model, sets["skills"][name], cfg, name=f"skill-{name}")
        write_train_result(profile, setting, label, seed, run, cfg, model,
                           identities(**{name: sets["skills"][name]}))
        out[label] = run.summary.get("train_loss")
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
        run = train_datamix_sequential(model, skills[s.skill1], skills[s.skill2], cfg,
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
               profile: str, label: str | None = None, extra: dict[str, Any] | None = None) -> dict:
    """Learned CAT (``cat``: only the alphas train) or MoE (``moe``: only the routers) on the
    CAT mixture (``data.cat_fraction`` of each skill), best checkpoint by validation loss.
    ``label``: the result label (default: ``method``); ``extra``: more metrics to record."""
    label = label or method
    sets = data_for(setting, data, profile)
    adapters = skill_adapters(profile, setting, seed)
    cfg = dataclasses.replace(cfg, seed=seed)
    train_fn = train_cat if method == "cat" else train_moe
    _progress(f"[{setting}] {label}: {len(sets['cat_mixture'])} mixture records")
    run = train_fn(model, adapters, sets["cat_mixture"], _validation_mixture(sets, data, seed), cfg,
                   name=f"{setting}-{label}")
    extra = dict(extra or {})
    alphas = Path(run.run_dir) / "alphas.json"
    if alphas.is_file():
        extra["alphas"] = json.loads(alphas.read_text())
    write_train_result(profile, setting, label, seed, run, cfg, model,
                       identities(cat_mixture=sets["cat_mixture"]), extra,
                       kind="adapter" if method == "cat" else "soup")
    drift = (run.summary.get("final_drift") or {}).get("max", {})
    return {**{k: run.summary.get(k) for k in ("eval_loss_before", "eval_loss_best", "best_step")},
            **{f"max_drift/{skill}": v for skill, v in drift.items()}}


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

    rounds = (d[i] for i in range(max(map(len, per))) for d in per if i < len(d))  # round robin
    rows = [r for r, _ in zip(rounds, range(max(n, 1)))]
    ds = datasets.Dataset.from_list(rows)
    ds.info.description = json.dumps({"name": "lorahub_examples", "source": "skills' validation splits",
                                      "skills": {k: identity(d) for k, d in zip(names, per)}, "num_rows": len(rows)})
    return ds


def search_lorahub(model: str, setting: str, seed: int, data: DataConfig, cfg: LoraHubConfig,
                   profile: str) -> dict:
    """LoraHub: gradient-free (nevergrad) weights for the skill LoRAs on a few target examples."""
    adapters = skill_adapters(profile, setting, seed)
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
    """Learned CAT whose alpha starts at LoraHub's weights (label ``cat_lorahub``; issue 9 bonus).

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
