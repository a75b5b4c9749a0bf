"""Issue 16's CPU table from the benchmark JSON of this machine (``results/cpu/benchmarks/``).

    .venv/bin/python benchmarks/table.py [--model smollm2-135m-instruct]

Each figure is a ratio against a baseline measured in the same process by the benchmark that wrote
it (the JSON says which run, when and on what CPU); a row whose JSON is missing reads "not run".
``make bench`` runs the benchmarks, then this.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "results" / "cpu" / "benchmarks"


def metrics(name: str) -> dict | None:
    path = ROOT / f"{name}.json"
    return json.loads(path.read_text())["metrics"] if path.is_file() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--dataset", default="count_format1", help="the training benchmark's records")
    args = ap.parse_args()
    rows: list[tuple[str, str, str, str, bool | None]] = []

    train = metrics(f"train_sft--{args.model}-{args.dataset}")
    if train:
        by = {r["row"]: r for r in train["rows"]}
        fast = by.get("bf16_compact") or by.get("fp32_compact")
        if fast:
            rows.append((f"skill SFT tokens/s ({args.dataset})", "train_sft fp32, full LM head",
                         f"{fast['ratio']:.2f}x ({fast['row']})", ">= 4x", fast["ratio"] >= 4))
        # the candidates the pipeline does not run by default, measured in the same run
        for name, row in by.items():
            if name not in ("fp32", fast["row"] if fast else ""):
                rows.append((f"skill SFT tokens/s ({args.dataset}), {name}", "train_sft fp32, full LM head",
                             f"{row['ratio']:.2f}x", ">= 4x", row["ratio"] >= 4))
    else:
        rows.append(("skill SFT tokens/s", "train_sft fp32", "not run", ">= 4x", None))

    soup = metrics(f"soup--{args.model}-cpu")
    if soup:
        r = soup["ratios"]
        rows += [("CAT alpha-learning step", "skill-LoRA SFT step, equal tokens",
                  f"{r['cat_step_vs_lora_step']:.2f}x", "<= 1.15x", r["cat_step_vs_lora_step"] <= 1.15),
                 ("folded soup forward, merged into the base", "base model", f"{r['merged_vs_base']:.3f}x",
                  "<= 1.05x", r["merged_vs_base"] <= 1.05),
                 ("folded soup forward, as an unmerged rank-k*r adapter", "base model",
                  f"{r['folded_vs_base']:.3f}x", "(<= 1.05x)", r["folded_vs_base"] <= 1.05),
                 ("unmerged two-skill CAT soup forward", "base model", f"{r['cat_soup_vs_base']:.3f}x", "<= 1.3x",
                  r["cat_soup_vs_base"] <= 1.3)]
    else:
        rows.append(("soup forward / CAT step", "base / LoRA step", "not run", "", None))

    gen = metrics(f"generation--{args.model}-cpu")
    if gen:
        n = gen["rows"][0]["identical"]
        for r in gen["rows"][1:]:
            if r["identical"] is None:  # a reference row (fastgen fp32 on the merged soup): speed only
                rows.append((f"greedy generation tokens/s: {r['method']}", "HF generate fp32, one left-padded batch",
                             f"{r['ratio']:.2f}x", "(reference)", None))
                continue
            share = r["identical"] / n
            against = "= its reference" if r.get("compared_with") else "= fp32"
            rows.append((f"greedy generation tokens/s: {r['method']}", "HF generate fp32, one left-padded batch",
                         f"{r['ratio']:.2f}x, {100 * share:.0f} % {against}", ">= 10x, >= 99 %",
                         r["ratio"] >= 10 and share >= 0.99))
    else:
        rows.append(("greedy generation tokens/s", "HF generate fp32", "not run", ">= 10x", None))

    width = max(len(r[0]) for r in rows)
    print(f"{'measure':{width}s}  {'baseline':40s}  {'figure':28s}  {'target':16s}  met")
    for m, b, f, t, ok in rows:
        print(f"{m:{width}s}  {b:40s}  {f:28s}  {t:16s}  {'-' if ok is None else 'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
