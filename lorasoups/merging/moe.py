"""MoE soup: a learned router mixes the frozen skill LoRAs per token (mergoo's design, used as a
baseline by LoRA Soups; routing after Shazeer et al. 2017 / Switch Transformers 2101.03961).

    dW(x) = sum_k g_k(x) s_k B_k A_k,   g(x) = softmax(W_r x)   (optionally only the top-k kept)

``granularity: module`` (mergoo): one router per adapted module, fed with that module's own input,
so each router is sized by the module's ``in_features`` (``down_proj`` reads the intermediate size;
mergoo sizes every router by the hidden size and breaks there). ``granularity: layer`` (the paper's
text): one router per transformer block, fed with the block's input hidden state, shared by the
block's modules. Router parameters are found by module identity, never by name substring (mergoo
matches "gate" and so also unfreezes the base model's ``gate_proj``).

Like CAT, the soup is one peft adapter of rank sum_k r_k (A = [A_1;..;A_k], B = [B_1..B_k]); a forward
hook scales lora_A's output column j by g_{skill(j)}(x) s_{skill(j)}: 2 matmuls per module, not 2k.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lorasoups.merging.skill_adapters import MergeError, SkillAdapter, layer_index
from lorasoups.merging.soup import ADAPTER, SoupState, concat_skills, new_soup_adapter, write_factors


@dataclass
class MoeParams:
    """Parameters of the MoE soup (``build("moe", ...)``)."""

    granularity: Literal["module", "layer"] = "module"
    """One router per adapted module (``module``, mergoo) or per transformer layer (``layer``)."""
    top_k: int | None = None
    """Keep only the top_k skills per token (gates renormalised over them); None = dense softmax."""
    init: Literal["equal", "normal"] = "equal"
    """``equal``: zero router weights, every gate 1/k at start. ``normal``: N(0, 1/in_features)."""
    seed: int = 0
    """Seed for ``init: normal``."""
    skill_names: list[str] | None = None
    """Display names of the skills (default: adapter directory names)."""


class SkillRouter(nn.Module):
    """Linear router x -> k gates; keeps the last forward's probabilities for the balance loss."""

    def __init__(self, in_features: int, k: int, top_k: int | None, weight: torch.Tensor):
        super().__init__()
        self.k, self.top_k = k, top_k
        self.weight = nn.Parameter(weight.reshape(k, in_features).float().clone())
        self.last_probs: torch.Tensor | None = None  # (tokens, k) softmax before top-k
        self.last_assign: torch.Tensor | None = None  # (tokens, k) 0/1 which skills were used
        self.gates: torch.Tensor | None = None  # (..., k) gates of the current forward

    def route(self, x: torch.Tensor) -> torch.Tensor:
        logits = F.linear(x.to(self.weight.dtype), self.weight)
        probs = torch.softmax(logits, dim=-1)
        if self.top_k is not None and self.top_k < self.k:
            top = logits.topk(self.top_k, dim=-1).indices
            keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, top, True)
            gates = torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1)
            assign = keep.to(probs.dtype)
        else:
            gates = probs
            assign = F.one_hot(probs.argmax(-1), self.k).to(probs.dtype)
        self.last_probs, self.last_assign = probs.reshape(-1, self.k), assign.reshape(-1, self.k)
        self.gates = gates
        return gates

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, k={self.k}, top_k={self.top_k}"


class _GateLoraA:
    """Forward hook on lora_A: column j of its output times g_{skill(j)} * s_{skill(j)}."""

    def __init__(self, router: SkillRouter, col_skill: torch.Tensor, col_scale: torch.Tensor):
        self.router, self.col_skill, self.col_scale = router, col_skill, col_scale

    def __call__(self, module, inputs, output):
        gates = self.router.gates
        if self.col_skill.device != output.device:
            self.col_skill, self.col_scale = self.col_skill.to(output.device), self.col_scale.to(output.device)
        cols = gates.index_select(-1, self.col_skill) * self.col_scale
        return output * cols.to(output.dtype)


def _route_pre_hook(router: SkillRouter):
    def hook(module, args, kwargs):
        x = args[0] if args else kwargs.get("hidden_states", kwargs.get("x"))
        router.route(x)

    return hook


def build_moe(base_model: nn.Module, skills: list[SkillAdapter], params: MoeParams):
    k = len(skills)
    if params.top_k is not None and not 1 <= params.top_k <= k:
        raise MergeError(f"top_k must be between 1 and the number of adapters ({k}), got {params.top_k}")
    modules = skills[0].modules
    ranks = {m: sum(s.rank(m) for s in skills) for m in modules}
    model, layers = new_soup_adapter(base_model, skills, ranks)
    inner = model.base_model.model
    gen = torch.Generator().manual_seed(params.seed)

    def new_router(in_features: int) -> SkillRouter:
        w = torch.zeros(k, in_features)
        if params.init == "normal":
            w = torch.randn(k, in_features, generator=gen) / in_features**0.5
        return SkillRouter(in_features, k, params.top_k, w)

    routers: dict[str, SkillRouter] = {}  # owner module name -> router
    for m in modules:
        layer = layers[m]
        if params.granularity == "module":
            owner_name, owner = m, layer
            in_features = layer.base_layer.in_features
        else:
            idx = layer_index(m)
            if idx is None:
                raise MergeError(f"granularity 'layer': cannot find a layer index in module name {m}")
            parts = m.split(".")
            owner_name = ".".join(parts[: parts.index(str(idx)) + 1])
            owner = inner.get_submodule(owner_name)
            in_features = inner.config.hidden_size
        if owner_name not in routers:
            router = new_router(in_features).to(layer.lora_A[ADAPTER].weight.device)
            owner.add_module("lorasoup_router", router)
            owner.register_forward_pre_hook(_route_pre_hook(router), with_kwargs=True)
            routers[owner_name] = router
        A, B, col_skill = concat_skills(skills, m)
        write_factors(layer, A, B)
        col_scale = torch.tensor([skills[j].scaling[m] for j in col_skill.tolist()])
        layer.lora_A[ADAPTER].register_forward_hook(_GateLoraA(routers[owner_name], col_skill, col_scale))
    for p in model.parameters():
        p.requires_grad_(False)
    ids = {id(r.weight) for r in routers.values()}
    trainable = {n: p for n, p in model.named_parameters() if id(p) in ids}
    state = SoupState("moe", {}, skills, modules, trainable=trainable)
    state.extra["routers"] = routers
    return model, state


def load_balancing_loss(soup: nn.Module) -> torch.Tensor:
    """Switch-Transformer balance loss of the last forward, averaged over routers.

    Per router: k * sum_i f_i P_i, with f_i the fraction of tokens assigned to skill i (top-1, or the
    kept top-k) and P_i the mean router probability; it is 1 for perfectly balanced routing (all
    tokens count, padding included). Add ``coef * load_balancing_loss(soup)`` to the LM loss.
    """
    from lorasoups.merging.soup import soup_state

    state = soup_state(soup)
    routers = state.extra.get("routers")
    if not routers:
        raise MergeError(f"soup method '{state.method}' has no routers (only 'moe' soups do)")
    losses = []
    for r in routers.values():
        if r.last_probs is None:
            raise MergeError("no forward pass has run yet; the balance loss reads the last forward's routing")
        f = r.last_assign.mean(0) / r.last_assign.sum(-1).mean()
        losses.append(r.k * (f.detach() * r.last_probs.mean(0)).sum())
    return torch.stack(losses).mean()


def gate_table(soup: nn.Module) -> list[dict]:
    """Mean gate per router and skill over the tokens of the last forward (padding included): the
    MoE counterpart of :func:`alphas_table` (rows: router, layer, skill, mean_gate)."""
    from lorasoups.merging.soup import soup_state

    state = soup_state(soup)
    routers = state.extra.get("routers")
    if not routers:
        raise MergeError(f"soup method '{state.method}' has no routers (only 'moe' soups do)")
    rows = []
    for owner, r in routers.items():
        if r.gates is None:
            raise MergeError("no forward pass has run yet; the gate table reads the last forward's routing")
        mean = r.gates.detach().reshape(-1, r.k).float().mean(0).cpu()
        for j, skill in enumerate(state.skill_names):
            rows.append({"router": owner, "layer": layer_index(owner), "skill": skill, "mean_gate": float(mean[j])})
    return rows
