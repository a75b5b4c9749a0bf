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

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from peft.utils import merge_utils
from torch import nn

from lorasoups.merging.method import FactorMerge
from lorasoups.merging.skill_adapters import MergeError, SkillAdapter, require_equal_ranks
from lorasoups.merging.soup import ADAPTER, SoupState, freeze, new_soup_adapter


@dataclass(frozen=True)
class Combination:
    """One peft ``add_weighted_adapter`` merge as a registry method: adding one is a row below."""

    peft: str
    """peft's ``combination_type``."""
    density: bool
    """Prunes to a density λ (a parameter, and a sweep axis)."""
    factor_space: bool
    """Merges the A's and the B's separately (the paper's §3.1), else dW_k = s_k B_k A_k."""
    inplace: FactorMerge | None = None
    """The same merge from peft's ``merge_utils``, applied by the sweep to stacked factors in
    place (factor-space merges only); None: not swept."""

    @property
    def seeded(self) -> bool:
        return "dare" in self.peft  # DARE's masks are random draws


COMBINATIONS: dict[str, Combination] = {
    "linear": Combination("linear", False, True, lambda t, w, d, s: merge_utils.task_arithmetic(t, w)),
    "ties": Combination("ties", True, True, lambda t, w, d, s: merge_utils.ties(t, w, d, s)),
    "dare": Combination("dare_linear", True, True, lambda t, w, d, s: merge_utils.dare_linear(t, w, d)),
    "dare_ties": Combination("dare_ties", True, True, lambda t, w, d, s: merge_utils.dare_ties(t, w, d, s)),
    "magnitude_prune": Combination("magnitude_prune", True, True,
                                   lambda t, w, d, s: merge_utils.magnitude_prune(t, w, d)),
    "svd": Combination("svd", False, False),
    "ties_svd": Combination("ties_svd", True, False),
    "dare_svd": Combination("dare_linear_svd", True, False),
    "dare_ties_svd": Combination("dare_ties_svd", True, False),
    "magnitude_prune_svd": Combination("magnitude_prune_svd", True, False),
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

    spec = COMBINATIONS[method]
    combination, needs_density, factor_space = spec.peft, spec.density, spec.factor_space
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


def factor_weights(alphas: list[float], scaling: tuple[float, ...]) -> tuple[list[float], list[float]]:
    """peft's per-factor weights for skill weights α_k (passed to peft as w_k = α_k², see above):
    sqrt(|w_k s_k|) on B_k and the same with w_k s_k's sign on A_k, computed as peft computes them."""
    wa, wb = [], []
    for a, s in zip(alphas, scaling):
        ws = (a * a) * s
        wa.append(math.sqrt(abs(ws)) * (1 if ws >= 0 else -1))
        wb.append(math.sqrt(abs(ws)))
    return wa, wb


@torch.no_grad()
def write_factor_merge(targets: dict[str, tuple[torch.Tensor, torch.Tensor]],
                       factors: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]],
                       scalings: dict[str, tuple[float, ...]], merge: FactorMerge, alphas: list[float],
                       density: float | None, seed: int, majority_sign_method: str = "total") -> None:
    """Write a factor-space merge of each module into its adapter's (A, B) ``targets``.

    ``factors``: module -> the skills' (A's, B's) on the targets' device; ``targets`` in peft's
    module order (``named_modules``), which random draws follow. The sweep calls this per grid point
    and :func:`factor_merge_builder`'s methods once per build, so a merge means the same in both."""
    device = next(iter(targets.values()))[0].device
    devices = [device.index or 0] if device.type == "cuda" else []
    cache: dict[tuple[float, ...], tuple[torch.Tensor, torch.Tensor]] = {}
    with warnings.catch_warnings(), torch.random.fork_rng(devices=devices):
        warnings.simplefilter("ignore")  # merge_utils.prune warns on density 1 for every tensor
        torch.manual_seed(seed)
        for m, (a_t, b_t) in targets.items():
            if scalings[m] not in cache:
                cache[scalings[m]] = tuple(torch.tensor(w).to(device) for w in factor_weights(alphas, scalings[m]))
            wa, wb = cache[scalings[m]]
            A, B = factors[m]
            a_t.copy_(merge(A, wa, density, majority_sign_method).to(a_t.dtype))
            b_t.copy_(merge(B, wb, density, majority_sign_method).to(b_t.dtype))


def factor_targets(model: nn.Module, layers: dict[str, nn.Module], skills: list[SkillAdapter]):
    """What :func:`write_factor_merge` writes into and from: the soup adapter's (A, B) per module in
    peft's module order (``named_modules``, which random draws follow), and the skills' factors
    (on the adapter's device) and scalings per module."""
    order = [n for n, _ in model.base_model.model.named_modules() if n in layers]
    targets = {m: (layers[m].lora_A[ADAPTER].weight, layers[m].lora_B[ADAPTER].weight) for m in order}
    device = targets[order[0]][0].device
    factors = {m: ([s.A[m].to(device) for s in skills], [s.B[m].to(device) for s in skills]) for m in order}
    return targets, factors, {m: tuple(s.scaling[m] for s in skills) for m in order}


def factor_merge_builder(name: str, merge: FactorMerge, density: bool):
    """A builder for a method defined only by its :data:`FactorMerge` (peft's ``merge_utils``
    signature): the same function then builds, sweeps and exports it (a new factor-space method is
    one function and one registry line; the peft rows above build through peft instead)."""

    def build(base_model: nn.Module, skills: list[SkillAdapter], params: WeightedParams):
        require_equal_ranks(skills, name)
        alphas = checked_alphas(params.alphas, skills, name)
        if any(a < 0 for a in alphas):
            raise MergeError(f"method '{name}' weights both LoRA factors by alpha, so alphas must be >= 0, got {alphas}")
        if density and (params.density is None or not 0.0 < params.density <= 1.0):
            raise MergeError(f"method '{name}' needs density in (0, 1], got {params.density}")
        if not density and params.density is not None:
            raise MergeError(f"method '{name}' takes no density, got {params.density}")
        if params.svd_rank is not None or params.svd_clamp is not None:
            raise MergeError(f"method '{name}' merges in factor space: svd_rank / svd_clamp do not apply")
        modules = skills[0].modules
        model, layers = new_soup_adapter(base_model, skills, {m: skills[0].rank(m) for m in modules})
        write_factor_merge(*factor_targets(model, layers, skills), merge, alphas,
                           params.density if density else None, params.seed, params.majority_sign_method)
        return model, SoupState(name, {}, skills, modules)

    return build
