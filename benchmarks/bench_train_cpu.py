"""Skill-SFT training speed on this CPU: today's fp32 path against the fast-path candidates, one process.

    .venv/bin/python benchmarks/bench_train_cpu.py [--model smollm2-135m-instruct] [--steps 6] [--batch 8]
    .venv/bin/python benchmarks/bench_train_cpu.py --smoke    # tiny model: checks the script runs

The workload: the math skill's first ``steps * batch`` training records (the mirror's GSM8K
solutions when it is there, else the generated suite), ``max_length`` 256, the project's
``make_sft_trainer`` (TRL SFTTrainer + a rank-32 peft LoRA on q/k/v/up/down), AdamW. Each row
trains a fresh LoRA on the same records for ``warmup + steps`` optimiser steps and times the last
``steps`` (a callback's wall clock between step ends). tokens/s counts the non-padding tokens of the
timed steps. Rows:

* ``fp32`` (the baseline: the fp32 path as it was before the speed work, TRL's LM head projecting
  every position);
* ``bf16``: fp32 base and LoRA weights, bf16 autocast compute (``precision: bf16``), full LM head;
* ``bf16_base``: the frozen base stored in bf16 as well (``base_dtype: bfloat16``), full LM head;
* ``group_by_length``: fp32, batches of similar lengths (less padding; transformers' ``train_sampling_strategy``);
* ``fp32_compact`` / ``bf16_compact``: the LM head projects only labelled positions
  (``lorasoups.training.sft.compact_lm_head_on_cpu``); ``bf16_compact`` is what the pipeline runs
  by default on a CPU with bf16 hardware (``precision: auto``); ``bf16_base_compact`` adds a bf16
  frozen base (autocast then has no fp32 weight to cast at every call); ``bf16_grouped_compact``
  is ``bf16_compact`` on length-grouped batches (what ``sft.trainer.train_sampling_strategy:
  group_by_length`` gives a profile); ``bf16_compile_compact`` is ``bf16_compact`` under
  ``torch.compile`` (transformers' ``torch_compile``; inductor's C++ CPU backend, which could fuse
  the elementwise passes: casts, LoRA dropout, scaling), its compile time inside the warm-up steps.

``--ftz`` flushes denormal floats to zero for the whole run (``torch.set_flush_denormal``, set
before any torch op so that the intra-op worker threads, which each have their own floating-point
control register, inherit it): AdamW's second moments of small LoRA gradients fall into the
denormal range, where x86 arithmetic is many times slower. Compare two runs, with and without
(``train_sft--<model>-<dataset>-ftz.json``).

``--dataset``: the records (default ``metamathqa``, long completions; ``count_format1`` is the
counting skill of the CPU study, ~8 labelled tokens of ~90, where the compact head matters most).

The ratio of each row to the baseline measured in the same run is the result; whether bf16 pays
depends on the CPU (AMX / AVX-512 BF16: ``lorasoups.training.sft.cpu_has_fast_bf16``), recorded
beside it. Writes ``results/cpu/benchmarks/train_sft--<model>.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback


class StepClock(TrainerCallback):
    """Wall-clock time of each optimiser step (between consecutive step ends)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.ends = [time.perf_counter()]

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def records(name: str, n: int, smoke: bool):
    from lorasoups.data import load

    try:
        ds = load(name, "train", source="generated" if smoke else "mirror", size=n)
    except Exception:  # no mirror on this machine: the generated suite
        ds = load(name, "train", source="generated", size=n)
    return ds.select_columns(["prompt", "completion"]), ds


def run_row(model_name: str, data, cfg, warmup: int, steps: int, batch: int, tok, compact: bool) -> dict:
    import trl.trainer.utils as trl_utils

    from lorasoups.models import load_base
    from lorasoups.training.sft import make_sft_trainer

    dtype = "bfloat16" if cfg.base_dtype == "bfloat16" else "float32"
    model, _ = load_base(model_name, dtype=dtype, device="cpu")
    clock = StepClock()
    with tempfile.TemporaryDirectory() as out:
        trainer = make_sft_trainer(model, tok, data, cfg, Path(out), callbacks=[clock])  # turns compact on
        patched = trl_utils._use_triton
        if not compact:  # TRL's own choice: every position projected on CPU
            trl_utils._use_triton = patched._original
        loader = trainer.get_train_dataloader()
        tokens = [int(b["attention_mask"].sum()) for b, _ in zip(loader, range(warmup + steps))]
        try:
            trainer.train()
        finally:
            trl_utils._use_triton = patched
    times = [b - a for a, b in zip(clock.ends, clock.ends[1:])][warmup:]
    timed_tokens = sum(tokens[warmup:warmup + len(times)])
    seconds = sum(times)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"seconds": seconds, "steps": len(times), "tokens": timed_tokens, "tokens_per_s": timed_tokens / seconds,
            "s_per_step": seconds / len(times), "final_loss": losses[-1] if losses else None,
            "note": "group_by_length reorders batches: its token count is of its own batches"
            if "train_sampling_strategy" in cfg.trainer else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=6, help="timed optimiser steps per row")
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps per row")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--rows", nargs="+", default=["fp32", "bf16", "fp32_compact", "bf16_compact"])
    ap.add_argument("--dataset", default="metamathqa", help="registry name of the training records")
    ap.add_argument("--smoke", action="store_true", help="tiny model, 2 + 1 steps: a check that it runs")
    ap.add_argument("--ftz", action="store_true", help="flush denormals to zero for the whole run (all threads)")
    args = ap.parse_args()
    if args.ftz and not torch.set_flush_denormal(True):  # before any op: the worker threads inherit it
        raise SystemExit("--ftz: this CPU cannot flush denormals (no SSE3)")
    if args.smoke:
        args.model, args.steps, args.warmup, args.batch = "tiny-random-llama", 2, 1, 4
    from lorasoups.models import load_base, model_identity
    from lorasoups.results import result_path, write_result
    from lorasoups.training.sft import SftConfig, cpu_has_fast_bf16

    torch.manual_seed(0)
    n = (args.warmup + args.steps) * args.batch
    data, ds = records(args.dataset, n, args.smoke)
    _, tok = load_base(args.model, device="cpu")
    base = SftConfig(max_steps=args.warmup + args.steps, per_device_train_batch_size=args.batch,
                     gradient_accumulation_steps=1, warmup_steps=0, logging_steps=1, save_steps=10**6,
                     max_length=args.max_length, precision="fp32", base_dtype="float32",
                     trainer={"dataloader_drop_last": True})
    variants = {
        "fp32": base,
        "bf16": dataclasses.replace(base, precision="bf16"),
        "bf16_base": dataclasses.replace(base, precision="bf16", base_dtype="bfloat16"),
        "group_by_length": dataclasses.replace(base, trainer={**base.trainer, "train_sampling_strategy": "group_by_length"}),
        "fp32_compact": base,
        "bf16_compact": dataclasses.replace(base, precision="bf16"),
        "bf16_base_compact": dataclasses.replace(base, precision="bf16", base_dtype="bfloat16"),
        "bf16_grouped_compact": dataclasses.replace(
            base, precision="bf16", trainer={**base.trainer, "train_sampling_strategy": "group_by_length"}),
        "bf16_compile_compact": dataclasses.replace(base, precision="bf16", trainer={**base.trainer, "torch_compile": True}),
    }
    rows = []
    for name in ["fp32", *[r for r in args.rows if r != "fp32"]]:
        print(f"== {name}", flush=True)
        row = {"row": name, **run_row(args.model, data, variants[name], args.warmup, args.steps, args.batch, tok,
                                      compact=name.endswith("_compact"))}
        row["ratio"] = row["tokens_per_s"] / (rows[0]["tokens_per_s"] if rows else row["tokens_per_s"])
        rows.append(row)
        print(f"   {row['s_per_step']:.2f} s/step, {row['tokens_per_s']:.0f} tokens/s, x{row['ratio']:.2f}", flush=True)
    fast = cpu_has_fast_bf16()
    print(f"\nmodel {args.model}, CPU, {torch.get_num_threads()} threads, bf16 hardware: {fast}; "
          f"{args.steps} timed steps of {args.batch} x <= {args.max_length} tokens")
    print(f"{'row':18s} {'s/step':>8s} {'tokens/s':>9s} {'x fp32':>7s} {'final loss':>10s}")
    for r in rows:
        print(f"{r['row']:18s} {r['s_per_step']:8.2f} {r['tokens_per_s']:9.0f} {r['ratio']:7.2f} "
              f"{r['final_loss'] if r['final_loss'] is None else round(r['final_loss'], 4)!s:>10s}")
    out = result_path("benchmarks", "train_sft",
                      "smoke" if args.smoke else f"{args.model}-{args.dataset}" + ("-ftz" if args.ftz else ""),
                      profile="smoke" if args.smoke else "cpu")
    from lorasoups.data import identity

    write_result(out, config=vars(args), metrics={"rows": rows, "bf16_hardware": fast,
                                                  "threads": torch.get_num_threads()},
                 model=model_identity(args.model), datasets={args.dataset: identity(ds)})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
