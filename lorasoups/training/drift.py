"""How far a soup's learned parameters moved from where they started, logged while it learns.

A learned CAT whose alpha never leaves its start is static CAT under another name (the paper's
own recipe, lr 1e-4 for one epoch on 5 % of the data, moves alpha by about 1e-3). So every CAT /
MoE run records, at each logging step, the mean and max of |alpha - alpha_init| per skill over the
soup's groups (CAT), or |W - W_init| over the router rows of each skill (MoE), in the Trainer's log
history (``log_history.json``: keys ``drift_mean/<skill>``, ``drift_max/<skill>``) and in the run
summary (``alpha_drift``).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback


def soup_values(soup: nn.Module) -> torch.Tensor:
    """What drift is measured on, as (groups, k): CAT's alpha after its parameterisation, or the
    MoE routers' weights with each skill's row flattened into one column."""
    from lorasoups.merging.soup import soup_state

    state = soup_state(soup)
    alphas = state.extra.get("alphas")
    if alphas is not None:
        return alphas.alpha().detach().float().cpu()
    k = len(state.skills)
    cols = [p.detach().float().cpu().reshape(k, -1) for p in state.trainable.values()]
    if not cols:
        raise ValueError(f"soup method '{state.method}' has no learned parameters to measure drift on")
    return torch.cat(cols, dim=1).T


def drift(now: torch.Tensor, start: torch.Tensor, skills: list[str]) -> dict[str, dict[str, float]]:
    """``{"mean": {skill: ...}, "max": {skill: ...}}`` of |now - start| over groups, per skill."""
    d = (now - start).abs()
    return {"mean": {s: float(d[:, j].mean()) for j, s in enumerate(skills)},
            "max": {s: float(d[:, j].max()) for j, s in enumerate(skills)}}


class ParameterDrift(TrainerCallback):
    """Records drift at every logging step (and at the end). Construct it before ``train()``
    resumes a checkpoint: the start is the soup as built, so a resumed run measures from the same
    start as an uninterrupted one."""

    def __init__(self, soup: nn.Module):
        from lorasoups.merging.soup import soup_state

        self.soup = soup
        self.skills = list(soup_state(soup).skill_names)
        self.start = soup_values(soup)

    def now(self) -> dict[str, dict[str, float]]:
        return drift(soup_values(self.soup), self.start, self.skills)

    def on_log(self, args, state, control, logs=None, **kwargs):
        d = self.now()
        entry = {**{f"drift_mean/{s}": v for s, v in d["mean"].items()},
                 **{f"drift_max/{s}": v for s, v in d["max"].items()}}
        # Trainer.log appended this step's record just before calling us: it joins that record,
        # so log_history.json (and a resumed run's restored history) carries the drift too.
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(entry)
        if logs is not None:
            logs.update(entry)
        return control


def drift_history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The drift records of a log history: ``[{"step", "mean": {skill}, "max": {skill}}, ...]``,
    one per logged step (a step logged twice, e.g. a train and an eval record, counts once)."""
    out: dict[int, dict[str, Any]] = {}
    for rec in log_history:
        keys = [k for k in rec if k.startswith("drift_")]
        if not keys:
            continue
        row = out.setdefault(int(rec["step"]), {"step": int(rec["step"]), "mean": {}, "max": {}})
        for k in keys:
            kind, skill = k[len("drift_"):].split("/", 1)
            row[kind][skill] = rec[k]
    return [out[s] for s in sorted(out)]
