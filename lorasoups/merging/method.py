"""What a soup method is: the small interface every method fills in, in its own module.

A method's module defines its parameter dataclass and a builder ``(base_model, skills, params) ->
(peft_model, SoupState)``, and describes itself as a :class:`Method`; ``registry.METHODS`` lists
them (one line each). Everything else reads the method's facts from here, never from a list of
names: whether it learns (a stage trains it), whether it exports as one standard LoRA, whether it
takes a density λ and a seed, how the static-merge stage fills its parameters, and how the sweep
merges it in place. This module imports no method, so the soup's shared helpers (save, export,
weights) read the :class:`Method` a soup carries without importing the registry.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

#: A factor-space merge of one module, peft's ``merge_utils`` signature: (the k skills' factors,
#: per-skill weights (k,), density, majority_sign_method) -> the merged factor.
FactorMerge = Callable[[list[torch.Tensor], torch.Tensor, float | None, str], torch.Tensor]


@dataclass(frozen=True)
class MergeDefaults:
    """What the static-merge stage knows when a method's parameters are not swept or overridden."""

    k: int
    """Number of skills."""
    alphas: list[float] | None
    """``experiment.merge_alphas`` (None: 1.0 per skill)."""
    density: float | None
    """``experiment.merge_density`` (for methods that take a density)."""
    static_alpha: float | None
    """``experiment.static_alpha`` (static CAT; None: 1/k)."""
    seed: int
    """The run's seed (for methods with random draws)."""


def weighted_defaults(method: Method, d: MergeDefaults) -> dict[str, Any]:
    """One weight per skill (1.0 each unless given), the density if the method takes one, and the
    run's seed if it draws at random: the static merges' parameters unless a sweep sets them."""
    alphas = list(d.alphas) if d.alphas is not None else [1.0] * d.k
    if len(alphas) != d.k:
        raise ValueError(f"experiment.merge_alphas has {len(alphas)} weights but {d.k} skills are composed")
    params: dict[str, Any] = {"alphas": alphas}
    if method.density:
        params["density"] = d.density
    if method.seeded:
        params["seed"] = d.seed
    return params


@dataclass(frozen=True)
class Method:
    """One soup method: how to build it, its parameters, where it comes from, and what the stages
    and the sweep need to know about it."""

    name: str
    description: str
    paper: str
    url: str
    params: type
    builder: Callable[..., Any]
    learnable: bool = False
    """Has parameters that training updates (CAT's alphas, MoE's routers): learned by a stage of
    its own, never built as a static merge."""
    exportable: bool = True
    """``export_adapter`` writes a standard PEFT LoRA with the same outputs (not MoE: its gates
    depend on each token)."""
    density: bool = False
    """Takes a density λ (the fraction of entries pruning keeps): a sweep axis and a parameter."""
    seeded: bool = False
    """Draws at random (DARE's masks): the run's seed is one of its parameters."""
    inplace: FactorMerge | None = None
    """How the sweep merges the stacked factors of one module in place (factor-space methods of
    equal-rank LoRAs); None: the method cannot be swept."""
    defaults: Callable[[Method, MergeDefaults], dict[str, Any]] | None = weighted_defaults
    """The static-merge stage's parameters when neither a sweep nor an override gives them."""

    @property
    def sweepable(self) -> bool:
        return self.inplace is not None

    def default_params(self, d: MergeDefaults) -> dict[str, Any]:
        if self.defaults is None:
            raise ValueError(f"method '{self.name}' has no static-merge defaults (it is learned)")
        return self.defaults(self, d)


__all__ = ["FactorMerge", "MergeDefaults", "Method", "weighted_defaults"]
