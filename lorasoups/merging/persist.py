"""Save and reload a soup: its method, parameters, learned tensors (CAT alphas, MoE routers, LoraHub
weights) and references to the skill adapters (path + sha256), not copies of them.

A soup directory holds ``soup.json`` and ``soup_state.safetensors``; :func:`load_soup` rebuilds the
soup with :func:`build` and copies the tensors back, so the reloaded soup computes exactly the same
function. Static merges (linear, TIES, DARE with its seed) are rebuilt deterministically.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorasoups.merging.export import adapter_files, write_into, write_new
from lorasoups.merging.skills import MergeError, load_skill
from lorasoups.merging.soup import SoupState, soup_state

FORMAT_VERSION = 1


def state_tensors(state: SoupState) -> dict[str, torch.Tensor]:
    """The tensors that make a soup differ from a fresh build with the same parameters."""
    out = {name: p.detach() for name, p in state.trainable.items()}
    if "alphas" in state.extra:
        out["lorasoup_alphas.weight"] = state.extra["alphas"].weight.detach()
    if state.method == "lorahub":
        out["lorahub.weights"] = state.extra["weights"]
    return {k: v.cpu().contiguous() for k, v in out.items()}


def soup_files(soup: nn.Module):
    """A writer of the soup's files: soup.json + soup_state.safetensors, plus the exported standard
    adapter (adapter_config.json, adapter_model.safetensors) when the method is exportable, so the
    same directory loads with ``load_soup`` (the learnable soup) and ``PeftModel.from_pretrained``
    (the fold)."""
    from safetensors.torch import save_file

    from lorasoups.merging.registry import METHODS

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
    write_adapter = adapter_files(soup) if METHODS[state.method].exportable else None

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


def load_soup(path: str | Path, base_model: nn.Module, adapters: list[str | Path] | None = None) -> nn.Module:
    """Rebuild a saved soup on ``base_model``. ``adapters`` overrides the recorded skill paths (moved
    directories); their sha256 must still match what the soup was trained with."""
    from safetensors.torch import load_file

    from lorasoups.merging.registry import build

    p = Path(path)
    record_file = p / "soup.json"
    if not record_file.is_file():
        raise MergeError(f"soup '{p}': no soup.json (not a directory written by save_soup)")
    try:
        record = json.loads(record_file.read_text())
    except json.JSONDecodeError as exc:
        raise MergeError(f"soup '{p}': soup.json is not valid JSON (line {exc.lineno}): {exc.msg}") from exc
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
    soup = build(record["method"], base_model, list(paths), **record["params"])
    state = soup_state(soup)
    current = state_tensors(state)
    if sorted(current) != sorted(tensors):
        raise MergeError(f"soup '{p}': saved tensors {sorted(tensors)} do not match the rebuilt soup's {sorted(current)}")
    with torch.no_grad():
        for name, value in tensors.items():
            if name == "lorahub.weights":
                from lorasoups.merging.lorahub import set_lorahub_weights

                set_lorahub_weights(state, value)
                continue
            target = state.trainable.get(name)
            if target is None and name == "lorasoup_alphas.weight":
                target = state.extra["alphas"].weight
            if target.shape != value.shape:
                raise MergeError(f"soup '{p}': tensor {name} has shape {tuple(value.shape)}, soup expects {tuple(target.shape)}")
            target.copy_(value.to(target.device, target.dtype))
    return soup
