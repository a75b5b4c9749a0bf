"""A random LoRA shaped like a trained one: the ``cat_random`` control's stand-in skill.

A 2026 study of recycled LoRAs found adaptive merging of randomly initialised LoRAs did about as
well as of trained ones; ``cat_random`` asks the same of CAT by replacing one skill LoRA with
noise of the same rank and size. "Same size" is matched where it acts on the model: per module,
``||B' A'||_F == ||B A||_F`` (the scaling ``lora_alpha / r`` is copied with the config, so the
update ``s B' A'`` has the trained update's Frobenius norm). A' and B' are Gaussian, each first
scaled to its trained factor's norm, then both by the same factor ``sqrt(c)`` that makes the
product's norm match (so the A:B norm ratio is the trained one's as well).

peft has no such utility (its ``init_lora_weights`` options zero B, so a fresh LoRA is the
identity); this writes the tensors directly and copies ``adapter_config.json``, so the result is a
standard PEFT adapter.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from lorasoups.merging.export import write_new
from lorasoups.merging.skill_adapters import KEY_PREFIX, MergeError, load_skill

#: The file beside the adapter that says what it is and how it was made.
REPORT = "random_lora.json"


def random_lora_like(adapter: str | Path, out_dir: str | Path, seed: int, overwrite: bool = False) -> dict[str, Any]:
    """Write to ``out_dir`` a random LoRA with ``adapter``'s config, ranks and per-module update
    norm (module docstring). Returns the report (also written as ``random_lora.json``): source,
    seed, and per module the trained and random ``||s B A||_F``."""
    skill = load_skill(adapter)
    gen = torch.Generator().manual_seed(int(seed))
    tensors: dict[str, torch.Tensor] = {}
    modules: list[dict[str, Any]] = []
    for m in skill.modules:
        A, B = skill.A[m].float(), skill.B[m].float()
        target = float(torch.linalg.matrix_norm(B @ A))
        if target == 0.0:
            raise MergeError(f"{skill.path}: module {m} has a zero update (B A = 0); a norm-matched random "
                             f"LoRA cannot be made of an untrained adapter")
        a = torch.randn(A.shape, generator=gen)
        b = torch.randn(B.shape, generator=gen)
        a *= A.norm() / a.norm()
        b *= B.norm() / b.norm()
        c = target / float(torch.linalg.matrix_norm(b @ a))
        a *= c ** 0.5
        b *= c ** 0.5
        tensors[f"{KEY_PREFIX}{m}.lora_A.weight"] = a.contiguous()
        tensors[f"{KEY_PREFIX}{m}.lora_B.weight"] = b.contiguous()
        s = skill.scaling[m]
        modules.append({"module": m, "rank": skill.rank(m), "trained_update_norm": s * target,
                        "random_update_norm": s * float(torch.linalg.matrix_norm(b @ a))})
    report = {"kind": "random_lora", "source": str(skill.path), "source_sha256": skill.sha256, "seed": int(seed),
              "matched": "per-module Frobenius norm of the update s * B @ A", "modules": modules}
    config = dict(skill.config)

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / REPORT).write_text(json.dumps(report, indent=2) + "\n")

    write_new(out_dir, overwrite, write)
    return report
