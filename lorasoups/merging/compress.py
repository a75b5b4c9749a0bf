"""Compress a LoRA adapter (e.g. an exported CAT fold of rank sum_k r_k) to a lower rank by SVD.

The CAT fold is exact but its rank grows with every skill. Per module, the best rank-r approximation
of dW = s B A in Frobenius norm is its truncated SVD (Eckart-Young), so :func:`compress_adapter`
writes a standard PEFT LoRA adapter whose dW is exactly that, plus a report of what was lost
(relative Frobenius error and the share of sum(sigma^2) kept, per module and overall).

Why not peft's ``add_weighted_adapter(..., combination_type="svd", svd_rank=r)``: with ONE adapter
peft (0.21) silently switches to ``combination_type="linear"`` and keeps the adapter's own rank, so
nothing is compressed (a test checks this). Passing the adapter twice with weights 0.5 would reach
the SVD branch, but it takes a full SVD of each out x in dW (slow on CPU for a real model), keeps
``use_rslora`` from the source config while setting lora_alpha = r (a wrong scale of sqrt(r) for an
rsLoRA adapter), drops per-module ranks, and returns no singular values for the report. So the SVD
is done here, without forming dW: with B = Q_b R_b and A^T = Q_a R_a (thin QR), dW = Q_b (s R_b R_a^T) Q_a^T
and the SVD of the small (R x R) core gives the exact singular triplets of dW, in float64.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorasoups.merging.export import write_new
from lorasoups.merging.skill_adapters import KEY_PREFIX, MergeError, check_fits, load_skill, lora_config_like

REPORT = "lorasoups_compress.json"


@torch.no_grad()
def lowrank_svd(A: torch.Tensor, B: torch.Tensor, scaling: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD of dW = scaling * B @ A without forming dW: (U (out, q), S (q,), V (in, q)), q = min(R, out, in),
    S descending; computed in float64 on A's device."""
    Qb, Rb = torch.linalg.qr(B.double())  # (out, q_b), (q_b, R)
    Qa, Ra = torch.linalg.qr(A.double().T)  # (in, q_a), (q_a, R)
    Uc, S, Vch = torch.linalg.svd(scaling * (Rb @ Ra.T), full_matrices=False)
    return Qb @ Uc, S, Qa @ Vch.T


def _rank_arg(rank: Any, max_rank: int, label: str) -> int:
    if isinstance(rank, bool) or not isinstance(rank, int):
        raise MergeError(f"rank must be an integer, got {rank!r}")
    if rank < 1:
        raise MergeError(f"rank must be >= 1, got {rank}")
    if rank >= max_rank:
        raise MergeError(
            f"adapter '{label}' has rank {max_rank}; rank {rank} is not below it, so there is nothing to compress"
        )
    return rank


def compress_adapter(
    base_model: nn.Module,
    adapter_dir: str | Path,
    out_dir: str | Path,
    rank: int,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``adapter_dir`` (a PEFT LoRA adapter for ``base_model``) as a rank-``rank`` PEFT LoRA
    adapter in ``out_dir`` whose dW per module is the truncated SVD of the original dW; return the report.

    Modules whose rank is already <= ``rank`` keep their own rank (exactly, through the same SVD);
    the others get rank ``rank``. The new adapter has scaling 1 (lora_alpha = r, no rsLoRA) and
    sqrt(sigma) on each factor. ``base_model`` is only checked (every module must fit it) and gives
    the device for the SVD; it is not modified. ``out_dir`` must be absent or empty unless
    ``overwrite``; on any error nothing is written. The report (also written to ``out_dir`` as
    ``lorasoups_compress.json``) has per-module and overall ``rel_error`` = ||dW - dW_r||_F / ||dW||_F
    and ``energy_kept`` = sum kept sigma^2 / sum sigma^2 (overall: over all modules together).
    """
    from safetensors.torch import save_file

    skill = load_skill(adapter_dir)  # missing / corrupt / non-LoRA directories fail here, clearly
    label = str(adapter_dir)
    check_fits(skill, base_model)
    ranks = {m: skill.rank(m) for m in skill.modules}
    rank = _rank_arg(rank, max(ranks.values()), label)
    named = dict(base_model.named_modules())

    tensors: dict[str, torch.Tensor] = {}
    new_ranks: dict[str, int] = {}
    per_module: dict[str, dict[str, Any]] = {}
    total_sq = kept_sq = 0.0
    for m in skill.modules:
        device = getattr(named[m], "base_layer", named[m]).weight.device
        U, S, V = lowrank_svd(skill.A[m].to(device), skill.B[m].to(device), skill.scaling[m])
        r_new = min(rank, ranks[m])
        root = S[:r_new].sqrt()
        B_new = U[:, :r_new] * root  # (out, r_new)
        A_new = (V[:, :r_new] * root).T  # (r_new, in)
        if not (torch.isfinite(A_new).all() and torch.isfinite(B_new).all()):
            raise MergeError(f"adapter '{label}': the SVD at module {m} gave NaN or Inf; nothing written")
        tensors[f"{KEY_PREFIX}{m}.lora_A.weight"] = A_new.float().cpu().contiguous()
        tensors[f"{KEY_PREFIX}{m}.lora_B.weight"] = B_new.float().cpu().contiguous()
        new_ranks[m] = r_new
        sq = S.square()
        t, kept = float(sq.sum()), float(sq[:r_new].sum())
        total_sq += t
        kept_sq += kept
        per_module[m] = {
            "rank_before": ranks[m],
            "rank_after": r_new,
            "rel_error": math.sqrt(max(t - kept, 0.0) / t) if t > 0 else 0.0,
            "energy_kept": kept / t if t > 0 else 1.0,
            "sigma": [float(x) for x in S[: ranks[m]]],
        }

    # rank ``rank`` with patterns for the modules it exceeds; alpha = rank: scaling 1 everywhere
    config = lora_config_like(skill, new_ranks, {m: float(r) for m, r in new_ranks.items()}, inference_mode=True,
                              default=(rank, float(rank)))
    source_note = None
    soup_json = skill.path / "lorasoups_soup.json"
    if soup_json.is_file():  # the soup an exported fold came from, kept for provenance
        try:
            source_note = json.loads(soup_json.read_text())
        except json.JSONDecodeError:
            source_note = None
    report: dict[str, Any] = {
        "source": {"path": str(skill.path), "sha256": skill.sha256, "provenance": source_note},
        "rank_before": max(ranks.values()),
        "rank_after": rank,
        "ranks_before": sorted(set(ranks.values())),
        "ranks_after": sorted(set(new_ranks.values())),
        "rel_error": math.sqrt(max(total_sq - kept_sq, 0.0) / total_sq) if total_sq > 0 else 0.0,
        "energy_kept": kept_sq / total_sq if total_sq > 0 else 1.0,
        "modules": per_module,
        "note": "written by lorasoups.merging.compress_adapter: per module, the truncated SVD of "
                "dW = scaling * B A; adapter_model.safetensors is a standard PEFT LoRA adapter",
    }

    def write(directory: Path) -> None:
        config.save_pretrained(str(directory))
        save_file(tensors, str(directory / "adapter_model.safetensors"), metadata={"format": "pt"})
        (directory / REPORT).write_text(json.dumps(report, indent=2))

    write_new(out_dir, overwrite, write)
    return report
