"""Sandbox throughput: programs/second one at a time vs in parallel across cores.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sandbox.py [--n 64] [--workers N]

Runs the authors' 8 PAL demonstrations (real GSM programs; a small synthetic program when the
dataset mirror is absent) ``n`` times, first with one worker (the named baseline), then with
``workers`` (default: every core), in the same process, and prints the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from lorasoups import paths
from lorasoups.evaluation.extract import extract_program
from lorasoups.evaluation.sandbox import run_programs


def programs(n: int) -> list[str]:
    mirror = paths.data_mirror()
    demo = mirror / "lorasoups-paper" / "few_shot" / "math.json" if mirror else None
    if demo is not None and demo.is_file():
        base = [extract_program(d["output"]) for d in json.loads(demo.read_text())]
    else:
        base = ["def solution():\n    money = 23\n    return money - 5 * 3\n"]
    return [base[i % len(base)] for i in range(n)]


def throughput(codes: list[str], workers: int) -> float:
    start = time.perf_counter()
    results = run_programs(codes, timeout=10.0, workers=workers)
    seconds = time.perf_counter() - start
    bad = [r for r in results if not r.ok]
    if bad:
        raise SystemExit(f"{len(bad)} programs failed, e.g. {bad[0].status}: {bad[0].error}")
    return len(codes) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="programs per measurement")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel workers")
    args = ap.parse_args()
    codes = programs(args.n)
    run_programs(codes[:2], timeout=10.0, workers=1)  # warm the page cache
    serial = throughput(codes, 1)
    parallel = throughput(codes, args.workers)
    print(f"programs: {args.n}, cores: {os.cpu_count()}")
    print(f"one at a time : {serial:7.1f} programs/s")
    print(f"{args.workers} workers     : {parallel:7.1f} programs/s")
    print(f"ratio parallel/serial: {parallel / serial:.2f}x")


if __name__ == "__main__":
    main()
