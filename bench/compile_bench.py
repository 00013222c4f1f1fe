#!/usr/bin/env python3
"""Compiler and CLI benchmarks, each against a baseline measured in the same run.

    python bench/compile_bench.py [--sizes 10,100,1000,10000] [--repeat 5] [--quick]

1. `approvalgate compile` (load + validate + render + validate the output + write) of
   generated repos with N EgressPolicy specs (bench/gen_repo.py), side by side with
   `helm template` of bench/helm-equivalent/ rendering the same NetworkPolicies from a
   values list (real helm, from tools/testbin.py). Wall time is the median of the runs,
   peak memory the child's `ru_maxrss` (os.wait4, per process). The growth exponent is the
   slope of a least-squares fit of log(time) against log(N). Before timing, the objects
   helm renders are compared with the NetworkPolicies approvalgate writes: same objects.
2. `approvalgate check examples/gitops-repo` against `python -c pass`.
3. CLI start-up: `approvalgate --version` against `python -c pass` (hyperfine when it is
   installed, else the same interleaved timing loop as above).

Prints a markdown section on stdout (bench/run.py puts it in docs/benchmarks.md); `--json`
also writes the raw figures. Not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import gen_repo  # noqa: E402

CHART = BENCH / "helm-equivalent"
FLOOR_CHART = BENCH / "helm-floor"
EXAMPLE = ROOT / "examples" / "gitops-repo"
DEFAULT_SIZES = (10, 100, 1_000, 10_000)
QUICK_SIZES = (10, 30)
RUN_TIMEOUT = 1800  # seconds, for one command: a benchmark must end


# --------------------------------------------------------------------------- measuring


@dataclass
class Runs:
    """Wall times (s) and peak RSS (KiB) of repeated runs of one command."""

    label: str
    walls: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.walls) if self.walls else math.nan

    @property
    def spread(self) -> tuple[float, float]:
        return (min(self.walls), max(self.walls)) if self.walls else (math.nan, math.nan)

    @property
    def peak_mib(self) -> float:
        return statistics.median(self.rss_kib) / 1024 if self.rss_kib else math.nan


GNU_TIME = Path("/usr/bin/time")


def run_once(
    command: Sequence[str], stdout: Path | None = None, cwd: Path | None = None
) -> tuple[float, int, int]:
    """(wall seconds, peak RSS KiB, exit code) of one child process.

    Peak memory comes from GNU time (`%M`) when it is installed: Linux carries a process's
    memory high-water mark across fork and exec, so the ru_maxrss of a child spawned
    directly from this (large) process would report at least this process's own RSS.
    GNU time is small and forks the command itself. Without it, wait4's ru_maxrss is used
    and is an upper bound.
    """
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115
    with tempfile.NamedTemporaryFile("r", suffix=".maxrss") as maxrss:
        argv = list(command)
        if GNU_TIME.exists():
            argv = [str(GNU_TIME), "-f", "%M", "-o", maxrss.name, *argv]
        try:
            started = time.perf_counter()
            child = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.DEVNULL, cwd=cwd, env=_env()
            )
            deadline = started + RUN_TIMEOUT
            while True:
                pid, status, usage = os.wait4(child.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    child.kill()
                    pid, status, usage = os.wait4(child.pid, 0)
                    break
                time.sleep(0.0005)
            wall = time.perf_counter() - started
            child.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if stdout:
                out.close()  # type: ignore[union-attr]
        peak = int(usage.ru_maxrss)
        lines = (
            Path(maxrss.name).read_text(encoding="utf-8").split() if argv[0] != command[0] else []
        )
        if lines and lines[-1].isdigit():
            peak = int(lines[-1])
    return wall, peak, child.returncode


def _env() -> dict[str, str]:
    """The children's environment: this one, but bytecode is cached as in a user's install
    (a session with PYTHONDONTWRITEBYTECODE=1 would recompile every module on each run)."""
    env = dict(os.environ)
    for name in ("PYTHONPROFILEIMPORTTIME", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"):
        env.pop(name, None)
    return env


def interleaved(commands: dict[str, Sequence[str]], repeat: int) -> dict[str, Runs]:
    """Run the commands in turn, `repeat` rounds, so noise hits them alike."""
    results = {label: Runs(label) for label in commands}
    for _ in range(repeat):
        for label, command in commands.items():
            _record(results[label], run_once(command))
    return results


def hyperfine_available() -> str | None:
    return shutil.which("hyperfine")


def hyperfine(commands: dict[str, Sequence[str]], runs: int, warmup: int) -> dict[str, Runs]:
    """Median wall times from hyperfine (no shell: `-N`), same runs for every command."""
    import shlex

    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "hyperfine.json"
        argv = ["hyperfine", "-N", "--style", "none", "--runs", str(runs)]
        argv += ["--warmup", str(warmup), "--export-json", str(export), "-i"]
        for label, command in commands.items():
            argv += ["--command-name", label, shlex.join(command)]
        subprocess.run(argv, check=True, capture_output=True, timeout=RUN_TIMEOUT, env=_env())
        data = json.loads(export.read_text())
    out = {}
    for result in data["results"]:
        runs_ = Runs(result["command"])
        runs_.walls = list(result["times"])
        runs_.codes = list(result.get("exit_codes") or [])
        out[runs_.label] = runs_
    return out


def loglog_slope(sizes: Sequence[int], times: Sequence[float]) -> float:
    """Least-squares slope of log(time) against log(N): 1 is linear growth."""
    points = [(math.log(n), math.log(t)) for n, t in zip(sizes, times, strict=True) if t > 0]
    if len(points) < 2:
        return math.nan
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return sxy / sxx if sxx else math.nan


# --------------------------------------------------------------------------- tools


_OVERRIDE: list[str] = []


def approvalgate_command() -> list[str]:
    """The console script of the interpreter running this (the venv's), as users run it."""
    if _OVERRIDE:
        return list(_OVERRIDE)
    script = Path(sys.executable).parent / "approvalgate"
    if script.exists():
        return [str(script)]
    found = shutil.which("approvalgate")
    return [found] if found else [sys.executable, "-m", "approvalgate"]


def helm_binary() -> tuple[Path | None, str]:
    """Real helm from tools/testbin.py (built from the pinned Go module when missing)."""
    try:
        result = subprocess.run(
            [sys.executable, str(ROOT / "tools" / "testbin.py"), "--print-dir", "helm"],
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"tools/testbin.py failed: {exc}"
    lines = result.stdout.strip().splitlines()
    helm = Path(lines[-1]) / "helm" if lines else None
    if result.returncode != 0 or helm is None or not helm.exists():
        return None, f"no helm: {result.stderr.strip()[-300:]}"
    version = subprocess.run(
        [str(helm), "version", "--short"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return helm, version


def same_objects(rendered: Path, helm_output: Path) -> tuple[bool, int]:
    """Do helm's objects equal the NetworkPolicies approvalgate wrote? (and how many)"""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    def key(obj: dict[str, Any]) -> tuple[str, str]:
        return obj["metadata"]["namespace"], obj["metadata"]["name"]

    ours = {}
    for path in sorted((rendered / "networkpolicies").glob("*.yaml")):
        obj = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        ours[key(obj)] = obj
    theirs = {}
    with open(helm_output, encoding="utf-8") as handle:
        for obj in yaml.load_all(handle, Loader=loader):
            if obj:
                theirs[key(obj)] = obj
    return ours == theirs, len(ours)


# --------------------------------------------------------------------------- benchmarks


@dataclass
class SizeResult:
    n: int
    approvalgate: Runs
    helm: Runs | None
    floor: Runs | None
    same: bool | None
    objects: int


def bench_compile(sizes: Sequence[int], repeat: int, helm: Path | None) -> list[SizeResult]:
    """Each run writes to a folder of its own: no run pays for deleting the previous
    run's 10,000 files (ext4 charges that to whoever creates files next)."""
    ag = approvalgate_command()
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix=f"ag-bench-{n}-") as tmp:
            work = Path(tmp)
            repo, values = gen_repo.generate(n, work)
            chart = [str(helm), "template", "bench", str(CHART), "-f", str(values)]
            floor_values = work / "floor-values.yaml"
            if helm:  # untimed: the finished objects, as values for the toYaml-only chart
                run_once(chart, work / "helm-warm-up.yaml")
                write_floor_values(work / "helm-warm-up.yaml", floor_values)
            floor = [str(helm), "template", "bench", str(FLOOR_CHART), "-f", str(floor_values)]
            ag_runs, helm_runs, floor_runs = Runs("approvalgate"), Runs("helm"), Runs("floor")
            for round_ in range(repeat):  # interleaved: A, B, C, A, B, C...
                out = work / f"out-{round_}"
                _record(ag_runs, run_once([*ag, "compile", str(repo), "--out", str(out)]))
                if helm:
                    _record(helm_runs, run_once(chart, work / f"helm-{round_}.yaml"))
                    _record(floor_runs, run_once(floor, work / f"floor-{round_}.yaml"))
            same, objects = None, 0
            last = repeat - 1
            if helm and helm_runs.codes[-1] == 0 and ag_runs.codes[-1] == 0:
                ours = work / f"out-{last}" / "bench"
                same, objects = same_objects(ours, work / f"helm-{last}.yaml")
                if floor_runs.codes[-1] == 0:
                    same = same and same_objects(ours, work / f"floor-{last}.yaml")[0]
            results.append(
                SizeResult(
                    n,
                    ag_runs,
                    helm_runs if helm else None,
                    floor_runs if helm else None,
                    same,
                    objects,
                )
            )
            print(
                f"compile N={n}: {ag_runs.median:.3f}s"
                + (
                    f", helm {helm_runs.median:.3f}s, floor {floor_runs.median:.3f}s"
                    if helm
                    else ""
                ),
                file=sys.stderr,
            )
    return results


def write_floor_values(rendered: Path, values: Path) -> None:
    import yaml

    with open(rendered, encoding="utf-8") as handle:
        objects = [o for o in yaml.load_all(handle, Loader=_loader()) if o]
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    values.write_text(yaml.dump({"objects": objects}, Dumper=dumper), encoding="utf-8")


def _loader() -> Any:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _record(runs: Runs, measured: tuple[float, int, int]) -> None:
    wall, rss, code = measured
    runs.walls.append(wall)
    runs.rss_kib.append(rss)
    runs.codes.append(code)


def bench_commands(
    commands: dict[str, Sequence[str]], runs: int, use_hyperfine: bool
) -> tuple[dict[str, Runs], str]:
    if use_hyperfine and hyperfine_available():
        try:
            return hyperfine(commands, runs, warmup=3), "hyperfine"
        except (subprocess.SubprocessError, OSError, KeyError, ValueError) as exc:
            print(f"hyperfine failed ({exc}); timing it here", file=sys.stderr)
    for command in commands.values():  # warm-up: file cache, .pyc
        run_once(command)
    return interleaved(commands, runs), "interleaved runs (bench/compile_bench.py)"


def ensure_debian_commands(*commands: str) -> list[str]:
    """Install the Debian packages of the same names for missing commands (hyperfine, wrk):
    root with apt-get only, best effort, bounded; ``apt-get update`` once if the first try
    leaves some missing (a fresh machine has no package lists). The commands still missing."""
    missing = [c for c in commands if not shutil.which(c)]
    if not missing or os.geteuid() != 0 or not shutil.which("apt-get"):
        return missing
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for steps in ([["install"]], [["update"], ["install"]]):
        for step in steps:
            extra = ["-y", "-qq", *missing] if step == ["install"] else ["-qq"]
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(
                    ["apt-get", *step, *extra],
                    capture_output=True,
                    timeout=300,
                    check=False,
                    env=env,
                )
        missing = [c for c in missing if not shutil.which(c)]
        if not missing:
            break
    return missing


# --------------------------------------------------------------------------- report


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.2f}"


def _spread(r: Runs) -> str:
    return f"{_s(r.spread[0])}–{_s(r.spread[1])}"


def compile_table(results: Sequence[SizeResult], repeat: int) -> list[str]:
    lines = [
        f"Median of {repeat} run(s) each, interleaved (approvalgate, helm, helm toYaml-only); "
        "peak memory is the process's max RSS. *helm* is the equivalent chart "
        "(bench/helm-equivalent: the rules computed in the template from the same fields); "
        "*toYaml-only* is helm's floor (bench/helm-floor: values already hold the finished "
        "NetworkPolicies, the template only writes them out).",
        "",
        "| N specs | approvalgate compile (s) | min–max | peak MiB | helm template (s) "
        "| min–max | peak MiB | **approvalgate / helm** | helm toYaml-only (s) "
        "| approvalgate / toYaml-only | same objects |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        a = r.approvalgate
        row = [f"{r.n:,}", _s(a.median), _spread(a), f"{a.peak_mib:.0f}"]
        if any(a.codes):
            row[1] += f" (exit {max(a.codes)})"
        if r.helm and r.floor:
            h, f = r.helm, r.floor
            row += [_s(h.median), _spread(h), f"{h.peak_mib:.0f}", f"**{a.median / h.median:.2f}**"]
            row += [_s(f.median), f"{a.median / f.median:.2f}"]
            row.append(
                "n/a" if r.same is None else (f"yes ({r.objects:,})" if r.same else "**NO**")
            )
        else:
            row += ["n/a"] * 7
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines + growth_lines(results)


def growth_lines(results: Sequence[SizeResult]) -> list[str]:
    def slopes(chosen: Sequence[SizeResult]) -> str:
        sizes = [r.n for r in chosen]
        text = (
            f"approvalgate **{loglog_slope(sizes, [r.approvalgate.median for r in chosen]):.2f}**"
        )
        helm = [r.helm.median for r in chosen if r.helm]
        floor = [r.floor.median for r in chosen if r.floor]
        if len(helm) == len(chosen):
            text += f", helm **{loglog_slope(sizes, helm):.2f}**"
        if len(floor) == len(chosen):
            text += f", helm toYaml-only {loglog_slope(sizes, floor):.2f}"
        return text

    sizes = ", ".join(f"{r.n:,}" for r in results)
    lines = [f"- growth exponent (log-log least squares over N = {sizes}): {slopes(results)}"]
    if len(results) >= 3:
        lines.append(
            f"- between the two largest sizes: {slopes(results[-2:])} (start-up cost "
            "flattens the full fit; this is the size-driven part)"
        )
    if len(results) >= 2:
        small, large = results[-2], results[-1]
        extra = large.n - small.n

        def per_spec(a: float, b: float) -> str:
            return f"{(b - a) / extra * 1e6:.0f} µs"

        text = (
            f"- cost of one more spec between N = {small.n:,} and {large.n:,}: approvalgate "
            f"{per_spec(small.approvalgate.median, large.approvalgate.median)}"
        )
        if small.helm and large.helm:
            text += f", helm {per_spec(small.helm.median, large.helm.median)}"
        lines.append(text)
    last = results[-1]
    if last.helm and last.floor:
        a, h, f = last.approvalgate.median, last.helm.median, last.floor.median
        lines.append(
            f"- at N = {last.n:,}: approvalgate/helm = **{a / h:.2f}** ({_ms(a)} vs {_ms(h)}; "
            f"target ≤ 1); against the toYaml-only floor {a / f:.2f} ({_ms(f)})"
        )
    return lines


def commands_table(runs: dict[str, Runs], baseline: str, tool: str) -> list[str]:
    base = runs[baseline].median
    lines = [
        f"Timed with {tool}; {len(runs[baseline].walls)} runs each.",
        "",
        "| command | median | min–max | over baseline | ratio to baseline |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, r in runs.items():
        lo, hi = r.spread
        over = "—" if label == baseline else f"{(r.median - base) * 1000:+.0f} ms"
        lines.append(
            f"| `{label}` | {r.median * 1000:.1f} ms | {lo * 1000:.0f}–{hi * 1000:.0f} ms "
            f"| {over} | {r.median / base:.2f} |"
        )
    return lines


def run(argv: Sequence[str] | None = None) -> tuple[str, dict[str, Any]]:
    """Run the benchmarks; return (markdown section, raw figures)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default=None, help="comma-separated N (default 10,100,1000,10000)"
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per compile size (default 5)"
    )
    parser.add_argument(
        "--cli-runs", type=int, default=None, help="runs per CLI command (default 30)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run: a smoke test")
    parser.add_argument("--no-helm", action="store_true", help="skip the helm baseline")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install hyperfine")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--approvalgate", help="command to benchmark instead of the venv's (e.g. an older build)"
    )
    args = parser.parse_args(argv)
    if args.approvalgate:
        import shlex

        _OVERRIDE[:] = shlex.split(args.approvalgate)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    sizes = sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    repeat = args.repeat or (1 if args.quick else 5)
    cli_runs = args.cli_runs or (3 if args.quick else 30)
    if not args.quick and not args.no_install:
        ensure_debian_commands("hyperfine")

    helm, helm_version = (None, "skipped (--no-helm)") if args.no_helm else helm_binary()
    ag = approvalgate_command()
    py = [sys.executable, "-c", "pass"]
    out: list[str] = []
    data: dict[str, Any] = {"helm": helm_version}

    out += ["## Compiler: approvalgate compile vs helm template", ""]
    shown_helm = helm_version if helm else "unavailable: " + helm_version
    out += [
        f"Generated repos (bench/gen_repo.py, seed 0): N EgressPolicy specs, one file each, "
        f"plus 3 ApprovalPolicies and 3 Approvers, one environment. Baseline: "
        f"`helm template` of bench/helm-equivalent/ ({shown_helm}) "
        f"with the same policies as a values list. approvalgate's time includes validating "
        f"every input spec and every rendered object, writing the files, SHA256SUMS and the "
        f"bundle; helm's is rendering to one stream (no validation).",
        "",
    ]
    compile_results = bench_compile(sizes, repeat, helm)
    out += compile_table(compile_results, repeat)
    data["compile"] = [
        {
            "n": r.n,
            "approvalgate_s": r.approvalgate.walls,
            "approvalgate_rss_kib": r.approvalgate.rss_kib,
            "helm_s": r.helm.walls if r.helm else None,
            "helm_rss_kib": r.helm.rss_kib if r.helm else None,
            "helm_to_yaml_only_s": r.floor.walls if r.floor else None,
            "same_objects": r.same,
        }
        for r in compile_results
    ]

    use_hyperfine = not args.quick
    out += ["", "## CLI: check on the example repo, start-up", ""]
    check_cmds = {
        "python -c pass": py,
        "approvalgate check examples/gitops-repo": [*ag, "check", str(EXAMPLE)],
        "approvalgate --version": [*ag, "--version"],
    }
    cli, tool = bench_commands(check_cmds, cli_runs, use_hyperfine)
    out += commands_table(cli, "python -c pass", tool)
    check = cli["approvalgate check examples/gitops-repo"]
    version = cli["approvalgate --version"]
    base = cli["python -c pass"].median
    if check.codes and any(check.codes):
        out.append(f"\n`check` exited {max(check.codes)}: the example's committed output is stale")
    out += [
        "",
        f"- `check` on the example repo: **{check.median * 1000:.0f} ms** (target < 300 ms)",
        f"- start-up over `python -c pass`: **{(version.median - base) * 1000:+.0f} ms** "
        f"(target < 150 ms)",
    ]
    data["cli"] = {label: r.walls for label, r in cli.items()}
    data["cli_tool"] = tool
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return "\n".join(out) + "\n", data


def main(argv: Sequence[str] | None = None) -> int:
    markdown, _ = run(argv)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
