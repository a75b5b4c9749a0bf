"""Read a soup's mixing weights: the trainable tensors, the alpha table, a heatmap, set_weights.

These are the hooks the training and analysis code use:
- :func:`trainable_parameters` gives exactly what an optimiser should update (CAT alphas or MoE
  routers; nothing else has ``requires_grad``);
- :func:`alphas_table` lists alpha per (module, skill), one row each, ready for ``pandas.DataFrame``
  or a result JSON; :func:`plot_alphas` draws it as a layer-by-module x skill heatmap;
- :func:`set_weights` sets LoraHub's (or a static CAT's) weight vector in place, cheaply.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorasoups.merging.cat import group_labels
from lorasoups.merging.skill_adapters import MergeError, layer_index
from lorasoups.merging.soup import method_of, soup_state


def trainable_parameters(soup: nn.Module) -> dict[str, nn.Parameter]:
    """Name -> parameter of what training updates: CAT alphas or MoE routers (empty for static soups)."""
    return dict(soup_state(soup).trainable)


def describe(soup: nn.Module) -> dict[str, Any]:
    """What a result JSON should record about a soup: method, paper, parameters (granularity,
    parameterisation, ...), the skills (path, sha256, ranks) and the size of what was trained."""
    state = soup_state(soup)
    method = method_of(state)
    return {
        "method": state.method,
        "paper": method.paper,
        "url": method.url,
        "params": dict(state.params),
        "skills": [s.summary() for s in state.skills],
        "n_modules": len(state.modules),
        "n_trainable": int(sum(p.numel() for p in state.trainable.values())),
    }


def alphas_table(soup: nn.Module) -> list[dict[str, Any]]:
    """One row per adapted module and skill: module, layer, kind (q_proj, ...), group, skill, alpha.

    CAT (learned or static): the alpha the soup applies at that module (after the parameterisation).
    LoraHub and the static merges: their one weight per skill, repeated for every module.
    MoE has no fixed alpha (its gates depend on each token).
    """
    state = soup_state(soup)
    k = len(state.skills)
    if not method_of(state).exportable:
        raise MergeError(f"a '{state.method}' soup has no fixed alpha: its gates depend on each token")
    if "alphas" in state.extra:
        mod = state.extra["alphas"]
        values = mod.alpha().detach().cpu()
        labels, group_of = group_labels(state.modules, state.params.get("granularity", "global"))
    else:
        w = state.extra.get("weights")
        if w is None:
            w = state.params.get("alphas") or [1.0 / k] * k
        values = torch.as_tensor(w, dtype=torch.float32).reshape(1, k)
        labels, group_of = ["all"], [0] * len(state.modules)
    rows = []
    for i, m in enumerate(state.modules):
        for j, skill in enumerate(state.skill_names):
            rows.append({
                "module": m,
                "layer": layer_index(m),
                "kind": m.rsplit(".", 1)[-1],
                "group": labels[group_of[i]],
                "skill": skill,
                "alpha": float(values[group_of[i], j]),
            })
    return rows


def plot_alphas(soup_or_table: nn.Module | list[dict[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """Heatmap of alpha: rows are (layer, module kind), columns are skills. Saves to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # headless: notebooks run under papermill
    import matplotlib.pyplot as plt

    rows = alphas_table(soup_or_table) if isinstance(soup_or_table, nn.Module) else list(soup_or_table)
    if not rows:
        raise MergeError("no alpha rows to plot")
    modules = list(dict.fromkeys(r["module"] for r in rows))
    skills = list(dict.fromkeys(r["skill"] for r in rows))
    grid = torch.full((len(modules), len(skills)), float("nan"))
    for r in rows:
        grid[modules.index(r["module"]), skills.index(r["skill"])] = r["alpha"]
    labels = [f"L{r['layer']} {r['kind']}" for r in {r["module"]: r for r in rows}.values()]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(skills), 0.8 + 0.22 * len(modules)))
    im = ax.imshow(grid.numpy(), aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(skills)), skills, rotation=30, ha="right")
    ax.set_yticks(range(len(modules)), labels, fontsize=7)
    ax.set_xlabel("skill")
    ax.set_title(title or "CAT alpha per layer and module")
    fig.colorbar(im, ax=ax, label="alpha")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150, metadata={"CreationDate": None} if out.suffix == ".pdf" else None)
    plt.close(fig)
    return out


@torch.no_grad()
def set_weights(soup: nn.Module, weights) -> None:
    """Set a soup's one weight per skill in place where its method has one to set (LoraHub; static
    CAT's alphas); cheap, call freely."""
    state = soup_state(soup)
    if state.set_weights is None:
        raise MergeError(f"a '{state.method}' soup has no weights to set (LoraHub and static CAT do)")
    state.set_weights(weights.tolist() if hasattr(weights, "tolist") else weights)
