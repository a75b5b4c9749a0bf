"""The soup engine: merge k >= 2 skill LoRAs (standard PEFT adapters) on one base model.

    soup = build("cat", base_model, ["adapters/math", "adapters/code"], granularity="layer")
    ... train trainable_parameters(soup) ...
    plot_alphas(soup, "figures/alphas.png"); save_soup(soup, "runs/cat-soup")
    export_adapter(soup, "adapters/math+code")   # one standard PEFT LoRA, the exact fold
    compress_adapter(base_model, "adapters/math+code", "adapters/math+code-r8", rank=8)  # truncated SVD

Methods are listed in :data:`METHODS` (name -> :class:`Method`: its paper and the facts stages and
the sweep read); each lives in its own module (cat, task_arithmetic, moe, lorahub) and takes one
line of ``registry.py`` (or a :func:`register` call). See ``python -c "import lorasoups.merging as m;
[print(k, '-', v.description) for k, v in m.METHODS.items()]"``.
"""
from lorasoups.merging.cat import project_alphas_
from lorasoups.merging.compress import compress_adapter
from lorasoups.merging.export import export_adapter
from lorasoups.merging.method import MergeDefaults, Method
from lorasoups.merging.moe import gate_table, load_balancing_loss
from lorasoups.merging.persist import save_soup
from lorasoups.merging.registry import METHODS, build, load_soup, register
from lorasoups.merging.skill_adapters import MergeError, SkillAdapter, load_skills
from lorasoups.merging.soup import SoupState, soup_state
from lorasoups.merging.weights import alphas_table, describe, plot_alphas, set_weights, trainable_parameters

__all__ = [
    "METHODS", "MergeDefaults", "MergeError", "Method", "SkillAdapter", "SoupState", "alphas_table", "build", "compress_adapter",
    "describe", "export_adapter", "gate_table", "load_balancing_loss", "load_skills", "load_soup", "plot_alphas",
    "project_alphas_", "register", "save_soup", "set_weights", "soup_state", "trainable_parameters",
]
