"""Soak: mixed traffic at half of the capacity measured at the start, against the real server.

``approvalgate webhook serve`` runs as a subprocess over TLS on 127.0.0.1 with the decision
corpus's base bundle. First a closed loop of ``--connections`` clients measures capacity for
``--capacity-seconds``; then an open loop sends the same mix (approved, unapproved, forged,
copied, UPDATEs that keep or change the spec, DELETE, trusted submitter, v1beta1, five kinds
of malformed body) at ``--fraction`` of it for the soak duration. Every answer is checked
exactly; VmRSS and CPU of the server are sampled every 0.5 s.

The 60-second form runs in the test suite (tests/reliability/test_soak.py); the long form by
hand::

    .venv/bin/python -m tests.reliability.soak --minutes 10 --out /tmp/soak.json

It prints one JSON summary (and writes it to ``--out``) and exits 1 if anything unexpected
happened: a wrong answer, a transport error, a crash, or RSS growth beyond the bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.integration.harness import TestPKI
from tests.reliability.loadgen import Load, Sampler, cpu_seconds, serve, traffic_mix
from tests.support.corpus import BASE, compile_case_bundle

# RSS bound: the mean of the last third of the samples (after warm-up) may exceed the mean of
# the first third by at most this much (KiB) or this fraction, whichever is larger.
RSS_GROWTH_KIB = 4 * 1024
RSS_GROWTH_FRACTION = 0.05


def rss_bound_kib(first_third_kib: float) -> float:
    return max(RSS_GROWTH_KIB, RSS_GROWTH_FRACTION * first_third_kib)


def run_soak(
    work: Path,
    seconds: float,
    *,
    capacity_seconds: float = 5.0,
    fraction: float = 0.5,
    connections: int = 16,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Measure capacity, then soak at ``fraction`` of it for ``seconds``; return the figures."""
    started_at, load_before = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), _load_average()
    pki = TestPKI.create(work / "tls")
    bundle = work / "bundle.json"
    bundle.write_text(compile_case_bundle(BASE))
    kinds = traffic_mix(datetime.now(UTC))
    with serve(work, pki, bundle) as server:
        pid = server.proc.pid
        load = Load(server.port, server.context, kinds, connections=connections)
        with Sampler(pid) as sampler:
            cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
            capacity = asyncio.run(load.closed_loop(capacity_seconds))
            server_busy = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
            rate = capacity.rate * fraction
            progress(
                f"capacity {capacity.rate:.0f} req/s (server CPU {server_busy:.0%}); "
                f"soaking at {rate:.0f} req/s for {seconds:.0f} s"
            )
            soak_started = time.monotonic()
            cpu_before = cpu_seconds(pid)
            soak = asyncio.run(load.open_loop(rate, seconds))
            soak_cpu = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - soak_started)
        alive = server.proc.poll() is None
        samples = server.metrics()
        exit_code = server.terminate()
    warm_up = max(5.0, 0.1 * seconds)
    first, middle, last = sampler.rss_thirds(after=soak_started + warm_up)
    reviews = sum(
        v for k, v in samples.items() if k.startswith("approvalgate_admission_requests_total{")
    )
    malformed = sum(
        v for k, v in samples.items() if k.startswith("approvalgate_malformed_requests_total{")
    )
    counted = int(reviews + malformed)
    answered = capacity.answered + soak.answered
    return {
        "started": started_at,
        "load_average_before": load_before,
        "load_average_after": _load_average(),
        "cpus": os.cpu_count(),
        "capacity": {**capacity.summary(), "server_cpu": round(server_busy, 2)},
        "soak": {
            **soak.summary(),
            "target_rate_per_s": round(rate, 1),
            "scheduled": int(rate * seconds),
            "server_cpu": round(soak_cpu, 2),
        },
        "rss_kib": {
            "first_third": round(first),
            "middle_third": round(middle),
            "last_third": round(last),
            "growth": round(last - first),
            "bound": round(rss_bound_kib(first)),
            "max": max(r for _, r, _ in sampler.samples),
            "samples": len(sampler.samples),
            "warm_up_s": warm_up,
        },
        "server": {
            "alive_at_end": alive,
            "exit_code": exit_code,
            "requests_counted": counted,
            "requests_answered_by_client": answered,
        },
        "unexpected_examples": (capacity.unexpected + soak.unexpected)[:10],
        "transport_error_examples": [
            e[3] for e in (capacity.transport_errors + soak.transport_errors)[:10]
        ],
    }


def problems(result: dict[str, Any]) -> list[str]:
    """Everything in ``result`` that breaks the soak's promises."""
    found = []
    for phase in ("capacity", "soak"):
        figures = result[phase]
        if figures["unexpected"] or figures["transport_errors"]:
            found.append(
                f"{phase}: {figures['unexpected']} unexpected answers, "
                f"{figures['transport_errors']} transport errors"
            )
        if figures["wrongly_admitted"]:
            found.append(f"{phase}: {figures['wrongly_admitted']} wrongly admitted")
        if figures["answered"] != figures["sent"]:
            found.append(f"{phase}: {figures['sent'] - figures['answered']} requests lost")
    rss = result["rss_kib"]
    if rss["growth"] > rss["bound"]:
        found.append(f"RSS grew {rss['growth']} KiB (bound {rss['bound']} KiB)")
    server = result["server"]
    if not server["alive_at_end"] or server["exit_code"] != 0:
        found.append(f"server died or exited {server['exit_code']}")
    if server["requests_counted"] != server["requests_answered_by_client"]:
        found.append(
            f"server counted {server['requests_counted']} requests, "
            f"client got {server['requests_answered_by_client']} answers"
        )
    return found


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.soak", description=__doc__)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="soak duration in minutes (default 10)")
    length.add_argument("--seconds", type=float, help="soak duration in seconds")
    parser.add_argument("--capacity-seconds", type=float, default=5.0)
    parser.add_argument("--fraction", type=float, default=0.5, help="of measured capacity")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds else 60 * (args.minutes or 10)
    with tempfile.TemporaryDirectory(prefix="approvalgate-soak-") as tmp:
        result = run_soak(
            Path(tmp),
            seconds,
            capacity_seconds=args.capacity_seconds,
            fraction=args.fraction,
            connections=args.connections,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    result["problems"] = problems(result)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
