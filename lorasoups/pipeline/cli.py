"""The command line of :mod:`lorasoups.pipeline` (``python -m lorasoups.pipeline run|show|stages|beyond``).

Here rather than in the pipeline module so that ``lorasoups.variants``, which runs the pipeline per
variant, and the pipeline do not import each other."""
from __future__ import annotations

import argparse
import json
import sys
import time

from lorasoups import pipeline
from lorasoups.config import ConfigError, to_dict
from lorasoups.pipeline import STAGES, profiles, resolve, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lorasoups.pipeline", description=pipeline.__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute the notebooks")
    r.add_argument("--profile", default="auto", choices=["auto", *profiles()])
    r.add_argument("--stage", action="append", help="only this stage (repeatable)")
    r.add_argument("--config", action="append", help="extra YAML layered on top (repeatable)")
    r.add_argument("--force", action="store_true", help="rerun stages that are up to date")
    p = sub.add_parser("show", help="print the resolved configuration")
    p.add_argument("--profile", default="auto", choices=["auto", *profiles()])
    p.add_argument("--config", action="append")
    sub.add_parser("stages", help="list the stages in order")
    b = sub.add_parser("beyond", help="run an experiment of configs/beyond/ (every variant)")
    b.add_argument("name", help="experiment: a file stem in configs/beyond/")
    b.add_argument("--profile", default="auto", choices=["auto", *profiles()])
    b.add_argument("--variant", action="append", help="only this variant (repeatable)")
    b.add_argument("--config", action="append", help="extra YAML layered under each variant")
    b.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    from papermill.exceptions import PapermillExecutionError

    try:
        if args.cmd == "run":
            start = time.perf_counter()
            rep = run(args.profile, args.stage, args.force, args.config)
            print(f"[pipeline] {sum(r['ran'] for r in rep)} stage(s) ran, "
                  f"{sum(not r['ran'] for r in rep)} skipped, {time.perf_counter() - start:.1f} s in all")
        elif args.cmd == "beyond":
            from lorasoups.variants import run_experiment

            start = time.perf_counter()
            rep = run_experiment(args.name, args.profile, args.variant, args.config, args.force)
            print(f"[beyond {args.name}] {len(rep)} variant(s), "
                  f"{sum(r['ran'] for v in rep.values() for r in v)} stage run(s), "
                  f"{time.perf_counter() - start:.1f} s in all")
        elif args.cmd == "show":
            print(json.dumps(to_dict(resolve(args.profile, args.config)), indent=2))
        else:
            for s in STAGES:
                print(f"{s.name:24s} notebooks/{s.notebook}")
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except PapermillExecutionError as exc:  # the failing cell and its traceback; the stage was named above
        print(f"notebook error:{exc}", file=sys.stderr)
        return 1
    return 0
