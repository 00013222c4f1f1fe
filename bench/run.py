#!/usr/bin/env python3
"""Run every benchmark and rewrite docs/benchmarks.md: the one command (`make bench`).

    python bench/run.py [--quick] [--output docs/benchmarks.md]

Runs bench/compile_bench.py (compiler vs helm, `check`, CLI start-up) and, when the files
exist, bench/webhook_bench.py, bench/apiserver_admission.py, bench/view_admission.py (webhook
CPU per admission with a cluster view of 10,000 decisions, in process and through a real
API server's watches) and bench/queue_latency.py (last approval to run with 10, 100 and
1,000 pending requests; controller memory), bench/parents_admission.py and
bench/signatures.py (signature verification per key type; admission CPU with approvals of
each type) and bench/console_render.py (the console's pages with 1,000 pending requests), whose
stdout (markdown) is included as it is.
Records the machine (cores, CPU model, memory, Python), the load average before and after,
the date, the commit and this exact command. `--quick` is the smoke run of the test suite:
tiny sizes, one repetition, nothing that starts a control plane, and it should be given an
`--output` outside the repo. The Peers section that `make bench-peers` writes between
`<!-- peers:start -->` and `<!-- peers:end -->` is kept as it is (moved to the end).

Every figure is a ratio to a baseline measured in the same run: on a shared, noisy machine
an absolute number alone says little. The exception is the queue's latency (a time from an
API call to an event in another process: absolute milliseconds, the machine named).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import compile_bench  # noqa: E402

WEBHOOK_BENCH = BENCH / "webhook_bench.py"
APISERVER_BENCH = BENCH / "apiserver_admission.py"  # issue 6: latency as the API server sees it
VIEW_BENCH = BENCH / "view_admission.py"  # issue 15: decide() CPU with a cluster view
QUEUE_BENCH = BENCH / "queue_latency.py"  # issue 15: last approval to run, controller memory
PARENTS_BENCH = BENCH / "parents_admission.py"  # issue 16: platform-made runs, content bound
SIGNATURES_BENCH = BENCH / "signatures.py"  # issue 17: verification per key type, admission
CONSOLE_BENCH = BENCH / "console_render.py"  # issue 19: the console's pages, 1,000 requests
FINDINGS = BENCH / "findings.md"
BEFORE = BENCH / "before.json"
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
# `make bench-peers` (bench/peers/run.py) owns the text between these markers: kept as it is
PEERS_START, PEERS_END = "<!-- peers:start -->", "<!-- peers:end -->"
WEBHOOK_TIMEOUT = 3 * 3600  # seconds: a benchmark must end

HOW_TO_READ = """\
## How to read this

- Every comparison is against a baseline run **in the same invocation, on the same machine,
  interleaved** (A, B, A, B...), so background load hits both alike. Read the ratios; the
  absolute times move with the machine and with whatever else runs on it.
- Times are medians of several runs (the min–max column shows the spread), and the load
  average before and after is recorded: a load well above the core count means the run
  shared the CPU, and the spread will say so.
- The growth exponent is the slope of log(time) against log(N): 1.0 is linear. Start-up
  cost (interpreter, imports; helm's Go runtime) is paid once per run and flattens the fit
  at small N, so the slope between the two largest sizes is shown too.
- Peak memory is the process's maximum resident set size, from GNU time (`%M`).
- The approval queue's latency (last approval to the run existing) is in absolute
  milliseconds on the machine below: it is a time to an event across processes, with no
  baseline that would make a ratio mean something.
- These are benchmarks, not tests: nothing here fails on a slow machine. The test suite
  only runs the scripts in `--quick` mode so they cannot rot (tests/bench/).
"""


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


def machine() -> list[str]:
    cpuinfo = _read("/proc/cpuinfo")
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in cpuinfo.splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    mem = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal")
        ),
        "unknown",
    )
    if mem.endswith(" kB") and mem[:-3].isdigit():
        mem = f"{int(mem[:-3]) / 1024 / 1024:.1f} GiB"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"- cores (nproc): {cores}",
        f"- CPU: {model}",
        f"- memory: {mem}",
        f"- Python: {platform.python_version()} ({platform.python_implementation()}), "
        f"{sys.executable}",
        f"- OS: {platform.system()} {platform.release()}",
    ]


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def commit() -> str:
    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{head}{' with uncommitted changes' if dirty else ''}"


def optional_section(script: Path, quick: bool, extra: Sequence[str] = ()) -> str:
    """The markdown (stdout) of another team's benchmark script, when it is there."""
    if not script.exists():
        return ""
    title = f"## {script.name}"
    argv = [sys.executable, str(script), *extra]
    if quick:
        helped = subprocess.run(
            [*argv, "--help"], capture_output=True, text=True, timeout=120, check=False
        )
        if "--quick" not in helped.stdout:
            return f"{title}\n\nSkipped in `--quick` mode ({script.name} has no `--quick`).\n"
        argv.append("--quick")
    print(f"running {shlex.join(argv)}", file=sys.stderr)
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=WEBHOOK_TIMEOUT, cwd=ROOT, check=False
        )
    except subprocess.TimeoutExpired:
        return f"{title}\n\n`{shlex.join(argv)}` did not finish in {WEBHOOK_TIMEOUT} s.\n"
    if result.returncode != 0:
        tail = result.stderr.strip()[-1500:]
        return (
            f"{title}\n\n`{shlex.join(argv)}` failed (exit {result.returncode}):\n\n"
            f"```\n{tail}\n```\n"
        )
    text = result.stdout.strip()
    return (text if text.startswith("#") else f"{title}\n\n{text}") + "\n"


def before_after(data: dict[str, Any]) -> str:
    """This run's ratios beside those of the build before the speed work (bench/before.json:
    the same harness, earlier the same day, each run with its own baselines)."""
    if not BEFORE.exists() or not data.get("compile"):
        return ""
    before = json.loads(BEFORE.read_text(encoding="utf-8"))
    now_compile = {
        str(r["n"]): (statistics.median(r["approvalgate_s"]), statistics.median(r["helm_s"]))
        for r in data["compile"]
        if r.get("helm_s")
    }
    lines = [
        "## Before and after",
        "",
        before["what"],
        "",
        "| measure | before, run 1 | before, run 2 | after (this run; CLI: the A/B) | better by |",
        "|---|---:|---:|---:|---:|",
    ]
    for n, (ag, helm) in now_compile.items():
        old = [r["compile"].get(n) for r in before["runs"]]
        if not all(old):
            continue
        ratios = [o["approvalgate_s"] / o["helm_s"] for o in old]
        now = ag / helm
        lines.append(
            f"| compile {int(n):,} specs, time / helm's | {ratios[0]:.2f} | {ratios[1]:.2f} "
            f"| **{now:.2f}** | {min(ratios) / now:.0f}x |"
        )
    ab = before["cli_ab"]["median_ms"]
    base = ab["python -c pass"]
    for what in ("check", "--version"):
        was, now = ab[f"before: {what}"] - base, ab[f"after: {what}"] - base
        lines.append(
            f"| `approvalgate {what}`, over `python -c pass` (A/B below) | {was:+.0f} ms | "
            f"| **{now:+.0f} ms** | {was / now:.1f}x |"
        )
    rss = before["peak_rss_mib_10000"]
    ten = next((r for r in data["compile"] if r["n"] == 10_000), None)
    if ten:
        now_rss = statistics.median(ten["approvalgate_rss_kib"]) / 1024
        lines.append(
            f"| compile 10,000 specs, peak MiB | {rss['approvalgate']} | | **{now_rss:.0f}** "
            f"| {rss['approvalgate'] / now_rss:.1f}x |"
        )
    lines += ["", f"A/B: {before['cli_ab']['how']}.", ""]
    return "\n".join(lines)


def shown_command(argv: Sequence[str]) -> str:
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(ROOT)
    command = f"`{shlex.join([str(python), 'bench/run.py', *argv])}`"
    given = os.environ.get("APPROVALGATE_BENCH_COMMAND")  # set by `make bench`
    return f"`{given}` (that is, {command})" if given else command


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run (smoke test)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown to write")
    parser.add_argument("--no-webhook", action="store_true", help="skip the webhook benchmarks")
    parser.add_argument(
        "--no-queue", action="store_true", help="skip the approval queue's benchmark"
    )
    args, rest = parser.parse_known_args(argv)

    started = dt.datetime.now(dt.UTC)
    load_before = load_average()
    if not args.quick:  # the load generators the tables name (Debian packages)
        for command in compile_bench.ensure_debian_commands("wrk", "hyperfine"):
            print(f"{command} is not installed and could not be; timing in Python", file=sys.stderr)
    t0 = time.monotonic()
    compile_md, data = compile_bench.run([*rest, *(["--quick"] if args.quick else [])])
    others = []
    if not args.no_webhook:
        others.append(optional_section(WEBHOOK_BENCH, args.quick))
        if not args.quick:  # starts a real control plane: minutes, and only where it builds
            others.append(optional_section(APISERVER_BENCH, False, ["--markdown"]))
        # in process with --quick; with the real API server's watches otherwise
        others.append(
            optional_section(VIEW_BENCH, args.quick, [] if args.quick else ["--apiserver"])
        )
        others.append(optional_section(PARENTS_BENCH, args.quick))
        others.append(optional_section(SIGNATURES_BENCH, args.quick))
    others.append(optional_section(CONSOLE_BENCH, args.quick))  # in process, no cluster
    if not args.no_queue and not args.quick:  # real control planes and the controller
        others.append(optional_section(QUEUE_BENCH, False))
    webhook_md = "\n".join(o.rstrip() + "\n" for o in others if o)
    elapsed = time.monotonic() - t0
    load_after = load_average()

    parts = [
        "# Benchmarks",
        "",
        f"Generated by {shown_command(argv)} on {started:%Y-%m-%d %H:%M} UTC "
        f"(commit {commit()}), in {elapsed:.0f} s. Do not edit: rerun the command."
        + (
            " **Quick (smoke) run: sizes and repetitions too small to mean anything.**"
            if args.quick
            else ""
        ),
        "",
        HOW_TO_READ,
        "## Machine",
        "",
        *machine(),
        f"- load average before: {load_before}",
        f"- load average after: {load_after}",
        "",
        compile_md.rstrip(),
        "",
    ]
    if webhook_md:
        parts += [webhook_md.rstrip(), ""]
    else:
        parts += [
            "## Webhook",
            "",
            "bench/webhook_bench.py is not there yet: no webhook figures.",
            "",
        ]
    comparison = before_after(data)
    if comparison:
        parts += [comparison.rstrip(), ""]
    parts += [control_plane_times(), ""]
    if FINDINGS.exists():
        parts += [FINDINGS.read_text(encoding="utf-8").rstrip(), ""]
    peers = peers_section(args.output)
    if peers:
        parts += [peers, ""]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(parts), encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def peers_section(path: Path) -> str:
    """The Peers section `make bench-peers` wrote into ``path`` (markers included), or ""."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    start = text.find(PEERS_START)
    end = text.find(PEERS_END, start)
    return text[start : end + len(PEERS_END)] if start >= 0 and end >= 0 else ""


def control_plane_times() -> str:
    """The control plane's cold build and warm start: measured once (a cold build takes
    minutes and empties the Go caches), recorded in docs/toolchain.md, repeated here; the
    warm start of this run is in the apiserver_admission section above."""
    text = (ROOT / "docs" / "toolchain.md").read_text(encoding="utf-8")
    start = text.index("## Measured on this machine")
    table = [line for line in text[start:].splitlines()[1:] if line.startswith("|")]
    heading = text[start:].splitlines()[0].removeprefix("## ").strip()
    return "\n".join(
        [
            "## Control plane: cold build and warm start",
            "",
            f"From docs/toolchain.md ({heading}; `python tools/testbin.py all` builds",
            "kube-apiserver, kubectl, etcd and helm from the Go module proxy when they are not",
            "cached):",
            "",
            *table,
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
