"""Save and reload a soup: its method, parameters, learned tensors (CAT alphas, MoE routers, LoraHub
weights) and references to the skill adapters (path + sha256), not copies of them.

A soup directory holds ``soup.json`` and ``soup_state.safetensors``; ``registry.load_soup`` checks
them with :func:`read_soup`, rebuilds the soup with ``build`` and puts the tensors back with
:func:`restore_tensors`, so the reloaded soup computes exactly the same function. Static merges
(linear, TIES, DARE with its seed) are rebuilt deterministically.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorasoups.merging.export import adapter_files, write_into, write_new
from lorasoups.merging.skill_adapters import MergeError, load_skill, read_json
from lorasoups.merging.soup import SoupState, method_of, soup_state

FORMAT_VERSION = 1


def state_tensors(state: SoupState) -> dict[str, torch.Tensor]:
    """The tensors that make a soup differ from a fresh build with the same parameters: what
    training updates and what the method lists in ``state.saved``."""
    out = {name: p.detach() for name, p in state.trainable.items()}
    out.update({name: read().detach() for name, (read, _) in state.saved.items()})
    return {k: v.cpu().contiguous() for k, v in out.items()}


def soup_files(soup: nn.Module):
    """A writer of the soup's files: soup.json + soup_state.safetensors, plus the exported standard
    adapter (adapter_config.json, adapter_model.safetensors) when the method is exportable, so the
    same directory loads with ``load_soup`` (the learnable soup) and ``PeftModel.from_pretrained``
    (the fold)."""
    from safetensors.torch import save_file

    state = soup_state(soup)
    tensors = state_tensors(state)
    record: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "method": state.method,
        "params": state.params,
        "skills": [s.summary() for s in state.skills],
        "modules": state.modules,
        "tensors": sorted(tensors),
    }
    write_adapter = adapter_files(soup) if method_of(state).exportable else None

    def write(directory: Path) -> None:
        if write_adapter is not None:
            write_adapter(directory)
        (directory / "soup.json").write_text(json.dumps(record, indent=2))
        save_file(tensors, str(directory / "soup_state.safetensors"), metadata={"format": "pt"})

    return write


def save_soup(soup: nn.Module, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write the soup (recipe, learned tensors, and the folded adapter when exportable) to ``out_dir``.

    ``out_dir`` must be absent or empty (unless ``overwrite``); on any error nothing is written.
    """
    return write_new(out_dir, overwrite, soup_files(soup))


def save_pretrained(soup: nn.Module, save_directory: str | Path, **_ignored: Any) -> None:
    """Replacement for ``PeftModel.save_pretrained`` on soups (installed by :func:`build`).

    Trainer/TRL checkpoints call ``model.save_pretrained(dir, state_dict=..., ...)``; peft's version
    would save CAT's raw B (without alpha) under parametrisation keys, and MoE's LoRA without its
    routers' effect: a silently wrong adapter. This writes :func:`save_soup`'s files into the
    (possibly non-empty) checkpoint directory instead; the ``state_dict`` argument is ignored.
    """
    write_into(save_directory, soup_files(soup))


def read_soup(path: str | Path, adapters: list[str | Path] | None = None) -> tuple[dict[str, Any], list, dict]:
    """Check a saved soup before anything is built: ``(record, adapter paths, tensors)``. ``adapters``
    overrides the recorded skill paths (moved directories); their sha256 must still match."""
    from safetensors.torch import load_file

    p = Path(path)
    record = read_json(p / "soup.json", f"soup '{p}'", "not a directory written by save_soup")
    if record.get("format_version") != FORMAT_VERSION:
        raise MergeError(f"soup '{p}': soup.json format_version {record.get('format_version')!r}, expected {FORMAT_VERSION}")
    skills = record["skills"]
    paths = adapters if adapters is not None else [s["path"] for s in skills]
    if len(paths) != len(skills):
        raise MergeError(f"soup '{p}' was made of {len(skills)} adapters, got {len(paths)}")
    try:
        tensors = load_file(str(p / "soup_state.safetensors"))
    except Exception as exc:
        raise MergeError(f"soup '{p}': soup_state.safetensors is missing or unreadable: {exc}") from exc
    if sorted(tensors) != sorted(record["tensors"]):
        raise MergeError(f"soup '{p}': soup_state.safetensors holds {sorted(tensors)}, soup.json lists {record['tensors']}")
    for want, adapter in zip(skills, paths):  # before touching base_model
        got = load_skill(adapter)
        if want["sha256"] != got.sha256:
            raise MergeError(
                f"soup '{p}': skill adapter '{got.path}' has changed since the soup was saved "
                f"(sha256 {got.sha256[:12]} vs recorded {want['sha256'][:12]})"
            )
    return record, list(paths), tensors


@torch.no_grad()
def restore_tensors(soup: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """Put saved tensors (:func:`state_tensors`) back into a freshly built soup."""
    state = soup_state(soup)
    current = state_tensors(state)
    if sorted(current) != sorted(tensors):
        raise MergeError(f"soup '{where}': saved tensors {sorted(tensors)} do not match the rebuilt soup's {sorted(current)}")
    for name, value in tensors.items():
        if value.shape != current[name].shape:
            raise MergeError(f"soup '{where}': tensor {name} has shape {tuple(value.shape)}, "
                             f"soup expects {tuple(current[name].shape)}")
        if name in state.trainable:
            target = state.trainable[name]
            target.copy_(value.to(target.device, target.dtype))
        else:
            state.saved[name][1](value)
