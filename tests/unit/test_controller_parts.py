"""The controller's machinery: the work queue, the notifier (against a real local HTTP
server on 127.0.0.1), the Lease lock's time format and the timing rules, the CLI's errors."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from approvalgate.approvals.errors import UsageError
from approvalgate.cli import main
from approvalgate.controller.notify import Notifier, redacted
from approvalgate.controller.workqueue import WorkQueue
from approvalgate.kube.leader import _micro_time, _record_time, check_timing
from tests.support import bundle_signing

# --- work queue ---------------------------------------------------------------------


def test_a_key_waiting_is_queued_once_and_keys_come_first_in_first_out() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "c", "b"):
        queue.add(key)
    assert len(queue) == 3
    assert [queue.get(0), queue.get(0), queue.get(0), queue.get(0)] == ["a", "b", "c", None]


def test_a_key_added_while_processed_comes_back_once_done_never_to_two_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add("a")
    queue.add("a")
    assert queue.get(0) is None  # not handed out again while being processed
    queue.done("a")
    assert queue.get(0) == "a"
    queue.done("a")
    assert queue.get(0) is None


def test_delayed_keys_come_when_due_and_retries_back_off_per_key() -> None:
    queue: WorkQueue[str] = WorkQueue(retry_initial=0.05, retry_maximum=0.2)
    queue.add_after("later", 0.1)
    assert queue.get(0) is None
    assert queue.get(5) == "later"
    queue.done("later")
    assert [queue.retry("k") for _ in range(4)] == [0.05, 0.1, 0.2, 0.2]
    queue.forget("k")
    assert queue.retry("k") == 0.05


def test_a_resync_never_makes_a_change_wait_behind_it() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("r1", "r2", "r3"):
        queue.add(key, background=True)
    queue.add("fresh")
    queue.add("r2")  # a change to a key the resync queued: it moves to the front lane
    queue.add("r3", background=True)  # queued once
    assert len(queue) == 4
    assert [queue.get(0) for _ in range(5)] == ["fresh", "r2", "r1", "r3", None]


def test_shutdown_wakes_a_waiting_worker() -> None:
    queue: WorkQueue[str] = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    time.sleep(0.05)
    queue.shutdown()
    worker.join(5)
    assert got == [None]


# --- notifier -----------------------------------------------------------------------


class Receiver:
    """An aiohttp server on 127.0.0.1 in its own thread; answers from ``codes`` in turn."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.bodies: list[dict[str, str]] = []
        self.gate = threading.Event()  # code 0: answer only once the test opens it
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.read()))
        code = self.codes.pop(0) if self.codes else 200
        if code == 0:
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 30)
            code = 200
        return web.Response(status=code, text="ok")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/hook/secret-token", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = self.runner.addresses[0][1]
        self._ready.set()
        self.loop.run_forever()

    def __enter__(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook/secret-token"


@pytest.fixture
def results() -> list[tuple[str, str]]:
    return []


def wait_for(results: list[tuple[str, str]], count: int) -> None:
    deadline = time.monotonic() + 30
    while len(results) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_notification_is_posted_as_slack_json_and_retried_after_a_server_error(
    results: list[tuple[str, str]],
) -> None:
    with Receiver([503, 500]) as receiver:
        notifier = Notifier(
            receiver.url, backoff=0.01, attempts=3, on_result=lambda k, r: results.append((k, r))
        )
        notifier.start()
        assert notifier.send("needs-you", {"text": "Approval needed"})
        wait_for(results, 1)
        notifier.stop()
    assert results == [("needs-you", "delivered")]
    assert receiver.bodies == [{"text": "Approval needed"}] * 3


def test_a_refusal_is_not_retried_and_attempts_are_bounded(
    results: list[tuple[str, str]],
) -> None:
    with Receiver([400, 500, 500, 500]) as receiver:
        notifier = Notifier(
            receiver.url, backoff=0.01, attempts=3, on_result=lambda k, r: results.append((k, r))
        )
        notifier.start()
        notifier.send("decided", {"text": "one"})
        notifier.send("decided", {"text": "two"})
        wait_for(results, 2)
        notifier.stop()
    assert results == [("decided", "refused"), ("decided", "failed")]
    assert len(receiver.bodies) == 4


def test_sending_never_waits_for_a_slow_receiver(results: list[tuple[str, str]]) -> None:
    with Receiver([0]) as receiver:
        notifier = Notifier(
            receiver.url,
            timeout=60,
            backoff=0.01,
            attempts=2,
            on_result=lambda k, r: results.append((k, r)),
        )
        notifier.start()
        sent = [notifier.send("decided", {"text": str(i)}) for i in range(20)]
        # every send returned while the receiver still holds the first POST unanswered
        assert sent == [True] * 20 and results == []
        receiver.gate.set()
        wait_for(results, 20)
        notifier.stop()
    assert results == [("decided", "delivered")] * 20
    assert [b["text"] for b in receiver.bodies] == [str(i) for i in range(20)]


def test_the_url_is_a_secret_and_only_its_host_is_shown() -> None:
    assert redacted("https://hooks.slack.com/services/T0/B0/xyz") == "https://hooks.slack.com/…"


# --- leader election -------------------------------------------------------------------


def test_lease_times_round_trip_between_the_elector_and_the_lease() -> None:
    now = datetime.fromtimestamp(time.time())  # what the client's elector writes: local, naive
    text = _micro_time(str(now))
    assert text is not None and text.endswith("Z")
    assert _record_time(text) == str(now)
    assert _micro_time(str(now.replace(microsecond=0))) == (
        now.replace(microsecond=0).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    )
    assert _record_time("") is None and _record_time("not a time") is None


def test_the_timing_rules_of_the_client_elector_are_usage_errors() -> None:
    check_timing(15, 10, 2)
    check_timing(4, 3, 1)
    with pytest.raises(UsageError, match="--renew-deadline"):
        check_timing(15, 2, 2)
    with pytest.raises(UsageError, match="--lease-duration"):
        check_timing(10, 10, 2)
    with pytest.raises(UsageError, match="--retry-period"):
        check_timing(15, 10, 0.5)


# --- the command line ---------------------------------------------------------------------


def test_the_command_refuses_bad_timing_and_a_notify_url_that_is_not_http(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_text("{}")
    unpinned = ["controller", "--bundle", str(bundle), "--lease-namespace", "x"]
    assert main(unpinned) == 2
    err = capsys.readouterr().err
    assert "no bundle-signing key is pinned" in err and "--allow-unsigned-bundle" in err
    base = [*unpinned, *bundle_signing.cli_args()]
    assert main([*base, "--lease-duration", "5", "--renew-deadline", "6"]) == 2
    assert "--lease-duration (5) must be more than --renew-deadline (6)" in capsys.readouterr().err
    assert main([*base, "--notify-url", "ftp://example.invalid/x"]) == 2
    err = capsys.readouterr().err
    assert "must start with https:// or http://" in err and "Traceback" not in err
    missing = tmp_path / "nope"
    assert main([*base, "--notify-url-file", str(missing)]) == 1
    assert f"{missing}: cannot read the notification URL" in capsys.readouterr().err


def test_the_flags_the_chart_passes_parse() -> None:
    """charts/approvalgate/templates/_helpers.tpl (approvalgate.controllerArgs) and an
    extraArgs example of tests/chart/test_render_controller.py."""
    from approvalgate.cli import build_parser

    args = build_parser().parse_args(
        [
            "controller",
            "--bundle",
            "/etc/approvalgate/bundle/bundle.json",
            "--namespace",
            "agents",
            "--namespace",
            "agents-prod",
            "--lease-namespace",
            "approvalgate-system",
            "--lease-name",
            "gate-leader",
            "--identity",
            "controller-7d9f-abcde",
            "--metrics-port",
            "9090",
            "--health-port",
            "8081",
            "--signal-deliveries",
            "--notify-url",
            "https://hooks.example.invalid/x",
            "--resync-seconds=300",
            "--bundle-key",
            "/etc/approvalgate/bundle-signing/key-0.pub",
            "--bundle-threshold",
            "1",
            "--bundle-min-revision",
            "3",
        ]
    )
    assert args.bundle_key == ["/etc/approvalgate/bundle-signing/key-0.pub"]
    assert (args.bundle_threshold, args.bundle_min_revision) == (1, 3)
    assert args.namespace == ["agents", "agents-prod"]
    assert (args.metrics_port, args.health_port, args.resync) == (9090, 8081, 300.0)
    assert args.signal_deliveries and args.gc
