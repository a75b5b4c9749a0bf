"""CAT learning: the skill LoRAs stay frozen, only the soup's alphas train (LoRA Soups §3).

The loop is TRL's ``SFTTrainer`` on the soup (a ``peft.PeftModel`` whose only trainable tensors
are the alphas, or the routers for MoE, see :mod:`.moe`). What differs from skill SFT is what a
checkpoint holds: :class:`SoupTrainer` saves and reloads just the trainable tensors (peft's
``save_pretrained`` would write the reparametrised B without alpha and miss the alphas).
The best checkpoint by validation loss is reloaded at the end (Trainer's ``load_best_model_at_end``).

Three recipes. ``paper`` is the paper's text; ``released`` the authors' released script. Both
move alpha by about 1e-3 on the settings here (a few optimiser steps at lr 1e-4 on 5 % of the
data), so learned CAT would stay static CAT; ``converge`` (the default) is chosen for the
alpha-only problem, which has about 2 * layers * skills parameters and is not a LoRA: see the
README's "CAT recipe study" for the measured runs it comes from.

=========  ====================  ===========================  ============================
recipe     converge (default)    paper                        released
=========  ====================  ===========================  ============================
lr         5e-2, constant        1e-4, linear decay           1e-4, linear decay
epochs     8                     1                            1
batch      8 x 1                 8 x accumulation 4           6 x 1 (effective batch 6)
loss       completion only       completion only              prompt and response
dropout    LoRA dropout off      LoRA dropout off             LoRA dropout on
=========  ====================  ===========================  ============================

Validation selects: the run is evaluated (and checkpointed) at ``eval_points`` steps spread
evenly over it, the last step included, and the best by validation loss is what is exported.
Explicit values override the recipe; the resolved values are recorded in the run's config.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import TrainerCallback
from trl import SFTTrainer

from lorasoups.config import ConfigError, to_dict
from lorasoups.results import package_versions
from lorasoups.training.drift import ParameterDrift, drift_history
from lorasoups.training.runs import (
    CheckpointMarker,
    Run,
    adapter_identity,
    base_identity,
    check_adapter_base,
    check_launch,
    dataset_fingerprint,
    is_main_process,
    wait_for_everyone,
)
from lorasoups.training.sft import (
    RunResult,
    TrainerConfig,
    check_dataset,
    check_trainer_overrides,
    finish,
    load_for_training,
    resolved_precision,
    trl_args,
    truncated_away,
)

TRAINABLE_FILE = "soup_trainable.safetensors"

RECIPES: dict[str, dict[str, Any]] = {
    "converge": {"learning_rate": 5e-2, "num_train_epochs": 8.0, "lr_scheduler_type": "constant",
                 "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
                 "completion_only_loss": True, "lora_dropout_on": False},
    "paper": {"learning_rate": 1e-4, "num_train_epochs": 1.0, "lr_scheduler_type": "linear",
              "per_device_train_batch_size": 8, "gradient_accumulation_steps": 4,
              "completion_only_loss": True, "lora_dropout_on": False},
    "released": {"learning_rate": 1e-4, "num_train_epochs": 1.0, "lr_scheduler_type": "linear",
                 "per_device_train_batch_size": 6, "gradient_accumulation_steps": 1,
                 "completion_only_loss": False, "lora_dropout_on": True},
}


@dataclass
class SoupTrainConfig(TrainerConfig):
    """``cat:`` / ``moe:`` section: learning a soup's mixing parameters."""

    recipe: Literal["converge", "paper", "released"] = "converge"
    """converge (alpha learns) | paper (its text) | released (the authors' script): fills every None below.

    The recipe's values are in :data:`RECIPES` and the module docstring's table."""
    soup: dict[str, Any] = field(default_factory=dict)
    """Parameters of the soup method (``lorasoups.merging`` CatParams / MoeParams: granularity, ...)."""
    learning_rate: float | None = None
    """AdamW learning rate (None: from the recipe; paper: 1e-4)."""
    num_train_epochs: float | None = None
    """Epochs over the mixture (None: from the recipe; paper: 1)."""
    max_steps: int = -1
    """Stop after this many optimiser steps (-1: use num_train_epochs)."""
    warmup_steps: float = 0
    """Linear warm-up steps (below 1: a fraction of all steps)."""
    lr_scheduler_type: str | None = None
    """transformers scheduler name (None: from the recipe)."""
    per_device_train_batch_size: int | None = None
    """None: from the recipe."""
    gradient_accumulation_steps: int | None = None
    """None: from the recipe."""
    completion_only_loss: bool | None = None
    """None: from the recipe (paper: completion only; released: prompt and response)."""
    lora_dropout_on: bool | None = None
    """Keep the skill LoRAs' dropout active while training (None: from the recipe)."""
    max_length: int = 1024
    """Tokens per sequence."""
    eval_points: int = 8
    """Validation evaluations (and checkpoints) spread evenly over the run, the last step included (at least 5).

    Every ``max(1, steps // eval_points)`` steps; the best by validation loss is exported."""
    balance_loss_coef: float = 0.0
    """MoE only: weight of the router load-balancing loss added to the LM loss."""

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ConfigError(f"recipe {self.recipe!r} is not one of {list(RECIPES)}")
        if self.eval_points < 5:
            raise ConfigError(f"eval_points must be >= 5 (validation must be able to select), got {self.eval_points}")
        check_trainer_overrides(self.trainer, "trainer")

    def resolved(self) -> SoupTrainConfig:
        """A copy with every field left None filled from the recipe (what a run trains with and
        records). The config itself keeps None, so changing ``recipe`` changes them all."""
        import dataclasses

        fill = {k: v for k, v in RECIPES[self.recipe].items() if getattr(self, k) is None}
        return dataclasses.replace(self, **fill)


class SoupTrainer(SFTTrainer):
    """SFTTrainer whose checkpoints hold only the soup's trainable tensors (alphas or routers)."""

    def __init__(self, *args: Any, soup: nn.Module, balance_loss_coef: float = 0.0, **kwargs: Any):
        from lorasoups.merging import trainable_parameters

        self.soup_params = trainable_parameters(soup)
        self.soup_model = soup
        self.balance_loss_coef = balance_loss_coef
        super().__init__(*args, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        from safetensors.torch import save_file

        if not self.args.should_save:
            return
        out = Path(output_dir or self.args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {n: p.detach().cpu().contiguous() for n, p in self.soup_params.items()}
        save_file(tensors, str(out / TRAINABLE_FILE), metadata={"format": "pt"})

    @torch.no_grad()
    def load_trainable(self, checkpoint: str | Path) -> None:
        from safetensors.torch import load_file

        tensors = load_file(str(Path(checkpoint) / TRAINABLE_FILE))
        if sorted(tensors) != sorted(self.soup_params):
            raise RuntimeError(f"{checkpoint}: holds {sorted(tensors)[:3]}..., the soup trains {sorted(self.soup_params)[:3]}...")
        for name, p in self.soup_params.items():
            p.copy_(tensors[name].to(p.device, p.dtype))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        self.load_trainable(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        self.load_trainable(self.state.best_model_checkpoint)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if not (self.balance_loss_coef and model.training):
            return result
        from lorasoups.merging import load_balancing_loss

        extra = self.balance_loss_coef * load_balancing_loss(self.soup_model)
        return (result[0] + extra, result[1]) if return_outputs else result + extra


class SpreadEvaluation(TrainerCallback):
    """Evaluate and checkpoint at ``points`` steps spread evenly over the run, the last included.

    The interval comes from the run's own step count (known once training starts), so a short run
    still selects among several points: a fixed ``eval_steps`` larger than the run never evaluates."""

    #: eval/save steps given to the Trainer so that its own schedule never fires (this one does).
    NEVER = 10**9

    def __init__(self, points: int):
        self.points = points
        self.interval = 1

    def on_train_begin(self, args, state, control, **kwargs):
        self.interval = max(1, state.max_steps // self.points)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.interval == 0 or state.global_step >= state.max_steps:
            control.should_evaluate = True
            control.should_save = True
        return control


def checkpoint_step(checkpoint: str | None) -> int | None:
    """The optimiser step of a ``.../checkpoint-N`` folder (None for None)."""
    return int(str(checkpoint).rsplit("-", 1)[-1]) if checkpoint else None


class AfterStep(TrainerCallback):
    """After each optimiser step, re-apply the soup's constraint (``SoupState.after_step``: CAT's
    ``clamp`` parameterisation clips raw alphas into [0, 1])."""

    def __init__(self, fn: Callable[[], None]):
        self.fn = fn

    def on_step_end(self, args, state, control, **kwargs):
        self.fn()
        return control


def skill_names(adapters: list[str | Path]) -> list[str]:
    """Display names: the run name our SFT recorded, else the adapter directory's name."""
    names = []
    for a in adapters:
        record = Path(a) / "lorasoups_train.json"
        name = json.loads(record.read_text()).get("name") if record.is_file() else None
        names.append(name or Path(a).resolve().name)
    return names


def set_lora_dropout(soup: nn.Module, on: bool) -> list[float]:
    """Turn the soup adapter's LoRA dropout off (p = 0) or leave it; returns the previous p's."""
    from lorasoups.merging.soup import ADAPTER

    old = []
    for m in soup.modules():
        drop = getattr(m, "lora_dropout", None)
        if isinstance(drop, nn.ModuleDict) and ADAPTER in drop and isinstance(drop[ADAPTER], nn.Dropout):
            old.append(drop[ADAPTER].p)
            if not on:
                drop[ADAPTER].p = 0.0
    return old


def train_soup(
    method: str,
    base: str,
    adapters: list[str | Path],
    train_dataset: Any,
    eval_dataset: Any,
    cfg: SoupTrainConfig | None = None,
    *,
    name: str | None = None,
    callbacks: list[Any] = (),
) -> RunResult:
    """Learn a soup's trainable parameters (``cat`` alphas, ``moe`` routers) on a mixture.

    Writes ``soup/`` (:func:`lorasoups.merging.save_soup`), and for CAT ``alphas.json``,
    ``alphas.png`` and ``adapter/`` (the folded, standard PEFT adapter).
    """
    from lorasoups.merging import METHODS, build

    cfg = (cfg or SoupTrainConfig()).resolved()
    if method not in METHODS or not METHODS[method].learnable:
        raise ConfigError(f"train_soup: method {method!r} has nothing to learn (learnable: "
                          f"{[m for m, s in METHODS.items() if s.learnable]})")
    where = name or method
    check_dataset(train_dataset, f"{where}: train_dataset", cfg.completion_only_loss)
    check_dataset(eval_dataset, f"{where}: eval_dataset (the validation split picks the best checkpoint)",
                  cfg.completion_only_loss)
    check_adapter_base(adapters, base)
    run = Run(method, where, {
        "base": base_identity(base),
        "adapters": [adapter_identity(a) for a in adapters],
        "train_data": dataset_fingerprint(train_dataset),
        "eval_data": dataset_fingerprint(eval_dataset),
        method: to_dict(cfg),
        "resolved": resolved_precision(cfg),
    })
    if run.is_complete():
        return RunResult(run.dir, run.adapter if (run.adapter).is_dir() else None, True, run.summary())

    model, tokenizer = load_for_training(base, seed=cfg.seed, dtype=cfg.base_dtype)
    # The run seed reaches a random init (CAT's released init, MoE's normal routers) unless the
    # soup section names its own.
    soup = build(method, model, [str(a) for a in adapters],
                 **{"skill_names": skill_names(adapters), "seed": cfg.seed, **cfg.soup})
    set_lora_dropout(soup, bool(cfg.lora_dropout_on))
    run.start()
    resume = run.last_checkpoint()
    never = SpreadEvaluation.NEVER
    # Step 0 (equal init: static CAT at 1/k) is evaluated inside train(), after accelerate wraps the
    # model: a trainer.evaluate() before train() marks the model prepared unwrapped, and under DDP
    # the alphas' gradients were then never all-reduced (each rank trained on its own shard,
    # measured). A resumed run finds the step-0 loss in the checkpoint's log history.
    args = trl_args(cfg, run.checkpoints, eval_strategy="steps", eval_steps=never, save_steps=never,
                    load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
                    eval_on_start=resume is None)
    drift_cb = ParameterDrift(soup)  # before train() resumes: drift is measured from the built start
    extra_cbs = [SpreadEvaluation(cfg.eval_points), drift_cb]
    if soup.lorasoup.after_step is not None:
        extra_cbs.append(AfterStep(soup.lorasoup.after_step))
    trainer = SoupTrainer(model=soup, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                          processing_class=tokenizer, soup=soup, balance_loss_coef=cfg.balance_loss_coef,
                          callbacks=[CheckpointMarker(), *extra_cbs, *callbacks])
    check_launch(trainer)
    weights = loss_tokens(train_dataset, trainer.train_dataset)
    truncated = truncated_away(train_dataset, trainer, where)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume)
    # Read before the final evaluate below, which logs the best checkpoint's loss at the last step.
    history = list(trainer.state.log_history)
    evals = sorted({int(r["step"]): r["eval_loss"] for r in history if "eval_loss" in r}.items())
    initial_eval = dict(evals).get(0)
    drifts = drift_history(history)
    final_eval = trainer.evaluate()["eval_loss"]  # after the best checkpoint is reloaded
    summary = {
        "kind": method,
        "name": run.name,
        "key": run.key,
        "recipe": cfg.recipe,
        "resumed_from": resume,
        "global_step": trainer.state.global_step,
        "train_loss": output.training_loss,  # mean over the steps run in this session
        "eval_loss_before": initial_eval,
        "eval_loss_best": final_eval,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_step": checkpoint_step(trainer.state.best_model_checkpoint),
        "eval_points": [{"step": 0, "eval_loss": initial_eval}] * (initial_eval is not None)
                       + [{"step": st, "eval_loss": loss} for st, loss in evals if st > 0],
        "alpha_drift": drifts,
        "final_drift": drift_cb.now(),  # of the exported (best) parameters
        "metrics": output.metrics,
        **({"loss_tokens": weights} if weights else {}),
        **({"records_without_completion": truncated} if truncated else {}),
        "seconds_this_session": round(time.perf_counter() - start, 2),
        "versions": package_versions(),
    }
    if is_main_process():
        write_soup_outputs(soup, run, method)
    wait_for_everyone()
    finish(trainer, run, summary)
    return RunResult(run.dir, run.adapter if run.adapter.is_dir() else None, False, summary, model=soup)


def loss_tokens(given: Any, tokenized: Any) -> dict[str, int] | None:
    """Tokens the training loss averages over, per skill of a CAT mixture (the ``skill`` column of
    ``given``), as TRL tokenized, labelled and truncated the records (``tokenized``): the labels
    other than -100, less each record's first (the shifted loss never predicts it). The loss is a
    mean over these tokens, so they are the weights each skill's data carries in what the alphas
    learn (a corpus's paragraphs outweigh a QA skill's short answers). A skill whose records TRL
    all dropped (no label left within ``max_length``, counted by :func:`truncated_away`) shows 0.
    None where the data names no skill or TRL kept no per-record rows (packing)."""
    cols = getattr(tokenized, "column_names", None) or []
    if "skill" not in (getattr(given, "column_names", None) or []) or "skill" not in cols or "labels" not in cols:
        return None
    out = dict.fromkeys(given["skill"], 0)
    for skill, labels in zip(tokenized["skill"], tokenized["labels"]):
        out[skill] += sum(x != -100 for x in labels[1:])
    return out


def write_soup_outputs(soup: nn.Module, run: Run, method: str) -> None:
    """soup/ always; for a soup with fixed weights once learned (CAT, not MoE: its gates depend on
    each token) the alphas table, its heatmap and the folded adapter."""
    from lorasoups.merging import METHODS, alphas_table, export_adapter, plot_alphas, save_soup

    save_soup(soup, run.dir / "soup", overwrite=True)
    if METHODS[method].exportable:
        table = alphas_table(soup)
        (run.dir / "alphas.json").write_text(json.dumps(table, indent=2) + "\n")
        plot_alphas(table, run.dir / "alphas.png", title=f"learned {method.upper()} alpha ({run.name})")
        export_adapter(soup, run.adapter, overwrite=True)


def train_cat(base: str, adapters: list[str | Path], train_dataset: Any, eval_dataset: Any,
              cfg: SoupTrainConfig | None = None, **kwargs: Any) -> RunResult:
    """Learned CAT: only the alphas train (granularity etc. in ``cfg.soup``)."""
    return train_soup("cat", base, adapters, train_dataset, eval_dataset, cfg, **kwargs)
