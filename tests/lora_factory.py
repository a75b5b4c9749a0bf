"""Real PEFT adapters of the tiny Llama for the merging tests (imported by test_merging*.py)."""
from __future__ import annotations

import copy
from pathlib import Path

import torch

TARGETS = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]


def make_adapter(base, path: Path, r: int, alpha: float, seed: int, targets=TARGETS, **kw) -> Path:
    """Save a LoRA of rank ``r`` on ``base`` with random non-zero B (``init_lora_weights=False``),
    so every merge of it has a non-trivial delta weight."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, init_lora_weights=False, **kw)
    get_peft_model(copy.deepcopy(base), cfg).save_pretrained(str(path))
    return path
