"""The informativeness gate of a study: can a setting show composition at all?

A merge "works" only where its skills were learned and its target is learnable above a floor. This
module measures both before any merge is scored, by rules fixed here (before the CPU study's first
merge result) and never tuned afterwards:

* **Skill gate.** Each skill LoRA against the base model on a held-out sample of its own skill (the
  skill's carved ``test`` split, which no training set holds).

  - A skill with a scorer (the prompt-format counting skills): exact-count accuracy. The floor is
    the better of the base model and the majority answer of the scored items. Passes when the LoRA
    is at least :data:`ACC_MARGIN` (5 points) above the floor and the paired bootstrap 95 % interval
    of (LoRA - floor) lies above 0.
  - A text skill (solutions, code, instructions, a manual): completion negative log-likelihood per
    token. Passes when the LoRA's mean is at least :data:`NLL_MARGIN` (10 %) below the base's and
    the paired bootstrap 95 % interval of (base - LoRA) per example lies above 0.

* **Oracle gate.** The ``oracle`` LoRA (trained on held-out records in the target's own format, stage
  03) on every target of the setting, by the accuracy rule against the same kind of floor (the
  better of base and majority answer; on QA targets, token F1 against the base).

The result, ``results/<profile>/gate/<setting>/gate--s<seed>.json``, holds every number and the
verdict. The oracle's and the base's target scores are ordinary stage-08 results (the evaluation
stage reuses them).

    python -m lorasoups.stages.gate --profile cpu [--setting NAME] [--seed N] [--config extra.yaml] [--skills-only]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lorasoups import paths, results
from lorasoups.analysis.load import item_keys
from lorasoups.analysis.stats import bootstrap_mean_ci
from lorasoups.config import to_dict
from lorasoups.data import DataConfig, get_entry, get_setting, identity, load
from lorasoups.evaluation.tasks import evaluate
from lorasoups.models import model_identity
from lorasoups.stages.common import trained
from lorasoups.stages.config import EvalConfig, GateConfig
from lorasoups.stages.evaluate import STOPS, evaluate_setting, load_model
from lorasoups.task_kinds import TASKS, task_of_kind

ACC_MARGIN = 0.05
"""Accuracy points a LoRA must clear the floor by (and the CI of the gap must exclude 0)."""
NLL_MARGIN = 0.10
"""Relative reduction of held-out completion NLL a text skill's LoRA must reach."""
BOOTSTRAP = 2000
RULES = {
    "skill_scored": f"accuracy >= floor + {ACC_MARGIN} and paired bootstrap 95% CI of (LoRA - floor) > 0; "
                    "floor = max(base accuracy, majority-answer share)",
    "skill_text": f"completion NLL/token <= (1 - {NLL_MARGIN}) x base and paired bootstrap 95% CI of "
                  "(base - LoRA) > 0",
    "oracle": f"every target: metric >= floor + {ACC_MARGIN} and paired bootstrap 95% CI of (oracle - floor) > 0",
}


def paired_ci(a: Sequence[float], b: Sequence[float], rounds: int = BOOTSTRAP, seed: int = 0) -> dict[str, float]:
    """Mean of ``a - b`` per example and its percentile bootstrap 95 % interval (examples resampled)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0:
        raise ValueError("paired_ci: no examples")
    return bootstrap_mean_ci(d, rounds, seed)


def majority_answer(golds: Sequence[Any]) -> str:
    """The most frequent gold answer (as text): what a trivial model that always gives it scores."""
    return Counter(str(g).strip() for g in golds).most_common(1)[0][0]


def floor_of(golds: Sequence[Any], base_scores: Sequence[float]) -> tuple[str, list[float]]:
    """The floor a model must beat: the base model or the majority answer, whichever scores higher
    on these items, as (name, per-example scores)."""
    majority = majority_answer(golds)
    maj = [float(str(g).strip() == majority) for g in golds]
    if sum(maj) > sum(base_scores):
        return f"majority answer {majority!r}", maj
    return "base", [float(x) for x in base_scores]


def accuracy_verdict(scores: Sequence[float], floor_name: str, floor: Sequence[float]) -> dict[str, Any]:
    ci = paired_ci(scores, floor)
    return {"metric": float(np.mean(scores)), "floor": float(np.mean(floor)), "floor_is": floor_name, "gap": ci,
            "passed": bool(ci["diff"] >= ACC_MARGIN and ci["lo"] > 0)}


@torch.no_grad()
def completion_nll(model, tokenizer, records: Sequence[dict[str, Any]], max_length: int, batch_size: int = 8) -> list[float]:
    """Mean negative log-likelihood per completion token of each record (a corpus record: of its
    whole ``text``), truncated to ``max_length`` tokens as in training."""
    device = next(model.parameters()).device
    eos = tokenizer.eos_token or ""
    seqs = []
    for r in records:
        if "text" in r and "completion" not in r:
            ids = tokenizer(r["text"] + eos, add_special_tokens=False).input_ids
            n_prompt = 0
        else:
            p = tokenizer(r["prompt"], add_special_tokens=False).input_ids
            ids = p + tokenizer(r["completion"] + eos, add_special_tokens=False).input_ids
            n_prompt = len(p)
        ids = ids[:max_length]
        seqs.append((ids, min(n_prompt, len(ids) - 1)))
    out: list[float] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for i in range(0, len(seqs), batch_size):
        chunk = seqs[i:i + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        inp = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for j, (ids, _) in enumerate(chunk):
            inp[j, :len(ids)] = torch.tensor(ids)
            mask[j, :len(ids)] = 1
        logits = model(input_ids=inp.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        tok_nll = -logp.gather(-1, inp[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        for j, (ids, n_prompt) in enumerate(chunk):
            scored = tok_nll[j, max(n_prompt, 1) - 1:len(ids) - 1]
            out.append(float(scored.mean()))
    return out


def held_out_split(name: str) -> str:
    """The split a skill is gated on: its held-out ``test`` split. A corpus skill (a manual, a
    textbook: splits train and validation, the validation text a part of the train text) has no
    held-out text, and the skill *is* the knowledge of that text, so it is gated in-sample on its
    ``train`` split (did the LoRA take the text in?); the row says so (``in_sample``)."""
    return "test" if "test" in get_entry(name).splits else "train"


def _skill_sample(name: str, data: DataConfig, size: int):
    return load(name, held_out_split(name), source=data.source, seed=data.seed, size=size, mirror=data.mirror)


def skill_gate(model: str, setting: str, seed: int, data: DataConfig, ev: EvalConfig, gate: GateConfig,
               profile: str) -> list[dict[str, Any]]:
    """One row per skill: its held-out metric for the base and the LoRA, the floor and the verdict."""
    s = get_setting(setting)
    models = trained(profile, setting, seed)
    rows = []
    for label, name in zip(s.labels, s.skills):
        if label not in models:
            raise results.ResultsError(f"setting {setting}, seed {seed}: no trained {label} ({name}); "
                                       "run stage train_skills first")
        ds = _skill_sample(name, data, gate.size)
        spec = task_of_kind(get_entry(name).kind)  # None: a text skill
        task, gold_col = (spec.name, spec.gold) if spec else (None, None)
        scores: dict[str, list[float]] = {}
        answers: dict[str, list[str]] = {}  # predicted answers, where the task extracts one
        for who, record in (("base", None), (label, models[label])):
            net, tok = load_model(model, record)
            if task is not None:
                gen = dataclasses.replace(ev.generation_for(task, seed, STOPS), greedy=True)
                with torch.no_grad():
                    _, ex = evaluate(net, tok, task, list(ds["prompt"]), list(ds[gold_col]), generation=gen,
                                     progress=False)
                scores[who] = [float(r[TASKS[task].item_score]) for r in ex]
                if ex and "predicted" in ex[0]:
                    answers[who] = [str(r["predicted"]).strip() for r in ex]
            else:
                scores[who] = completion_nll(net, tok, list(ds), gate.max_length, gate.batch_size)
            del net
        split = held_out_split(name)
        row: dict[str, Any] = {"label": label, "skill": name, "split": split, "in_sample": split == "train",
                               "n": len(ds), "dataset": identity(ds)}
        if task is not None:
            fname, floor = floor_of(ds[gold_col], scores["base"])
            row.update(rule="skill_scored", metric_name=TASKS[task].item_score, base=float(np.mean(scores["base"])),
                       **accuracy_verdict(scores[label], fname, floor))
            if answers:  # a model can score the floor by always giving the majority answer: say how often it did
                majority = majority_answer(ds[gold_col])
                row["majority_answer"] = majority
                row["majority_share"] = {who: float(np.mean([a == majority for a in ans]))
                                         for who, ans in answers.items()}
        else:
            ci = paired_ci(scores["base"], scores[label])
            base_mean, lora_mean = float(np.mean(scores["base"])), float(np.mean(scores[label]))
            row.update(rule="skill_text", metric_name="completion_nll_per_token", base=base_mean, metric=lora_mean,
                       reduction=1 - lora_mean / base_mean, gap=ci,
                       passed=bool(lora_mean <= (1 - NLL_MARGIN) * base_mean and ci["lo"] > 0))
        shares = "".join(f", answers {row['majority_answer']!r}: {who} {v:.0%}"
                         for who, v in row.get("majority_share", {}).items())
        print(f"[gate {setting}] {label} ({name}): {row['metric_name']} base {row['base']:.4f} -> LoRA "
              f"{row['metric']:.4f}{shares}; {'PASS' if row['passed'] else 'FAIL'}", flush=True)
        rows.append(row)
    return rows


def paired_rows(ex: dict[str, list[dict[str, Any]]], where: str) -> dict[str, list[dict[str, Any]]]:
    """The oracle's rows in the base's item order: by dataset record id where every row carries a
    unique one (the base's 8-shot and the oracle's 1-shot sets are built apart), else by position."""
    base, oracle = ex["base"], ex["oracle"]
    keys = {label: item_keys(rows) for label, rows in ex.items()}
    if keys["base"] is not None and keys["oracle"] is not None:
        by_id = dict(zip(keys["oracle"], oracle))
        if set(by_id) != set(keys["base"]):
            raise results.ResultsError(f"{where}: base and oracle were scored on different items")
        return {"base": base, "oracle": [by_id[k] for k in keys["base"]]}
    if len(base) != len(oracle):
        raise results.ResultsError(f"{where}: base has {len(base)} scored items, the oracle {len(oracle)}")
    return ex


def oracle_gate(model: str, setting: str, seed: int, data: DataConfig, ev: EvalConfig,
                profile: str) -> tuple[list[dict[str, Any]], str | None]:
    """One row per target for the oracle, or ``([], why)`` where the setting has no oracle."""
    if "oracle" not in trained(profile, setting, seed):
        return [], "no oracle was trained for this setting (see its train_datamix output)"
    evaluate_setting(model, setting, seed, data, dataclasses.replace(ev, labels=["base", "oracle"]), profile)
    from lorasoups.evaluation.reporting import examples_path, read_jsonl
    from lorasoups.stages.evaluate import eval_result_path

    rows = []
    for target in get_setting(setting).targets:
        task = task_of_kind(get_entry(target).kind).name
        ex = paired_rows({label: read_jsonl(examples_path(eval_result_path(profile, setting, label, target, seed)))
                          for label in ("base", "oracle")}, f"{setting}/{target} seed {seed}")
        per = {label: [float(r[TASKS[task].item_score]) for r in rows_] for label, rows_ in ex.items()}
        golds = [r["gold"] for r in ex["base"]]
        if task == "qa":
            fname, floor = "base", per["base"]
        else:
            fname, floor = floor_of(golds, per["base"])
        row = {"target": target, "n": len(per["oracle"]), "metric_name": TASKS[task].item_score,
               "base": float(np.mean(per["base"])), **accuracy_verdict(per["oracle"], fname, floor)}
        print(f"[gate {setting}] oracle on {target}: {row['metric_name']} {row['metric']:.3f} vs floor "
              f"{row['floor']:.3f} ({fname}); {'PASS' if row['passed'] else 'FAIL'}", flush=True)
        rows.append(row)
    return rows, None


def run_gate(cfg: dict[str, Any], setting: str, seed: int, skills_only: bool = False) -> dict[str, Any]:
    """Both gates for (setting, seed); writes and returns the gate result's metrics.

    ``skills_only``: the skill gate alone (a session that cannot afford the oracle's target
    evaluation); the result then says so and its ``passed`` is None unless a skill already failed
    (a failed skill fails the setting whatever the oracle does). A later full run replaces it."""
    profile, model = cfg["run"].profile, cfg["model"].name
    data, ev, gate = cfg["data"], cfg["evaluation"], cfg["gate"]
    timer = results.Timer()
    with results.peak_scope() as peak:  # this gate's peak, over the evaluations' own restarts
        with timer("skills"):
            skills = skill_gate(model, setting, seed, data, ev, gate, profile)
        if skills_only:
            oracle, why = [], "not evaluated in this run (--skills-only): the setting's verdict waits for it"
            passed = False if not all(r["passed"] for r in skills) else None
        else:
            with timer("oracle"):
                oracle, why = oracle_gate(model, setting, seed, data, ev, profile)
            passed = all(r["passed"] for r in skills + oracle)
        gate_peak = peak()
    metrics = {"setting": setting, "seed": seed, "skills": skills, "oracle": oracle, "oracle_absent": why,
               "rules": RULES, "passed": passed}
    path = results.result_path(f"gate/{setting}", "gate", f"s{seed}", profile=profile)
    results.write_result(path, config={"run": {"setting": setting, "seed": seed, "profile": profile},
                                       "gate": to_dict(gate), "evaluation": to_dict(ev)},
                         metrics=metrics, timings=timer.seconds, model=model_identity(model), peak=gate_peak)
    verdict = {True: "PASSED", False: "FAILED", None: "UNDECIDED (skills passed; oracle not evaluated)"}
    print(f"[gate {setting}] seed {seed}: {verdict[metrics['passed']]} -> {path}", flush=True)
    return metrics


def main(argv: list[str] | None = None) -> int:
    from lorasoups.pipeline import profiles, resolve

    ap = argparse.ArgumentParser(prog="python -m lorasoups.stages.gate", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=profiles())
    ap.add_argument("--setting", action="append", help="only this setting (repeatable; default: the profile's)")
    ap.add_argument("--seed", type=int, action="append", help="only this seed (repeatable)")
    ap.add_argument("--config", action="append", help="extra YAML layered on top (repeatable)")
    ap.add_argument("--skills-only", action="store_true", help="the skill gate alone (no oracle target evaluation)")
    args = ap.parse_args(argv)
    cfg = resolve(args.profile, args.config)
    out = {}
    for setting in args.setting or cfg["experiment"].settings:
        for seed in args.seed or cfg["experiment"].seeds:
            out[f"{setting}/s{seed}"] = run_gate(cfg, setting, seed, args.skills_only)["passed"]
    print(json.dumps(out, indent=1))
    print(f"results: {paths.results_dir(cfg['run'].profile) / 'gate'}")
    return 0 if all(v is True for v in out.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
