"""One LoRA adapter, rewritten in place for every point of a merge sweep.

The naive sweep calls peft's ``add_weighted_adapter`` per point: it injects a new adapter into
every layer (allocations, re-initialisation), merges, and the caller deletes it again; on an
H100 that is ~0.65 s per merge for a 135 M model, and it invalidates anything compiled against
the old adapter. Here the skills' factors are stacked on the device once, each point's merged
factors are computed with peft's own ``peft.utils.merge_utils`` functions (so TIES, DARE,
magnitude pruning and the linear sum mean exactly what they mean in ``add_weighted_adapter``) and
``copy_()``-ed into one preallocated standard PEFT adapter: same tensors, same addresses, so a
CUDA graph captured once stays valid for the whole sweep.

peft semantics reproduced per module (``LoraModel._generalized_task_arithmetic_weighted_adapter``):
weight w_k -> sqrt(|w_k s_k|) on B_k and the same with w_k's sign on A_k, then the method's merge of
the A's and, separately, of the B's; the new adapter has r = lora_alpha (scaling 1). As in
``lorasoups.merging`` (``task_arithmetic``), a skill weight α_k is passed as w_k = α_k², so each
factor is weighted by α_k sqrt(s_k).

Randomness (DARE): masks are drawn from the global generator seeded with the point's ``seed``, in
peft's order (modules in ``named_modules`` order, A then B). ``add_weighted_adapter`` itself first
initialises the new adapter's weights from the same generator, so its masks are different draws of
the same distribution; the tests check DARE's structure, and TIES/linear/pruning bit for bit.
Density 0 keeps nothing: the adapter is zero (peft's DARE would divide 0 by 0 there).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from lorasoups.merging.registry import METHODS
from lorasoups.merging.skill_adapters import MergeError, SkillAdapter, load_skills, require_equal_ranks
from lorasoups.merging.soup import new_soup_adapter
from lorasoups.merging.task_arithmetic import factor_targets, write_factor_merge
from lorasoups.sweep.grid import sweep_methods


class InPlaceMerger:
    """Skill LoRAs stacked on the device + one adapter on ``base_model`` that :meth:`apply` rewrites.

    ``base_model`` is wrapped in place (as peft does): ``self.model`` is the ``PeftModel`` to
    evaluate. Move the base model to its device first; the skills follow it.
    """

    def __init__(self, base_model: nn.Module, adapters: list[str | Path], skill_names: list[str] | None = None):
        self.skills: list[SkillAdapter] = load_skills(adapters, base_model, names=skill_names)
        require_equal_ranks(self.skills, "sweep")
        first = self.skills[0]
        ranks = {m: first.rank(m) for m in first.modules}
        self.model, layers = new_soup_adapter(base_model, self.skills, ranks)
        self.model.eval()
        self._targets, self._factors, self._scaling = factor_targets(self.model, layers, self.skills)
        self.modules = list(self._targets)  # peft's module order; DARE's draws follow it
        self.device = self._targets[self.modules[0]][0].device

    @torch.no_grad()
    def apply(
        self,
        method: str,
        alphas: list[float],
        density: float | None = None,
        seed: int = 0,
        majority_sign_method: Literal["total", "frequency"] = "total",
    ) -> None:
        """Write the merge of the skills with these hyper-parameters into the adapter (the method's
        ``Method.inplace`` merge, the same function its build uses or peft's equivalent)."""
        spec = METHODS.get(method)
        if spec is None or not spec.sweepable:
            raise MergeError(f"sweep: method '{method}' cannot be merged in place; choose one of {sweep_methods()}")
        if len(alphas) != len(self.skills):
            raise MergeError(f"alphas has {len(alphas)} values but there are {len(self.skills)} skills")
        if any(a < 0 or not math.isfinite(a) for a in alphas):
            raise MergeError(f"alphas must be finite and >= 0 (each weights both LoRA factors), got {alphas}")
        if spec.density and (density is None or not 0.0 <= density <= 1.0):
            raise MergeError(f"method '{method}' needs density in [0, 1], got {density}")
        if spec.density and density == 0:
            for a, b in self._targets.values():
                a.zero_()
                b.zero_()
            return
        write_factor_merge(self._targets, self._factors, self._scaling, spec.inplace, alphas,
                           density if spec.density else None, seed, majority_sign_method)

    def factors(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """module -> (A, B) of the adapter as it is now (views; clone to keep)."""
        return dict(self._targets)


__all__ = ["InPlaceMerger"]
