"""The console's watch-fed state (approvalgate/console/state.py) against a real API server:
what the page shows comes from here.

- requests and decisions created in the cluster appear, and each change bumps the version
  an event stream waits on;
- a namespace the user may not read is a problem naming it (and stops being one once an
  admin grants the read);
- the API server stopped is the unreachable banner with the time it was first seen, and
  the state recovers when it is back.

The user is alice with a Role per namespace, nothing cluster-wide (RBAC is real). This module
has its own control plane: it stops and restarts the API server.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from approvalgate.commands import _queue
from approvalgate.console.state import ConsoleState
from approvalgate.kube.backoff import Backoff
from approvalgate.kube.client import Client
from tests.support.paths import ROOT

from .conftest import own_control_plane
from .controlplane import ControlPlane

pytestmark = pytest.mark.e2e

GATES = "gates.proompteng.ai"
READ = ["get", "list", "watch"]
WAIT = 90.0  # seconds: a bound for the watches and the API server's restart, not a speed


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    yield from own_control_plane()


def grant_read(plane: ControlPlane, user: str, namespace: str) -> None:
    plane.grant(
        "console-reader",
        subjects=[user],
        namespace=namespace,
        rules=[
            {
                "apiGroups": [GATES],
                "resources": ["approvalrequests", "approvaldecisions"],
                "verbs": READ,
            }
        ],
    )


def request_object(namespace: str, name: str) -> dict[str, Any]:
    run = {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "AgentRun",
        "metadata": {"name": name},
        "spec": {"agentRef": {"name": "codex-agent"}, "parameters": {"task": "console"}},
    }
    return _queue.request_object(
        run,
        name=name,
        namespace=namespace,
        environment="prod",
        requester="requester",
        digest="0" * 64,
        reason="the console's state test",
    )


def decision_object(namespace: str, request: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GATES}/v1alpha1",
        "kind": "ApprovalDecision",
        "metadata": {"name": f"{request}-alice", "namespace": namespace},
        "spec": {
            "requestName": request,
            "decision": "approve",
            "approver": "alice",
            "record": {
                "payload": "e30=",
                "payloadType": "application/vnd.in-toto+json",
                "signatures": [{"keyid": "k", "sig": "c2ln"}],
            },
        },
    }


def create(plane: ControlPlane, obj: dict[str, Any]) -> None:
    plane.kubectl("admin", "create", "-f", "-", input=json.dumps(obj))


def eventually(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)


def console_state(plane: ControlPlane, user: str, namespaces: list[str]) -> ConsoleState:
    client = Client.connect(plane.kubeconfig(user))
    return ConsoleState(
        client,
        namespaces,
        watch_timeout=10,
        poll_interval=0.1,
        backoff=lambda: Backoff(initial=0.2, maximum=1.0),
    )


def test_requests_and_decisions_appear_and_each_change_bumps_the_version(
    plane: ControlPlane,
) -> None:
    namespace = plane.create_namespace("console")
    grant_read(plane, "alice", namespace)
    create(plane, request_object(namespace, "before-start"))
    with console_state(plane, "alice", [namespace]) as state:
        assert state.wait_synced(WAIT)
        assert [r["metadata"]["name"] for r in state.requests()] == ["before-start"]
        assert state.problems() == []
        assert state.unreachable_since() is None
        version = state.version
        assert version >= 1

        # an event stream waits on the version: the next change wakes it
        woken: list[int] = []

        def stream() -> None:
            woken.append(asyncio.run(state.wait_changed(version, timeout=WAIT)))

        waiter = threading.Thread(target=stream)
        waiter.start()
        create(plane, request_object(namespace, "nightly-report"))
        waiter.join(WAIT)
        assert woken and woken[0] > version

        eventually(
            "the new request in the state",
            lambda: state.request(namespace, "nightly-report") is not None,
        )
        names = [r["metadata"]["name"] for r in state.requests()]
        assert names == ["before-start", "nightly-report"]

        version = state.version
        create(plane, decision_object(namespace, "nightly-report"))
        eventually(
            "the decision in the state",
            lambda: bool(state.decisions_for(namespace, "nightly-report")),
        )
        assert state.version > version
        (decision,) = state.decisions_for(namespace, "nightly-report")
        assert decision["spec"]["approver"] == "alice"
        assert [d["metadata"]["name"] for d in state.decisions()] == ["nightly-report-alice"]

        version = state.version
        plane.kubectl("admin", "delete", "approvalrequest", "before-start", "-n", namespace)
        eventually(
            "the deleted request gone", lambda: state.request(namespace, "before-start") is None
        )
        assert state.version > version


def test_a_namespace_the_user_cannot_read_is_a_problem_naming_it_until_granted(
    plane: ControlPlane,
) -> None:
    readable = plane.create_namespace("console")
    hidden = plane.create_namespace("console-hidden")
    grant_read(plane, "alice", readable)
    create(plane, request_object(readable, "seen"))
    create(plane, request_object(hidden, "unseen"))
    with console_state(plane, "alice", [readable, hidden]) as state:
        eventually("a problem for the hidden namespace", lambda: len(state.problems()) == 2)
        for what in ("approval requests", "approval decisions"):
            said = f"no credentials to read {what} in namespace {hidden}: forbidden"
            assert any(p.startswith(said) for p in state.problems()), state.problems()
        assert all('User "alice" cannot list resource' in p for p in state.problems())
        assert {p.namespace for p in state.problem_details()} == {hidden}
        assert state.unreachable_since() is None
        eventually(
            "the readable namespace listed", lambda: state.request(readable, "seen") is not None
        )
        assert [r["metadata"]["name"] for r in state.requests()] == ["seen"]

        version = state.version
        grant_read(plane, "alice", hidden)
        eventually("the problem gone once granted", lambda: state.problems() == [])
        assert state.version > version
        eventually("the hidden request shown", lambda: state.request(hidden, "unseen") is not None)


def test_the_api_server_stopped_is_the_banner_with_its_time_and_the_state_recovers(
    plane: ControlPlane,
) -> None:
    namespace = plane.create_namespace("console")
    grant_read(plane, "alice", namespace)
    create(plane, request_object(namespace, "waiting"))
    with console_state(plane, "alice", [namespace]) as state:
        assert state.wait_synced(WAIT)
        assert state.banner == ""
        version = state.version
        plane.stop_apiserver()
        try:
            eventually(
                "the API server seen unreachable", lambda: state.unreachable_since() is not None
            )
            since = state.unreachable_since()
            assert since is not None and re.fullmatch(r"\d\d:\d\d:\d\d", since)
            assert state.banner == (
                f"the API server at {plane.server} cannot be reached since {since}; retrying"
            )
            assert "cannot reach the API server" in state.unreachable_error
            assert state.version > version
            assert state.problems() == []  # no namespace is to blame
            # what was read before stays on the page
            assert state.request(namespace, "waiting") is not None
            time.sleep(1)
            assert state.unreachable_since() == since  # the time it was first seen, kept
            version = state.version
        finally:
            plane.start_apiserver()
        eventually("the state recovered", lambda: state.unreachable_since() is None)
        assert state.banner == ""
        assert state.version > version
        create(plane, request_object(namespace, "after-restart"))
        eventually(
            "a request made after the restart",
            lambda: state.request(namespace, "after-restart") is not None,
        )
        # a restarted API server may answer 403 for a moment while its RBAC caches fill: the
        # console shows that as the namespace's problem until its next list succeeds
        eventually("no problem left after the restart", lambda: state.problems() == [])


def test_the_command_prints_the_link_serves_the_stream_and_ctrl_c_exits_0(
    plane: ControlPlane,
) -> None:
    namespace = plane.create_namespace("console")
    grant_read(plane, "alice", namespace)
    command = [
        sys.executable,
        "-m",
        "approvalgate",
        "console",
        "--kubeconfig",
        str(plane.kubeconfig("alice")),
        "-n",
        namespace,
        "--no-open",
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.fullmatch(r"console: http://127\.0\.0\.1:(\d+)/\?token=([\w-]{43})\n", line)
        assert found, line
        port, token = int(found[1]), found[2]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
        connection.request("GET", "/healthz")
        health = connection.getresponse()
        assert (health.status, health.read()) == (200, b"ok\n")
        connection.request("GET", "/events")
        refused = connection.getresponse()
        refused.read()
        assert refused.status == 401
        connection.request("GET", f"/?token={token}")
        signed_in = connection.getresponse()
        signed_in.read()
        assert signed_in.status == 303
        assert signed_in.getheader("Location") == "/"
        cookie = signed_in.getheader("Set-Cookie", "").split(";")[0]
        assert cookie.startswith(f"approvalgate-console-{port}=")
        connection.request("GET", "/events", headers={"Cookie": cookie})
        stream = connection.getresponse()
        assert stream.status == 200
        assert stream.readline() == b"event: changed\n"
        assert stream.readline().startswith(b'data: {"version": ')
        connection.close()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert f"console: showing namespace {namespace} as user alice" in err
    assert err.endswith("console: stopped\n")
