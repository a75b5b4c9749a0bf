"""The registry of soup methods (name -> method with its paper) and :func:`build`.

Each method is a small module exposing a parameter dataclass and a builder
``(base_model, skills, params) -> (peft_model, SoupState)``; this file only lists them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from lorasoups.config import ConfigError, did_you_mean, from_dict, to_dict
from lorasoups.merging import cat, lorahub, moe, task_arithmetic
from lorasoups.merging.skills import MergeError, load_skills
from lorasoups.merging.soup import SoupState, attach


@dataclass(frozen=True)
class Method:
    """One soup method: how to build it, its parameters, and where it comes from."""

    name: str
    description: str
    paper: str
    url: str
    params: type
    builder: Callable[..., tuple[nn.Module, SoupState]]
    learnable: bool = False  # has parameters that training updates (CAT alphas, MoE routers)
    exportable: bool = True  # export_adapter gives a standard PEFT LoRA with the same outputs


_SOUPS = "LoRA Soups (Prabhakar et al., COLING 2025)"
_SOUPS_URL = "https://arxiv.org/abs/2410.13025"
_TIES = ("TIES-Merging (Yadav et al., NeurIPS 2023)", "https://arxiv.org/abs/2306.01708")
_DARE = ("DARE (Yu et al., ICML 2024)", "https://arxiv.org/abs/2311.03099")
_TA = ("Task arithmetic (Ilharco et al., ICLR 2023)", "https://arxiv.org/abs/2212.04089")


def _weighted(name: str, description: str, ref: tuple[str, str]) -> Method:
    return Method(
        name, description, ref[0], ref[1], task_arithmetic.WeightedParams,
        partial(task_arithmetic.build_weighted, name),
    )


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("cat", "learnable concatenation: dW = sum_k alpha_k s_k B_k A_k, alpha trained, LoRAs frozen",
               _SOUPS, _SOUPS_URL, cat.CatParams, cat.build_learned, learnable=True),
        Method("cat_static", "concatenation with fixed alpha (the paper's ablation uses 0.5)",
               _SOUPS, _SOUPS_URL, cat.CatStaticParams, cat.build_static),
        _weighted("linear", "factor-wise linear merge (sum a B)(sum a A), cross terms included (peft)", _TA),
        _weighted("ties", "TIES on the LoRA factors: magnitude prune, sign election, disjoint mean (peft)", _TIES),
        _weighted("dare", "DARE on the LoRA factors: random prune with 1/density rescale, linear sum (peft)", _DARE),
        _weighted("dare_ties", "DARE pruning then TIES sign election on the LoRA factors (peft)", _DARE),
        _weighted("magnitude_prune", "magnitude pruning of the LoRA factors, linear sum (peft)", _TIES),
        _weighted("svd", "dW-space weighted sum truncated by SVD to svd_rank (peft)", _TA),
        _weighted("ties_svd", "TIES in dW space, truncated by SVD (peft)", _TIES),
        _weighted("dare_svd", "DARE in dW space, truncated by SVD (peft dare_linear_svd)", _DARE),
        _weighted("dare_ties_svd", "DARE + TIES in dW space, truncated by SVD (peft)", _DARE),
        _weighted("magnitude_prune_svd", "magnitude pruning in dW space, truncated by SVD (peft)", _TIES),
        Method("moe", "per-token router over the frozen LoRAs (mergoo's design, per module or per layer)",
               "Mixture of LoRA experts, as merged by mergoo (Leeroo AI, 2024); routing of Shazeer et al. 2017",
               "https://github.com/Leeroo-AI/mergoo", moe.MoeParams, moe.build_moe,
               learnable=True, exportable=False),
        Method("lorahub", "one weight per skill on the summed factors, set from outside (gradient-free search)",
               "LoraHub (Huang et al., COLM 2024)", "https://arxiv.org/abs/2307.13269",
               lorahub.LoraHubParams, lorahub.build_lorahub),
    ]
}


def _plain(value: Any) -> Any:
    """numpy arrays / tensors / tuples in parameters -> plain lists, so notebooks can pass them."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def build(method: str, base_model: nn.Module, adapters: list[str | Path], **params: Any) -> nn.Module:
    """A soup of the skill LoRA ``adapters`` (PEFT adapter dirs) on ``base_model``.

    Returns a ``peft.PeftModel`` (forward, ``generate``, Trainer all work) carrying a
    :class:`SoupState` as ``.lorasoup``. Like peft, it wraps ``base_model`` in place: use a fresh
    base model per soup. Everything is validated before the model is touched; nothing is written.
    """
    spec = METHODS.get(method)
    if spec is None:
        raise MergeError(f"unknown soup method '{method}' (known: {', '.join(METHODS)}){did_you_mean(method, METHODS)}")
    try:
        p = from_dict(spec.params, {k: _plain(v) for k, v in params.items()}, where=f"merging.build('{method}')")
    except ConfigError as exc:
        raise MergeError(str(exc)) from exc
    if hasattr(base_model, "peft_config"):
        raise MergeError("base_model already carries peft adapters (an earlier soup?); pass a fresh base model")
    skills = load_skills(adapters, base_model, names=p.skill_names)
    model, state = spec.builder(base_model, skills, p)
    state.params = to_dict(p)
    return attach(model, state)
