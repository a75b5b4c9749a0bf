"""LoraHub (Huang et al. 2023, arXiv 2307.13269): gradient-free search of one weight per skill LoRA.

As the original: nevergrad's ``NGOpt`` searches w in [-1.5, 1.5]^k starting from 0, minimising the
few-shot cross-entropy on 5 target examples plus 0.05 * ||w||_1, with a budget of 40 evaluations.
The original runs only on seq2seq models (Flan-T5); ours scores a decoder-only model on the
completion tokens of prompt/completion examples. Each candidate costs one ``set_weights`` (an
in-place rewrite of the soup's A and B) and one forward over the examples.

The evaluation loop is hand-written (a few batched forwards under ``no_grad``): there is nothing
to back-propagate, so a Trainer would only add overhead. A search is short, so it is not
checkpointed: a killed search restarts from the beginning (and is cached once finished).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lorasoups.config import ConfigError, to_dict
from lorasoups.results import package_versions
from lorasoups.training.runs import (
    Run,
    adapter_identity,
    atomic_write_text,
    base_identity,
    check_adapter_base,
    dataset_fingerprint,
)
from lorasoups.training.sft import RunResult, check_dataset, load_for_training
from lorasoups.training.soup import skill_names


@dataclass
class LoraHubConfig:
    """``lorahub:`` section (LoraHub's defaults)."""

    n_examples: int = 5
    """Few-shot target examples the loss is computed on (the first n of the given dataset)."""
    budget: int = 40
    """Loss evaluations nevergrad may spend (LoraHub's ``max_inference_step``)."""
    lower: float = -1.5
    """Lower bound of every weight."""
    upper: float = 1.5
    """Upper bound of every weight."""
    l1: float = 0.05
    """Weight of the L1 regulariser on the LoRA weights."""
    optimizer: str = "NGOpt"
    """A name in ``nevergrad.optimizers.registry``."""
    batch_size: int = 5
    """Examples per forward pass."""
    max_length: int = 512
    """Tokens per example; a longer example is an error (truncating would score a different task)."""
    seed: int = 0
    """Seed of nevergrad's random state."""

    def __post_init__(self) -> None:
        if not self.lower < 0.0 < self.upper:
            raise ConfigError(f"lorahub: bounds [{self.lower}, {self.upper}] must contain the start point 0")
        if self.n_examples <= 0 or self.budget <= 0 or self.batch_size <= 0:
            raise ConfigError("lorahub: n_examples, budget and batch_size must be > 0")


def encode_examples(tokenizer, examples: Any, max_length: int) -> list[dict[str, torch.Tensor]]:
    """input_ids and labels (-100 on prompt tokens) for each prompt/completion example, + EOS."""
    out = []
    for i, ex in enumerate(examples):
        prompt_ids = tokenizer(ex["prompt"], add_special_tokens=False)["input_ids"]
        full = tokenizer(ex["prompt"] + ex["completion"], add_special_tokens=False)["input_ids"]
        full = full + [tokenizer.eos_token_id]
        n_prompt = min(len(prompt_ids), len(full) - 1)
        if len(full) > max_length:
            raise ConfigError(f"lorahub: example {i} has {len(full)} tokens, more than max_length {max_length}")
        labels = [-100] * n_prompt + full[n_prompt:]
        out.append({"input_ids": torch.tensor(full), "labels": torch.tensor(labels)})
    return out


@torch.no_grad()
def few_shot_loss(model, encoded: list[dict[str, torch.Tensor]], batch_size: int, pad_id: int) -> float:
    """Mean cross-entropy per completion token over all examples."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start:start + batch_size]
        width = max(len(e["input_ids"]) for e in batch)
        ids = torch.full((len(batch), width), pad_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for j, e in enumerate(batch):  # right padding
            n = len(e["input_ids"])
            ids[j, :n], labels[j, :n], mask[j, :n] = e["input_ids"], e["labels"], 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        shift_logits, shift_labels = logits[:, :-1], labels[:, 1:].to(device)
        loss = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]),
                                                 shift_labels.reshape(-1), ignore_index=-100, reduction="sum")
        total += float(loss)
        count += int((shift_labels != -100).sum())
    return total / max(count, 1)


def train_lorahub(base: str, adapters: list[str | Path], examples: Any, cfg: LoraHubConfig | None = None, *,
                  name: str = "lorahub", device: str = "auto") -> RunResult:
    """Search LoraHub weights for ``adapters`` on the first ``cfg.n_examples`` of ``examples``.

    Writes ``weights.json`` (weights, losses, every candidate tried) and ``adapter/`` (the soup at
    the best weights, a standard PEFT adapter).
    """
    import nevergrad as ng
    import numpy as np

    from lorasoups.merging import build, export_adapter, set_weights
    from lorasoups.models import resolve_device

    cfg = cfg or LoraHubConfig()
    check_dataset(examples, f"{name}: examples", completion_only_loss=True)
    if len(examples) < cfg.n_examples:
        raise ConfigError(f"{name}: {len(examples)} examples given, n_examples is {cfg.n_examples}")
    if cfg.optimizer not in ng.optimizers.registry:
        from lorasoups.config import did_you_mean

        raise ConfigError(f"lorahub.optimizer: unknown nevergrad optimizer {cfg.optimizer!r}"
                          f"{did_you_mean(cfg.optimizer, ng.optimizers.registry)}")
    check_adapter_base(adapters, base)
    shots = examples.select(range(cfg.n_examples))
    run = Run("lorahub", name, {
        "base": base_identity(base),
        "adapters": [adapter_identity(a) for a in adapters],
        "examples": dataset_fingerprint(shots),
        "lorahub": to_dict(cfg),
    })
    if run.is_complete():
        return RunResult(run.dir, run.adapter, True, run.summary())
    run.start()

    model, tokenizer = load_for_training(base)
    soup = build("lorahub", model, [str(a) for a in adapters], skill_names=skill_names(adapters))
    soup.to(resolve_device(device)).eval()
    encoded = encode_examples(tokenizer, shots, cfg.max_length)
    k = len(adapters)
    history: list[dict[str, Any]] = []

    def objective(w: np.ndarray) -> float:
        set_weights(soup, w.tolist())
        ce = few_shot_loss(soup, encoded, cfg.batch_size, tokenizer.pad_token_id)
        total = ce + cfg.l1 * float(np.abs(w).sum())
        history.append({"weights": [float(x) for x in w], "loss": ce, "objective": total})
        return total

    start = time.perf_counter()
    set_weights(soup, [0.0] * k)  # the start point: the base model alone
    loss_at_zero = few_shot_loss(soup, encoded, cfg.batch_size, tokenizer.pad_token_id)
    param = ng.p.Array(init=np.zeros(k), lower=cfg.lower, upper=cfg.upper)
    param.random_state = np.random.RandomState(cfg.seed)
    optimizer = ng.optimizers.registry[cfg.optimizer](parametrization=param, budget=cfg.budget)
    recommendation = optimizer.minimize(objective)
    best = [float(x) for x in recommendation.value]
    best_objective = objective(np.asarray(best))  # also leaves the soup at the best weights
    record = {
        "weights": dict(zip(soup.lorasoup.skill_names, best)),
        "objective": best_objective,
        "loss": history[-1]["loss"],
        "loss_at_zero": loss_at_zero,
        "history": history[:-1],
    }
    atomic_write_text(run.dir / "weights.json", json.dumps(record, indent=2) + "\n")
    export_adapter(soup, run.adapter, overwrite=True)
    summary = {"kind": "lorahub", "name": name, "key": run.key, "weights": record["weights"],
               "objective": best_objective, "loss": record["loss"], "loss_at_zero": record["loss_at_zero"],
               "evaluations": len(history) - 1, "seconds": round(time.perf_counter() - start, 2),
               "versions": package_versions()}
    run.finish(summary)
    return RunResult(run.dir, run.adapter, False, summary, model=soup)
