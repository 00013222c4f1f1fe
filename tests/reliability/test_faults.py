"""Faults under load against the real ``approvalgate webhook serve`` process (TLS, 127.0.0.1).

- one of two workers SIGKILLed mid-load: what the client loses, and the supervisor's restart;
- slow clients (slowloris): dribbled bodies are cut by the read timeout and do not slow
  normal clients; a flood of clients dribbling *headers*, more of them than the server has
  file descriptors, reconnecting as soon as they are closed, neither starves normal clients
  nor outgrows the chart's memory limit (webhook/listener.py: a bounded connection table
  that evicts the connection waiting longest for its request);
- 3 MiB UPDATE bodies (object + oldObject) under load, with small requests alongside.

Bundle swaps, certificate rotation and SIGTERM drain under load are in
tests/integration/test_webhook_reload.py and test_webhook_process.py (docs/reliability.md).
Every figure a test measures is printed (``pytest -s``) for docs/reliability.md; none is
asserted. The assertions are counts, orderings and exact answers, which hold on a busy machine;
time appears only as generous upper bounds on hangs (the chart's 5 s webhook timeout for a
normal request, HANG_SECONDS for a slow client to be cut).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from approvalgate.webhook.app import DEFAULT_MAX_BODY_BYTES
from approvalgate.webhook.listener import connection_limit
from tests.integration.harness import TestPKI, agentrun_request, review_body, wait_until
from tests.reliability.loadgen import (
    LOOPBACK,
    Connection,
    Kind,
    Load,
    Sampler,
    Stats,
    http_request,
    open_fds,
    rss_kib,
    serve,
    traffic_mix,
)
from tests.support.paths import ROOT


def report(name: str, figures: dict[str, Any]) -> None:
    print(f"\n{name}: {json.dumps(figures, default=str)}")


# --- one of two workers killed ---------------------------------------------------------------

KILL_AT = 4.5  # s into the load: both workers are then older than the supervisor's 5 s window
LOAD_SECONDS = 9.0
KILL_RATE = 200.0


def test_one_of_two_workers_killed_mid_load(
    tmp_path: Path, pki: TestPKI, bundle_file: Path
) -> None:
    """SIGKILL one worker of ``--workers 2`` under 200 req/s (a third on new connections).

    Lost: only requests that had reached the killed worker, i.e. were sent before the client
    could observe the kill (its first connection error); none after; at most the number of
    requests outstanding at the kill. The supervisor restarts the worker (it lived > 5 s) and
    the new one serves. Every answer is exactly right.
    """
    kinds = traffic_mix(datetime.now(UTC))
    with serve(tmp_path, pki, bundle_file, "--workers", "2", "--grace-period", "3") as server:
        wait_until(lambda: len(server.serving_pids()) == 2, 20, "two workers")
        victim, survivor = server.serving_pids()
        load = Load(server.port, server.context, kinds, connections=16, fresh_every=3)
        killed: dict[str, float] = {}

        async def kill(elapsed: float) -> None:
            if elapsed >= KILL_AT and not killed:
                os.kill(victim, signal.SIGKILL)
                killed["at"] = time.monotonic()

        stats = asyncio.run(load.open_loop(KILL_RATE, LOAD_SECONDS, on_tick=kill))
        wait_until(lambda: len(server.serving_pids()) == 3, 20, "the restarted worker")
        replacement = server.serving_pids()[2]
        # the restarted worker takes its share: 64 requests whatever the speed, a third of them
        # on new connections, which the kernel spreads over both workers
        after = asyncio.run(load.closed_loop(1.0, min_requests=64))
        logs = server.logs()
        assert server.terminate() == 0

    at = killed["at"]
    errors = stats.transport_errors
    noticed = min((end for _, end, _, _ in errors), default=at)
    in_flight = stats.in_flight_at(at)
    exited = [line for line in logs if line.get("msg") == "worker exited"]
    restarted = [line for line in logs if line.get("msg") == "worker started"][2:]
    served_by_new = sum(
        1 for line in logs if line.get("msg") == "admission" and line.get("pid") == replacement
    )
    report(
        "worker-kill",
        {
            "sent": stats.sent + after.sent,
            "answered": stats.answered + after.answered,
            "lost": len(errors),
            "in_flight_at_kill": in_flight,
            "in_flight_when_noticed": stats.in_flight_at(noticed - 1e-9),
            "lost_sent_ms_relative_to_kill": sorted(round((s - at) * 1000, 1) for s, *_ in errors),
            "client_noticed_ms_after_kill": round((noticed - at) * 1000, 1),
            "error_types": dict(Counter(e[3].split(":")[0] for e in errors)),
            "unexpected": stats.wrong + after.wrong,
            "restart_after_s": _gap(exited, restarted),
            "served_by_replacement": served_by_new,
            "latency_ms": stats.summary()["latency_ms"],
        },
    )
    assert stats.wrong == after.wrong == stats.allowed_wrongly == 0, stats.unexpected
    assert after.transport_errors == [], after.transport_errors[:5]
    assert stats.sent == int(KILL_RATE * LOAD_SECONDS)
    assert stats.answered + len(errors) == stats.sent
    # only requests the killed worker held: sent before the client could see the kill (the
    # kernel closes a killed process's sockets a few ms after SIGKILL) ...
    assert all(sent <= noticed for sent, *_ in errors), errors
    # ... so at most what the client had outstanding (16 connections)
    assert len(errors) <= stats.in_flight_at(noticed - 1e-9) <= 16
    assert [(e["worker_pid"], e["code"]) for e in exited] == [(victim, -signal.SIGKILL)]
    assert len(restarted) == 1 and restarted[0]["worker_pid"] == replacement
    assert survivor != replacement and served_by_new > 0


def _gap(exited: list[dict[str, Any]], started: list[dict[str, Any]]) -> float | None:
    if not exited or not started:
        return None

    def parse(line: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(line["ts"].replace("Z", "+00:00"))

    return round((parse(started[0]) - parse(exited[0])).total_seconds(), 2)


# --- slow clients ---------------------------------------------------------------------------

SLOW_READ_TIMEOUT = 2.0
WEBHOOK_TIMEOUT = 5.0  # the chart's ValidatingWebhookConfiguration timeoutSeconds
HANG_SECONDS = 60.0  # an upper bound on hangs only: a slow client cut later than this is stuck


async def _dribble(
    port: int, context: Any, kind: str, body: bytes, state: Counter[str], stop: asyncio.Event
) -> None:
    """One slow client: a request head (kind "head": never finished) or a body (kind "body")
    sent one byte per second until the server answers or closes, or ``stop``.

    Outcomes counted in ``state``: ``<kind>-open``, then one of ``-answered`` (and ``-408``),
    ``-closed-by-server`` or ``-still-open`` (``stop`` came first)."""
    try:
        reader, writer = await asyncio.open_connection(
            LOOPBACK, port, ssl=context, server_hostname=LOOPBACK
        )
    except OSError:
        state[f"{kind}-connect-failed"] += 1
        return
    state[f"{kind}-open"] += 1
    if kind == "head":
        writer.write(b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    else:
        head = f"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode())
    try:
        while not stop.is_set():
            writer.write(b"a" if kind == "head" else body[:1])
            try:
                async with asyncio.timeout(1.0):
                    data = await reader.read(64)
            except TimeoutError:
                continue
            state[f"{kind}-answered" if data else f"{kind}-closed-by-server"] += 1
            if data.startswith(b"HTTP/1.1 408"):
                state[f"{kind}-408"] += 1
            return
        state[f"{kind}-still-open"] += 1
    except OSError:
        state[f"{kind}-closed-by-server"] += 1
    finally:
        writer.transport.abort()


async def _connected(state: Counter[str], count: int, timeout: float = HANG_SECONDS) -> None:
    """Wait until ``count`` slow clients have connected (or failed to); ``timeout`` only
    bounds a hang (the assertions then say which did not connect)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(v for k, v in state.items() if k.endswith(("-open", "-connect-failed"))) >= count:
            return
        await asyncio.sleep(0.1)


async def _normal_requests(port: int, context: Any, seconds: float, timeout: float) -> Stats:
    """A normal client: one new connection and one denied request, then 0.2 s of sleep,
    for ``seconds`` (at least one request); a request not answered within ``timeout`` is a
    transport error. How many fit in ``seconds`` depends on the machine: nothing asserts it."""
    stats = Stats(started=time.monotonic())
    body = http_request(review_body(agentrun_request()))
    while time.monotonic() - stats.started < seconds:
        sent = time.monotonic()
        stats.sent += 1
        try:
            async with asyncio.timeout(timeout):
                conn = await Connection.open(port, context)
                status, answer = await conn.exchange(body)
                conn.close()
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            stats.transport_errors.append((sent, time.monotonic(), "normal", repr(exc)))
        else:
            stats.answered += 1
            stats.latencies.append(time.monotonic() - sent)
            if status != 200 or b'"allowed":false' not in answer:
                stats.note(f"HTTP {status}: {answer[:200]!r}")
        await asyncio.sleep(0.2)
    stats.elapsed = time.monotonic() - stats.started
    return stats


def test_slow_clients_do_not_slow_normal_ones_and_slow_bodies_get_408(
    tmp_path: Path, pki: TestPKI, bundle_file: Path
) -> None:
    """200 clients dribbling headers and 200 dribbling bodies (1 byte/s) while a normal client
    sends a request every 0.2 s on a new connection for 4 s: every normal request is answered,
    exactly, within the chart's webhook timeout, while all 200 slow heads are still connected;
    every slow body is answered 408 (the read timeout cuts it: nothing else would answer it).

    Not asserted (it depends on the machine): how many normal requests fit in 4 s and how fast
    they are answered; both are printed."""
    heads, bodies = 200, 200
    body = review_body(agentrun_request())
    # the table holds them all: what is tested here is the timeouts (the table's limit is
    # tested by the flood below)
    flags = ("--read-timeout", str(SLOW_READ_TIMEOUT), "--max-connections", "1000")
    with serve(tmp_path, pki, bundle_file, *flags) as server:
        pid = server.proc.pid
        baseline = rss_kib(pid)

        async def scenario() -> tuple[Counter[str], Stats, int, int]:
            state: Counter[str] = Counter()
            stop_heads, stop_bodies = asyncio.Event(), asyncio.Event()
            slow_heads = [
                asyncio.create_task(
                    _dribble(server.port, server.context, "head", body, state, stop_heads)
                )
                for _ in range(heads)
            ]
            slow_bodies = [
                asyncio.create_task(
                    _dribble(server.port, server.context, "body", body, state, stop_bodies)
                )
                for _ in range(bodies)
            ]
            await _connected(state, heads + bodies)
            normal = await _normal_requests(server.port, server.context, 4.0, WEBHOOK_TIMEOUT)
            fds, rss = open_fds(pid), rss_kib(pid)
            stop_heads.set()
            # each slow body ends when the server answers it; HANG_SECONDS only bounds a hang
            await asyncio.wait(slow_bodies, timeout=HANG_SECONDS)
            stop_bodies.set()
            await asyncio.gather(*slow_heads, *slow_bodies)
            return state, normal, fds, rss

        state, normal, fds, rss = asyncio.run(scenario())
        assert server.ready()
    report(
        "slowloris-400",
        {
            "slow_clients": heads + bodies,
            "outcomes": dict(state),
            "normal_requests": normal.sent,
            "normal_answered": normal.answered,
            "normal_latency_ms": normal.summary()["latency_ms"],
            "server_fds_at_end": fds,
            "server_rss_kib": {"before": baseline, "with_slow_clients": rss},
        },
    )
    assert normal.wrong == 0
    assert normal.transport_errors == [], normal.transport_errors[:3]  # none over 5 s
    assert normal.sent >= 1 and normal.answered == normal.sent
    # answered while every slow head still held its connection (they never finish a request)
    assert state["head-open"] == state["head-still-open"] == heads, dict(state)
    assert state["body-open"] == state["body-408"] == bodies, dict(state)  # cut, each one


# aiohttp has no timeout of its own on a request head; webhook/listener.py bounds the connections
FD_LIMIT = 1024  # the Linux default RLIMIT_NOFILE; set soft and hard so it cannot be raised
CHART_MEMORY_LIMIT_KIB = 256 * 1024  # charts/approvalgate values.yaml resources.limits.memory
FLOOD_CLIENTS = 1100  # more than FD_LIMIT
FLOOD_SECONDS = 6.0


FLOOD_SOURCE = "127.0.0.2"  # the flood's own loopback address; the normal client is 127.0.0.1


@pytest.mark.parametrize(
    ("flags", "source", "case"),
    [
        pytest.param((), FLOOD_SOURCE, "default-limit", id="default-limit"),
        pytest.param(("--max-connections", "100000"), FLOOD_SOURCE, "fd-limit", id="fd-limit"),
        pytest.param((), LOOPBACK, "same-address", id="same-address"),
    ],
)
def test_a_slowloris_flood_neither_starves_normal_clients_nor_outgrows_the_memory_limit(
    tmp_path: Path,
    pki: TestPKI,
    bundle_file: Path,
    flags: tuple[str, ...],
    source: str,
    case: str,
) -> None:
    """1,100 clients (tests/reliability/slowloris.py, a process of its own) dribbling request
    heads — more than the server's 1,024 descriptors, which it cannot raise here — each
    reconnecting as soon as it is closed, while a normal client sends a request every 0.2 s
    on a new connection.

    default-limit: every normal request is answered, exactly, within the chart's webhook
    timeout (5 s), the flood is evicted, the server never runs out of descriptors and stays
    under the chart's memory limit. How many normal requests fit in the 6 s and their latency
    depend on the machine: printed, not asserted.
    fd-limit: a --max-connections above what the descriptors allow is lowered to fit (and
    logged), with the same outcome for the normal client. same-address: the flood shares
    the normal client's address, so nothing tells them apart before a request; it becomes a
    race for TLS handshakes (figures in docs/reliability.md): descriptors and memory stay
    bounded, no answer is wrong, and the normal client is still answered in part."""
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(pki.authority.cert_pem)
    with serve(tmp_path, pki, bundle_file, *flags, nofile=FD_LIMIT) as server:
        pid = server.proc.pid
        baseline = rss_kib(pid)
        with (
            Sampler(pid, interval=0.25) as sampler,
            _flood(server.port, ca_file, source) as flood,
        ):
            normal = asyncio.run(
                _normal_requests(server.port, server.context, FLOOD_SECONDS, WEBHOOK_TIMEOUT)
            )
            fds = open_fds(pid)
        state = flood.counters
        assert server.ready()
        metrics = server.metrics()
        logs = server.logs()
    peak = max(r for _, r, _ in sampler.samples)
    dropped = {
        reason: metrics.get(f'approvalgate_connections_dropped_total{{reason="{reason}"}}', 0)
        for reason in ("evicted", "evicted-in-handshake", "refused", "handshake-failed")
    }
    lowered = [line for line in logs if line.get("msg", "").startswith("connection limit lower")]
    report(
        f"slowloris-flood-{case}",
        {
            "flood_clients": FLOOD_CLIENTS,
            "flood_source": source,
            "server_nofile": FD_LIMIT,
            "flags": list(flags),
            "flood": dict(state),
            "dropped": dropped,
            "normal_requests": normal.sent,
            "normal_answered": normal.answered,
            "normal_errors": len(normal.transport_errors),
            "normal_latency_ms": normal.summary()["latency_ms"],
            "server_fds_at_end": fds,
            "server_rss_kib": {"before": baseline, "peak": peak},
            "connection_limit": lowered[0].get("max_connections") if lowered else None,
        },
    )
    assert normal.wrong == 0
    assert state["connections"] > FLOOD_CLIENTS and state["closed-by-server"] > 0
    assert fds < FD_LIMIT
    assert not [line for line in logs if line.get("msg", "").startswith("accept failed")]
    assert peak < CHART_MEMORY_LIMIT_KIB or case == "fd-limit"  # 960 connections: see docs
    if case == "same-address":
        assert normal.answered > 0
        return
    # every normal request sent during the flood was answered within 5 s, none wrongly
    assert normal.transport_errors == [], normal.transport_errors[:3]
    assert normal.sent >= 1 and normal.answered == normal.sent
    assert dropped["evicted"] + dropped["refused"] > 0  # the flood did fill the table
    if case == "fd-limit":
        assert lowered and lowered[0]["max_connections"] == connection_limit(100000, FD_LIMIT)
    else:
        assert not lowered


@dataclass
class _Flood:
    proc: subprocess.Popen[str]
    counters: Counter[str] = field(default_factory=Counter)


@contextlib.contextmanager
def _flood(port: int, ca_file: Path, source: str) -> Iterator[_Flood]:
    """tests/reliability/slowloris.py in its own process, FLOOD_CLIENTS clients from
    ``source``, until the block ends (it stops by itself after 120 s)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.reliability.slowloris",
            str(port),
            str(ca_file),
            str(FLOOD_CLIENTS),
            "120",
            source,
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    flood = _Flood(proc)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        ready = proc.stdout.readline().strip()
        assert ready == "ready", f"the flood did not connect: {ready!r}"
        yield flood
        proc.stdin.close()  # the flood's signal to stop
        flood.counters.update(json.loads(proc.stdout.readline()))
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()


BIG_SECONDS = 4  # how long the 3 MiB UPDATEs run beside the normal mix
BIG_AT_LEAST = 3  # of each big kind, however long that takes


def _big_update(size: int, *, change_spec: bool, now: datetime) -> tuple[Kind, int]:
    """An UPDATE review of about ``size`` bytes: object and oldObject carry the same large
    annotation. Spec unchanged: allowed (unchanged-spec); spec changed without approvals:
    denied (missing-approvals)."""
    del now  # the verdicts do not depend on the time
    request = agentrun_request(name=f"big-{change_spec}", operation="UPDATE")
    old = json.loads(json.dumps(request["object"]))
    if change_spec:
        request["object"]["spec"]["parameters"] = {"task": "changed after approval"}
    request["oldObject"] = old
    bare = len(review_body(request))
    filler = "x" * max(0, (size - bare - 200) // 2)
    for obj in (request["object"], request["oldObject"]):
        obj["metadata"].setdefault("annotations", {})["example.com/filler"] = filler
    body = review_body(request)
    name = "big-update-changed" if change_spec else "big-update-same"
    reason = "missing-approvals" if change_spec else "unchanged-spec"
    return Kind(name, body, 200, not change_spec, reason, request["uid"]), len(body)


def test_3mib_update_bodies_under_load(tmp_path: Path, pki: TestPKI, bundle_file: Path) -> None:
    """Four clients sending UPDATEs of 3 MiB minus 1 KiB (spec unchanged: allowed; spec changed:
    denied) and one byte over 3 MiB (413), back to back (at least 3 of each), while the normal
    mix runs at 100 req/s for 4 s: every answer exact, every small request answered, small
    requests overtake big ones (sent after a big one, answered before it: the big bodies do
    not block the worker), RSS under the chart's memory limit.

    Not asserted (it depends on the machine): latencies and how many big bodies fit in 4 s;
    both are printed."""
    now = datetime.now(UTC)
    limit = DEFAULT_MAX_BODY_BYTES
    same, same_size = _big_update(limit - 1024, change_spec=False, now=now)
    changed, _ = _big_update(limit - 1024, change_spec=True, now=now)
    over_body = same.body + b" " * (limit + 1 - len(same.body))
    over = Kind("big-over-limit", over_body, 413)
    assert limit - 2048 < same_size <= limit and len(over.body) == limit + 1
    small = traffic_mix(now)
    with serve(tmp_path, pki, bundle_file) as server:
        pid = server.proc.pid
        big = Load(server.port, server.context, [same, changed, over], connections=4, fresh_every=0)
        mixed = Load(server.port, server.context, small, connections=8)

        async def scenario() -> tuple[Stats, Stats]:
            big_task = asyncio.create_task(
                big.closed_loop(BIG_SECONDS, min_requests=BIG_AT_LEAST * len(big.kinds))
            )
            small_stats = await mixed.open_loop(100, BIG_SECONDS)
            return await big_task, small_stats

        with Sampler(pid, interval=0.25) as sampler:
            big_stats, small_stats = asyncio.run(scenario())
        rss_end = rss_kib(pid)
        assert server.terminate() == 0
    peak = max(r for _, r, _ in sampler.samples)
    overtaken = sum(
        1
        for small_sent, small_done in small_stats.spans
        if any(
            big_sent < small_sent and small_done < big_done
            for big_sent, big_done in big_stats.spans
        )
    )
    report(
        "3mib-updates",
        {
            "big_sent": big_stats.sent,
            "big_by_kind": dict(big_stats.by_kind),
            "big_latency_ms": big_stats.summary()["latency_ms"],
            "megabytes_received": round(
                sum(
                    len(k.body) * n
                    for k, n in (
                        (same, big_stats.by_kind[same.name]),
                        (changed, big_stats.by_kind[changed.name]),
                        (over, big_stats.by_kind[over.name]),
                    )
                )
                / 2**20
            ),
            "small_sent": small_stats.sent,
            "small_latency_ms": small_stats.summary()["latency_ms"],
            "small_overtaking_a_big_one": overtaken,
            "unexpected": big_stats.wrong + small_stats.wrong,
            "transport_errors": len(big_stats.transport_errors) + len(small_stats.transport_errors),
            "rss_kib": {"first": sampler.samples[0][1], "peak": peak, "end": rss_end},
        },
    )
    for stats in (big_stats, small_stats):
        assert stats.wrong == stats.allowed_wrongly == 0, stats.unexpected[:3]
        assert stats.transport_errors == [], stats.transport_errors[:3]
    assert min(big_stats.by_kind[k.name] for k in (same, changed, over)) >= BIG_AT_LEAST
    assert small_stats.answered == small_stats.sent == 100 * BIG_SECONDS
    assert overtaken > 0  # a small request is not queued behind the big bodies
    assert peak < CHART_MEMORY_LIMIT_KIB


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
