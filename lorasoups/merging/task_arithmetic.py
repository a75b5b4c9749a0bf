"""Static merges through peft's ``add_weighted_adapter``: linear, TIES, DARE, magnitude pruning and
their SVD (delta-W space) variants, as configurations of one generalised method (mergekit style).

Factor-space methods (``linear``, ``ties``, ``dare``, ``dare_ties``, ``magnitude_prune``) merge the A's
and the B's separately, as the LoRA Soups paper defines them (§3.1), so cross terms appear:

    dW = (sum_k alpha_k sqrt(s_k) B_k) (sum_k alpha_k sqrt(s_k) A_k)     [linear; = s (sum a B)(sum a A) for equal s]

with TIES/DARE pruning each factor to ``density`` (by magnitude / at random with 1/density rescale)
and TIES electing a majority sign per entry before the (disjoint-mean) sum. peft applies
sqrt(w_k s_k) to each factor, so we pass w_k = alpha_k^2 (hence alpha_k >= 0: a factor-wise weight
cannot carry a sign on both factors). The ``*_svd`` methods merge dW_k = s_k B_k A_k instead
(dW = sum_k alpha_k dW_k, then pruning/TIES in dW space) and truncate to ``svd_rank`` by SVD.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lorasoups.merging.skills import MergeError, SkillAdapter, require_equal_ranks
from lorasoups.merging.soup import ADAPTER, SoupState, freeze

#: registry name -> (peft combination_type, needs density, merges in factor space)
COMBINATIONS: dict[str, tuple[str, bool, bool]] = {
    "linear": ("linear", False, True),
    "ties": ("ties", True, True),
    "dare": ("dare_linear", True, True),
    "dare_ties": ("dare_ties", True, True),
    "magnitude_prune": ("magnitude_prune", True, True),
    "svd": ("svd", False, False),
    "ties_svd": ("ties_svd", True, False),
    "dare_svd": ("dare_linear_svd", True, False),
    "dare_ties_svd": ("dare_ties_svd", True, False),
    "magnitude_prune_svd": ("magnitude_prune_svd", True, False),
}


@dataclass
class WeightedParams:
    """Parameters of the peft ``add_weighted_adapter`` merges."""

    alphas: list[float] | None = None
    """One weight per skill, same for every layer. Default 1/k."""
    density: float | None = None
    """Fraction of entries kept by pruning, in (0, 1]; required by ties, dare*, magnitude_prune*."""
    majority_sign_method: Literal["total", "frequency"] = "total"
    """TIES sign election: by summed values (``total``) or by counting signs (``frequency``)."""
    seed: int = 0
    """Seed of DARE's random pruning (the merge is reproducible for a seed)."""
    svd_rank: int | None = None
    """Rank of the ``*_svd`` results (default: the largest skill rank; sum of ranks is exact)."""
    svd_clamp: float | None = None
    """Quantile at which to clamp the SVD factors (``*_svd`` only; default no clamping)."""
    skill_names: list[str] | None = None
    """Display names of the skills (default: adapter directory names)."""


def checked_alphas(alphas: list[float] | None, skills: list[SkillAdapter], method: str) -> list[float]:
    k = len(skills)
    if alphas is None:
        return [1.0 / k] * k
    if len(alphas) != k:
        raise MergeError(f"alphas has {len(alphas)} values but there are {k} adapters ({[s.name for s in skills]})")
    if not all(torch.isfinite(torch.tensor(a)) for a in alphas):
        raise MergeError(f"alphas contains NaN or Inf: {alphas}")
    return [float(a) for a in alphas]


def build_weighted(method: str, base_model: nn.Module, skills: list[SkillAdapter], params: WeightedParams):
    from peft import PeftModel

    combination, needs_density, factor_space = COMBINATIONS[method]
    alphas = checked_alphas(params.alphas, skills, method)
    if factor_space:
        require_equal_ranks(skills, method)
        if any(a < 0 for a in alphas):
            raise MergeError(
                f"method '{method}' weights both LoRA factors by alpha, so alphas must be >= 0, got {alphas}"
            )
        weights = [a * a for a in alphas]  # peft puts sqrt(w s) on each factor
    else:
        weights = alphas
    if needs_density and params.density is None:
        raise MergeError(f"method '{method}' needs density (fraction of entries to keep, in (0, 1])")
    if params.density is not None and not 0.0 < params.density <= 1.0:
        raise MergeError(f"density must be in (0, 1], got {params.density}")
    assert not hasattr(base_model, "peft_config"), "checked by build()"

    names = [f"skill{i}" for i in range(len(skills))]
    model = PeftModel.from_pretrained(base_model, str(skills[0].path), adapter_name=names[0])
    for name, skill in zip(names[1:], skills[1:]):
        model.load_adapter(str(skill.path), adapter_name=name)
    # DARE draws its masks from the global generators: seed them, and leave the caller's RNG as it was.
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        torch.manual_seed(params.seed)
        model.add_weighted_adapter(
            names,
            weights,
            ADAPTER,
            combination_type=combination,
            svd_rank=params.svd_rank,
            svd_clamp=params.svd_clamp,
            density=params.density,
            majority_sign_method=params.majority_sign_method,
        )
    model.set_adapter(ADAPTER)
    for name in names:
        model.delete_adapter(name)
    freeze(model)
    return model, SoupState(method, {}, skills, skills[0].modules)
