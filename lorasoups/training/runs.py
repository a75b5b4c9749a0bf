"""Run directories keyed by the hash of the resolved config: cached, resumable, never half-taken.

    runs/training/<kind>-<name>-<key>/
        config.json           the resolved config the key was computed from (written first)
        checkpoints/          Trainer checkpoints; each gets a ``LORASOUPS_CHECKPOINT_OK`` file once
                              it is fully written (transformers' own ``get_last_checkpoint`` takes
                              the highest-numbered folder even if a kill left it half-written)
        adapter/              the final PEFT adapter (written to a temporary sibling, then renamed)
        log_history.json, loss.png
        COMPLETE              written LAST, atomically: only then is the run taken as finished

A run killed at any point (SIGKILL included) restarts from its last *marked* checkpoint; the
Trainer restores weights, optimiser, scheduler, RNG states and the data position from it.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from lorasoups import paths
from lorasoups.models import MODELS, model_identity, resolve_model_dir, short_name
from lorasoups.results import file_sha256, fingerprint, peak_memory, reset_peak_memory

COMPLETE = "COMPLETE"
CHECKPOINT_OK = "LORASOUPS_CHECKPOINT_OK"
CHECKPOINT_PREFIX = "checkpoint-"


class RunError(RuntimeError):
    """A run directory that cannot be used as asked (e.g. its config.json disagrees with its key)."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_dir(tmp: Path, final: Path) -> Path:
    """Move a finished temporary directory into place, replacing a stale one (from a killed run)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def is_main_process() -> bool:
    """Rank 0 of an accelerate/torchrun launch (or a plain single process)."""
    from accelerate import PartialState

    return PartialState().is_main_process


def wait_for_everyone() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def launch_world_size() -> int:
    """Processes of this launch (``WORLD_SIZE``, set by accelerate/torchrun; 1 for a plain process)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_flag(name: str) -> bool:
    """An accelerate launcher flag such as ``ACCELERATE_USE_DEEPSPEED`` (``"true"`` when set)."""
    return os.environ.get(name, "false").lower() == "true"


def check_launch(trainer: Any) -> None:
    """Refuse a launch that accelerate would run as something other than what was asked.

    Measured with accelerate 1.15 on CPU: it turns FSDP on only for GPU-type devices, so an FSDP
    config there runs as DDP (MULTI_CPU), or, without ``use_cpu``, as N processes that each see
    distributed type NO and train alone on all the data; nothing says so. DDP
    (``configs/accelerate/ddp_cpu.yaml``) and DeepSpeed ZeRO-2/3 (``deepspeed_zero2_cpu.yaml``, ``deepspeed_zero3_cpu.yaml``) do
    run on CPU (tests/test_training_distributed.py)."""
    from accelerate.utils import DistributedType

    world = launch_world_size()
    kind = trainer.accelerator.distributed_type
    asked = {"ACCELERATE_USE_FSDP": DistributedType.FSDP, "ACCELERATE_USE_DEEPSPEED": DistributedType.DEEPSPEED}
    hint = "On CPU use configs/accelerate/ddp_cpu.yaml or deepspeed_zero2_cpu.yaml"
    for env, want in asked.items():
        if env_flag(env) and kind != want:
            raise RunError(f"the launch asked for {want.value} but accelerate set up {kind.value} "
                           f"({'its FSDP needs a GPU' if want == DistributedType.FSDP else 'not available here'}). {hint}")
    if world > 1 and kind == DistributedType.NO:
        raise RunError(f"launched as {world} processes, but accelerate runs each one alone (distributed type NO). {hint}")
    check_launch_precision(trainer.args)


def check_launch_precision(args: Any) -> None:
    """Refuse a launch whose config's ``mixed_precision`` disagrees with the run's precision.

    transformers (5.24) reads ``ACCELERATE_MIXED_PRECISION`` and lets bf16/fp16 flags override it
    only when they are on, so an fp32 run under a bf16 launch config trains in bf16, and a bf16 run
    (``precision: auto`` on a CPU with bf16 hardware) under the CPU configs' ``'no'`` trains in bf16
    too; under DeepSpeed that also casts the LoRA weights to bf16. Either way the run's key would
    name a precision it did not train in. A plain process sets no launch precision."""
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION")
    asked = "bf16" if args.bf16 else "fp16" if args.fp16 else "no"
    if launched is not None and launched != asked:
        raise RunError(f"the accelerate launch config says mixed_precision: {launched}, but the run's precision "
                       f"resolves to {asked if asked != 'no' else 'fp32'} (precision: auto picks bf16 on a CPU with bf16 "
                       f"hardware and on GPUs that have it); transformers would train in {args.mixed_precision}. "
                       f"Set the run's precision (sft.precision / cat.precision) or the config's mixed_precision "
                       f"so that they agree")


@dataclass
class Run:
    """One training run's directory and the resolved config it is keyed by."""

    kind: str
    name: str
    config: dict[str, Any]
    key: str = field(init=False)
    dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.key = fingerprint({"kind": self.kind, **self.config})
        safe = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in self.name) or "run"
        self.dir = paths.runs_dir() / "training" / f"{self.kind}-{safe}-{self.key}"

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.dir / "adapter"

    @property
    def complete_file(self) -> Path:
        return self.dir / COMPLETE

    def is_complete(self) -> bool:
        return self.complete_file.is_file()

    def summary(self) -> dict[str, Any]:
        """What COMPLETE records (metrics, timings, versions)."""
        return json.loads(self.complete_file.read_text())

    def start(self) -> None:
        """Create the directory and write config.json (or check an existing one matches); the
        memory peak recorded at :meth:`finish` counts from here."""
        reset_peak_memory()
        cfg_file = self.dir / "config.json"
        text = json.dumps({"kind": self.kind, "name": self.name, "key": self.key, "config": self.config},
                          indent=2, sort_keys=True, default=str)
        if cfg_file.is_file():
            old = json.loads(cfg_file.read_text())
            if old.get("key") != self.key:
                raise RunError(f"{cfg_file} holds key {old.get('key')!r}, expected {self.key!r}; "
                               f"move the folder away (it is not this run's)")
            return
        if is_main_process():
            atomic_write_text(cfg_file, text + "\n")

    def last_checkpoint(self) -> str | None:
        """The highest-step checkpoint that was completely written, or None."""
        if not self.checkpoints.is_dir():
            return None
        done = [p for p in self.checkpoints.iterdir()
                if p.name.startswith(CHECKPOINT_PREFIX) and p.name[len(CHECKPOINT_PREFIX):].isdigit()
                and (p / CHECKPOINT_OK).is_file()]
        if not done:
            return None
        return str(max(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):])))

    def finish(self, summary: dict[str, Any]) -> None:
        """Write COMPLETE (main process only, last of all files), with the training process's peak
        memory added to ``summary`` (in place, so the fresh result and a reused one agree): a result
        that reuses the run later records the run's own peak, not its reader's."""
        summary.setdefault("peak_memory", peak_memory())
        if is_main_process():
            # Key order kept (no sort_keys): a reused run reads back exactly what the fresh run returned.
            atomic_write_text(self.complete_file, json.dumps(summary, indent=2, default=str) + "\n")


class CheckpointMarker(TrainerCallback):
    """Marks a checkpoint folder as complete once the Trainer has written all of it.

    ``on_save`` runs after ``Trainer._save_checkpoint`` returns (weights, optimiser, scheduler, RNG
    and trainer_state.json all written); the barrier makes sure every rank's RNG file is there too.
    """

    def on_save(self, args, state, control, **kwargs):
        wait_for_everyone()
        if state.is_world_process_zero:
            ckpt = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
            if ckpt.is_dir():
                atomic_write_text(ckpt / CHECKPOINT_OK, json.dumps({"global_step": state.global_step}) + "\n")
        return control


# --------------------------------------------------------------------------- identities for keys
def dataset_fingerprint(ds: Any) -> dict[str, Any]:
    """Content hash of a ``datasets.Dataset`` (or list of records): rows, columns and order.

    Why not ``Dataset._fingerprint``: in-memory datasets get a random one, so equal data would not
    give equal run keys.
    """
    if ds is None:
        return {"rows": 0, "sha256": None}
    h = hashlib.sha256()
    if isinstance(ds, list):
        rows = ds
        columns = sorted({k for r in rows for k in r})
        for r in rows:
            h.update(json.dumps(r, sort_keys=True, default=str).encode())
            h.update(b"\n")
        return {"rows": len(rows), "columns": columns, "sha256": h.hexdigest()[:16]}
    for batch in ds.with_format(None).iter(batch_size=1000):
        h.update(json.dumps(batch, sort_keys=True, default=str).encode())
    return {"rows": len(ds), "columns": list(ds.column_names), "sha256": h.hexdigest()[:16]}


@functools.lru_cache(maxsize=64)
def _dir_weights_sha(directory: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    for f in sorted(Path(directory).iterdir()):
        if f.suffix in (".safetensors", ".bin") or f.name == "config.json":
            h.update(f.name.encode())
            h.update(file_sha256(f).encode())
    return h.hexdigest()[:16]


def base_identity(base: str, merged_adapters: list[str | Path] = ()) -> dict[str, Any]:
    """What a run key records about its base model: name, content hash, adapters merged into it."""
    ident = model_identity(base)
    if base not in MODELS:
        d = Path(resolve_model_dir(base))
        if d.is_dir():
            stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(d.iterdir()))
            ident["weights_sha256"] = _dir_weights_sha(str(d.resolve()), stamp)
    if merged_adapters:
        ident["merged_adapters"] = [adapter_identity(a) for a in merged_adapters]
    return ident


def adapter_identity(adapter: str | Path) -> dict[str, Any]:
    """Name and weights hash of a PEFT adapter directory."""
    p = Path(adapter)
    weights = p / "adapter_model.safetensors"
    if not weights.is_file():
        weights = p / "adapter_model.bin"
    return {"name": short_name(str(p)), "sha256": file_sha256(weights) if weights.is_file() else None}


def save_loss_curve(log_history: list[dict[str, Any]], run_dir: Path, title: str | None = None) -> Path:
    """``log_history.json`` (the Trainer's logs) and ``loss.png`` (train and eval loss by step)."""
    atomic_write_text(run_dir / "log_history.json", json.dumps(log_history, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")  # headless: notebooks run under papermill
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for key, label in (("loss", "train"), ("eval_loss", "validation")):
        pts = [(r["step"], r[key]) for r in log_history if key in r and "step" in r]
        if pts:
            ax.plot(*zip(*pts), marker="." if len(pts) < 50 else None, label=label)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax.set_title(title or run_dir.name, fontsize=8)
    ax.legend()
    fig.tight_layout()
    out = run_dir / "loss.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _same_model(a: str | None, b: str) -> bool:
    """Do two base-model references name the same model (names, hub ids or directories)?"""
    if a is None:
        return True  # the adapter does not say; check_fits still compares every shape
    if a == b:
        return True
    refs = []
    for ref in (a, b):
        spec = MODELS.get(ref)
        try:
            resolved = resolve_model_dir(ref) if (spec is None or spec.kind != "tiny") else ref
        except Exception:  # an unresolvable reference (hub id offline, moved directory) compares by name
            resolved = ref
        p = Path(resolved)
        refs.append({str(p.resolve()) if p.exists() else resolved, ref, *([spec.hub_id] if spec and spec.hub_id else [])})
    return bool(refs[0] & refs[1])


def _json_object(path: Path, adapter: str | Path) -> dict[str, Any]:
    from lorasoups.config import ConfigError

    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"adapter '{adapter}': {path.name} is unreadable or not valid JSON (corrupt?): {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"adapter '{adapter}': {path.name} must hold a JSON object")
    return data


def check_adapter_base(adapters: list[str | Path], base: str) -> None:
    """Every skill adapter was trained on ``base``; a clear error before any training otherwise.

    Our SFT runs record the base they were given in ``lorasoups_train.json``; other PEFT adapters
    are judged by ``adapter_config.json``'s ``base_model_name_or_path``.
    """
    from lorasoups.config import ConfigError

    for a in adapters:
        p = Path(a)
        cfg_file = p / "adapter_config.json"
        if not cfg_file.is_file():
            raise ConfigError(f"adapter '{a}': no adapter_config.json (not a PEFT adapter directory)")
        recorded = _json_object(cfg_file, a).get("base_model_name_or_path")
        train_file = p / "lorasoups_train.json"
        if train_file.is_file():
            recorded = _json_object(train_file, a).get("base", recorded)
        if not _same_model(recorded, base):
            raise ConfigError(
                f"adapter '{a}' was trained on base model {recorded!r}, but this run's base is {base!r} "
                f"({train_file.name if train_file.is_file() else 'adapter_config.json base_model_name_or_path'})"
            )
