#!/usr/bin/env python3
"""decide() CPU per admission for the runs the platform creates, and with content bound.

    python bench/parents_admission.py [--runs 200] [--rounds 5] [--quick] [--json]

Issue 16 adds work to the admission path: a run the platform created is judged by
deriving it from its parent in the cluster view (a Schedule's run template compared in
RFC 8785 form, the parent's coverage digest, its records), and every approval binds the
content (ImplementationSpec, Agent, its AgentProvider) the run executes, checked against
the view. Measured in process (``approvals.view.StaticView``), CPU per ``decide()`` call,
ways interleaved review by review after a warm-up round, the ratio to the baseline of the
same run:

- **records** (baseline): a run created by a person, two signed approvals, cluster view
  required, content not bound (what issue 15 measured);
- **records + content**: the same with ``referencedContent: bind`` (each record binds the
  run's ImplementationSpec, Agent and the Agent's AgentProvider, all in the view);
- **schedule run**: a run the schedule runner created (a fresh ``idempotencyKey``), judged
  by its approved Schedule (two approvals on the Schedule, content bound);
- **orchestration step**: a step run the orchestration controller created, judged by its
  approved OrchestrationRun (its Orchestration in the view, content bound).

Parents carry a uid and resourceVersion, as the webhook's watch-fed view holds them (a
parent's coverage is remembered per version). Every admission must be allowed (the script
stops otherwise): a fast denial is no figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from approvalgate.approvals import content, parents, records  # noqa: E402
from approvalgate.approvals.bundle import Bundle, parse_bundle_text  # noqa: E402
from approvalgate.approvals.decide import decide  # noqa: E402
from approvalgate.approvals.digest import spec_digest  # noqa: E402
from approvalgate.approvals.kubeyaml import load_manifests  # noqa: E402
from approvalgate.approvals.policy import BundleSettings, compile_bundle, dump_bundle  # noqa: E402
from approvalgate.approvals.view import USE_FINALIZER, StaticView  # noqa: E402
from tests.support.corpus import signer  # noqa: E402

BASE = REPO / "tests" / "corpus" / "decide" / "_base"
ENV = "prod"
NS = "agents"
RUNNER = "system:serviceaccount:agents:agents-schedule-runner"
CONTROLLER = "system:serviceaccount:agents:agents-controller"
WAYS = ("records", "records + content", "schedule run", "orchestration step")
QUICK = {"runs": 5, "rounds": 2}


def log(message: str) -> None:
    print(f"[parents_admission] {message}", file=sys.stderr, flush=True)


def bundle_of(referenced_content: str) -> Bundle:
    policy = (BASE / "policies.yaml").read_text() + (
        f"  parents:\n    creators: [{RUNNER!r}, {CONTROLLER!r}]\n    maxRuns: 0\n"
    )
    docs = [
        d.obj
        for text in (policy, (BASE / "approvers.yaml").read_text())
        for d in load_manifests(text, "bench")
        if d.obj is not None
    ]
    settings = BundleSettings(environment=ENV, referenced_content=referenced_content)
    compiled, problems = compile_bundle(docs, settings)
    assert compiled is not None, problems
    return parse_bundle_text(dump_bundle(compiled))


def _meta(kind: str, name: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "metadata": {"name": name, "namespace": NS},
    }


CONTENT = [
    {
        **_meta("ImplementationSpec", "task-a"),
        "spec": {"text": "Summarise the week's changes. " * 40},
    },
    {**_meta("ImplementationSpec", "plan-task"), "spec": {"text": "Plan the release. " * 40}},
    {
        **_meta("Agent", "codex-agent"),
        "spec": {"providerRef": {"name": "codex"}, "config": {"model": "gpt"}},
    },
    {
        **_meta("AgentProvider", "codex"),
        "spec": {"binary": "/usr/local/bin/codex", "args": ["exec", "--json"]},
    },
]


def run_spec(number: int) -> dict[str, Any]:
    return {
        "agentRef": {"name": "codex-agent"},
        "implementationSpecRef": {"name": "task-a"},
        "runtime": {"type": "job"},
        "parameters": {"ticket": f"OPS-{number}", "repo": "proompteng/lab"},
    }


def sign(
    subject: str, digest: str, who: str, refs: Mapping[str, str], now: datetime
) -> dict[str, Any]:
    claim = records.Claim(
        subject=subject,
        digest=digest,
        decision="approve",
        approver=who,
        reason="",
        issued_at=now - timedelta(minutes=5),
        expires_at=now + timedelta(hours=12),
        nonce=f"{who}-{subject}",
        environment=ENV,
        references=dict(refs),
    )
    return records.sign(claim, signer(who))


def review(obj: Mapping[str, Any], username: str, uid: str) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "uid": uid,
        "kind": {"group": "agents.proompteng.ai", "version": "v1alpha1", "kind": "AgentRun"},
        "resource": {
            "group": "agents.proompteng.ai",
            "version": "v1alpha1",
            "resource": "agentruns",
        },
        "name": meta.get("name", ""),
        "namespace": NS,
        "operation": "CREATE",
        "userInfo": {"username": username, "groups": ["system:authenticated"]},
        "object": obj,
    }


@dataclass
class Way:
    name: str
    bundle: Bundle
    view: StaticView
    reviews: list[dict[str, Any]]
    cpu_s: list[float] = field(default_factory=list)


def build(runs: int, now: datetime) -> list[Way]:
    plain, binding = bundle_of("off"), bundle_of("bind")
    view0 = StaticView.build(objects=CONTENT)
    refs = content.binding(content.refs(run_spec(0)), NS, view0)
    by_records: list[dict[str, Any]] = []
    with_content: list[dict[str, Any]] = []
    for number in range(runs):
        spec = run_spec(number)
        name = f"weekly-{number}"
        subject = records.subject_name(NS, name)
        for bound, out in ((False, by_records), (True, with_content)):
            envelopes = [
                sign(subject, spec_digest(spec), who, refs if bound else {}, now)
                for who in ("alice", "bob")
            ]
            obj = {
                "apiVersion": "agents.proompteng.ai/v1alpha1",
                "kind": "AgentRun",
                "metadata": {
                    "name": name,
                    "namespace": NS,
                    "uid": f"uid-{bound}-{number}",
                    "finalizers": [USE_FINALIZER],
                    "annotations": {records.ANNOTATION: records.dump_annotation(envelopes)},
                },
                "spec": spec,
            }
            out.append(review(obj, "dana", f"r-{bound}-{number}"))
    # the Schedule, approved with its run template
    target = {
        "kind": "AgentRun",
        "metadata": {"name": "weekly-template", "namespace": NS},
        "spec": run_spec(0),
    }
    schedule: dict[str, Any] = {
        "apiVersion": "schedules.proompteng.ai/v1alpha1",
        "kind": "Schedule",
        "metadata": {
            "name": "weekly",
            "namespace": NS,
            "uid": "u-weekly",
            "resourceVersion": "7",
            "annotations": {
                parents.TEMPLATE_ANNOTATION: json.dumps(parents.schedule_template(target["spec"]))
            },
        },
        "spec": {"cron": "0 9 * * 1", "targetRef": {"kind": "AgentRun", "name": "weekly-template"}},
    }
    covered = parents.coverage(schedule, None)
    assert isinstance(covered, parents.Coverage)
    schedule["metadata"]["annotations"][records.ANNOTATION] = records.dump_annotation(
        [sign(covered.subject, covered.digest, w, refs, now) for w in ("alice", "bob")]
    )
    manifest = json.dumps(parents.schedule_run_manifest(schedule, target))
    fired = [
        review(
            json.loads(manifest.replace(parents.DELIVERY_PLACEHOLDER, f"d-{n}")), RUNNER, f"s-{n}"
        )
        for n in range(runs)
    ]
    # the OrchestrationRun and its Orchestration
    orchestration = {
        "apiVersion": "orchestration.proompteng.ai/v1alpha1",
        "kind": "Orchestration",
        "metadata": {
            "name": "release",
            "namespace": NS,
            "uid": "u-release",
            "resourceVersion": "8",
        },
        "spec": {
            "steps": [
                {
                    "name": "plan",
                    "kind": "AgentRun",
                    "agentRef": {"name": "codex-agent"},
                    "implementationSpecRef": {"name": "plan-task"},
                }
            ]
        },
    }
    orun: dict[str, Any] = {
        "apiVersion": "orchestration.proompteng.ai/v1alpha1",
        "kind": "OrchestrationRun",
        "metadata": {
            "name": "release-1",
            "namespace": NS,
            "uid": "u-r1",
            "resourceVersion": "9",
            "annotations": {},
        },
        "spec": {"orchestrationRef": {"name": "release"}, "parameters": {"env": "prod"}},
    }
    view1 = StaticView.build(objects=[*CONTENT, orchestration])
    o_cov = parents.coverage(orun, view1)
    assert isinstance(o_cov, parents.Coverage)
    o_refs = content.binding(o_cov.references, NS, view1)
    orun["metadata"]["annotations"][records.ANNOTATION] = records.dump_annotation(
        [sign(o_cov.subject, o_cov.digest, w, o_refs, now) for w in ("alice", "bob")]
    )
    step_spec = parents.step_run_spec(orchestration["spec"], orun["spec"], "plan")
    steps = [
        review(
            {
                "apiVersion": "agents.proompteng.ai/v1alpha1",
                "kind": "AgentRun",
                "metadata": parents.step_run_metadata("release-1", "plan", NS),
                "spec": step_spec,
            },
            CONTROLLER,
            f"o-{n}",
        )
        for n in range(runs)
    ]
    full = StaticView.build(objects=[*CONTENT, schedule, orchestration, orun])
    return [
        Way(WAYS[0], plain, full, by_records),
        Way(WAYS[1], binding, full, with_content),
        Way(WAYS[2], binding, full, fired),
        Way(WAYS[3], binding, full, steps),
    ]


def measure(ways: Sequence[Way], rounds: int, now: datetime, clock: Callable[[], float]) -> None:
    """Review i of every way, interleaved (the order rotates); one warm-up round first."""
    count = len(ways[0].reviews)
    for round_number in range(rounds + 1):
        for index in range(count):
            shift = (round_number + index) % len(ways)
            for position in range(len(ways)):
                way = ways[(position + shift) % len(ways)]
                started = clock()
                decision = decide(way.reviews[index], way.bundle, now, way.view)
                spent = clock() - started
                if not decision.allowed:
                    raise SystemExit(f"{way.name}: denied ({decision.reason}): {decision.message}")
                if round_number:
                    way.cpu_s.append(spent)


def summary(ways: Sequence[Way]) -> dict[str, Any]:
    base = ways[0].cpu_s
    out: dict[str, Any] = {}
    for way in ways:
        us = sorted(1e6 * s for s in way.cpu_s)
        out[way.name] = {
            "admissions": len(us),
            "p50_us": statistics.median(us),
            "p90_us": us[int(0.90 * (len(us) - 1))],
            "mean_us": statistics.fmean(us),
            "ratio_p50": statistics.median(way.cpu_s) / statistics.median(base),
            "ratio_mean": statistics.fmean(way.cpu_s) / statistics.fmean(base),
        }
    return out


def markdown(result: Mapping[str, Any]) -> str:
    setup = result["setup"]
    lines = [
        "## Admission of runs the platform creates, and content binding "
        "(bench/parents_admission.py)",
        "",
        f"{setup['runs']} CREATE reviews per way judged by `decide()` in process "
        f"(`StaticView`), {setup['rounds']} rounds after a warm-up, ways interleaved review "
        "by review. CPU per admission (`time.process_time()`); ratios to **records** (a "
        "person's run with two approvals, cluster view required, content not bound) of the "
        "same run. **records + content**: the records bind the run's ImplementationSpec, "
        "Agent and the Agent's AgentProvider (checked against the view). **schedule run**: "
        "created by the schedule runner, "
        "judged by its approved Schedule (template compared, coverage digest, two approvals "
        "binding content). **orchestration step**: created by the orchestration controller, "
        "judged by its approved OrchestrationRun (its Orchestration from the view).",
        "",
        "| way | admissions | p50 µs | p90 µs | mean µs | p50 vs records | mean vs records |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in result["ways"].items():
        lines.append(
            f"| {name} | {row['admissions']} | {row['p50_us']:.0f} | {row['p90_us']:.0f} | "
            f"{row['mean_us']:.0f} | {row['ratio_p50']:.2f}x | {row['ratio_mean']:.2f}x |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="reviews per way and round")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (after warm-up)")
    parser.add_argument("--quick", action="store_true", help="smoke: 5 reviews, 2 rounds")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.rounds = QUICK["runs"], QUICK["rounds"]
    now = records.now_utc()
    log(f"signing {args.runs} runs per way")
    ways = build(args.runs, now)
    log(f"measuring {args.rounds} rounds x {len(ways)} ways")
    started = time.perf_counter()
    measure(ways, args.rounds, now, time.process_time)
    result = {
        "setup": {
            "runs": args.runs,
            "rounds": args.rounds,
            "wall_s": time.perf_counter() - started,
        },
        "ways": summary(ways),
    }
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
