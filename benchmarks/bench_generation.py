"""Generation throughput: plain HF ``generate`` on a left-padded batch vs fastgen, one process.

    .venv/bin/python benchmarks/bench_generation.py [--model smollm2-135m-instruct] [--n 64] [--max-new-tokens 200]
    .venv/bin/python benchmarks/bench_generation.py --cpu      # the CPU set (issue 16): fp32 baseline, bf16 rows
    .venv/bin/python benchmarks/bench_generation.py --smoke    # tiny model on CPU: checks the script runs

The issue-8 workload: the first ``--n`` GSM-Hard test prompts (``lorasoups.data.load("gsm_hard",
"test")``), greedy, bf16, at most 200 new tokens, stopping at EOS only (no stop strings, so both
sides do the same work). Baseline: ``model.generate`` on the whole left-padded batch (one call).
Rows: the baseline; fastgen eager (dynamic cache, finished rows dropped); fastgen with a static
cache + ``torch.compile(mode="reduce-overhead")`` (CUDA graphs; compile time reported apart, the
timed call is the second one, as in a sweep); optionally fastgen with the automatic batch size on
``--scale`` prompts. tokens/s counts generated tokens up to and including EOS (at most 200 per
prompt), the same count for every row when outputs agree. ``identical`` compares each prompt's
text with the baseline's. Target (issue 8): fastgen >= 20x the baseline's tokens/s.
Writes ``results/<profile>/benchmarks/generation--<variant>.json``. Without CUDA (and without
--smoke or --cpu) it prints why and exits 0.

``--cpu`` (issue 16's CPU target: >= 10x HF ``generate`` fp32, with >= 99 % of outputs equal to
fp32 greedy): the baseline is HF ``generate`` with fp32 weights on one left-padded batch; rows are
fastgen with fp32 weights (the exact mode) and with bf16 weights (AVX-512 BF16 / AMX matmuls) at
several batch sizes, and fastgen fp32 at the largest batch with the shared prompt prefix turned off
(what prefilling the common demonstration once earns). ``identical`` compares with the fp32 baseline, so a bf16 row's count is its
agreement with fp32 greedy. Then the external anchor, llama.cpp, one stream: on the GGUF the model
ships as (its Q4_1 weights are the ones torch runs, dequantized), and on a folded two-LoRA soup
merged into the base and written as an F32 GGUF (``lorasoups.gguf_export``), its outputs compared
with fastgen fp32 on the same merged model (``--no-soup`` skips these two rows). Defaults there:
32 prompts, 128 new tokens (the whole set in a few minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import time

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hf_batch(model, tok, prompts, max_new: int, eos: set[int], device) -> tuple[list[str], int, float]:
    """Plain HF generate on one left-padded batch: (texts, tokens up to EOS, seconds)."""
    tok.padding_side = "left"
    enc = tok(list(prompts), return_tensors="pt", padding=True).to(device)
    sync(device)
    t = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new, do_sample=False, temperature=None, top_p=None,
                             top_k=None, num_beams=1, pad_token_id=tok.pad_token_id)
    sync(device)
    seconds = time.perf_counter() - t
    new = out[:, enc["input_ids"].shape[1]:].tolist()
    texts, tokens = [], 0
    for row in new:
        cut = next((i + 1 for i, x in enumerate(row) if x in eos), len(row))
        tokens += cut
        texts.append(tok.decode(row[:cut], skip_special_tokens=True))
    return texts, tokens, seconds


def llama_row(label: str, gguf_path, prompts, ref: list[str], max_new: int, rows: list[dict],
              compared_with: str | None = None) -> list[str]:
    """The external anchor for CPU inference: llama.cpp (``llama-cpp-python``, as pip builds it
    here) on a GGUF, greedy, one prompt at a time (its Python API decodes one sequence), 2 threads.
    ``identical`` counts the prompts whose text equals ``ref``: HF generate fp32 on the base, or
    what ``compared_with`` names."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf_path), n_ctx=1024, n_threads=2, n_batch=512, verbose=False, seed=0)
    llm.create_completion(prompts[0], max_tokens=4, temperature=0.0, top_k=1)  # warm-up
    texts, tokens = [], 0
    t = time.perf_counter()
    for p in prompts:
        out = llm.create_completion(p, max_tokens=max_new, temperature=0.0, top_k=1, top_p=1.0, repeat_penalty=1.0)
        texts.append(out["choices"][0]["text"])
        tokens += out["usage"]["completion_tokens"]
    seconds = time.perf_counter() - t
    # whitespace at either end is ignored: llama.cpp detokenizes the continuation on its own, which
    # can add or drop a leading space that decoding the whole sequence would not
    same = sum(a.strip() == b.strip() for a, b in zip(texts, ref))
    rows.append({"method": label, "tokens": tokens, "seconds": seconds, "identical": same,
                 **({"compared_with": compared_with} if compared_with else {}),
                 "differing": [i for i, (a, b) in enumerate(zip(texts, ref)) if a.strip() != b.strip()][:10]})
    return texts


def soup_rows(model_name: str, model, prompts, max_new: int, rows: list[dict], fast) -> None:
    """Issue 16's anchor for a merged soup: two random rank-16 skill LoRAs (as ``bench_soup.py``
    makes them), CAT-folded into one adapter (``lorasoups.merging.export_adapter``) and merged into
    the base, decoded by fastgen fp32 (the exact reference) and by llama.cpp on the same weights
    written as an F32 GGUF (``lorasoups.gguf_export.write_gguf``)."""
    import copy
    import tempfile
    from pathlib import Path

    from bench_soup import make_skills
    from peft import PeftModel

    from lorasoups import merging as M
    from lorasoups.evaluation.fastgen import FastGenConfig
    from lorasoups.gguf_export import write_gguf
    from lorasoups.models import MODELS, _package_gguf

    with tempfile.TemporaryDirectory(prefix="bench_generation-soup-") as tmp:
        tmp = Path(tmp)
        skills = make_skills(model, tmp, 2, 16)
        soup = M.build("cat", copy.deepcopy(model), skills, granularity="layer")
        folded = M.export_adapter(soup, tmp / "folded")
        merged = PeftModel.from_pretrained(copy.deepcopy(model), str(folded)).merge_and_unload().eval()
        soup_ref = fast("fastgen fp32 (exact), folded soup merged into the base, batch 32",
                        FastGenConfig(max_new_tokens=max_new, batch_size=32), prompts, False, on=merged)
        gguf = write_gguf(merged, _package_gguf(MODELS[model_name]), tmp / "soup-f32.gguf")
        llama_row("llama.cpp, the folded soup merged, F32 GGUF (write_gguf), one stream", gguf, prompts, soup_ref,
                  max_new, rows, compared_with="fastgen fp32 on the merged soup")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=None, help="prompts in the benchmark batch (64; --cpu: 32)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="200; --cpu: 128")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--scale", type=int, default=0, help="also time fastgen (auto batch) on this many prompts")
    ap.add_argument("--no-compile", action="store_true", help="skip the CUDA-graph row")
    ap.add_argument("--profile", default=None, help="results profile (default: full on GPU, smoke with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="tiny model, CPU, few prompts: a check that it runs")
    ap.add_argument("--cpu", action="store_true", help="the CPU set: fp32 HF baseline, fastgen fp32 / bf16 rows")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32], help="--cpu: fastgen batch sizes")
    ap.add_argument("--no-soup", action="store_true", help="--cpu: skip the merged-soup rows (fastgen, llama.cpp F32)")
    ap.add_argument("--no-unshared", action="store_true", help="--cpu: skip the row without the shared prompt prefix")
    args = ap.parse_args()
    cpu_set = args.cpu and not args.smoke
    args.n = args.n or (32 if cpu_set else 64)
    args.max_new_tokens = args.max_new_tokens or (128 if cpu_set else 200)
    if cpu_set:
        args.dtype = "float32"  # the baseline's weights; the bf16 rows load their own copy
        device = torch.device("cpu")
    elif args.smoke:
        args.model, args.n, args.max_new_tokens, args.dtype = "tiny-random-llama", 8, 24, "float32"
        args.scale = 0
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("bench_generation: no CUDA device, nothing measured (use --smoke for a CPU check of the script)")
        return
    else:
        device = torch.device("cuda")
    profile = args.profile or ("smoke" if args.smoke else "cpu" if args.cpu else "full")
    dtype = getattr(torch, args.dtype)

    from lorasoups.data import identity, load
    from lorasoups.evaluation.fastgen import FastGenConfig, FastGenerator, eos_ids
    from lorasoups.models import MODELS, _package_gguf, load_base, model_identity
    from lorasoups.results import result_path, write_result

    model, tok = load_base(args.model, dtype=dtype, device=device)
    ds = load("gsm_hard", "test")
    prompts = list(ds["prompt"][: args.n])
    eos = set(eos_ids(model, tok, FastGenConfig()))
    lengths = [len(tok(p)["input_ids"]) for p in prompts]

    # ---------------------------------------------------------------- baseline: HF generate, one batch
    hf_batch(model, tok, prompts[:2], 4, eos, device)  # warm-up (kernels, allocator)
    ref, ref_tokens, ref_s = hf_batch(model, tok, prompts, args.max_new_tokens, eos, device)
    rows = [{"method": f"HF generate, left-padded batch of {len(prompts)}", "tokens": ref_tokens,
             "seconds": ref_s, "identical": len(prompts)}]

    def fast(label: str, cfg: FastGenConfig, batch_prompts, compare: bool, on=None) -> list[str]:
        gen = FastGenerator(model if on is None else on, tok, cfg)
        sync(device)
        t = time.perf_counter()
        # first call: compilation / graph capture when compiled; else a warm-up on two prompts
        # (kernels, allocator), so an eager CPU row does not decode the whole batch twice
        gen.generate(batch_prompts if cfg.compile else batch_prompts[:2], progress=False)
        sync(device)
        first = time.perf_counter() - t
        t = time.perf_counter()
        texts = gen.generate(batch_prompts, progress=False)
        sync(device)
        seconds = time.perf_counter() - t
        same = sum(a == b for a, b in zip(texts, ref)) if compare else None
        rows.append({"method": label, "tokens": gen.stats.tokens, "seconds": seconds, "identical": same,
                     "first_call_s": first, "first_call": "whole batch" if cfg.compile else "warm-up on 2 prompts", "batch_size": gen.stats.batch_size, "compiled": gen.stats.compiled,
                     "differing": [i for i, (a, b) in enumerate(zip(texts, ref)) if a != b][:10] if compare else None})
        return texts

    base_cfg = dict(max_new_tokens=args.max_new_tokens, batch_size=len(prompts))
    if cpu_set:
        for bs in args.batch_sizes:
            fast(f"fastgen fp32 (exact), batch {bs}", FastGenConfig(max_new_tokens=args.max_new_tokens, batch_size=bs),
                 prompts, True)
        if not args.no_unshared:  # what sharing the prompts' common prefix (the PAL demo) earns
            bs = max(args.batch_sizes)
            fast(f"fastgen fp32 (exact), batch {bs}, prefix not shared",
                 FastGenConfig(max_new_tokens=args.max_new_tokens, batch_size=bs, share_prefix=False), prompts, True)
        bf16_model, _ = load_base(args.model, dtype=torch.bfloat16, device=device)
        for bs in args.batch_sizes:
            fast(f"fastgen bf16 weights, batch {bs}", FastGenConfig(max_new_tokens=args.max_new_tokens, batch_size=bs),
                 prompts, True, on=bf16_model)
        spec = MODELS.get(args.model)
        if spec is not None and spec.kind == "gguf-package":
            llama_row(f"llama.cpp {spec.gguf_file}, one stream", _package_gguf(spec), prompts, ref,
                      args.max_new_tokens, rows)
            if not args.no_soup:
                soup_rows(args.model, model, prompts, args.max_new_tokens, rows, fast)
        else:
            print(f"llama.cpp rows skipped: {args.model} does not ship as a GGUF")
    else:
        fast(f"fastgen eager, batch {len(prompts)}", FastGenConfig(**base_cfg), prompts, True)
    if device.type == "cuda" and not args.no_compile:
        fast(f"fastgen CUDA graphs, batch {len(prompts)}", FastGenConfig(**base_cfg, compile=True), prompts, True)
    if args.scale and device.type == "cuda":
        many = list(ds["prompt"][: args.scale])
        fast(f"fastgen CUDA graphs, auto batch, {len(many)} prompts",
             FastGenConfig(max_new_tokens=args.max_new_tokens, compile=not args.no_compile), many, False)

    # ---------------------------------------------------------------- report
    for r in rows:
        r["tokens_per_s"] = r["tokens"] / r["seconds"]
        r["ratio"] = r["tokens_per_s"] / rows[0]["tokens_per_s"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"model {args.model}, {name}, {args.dtype}, {len(prompts)} GSM-Hard prompts "
          f"({min(lengths)}-{max(lengths)} tokens), <= {args.max_new_tokens} new tokens, greedy")
    print(f"{'method':48s} {'tokens':>7s} {'s':>8s} {'tok/s':>9s} {'x HF':>7s} {'identical':>9s}")
    for r in rows:
        ident = "-" if r["identical"] is None else f"{r['identical']}/{len(prompts)}" + ("*" if r.get("compared_with") else "")
        print(f"{r['method']:48s} {r['tokens']:7d} {r['seconds']:8.2f} {r['tokens_per_s']:9.0f} "
              f"{r['ratio']:7.2f} {ident:>9s}")
    for r in rows:
        if r.get("compared_with"):
            print(f"* {r['method']}: identical to {r['compared_with']}")
    # the headline: the fastest row judged against fp32 greedy on the base (not the soup's rows)
    best = max(rows[1:], key=lambda r: r["ratio"] if r["identical"] is not None and not r.get("compared_with") else 0)
    target = "target >= 10x with >= 99 % identical (CPU)" if args.cpu else "target >= 20x"
    print(f"fastgen / HF generate: {best['ratio']:.1f}x ({best['method']}); {target}")
    variant = "smoke" if args.smoke else f"{args.model}-cpu" if args.cpu else f"{args.model}-{args.dtype}"
    out = result_path("benchmarks", "generation", variant,
                      profile=profile)
    write_result(out, config=vars(args), metrics={"rows": rows, "ratio": best["ratio"], "device": name},
                 model=model_identity(args.model), datasets={"gsm_hard": identity(ds)})
    print(f"wrote {out}")
    if args.smoke and any(r["identical"] not in (None, len(prompts)) for r in rows):
        raise SystemExit("bench_generation --smoke: fastgen's outputs differ from HF generate's")


if __name__ == "__main__":
    main()
