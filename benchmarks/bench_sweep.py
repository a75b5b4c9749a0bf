"""Merge-sweep throughput on GPU: the naive loop vs the sweep engine, same points, same prompts, one process.

    .venv/bin/python benchmarks/bench_sweep.py [--model smollm2-135m-instruct] [--n 64] [--naive-points 3] [--points 12]
    .venv/bin/python benchmarks/bench_sweep.py --adapters DIR1 DIR2   # trained skill LoRAs instead of random ones
    .venv/bin/python benchmarks/bench_sweep.py --smoke                # tiny model on CPU: checks the script runs

Naive (what the issue measured): skills loaded as peft adapters; per point ``add_weighted_adapter``
(TIES), ``generation.generate`` greedy on the validation prompts (plain batched HF generate,
batch ``--n``), GSM-Hard scoring with program execution, ``delete_adapter``. Engine:
``lorasoups.sweep.run_sweep``: factors merged in place into one adapter, fastgen (CUDA graphs),
scoring overlapped with the next point's decoding. Both evaluate the first points of the paper's
TIES grid with λ > 0 (λ = 0 points cost the engine nothing, which would flatter it). The engine's
first call (compilation, graph capture) is timed apart. Prompts: the GSM-Hard validation split
(first ``--n``), else the test split. Without ``--adapters``, two random rank-16 LoRAs with small
B (so the merged model still writes programs like the base model) stand in for the skills.
Target (issue 8): engine >= 20x the naive configurations per minute.
Writes ``results/<profile>/benchmarks/sweep--<variant>.json``. Without CUDA (and without
--smoke) it prints why and exits 0.
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

TARGETS = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]
STOPS = ["### Instruction:", "### Response:", "### Input:"]  # as lorasoups.stages.evaluate


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_skills(base, root: Path, r: int, scale: float) -> list[Path]:
    """Two PEFT LoRAs with random A and small random B (a stand-in when no trained skills exist)."""
    from peft import LoraConfig, get_peft_model

    out = []
    for i in range(2):
        torch.manual_seed(100 + i)
        cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=TARGETS, init_lora_weights=False)
        model = get_peft_model(copy.deepcopy(base).float().cpu(), cfg)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.mul_(scale)
        model.save_pretrained(str(root / f"skill{i}"))
        out.append(root / f"skill{i}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--adapters", nargs=2, default=None, help="two skill LoRA directories")
    ap.add_argument("--n", type=int, default=64, help="validation prompts per point")
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--naive-points", type=int, default=3)
    ap.add_argument("--points", type=int, default=12, help="points timed for the engine")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--profile", default=None, help="results profile (default: full on GPU, smoke with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="tiny model, CPU, few prompts: a check that it runs")
    args = ap.parse_args()
    if args.smoke:
        args.model, args.n, args.max_new_tokens, args.naive_points, args.points = "tiny-random-llama", 4, 16, 2, 4
        device, dtype = torch.device("cpu"), torch.float32
    elif not torch.cuda.is_available():
        print("bench_sweep: no CUDA device, nothing measured (use --smoke for a CPU check of the script)")
        return
    else:
        device, dtype = torch.device("cuda"), torch.bfloat16
    profile = args.profile or ("smoke" if args.smoke else "full")

    from peft import PeftModel

    from lorasoups.data import DataError, identity, load
    from lorasoups.evaluation.fastgen import FastGenConfig, FastGenerator
    from lorasoups.evaluation.generation import GenerationConfig, generate
    from lorasoups.evaluation.gsm_hard import score_gsm_hard
    from lorasoups.models import load_base, model_identity
    from lorasoups.results import result_path, write_result
    from lorasoups.sweep import (
        GridConfig,
        InPlaceMerger,
        SweepConfig,
        point_key,
        points,
        read_sweep,
        run_sweep,
    )

    try:
        ds, split = load("gsm_hard", "validation"), "validation"
    except DataError:
        ds, split = load("gsm_hard", "test"), "test"
    ds = ds.select(range(min(args.n, len(ds))))
    prompts, golds = list(ds["prompt"]), list(ds["target"])
    tmp = Path(tempfile.mkdtemp(prefix="bench_sweep-"))
    base, tok = load_base(args.model, dtype=dtype, device=device)
    adapters = [Path(a) for a in args.adapters] if args.adapters else random_skills(base, tmp, 16, 0.02)

    # the same points for both: the TIES grid without λ = 0, in grid order
    per_density = len(points("linear", 2))  # 36 alpha pairs per λ
    n_densities = max(1, -(-args.points // per_density))
    grid = GridConfig(density=[0.2, round(0.2 * n_densities, 10), 0.2])
    pts = points("ties", 2, grid)[: args.points]

    # ---------------------------------------------------------------- naive loop
    naive_model = PeftModel.from_pretrained(copy.deepcopy(base), str(adapters[0]), adapter_name="s0")
    naive_model.load_adapter(str(adapters[1]), adapter_name="s1")
    naive_model.eval()
    gcfg = GenerationConfig(greedy=True, max_new_tokens=args.max_new_tokens, batch_size=len(prompts),
                            stop_strings=list(STOPS))
    generate(naive_model, tok, prompts[:2], GenerationConfig(greedy=True, max_new_tokens=4), progress=False)  # warm-up
    naive_metrics = []
    sync(device)
    t0 = time.perf_counter()
    for p in pts[: args.naive_points]:
        torch.manual_seed(0)
        naive_model.add_weighted_adapter(["s0", "s1"], [a * a for a in p["alphas"]], "merge",
                                         combination_type="ties", density=p["density"])
        naive_model.set_adapter("merge")
        texts = generate(naive_model, tok, prompts, gcfg, progress=False)
        metrics, _ = score_gsm_hard(texts, golds)
        naive_metrics.append(metrics["exec_accuracy"])
        naive_model.set_adapter("s0")
        naive_model.delete_adapter("merge")
    sync(device)
    naive_s = time.perf_counter() - t0
    del naive_model

    # ---------------------------------------------------------------- sweep engine
    merger = InPlaceMerger(copy.deepcopy(base), adapters)
    fcfg = FastGenConfig(max_new_tokens=args.max_new_tokens, stop_strings=list(STOPS),
                         compile=device.type == "cuda" and not args.no_compile)
    cfg = SweepConfig(grid=grid, generation=fcfg)  # run_sweep walks the same grid order as pts
    gen = FastGenerator(merger.model, tok, fcfg)
    sync(device)
    t0 = time.perf_counter()
    merger.apply("ties", pts[0]["alphas"], pts[0]["density"])
    gen.generate(prompts, progress=False)  # compilation / graph capture, timed apart
    sync(device)
    warm_s = time.perf_counter() - t0
    out = tmp / "ties--s0.jsonl"
    stop_after = {"n": 0}

    class Enough(Exception):
        pass

    def count(_row):
        stop_after["n"] += 1
        if stop_after["n"] >= len(pts):
            raise Enough

    sync(device)
    t0 = time.perf_counter()
    try:
        rows = run_sweep(merger, tok, "ties", prompts, golds, task="gsm_hard", out=out, config=cfg,
                         generator=gen, progress=False, on_point=count)
    except Enough:
        rows = read_sweep(out)[1]
    sync(device)
    engine_s = time.perf_counter() - t0
    engine_metrics = {r["point"]: r["metrics"]["exec_accuracy"] for r in rows}

    # ---------------------------------------------------------------- report
    naive_rate = args.naive_points / naive_s * 60
    engine_rate = len(rows) / engine_s * 60
    agree = sum(engine_metrics.get(point_key(p)) == m for p, m in zip(pts, naive_metrics))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"model {args.model}, {name}, {dtype}, {len(prompts)} GSM-Hard {split} prompts, "
          f"<= {args.max_new_tokens} new tokens, TIES points {pts[0]['density']}..., skills "
          f"{'given' if args.adapters else 'random r16'}")
    print(f"{'method':46s} {'points':>6s} {'s':>8s} {'configs/min':>12s} {'x naive':>8s}")
    print(f"{'naive: add_weighted_adapter + HF generate':46s} {args.naive_points:6d} {naive_s:8.2f} "
          f"{naive_rate:12.2f} {1.0:8.2f}")
    print(f"{'sweep engine (in place + fastgen + overlap)':46s} {len(rows):6d} {engine_s:8.2f} "
          f"{engine_rate:12.2f} {engine_rate / naive_rate:8.2f}")
    print(f"engine first call (compile/capture): {warm_s:.1f} s (with it: "
          f"{len(rows) / (engine_s + warm_s) * 60 / naive_rate:.2f}x over these {len(rows)} points); "
          f"exec_accuracy agrees on {agree}/{len(naive_metrics)} naive points; target >= 20x")
    res = result_path("benchmarks", "sweep", "smoke" if args.smoke else args.model, profile=profile)
    write_result(res, config=vars(args),
                 metrics={"naive_configs_per_min": naive_rate, "engine_configs_per_min": engine_rate,
                          "ratio": engine_rate / naive_rate, "naive_s": naive_s, "engine_s": engine_s,
                          "engine_first_call_s": warm_s, "agree": agree, "naive_points": args.naive_points,
                          "engine_points": len(rows), "device": name},
                 model=model_identity(args.model), datasets={"gsm_hard": identity(ds)})
    print(f"wrote {res}")


if __name__ == "__main__":
    main()
