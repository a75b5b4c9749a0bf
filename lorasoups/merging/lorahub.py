"""LoraHub composition (Huang et al. 2023, arXiv 2307.13269): one weight per skill, all layers,

    A = sum_k w_k A_k,   B = sum_k w_k B_k      (LoraHub's element-wise sum of the LoRA factors)

the weights being found outside by a gradient-free optimiser (nevergrad, in the training code),
which calls :func:`set_weights` once per candidate. set_weights only rewrites the soup adapter's A
and B in place (k x LoRA-size multiply-adds, no new modules, no peft calls), so it is cheap enough
to call thousands of times. Like LoraHub itself it needs equal ranks and equal scalings.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from lorasoups.merging.skill_adapters import MergeError, SkillAdapter, require_equal_ranks
from lorasoups.merging.soup import ADAPTER, SoupState, new_soup_adapter


@dataclass
class LoraHubParams:
    """Parameters of a LoraHub soup (``build("lorahub", ...)``)."""

    alphas: list[float] | None = None
    """Initial weight per skill (default 1/k); change later with ``set_weights``."""
    skill_names: list[str] | None = None
    """Display names of the skills (default: adapter directory names)."""


class FactorStack(nn.Module):
    """The k skills' A (k, r, in) and B (k, out, r) of one module, as non-persistent buffers so
    they follow ``.to(device)`` with the model."""

    def __init__(self, skills: list[SkillAdapter], module: str):
        super().__init__()
        self.register_buffer("A", torch.stack([s.A[module] for s in skills]), persistent=False)
        self.register_buffer("B", torch.stack([s.B[module] for s in skills]), persistent=False)


def build_lorahub(base_model: nn.Module, skills: list[SkillAdapter], params: LoraHubParams):
    require_equal_ranks(skills, "lorahub")
    if params.alphas is not None and len(params.alphas) != len(skills):
        raise MergeError(
            f"alphas has {len(params.alphas)} values but there are {len(skills)} adapters ({[s.name for s in skills]})"
        )
    modules = skills[0].modules
    for m in modules:
        scalings = {s.scaling[m] for s in skills}
        if len(scalings) != 1:
            listing = ", ".join(f"{s.name}: {s.scaling[m]:g}" for s in skills)
            raise MergeError(
                f"method 'lorahub' sums the LoRA factors and needs equal scalings (lora_alpha / r), "
                f"but module {m} has {listing}"
            )
    ranks = {m: skills[0].rank(m) for m in modules}
    alpha = {m: skills[0].scaling[m] * ranks[m] for m in modules}  # keep the skills' scaling
    model, layers = new_soup_adapter(base_model, skills, ranks, lora_alpha=alpha)
    stacks = {}
    for m in modules:
        stacks[m] = FactorStack(skills, m).to(layers[m].lora_A[ADAPTER].weight.device)
        layers[m].add_module("lorasoup_stack", stacks[m])
    state = SoupState("lorahub", {}, skills, modules)
    state.extra["stacks"] = stacks
    state.extra["layers"] = layers
    state.extra["weights"] = torch.zeros(len(skills))
    state.saved["lorahub.weights"] = (lambda: state.extra["weights"], lambda v: set_lorahub_weights(state, v))
    state.set_weights = partial(set_lorahub_weights, state)
    set_lorahub_weights(state, params.alphas if params.alphas is not None else [1.0 / len(skills)] * len(skills))
    return model, state


@torch.no_grad()
def set_lorahub_weights(state: SoupState, w) -> None:
    k = len(state.skills)
    wt = torch.as_tensor(w, dtype=torch.float32).reshape(-1)
    if wt.numel() != k:
        raise MergeError(f"weights has {wt.numel()} values but there are {k} adapters ({state.skill_names})")
    if not torch.isfinite(wt).all():
        raise MergeError(f"weights contains NaN or Inf: {wt.tolist()}")
    for m, stack in state.extra["stacks"].items():
        layer = state.extra["layers"][m]
        ww = wt.to(stack.A.device)
        a, b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
        a.copy_(torch.einsum("k,kri->ri", ww, stack.A).to(a.dtype))
        b.copy_(torch.einsum("k,kor->or", ww, stack.B).to(b.dtype))
    state.extra["weights"] = wt.clone()
