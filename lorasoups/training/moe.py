"""MoE router learning: the same loop as CAT (:func:`lorasoups.training.soup.train_soup`), but the
soup is ``moe`` and only its routers train; ``balance_loss_coef`` adds the Switch-Transformer
load-balancing loss (off by default, as in the paper's baseline).

MoE gates depend on each token, so the result cannot be folded into one LoRA: the run keeps
``soup/`` (reload with :func:`lorasoups.merging.load_soup`) and no ``adapter/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from lorasoups.training.sft import RunResult
from lorasoups.training.soup import SoupTrainConfig, train_soup


def train_moe(base: str, adapters: list[str | Path], train_dataset: Any, eval_dataset: Any,
              cfg: SoupTrainConfig | None = None, **kwargs: Any) -> RunResult:
    """Learn the routers of a MoE soup of ``adapters`` (router granularity etc. in ``cfg.soup``)."""
    return train_soup("moe", base, adapters, train_dataset, eval_dataset, cfg, **kwargs)
