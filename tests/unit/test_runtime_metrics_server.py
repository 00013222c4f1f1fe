"""runtime.metrics_server over real HTTP: one process's registry, a port already taken, and
prometheus_client's multiprocess mode summed over real worker processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from approvalgate.runtime.metrics_server import (
    MULTIPROC_ENV,
    MetricsServer,
    generate_latest,
    mark_process_dead,
    multiprocess_registry,
)
from approvalgate.runtime.ports import ListenError
from tests.support.paths import ROOT


def scrape(port: int) -> tuple[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.headers["Content-Type"], reply.read().decode()


def test_metrics_are_served_on_their_own_port_until_stopped() -> None:
    registry = CollectorRegistry()
    jobs = Counter("approvalgate_test_jobs_total", "Jobs", ["outcome"], registry=registry)
    jobs.labels("done").inc(3)

    async def scenario() -> int:
        server = MetricsServer(registry)
        await server.start("127.0.0.1", 0)
        try:
            content_type, body = await asyncio.to_thread(scrape, server.port)
        finally:
            await server.stop()
        assert content_type.startswith("text/plain; version=")
        assert 'approvalgate_test_jobs_total{outcome="done"} 3.0' in body.splitlines()
        return server.port

    port = asyncio.run(scenario())
    with pytest.raises(urllib.error.URLError, match="refused"):  # nothing listens any more
        scrape(port)


def test_a_taken_port_says_which_and_what_to_do() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def scenario() -> None:
            server = MetricsServer(CollectorRegistry())
            try:
                await server.start("127.0.0.1", port)
            finally:
                await server.stop()

        with pytest.raises(ListenError) as caught:
            asyncio.run(scenario())
    head, hint = caught.value.render().splitlines()
    assert head.startswith(f"cannot listen on 127.0.0.1:{port}: ")
    assert "address already in use" in head.lower()
    assert hint == "  hint: pick another --port/--metrics-port or stop what uses it"


WORKER = """
import sys
from prometheus_client import Counter, Gauge
handled = Counter("approvalgate_test_handled_total", "Handled")
busy = Gauge("approvalgate_test_busy", "Busy", multiprocess_mode="livesum")
handled.inc(int(sys.argv[1]))
busy.set(1)
print("ready", flush=True)
sys.stdin.read()  # until the test closes stdin
"""


def test_a_supervisor_sums_its_workers_and_forgets_the_live_gauges_of_dead_ones(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "multiproc"
    folder.mkdir()
    env = {**os.environ, MULTIPROC_ENV: str(folder)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(count)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for count in (2, 5)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline() == "ready\n"
        registry = multiprocess_registry(folder)
        text = generate_latest(registry).decode()
        assert "approvalgate_test_handled_total 7.0" in text.splitlines()
        assert "approvalgate_test_busy 2.0" in text.splitlines()
        first = workers[0]
        assert first.stdin is not None
        first.stdin.close()
        assert first.wait(30) == 0
        mark_process_dead(first.pid, folder)
        text = generate_latest(registry).decode()
        assert "approvalgate_test_handled_total 7.0" in text.splitlines()  # counts stay
        assert "approvalgate_test_busy 1.0" in text.splitlines()  # its live gauge is gone
    finally:
        for worker in workers:
            if worker.stdin is not None and not worker.stdin.closed:
                worker.stdin.close()
            worker.wait(30)
            if worker.stdout is not None:
                worker.stdout.close()
