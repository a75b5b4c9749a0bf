"""What every soup shares: one peft adapter named ``soup`` on the base model, plus a record of how
it was made (:class:`SoupState`, reachable as ``model.lorasoup``).

A soup *is* a ``peft.PeftModel`` so TRL/Trainer, ``generate`` and ``merge_and_unload`` keep working;
the method-specific parts (CAT's alphas, MoE routers, LoraHub's weight vector) are small modules
attached to it and listed in :class:`SoupState`.
"""
from __future__ import annotations

import re
import types
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lorasoups.merging.skills import MergeError, SkillAdapter

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
    from peft import LoraConfig, get_peft_model

    alphas = lora_alpha or {m: float(r) for m, r in ranks.items()}
    modules = sorted(ranks)
    r0, a0 = ranks[modules[0]], alphas[modules[0]]
    cfg0 = skills[0].config
    config = LoraConfig(
        r=r0,
        lora_alpha=a0,
        target_modules=modules,
        rank_pattern={re.escape(m): ranks[m] for m in modules if ranks[m] != r0},
        alpha_pattern={re.escape(m): alphas[m] for m in modules if alphas[m] != a0},
        lora_dropout=float(cfg0.get("lora_dropout") or 0.0),
        bias="none",
        task_type=cfg0.get("task_type"),
        base_model_name_or_path=skills[0].base_model,
    )
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


def attach(model: nn.Module, state: SoupState) -> nn.Module:
    """Record ``state`` on the model (a plain attribute: not a submodule, not in state_dict),
    unfreeze the soup's own parameters, and make saving/merging soup-aware.

    peft's ``save_pretrained`` would write CAT's B without alpha (under parametrisation keys) and
    MoE's LoRA without its gates; ``merge_and_unload`` on MoE would merge the ungated sum. Both
    would be silently wrong, so the soup gets its own ``save_pretrained`` (what Trainer calls at each
    checkpoint) and an MoE soup refuses to merge.
    """
    from lorasoups.merging.persist import save_pretrained
    from lorasoups.merging.registry import METHODS

    object.__setattr__(model, "lorasoup", state)
    for p in state.trainable.values():
        p.requires_grad_(True)
    object.__setattr__(model, "save_pretrained", types.MethodType(save_pretrained, model))
    if not METHODS[state.method].exportable:
        def refuse(*args: Any, **kwargs: Any):
            raise MergeError(
                f"a '{state.method}' soup cannot be merged into the base weights: its gates depend on each token"
            )

        for name in ("merge_and_unload", "merge_adapter"):
            object.__setattr__(model, name, refuse)
    return model
