"""runtime.drain in real processes: SIGTERM/SIGINT stop a service in order (no new work, the
work in flight finished within the grace period, then release), a failed start releases what
it took, and a worker whose supervisor is gone stops by itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from approvalgate.runtime.drain import InFlight
from tests.support.paths import ROOT

# A service with one unit of work in flight from its start until the test says so (it
# deletes the file ``hold``): what it prints on stdout is the order of events.
SERVICE = """
import asyncio, logging, sys
from pathlib import Path
from approvalgate.runtime import drain, logs

hold, grace = Path(sys.argv[1]), float(sys.argv[2])
fail, orphan_check = sys.argv[3] == "fail", sys.argv[4] == "orphan"
log = logging.getLogger("approvalgate.test.service")
logs.configure(("approvalgate.test",), "info")

def say(event):
    print(event, flush=True)

class Service:
    def __init__(self):
        self.in_flight = drain.InFlight()
        self.work = None

    async def start(self):
        say("listening")
        if fail:
            raise RuntimeError("cannot start")
        self.in_flight.begin()
        self.work = asyncio.create_task(self.job())
        say("started")

    async def job(self):
        try:
            while hold.exists():
                await asyncio.sleep(0.01)
            say("work done")
        finally:
            self.in_flight.end()

    async def stop(self):
        say("no new work")
        say(f"drained={await self.in_flight.drain(grace)}")
        if self.work is not None:
            self.work.cancel()
        say("released")

async def main():
    stop = drain.stop_on_signals()
    service = Service()
    return await drain.serve(service, stop, log=log, grace_period=grace, orphan_check=orphan_check)

sys.exit(asyncio.run(main()))
"""

PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, *sys.argv[1:]], stdout=open(sys.argv[-1] + ".out", "w"))
print(child.pid, flush=True)
time.sleep(3600)
"""


def start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    hold = tmp_path / "hold"
    hold.touch()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(hold), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, hold


def read_until(proc: subprocess.Popen[str], line: str) -> list[str]:
    assert proc.stdout is not None
    seen = []
    while (got := proc.stdout.readline()) != "":
        seen.append(got.strip())
        if seen[-1] == line:
            return seen
    raise AssertionError(f"{line!r} never came: {seen}")


def finish(proc: subprocess.Popen[str]) -> tuple[int, list[str], list[dict[str, object]]]:
    out, err = proc.communicate(timeout=60)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return proc.returncode, out.splitlines(), lines


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_drains_the_work_in_flight_then_releases(
    tmp_path: Path, signum: signal.Signals
) -> None:
    proc, hold = start(tmp_path, "30", "ok", "-")
    assert read_until(proc, "started") == ["listening", "started"]
    proc.send_signal(signum)
    assert read_until(proc, "no new work") == ["no new work"]
    hold.unlink()  # the work in flight may now end
    code, events, log = finish(proc)
    assert code == 0
    assert events == ["work done", "drained=True", "released"]
    assert [(line["msg"], line["grace_period"]) for line in log] == [("draining", 30.0)]


def test_work_past_the_grace_period_is_left_and_the_process_still_exits_0(
    tmp_path: Path,
) -> None:
    proc, _ = start(tmp_path, "0.2", "ok", "-")
    read_until(proc, "started")
    proc.send_signal(signal.SIGTERM)
    code, events, _ = finish(proc)
    assert (code, events) == (0, ["no new work", "drained=False", "released"])


def test_a_failed_start_releases_what_it_took_and_fails(tmp_path: Path) -> None:
    proc, _ = start(tmp_path, "30", "fail", "-")
    code, events, _ = finish(proc)
    assert code == 1  # the RuntimeError's traceback, exit 1
    assert events == ["listening", "no new work", "drained=True", "released"]


def test_a_worker_stops_when_its_supervisor_is_gone(tmp_path: Path) -> None:
    (tmp_path / "service.py").write_text(SERVICE)
    (tmp_path / "parent.py").write_text(PARENT)
    hold = tmp_path / "hold"
    hold.touch()
    out = tmp_path / "events"
    events = tmp_path / "events.out"  # the worker's stdout (PARENT)
    args = [str(tmp_path / "service.py"), str(hold), "30", "ok", "orphan", str(out)]
    parent = subprocess.Popen(
        [sys.executable, str(tmp_path / "parent.py"), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    try:
        wait_until(lambda: events.exists() and "started" in events.read_text())
        parent.kill()  # SIGKILL: nobody forwards anything to the worker
        parent.wait()
        wait_until(lambda: "no new work" in events.read_text())
        hold.unlink()
        wait_until(lambda: "released" in events.read_text())
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        if "released" not in events.read_text():
            os.kill(worker, signal.SIGKILL)
    assert events.read_text().splitlines() == [
        "listening",
        "started",
        "no new work",
        "work done",
        "drained=True",
        "released",
    ]


def wait_until(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_in_flight_drain_waits_for_every_unit_of_work() -> None:
    async def scenario() -> None:
        work = InFlight()
        assert await work.drain(0)  # nothing in flight: at once
        work.begin()
        work.begin()
        waiting = asyncio.create_task(work.drain(30))
        await asyncio.sleep(0)
        work.end()
        await asyncio.sleep(0)
        assert not waiting.done()  # one is still in flight
        work.end()
        assert await waiting
        assert work.draining
        work.begin()
        assert not await work.drain(0.01)

    asyncio.run(scenario())
