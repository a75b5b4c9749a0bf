"""Batched generation with the paper's decoding, for any model with Hugging Face ``generate``.

The base model, a ``PeftModel`` with one adapter, or a soup from the soup engine: anything that is
an ``nn.Module`` with ``generate(input_ids=..., attention_mask=...)``. Prompts are left-padded
(decoder-only models continue from the right end) and sorted by length into batches to waste
little compute on padding; the KV cache is on. Outputs come back in the prompts' order.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class GenerationConfig:
    """Decoding settings; the defaults are the paper's (§B: temperature 0.01, top_p 0.95, one
    beam, at most 200 new tokens)."""

    max_new_tokens: int = 200
    """Upper bound on generated tokens per prompt."""
    temperature: float = 0.01
    """Sampling temperature (the paper samples at 0.01, which is nearly greedy)."""
    top_p: float = 0.95
    """Nucleus sampling mass."""
    num_beams: int = 1
    """Beam count; the paper uses one."""
    greedy: bool = False
    """Plain argmax decoding instead of the paper's sampling (exactly reproducible)."""
    batch_size: int = 8
    """Prompts per forward pass."""
    seed: int = 0
    """Sampling seed; batch ``i`` uses ``seed + i`` so a rerun gives the same text."""
    stop_strings: list[str] = field(default_factory=list)
    """Generations are cut at the first of these (after decoding), e.g. ``"### Instruction:"``."""
    sort_by_length: bool = True
    """Batch prompts of similar length together (less padding); order of results is unchanged."""


def _hf_kwargs(cfg: GenerationConfig, tokenizer) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": cfg.max_new_tokens,
        "num_beams": cfg.num_beams,
        "use_cache": True,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if cfg.greedy:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=None)
    return kwargs


def _cut(text: str, stops: Sequence[str]) -> str:
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if s and i != -1:
            cut = min(cut, i)
    return text[:cut]


def _device_of(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def generate(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    config: GenerationConfig | None = None,
    progress: bool = True,
) -> list[str]:
    """Generate one completion per prompt (prompt text excluded, special tokens dropped).

    ``prompts`` are final strings: apply the chat template first (``lorasoups.models.chat_prompt``)
    when the model expects one.
    """
    cfg = config or GenerationConfig()
    if isinstance(prompts, str):
        raise TypeError("generate: prompts must be a sequence of strings, not one string")
    if cfg.batch_size < 1:
        raise ValueError(f"generate: batch_size must be >= 1, got {cfg.batch_size}")
    if tokenizer.pad_token_id is None:
        raise ValueError("generate: the tokenizer has no pad token (load it with lorasoups.models.load_base)")
    order = list(range(len(prompts)))
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    if cfg.sort_by_length:
        order.sort(key=lambda i: -lengths[i])
    batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    device = _device_of(model)
    outputs: list[str | None] = [None] * len(prompts)
    hf_kwargs = _hf_kwargs(cfg, tokenizer)
    iterator: Any = enumerate(batches)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(batches), desc="generate")
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        for b, idx in iterator:
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(device)
            with torch.random.fork_rng(devices=devices), torch.inference_mode():
                torch.manual_seed(cfg.seed + b)
                out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **hf_kwargs)
            new_tokens = out[:, enc["input_ids"].shape[1] :]
            texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for i, text in zip(idx, texts):
                outputs[i] = _cut(text, cfg.stop_strings)
    finally:
        tokenizer.padding_side = padding_side
        if was_training:
            model.train()
    return [o if o is not None else "" for o in outputs]


__all__ = ["GenerationConfig", "generate"]
