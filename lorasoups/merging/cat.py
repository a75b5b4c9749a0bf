"""CAT, learnable concatenation of LoRAs (LoRA Soups, Prabhakar et al. 2024, arXiv 2410.13025).

    dW^l = sum_k alpha_k^l s_k B_k A_k        (skill LoRAs frozen, only alpha trains)

How it runs. Rather than keeping the k skill adapters active in peft (peft loops over active
adapters: 2k small matmuls per module; measured: 1.31x a single-LoRA step for k = 2), the soup is ONE
peft adapter of rank R = sum_k r_k holding A = [A_1; ...; A_k] and B = [B_1 ... B_k] (frozen), and
lora_B is reparametrised (``torch.nn.utils.parametrize``) as B * c with c the per-rank-column
vector alpha_k s_k. The forward is then exactly a rank-R LoRA (2 matmuls), the gradient reaches
alpha through an (out x R) element-wise product, ``get_delta_weight``/merging see the scaled B,
and exporting the soup (:func:`lorasoups.merging.export_adapter`) is the exact fold of the paper,
with no approximation. peft's own ``add_weighted_adapter(combination_type="cat")`` computes the same
fold for one global weight per skill (it puts s_k on A); we build it ourselves so alpha can vary
per layer/module and A stays the skills' own A (a test checks both agree).

``cat_static`` is the same soup with alpha fixed (the paper's ablation uses alpha = 0.5).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from lorasoups.merging.skill_adapters import MergeError, SkillAdapter, layer_index
from lorasoups.merging.soup import ADAPTER, SoupState, concat_skills, new_soup_adapter, write_factors

Granularity = Literal["global", "layer", "module"]


@dataclass
class CatParams:
    """Parameters of learned CAT (``build("cat", ...)``)."""

    granularity: Granularity = "layer"
    """One alpha per skill (``global``), per skill and transformer layer (``layer``, the paper's
    text), or per skill and adapted module (``module``, the authors' released code)."""
    parameterisation: Literal["softmax", "free", "clamp"] = "softmax"
    """``softmax``: free weights per group through a softmax over skills (released code; alpha in
    [0,1], sums to 1). ``free``: alpha unconstrained. ``clamp``: alpha = clip(w, 0, 1) (paper's text;
    call :func:`project_alphas_` after each optimiser step so the clip does not kill gradients)."""
    init: Literal["equal", "released", "weights"] = "equal"
    """``equal``: every alpha starts at 1/k (static CAT). ``released``: the authors' released code,
    one raw weight (a softmax logit) per group and skill drawn from N(0, 1), seeded by ``seed``
    (their lr 1e-4 for one epoch leaves alpha near this random start). ``weights``: alpha starts at ``init_weights`` in every group, e.g. to start
    learning from LoraHub's solution (see ``init_weights`` for what each parameterisation can hold)."""
    init_weights: list[float] | None = None
    """``init: weights`` only: k finite starting weights, one per skill, the same for every group.
    ``free``: alpha = w exactly. ``clamp``: alpha = clip(w, 0, 1), so weights outside [0, 1] start
    clipped (allowed, with a warning; :func:`project_alphas_` clips the raw values at the first step).
    ``softmax``: only positive weights; alpha = w / sum(w), i.e. the proportions, the scale is lost
    (a sum-to-one softmax cannot hold it); zero or negative weights raise :class:`MergeError`."""
    seed: int = 0
    """Seed for ``init: released`` (training passes the run seed unless the soup section sets one)."""
    skill_names: list[str] | None = None
    """Display names of the skills (default: adapter directory names)."""


@dataclass
class CatStaticParams:
    """Parameters of CAT with fixed alphas (``build("cat_static", ...)``)."""

    alphas: list[float] | list[list[float]] | None = None
    """k values (same for every group), or one row of k values per group (n_layers rows for
    ``layer``, one per adapted module, in sorted module order, for ``module``). Default 1/k."""
    granularity: Granularity = "global"
    """How alphas are grouped, as for ``cat``."""
    skill_names: list[str] | None = None
    """Display names of the skills (default: adapter directory names)."""


class CatAlphas(nn.Module):
    """The trainable mixing weights, one row of k per group (global / layer / module)."""

    def __init__(self, groups: list[str], k: int, parameterisation: str, raw: torch.Tensor):
        super().__init__()
        self.groups = list(groups)
        self.k = k
        self.parameterisation = parameterisation
        self.weight = nn.Parameter(raw.float().clone().reshape(len(groups), k))

    def alpha(self) -> torch.Tensor:
        """(n_groups, k) mixing weights after the parameterisation."""
        if self.parameterisation == "softmax":
            return torch.softmax(self.weight, dim=-1)
        if self.parameterisation == "clamp":
            return self.weight.clamp(0.0, 1.0)
        return self.weight

    def extra_repr(self) -> str:
        return f"groups={len(self.groups)}, k={self.k}, parameterisation={self.parameterisation}"


class ScaleColumns(nn.Module):
    """Parametrisation of one module's lora_B: B -> B * (alpha_{group, skill(j)} * s_{skill(j)})_j."""

    def __init__(self, alphas: CatAlphas, group: int, col_skill: torch.Tensor, col_scale: torch.Tensor):
        super().__init__()
        # A plain list, not a submodule: the alphas are registered once, on the PeftModel, and
        # shared by every module's parametrisation.
        self._alphas = [alphas]
        self.group = group
        self.register_buffer("col_skill", col_skill, persistent=False)
        self.register_buffer("col_scale", col_scale.float(), persistent=False)

    def forward(self, B: torch.Tensor) -> torch.Tensor:
        a = self._alphas[0].alpha()[self.group]
        return B * (a[self.col_skill] * self.col_scale).to(B.dtype)


def group_labels(modules: list[str], granularity: str) -> tuple[list[str], list[int]]:
    """Group names and each module's group index for a granularity."""
    if granularity == "global":
        return ["all"], [0] * len(modules)
    if granularity == "module":
        return list(modules), list(range(len(modules)))
    layers = []
    for m in modules:
        idx = layer_index(m)
        if idx is None:
            raise MergeError(f"granularity 'layer': cannot find a layer index in module name {m}")
        layers.append(idx)
    order = sorted(set(layers))
    return [f"layer {i}" for i in order], [order.index(i) for i in layers]


def weights_raw(
    weights: list[float] | torch.Tensor | None,
    k: int,
    parameterisation: str,
    names: list[str] | None = None,
) -> torch.Tensor:
    """The (k,) raw weights whose alpha (after ``parameterisation``) is ``weights`` (``init: weights``).

    Raises :class:`MergeError` when there are not k finite weights, or when the parameterisation
    cannot start from them at all (softmax and a weight <= 0). Softmax keeps only the proportions
    w / sum(w); clamp applies clip(w, 0, 1) (a warning says so when a weight is outside [0, 1]).
    """
    listing = f" ({names})" if names else ""
    if weights is None:
        raise MergeError("init 'weights' needs init_weights: one starting weight per adapter" + listing)
    w = torch.as_tensor(weights, dtype=torch.float32).reshape(-1)
    if w.numel() != k:
        raise MergeError(f"init_weights has {w.numel()} values but there are {k} adapters{listing}")
    if not torch.isfinite(w).all():
        raise MergeError(f"init_weights contains NaN or Inf: {w.tolist()}")
    if parameterisation == "softmax":
        if (w <= 0).any():
            raise MergeError(
                f"init_weights {w.tolist()}: parameterisation 'softmax' gives positive alphas summing to 1 and "
                f"cannot represent zero or negative weights; use parameterisation: free to start from them"
            )
        return w.log()  # softmax(log w) = w / sum(w)
    if parameterisation == "clamp" and ((w < 0) | (w > 1)).any():
        warnings.warn(
            f"init_weights {w.tolist()}: parameterisation 'clamp' applies alpha = clip(w, 0, 1), so the soup "
            f"starts from {w.clamp(0, 1).tolist()}; use parameterisation: free to start from the weights as given",
            stacklevel=3,
        )
    return w


def init_raw(
    n_groups: int,
    k: int,
    parameterisation: str,
    init: str,
    seed: int,
    weights: list[float] | torch.Tensor | None = None,
    names: list[str] | None = None,
) -> torch.Tensor:
    """Initial raw weights so that alpha = 1/k (``equal``), raw ~ N(0, 1) (``released``), or alpha =
    ``weights`` in every group as far as the parameterisation allows (``weights``, see :func:`weights_raw`)."""
    if init == "weights":
        return weights_raw(weights, k, parameterisation, names).expand(n_groups, k).clone()
    if weights is not None:
        raise MergeError(f"init_weights is only used with init 'weights', not with init '{init}'; "
                         f"set init: weights to start from them")
    if init == "released":
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(n_groups, k, generator=gen)
    if parameterisation == "softmax":
        return torch.zeros(n_groups, k)
    return torch.full((n_groups, k), 1.0 / k)


def build_cat_soup(
    base_model: nn.Module,
    skills: list[SkillAdapter],
    granularity: str,
    parameterisation: str,
    raw: torch.Tensor | None,
    init: str = "equal",
    seed: int = 0,
    init_weights: list[float] | None = None,
):
    """The CAT soup (learned or static): rank-sum adapter with B reparametrised by alpha.

    ``raw`` given: the raw weights as they are; else from ``init`` (see :func:`init_raw`)."""
    modules = skills[0].modules
    ranks = {m: sum(s.rank(m) for s in skills) for m in modules}
    peft_model, layers = new_soup_adapter(base_model, skills, ranks)
    groups, group_of = group_labels(modules, granularity)
    k = len(skills)
    if raw is None:
        raw = init_raw(len(groups), k, parameterisation, init, seed, init_weights)
    device = layers[modules[0]].lora_B[ADAPTER].weight.device
    alphas = CatAlphas(groups, k, parameterisation, raw).to(device)
    # Registered on the PeftModel so .to(), .parameters() and optimisers see it exactly once.
    peft_model.add_module("lorasoup_alphas", alphas)
    for i, m in enumerate(modules):
        A, B, col_skill = concat_skills(skills, m)
        write_factors(layers[m], A, B)
        col_scale = torch.tensor([skills[j].scaling[m] for j in col_skill.tolist()])
        parametrize.register_parametrization(
            layers[m].lora_B[ADAPTER], "weight", ScaleColumns(alphas, group_of[i], col_skill.to(device), col_scale.to(device))
        )
    for p in peft_model.parameters():  # parametrize keeps the original B frozen, but be explicit
        p.requires_grad_(False)
    return peft_model, alphas


def build_learned(base_model: nn.Module, skills: list[SkillAdapter], params: CatParams):
    # The initial raw weights are made (and init_weights validated) before the base model is
    # wrapped, so a bad value leaves no half-built soup on it.
    groups, _ = group_labels(skills[0].modules, params.granularity)
    raw = init_raw(
        len(groups), len(skills), params.parameterisation, params.init, params.seed, params.init_weights,
        names=[s.name for s in skills],
    )
    model, alphas = build_cat_soup(base_model, skills, params.granularity, params.parameterisation, raw)
    state = SoupState("cat", {}, skills, skills[0].modules, trainable={"lorasoup_alphas.weight": alphas.weight})
    state.extra["alphas"] = alphas
    if params.parameterisation == "clamp":  # projected gradient descent: back into [0, 1] after each step
        state.after_step = partial(_clamp_, alphas)
    return model, state


def static_alphas(alphas: list | None, groups: list[str], k: int, skills: list[SkillAdapter]) -> torch.Tensor:
    """Validate fixed alphas: k values, or one row of k per group."""
    if alphas is None:
        return torch.full((len(groups), k), 1.0 / k)
    t = torch.tensor(alphas, dtype=torch.float32)
    names = [s.name for s in skills]
    if t.dim() == 1:
        if t.numel() != k:
            raise MergeError(f"alphas has {t.numel()} values but there are {k} adapters ({names})")
        t = t.expand(len(groups), k)
    elif t.shape != (len(groups), k):
        raise MergeError(
            f"alphas has shape {tuple(t.shape)}; expected {k} values or ({len(groups)}, {k}) "
            f"(one row per group: {groups[:3]}{'...' if len(groups) > 3 else ''})"
        )
    if not torch.isfinite(t).all():
        raise MergeError("alphas contains NaN or Inf")
    return t.clone()


def build_static(base_model: nn.Module, skills: list[SkillAdapter], params: CatStaticParams):
    groups, _ = group_labels(skills[0].modules, params.granularity)
    raw = static_alphas(params.alphas, groups, len(skills), skills)
    model, alphas = build_cat_soup(base_model, skills, params.granularity, "free", raw)
    state = SoupState("cat_static", {}, skills, skills[0].modules)
    state.extra["alphas"] = alphas
    state.saved["lorasoup_alphas.weight"] = (lambda: alphas.weight, lambda v: alphas.weight.copy_(v.to(alphas.weight)))

    def set_weights(w) -> None:
        with torch.no_grad():
            alphas.weight.copy_(static_alphas(w, alphas.groups, alphas.k, skills).to(alphas.weight.device))

    state.set_weights = set_weights
    return model, state


@torch.no_grad()
def _clamp_(alphas: nn.Module) -> None:
    alphas.weight.clamp_(0.0, 1.0)


@torch.no_grad()
def project_alphas_(soup: nn.Module) -> None:
    """Clip raw CAT weights into [0, 1] in place (projected gradient step for ``clamp``)."""
    from lorasoups.merging.soup import soup_state

    alphas = soup_state(soup).extra.get("alphas")
    if alphas is None:
        raise MergeError(f"soup method '{soup_state(soup).method}' has no CAT alphas")
    _clamp_(alphas)
