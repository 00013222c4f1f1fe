#!/usr/bin/env python3
"""How long the console takes to render its pages with 1,000 pending requests (issue 19).

    python bench/console_render.py [--requests 1000] [--repeats 30] [--quick] [--json]

Issue 19's bar: no page takes longer than 200 ms to render with 1,000 pending requests.
Measured in process, wall time of ``console.pages.render_queue`` and ``render_request``
(the whole page, templates included) over an in-memory state: ``--requests`` pending
ApprovalRequests in 10 namespaces, each with two signed ApprovalDecisions, plus one
approved earlier version of the request shown (so its page computes the diff); the request
page's live reads (ImplementationSpec, Agent, Events) answered by a fake client from fixed
objects, so the figure is the console's own work, not the API server's. Pages:

- **queue, all**: every pending request (1,000 rows);
- **queue, needs me**: the rows the approver may still approve;
- **queue, all, with --bundle**: every row with its matching policies (a Policies column);
- **queue fragment**: what console.js fetches on each change (the table only);
- **request**: one request's page (decisions, timeline, diff);
- **request, with --bundle**: the same with the matching policies.

Median and max wall time over ``--repeats`` renders after one warm-up, and the median CPU
time (less sensitive to other processes on a busy machine); markdown on stdout (JSON with
``--json``). Not a test: tests/bench/test_console_bench.py runs ``--quick`` so it cannot rot.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from approvalgate.approvals.bundle import parse_bundle_text  # noqa: E402
from approvalgate.console import pages  # noqa: E402
from tests.support import console_fakes as fakes  # noqa: E402
from tests.support.corpus import BASE, compile_case_bundle  # noqa: E402

BAR_MS = 200.0
NAMESPACES = 10
APPROVERS = ("alice", "bob", "carol")


def build_state(count: int) -> tuple[fakes.FakeState, str]:
    """``count`` pending requests (two decisions each) and an earlier approved version of
    the one measured; returns the state and the measured request's name."""
    now = fakes.now()
    requests: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    for i in range(count):
        namespace = "agents" if i % NAMESPACES == 0 else f"team-{i % NAMESPACES}"
        request = fakes.make_request(
            f"run-{i:05d}-abcde",
            namespace=namespace,
            requester="alice" if i % 7 == 0 else f"user-{i % 13}",
            reason=f"request number {i}",
            created=now - timedelta(minutes=i),
            approved=("bob",),
            eligible=("alice", "carol") if i % 3 else ("carol",),
            spec=fakes.run_spec(task=f"task {i}"),
        )
        requests.append(request)
        for order, approver in enumerate(("bob", "carol"), 1):
            decisions.append(
                fakes.make_decision(request, approver, reason=f"ok {i}", order=2 * i + order)
            )
    measured = "run-00000-abcde"
    earlier = fakes.make_request(
        "run-00000-zzzzz",
        phase="Submitted",
        created=now - timedelta(days=2),
        spec=fakes.run_spec(task="task 0", image="1.4.1"),
    )
    requests.append(earlier)
    return fakes.FakeState(requests, decisions), measured


def events() -> list[dict[str, Any]]:
    return [
        {
            "eventTime": f"2026-12-06T18:{m:02d}:00.000000Z",
            "action": "Pending",
            "reason": "WaitingForApprovals",
            "note": f"(new) -> Pending: event {m}",
            "type": "Normal",
        }
        for m in range(5)
    ]


def measure(render: Callable[[], str], repeats: int) -> dict[str, float]:
    render()  # warm-up: templates compiled, caches filled
    times: list[float] = []
    cpu: list[float] = []
    size = 0
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        size = len(render())
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return {
        "median_ms": round(statistics.median(times), 2),
        "max_ms": round(max(times), 2),
        "cpu_median_ms": round(statistics.median(cpu), 2),
        "bytes": size,
    }


def run(count: int, repeats: int) -> dict[str, Any]:
    fakes.install_fake_actions()
    state, name = build_state(count)
    client: Any = fakes.FakeClient(events=events())
    bundle = parse_bundle_text(compile_case_bundle(BASE))
    me = fakes.Me(user="alice", approver="alice")
    me_bundle = fakes.Me(user="alice", approver="alice", bundle=bundle)
    now = fakes.now()

    def queue(who: Any, fragment: bool = False, **filters: str) -> Callable[[], str]:
        return lambda: pages.render_queue(state, filters, who, "csrf", fragment, now=now)

    def request(who: Any) -> Callable[[], str]:
        return lambda: pages.render_request(
            state, client, "agents", name, who, "csrf", False, now=now
        )

    cases: dict[str, Callable[[], str]] = {
        "queue, all": queue(me, view="all"),
        "queue, needs me": queue(me, view="needs-me"),
        "queue, all, with --bundle": queue(me_bundle, view="all"),
        "queue fragment": queue(me, True, view="all"),
        "request": request(me),
        "request, with --bundle": request(me_bundle),
    }
    results = {label: measure(render, repeats) for label, render in cases.items()}
    return {
        "setup": {
            "pending": count,
            "decisions": len(state.decisions()),
            "repeats": repeats,
            "bar_ms": BAR_MS,
        },
        "pages": results,
    }


def markdown(figures: dict[str, Any]) -> str:
    setup = figures["setup"]
    lines = [
        f"Console render times: {setup['pending']} pending requests, {setup['decisions']} "
        f"decisions, {setup['repeats']} renders each (bar: {setup['bar_ms']:.0f} ms per page)",
        "",
        "| page | median ms | max ms | CPU median ms | HTML bytes | under the bar |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, row in figures["pages"].items():
        ok = "yes" if row["max_ms"] <= setup["bar_ms"] else "no"
        lines.append(
            f"| {label} | {row['median_ms']:.1f} | {row['max_ms']:.1f} | "
            f"{row['cpu_median_ms']:.1f} | {row['bytes']:,} | {ok} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="pending requests")
    parser.add_argument("--repeats", type=int, default=30, help="renders per page")
    parser.add_argument("--quick", action="store_true", help="smoke: 50 requests, 2 renders")
    parser.add_argument("--json", action="store_true", help="JSON instead of markdown")
    args = parser.parse_args(argv)
    count, repeats = (50, 2) if args.quick else (args.requests, args.repeats)
    figures = run(count, repeats)
    print(json.dumps(figures, indent=2) if args.json else markdown(figures), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
