"""The CLI part of `make bench-peers` (issue 18): judging N AgentRun manifests on the command
line, `approvalgate verify` against `kyverno apply`, `kyverno test`, `gator verify` and
`gator test`, at N = 1, 100, 1000.

Every tool judges the same runs (one multi-document file, or the layout the tool takes: a
kyverno-test.yaml beside them, a gator Suite with one file per object), each in the namespace
its policy matches: approvalgate the example's enforced namespace "agents" (runs carrying 2
valid Ed25519 approvals, decided with a signed bundle compiled from a copy of
examples/gitops-repo whose approvers are re-keyed), Kyverno and Gatekeeper the presence rules
of bench/peers/policies (annotation present, nothing verified). Each run of a tool is one
whole process, timed by wall clock, its CPU time and peak RSS read from the kernel (wait4);
tools are interleaved (A, B, C, A, B, C ...) after one warm-up each, the median of the
repeats with its min-max spread. Every run's exit status and verdict are checked: all N runs
admitted and N resources evaluated, else the benchmark stops with an error (a tool that
silently matched nothing is a wrong measurement, not a figure). Once per tool, a negative
check: one run of three missing its approvals must make the tool report exactly that failure.

    python bench/peers/cli.py [--quick] [--markdown]

--quick: N = 1 and 10, one repeat. A peer whose binary is not built (`make peers`) is skipped
with the reason printed.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from approvalgate.approvals import keys, records, view
from approvalgate.approvals.digest import spec_digest

ROOT = Path(__file__).resolve().parents[2]

POLICIES = Path(__file__).resolve().parent / "policies"
EXAMPLE = ROOT / "examples" / "gitops-repo"
BUNDLE_KEY = EXAMPLE / "bundle-signing" / "release.pub"  # the example's pinned key
BUNDLE_SIGNER = ROOT / "examples" / "keys" / "release-bundle-signing.key"  # its public private half
ENV = "staging"  # the example's staging: two platform leads for codex-agent, clusterView required
APPROVERS = {"alice": "platform-leads,agents-admin", "bob": "platform-leads"}
NAMESPACES = {  # the namespace each tool's policy matches
    "approvalgate": "agents",
    "kyverno": "peer-kyverno-presence",
    "gatekeeper": "peer-gatekeeper-presence",
}
KYVERNO_POLICY = "agentrun-approvals-present"
KYVERNO_RULE = "approvals-annotation-present"
SIZES = (1, 100, 1000)
QUICK_SIZES = (1, 10)
NEGATIVE_RUNS, NEGATIVE_MISSING = 3, 1  # run 1 of 3 carries no approvals
BASELINE = "approvalgate-verify"


class BenchError(RuntimeError):
    """A run that failed or judged wrongly: no figure is taken from it."""


# --- the runs --------------------------------------------------------------------------------


def agent_runs(
    signers: dict[str, Any], count: int, missing: Iterable[int] = ()
) -> list[dict[str, Any]]:
    """``count`` AgentRuns in "agents", each approved by every signer for ENV (the records a
    valid run carries: subject and spec digest bound, valid for an hour), except the indexes in
    ``missing``, which carry no approvals annotation."""
    absent = set(missing)
    now = datetime.now(UTC)
    runs = []
    for i in range(count):
        name = f"run-{i:05d}"
        spec = {
            "agentRef": {"name": "codex-agent"},
            "implementationSpecRef": {"name": "codex-impl-sample"},
            "runtime": {"type": "workflow"},
            "parameters": {"task": f"bench {i}"},
        }
        meta: dict[str, Any] = {"name": name, "namespace": NAMESPACES["approvalgate"]}
        if i not in absent:
            envelopes = [
                records.sign(
                    records.Claim(
                        subject=records.subject_name(meta["namespace"], name),
                        digest=spec_digest(spec),
                        decision="approve",
                        approver=approver,
                        reason="bench",
                        issued_at=now,
                        expires_at=now + timedelta(hours=1),
                        nonce=records.new_nonce(),
                        environment=ENV,
                    ),
                    signer,
                )
                for approver, signer in signers.items()
            ]
            meta["annotations"] = {records.ANNOTATION: records.dump_annotation(envelopes)}
            # staging requires the cluster view: a run judged by records holds the approval-use
            # finalizer (`approvalgate approve` adds it)
            meta["finalizers"] = [view.USE_FINALIZER]
        runs.append(
            {
                "apiVersion": "agents.proompteng.ai/v1alpha1",
                "kind": "AgentRun",
                "metadata": meta,
                "spec": spec,
            }
        )
    return runs


def in_namespace(runs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    moved = copy.deepcopy(runs)
    for run_ in moved:
        run_["metadata"]["namespace"] = namespace
    return moved


def multi_document(runs: list[dict[str, Any]]) -> str:
    return "---\n" + "\n---\n".join(json.dumps(r, indent=1) for r in runs) + "\n"


@dataclass(frozen=True)
class Policy:
    """approvalgate's side: the compiled, signed bundle and the approvers' signers."""

    bundle: Path
    signers: dict[str, Any]


def prepare_policy(work: Path) -> Policy:
    """Compile a copy of the example repo with fresh approver keys (the committed example holds
    public keys only), signed with the example's bundle-signing key, as tests/e2e/gate.py does
    (referenced content not bound: the runs reference no objects the CLI could read)."""
    repo = work / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("rendered"))
    config = repo / "approvalgate.yaml"
    config.write_text(
        config.read_text().replace("defaults:\n", 'defaults:\n  referencedContent: "off"\n', 1)
    )
    keydir = work / "keys"
    for name, groups in APPROVERS.items():
        _cli("keygen", name, "--out", str(keydir), "--groups", groups, "--usernames", name)
        shutil.copy(keydir / f"{name}.yaml", repo / "approvers" / f"{name}.yaml")
    rendered = work / "rendered"
    _cli("compile", str(repo), "--env", ENV, "--out", str(rendered), "--sign", str(BUNDLE_SIGNER))
    signers = {
        name: keys.signer_from_pem((keydir / f"{name}.key").read_bytes()) for name in APPROVERS
    }
    return Policy(rendered / ENV / "bundle.json", signers)


def _cli(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "approvalgate", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"approvalgate {' '.join(args)}: {done.stdout}{done.stderr}")


# --- the tools -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float  # user + system time of the process (its threads included)
    peak_rss_kb: int


@dataclass(frozen=True)
class Invocation:
    """One tool's command over one set of runs, and how to read its verdict: ``judge`` returns
    None when the output says exactly ``passed`` runs passed and ``failed`` failed, else what
    is wrong."""

    command: list[str]
    cwd: Path
    judge: Callable[[Outcome, int, int], str | None]
    env: dict[str, str] | None = None  # None: this process's environment


@dataclass(frozen=True)
class Tool:
    key: str
    title: str
    checks: str
    binary: Path | None  # None: approvalgate itself (sys.executable)
    prepare: Callable[[Path, list[dict[str, Any]], Policy], Invocation]

    def missing(self) -> str | None:
        if self.binary is None or os.access(self.binary, os.X_OK):
            return None
        return f"{self.binary} not built: run `make peers`"


def _count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text, flags=re.MULTILINE))


def _judge_verify(outcome: Outcome, passed: int, failed: int) -> str | None:
    admitted = _count(r"^ADMITTED ", outcome.stdout)
    denied = _count(r"^DENIED ", outcome.stdout)
    if (admitted, denied, outcome.returncode) != (passed, failed, 1 if failed else 0):
        return f"{admitted} ADMITTED, {denied} DENIED, exit {outcome.returncode}"
    return None


def _prepare_verify(work: Path, runs: list[dict[str, Any]], policy: Policy) -> Invocation:
    manifest = work / "runs.yaml"
    manifest.write_text(multi_document(runs))
    command = [
        sys.executable,
        "-m",
        "approvalgate",
        "verify",
        str(manifest),
        "--bundle",
        str(policy.bundle),
        "--bundle-key",
        str(BUNDLE_KEY),
        "--user",
        "requester",
    ]
    return Invocation(command, ROOT, _judge_verify, _bytecode_cached(work))


def _bytecode_cached(work: Path) -> dict[str, str]:
    """The environment with Python's bytecode cache on (in ``work``, the warm-up fills it), as
    an installed approvalgate has it: pip compiles a package's modules when it installs them.
    A development shell with PYTHONDONTWRITEBYTECODE=1 would otherwise have every run compile
    approvalgate's sources again, which no installed copy does."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def _judge_kyverno_apply(outcome: Outcome, passed: int, failed: int) -> str | None:
    text = outcome.stdout + outcome.stderr
    found = re.search(r"pass: (\d+), fail: (\d+), warn: (\d+), error: (\d+), skip: (\d+)", text)
    if found is None:
        return "no `pass: N, fail: N ...` summary"
    counts = tuple(int(v) for v in found.groups())
    if counts != (passed, failed, 0, 0, 0) or outcome.returncode != (1 if failed else 0):
        return f"{found.group(0)}, exit {outcome.returncode}"
    return None


def _prepare_kyverno_apply(binary: Path) -> Callable[..., Invocation]:
    def prepare(work: Path, runs: list[dict[str, Any]], policy: Policy) -> Invocation:
        manifest = work / "runs.yaml"
        manifest.write_text(multi_document(in_namespace(runs, NAMESPACES["kyverno"])))
        command = [
            str(binary),
            "apply",
            str(POLICIES / "kyverno-presence.yaml"),
            "--resource",
            str(manifest),
        ]
        return Invocation(command, work, _judge_kyverno_apply)

    return prepare


def _judge_kyverno_test(outcome: Outcome, passed: int, failed: int) -> str | None:
    text = outcome.stdout + outcome.stderr
    found = re.search(r"Test Summary: (\d+) tests passed and (\d+) tests failed", text)
    if found is None:
        return "no `Test Summary: N tests passed and N tests failed`"
    counts = (int(found.group(1)), int(found.group(2)))
    if counts != (passed, failed) or outcome.returncode != (1 if failed else 0):
        return f"{found.group(0)}, exit {outcome.returncode}"
    return None


def _prepare_kyverno_test(binary: Path) -> Callable[..., Invocation]:
    def prepare(work: Path, runs: list[dict[str, Any]], policy: Policy) -> Invocation:
        suite = work / "kyverno-test"
        suite.mkdir()
        shutil.copy(POLICIES / "kyverno-presence.yaml", suite / "policy.yaml")
        (suite / "resources.yaml").write_text(
            multi_document(in_namespace(runs, NAMESPACES["kyverno"]))
        )
        test = {
            "apiVersion": "cli.kyverno.io/v1alpha1",
            "kind": "Test",
            "metadata": {"name": "approvals-present"},
            "policies": ["policy.yaml"],
            "resources": ["resources.yaml"],
            "results": [
                {
                    "policy": KYVERNO_POLICY,
                    "rule": KYVERNO_RULE,
                    "kind": "AgentRun",
                    "resources": [r["metadata"]["name"] for r in runs],
                    "result": "pass",  # what a valid run gets: a run without approvals fails
                }
            ],
        }
        (suite / "kyverno-test.yaml").write_text(json.dumps(test, indent=1))
        return Invocation(
            [str(binary), "test", str(suite), "--remove-color"], work, _judge_kyverno_test
        )

    return prepare


def _gatekeeper_policy(directory: Path) -> None:
    shutil.copy(POLICIES / "gatekeeper-template.yaml", directory / "template.yaml")
    shutil.copy(POLICIES / "gatekeeper-constraint.yaml", directory / "constraint.yaml")


def _judge_gator_verify(outcome: Outcome, passed: int, failed: int) -> str | None:
    ok = _count(r"^\s*--- PASS: run-", outcome.stdout)
    bad = _count(r"^\s*--- FAIL: run-", outcome.stdout)
    if (ok, bad, outcome.returncode) != (passed, failed, 1 if failed else 0):
        return f"{ok} cases PASS, {bad} FAIL, exit {outcome.returncode}"
    return None


def _prepare_gator_verify(binary: Path) -> Callable[..., Invocation]:
    def prepare(work: Path, runs: list[dict[str, Any]], policy: Policy) -> Invocation:
        suite = work / "gator-suite"
        (suite / "objects").mkdir(parents=True)
        _gatekeeper_policy(suite)
        cases = []
        for run_ in in_namespace(runs, NAMESPACES["gatekeeper"]):  # a case reviews one object
            name = run_["metadata"]["name"]
            (suite / "objects" / f"{name}.yaml").write_text(json.dumps(run_, indent=1))
            cases.append(
                {
                    "name": name,
                    "object": f"objects/{name}.yaml",
                    "assertions": [{"violations": "no"}],
                }
            )
        document = {
            "apiVersion": "test.gatekeeper.sh/v1alpha1",
            "kind": "Suite",
            "metadata": {"name": "approvals-present"},
            "tests": [
                {
                    "name": "approvals-present",
                    "template": "template.yaml",
                    "constraint": "constraint.yaml",
                    "cases": cases,
                }
            ],
        }
        (suite / "suite.yaml").write_text(json.dumps(document, indent=1))
        # -v prints one PASS/FAIL line per case: how the cases run are counted
        return Invocation(
            [str(binary), "verify", str(suite / "suite.yaml"), "-v"], work, _judge_gator_verify
        )

    return prepare


def _judge_gator_test(outcome: Outcome, passed: int, failed: int) -> str | None:
    try:
        report = json.loads(outcome.stdout) if outcome.stdout.strip() else None
    except json.JSONDecodeError:
        return f"output is not JSON: {outcome.stdout[:200]!r}"
    if not isinstance(report, dict):  # `null` when the constraint matched nothing
        report = {}
    # --stats: one entry per object the template was evaluated on (none when nothing matched)
    evaluated = len(report.get("stats") or [])
    violations = len(report.get("results") or [])
    if (evaluated, violations, outcome.returncode) != (passed + failed, failed, 1 if failed else 0):
        return f"{evaluated} objects evaluated, {violations} violations, exit {outcome.returncode}"
    return None


def _prepare_gator_test(binary: Path) -> Callable[..., Invocation]:
    def prepare(work: Path, runs: list[dict[str, Any]], policy: Policy) -> Invocation:
        directory = work / "gator-test"
        directory.mkdir()
        _gatekeeper_policy(directory)
        manifest = work / "gator-runs.yaml"
        manifest.write_text(multi_document(in_namespace(runs, NAMESPACES["gatekeeper"])))
        command = [
            str(binary),
            "test",
            "-f",
            str(directory / "template.yaml"),
            "-f",
            str(directory / "constraint.yaml"),
            "-f",
            str(manifest),
            "--stats",
            "-o",
            "json",
        ]
        return Invocation(command, work, _judge_gator_test)

    return prepare


def _testbin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("testbin", ROOT / "tools" / "testbin.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("testbin", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def peer_binary(tool: str, binary: str) -> Path:
    """Where tools/testbin.py keeps ``binary`` of ``tool`` (built or not: never builds)."""
    testbin = _testbin()
    directory: Path = testbin.bin_dir(testbin.ALL_TOOLS[tool])
    return directory / binary


def tools() -> list[Tool]:
    kyverno = peer_binary("kyverno", "kubectl-kyverno")
    gator = peer_binary("gatekeeper", "gator")
    return [
        Tool(
            BASELINE,
            "`approvalgate verify`",
            "the full decision: bundle signature, 2 Ed25519 approval signatures per run, bound to "
            "its namespace, name, spec digest and environment, approver groups, expiry",
            None,
            _prepare_verify,
        ),
        Tool(
            "kyverno-apply",
            "`kyverno apply` (presence rule)",
            "the approvals annotation is present and not empty (no signature)",
            kyverno,
            _prepare_kyverno_apply(kyverno),
        ),
        Tool(
            "kyverno-test",
            "`kyverno test` (presence rule)",
            "same rule, each result compared with a kyverno-test.yaml expecting pass",
            kyverno,
            _prepare_kyverno_test(kyverno),
        ),
        Tool(
            "gator-verify",
            "`gator verify` (presence rule, Rego)",
            "the annotation is present and not empty; a Suite case per run expecting no violation",
            gator,
            _prepare_gator_verify(gator),
        ),
        Tool(
            "gator-test",
            "`gator test` (presence rule, Rego)",
            "the annotation is present and not empty; objects evaluated counted from --stats",
            gator,
            _prepare_gator_test(gator),
        ),
    ]


# --- running ---------------------------------------------------------------------------------


def execute(invocation: Invocation, out: Path) -> Outcome:
    """Run the command as a whole process: wall time, and its peak RSS from wait4 (the
    kernel's ru_maxrss of that child alone)."""
    stdout, stderr = out.with_suffix(".out"), out.with_suffix(".err")
    with stdout.open("wb") as o, stderr.open("wb") as e:
        started = time.perf_counter()
        process = subprocess.Popen(
            invocation.command,
            cwd=invocation.cwd,
            env=invocation.env,
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Outcome(
        process.returncode,
        stdout.read_text(errors="replace"),
        stderr.read_text(errors="replace"),
        wall,
        usage.ru_utime + usage.ru_stime,
        int(usage.ru_maxrss),  # KiB on Linux
    )


def checked(tool: Tool, invocation: Invocation, out: Path, passed: int, failed: int) -> Outcome:
    outcome = execute(invocation, out)
    problem = invocation.judge(outcome, passed, failed)
    if problem is not None:
        expected = f"{passed} passed" + (f", {failed} failed" if failed else "")
        raise BenchError(
            f"{tool.key}: expected {expected}, got {problem}\n  command: "
            f"{' '.join(invocation.command)}\n  output tail: "
            f"{(outcome.stdout + outcome.stderr)[-1500:]}"
        )
    return outcome


@dataclass
class Series:
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)


def default_repeats(size: int) -> int:
    return 5 if size <= 100 else 3


def run(
    quick: bool = False,
    sizes: Sequence[int] = SIZES,
    repeats: int | None = None,
    only: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure every tool (``only``: those keys) at every size; ``repeats`` per size (default
    5 at N <= 100, 3 above; 1 with ``quick``, whose sizes are 1 and 10)."""
    say = log or (lambda line: print(line, file=sys.stderr))
    if quick:
        sizes, repeats = QUICK_SIZES, 1
    chosen = [t for t in tools() if only is None or t.key in only]
    skipped = {}
    for tool in chosen:
        reason = tool.missing()
        if reason is not None:
            skipped[tool.key] = reason
            say(f"skipping {tool.key}: {reason}")
    active = [t for t in chosen if t.key not in skipped]
    result: dict[str, Any] = {
        "sizes": list(sizes),
        "tools": [{"key": t.key, "title": t.title, "checks": t.checks} for t in active],
        "skipped": skipped,
        "negative": {},
        "figures": {},
        "verify_vs_kyverno_apply_1000": None,
        "verify_vs_kyverno_apply_1000_cpu": None,
    }
    with tempfile.TemporaryDirectory(prefix="approvalgate-peers-cli-") as tmp:
        work = Path(tmp)
        policy = prepare_policy(work / "policy")
        # the negative check, once per tool: run 1 of 3 carries no approvals
        bad = agent_runs(policy.signers, NEGATIVE_RUNS, missing=[NEGATIVE_MISSING])
        for tool in active:
            where = work / "negative" / tool.key
            where.mkdir(parents=True)
            invocation = tool.prepare(where, bad, policy)
            checked(tool, invocation, where / "run", NEGATIVE_RUNS - 1, 1)
            result["negative"][tool.key] = (
                f"{NEGATIVE_RUNS - 1} passed, the run without approvals reported failed"
            )
            say(f"negative check: {tool.key} reports the run without approvals")
        for size in sizes:
            count = repeats or default_repeats(size)
            runs = agent_runs(policy.signers, size)
            invocations = {}
            for tool in active:
                where = work / str(size) / tool.key
                where.mkdir(parents=True)
                invocations[tool.key] = tool.prepare(where, runs, policy)
                checked(tool, invocations[tool.key], where / "warmup", size, 0)  # not timed
            series = {t.key: Series() for t in active}
            for round_ in range(count):
                for tool in active:  # interleaved: A, B, C, A, B, C ...
                    where = work / str(size) / tool.key / f"round-{round_}"
                    outcome = checked(tool, invocations[tool.key], where, size, 0)
                    series[tool.key].walls.append(outcome.wall_s)
                    series[tool.key].cpus.append(outcome.cpu_s)
                    series[tool.key].rss_kb.append(outcome.peak_rss_kb)
            figures: dict[str, Any] = {}
            for tool in active:
                s = series[tool.key]
                figures[tool.key] = {
                    "median_s": statistics.median(s.walls),
                    "min_s": min(s.walls),
                    "max_s": max(s.walls),
                    "walls_s": s.walls,
                    "cpu_median_s": statistics.median(s.cpus),
                    "peak_rss_mb": max(s.rss_kb) / 1024,
                    "repeats": count,
                }
            base = figures.get(BASELINE)
            for entry in figures.values():
                entry["ratio"] = entry["median_s"] / base["median_s"] if base else None
            result["figures"][str(size)] = figures
            say(f"N={size}: " + ", ".join(f"{k} {v['median_s']:.3f}s" for k, v in figures.items()))
        at_1000 = result["figures"].get("1000", {})
        medians = target(result)
        if medians is not None:
            result["verify_vs_kyverno_apply_1000"] = medians[0] / medians[1]
            # CPU time: less shaken than wall time when the machine is busy with other work
            result["verify_vs_kyverno_apply_1000_cpu"] = (
                at_1000[BASELINE]["cpu_median_s"] / at_1000["kyverno-apply"]["cpu_median_s"]
            )
    return result


# --- the report ------------------------------------------------------------------------------


def target(result: dict[str, Any]) -> tuple[float, float] | None:
    """The issue's CLI target's figures (bench/peers/run.py reads them): the median seconds of
    `approvalgate verify` and of `kyverno apply` with the presence rule at N = 1000; None when
    either was not measured there."""
    at_1000 = result.get("figures", {}).get("1000", {})
    if BASELINE not in at_1000 or "kyverno-apply" not in at_1000:
        return None
    return at_1000[BASELINE]["median_s"], at_1000["kyverno-apply"]["median_s"]


def markdown(result: dict[str, Any]) -> str:
    titles = {t["key"]: t for t in result["tools"]}
    lines = [
        "Each figure is one whole process judging N AgentRun manifests (start-up included), "
        "wall time, the median of the repeats with its min-max spread; tools interleaved, one "
        "warm-up each; every run's exit status and verdict checked (N passed, N evaluated). "
        "CPU (user + system, all its threads, median) and peak RSS are the process's own "
        "(wait4). approvalgate runs with its bytecode cached, as pip installs it. What each "
        "tool checks differs: the peers' rules verify no signature, so the ratios are not "
        "like for like.",
        "",
    ]
    for size, figures in result["figures"].items():
        repeats = {f["repeats"] for f in figures.values()}
        lines += [
            f"N = {size} ({', '.join(str(r) for r in sorted(repeats))} repeats)",
            "",
            "| tool | what it checks | median (s) | spread (s) | vs `approvalgate verify` "
            "| CPU (s) | peak RSS (MB) |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, f in figures.items():
            versus = "—" if f["ratio"] is None else f"{f['ratio']:.2f}x"
            lines.append(
                f"| {titles[key]['title']} | {titles[key]['checks']} | {f['median_s']:.3f} | "
                f"{f['min_s']:.3f}–{f['max_s']:.3f} | {versus} | {f['cpu_median_s']:.3f} | "
                f"{f['peak_rss_mb']:.0f} |"
            )
        lines.append("")
    if result["negative"]:
        lines += [
            "Negative check (once per tool, 3 runs, one without approvals): "
            + "; ".join(f"{titles[k]['title']}: {v}" for k, v in result["negative"].items())
            + ".",
            "",
        ]
    for key, reason in result["skipped"].items():
        lines.append(f"Skipped {key}: {reason}.")
    ratio = result.get("verify_vs_kyverno_apply_1000")
    if ratio is not None:
        verdict = "met" if ratio <= 0.5 else "missed"
        lines += [
            "",
            f"Target (issue 18): `approvalgate verify` of 1,000 manifests at most 0.5x `kyverno "
            f"apply` with the presence rule: {ratio:.2f}x, {verdict} (CPU time: "
            f"{result['verify_vs_kyverno_apply_1000_cpu']:.2f}x).",
        ]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="example: python bench/peers/cli.py --quick --markdown",
    )
    parser.add_argument("--quick", action="store_true", help="N = 1 and 10, one repeat (smoke)")
    parser.add_argument("--markdown", action="store_true", help="print the tables, not JSON")
    args = parser.parse_args(argv)
    try:
        result = run(quick=args.quick)
    except BenchError as error:
        print(f"bench/peers/cli.py: error: {error}", file=sys.stderr)
        return 1
    print(markdown(result) if args.markdown else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
