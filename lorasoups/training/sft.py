"""Skill SFT: one LoRA on one dataset with TRL's ``SFTTrainer`` and a peft ``LoraConfig``.

Defaults are the paper's (§B.1): rank 32, lora_alpha 64, dropout 0.05 on q/k/v/up/down_proj;
AdamW, lr 3e-4, 3 epochs, 100 warm-up steps, linear decay, batch 8 x gradient accumulation 4,
half precision on GPU. Loss: completion-only for prompt/completion records, plain LM loss for
``text`` corpora (TRL picks it from the columns; ``completion_only_loss`` forces it).

:class:`SftConfig` is flat (the project's config style, one docstring per field) and maps field by
field onto ``trl.SFTConfig`` (same names); anything else TRL/transformers accepts goes through
``trainer:`` and is checked against ``SFTConfig``'s own fields before anything runs.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from lorasoups.config import ConfigError, did_you_mean, to_dict
from lorasoups.models import DEFAULT_TARGET_MODULES, load_base, short_name
from lorasoups.results import package_versions
from lorasoups.training.runs import (
    CheckpointMarker,
    Run,
    base_identity,
    check_adapter_base,
    check_launch,
    dataset_fingerprint,
    env_flag,
    is_main_process,
    launch_world_size,
    publish_dir,
    save_loss_curve,
    wait_for_everyone,
)

#: SftConfig fields folded into others before a run is keyed (corpus_epochs into the epochs by
#: skill_sft, max_batch_tokens into the batch by fit_batch): left out of the run key, so runs keyed
#: before they existed stay valid.
_FOLDED_FIELDS = ("corpus_epochs", "max_batch_tokens")
#: SftConfig fields that are not SFTConfig arguments (LoRA, precision, our own switches).
_OWN_FIELDS = ("r", "lora_alpha", "lora_dropout", "target_modules", "precision", "base_dtype", "trainer", "lengths",
               *_FOLDED_FIELDS)


@dataclass
class TrainerConfig:
    """What every training run of ours (a skill LoRA, DATA-MIX, a learned soup) sets the same way."""

    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """Mixed precision of the Trainer. ``auto``: bf16 on a CUDA GPU that has it, else fp16 on
    CUDA; on CPU bf16 autocast where the CPU has bf16 hardware (AMX / AVX-512 BF16), else fp32."""
    base_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """dtype of the frozen base weights (the LoRA weights stay fp32, peft's default). ``auto``:
    bfloat16 on CUDA (half the memory, the paper's half precision), float32 on CPU."""
    activation_checkpointing: bool = False
    """Recompute activations in backward (transformers' new name for gradient checkpointing; TRL
    turns it on by default, off here: our models are small, and a soup trains only its alphas or
    routers; it costs ~20 % speed)."""
    seed: int = 0
    """Seed of LoRA init, data order and dropout (and of a soup's random alpha/router init); the
    pipeline sets it to each seed of ``experiment.seeds``."""
    logging_steps: int = 10
    """Log the train loss every this many steps (the curve saved with the run)."""
    save_total_limit: int | None = 2
    """Checkpoints kept (oldest deleted first; a learned soup keeps its best one besides)."""
    trainer: dict[str, Any] = field(default_factory=dict)
    """Any other ``trl.SFTConfig`` argument, passed through (checked against its fields)."""


@dataclass
class SftConfig(TrainerConfig):
    """``sft:`` section: one skill LoRA (paper §B.1 defaults)."""

    # LoRA
    r: int = 32
    """LoRA rank."""
    lora_alpha: float = 64.0
    """LoRA scaling numerator (scaling = lora_alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))
    """Module names (last path component) to adapt."""
    # Data
    max_length: int = 1024
    """Tokens per sequence (truncated beyond; the block length with packing). 2048 for long corpora,
    short for QA memorisation, as the paper found."""
    packing: bool = False
    """Pack several sequences into each block (TRL's best-fit packing). A skill LoRA on a text corpus
    is always packed (TRL's ``wrapped`` strategy: blocks of ``max_length`` tokens, nothing cut off)."""
    lengths: Literal["paper", "uniform"] = "paper"
    """``paper``: a skill LoRA trains at the sequence length the paper used for its data where the
    registry gives one (§B.2: 2048 for SQuAD and BioASQ, 100 for the QABot manuals; 256 for the
    generated biomedical stand-in corpus), else
    ``max_length``. ``uniform``: ``max_length`` for every dataset."""
    completion_only_loss: bool | None = None
    """None: completion-only for prompt/completion data, full LM loss for ``text`` corpora."""
    # Trainer
    learning_rate: float = 3e-4
    """AdamW learning rate."""
    num_train_epochs: float = 3.0
    """Epochs over the training set."""
    corpus_epochs: float | None = None
    """Epochs of a skill LoRA on a text corpus (None: ``num_train_epochs``). The paper trains every
    skill 3 epochs; a profile that affords one epoch of instruction data can still give the small
    corpora (the D&D manual is 29 steps an epoch here) the paper's 3, and DATA-MIX sequential's
    corpus stage with them (§5: "3 epochs on the chapter/manual")."""
    max_steps: int = -1
    """Stop after this many optimiser steps (-1: use num_train_epochs). Smoke runs set it."""
    warmup_steps: float = 100
    """Linear warm-up steps (a value below 1 is a fraction of all steps)."""
    lr_scheduler_type: str = "linear"
    """transformers scheduler name; the paper decays linearly."""
    per_device_train_batch_size: int = 8
    """Sequences per device per micro-batch."""
    gradient_accumulation_steps: int = 4
    """Micro-batches per optimiser step."""
    max_batch_tokens: int | None = None
    """Memory cap: where ``per_device_train_batch_size`` x ``max_length`` exceeds it, the run trains
    smaller micro-batches with more accumulation, the same effective batch (:func:`fit_batch`).
    Measured here: the reading-comprehension oracle, 8 records of up to 1,186 tokens at max_length
    2048, reached 19.5 GB resident and was killed on a 24 GB host."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    optim: str = "adamw_torch"
    """transformers optimiser name."""
    save_steps: int = 100
    """Checkpoint every this many steps (what a killed run resumes from)."""

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise ConfigError(f"sft.r: LoRA rank must be > 0, got {self.r}")
        if self.lora_alpha <= 0:
            raise ConfigError(f"sft.lora_alpha must be > 0, got {self.lora_alpha}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"sft.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.target_modules:
            raise ConfigError("sft.target_modules is empty")
        if self.max_batch_tokens is not None and self.max_batch_tokens <= 0:
            raise ConfigError(f"sft.max_batch_tokens must be > 0 (or null), got {self.max_batch_tokens}")
        if self.corpus_epochs is not None and self.corpus_epochs <= 0:
            raise ConfigError(f"sft.corpus_epochs must be > 0 (or null), got {self.corpus_epochs}")
        if self.max_length <= 0:
            raise ConfigError(f"sft.max_length must be > 0, got {self.max_length}")
        check_trainer_overrides(self.trainer, "sft.trainer")


@dataclass
class RunResult:
    """What a training function returns: where the run lives, and whether it was reused."""

    run_dir: Path
    adapter_dir: Path | None
    reused: bool
    summary: dict[str, Any]
    model: Any = None  # the trained model when this call trained it (None when reused)
    extra: dict[str, Any] = field(default_factory=dict)


def check_trainer_overrides(overrides: dict[str, Any], where: str) -> None:
    """Reject a ``trainer:`` key that ``trl.SFTConfig`` does not have (with a "did you mean")."""
    from trl import SFTConfig

    known = {f.name for f in dataclasses.fields(SFTConfig)}
    for key in overrides:
        if key not in known:
            raise ConfigError(f"{where}: '{key}' is not a trl.SFTConfig argument{did_you_mean(key, known)}")
        if key in ("output_dir", "resume_from_checkpoint"):
            raise ConfigError(f"{where}: '{key}' is set by the run directory; do not override it")


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX tiles or AVX-512 BF16), checked at run
    time. Without them oneDNN emulates bf16 and a bf16 matmul is several times *slower* than fp32
    (measured on an AVX-512 Xeon without AMX: 18 vs 73 GFLOP/s), so ``auto`` keeps fp32 there.
    torch exposes the CPUID checks only as private helpers of ``torch.cpu``; missing ones read False."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def precision_kwargs(precision: str) -> dict[str, bool]:
    """bf16/fp16 flags for TrainingArguments (TRL turns bf16 on by default, even on CPU).

    ``auto``: bf16 on a CUDA GPU that has it, else fp16 on CUDA; on CPU bf16 autocast where the CPU
    has bf16 hardware (:func:`cpu_has_fast_bf16`), else fp32. The trained parameters stay fp32
    (autocast computes in bf16; the optimiser updates fp32 master weights). bf16 on CPU also sets
    ``use_cpu`` (transformers refuses bf16 without a GPU otherwise)."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        if cuda:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "bf16" if cpu_has_fast_bf16() else "fp32"
    if precision == "fp16" and not cuda:
        raise ConfigError("precision 'fp16' needs a CUDA GPU (mixed-precision fp16 is not supported on CPU)")
    out = {"bf16": precision == "bf16", "fp16": precision == "fp16"}
    if precision == "bf16" and not cuda:
        out["use_cpu"] = True
    return out


def resolved_precision(cfg: Any) -> dict[str, Any]:
    """What ``auto`` precision and dtype become on this machine (part of a run's key)."""
    cuda = torch.cuda.is_available()
    dtype = cfg.base_dtype if cfg.base_dtype != "auto" else ("bfloat16" if cuda else "float32")
    return {"device": "cuda" if cuda else "cpu", "base_dtype": dtype, **precision_kwargs(cfg.precision)}


def cpu_launch_kwargs() -> dict[str, Any]:
    """TrainingArguments for a multi-process launch on CPU (none for one process or on CUDA).

    Measured with accelerate 1.15 / transformers 5.24: without them a 2-process CPU launch of a
    GPU-style config (DDP or DeepSpeed) gives each rank distributed type NO or a world of 1, so
    every rank trains alone (or DeepSpeed's batch-size check fails). ``use_cpu`` selects
    accelerate's MULTI_CPU (DDP over gloo); DeepSpeed must not get it (accelerate turns DeepSpeed
    off under ``cpu``) and needs only the gloo backend."""
    if torch.cuda.is_available() or launch_world_size() < 2:
        return {}
    if env_flag("ACCELERATE_USE_DEEPSPEED"):
        return {"ddp_backend": "gloo"}
    return {"ddp_backend": "gloo", "use_cpu": True}


def compact_lm_head_on_cpu() -> None:
    """Let TRL's fused LM head score only the positions that carry a label on CPU too.

    TRL (1.16) projects through the LM head in tiles, and on CUDA only at the positions whose
    label is not -100; elsewhere it projects every position (to keep tile shapes fixed for
    compilers such as Neuron's), then masks. On CPU eager nothing recompiles, and the waste is
    most of the step on completion-only data: the counting records carry ~8 labelled tokens of
    ~90, so the 49k-vocabulary projection and its backward ran on ~11x the positions needed
    (``benchmarks/bench_train_cpu.py``, rows ``*_compact``). The per-position log-probabilities
    are the same either way (the tiles run over the vocabulary, row by row). TRL chooses through
    the one name below; if a TRL release renames it this fails loudly (tests/test_training.py).
    """
    import trl.trainer.utils as trl_utils

    original = trl_utils._use_triton
    if getattr(original, "_lorasoups_compact", False):
        return

    def compact(device: torch.device) -> bool:
        return device.type == "cpu" or original(device)

    compact._lorasoups_compact = True  # type: ignore[attr-defined]
    compact._original = original  # type: ignore[attr-defined]  # the benchmark's baseline row
    trl_utils._use_triton = compact


def trl_args(cfg: Any, output_dir: Path, **extra: Any):
    """``trl.SFTConfig`` from our config: every field with an SFTConfig name maps onto it.
    Every TRL trainer of the project is configured here, so this also turns on the compact LM head."""
    from trl import SFTConfig

    compact_lm_head_on_cpu()
    known = {f.name for f in dataclasses.fields(SFTConfig)}
    mapped = {k: v for k, v in to_dict(cfg).items() if k in known and k not in _OWN_FIELDS}
    kwargs = {
        **mapped,
        **precision_kwargs(cfg.precision),
        "output_dir": str(output_dir),
        "save_strategy": "steps",
        "report_to": "none",
        "logging_first_step": True,
        "dataloader_pin_memory": torch.cuda.is_available(),  # pinning only helps host-to-GPU copies
        **cpu_launch_kwargs(),
        **extra,
        **cfg.trainer,
    }
    return SFTConfig(**kwargs)


# --------------------------------------------------------------------------- validation
def check_dataset(ds: Any, where: str, completion_only_loss: bool | None = None) -> str:
    """Non-empty, with ``text`` or ``prompt``+``completion`` (or ``messages``) columns; returns the kind."""
    if ds is None or len(ds) == 0:
        raise ConfigError(f"{where}: the dataset is empty; nothing to train on")
    cols = set(ds.column_names)
    if {"prompt", "completion"} <= cols:
        kind = "prompt_completion"
        for i, (p, c) in enumerate(zip(ds["prompt"], ds["completion"])):
            if not isinstance(c, (str, list)) or not c:
                raise ConfigError(f"{where}: row {i} field 'completion' is empty or not text")
            if not isinstance(p, (str, list)):
                raise ConfigError(f"{where}: row {i} field 'prompt' is not text")
    elif "text" in cols:
        kind = "text"
        for i, t in enumerate(ds["text"]):
            if not isinstance(t, str) or not t.strip():
                raise ConfigError(f"{where}: row {i} field 'text' is empty or not text")
    elif "messages" in cols:
        kind = "messages"
    else:
        raise ConfigError(
            f"{where}: records need 'prompt' and 'completion' (instruction data) or 'text' (a corpus); "
            f"got columns {sorted(cols)}"
        )
    if completion_only_loss and kind != "prompt_completion":
        raise ConfigError(f"{where}: completion_only_loss is true but the records are {kind}, not prompt/completion")
    return kind


def check_target_modules(model: torch.nn.Module, targets: list[str], where: str = "sft.target_modules") -> None:
    """Every target names a Linear layer of the model (peft would only fail later, mid-setup)."""
    leaves = {name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)}
    for t in targets:
        if t not in leaves and not any(name.endswith(t) for name, _ in model.named_modules()):
            raise ConfigError(
                f"{where}: the base model has no linear module '{t}'{did_you_mean(t, leaves)} "
                f"(linear modules: {', '.join(sorted(leaves))})"
            )


# --------------------------------------------------------------------------- the run
def load_for_training(base: str, merge_adapters: list[str | Path] = (), seed: int = 0, dtype: str = "float32"):
    """Base model on CPU (the Trainer moves it to each rank's device) with earlier adapters merged in.

    ``dtype: auto`` is bfloat16 when CUDA is present (the weights will train there), else float32.
    """
    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    model, tokenizer = load_base(base, dtype=dtype, device="cpu", seed=seed)
    for adapter in merge_adapters:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    tokenizer.padding_side = "right"  # training pads on the right (load_base left-pads for generation)
    return model, tokenizer


def make_sft_trainer(model, tokenizer, train_dataset: Any, cfg: SftConfig, output_dir: Path,
                     eval_dataset: Any = None, callbacks: list[Any] = ()):
    """TRL's SFTTrainer with a fresh LoRA (from ``cfg``) on ``model``; nothing trained yet."""
    from peft import LoraConfig
    from trl import SFTTrainer

    lora = LoraConfig(r=cfg.r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")
    extra = {"eval_strategy": "steps", "eval_steps": cfg.save_steps} if eval_dataset is not None else {}
    args = trl_args(cfg, output_dir, **extra)
    return SFTTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      processing_class=tokenizer, peft_config=lora, callbacks=list(callbacks))


def fit_batch(cfg: SftConfig, longest: int | None = None) -> SftConfig:
    """``cfg`` with ``max_batch_tokens`` folded in: the largest micro-batch dividing
    ``per_device_train_batch_size`` whose ``micro x length`` fits the cap (at least 1), ``length``
    being the longest sequence the run can see (``longest`` where known, at most ``max_length``),
    and the accumulation that keeps the effective batch. The cap is then cleared, so the run's key
    names the batch it trains."""
    if cfg.max_batch_tokens is None:
        return cfg
    n, length = cfg.per_device_train_batch_size, min(cfg.max_length, longest or cfg.max_length)
    micro = max([d for d in range(1, n + 1) if n % d == 0 and d * length <= cfg.max_batch_tokens], default=1)
    return dataclasses.replace(cfg, per_device_train_batch_size=micro, max_batch_tokens=None,
                               gradient_accumulation_steps=cfg.gradient_accumulation_steps * (n // micro))


def longest_record(ds: Any, base: str, data_kind: str, cfg: SftConfig) -> int | None:
    """Tokens of the longest prompt + completion record (+ EOS), where :func:`fit_batch` needs it
    (the cap binds at ``max_length``): short records at a long ``max_length`` (SQuAD at the paper's
    2048) keep their batch. None (use ``max_length``) for packed or conversational data."""
    if cfg.max_batch_tokens is None or cfg.per_device_train_batch_size * cfg.max_length <= cfg.max_batch_tokens:
        return None
    if data_kind != "prompt_completion" or cfg.packing:
        return None
    if not all(isinstance(p, str) and isinstance(c, str) for p, c in zip(ds["prompt"], ds["completion"])):
        return None
    from transformers import AutoTokenizer

    from lorasoups.models import ModelLoadError, resolve_model_dir

    try:
        tok = AutoTokenizer.from_pretrained(resolve_model_dir(base))
    except ModelLoadError:  # a model built in memory: bound by max_length
        return None
    return max(len(tok(p + c)["input_ids"]) for p, c in zip(ds["prompt"], ds["completion"])) + 1


def train_sft(
    base: str,
    train_dataset: Any,
    cfg: SftConfig | None = None,
    *,
    name: str | None = None,
    eval_dataset: Any = None,
    merge_adapters: list[str | Path] = (),
    callbacks: list[Any] = (),
    kind: str = "sft",
) -> RunResult:
    """Train one LoRA on ``train_dataset`` over base model ``base`` (a name or a model directory).

    The run directory is keyed by the hash of everything that decides the result (config, base
    identity, data content); a finished run is returned as is, a killed one resumes. Under
    ``accelerate launch`` every rank calls this with the same arguments.
    ``merge_adapters``: adapters merged into the base before training (DATA-MIX sequential).
    """
    cfg = cfg or SftConfig()
    data_kind = check_dataset(train_dataset, f"{name or kind}: train_dataset", cfg.completion_only_loss)
    cfg = fit_batch(cfg, longest_record(train_dataset, base, data_kind, cfg))
    if eval_dataset is not None:
        check_dataset(eval_dataset, f"{name or kind}: eval_dataset", cfg.completion_only_loss)
    if merge_adapters:
        check_adapter_base(list(merge_adapters), base)
    run = Run(kind, name or short_name(base), {
        "base": base_identity(base, list(merge_adapters)),
        "train_data": dataset_fingerprint(train_dataset),
        "eval_data": dataset_fingerprint(eval_dataset),
        "sft": {k: v for k, v in to_dict(cfg).items() if k not in _FOLDED_FIELDS},
        "resolved": resolved_precision(cfg),
    })
    if run.is_complete():
        return RunResult(run.dir, run.adapter, True, run.summary())

    model, tokenizer = load_for_training(base, merge_adapters, dtype=cfg.base_dtype)
    check_target_modules(model, cfg.target_modules)
    run.start()
    trainer = make_sft_trainer(model, tokenizer, train_dataset, cfg, run.checkpoints, eval_dataset,
                               [CheckpointMarker(), *callbacks])
    check_launch(trainer)
    truncated = truncated_away(train_dataset, trainer, name or kind)
    start = time.perf_counter()
    resume = run.last_checkpoint()
    output = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    summary = {
        "kind": kind,
        "name": run.name,
        "key": run.key,
        "data_kind": data_kind,
        "resumed_from": resume,
        "global_step": trainer.state.global_step,
        "train_loss": output.training_loss,  # mean over the steps run in this session
        "last_logged_loss": next((r["loss"] for r in reversed(trainer.state.log_history) if "loss" in r), None),
        "metrics": output.metrics,
        "seconds_this_session": round(seconds, 2),
        "versions": package_versions(),
    }
    if truncated:
        summary["records_without_completion"] = truncated
    save_adapter(trainer, run, {"base": base, "merged_adapters": [str(a) for a in merge_adapters]})
    finish(trainer, run, summary)
    # Under mixed precision accelerate wraps the model's forward in autocast; the model handed back
    # runs as it would after a reload (fp32 on CPU), not in bf16 (measured: logits 0.08 apart).
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    return RunResult(run.dir, run.adapter, False, summary, model=model)


def truncated_away(train_dataset: Any, trainer: Any, where: str) -> int:
    """Records TRL dropped because truncation at ``max_length`` left no completion token to learn
    from (TRL does it silently). All of them: an error before training; some: reported and
    recorded in the run summary (``records_without_completion``). Packed data is not compared
    (its rows are blocks, not records). Reads the trainer's own arguments, where a ``trainer:``
    override has the last word."""
    max_length = getattr(trainer.args, "max_length", None)
    if getattr(trainer.args, "packing", False):
        return 0
    kept, given = len(trainer.train_dataset), len(train_dataset)
    if kept == 0:
        raise ConfigError(f"{where}: every one of the {given} training records lost its completion to "
                          f"truncation at max_length {max_length} (the prompts are longer); raise max_length")
    if kept < given:
        print(f"[{where}] {given - kept} of {given} records have no completion token within max_length "
              f"{max_length} and are not trained on (recorded as records_without_completion)", flush=True)
    return given - kept


def save_adapter(trainer: Any, run: Run, provenance: dict[str, Any]) -> Path:
    """The final adapter, written to a temporary sibling by every rank (ZeRO-3 gathers), then renamed."""
    tmp = run.dir / ".adapter.tmp"
    if is_main_process() and tmp.exists():
        shutil.rmtree(tmp)
    wait_for_everyone()
    trainer.save_model(str(tmp))
    wait_for_everyone()
    if is_main_process():
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; the run's config.json says it all
        (tmp / "lorasoups_train.json").write_text(
            json.dumps({"run": run.dir.name, "name": run.name, **provenance}, indent=2))
        publish_dir(tmp, run.adapter)
    wait_for_everyone()
    return run.adapter


def finish(trainer: Any, run: Run, summary: dict[str, Any]) -> None:
    """Loss curve and log history, then COMPLETE (last), then everyone leaves together."""
    if is_main_process():
        save_loss_curve(trainer.state.log_history, run.dir)
    run.finish(summary)
    wait_for_everyone()


# --------------------------------------------------------------------------- command line
def _parse_set(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> RunResult:
    """``python -m lorasoups.training.sft`` (or under ``accelerate launch``): one skill LoRA.

    Data: ``--dataset NAME`` (the data registry) or ``--data-file x.jsonl`` (records with
    prompt/completion or text). Config: the ``sft:`` section of ``--config`` YAML files (left to
    right), then ``--set key=value`` overrides, all validated before anything loads.
    """
    import argparse

    from lorasoups.config import from_dict, load_layers

    ap = argparse.ArgumentParser(prog="python -m lorasoups.training.sft", description=main.__doc__)
    ap.add_argument("--base", default="smollm2-135m-instruct", help="model name or directory")
    ap.add_argument("--dataset", help="data registry name (lorasoups.data.REGISTRY)")
    ap.add_argument("--source", default="auto", help="data source: auto, hub, mirror or generated")
    ap.add_argument("--size", type=int, default=None, help="records to load (default: all)")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--data-file", help="a JSON-lines file of records instead of --dataset")
    ap.add_argument("--config", action="append", default=[], help="YAML file with an sft: section")
    ap.add_argument("--set", action="append", default=[], help="sft field override, key=value")
    ap.add_argument("--name", default=None, help="run name (default: the dataset's)")
    a = ap.parse_args(argv)
    if bool(a.dataset) == bool(a.data_file):
        ap.error("give exactly one of --dataset and --data-file")
    layers = load_layers(*a.config, overrides={"sft": _parse_set(a.set)}) if a.config or a.set else {}
    cfg = from_dict(SftConfig, layers.get("sft") or {}, where=" + ".join(a.config) + ":sft" if a.config else "sft")
    if a.data_file:
        from datasets import Dataset

        from lorasoups.data.io import read_records

        train = Dataset.from_list([dict(r.data) for r in read_records(Path(a.data_file))])
        name = a.name or Path(a.data_file).stem
    else:
        from lorasoups.data import load

        train = load(a.dataset, "train", source=a.source, seed=a.data_seed, size=a.size)
        name = a.name or a.dataset
    result = train_sft(a.base, train, cfg, name=name)
    if is_main_process():
        print(json.dumps({"run_dir": str(result.run_dir), "adapter": str(result.adapter_dir),
                          "reused": result.reused, "train_loss": result.summary.get("train_loss")}))
    return result


if __name__ == "__main__":
    main()
