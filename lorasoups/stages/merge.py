"""Stage 05: the static merges (static CAT, linear, TIES, DARE) of each setting's skill LoRAs,
exported as standard PEFT adapters so evaluation loads every model the same way."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorasoups import paths
from lorasoups.merging import build, export_adapter
from lorasoups.models import load_base
from lorasoups.results import fingerprint
from lorasoups.stages.common import skill_adapters, write_train_result
from lorasoups.stages.config import ExperimentConfig


@dataclass
class _Exported:
    """Enough of a training RunResult for :func:`write_train_result`."""

    run_dir: Path
    adapter_dir: Path
    reused: bool
    summary: dict[str, Any]


def merge_params(method: str, exp: ExperimentConfig, k: int, seed: int) -> dict[str, Any]:
    """Hyper-parameters of a static merge (the sweep stage, when run, overrides them)."""
    if method == "cat_static":
        return {"alphas": [exp.static_alpha] * k}
    params: dict[str, Any] = {"alphas": list(exp.merge_alphas)}
    if method in ("ties", "dare", "dare_ties", "magnitude_prune"):
        params["density"] = exp.merge_density
    if method.startswith("dare"):
        params["seed"] = seed
    return params


def static_merges(model: str, setting: str, seed: int, exp: ExperimentConfig, profile: str,
                  overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Build each merge of ``exp.merges`` on a fresh base and export it; returns method -> params."""
    adapters = skill_adapters(profile, setting, seed)
    done = {}
    for method in exp.merges:
        params = (overrides or {}).get(method) or merge_params(method, exp, len(adapters), seed)
        key = fingerprint({"method": method, "params": params, "adapters": adapters, "base": model})
        out = paths.runs_dir() / "merges" / f"{setting}-{method}-{key}"
        reused = (out / "adapter_model.safetensors").is_file()
        if not reused:
            base, _ = load_base(model, device="cpu", dtype="float32")  # merging is exact fp32 arithmetic
            export_adapter(build(method, base, adapters, **params), out)
        print(f"[{setting}] {method}: {'reused' if reused else 'exported'} {out.name}", flush=True)
        write_train_result(profile, setting, method, seed, _Exported(out, out, reused, {}),
                           {"method": method, "params": params, "adapters": adapters}, model)
        done[method] = params
    return done
