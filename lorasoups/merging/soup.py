"""What every soup shares: one peft adapter named ``soup`` on the base model, plus a record of how
it was made (:class:`SoupState`, reachable as ``model.lorasoup``).

A soup *is* a ``peft.PeftModel`` so TRL/Trainer, ``generate`` and ``merge_and_unload`` keep working;
the method-specific parts (CAT's alphas, MoE routers, LoraHub's weight vector) are small modules
attached to it and listed in :class:`SoupState`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lorasoups.merging.method import Method
from lorasoups.merging.skill_adapters import MergeError, SkillAdapter, lora_config_like

# The one peft adapter every soup holds. "default" (not a custom name) so peft utilities that
# assume it (get_peft_model_state_dict, save_pretrained's folder layout) behave as for any LoRA.
ADAPTER = "default"


@dataclass
class SoupState:
    """How a soup was built; everything :func:`save_soup` and :func:`export_adapter` need."""

    method: str
    params: dict[str, Any]  # the validated method parameters (JSON-able)
    skills: list[SkillAdapter]
    modules: list[str]  # adapted module names relative to the base model, sorted
    trainable: dict[str, nn.Parameter] = field(default_factory=dict)  # what training may update
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific objects (alphas, routers, ...)
    saved: dict[str, tuple[Callable[[], torch.Tensor], Callable[[torch.Tensor], None]]] = field(default_factory=dict)
    """Tensors beside ``trainable`` that make the soup differ from a fresh build with the same
    parameters (CAT's fixed alphas, LoraHub's weights): name -> (read, restore), for save/load."""
    after_step: Callable[[], None] | None = None
    """A constraint training re-applies after each optimiser step (CAT's ``clamp``: alphas into [0, 1])."""
    set_weights: Callable[[Any], None] | None = None
    """Sets the soup's one weight per skill in place (LoraHub's search; static CAT), where it has one."""
    spec: Method | None = None  # the method's facts (set by registry.build): read here, not from the registry

    @property
    def skill_names(self) -> list[str]:
        return [s.name for s in self.skills]


def soup_state(soup: nn.Module) -> SoupState:
    """The :class:`SoupState` of a model built by :func:`lorasoups.merging.build`."""
    state = getattr(soup, "lorasoup", None)
    if not isinstance(state, SoupState):
        raise MergeError(
            f"expected a soup built by lorasoups.merging.build, got a {type(soup).__name__} without one"
        )
    return state


def method_of(state: SoupState) -> Method:
    """The :class:`~lorasoups.merging.method.Method` a soup was built by."""
    if state.spec is None:  # a bug of ours: registry.build sets it
        raise RuntimeError(f"soup state of method '{state.method}' carries no Method")
    return state.spec


def lora_layers(peft_model: nn.Module, modules: list[str]) -> dict[str, nn.Module]:
    """peft LoRA layer of each adapted module (names relative to the base model)."""
    inner = peft_model.base_model.model
    return {m: inner.get_submodule(m) for m in modules}


def new_soup_adapter(
    base_model: nn.Module,
    skills: list[SkillAdapter],
    ranks: dict[str, int],
    lora_alpha: dict[str, float] | None = None,
):
    """Wrap ``base_model`` (in place, as peft does) with one empty adapter (named :data:`ADAPTER`).

    ``ranks`` gives each module's rank; ``lora_alpha`` each module's alpha (default: alpha = rank,
    i.e. scaling 1, the soups put all scalings into the weights). Target modules are listed by full
    name so the adapter covers exactly the skills' modules, whatever their configs' patterns were.
    """
    from peft import get_peft_model

    alphas = lora_alpha or {m: float(r) for m, r in ranks.items()}
    modules = sorted(ranks)
    config = lora_config_like(skills[0], ranks, alphas)
    assert not hasattr(base_model, "peft_config"), "checked by build()"
    peft_model = get_peft_model(base_model, config, adapter_name=ADAPTER)
    freeze(peft_model)
    return peft_model, lora_layers(peft_model, modules)


def freeze(model: nn.Module) -> None:
    """No parameter of the model trains (soups unfreeze only their own alphas/routers afterwards)."""
    for p in model.parameters():
        p.requires_grad_(False)


@torch.no_grad()
def write_factors(layer: nn.Module, A: torch.Tensor, B: torch.Tensor) -> None:
    """Copy A (r, in) and B (out, r) into the soup adapter of one peft LoRA layer."""
    a, b = layer.lora_A[ADAPTER].weight, layer.lora_B[ADAPTER].weight
    if a.shape != A.shape or b.shape != B.shape:  # a bug of ours, not bad input
        raise RuntimeError(f"soup adapter shapes {tuple(a.shape)}/{tuple(b.shape)} vs {tuple(A.shape)}/{tuple(B.shape)}")
    a.copy_(A.to(a.dtype))
    b.copy_(B.to(b.dtype))


def concat_skills(skills: list[SkillAdapter], module: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CAT's fold at one module: A = [A1; ...; Ak], B = [B1 ... Bk] and each rank column's skill index."""
    A = torch.cat([s.A[module] for s in skills], dim=0)
    B = torch.cat([s.B[module] for s in skills], dim=1)
    col_skill = torch.cat([torch.full((s.rank(module),), i, dtype=torch.long) for i, s in enumerate(skills)])
    return A, B, col_skill
