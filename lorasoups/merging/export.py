"""Export a soup as ONE standard PEFT LoRA adapter directory (the exact fold for CAT).

Every static soup already holds a single peft adapter whose product B A times its scaling is the
soup's dW; for CAT, B is reparametrised as [alpha_1 s_1 B_1 ... alpha_k s_k B_k] and A = [A_1; ...; A_k]
with scaling 1, so writing the materialised tensors with lora_alpha = r gives a rank-sum_k r_k
adapter that plain ``PeftModel.from_pretrained`` loads with the soup's outputs (fp32 round-off).
We write the two files ourselves (peft's own format: adapter_config.json from ``LoraConfig`` and
adapter_model.safetensors with peft's key names) because ``PeftModel.save_pretrained`` would save
the parametrisation's raw B (without alpha) under non-standard keys.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from lorasoups.merging.skill_adapters import KEY_PREFIX, MergeError, lora_config_like
from lorasoups.merging.soup import ADAPTER, lora_layers, method_of, soup_state


def prepare_out_dir(out_dir: str | Path, overwrite: bool) -> tuple[Path, Path]:
    """Refuse to clobber a non-empty directory; return (final path, fresh temporary sibling)."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise MergeError(f"{out} already exists and is not empty; pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out, Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))


def finish_out_dir(tmp: Path, out: Path) -> Path:
    """Move the finished temporary directory into place (so a failure never leaves half a result)."""
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    os.replace(tmp, out)
    return out


def write_into(directory: str | Path, write) -> Path:
    """Run ``write(tmp)`` in a temporary sibling, then move each file it made into ``directory``
    (created if needed), replacing only those files: how Trainer checkpoints are written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        write(tmp)
        for f in tmp.iterdir():
            os.replace(f, out / f.name)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_new(out_dir: str | Path, overwrite: bool, write) -> Path:
    """Run ``write(tmp)`` in a temporary sibling and move it into place as ``out_dir`` (which must be
    absent or empty unless ``overwrite``): a failure never leaves half a result."""
    out, tmp = prepare_out_dir(out_dir, overwrite)
    try:
        write(tmp)
        return finish_out_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@torch.no_grad()
def adapter_files(soup: nn.Module):
    """Check the soup can be exported and return a writer of its adapter files (nothing written yet)."""
    from safetensors.torch import save_file

    state = soup_state(soup)
    if not method_of(state).exportable:
        raise MergeError(
            f"a '{state.method}' soup depends on the input (per-token gates) and cannot be written as one "
            f"LoRA adapter; use save_soup to keep it"
        )
    layers = lora_layers(soup, state.modules)
    tensors, ranks, alphas = {}, {}, {}
    for m, layer in layers.items():
        A = layer.lora_A[ADAPTER].weight.detach()
        B = layer.lora_B[ADAPTER].weight.detach()  # through the parametrisation: alpha-scaled for CAT
        if not (torch.isfinite(A).all() and torch.isfinite(B).all()):
            raise MergeError(f"soup weights at module {m} contain NaN or Inf; nothing written")
        tensors[f"{KEY_PREFIX}{m}.lora_A.weight"] = A.cpu().contiguous()
        tensors[f"{KEY_PREFIX}{m}.lora_B.weight"] = B.cpu().contiguous()
        ranks[m] = int(A.shape[0])
        alphas[m] = float(layer.scaling[ADAPTER]) * ranks[m]  # same scaling as in the soup
    config = lora_config_like(state.skills[0], ranks, alphas, inference_mode=True)
    provenance = {
        "method": state.method,
        "params": state.params,
        "skills": [s.summary() for s in state.skills],
        "note": "written by lorasoups.merging; adapter_model.safetensors is a standard PEFT LoRA adapter",
    }

    def write(directory: Path) -> None:
        config.save_pretrained(str(directory))
        save_file(tensors, str(directory / "adapter_model.safetensors"), metadata={"format": "pt"})
        (directory / "lorasoups_soup.json").write_text(json.dumps(provenance, indent=2))

    return write


def export_adapter(soup: nn.Module, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write ``soup`` as a standard PEFT LoRA adapter directory and return its path.

    ``out_dir`` must be absent or empty (unless ``overwrite``); on any error nothing is written.
    """
    return write_new(out_dir, overwrite, adapter_files(soup))
