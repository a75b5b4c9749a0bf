"""Sandbox throughput on the real GSM-Hard reference programs, against a plain subprocess runner.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sandbox.py [--n 256] [--workers N]

Runs the first ``n`` reference PAL programs of GSM-Hard (from the dataset mirror; a small
synthetic program when the mirror is absent) three ways in the same process: the baseline, a plain
runner (one ``python -I`` subprocess per program, no containment at all, ``workers`` at a time);
the sandbox one at a time; and the sandbox with ``workers`` (default: every core). Prints
programs/s and the ratio sandbox / plain, and writes ``results/cpu/benchmarks/sandbox.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from lorasoups import paths
from lorasoups.evaluation.sandbox import isolation_layers, run_programs


def programs(n: int) -> tuple[list[str], str]:
    """The first ``n`` GSM-Hard reference programs (cycled when n exceeds 1,319), and their source."""
    mirror = paths.data_mirror()
    path = mirror / "gsm-hard" / "gsmhardv2.jsonl" if mirror else None
    if path is not None and path.is_file():
        base = [json.loads(line)["code"] for line in path.read_text().splitlines() if line.strip()]
        source = f"GSM-Hard reference programs ({path})"
    else:
        base = ["def solution():\n    money = 23\n    return money - 5 * 3\n"]
        source = "one synthetic program (no dataset mirror)"
    return [base[i % len(base)] for i in range(n)], source


def plain(codes: list[str], workers: int) -> float:
    """The uncontained baseline: ``python -I -c program; print(solution())`` per program."""
    def one(code: str) -> None:
        subprocess.run([sys.executable, "-I", "-c", code + "\nprint(solution())\n"],
                       capture_output=True, timeout=10, check=False)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, codes))
    return len(codes) / (time.perf_counter() - start)


def sandboxed(codes: list[str], workers: int) -> tuple[float, int]:
    start = time.perf_counter()
    results = run_programs(codes, timeout=10.0, workers=workers)
    rate = len(codes) / (time.perf_counter() - start)
    return rate, sum(r.ok for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="programs per measurement")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel workers")
    args = ap.parse_args()
    codes, source = programs(args.n)
    run_programs(codes[:4], timeout=10.0, workers=args.workers)  # start the fork servers, warm the cache
    baseline = plain(codes, args.workers)
    serial, _ = sandboxed(codes, 1)
    parallel, ok = sandboxed(codes, args.workers)
    layers = isolation_layers()
    print(f"{source}: {args.n} programs, {os.cpu_count()} cores, layers {'+'.join(layers)}")
    print(f"plain subprocess, {args.workers} workers (baseline): {baseline:7.1f} programs/s")
    print(f"sandbox, one at a time                  : {serial:7.1f} programs/s")
    print(f"sandbox, {args.workers} workers                      : {parallel:7.1f} programs/s "
          f"({ok} of {args.n} ran ok)")
    print(f"ratio sandbox / plain: {parallel / baseline:.2f}x (target: >= 30 programs/s)")

    from lorasoups.results import result_path, write_result

    out = write_result(
        result_path("benchmarks", "sandbox", "default", profile="cpu"),
        config={"n": args.n, "workers": args.workers, "source": source, "layers": layers},
        metrics={"plain_programs_per_s": baseline, "sandbox_serial_programs_per_s": serial,
                 "sandbox_programs_per_s": parallel, "ratio_vs_plain": parallel / baseline, "ok": ok,
                 "target_programs_per_s": 30.0, "target_met": parallel >= 30.0},
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
