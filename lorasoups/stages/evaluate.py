"""Stage 08: every trained model of a setting on each of its target tasks, plus the LLM judges.

One result JSON (+ per-example JSONL) per (model, target) in ``results/<profile>/eval/<setting>/``,
and for reading comprehension an ELO table from the pairwise judge (paper §C.3).
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch

from lorasoups import paths, results
from lorasoups.config import to_dict
from lorasoups.data import DataConfig, get_entry, get_setting, identity
from lorasoups.evaluation.generation import GenerationConfig
from lorasoups.evaluation.reporting import examples_path, read_jsonl, save_evaluation
from lorasoups.evaluation.tasks import evaluate
from lorasoups.models import (
    load_base,
    model_identity,
    resolve_device,
    resolve_model_dir,
    save_tiny_random_llama,
)
from lorasoups.stages.common import data_for, trained
from lorasoups.stages.config import EvalConfig
from lorasoups.task_kinds import headline, task_of_kind  # noqa: F401  (headline: the notebook prints it)

#: PAL demonstrations in the base model's prompt on a program target (the paper, §5.1; every trained
#: or merged model gets ``load``'s default of 1, §B.2, and so does every model on a QA target).
BASE_PAL_SHOTS = 8
#: Generations are cut where a model starts a new Alpaca turn.
STOPS = ["### Instruction:", "### Response:", "### Input:"]


def eval_result_path(profile: str, setting: str, label: str, target: str, seed: int) -> Path:
    """``results/<profile>/eval/<setting>/<label>--<target>-s<seed>.json``."""
    return results.result_path(f"eval/{setting}", label, f"{target}-s{seed}", profile=profile)


def load_model(model: str, record: dict[str, Any] | None, device: str = "auto"):
    """The base model, or the base with a trained adapter / saved soup on top."""
    base, tok = load_base(model, device=device)
    if record is None:
        return base, tok
    if record["kind"] == "adapter":
        from peft import PeftModel

        return PeftModel.from_pretrained(base, record["location"]).eval(), tok
    from lorasoups.merging import load_soup

    return load_soup(record["location"], base).eval(), tok


@contextlib.contextmanager
def judge_for(cfg: EvalConfig, model: str):
    """A :class:`~lorasoups.evaluation.judge.Judge` for ``cfg.judge`` (None for ``none``)."""
    if cfg.judge == "none":
        yield None
        return
    from lorasoups.evaluation.judge import Judge, JudgeConfig, local_server

    if cfg.judge == "openai":
        yield Judge(JudgeConfig(model=cfg.judge_model))
        return
    model_dir = (save_tiny_random_llama(paths.runs_dir() / "tiny-random-llama")
                 if model == "tiny-random-llama" else resolve_model_dir(model))
    with local_server(model_dir) as server:
        yield Judge(JudgeConfig(base_url=server["base_url"], model=server["model"], workers=1))


def evaluate_setting(model: str, setting: str, seed: int, data: DataConfig, cfg: EvalConfig,
                     profile: str) -> dict[str, dict[str, Any]]:
    """Score base + every trained model on the setting's targets; returns {label: {target: metrics}}."""
    s = get_setting(setting)
    sets = data_for(setting, data, profile)
    models: dict[str, dict[str, Any] | None] = {"base": None, **trained(profile, setting, seed)}
    labels = [m for m in models if cfg.labels is None or m in cfg.labels]
    summary: dict[str, dict[str, Any]] = {}
    answers: dict[str, dict[str, list[str]]] = {t: {} for t in s.targets}
    base_ident = model_identity(model)
    with judge_for(cfg, model) as judge:
        for label in labels:
            net = tok = None  # loaded on the first (model, target) pair that has no reusable result
            for target in s.targets:
                ds = target_prompts(sets, target, label, data, profile)
                spec = task_of_kind(get_entry(target).kind)
                task, gold_col = spec.name, spec.gold
                gen = cfg.generation_for(task, seed, STOPS)
                path = eval_result_path(profile, setting, label, target, seed)
                key = request_key(base_ident, models[label], ds, task, gen, cfg)
                done = reusable(path, key)
                if done is not None:
                    metrics, rows = done
                    print(f"[{setting}] {label} on {target}: reused {path.name} (same inputs and code)", flush=True)
                else:
                    if net is None:
                        net, tok = load_model(model, models[label])
                    print(f"[{setting}] {label} on {target}: {len(ds)} prompts", flush=True)
                    results.reset_peak_memory()  # this result's peak, not the kernel's so far
                    start = time.perf_counter()
                    with torch.no_grad():
                        metrics, rows = evaluate(net, tok, task, list(ds["prompt"]), list(ds[gold_col]),
                                                 generation=gen, progress=False)
                    seconds = round(time.perf_counter() - start, 1)  # decoding and scoring
                    if "id" in ds.column_names:  # pairs items across models whose scored sets were built apart
                        for row, rid in zip(rows, ds["id"]):
                            row["id"] = str(rid)
                    if judge is not None and task == "qa" and get_entry(target).setting == "qabot":
                        metrics.update(_judge_qa(judge, ds, rows, cfg))
                    save_evaluation(
                        path,
                        config={"run": {"setting": setting, "label": label, "target": target, "task": task,
                                        "seed": seed, "skills": list(s.skills), "source": data.source,
                                        "demonstrations": demonstrations(ds), "request": key},
                                "generation": gen},
                        metrics=metrics, examples=rows, timings={"evaluate": seconds},
                        model={**base_ident, "adapter": (models[label] or {}).get("location")},
                        datasets={target: identity(ds)},
                    )
                answers[target][label] = [r["generation"] for r in rows]
                summary.setdefault(label, {})[target] = metrics
            del net
        if judge is not None or cfg.elo_without_judge != "none":
            for target in [t for t in s.targets if get_entry(t).setting == "reading_comprehension"]:
                _elo(judge, sets["targets"][target], answers[target], cfg, profile, setting, target, seed)
    return summary


# The code one (model, target) result is computed by: model loading, decoding, scoring and this
# stage (a saved soup adds the merging code that rebuilds it; an exported merge is an ordinary PEFT
# adapter whose own key covers that code). Prompts and records are keyed by content, trained
# models by their run folder, so edits to data generators, training or analysis do not re-decode.
EVAL_CODE = ("models.py", "evaluation", "stages/evaluate.py", "config.py", "task_kinds.py")
#: What of a dataset's identity the key holds: its content and how it was drawn, not where the
#: mirror lay or why the hub was unreachable this time (that text varies between sessions).
KEY_IDENTITY = ("name", "split", "source", "version", "fingerprint", "seed", "num_rows", "demonstrations", "dropped")


def request_key(base_ident: dict[str, Any], record: dict[str, Any] | None, ds: Any, task: str,
                gen: GenerationConfig, cfg: EvalConfig) -> str:
    """What one (model, target) result is a function of: the base, the trained model's run folder
    (named by the hash of its config, data and base), the scored items, the task, the decoding, the
    evaluation settings, the device kind (fp32 on CPU, bf16 on CUDA) and the code in ``EVAL_CODE``.
    A rerun of stage 08 (after a kill, say) reuses a result whose key matches instead of decoding
    again; anything else is recomputed."""
    rec = record or {}
    code = EVAL_CODE + (("merging",) if rec.get("kind") == "soup" else ())
    ident = identity(ds)
    return results.fingerprint({
        "model": base_ident, "trained": {k: rec.get(k) for k in ("kind", "location", "run_dir")},
        "dataset": {k: ident[k] for k in KEY_IDENTITY if k in ident}, "task": task, "generation": to_dict(gen),
        "evaluation": {k: v for k, v in to_dict(cfg).items() if k not in ("labels", "elo_labels")},
        "device": resolve_device("auto").type,
        "code": results.package_source_sha(code),
    })


def reusable(path: Path, key: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """(metrics, per-example rows) of a finished result for request ``key``, else None. Both files
    are written atomically, examples first, so a kill leaves either the old pair or the new one."""
    examples = examples_path(path)
    if not path.is_file() or not examples.is_file():
        return None
    rec = results.read_result(path)
    if (rec.get("config") or {}).get("run", {}).get("request") != key:
        return None
    return rec["metrics"], read_jsonl(examples)


def target_prompts(sets: dict[str, Any], target: str, label: str, data: DataConfig, profile: str):
    """The scored items of ``target`` as ``label`` sees them: program targets give the base model
    the 8-shot PAL prompt and every trained or merged model the 1-shot prompt; QABot and BioASQ
    are 1-shot for every model (the authors' code prompts the base model with the same demo);
    prompt-format targets are zero-shot. The identity records the shots and demonstration ids."""
    ds = sets["targets"][target]
    if label != "base" or get_entry(target).kind != "program":
        return ds
    from lorasoups.data import load

    ident = identity(ds)
    return load(target, "test", source=ident["source"], seed=data.seed, size=data.size(profile, target=True, name=target),
                mirror=data.mirror, shots=BASE_PAL_SHOTS)


def demonstrations(ds) -> dict[str, Any]:
    """Shots, demonstration ids, their few-shot entry and its source in the prompts of ``ds``
    (0, [] and None for a zero-shot prompt)."""
    demos = identity(ds).get("demonstrations") or {}
    return {"shots": int(demos.get("shots", 0)), "ids": list(demos.get("ids", [])),
            "dataset": demos.get("dataset"), "source": demos.get("source")}


def _judge_qa(judge, ds, rows, cfg: EvalConfig) -> dict[str, Any]:
    from lorasoups.evaluation.judge import judge_qa

    n = len(rows) if cfg.judge_examples is None else min(cfg.judge_examples, len(rows))
    contexts = list(ds["context"]) if "context" in ds.column_names else [""] * len(rows)
    jm, judged = judge_qa(judge, list(ds["question"])[:n], contexts[:n], list(ds["answer"])[:n],
                          [r["generation"] for r in rows][:n], progress=False)
    for row, verdict in zip(rows, judged):  # per example: the score (None: unparseable) and the reply
        row["judge_score"], row["judge_reply"] = verdict["score"], verdict["reply"]
    # judge_accuracy: share of the n judged items scored 2 (unparseable = wrong); judge_mean_score
    # beside it; judge_unparseable(_share), judge_score_counts, judge_scale (the mapping), judge_model
    return jm


def _elo(judge, ds, answers: dict[str, list[str]], cfg: EvalConfig, profile: str, setting: str,
         target: str, seed: int) -> None:
    from lorasoups.evaluation.elo import bootstrap_elo

    n = len(ds) if cfg.judge_examples is None or judge is None else min(cfg.judge_examples, len(ds))
    contexts = list(ds["context"])[:n] if "context" in ds.column_names else None
    players = {m: a[:n] for m, a in answers.items() if cfg.elo_labels is None or m in cfg.elo_labels}
    timer = results.Timer()
    results.reset_peak_memory()
    with timer("battles"):
        battles, rows, info, decided_by = _battles(judge, ds, players, contexts, n, cfg)
    with timer("bootstrap"):
        elo = bootstrap_elo(battles, n_bootstrap=cfg.elo_bootstrap, seed=seed).to_dict() if battles else None
    save_evaluation(results.result_path(f"eval/{setting}", "elo", f"{target}-s{seed}", profile=profile),
                    config={"run": {"setting": setting, "target": target, "seed": seed, "judge": cfg.judge,
                                    "battles_decided_by": decided_by}},
                    metrics={"elo": elo, **info}, examples=rows, timings=timer.seconds, datasets={target: identity(ds)})


def _battles(judge, ds, players: dict[str, list[str]], contexts, n: int, cfg: EvalConfig):
    """The ELO battles: the pairwise LLM judge's, else token F1 against the gold answer."""
    from lorasoups.evaluation.elo import reference_battles
    from lorasoups.evaluation.judge import pairwise_battles

    if judge is not None:
        # Figure 11's pairwise judge, every pair in both orders combined into one battle; the
        # summary carries the judge's position bias (first-position wins, flipped pairs)
        battles, rows, info = pairwise_battles(judge, list(ds["question"])[:n], players, contexts,
                                               list(ds["answer"])[:n], both_orders=True, progress=False)
        decided_by = cfg.judge
    else:  # no LLM judge: battles decided by token F1 against the gold answer (recorded as such)
        battles, rows, info = reference_battles(players, list(ds["answer"])[:n], metric=cfg.elo_without_judge)
        decided_by = f"reference_{cfg.elo_without_judge}"
    return battles, rows, info, decided_by
