"""The measured study behind learned CAT's default recipe (``recipe: converge``).

Learned CAT trains only alpha: about 2 * layers * skills numbers, not a LoRA. The paper's lr 1e-4
for one epoch moves them by ~1e-3, so this study runs the alpha-only problem over a small grid of
learning rates (constant schedule, batch 8, a fixed number of steps) on two settings of the real
default model, and records for each point the validation loss at 8 spread evaluations, the best
step and how far alpha moved:

- ``xy``: a known answer. Two skill LoRAs, one always answering X, one always Y; CAT learns on X.
- ``formats``: the paper's prompt-robustness skills. LoRAs on the mirror's format-1 and format-2
  training sets of SNI task 161; CAT learns on a mixture of both (held-out records validate).
- ``math_code``: the hard-math-with-code skills. LoRAs on the mirror's math stand-in (GSM8K train
  solutions) and Code Alpaca; CAT learns on a mixture of records of both the skills never saw.

"Converged" means the validation loss stopped improving before the run ended: the best step is
before the last, or the last quarter improves it by under 1 % of the start-to-best gain.

    .venv/bin/python tools/cat_recipe_study.py            # writes results/cat_recipe_study.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from datasets import Dataset

from lorasoups import paths
from lorasoups.data import load
from lorasoups.training.sft import SftConfig, train_sft
from lorasoups.training.soup import SoupTrainConfig, train_cat

LRS = [1e-4, 1e-2, 5e-2, 2e-1]
X, Y = "apple apple apple", "zebra zebra zebra"


def answers(n: int, answer: str, start: int = 0) -> Dataset:
    return Dataset.from_list([{"id": str(i), "prompt": f"Item {i}: name a word.\nAnswer:", "completion": " " + answer}
                              for i in range(start, start + n)])


def as_sft(ds) -> Dataset:
    return Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in ds])


def setting_xy(base: str) -> tuple[list[str], Dataset, Dataset, int]:
    sft = SftConfig(r=8, lora_alpha=16, max_steps=30, per_device_train_batch_size=8, gradient_accumulation_steps=1,
                    warmup_steps=0, learning_rate=1e-3, save_steps=30, logging_steps=10, max_length=64)
    skills = [str(train_sft(base, answers(64, a), sft, name=f"study-{n}").adapter_dir) for n, a in (("x", X), ("y", Y))]
    return skills, answers(64, X, 1000), answers(16, X, 2000), 64


def setting_formats(base: str, n_train: int, n_skill: int) -> tuple[list[str], Dataset, Dataset, int]:
    sets = {f: load(f"count_format{f}", "train", source="mirror", seed=0) for f in (1, 2)}
    sft = SftConfig(r=8, lora_alpha=16, max_steps=n_skill, per_device_train_batch_size=8,
                    gradient_accumulation_steps=1, warmup_steps=0, learning_rate=1e-3, save_steps=n_skill,
                    logging_steps=10, max_length=256)
    skills = []
    for f, ds in sets.items():
        train = as_sft(ds.select(range(n_skill * 8)))
        skills.append(str(train_sft(base, train, sft, name=f"study-format{f}").adapter_dir))
    # CAT data: records the skills never saw, half of each format; validation likewise
    lo = n_skill * 8
    mix = [r for f in sets for r in as_sft(sets[f].select(range(lo, lo + n_train // 2)))]
    val = [r for f in sets for r in as_sft(sets[f].select(range(lo + n_train // 2, lo + n_train // 2 + 16)))]
    return skills, Dataset.from_list(mix).shuffle(seed=0), Dataset.from_list(val), 256


def setting_math_code(base: str, n_train: int, n_skill: int) -> tuple[list[str], Dataset, Dataset, int]:
    sets = {name: load(name, "train", source="mirror", seed=0) for name in ("metamathqa", "code_alpaca")}
    sft = SftConfig(r=8, lora_alpha=16, max_steps=n_skill, per_device_train_batch_size=8,
                    gradient_accumulation_steps=1, warmup_steps=0, learning_rate=1e-3, save_steps=n_skill,
                    logging_steps=10, max_length=256)
    skills = [str(train_sft(base, as_sft(ds.select(range(n_skill * 8))), sft, name=f"study-{name}").adapter_dir)
              for name, ds in sets.items()]
    lo = n_skill * 8
    mix = [r for d in sets.values() for r in as_sft(d.select(range(lo, lo + n_train // 2)))]
    val = [r for d in sets.values() for r in as_sft(d.select(range(lo + n_train // 2, lo + n_train // 2 + 16)))]
    return skills, Dataset.from_list(mix).shuffle(seed=0), Dataset.from_list(val), 256


SETTINGS = {"xy": lambda base, steps: setting_xy(base),
            "formats": lambda base, steps: setting_formats(base, n_train=steps * 8 // 4, n_skill=40),
            "math_code": lambda base, steps: setting_math_code(base, n_train=steps * 8 // 4, n_skill=40)}


def converged(points: list[dict]) -> bool:
    losses = [p["eval_loss"] for p in points]
    best = min(range(len(losses)), key=losses.__getitem__)
    if best < len(losses) - 1:
        return True
    gain = losses[0] - losses[best]
    quarter = losses[-1 - max(1, (len(losses) - 1) // 4)]
    return gain > 0 and (quarter - losses[-1]) < 0.01 * gain


def table(study: dict) -> str:
    """The README's markdown table of a study file."""
    lines = ["| setting | lr | steps (epochs) | val loss: start -> best | best step | eval points | max drift per skill | converged |",
             "|---|---|---|---|---|---|---|---|"]
    for r in study["runs"]:
        pts = ", ".join(f"{p['eval_loss']:.3f}" for p in r["eval_points"])
        drift = " / ".join(f"{v:.3g}" for v in r["final_drift"]["max"].values())
        lines.append(f"| {r['setting']} | {r['learning_rate']:g} | {r['steps']} ({r['epochs']:g}) | "
                     f"{r['eval_loss_before']:.3f} -> {r['eval_loss_best']:.3f} | {r['best_step']} | {pts} | {drift} | "
                     f"{'yes' if r['converged'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=32, help="optimiser steps per CAT run (batch 8)")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--lrs", nargs="+", type=float, default=LRS)
    ap.add_argument("--out", default=str(paths.ROOT / "results" / "cat_recipe_study.json"))
    ap.add_argument("--table", action="store_true", help="print the study file as a markdown table and stop")
    a = ap.parse_args()
    out = Path(a.out)
    study = json.loads(out.read_text()) if out.is_file() else {"runs": []}
    if a.table:
        print(table(study))
        return
    done = {(r["setting"], r["learning_rate"]) for r in study["runs"]}
    for setting in a.settings:
        t0 = time.perf_counter()
        skills, mix, val, max_length = SETTINGS[setting](a.base, a.steps)
        print(f"[{setting}] skills ready in {time.perf_counter() - t0:.0f}s; mixture {len(mix)}, validation {len(val)}",
              flush=True)
        for lr in a.lrs:
            if (setting, lr) in done:
                continue
            cfg = SoupTrainConfig(recipe="converge", learning_rate=lr, max_steps=a.steps, max_length=max_length,
                                  logging_steps=1).resolved()
            t0 = time.perf_counter()
            res = train_cat(a.base, skills, mix, val, cfg, name=f"study-{setting}-lr{lr:g}")
            s = res.summary
            row = {"setting": setting, "base": a.base, "learning_rate": lr, "steps": s["global_step"],
                   "batch": cfg.per_device_train_batch_size, "scheduler": cfg.lr_scheduler_type,
                   "mixture": len(mix), "epochs": round(s["global_step"] * 8 / len(mix), 2),
                   "eval_points": s["eval_points"], "best_step": s["best_step"],
                   "eval_loss_before": s["eval_loss_before"], "eval_loss_best": s["eval_loss_best"],
                   "final_drift": s["final_drift"], "converged": converged(s["eval_points"]),
                   "seconds": round(time.perf_counter() - t0, 1)}
            study["runs"].append(row)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(study, indent=2) + "\n")  # after every point: a killed study resumes
            print(json.dumps({k: row[k] for k in ("setting", "learning_rate", "best_step", "eval_loss_before",
                                                  "eval_loss_best", "converged", "seconds")}), flush=True)
            print("   max drift", {k: round(v, 4) for k, v in s["final_drift"]["max"].items()}, flush=True)


if __name__ == "__main__":
    main()
