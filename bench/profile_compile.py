#!/usr/bin/env python3
"""Where a compile spends its time: phases, then the hottest functions.

    python bench/profile_compile.py [N] [--top 25] [--pyinstrument]

Generates a repo of N EgressPolicy specs (bench/gen_repo.py, default 2,000), compiles it
in this process with the CLI's garbage-collector settings, and prints the CPU time of each
phase (load and validate, render and validate the output, write) and cProfile's top
functions by own time (or a pyinstrument tree when it is installed and asked for). A tool
for the next optimisation, not a benchmark: profiling slows everything 2-3x.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import gen_repo  # noqa: E402

from approvalgate.batch import BATCH_THRESHOLDS  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, nargs="?", default=2000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--pyinstrument", action="store_true")
    args = parser.parse_args()

    from approvalgate.compiler.output import write_environment
    from approvalgate.compiler.render import render_environment
    from approvalgate.compiler.repo import load_repo

    gc.set_threshold(*BATCH_THRESHOLDS)
    with tempfile.TemporaryDirectory() as tmp:
        repo_dir, _ = gen_repo.generate(args.n, Path(tmp))
        phases = []
        started = cpu()
        repo = load_repo(repo_dir)
        phases.append(("load + validate", cpu() - started))
        env = repo.config.environments[0]
        started = cpu()
        files = render_environment(repo, env)
        phases.append(("render + validate output + dump", cpu() - started))
        started = cpu()
        write_environment(Path(tmp) / "out" / env.name, files)
        phases.append(("write", cpu() - started))
        total = sum(t for _, t in phases)
        print(f"{args.n} specs, CPU seconds by phase (no profiler):")
        for name, seconds in phases:
            print(f"  {name:34s} {seconds:6.2f}  {seconds / total:4.0%}")

        def work() -> None:
            r = load_repo(repo_dir)
            render_environment(r, r.config.environments[0])

        if args.pyinstrument:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.002)
            profiler.start()
            work()
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False))
            return 0
        profile = cProfile.Profile()
        wall = time.perf_counter()
        profile.runcall(work)
        print(f"\nunder cProfile: {time.perf_counter() - wall:.1f} s; top {args.top} by own time")
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
