"""Read and validate the skill LoRA adapters a soup is made of.

Every soup method starts here, so every bad input fails the same way, before anything is built
or written: the message names the adapter directory, the file or tensor, and the problem.
We read the adapter files ourselves (safetensors + adapter_config.json) rather than through
``PeftModel.from_pretrained`` because peft loads a mismatched adapter with a warning (or silently
skips missing keys), and the merge math needs the raw A, B tensors and scalings anyway.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lorasoups.results import file_sha256

KEY_PREFIX = "base_model.model."  # how peft names a causal LM's modules inside adapter files
_KEY_RE = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<which>[AB])(?:\.[^.]+)?\.weight$")


class MergeError(ValueError):
    """Inputs that cannot be merged; the message names the adapter (or parameter) and the problem."""


@dataclass
class SkillAdapter:
    """One skill LoRA: its tensors per adapted module (names relative to the base model)."""

    name: str
    path: Path
    config: dict[str, Any]
    A: dict[str, torch.Tensor]  # module -> (r, in_features)
    B: dict[str, torch.Tensor]  # module -> (out_features, r)
    scaling: dict[str, float]  # module -> lora_alpha / r (or / sqrt(r) with rsLoRA)
    sha256: str
    weights_file: str
    modules: list[str] = field(default_factory=list)  # sorted module names

    def rank(self, module: str) -> int:
        return int(self.A[module].shape[0])

    @property
    def base_model(self) -> str | None:
        return self.config.get("base_model_name_or_path")

    def summary(self) -> dict[str, Any]:
        ranks = sorted({self.rank(m) for m in self.modules})
        return {"name": self.name, "path": str(self.path), "sha256": self.sha256, "ranks": ranks}


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """peft's rank_pattern / alpha_pattern lookup (same regex rule as peft.utils.other.get_pattern_key)."""
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module):
            return patterns[key]
    return default


def _read_tensors(path: Path, label: str) -> tuple[dict[str, torch.Tensor], str]:
    st, binf = path / "adapter_model.safetensors", path / "adapter_model.bin"
    if st.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(st)), st.name
        except Exception as exc:  # safetensors raises several types for a truncated/corrupt file
            raise MergeError(f"adapter '{label}': {st.name} is unreadable (corrupt?): {exc}") from exc
    if binf.is_file():
        try:
            return torch.load(str(binf), map_location="cpu", weights_only=True), binf.name
        except Exception as exc:
            raise MergeError(f"adapter '{label}': {binf.name} is unreadable (corrupt?): {exc}") from exc
    raise MergeError(f"adapter '{label}': no adapter_model.safetensors (or .bin) in {path}")


def read_json(file: Path, owner: str, missing: str) -> Any:
    """A JSON file a merge relies on, or a MergeError naming ``owner``, the file and the line."""
    if not file.is_file():
        raise MergeError(f"{owner}: no {file.name} ({missing})")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise MergeError(f"{owner}: {file.name} is not valid JSON (line {exc.lineno}): {exc.msg}") from exc


def load_skill(path: str | Path, name: str | None = None) -> SkillAdapter:
    """Read one PEFT LoRA adapter directory, checking everything a merge relies on."""
    p = Path(path).expanduser()
    label = str(path)
    if not p.is_dir():
        raise MergeError(f"adapter '{label}': directory does not exist")
    cfg = read_json(p / "adapter_config.json", f"adapter '{label}'", "not a PEFT adapter directory")
    if not isinstance(cfg, dict):
        raise MergeError(f"adapter '{label}': adapter_config.json must hold a JSON object")
    if cfg.get("peft_type") != "LORA":
        raise MergeError(f"adapter '{label}': adapter_config.json field peft_type is {cfg.get('peft_type')!r}, not 'LORA'")
    for flag, why in [
        ("use_dora", "DoRA's magnitude vector cannot be folded into a LoRA soup"),
        ("lora_bias", "LoRA-B biases are not supported by the soup math"),
        ("fan_in_fan_out", "Conv1D (fan_in_fan_out) layers are not supported"),
    ]:
        if cfg.get(flag):
            raise MergeError(f"adapter '{label}': adapter_config.json field {flag} is true: {why}")
    for fld in ("modules_to_save", "target_parameters", "trainable_token_indices"):
        if cfg.get(fld):
            raise MergeError(
                f"adapter '{label}': adapter_config.json field {fld} is set; only plain LoRA on linear "
                f"modules can be merged"
            )
    for fld in ("r", "lora_alpha"):
        if not isinstance(cfg.get(fld), (int, float)) or isinstance(cfg.get(fld), bool):
            raise MergeError(f"adapter '{label}': adapter_config.json field {fld} is missing or not a number")

    tensors, weights_file = _read_tensors(p, label)
    A: dict[str, torch.Tensor] = {}
    B: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        m = _KEY_RE.match(key)
        if not m:
            raise MergeError(
                f"adapter '{label}': {weights_file} tensor '{key}' is not a LoRA A/B weight "
                f"(embeddings, biases and saved modules cannot be merged)"
            )
        if not torch.is_floating_point(value):
            raise MergeError(f"adapter '{label}': {weights_file} tensor '{key}' is not floating point")
        if not torch.isfinite(value).all():
            bad = "NaN" if torch.isnan(value).any() else "Inf"
            raise MergeError(f"adapter '{label}': {weights_file} tensor '{key}' contains {bad} values")
        (A if m["which"] == "A" else B)[m["module"]] = value.float()
    if not A:
        raise MergeError(f"adapter '{label}': {weights_file} holds no LoRA weights")
    if set(A) != set(B):
        lonely = sorted(set(A) ^ set(B))
        raise MergeError(f"adapter '{label}': {weights_file} has lora_A without lora_B (or back) for {lonely[:3]}")

    scaling = {}
    for mod in A:
        a, b = A[mod], B[mod]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise MergeError(
                f"adapter '{label}': module {mod} has lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)}, "
                f"which do not form a rank-r product"
            )
        r = a.shape[0]
        alpha = _pattern_value(cfg.get("alpha_pattern") or {}, mod, cfg["lora_alpha"])
        scaling[mod] = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    return SkillAdapter(
        name=name or p.resolve().name,
        path=p.resolve(),
        config=cfg,
        A=A,
        B=B,
        scaling=scaling,
        sha256=file_sha256(p / weights_file),
        weights_file=weights_file,
        modules=sorted(A),
    )


def load_skills(
    adapters: list[str | Path],
    base_model: nn.Module | None = None,
    names: list[str] | None = None,
) -> list[SkillAdapter]:
    """Read k >= 2 adapters and check that they can be merged with each other and on ``base_model``."""
    if isinstance(adapters, (str, Path)) or not isinstance(adapters, (list, tuple)):
        raise MergeError(f"adapters must be a list of adapter directories, got {type(adapters).__name__}")
    if len(adapters) < 2:
        raise MergeError(f"a soup needs at least 2 adapters, got {len(adapters)}: {[str(a) for a in adapters]}")
    if names is not None and len(names) != len(adapters):
        raise MergeError(f"skill_names has {len(names)} names but there are {len(adapters)} adapters")
    skills = [load_skill(a, None if names is None else names[i]) for i, a in enumerate(adapters)]
    # Unique display names (two adapters called 'final' in different runs are common).
    seen: dict[str, int] = {}
    for s in skills:
        if s.name in seen:
            seen[s.name] += 1
            s.name = f"{s.name}-{seen[s.name]}"
        else:
            seen[s.name] = 0

    first = skills[0]
    for s in skills[1:]:
        if s.base_model != first.base_model:
            raise MergeError(
                f"adapters were trained on different base models: '{first.path}' says "
                f"{first.base_model!r}, '{s.path}' says {s.base_model!r} (adapter_config.json "
                f"field base_model_name_or_path)"
            )
        if set(s.modules) != set(first.modules):
            missing = sorted(set(first.modules) - set(s.modules))
            extra = sorted(set(s.modules) - set(first.modules))
            raise MergeError(
                f"adapter '{s.path}' adapts different target modules than '{first.path}': "
                f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}, extra {extra[:4]}"
                f"{'...' if len(extra) > 4 else ''}"
            )
        for mod in first.modules:
            if s.A[mod].shape[1] != first.A[mod].shape[1] or s.B[mod].shape[0] != first.B[mod].shape[0]:
                raise MergeError(
                    f"adapter '{s.path}' does not match '{first.path}' at module {mod}: "
                    f"in/out features {s.A[mod].shape[1]}/{s.B[mod].shape[0]} vs "
                    f"{first.A[mod].shape[1]}/{first.B[mod].shape[0]} (different base models?)"
                )
    if base_model is not None:
        check_fits(first, base_model)
    return skills


def check_fits(skill: SkillAdapter, base_model: nn.Module) -> None:
    """Every adapted module exists in ``base_model`` as a Linear of the adapter's shape."""
    named = dict(base_model.named_modules())
    for mod in skill.modules:
        layer = named.get(mod)
        if layer is None:
            raise MergeError(f"adapter '{skill.path}' adapts module {mod}, which the base model does not have")
        base = getattr(layer, "base_layer", layer)  # already wrapped by peft
        if not isinstance(base, nn.Linear):
            raise MergeError(
                f"adapter '{skill.path}': base module {mod} is {type(base).__name__}, only nn.Linear is supported"
            )
        want = (base.out_features, base.in_features)
        got = (skill.B[mod].shape[0], skill.A[mod].shape[1])
        if want != got:
            raise MergeError(
                f"adapter '{skill.path}' does not fit the base model at {mod}: base is (out, in) = {want}, "
                f"adapter is {got}"
            )


def layer_index(module: str) -> int | None:
    """Transformer block index of a module name (the first integer path component)."""
    for part in module.split("."):
        if part.isdigit():
            return int(part)
    return None


def require_equal_ranks(skills: list[SkillAdapter], method: str) -> None:
    """Factor-space merges (linear, TIES, DARE) add A's and B's element-wise: ranks must agree."""
    for mod in skills[0].modules:
        ranks = [s.rank(mod) for s in skills]
        if len(set(ranks)) != 1:
            listing = ", ".join(f"{s.name}: r={s.rank(mod)}" for s in skills)
            raise MergeError(
                f"method '{method}' merges the LoRA factors element-wise and needs adapters of equal rank, "
                f"but module {mod} has {listing}; use cat, cat_static or moe for mixed ranks"
            )


def lora_config_like(skill: SkillAdapter, ranks: dict[str, int], alphas: dict[str, float],
                     inference_mode: bool = False, default: tuple[int, float] | None = None):
    """The ``LoraConfig`` of an adapter we write (a soup's, an export, a compression): exactly the
    modules of ``ranks``, listed by full name whatever the skills' own patterns were, each with its
    rank and alpha (patterns where they differ from ``default``, else from the first module's),
    dropout and task type as ``skill`` has them. The one place our adapters' configs are made."""
    from peft import LoraConfig

    modules = sorted(ranks)
    r0, a0 = default or (ranks[modules[0]], alphas[modules[0]])
    return LoraConfig(
        r=r0,
        lora_alpha=a0,
        target_modules=modules,
        rank_pattern={re.escape(m): ranks[m] for m in modules if ranks[m] != r0},
        alpha_pattern={re.escape(m): alphas[m] for m in modules if alphas[m] != a0},
        lora_dropout=float(skill.config.get("lora_dropout") or 0.0),
        bias="none",
        task_type=skill.config.get("task_type"),
        base_model_name_or_path=skill.base_model,
        inference_mode=inference_mode,
    )
