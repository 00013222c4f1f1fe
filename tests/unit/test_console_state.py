"""The console state's health and wake-ups without an API server (a port nobody listens on):
the unreachable banner, and an event stream woken from another thread. The real API server
(forbidden namespaces, a stop and a restart) is tests/e2e/test_console_state.py."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from approvalgate.console.state import ConsoleState
from approvalgate.kube.backoff import Backoff
from approvalgate.kube.client import Client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    with Client.connect(path) as connected:
        yield connected


def test_an_api_server_nobody_answers_is_the_banner_with_the_time_first_seen(
    client: Client,
) -> None:
    moment = datetime(2026, 12, 6, 19, 4, 5, tzinfo=UTC)
    state = ConsoleState(
        client,
        ["agents", "ops"],
        poll_interval=0.05,
        backoff=lambda: Backoff(initial=0.05, maximum=0.2),
        clock=lambda: moment,
    )
    assert state.unreachable_since() is None
    assert state.banner == ""
    with state:
        deadline = time.monotonic() + 60
        while state.unreachable_since() is None:
            assert time.monotonic() < deadline, "the refused connection was never seen"
            time.sleep(0.05)
        assert not state.synced
    assert state.unreachable_since() == "19:04:05"
    assert state.banner == (
        "the API server at https://127.0.0.1:9 cannot be reached since 19:04:05; retrying"
    )
    assert re.search(
        r"cannot reach the API server at https://127.0.0.1:9 while", state.unreachable_error
    )
    assert state.problems() == []  # a lost connection blames no namespace
    assert state.version >= 1
    assert state.requests() == []
    assert state.decisions() == []


def test_wait_changed_wakes_on_a_change_made_on_another_thread(client: Client) -> None:
    state = ConsoleState(client, [])
    assert state.all_namespaces
    assert state.watches("anything")

    async def scenario() -> tuple[int, int]:
        before = state.version
        assert await state.wait_changed(before - 1, timeout=0) == before  # already differs
        assert await state.wait_changed(before, timeout=0.01) == before  # timed out
        timer = threading.Timer(0.05, state._changed)
        timer.start()
        woken = await state.wait_changed(before, timeout=60)
        timer.join()
        return before, woken

    before, woken = asyncio.run(scenario())
    assert woken == before + 1
    assert state._waiters == []
