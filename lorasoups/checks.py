"""Stage 00: does the base model load and answer deterministically?

The cheapest end-to-end check of a fresh machine: model conversion/caching, chat template,
left-padded tokenizer and greedy decoding, written as a result JSON like every later stage.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from lorasoups import results
from lorasoups.models import chat_prompt, load_base, model_identity


@dataclass
class CheckBaseModelConfig:
    """``check_base_model:`` section."""

    prompt: str = "What is 12 + 30? Answer with the number only."
    """User turn sent through the model's chat template."""
    max_new_tokens: int = 16
    """Greedy decoding length."""


def greedy_answer(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """Greedy decoding of one chat turn, the completion only."""
    text = chat_prompt(tokenizer, prompt)
    batch = tokenizer(text, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)


def check_base_model(model_name: str, cfg: CheckBaseModelConfig, seed: int = 0,
                     dtype: str = "auto", device: str = "auto", load_in_4bit: bool = False) -> dict[str, Any]:
    """Load the model twice (the second load must hit the cache) and answer ``cfg.prompt`` twice."""
    timer = results.Timer()
    with timer("first_load"):
        model, tokenizer = load_base(model_name, dtype=dtype, device=device, load_in_4bit=load_in_4bit, seed=seed)
    with timer("second_load"):
        model, tokenizer = load_base(model_name, dtype=dtype, device=device, load_in_4bit=load_in_4bit, seed=seed)
    start = time.perf_counter()
    answers = [greedy_answer(model, tokenizer, cfg.prompt, cfg.max_new_tokens) for _ in range(2)]
    timer.seconds["generate"] = round(time.perf_counter() - start, 3)
    return {
        "model": model_identity(model_name),
        "answer": answers[0],
        "deterministic": answers[0] == answers[1],
        "parameters": sum(p.numel() for p in model.parameters()),
        "timings": timer.seconds,
    }
