"""The registry of soup methods (name -> :class:`~lorasoups.merging.method.Method`), :func:`build`
and :func:`load_soup`.

Each method is a small module exposing a parameter dataclass and a builder
``(base_model, skills, params) -> (peft_model, SoupState)``; this file lists them, one line each
(a peft ``add_weighted_adapter`` merge: a row of ``task_arithmetic.COMBINATIONS`` and its
``_weighted`` line below). Call
:func:`register` to add one at run time. Nothing else in the package keeps a list of method names.
"""
from __future__ import annotations

import types
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from lorasoups.config import ConfigError, did_you_mean, from_dict, to_dict
from lorasoups.merging import cat, lorahub, moe, task_arithmetic
from lorasoups.merging.method import MergeDefaults, Method
from lorasoups.merging.persist import read_soup, restore_tensors, save_pretrained
from lorasoups.merging.skill_adapters import MergeError, load_skills
from lorasoups.merging.soup import SoupState, method_of

_SOUPS = "LoRA Soups (Prabhakar et al., COLING 2025)"
_SOUPS_URL = "https://arxiv.org/abs/2410.13025"
_TIES = ("TIES-Merging (Yadav et al., NeurIPS 2023)", "https://arxiv.org/abs/2306.01708")
_DARE = ("DARE (Yu et al., ICML 2024)", "https://arxiv.org/abs/2311.03099")
_TA = ("Task arithmetic (Ilharco et al., ICLR 2023)", "https://arxiv.org/abs/2212.04089")


def _weighted(name: str, description: str, ref: tuple[str, str]) -> Method:
    row = task_arithmetic.COMBINATIONS[name]
    return Method(
        name, description, ref[0], ref[1], task_arithmetic.WeightedParams,
        partial(task_arithmetic.build_weighted, name),
        density=row.density, seeded=row.seeded, inplace=row.inplace,
    )


def _static_cat_defaults(method: Method, d: MergeDefaults) -> dict[str, Any]:
    """Static CAT: every skill at ``experiment.static_alpha`` (the paper's ablation: 0.5), else 1/k."""
    return {"alphas": [d.static_alpha if d.static_alpha is not None else 1.0 / d.k] * d.k}


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("cat", "learnable concatenation: dW = sum_k alpha_k s_k B_k A_k, alpha trained, LoRAs frozen",
               _SOUPS, _SOUPS_URL, cat.CatParams, cat.build_learned, learnable=True,
               defaults=None),
        Method("cat_static", "concatenation with fixed alpha (the paper's ablation uses 0.5)",
               _SOUPS, _SOUPS_URL, cat.CatStaticParams, cat.build_static,
               defaults=_static_cat_defaults),
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
               learnable=True, exportable=False, defaults=None),
        Method("lorahub", "one weight per skill on the summed factors, set from outside (gradient-free search)",
               "LoraHub (Huang et al., COLM 2024)", "https://arxiv.org/abs/2307.13269",
               lorahub.LoraHubParams, lorahub.build_lorahub),
    ]
}


def register(method: Method) -> Method:
    """Add a method (e.g. from a notebook or a plug-in): every stage, the sweep and the config
    checks see it at once. A name already taken is an error (nothing is silently replaced)."""
    if method.name in METHODS:
        raise MergeError(f"soup method '{method.name}' is already registered")
    METHODS[method.name] = method
    return method


def get(method: str) -> Method:
    """The registered method ``method`` (a clear error with the known names otherwise)."""
    spec = METHODS.get(method)
    if spec is None:
        raise MergeError(f"unknown soup method '{method}' (known: {', '.join(METHODS)}){did_you_mean(method, METHODS)}")
    return spec


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
    spec = get(method)
    try:
        p = from_dict(spec.params, {k: _plain(v) for k, v in params.items()}, where=f"merging.build('{method}')")
    except ConfigError as exc:
        raise MergeError(str(exc)) from exc
    if hasattr(base_model, "peft_config"):
        raise MergeError("base_model already carries peft adapters (an earlier soup?); pass a fresh base model")
    skills = load_skills(adapters, base_model, names=p.skill_names)
    model, state = spec.builder(base_model, skills, p)
    state.params = to_dict(p)
    state.spec = spec
    return attach(model, state)


def attach(model: nn.Module, state: SoupState) -> nn.Module:
    """Record ``state`` on the model (a plain attribute: not a submodule, not in state_dict),
    unfreeze the soup's own parameters, and make saving/merging soup-aware.

    peft's ``save_pretrained`` would write CAT's B without alpha (under parametrisation keys) and
    MoE's LoRA without its gates; ``merge_and_unload`` on MoE would merge the ungated sum. Both
    would be silently wrong, so the soup gets its own ``save_pretrained`` (what Trainer calls at each
    checkpoint) and a soup that cannot be exported refuses to merge.
    """
    object.__setattr__(model, "lorasoup", state)
    for p in state.trainable.values():
        p.requires_grad_(True)
    object.__setattr__(model, "save_pretrained", types.MethodType(save_pretrained, model))
    if not method_of(state).exportable:
        def refuse(*args: Any, **kwargs: Any):
            raise MergeError(
                f"a '{state.method}' soup cannot be merged into the base weights: its gates depend on each token"
            )

        for name in ("merge_and_unload", "merge_adapter"):
            object.__setattr__(model, name, refuse)
    return model


def load_soup(path: str | Path, base_model: nn.Module, adapters: list[str | Path] | None = None) -> nn.Module:
    """Rebuild a soup written by ``save_soup`` on ``base_model``: the same function as when saved.
    ``adapters`` overrides the recorded skill paths (moved directories); their sha256 must still
    match what the soup was trained with. Everything is checked before ``base_model`` is touched."""
    record, paths, tensors = read_soup(path, adapters)
    soup = build(record["method"], base_model, paths, **record["params"])
    restore_tensors(soup, tensors, str(path))
    return soup
