"""`approvalgate controller` against a real kube-apiserver: the queue end to end, exactly
once under faults.

The module starts its own control plane (one test restarts the API server) with the
AgentRun and SignalDelivery CRDs of the agents platform and the queue's CRDs as the chart
ships them (charts/approvalgate/files/crds/). The controller
runs as real processes (`python -m approvalgate controller`), with a short Lease so that a
takeover takes seconds. The bundle is the decision corpus's `_base` compiled for real (two
approvals out of platform-leads, carol and requester; veto); the decisions carry records
signed with the corpus's test keys. The webhook is not in front of the API server here
(its view is another module's subject): these tests are about the controller's writes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from approvalgate.approvals import records, view
from approvalgate.approvals.policy import BundleSettings
from approvalgate.kube.client import Client
from approvalgate.kube.resources import (
    AGENT_RUNS,
    APPROVAL_DECISIONS,
    APPROVAL_REQUESTS,
    APPROVAL_USES,
    EVENTS,
    LEASES,
    SIGNAL_DELIVERIES,
)
from tests.support import bundle_signing
from tests.support.corpus import BASE, compile_case_bundle, make_record
from tests.support.paths import ROOT, UPSTREAM_AGENTS, crd_files
from tests.support.ports import free_port as _free_port
from tests.support.tools import unavailable

from .controlplane import ControlPlane, ControlPlaneError, locate_binaries
from .faultproxy import DropCreateAnswers

CHART_CRDS = ROOT / "charts" / "approvalgate" / "files" / "crds"

pytestmark = pytest.mark.e2e

ENV = "prod"
NS = "agents"  # the corpus policy's namespace
LEASE = "approvalgate-controller"
RUN_SPEC: dict[str, Any] = {
    "agentRef": {"name": "codex-agent"},
    "implementationSpecRef": {"name": "codex-impl-sample"},
    "runtime": {"type": "workflow", "config": {"ttlSecondsAfterFinished": 600}},
    "workload": {"image": "ghcr.io/proompteng/codex-runner:1.4.2"},
    "parameters": {"repository": "proompteng/lab", "task": "Update onboarding flow"},
}


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    try:
        control_plane = ControlPlane(locate_binaries())
        control_plane.start()
    except ControlPlaneError as error:
        unavailable(f"e2e control plane: {error}")
    try:
        crds = UPSTREAM_AGENTS / "crds"
        assert crd_files(CHART_CRDS), f"the chart's queue CRDs are missing from {CHART_CRDS}"
        control_plane.apply_crds(
            [
                crds / "agents.proompteng.ai_agentruns.yaml",
                crds / "signals.proompteng.ai_signaldeliveries.yaml",
                *crd_files(CHART_CRDS),
            ]
        )
        control_plane.kubectl("admin", "create", "namespace", NS)
        yield control_plane
    finally:
        control_plane.stop()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "bundle.json"
    path.write_text(
        compile_case_bundle(BASE, BundleSettings(environment=ENV, referenced_content="off"))
    )
    bundle_signing.sign_file(path)  # signed by the key the controller pins
    return path


@pytest.fixture
def client(plane: ControlPlane) -> Iterator[Client]:
    with Client.connect(plane.kubeconfig("admin")) as connected:
        yield connected


@dataclass
class Controller:
    """One `approvalgate controller` process."""

    plane: ControlPlane
    bundle: Path
    work: Path
    identity: str
    extra: tuple[str, ...] = ()
    kubeconfig: Path | None = None
    """Another kubeconfig than the admin's (one through a fault proxy)."""
    metrics_port: int = field(default_factory=_free_port)
    health_port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.work / f"{self.identity}.log"

    def start(self) -> Controller:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "approvalgate",
                    "controller",
                    "--bundle",
                    str(self.bundle),
                    *bundle_signing.cli_args(self.work),
                    "--kubeconfig",
                    str(self.kubeconfig or self.plane.kubeconfig("admin")),
                    "--lease-namespace",
                    NS,
                    "--lease-name",
                    LEASE,
                    "--identity",
                    self.identity,
                    "--host",
                    "127.0.0.1",
                    "--metrics-port",
                    str(self.metrics_port),
                    "--health-port",
                    str(self.health_port),
                    "--lease-duration",
                    "4",
                    "--renew-deadline",
                    "3",
                    "--retry-period",
                    "1",
                    "--resync",
                    "2",
                    *self.extra,
                ],
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        eventually(f"{self.identity} is ready", self.ready, timeout=60)
        return self

    def _get(self, port: int, path: str) -> tuple[int, str]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"{self.identity} exited {self.process.returncode}:\n{self.log()}")
        return self._get(self.health_port, "/readyz")[0] == 200

    def metric(self, name: str, labels: str = "") -> float:
        _, text = self._get(self.metrics_port, "/metrics")
        pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+-]+)\n"
        found = re.search(pattern, text)
        return float(found.group(1)) if found else 0.0

    def leading(self) -> bool:
        return self.metric("approvalgate_controller_leader") == 1.0

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@pytest.fixture
def controllers(
    plane: ControlPlane, bundle: Path, tmp_path: Path
) -> Iterator[Callable[..., Controller]]:
    started: list[Controller] = []

    def start(identity: str, *extra: str, kubeconfig: Path | None = None) -> Controller:
        process = Controller(plane, bundle, tmp_path, identity, tuple(extra), kubeconfig).start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process is not None and process.process.poll() is None:
            process.stop(signal.SIGKILL)
        print(f"--- {process.identity} (last lines) ---\n{process.log()}")  # shown on failure


def eventually(what: str, condition: Callable[[], Any], timeout: float = 90) -> Any:
    """Wait for ``condition`` to be truthy (a generous deadline: nothing here measures speed)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.2)


# --- objects ---------------------------------------------------------------------------------


def run_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "AgentRun",
        "metadata": {"name": name, "namespace": NS},
        "spec": RUN_SPEC,
    }


def create_request(
    client: Client, name: str, labels: dict[str, str] | None = None, reason: str = "e2e"
) -> dict[str, Any]:
    from approvalgate.approvals.digest import spec_digest

    body = {
        "apiVersion": view.API_VERSION,
        "kind": "ApprovalRequest",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "requester": "requester",
            "environment": ENV,
            "reason": reason,
            "specDigest": spec_digest(RUN_SPEC),
            "cancelled": False,
            "run": {
                "apiVersion": "agents.proompteng.ai/v1alpha1",
                "kind": "AgentRun",
                "metadata": {"name": name, "labels": labels or {"team": "lab"}},
                "spec": RUN_SPEC,
            },
        },
    }
    created: dict[str, Any] = client.request(
        "creating a request", "POST", APPROVAL_REQUESTS.path(NS), body=body
    )
    return created


def decide(client: Client, name: str, approver: str, kind: str = "approve") -> dict[str, Any]:
    now = records.now_utc()
    envelope = make_record({"key": approver, "decision": kind}, run_manifest(name), BASE, now, ENV)
    body = {
        "apiVersion": view.API_VERSION,
        "kind": "ApprovalDecision",
        "metadata": {"generateName": f"{name}-", "namespace": NS},
        "spec": {"requestName": name, "decision": kind, "approver": approver, "record": envelope},
    }
    created: dict[str, Any] = client.request(
        "creating a decision", "POST", APPROVAL_DECISIONS.path(NS), body=body
    )
    return created


def get(client: Client, resource: Any, name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = client.request(
        "get", "GET", resource.path(NS, name), missing_ok=True
    )
    return found


def phase(client: Client, name: str) -> str:
    request = get(client, APPROVAL_REQUESTS, name) or {}
    return str((request.get("status") or {}).get("phase") or "")


def runs_named(client: Client, name: str) -> list[dict[str, Any]]:
    items = client.request("list", "GET", AGENT_RUNS.path(NS))["items"]
    return [run for run in items if run["metadata"]["name"] == name]


def events_of(client: Client, name: str) -> list[dict[str, Any]]:
    items = client.request("list", "GET", EVENTS.path(NS))["items"]
    return [e for e in items if (e.get("regarding") or {}).get("name") == name]


def approve_twice(client: Client, name: str) -> None:
    decide(client, name, "alice")
    decide(client, name, "bob")


# --- the tests -------------------------------------------------------------------------------


def test_two_approvals_create_the_run_once_and_the_request_tells_the_story(
    client: Client, controllers: Callable[..., Controller], tmp_path: Path
) -> None:
    one = controllers("story-0", "--signal-deliveries")
    eventually("story-0 leads", one.leading)
    assert one._get(one.health_port, "/healthz") == (200, "ok\n")
    assert one._get(one.health_port, "/readyz") == (200, "ok (leader)\n")
    name = "story"
    request = create_request(client, name)
    eventually("Pending", lambda: phase(client, name) == "Pending")
    status = get(client, APPROVAL_REQUESTS, name)["status"]  # type: ignore[index]
    assert status["required"] == 2 and status["approvedBy"] == []
    assert {"alice", "bob", "carol"} <= set(status["eligible"])
    assert "requester" not in status["eligible"]
    eventually("the pending gauge", lambda: one.metric("approvalgate_pending_requests") >= 1)

    decide(client, name, "alice")
    eventually(
        "alice counted",
        lambda: (
            (get(client, APPROVAL_REQUESTS, name) or {}).get("status", {}).get("approvedBy")
            == ["alice"]
        ),
    )
    assert phase(client, name) == "Pending" and runs_named(client, name) == []

    decide(client, name, "bob")
    eventually("Submitted", lambda: phase(client, name) == "Submitted")
    status = get(client, APPROVAL_REQUESTS, name)["status"]  # type: ignore[index]
    [run] = runs_named(client, name)
    meta = run["metadata"]
    assert status["reason"] == "RunCreated"
    assert status["run"] == {"name": name, "uid": meta["uid"]}
    assert status["approvedBy"] == ["alice", "bob"] and status["decisions"] == 2
    assert {"requestedAt", "decidedAt", "submittedAt", "expiresAt"} <= status.keys()
    annotations = meta["annotations"]
    assert annotations[view.REQUEST_UID_ANNOTATION] == request["metadata"]["uid"]
    assert annotations[view.REQUEST_ANNOTATION] == f"{NS}/{name}"
    assert annotations[records.AUTHOR_ANNOTATION] == "requester"
    carried = json.loads(annotations[records.ANNOTATION])
    # every decision's record, each once (their order is creation order to the second)
    assert sorted(r["payload"] for r in carried) == sorted(
        d["spec"]["record"]["payload"]
        for d in client.request("list", "GET", APPROVAL_DECISIONS.path(NS))["items"]
        if d["spec"]["requestName"] == name
    )
    assert meta["finalizers"] == [view.USE_FINALIZER]
    assert meta["labels"] == {"team": "lab"}

    # an Event per transition, regarding the request
    actions = eventually(
        "three events",
        lambda: (
            [e["action"] for e in events_of(client, name)]
            if len(events_of(client, name)) >= 3
            else None
        ),
    )
    assert sorted(actions) == ["Approved", "Pending", "Submitted"]
    # a SignalDelivery per transition
    deliveries = client.request("list", "GET", SIGNAL_DELIVERIES.path(NS))["items"]
    assert sorted(
        d["spec"]["payload"]["phase"]
        for d in deliveries
        if d["spec"]["payload"]["request"]["name"] == name
    ) == ["Approved", "Pending", "Submitted"]
    # metrics
    assert one.metric("approvalgate_approvals_total", 'outcome="approved"') == 1
    assert one.metric("approvalgate_approvals_total", 'outcome="submitted"') == 1
    assert one.metric("approvalgate_approval_wait_seconds_count") == 1
    assert one.metric("approvalgate_controller_runs_created_total") == 1

    # the ledger: the run's use, then on delete the finalizer goes once the use settled
    use = eventually("the use is recorded", lambda: get(client, APPROVAL_USES, meta["uid"]))
    assert use["spec"]["run"] == {
        "name": name,
        "uid": meta["uid"],
        "requestUid": request["metadata"]["uid"],
    }
    assert len(use["spec"]["statements"]) == 2
    client.request("delete", "DELETE", AGENT_RUNS.path(NS, name))
    eventually("the run is gone", lambda: not runs_named(client, name))
    assert one.metric("approvalgate_controller_finalizers_removed_total") == 1
    # and the request stays Submitted: a terminal phase is history
    time.sleep(3)  # a resync or two
    assert phase(client, name) == "Submitted"
    assert one.stop() == 0
    assert '"msg": "lease released"' in one.log() or "released lease" in one.log()


def test_a_veto_rejects_and_a_cancel_cancels_and_neither_creates(
    client: Client, controllers: Callable[..., Controller]
) -> None:
    one = controllers("veto-0")
    eventually("veto-0 leads", one.leading)
    create_request(client, "vetoed")
    create_request(client, "cancelled")
    decide(client, "vetoed", "alice")
    decide(client, "vetoed", "bob", "reject")
    eventually("Rejected", lambda: phase(client, "vetoed") == "Rejected")
    eventually("cancelled is Pending", lambda: phase(client, "cancelled") == "Pending")
    # a status that would not change is not written again: resyncs leave the object alone
    version = get(client, APPROVAL_REQUESTS, "cancelled")["metadata"]["resourceVersion"]  # type: ignore[index]
    looked = one.metric("approvalgate_controller_reconciles_total", 'kind="request"')
    eventually(
        "two resyncs",
        lambda: (
            one.metric("approvalgate_controller_reconciles_total", 'kind="request"') >= looked + 4
        ),
    )
    assert get(client, APPROVAL_REQUESTS, "cancelled")["metadata"]["resourceVersion"] == version  # type: ignore[index]
    client.request(
        "cancel",
        "PATCH",
        APPROVAL_REQUESTS.path(NS, "cancelled"),
        body={"spec": {"cancelled": True}},
        content_type="application/merge-patch+json",
    )
    eventually("Cancelled", lambda: phase(client, "cancelled") == "Cancelled")
    approve_twice(client, "cancelled")
    time.sleep(3)
    assert runs_named(client, "vetoed") == [] and runs_named(client, "cancelled") == []
    assert phase(client, "cancelled") == "Cancelled"


def test_two_replicas_race_one_leads_and_every_run_is_created_once(
    client: Client, controllers: Callable[..., Controller]
) -> None:
    first, second = controllers("race-a"), controllers("race-b")
    leader = eventually(
        "one of them leads",
        lambda: [c for c in (first, second) if c.leading()] or None,
    )
    assert len(leader) == 1
    names = [f"race-{i}" for i in range(6)]
    for name in names:
        create_request(client, name)
        approve_twice(client, name)
    for name in names:
        eventually(f"{name} Submitted", lambda name=name: phase(client, name) == "Submitted")
        assert len(runs_named(client, name)) == 1
    total = sum(c.metric("approvalgate_controller_runs_created_total") for c in (first, second))
    assert total == len(names)
    follower = second if leader[0] is first else first
    assert follower.metric("approvalgate_controller_runs_created_total") == 0
    lease = get(client, LEASES, LEASE)
    assert lease is not None and lease["spec"]["holderIdentity"] == leader[0].identity

    # the leader goes (SIGTERM releases the Lease): the other takes over and carries on
    assert leader[0].stop() == 0
    eventually("the follower leads", follower.leading)
    create_request(client, "race-after")
    approve_twice(client, "race-after")
    eventually("race-after Submitted", lambda: phase(client, "race-after") == "Submitted")
    assert len(runs_named(client, "race-after")) == 1
    assert follower.metric("approvalgate_controller_runs_created_total") == 1


def test_a_crash_between_create_and_status_converges_without_a_second_run(
    client: Client, controllers: Callable[..., Controller]
) -> None:
    """The state a SIGKILL right after the create leaves: the request approved, its status
    still Pending, the run created with the request's uid. The restarted controller adopts
    the run (Submitted) and creates nothing."""
    name = "crashed"
    request = create_request(client, name)
    approve_twice(client, name)
    client.request(
        "status",
        "PUT",
        APPROVAL_REQUESTS.path(NS, name) + "/status",
        body={**request, "status": {"phase": "Pending", "reason": "WaitingForApprovals"}},
    )
    run = run_manifest(name)
    run["metadata"]["annotations"] = {view.REQUEST_UID_ANNOTATION: request["metadata"]["uid"]}
    client.request("create run", "POST", AGENT_RUNS.path(NS), body=run)

    one = controllers("crash-0")
    eventually("Submitted", lambda: phase(client, name) == "Submitted")
    [created] = runs_named(client, name)
    status = get(client, APPROVAL_REQUESTS, name)["status"]  # type: ignore[index]
    assert status["run"]["uid"] == created["metadata"]["uid"]
    assert one.metric("approvalgate_controller_runs_created_total") == 0


def test_a_run_of_that_name_that_is_not_ours_fails_the_request(
    client: Client, controllers: Callable[..., Controller]
) -> None:
    name = "taken"
    create_request(client, name)
    client.request("create run", "POST", AGENT_RUNS.path(NS), body=run_manifest(name))
    controllers("taken-0")
    approve_twice(client, name)
    eventually("Failed", lambda: phase(client, name) == "Failed")
    status = get(client, APPROVAL_REQUESTS, name)["status"]  # type: ignore[index]
    assert status["reason"] == "NameTaken"
    assert len(runs_named(client, name)) == 1


def test_sigkill_at_any_moment_and_a_restart_never_duplicate_a_run(
    client: Client, controllers: Callable[..., Controller]
) -> None:
    """Approve a batch and SIGKILL the controller while it works; a new one (after the
    Lease of the dead one runs out) finishes the batch: every run exists once."""
    names = [f"killed-{i}" for i in range(8)]
    first = controllers("kill-a")
    eventually("kill-a leads", first.leading)
    for name in names:
        create_request(client, name)
        approve_twice(client, name)
    eventually(
        "some work done", lambda: any(runs_named(client, n) for n in names) or None, timeout=60
    )
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    second = controllers("kill-b")
    eventually("kill-b leads (the dead leader's Lease ran out)", second.leading)
    for name in names:
        eventually(f"{name} Submitted", lambda name=name: phase(client, name) == "Submitted")
        [run] = runs_named(client, name)
        status = get(client, APPROVAL_REQUESTS, name)["status"]  # type: ignore[index]
        assert status["run"]["uid"] == run["metadata"]["uid"]


def test_the_api_server_restarted_mid_flight(
    plane: ControlPlane, client: Client, controllers: Callable[..., Controller]
) -> None:
    one = controllers("restart-0")
    eventually("restart-0 leads", one.leading)
    name = "restarted"
    create_request(client, name)
    decide(client, name, "alice")
    eventually("Pending", lambda: phase(client, name) == "Pending")
    plane.stop_apiserver()
    try:
        eventually("the leader steps down without the API server", lambda: not one.leading())
        assert one.process is not None and one.process.poll() is None  # still running
    finally:
        plane.start_apiserver()
    with Client.connect(plane.kubeconfig("admin")) as fresh:
        decide(fresh, name, "bob")
        eventually("leads again", one.leading)
        eventually("Submitted", lambda: phase(fresh, name) == "Submitted")
        assert len(runs_named(fresh, name)) == 1
    assert one.stop() == 0


class Receiver:
    """A local HTTP endpoint (127.0.0.1) that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        import http.server
        import threading

        bodies: list[dict[str, Any]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.bodies = bodies
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def texts(self) -> list[str]:
        """The texts received; every message has Slack's markup parsing off."""
        assert all(b.get("mrkdwn") is False for b in self.bodies), self.bodies
        return [b["text"] for b in self.bodies]


SLACK_BAIT = "INC-4711 <!channel> see <https://evil.example/x|approvalgate status agents/x>"


def test_notifications_say_who_is_needed_and_what_was_decided(
    client: Client, controllers: Callable[..., Controller], tmp_path: Path
) -> None:
    receiver = Receiver()
    try:
        url_file = tmp_path / "notify-url"
        url_file.write_text(receiver.url + "\n")
        # the corpus policy's timeout is a day: "expiring" is due at once with two days' notice
        one = controllers(
            "notify-0",
            "--notify-url-file",
            str(url_file),
            "--notify-expiring-before",
            str(2 * 86400),
        )
        eventually("notify-0 leads", one.leading)
        name = "notified"
        create_request(client, name)
        needs = eventually(
            "needs-you", lambda: [t for t in receiver.texts() if f"{NS}/{name}" in t]
        )
        assert needs[0].startswith("Approval needed: AgentRun agents/notified")
        expiring = eventually(
            "expiring",
            lambda: [
                t
                for t in receiver.texts()
                if t.startswith("Expiring soon") and f"{NS}/{name} " in t
            ],
        )
        assert f"{NS}/{name}" in expiring[0] and "expires at" in expiring[0]
        assert "0/2 approvals" in needs[0] and "alice" in needs[0] and "carol" in needs[0]
        approve_twice(client, name)
        eventually(
            "decided",
            lambda: any(
                t.startswith(f"AgentRun {NS}/{name}") and "Approved" in t for t in receiver.texts()
            ),
        )
        assert (
            one.metric(
                "approvalgate_controller_notifications_total", 'kind="needs-you",result="delivered"'
            )
            >= 1
        )
        assert receiver.url not in one.log()  # the URL is a secret
        # a requester's reason is her words, never a Slack mention or a disguised link
        create_request(client, "notified-bait", reason=SLACK_BAIT)
        bait = eventually(
            "needs-you of the bait",
            lambda: [t for t in receiver.texts() if f"{NS}/notified-bait " in t],
        )
        assert "<" not in bait[0] and ">" not in bait[0], bait[0]
        assert "&lt;!channel&gt;" in bait[0] and "&lt;https://evil.example/x|" in bait[0]
        assert bait[0].index("approvalgate approve --request") < bait[0].index("INC-4711")
        # once per request, however often it is looked at
        time.sleep(3)
        assert [t for t in receiver.texts() if f"{NS}/{name} " in t].count(expiring[0]) == 1
        # and never for a request already decided (the other tests' requests are there)
        for text in receiver.texts():
            if text.startswith("Expiring soon"):
                found = re.search(rf"AgentRun {NS}/(\S+) ", text)
                assert found is not None, text
                other = found.group(1)
                assert other == name or phase(client, other) == "Pending", text
    finally:
        receiver.close()


def test_expired_decisions_and_uses_of_gone_runs_are_collected(
    client: Client, controllers: Callable[..., Controller]
) -> None:
    """Without the webhook nothing stops these objects from being created already expired;
    the controller deletes them (the webhook allows those deletes only then)."""
    from datetime import timedelta

    name = "collected"
    now = records.now_utc()
    old = make_record(
        {"key": "alice", "ttl": "1h"}, run_manifest(name), BASE, now - timedelta(hours=3), ENV
    )
    live = make_record({"key": "bob"}, run_manifest(name), BASE, now, ENV)
    for approver, envelope in (("alice", old), ("bob", live)):
        client.request(
            "decision",
            "POST",
            APPROVAL_DECISIONS.path(NS),
            body={
                "apiVersion": view.API_VERSION,
                "kind": "ApprovalDecision",
                "metadata": {"name": f"{name}-{approver}", "namespace": NS},
                "spec": {
                    "requestName": name,
                    "decision": "approve",
                    "approver": approver,
                    "record": envelope,
                },
            },
        )
    use = {
        "apiVersion": view.API_VERSION,
        "kind": "ApprovalUse",
        "metadata": {"name": "0000-gone-run-uid", "namespace": NS},
        "spec": {
            "run": {"name": "gone", "uid": "0000-gone-run-uid"},
            "environment": ENV,
            "specDigest": "0" * 64,
            "statements": ["1" * 64],
            "expiresAt": records.format_time(now - timedelta(minutes=1)),
        },
    }
    client.request("use", "POST", APPROVAL_USES.path(NS), body=use)
    one = controllers("gc-0", "--gc-interval", "1")
    eventually(
        "the expired decision and use are gone",
        lambda: (
            get(client, APPROVAL_DECISIONS, f"{name}-alice") is None
            and get(client, APPROVAL_USES, "0000-gone-run-uid") is None
        ),
    )
    assert get(client, APPROVAL_DECISIONS, f"{name}-bob") is not None
    assert one.metric("approvalgate_controller_collected_total", 'kind="decision"') >= 1
    assert one.metric("approvalgate_controller_collected_total", 'kind="use"') == 1


def test_a_controller_told_its_namespaces_leaves_the_others_alone(
    plane: ControlPlane, client: Client, controllers: Callable[..., Controller]
) -> None:
    elsewhere = plane.create_namespace("queue-elsewhere")
    one = controllers("scoped-0", "--namespace", elsewhere)
    eventually("scoped-0 leads", one.leading)
    create_request(client, "unwatched")
    looked = one.metric("approvalgate_controller_reconciles_total", 'kind="request"')
    time.sleep(5)  # two resyncs of the watched namespace
    assert one.metric("approvalgate_controller_reconciles_total", 'kind="request"') == looked
    assert phase(client, "unwatched") == ""


LOSE_SUBMITTED = "e2e-lose-the-submitted-write"
LOST = "e2e: the status write after the create is lost"
REFUSE_RUNS = "e2e-refuse-agentrun-creates"
REFUSED = "e2e: the controller dies before its create"


def _policy(
    plane: ControlPlane,
    name: str,
    rule: dict[str, Any],
    expression: str,
    message: str,
    on: bool,
    reason: str = "Forbidden",
) -> None:
    """A ValidatingAdmissionPolicy (CEL, inside the API server) and its binding: a fault
    placed exactly where the controller must survive one."""
    docs = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{"apiVersions": ["*"], **rule}]},
                "validations": [{"expression": expression, "message": message, "reason": reason}],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {"policyName": name, "validationActions": ["Deny"]},
        },
    ]
    items = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    if on:
        plane.kubectl("admin", "apply", "-f", "-", input=items)
    else:
        plane.kubectl("admin", "delete", "--ignore-not-found", "-f", "-", input=items)


def _lose_submitted_writes(plane: ControlPlane, on: bool) -> None:
    """Refuse any status write saying Submitted: the controller creates the run, then
    cannot record it, exactly as if it died between the two."""
    _policy(
        plane,
        LOSE_SUBMITTED,
        {
            "apiGroups": ["gates.proompteng.ai"],
            "operations": ["UPDATE"],
            "resources": ["approvalrequests/status"],
        },
        "!has(object.status) || !has(object.status.phase) || object.status.phase != 'Submitted'",
        LOST,
        on,
    )


def _refuse_run_creates(plane: ControlPlane, on: bool) -> None:
    """Refuse every AgentRun create: the controller decides (Approved) but cannot create."""
    _policy(
        plane,
        REFUSE_RUNS,
        {
            "apiGroups": ["agents.proompteng.ai"],
            "operations": ["CREATE"],
            "resources": ["agentruns"],
        },
        "false",
        REFUSED,
        on,
    )


def _run_create_refused(client: Client) -> bool:
    from approvalgate.kube.errors import KubeError

    try:
        client.request(
            "probe",
            "POST",
            AGENT_RUNS.path(NS),
            body=run_manifest("probe-run"),
            query=[("dryRun", "All")],
        )
    except KubeError as exc:
        if REFUSED in exc.message:
            return True
        raise
    return False


def _submitted_write_refused(client: Client, probe: dict[str, Any]) -> bool:
    from approvalgate.kube.errors import KubeError

    current = get(client, APPROVAL_REQUESTS, probe["metadata"]["name"])
    assert current is not None
    try:
        client.request(
            "probe",
            "PUT",
            APPROVAL_REQUESTS.path(NS, probe["metadata"]["name"]) + "/status",
            body={**current, "status": {"phase": "Submitted", "reason": "Probe"}},
        )
    except KubeError as exc:
        if LOST in exc.message:
            return True
        raise
    client.request(  # written: put it back for the next probe
        "probe",
        "PUT",
        APPROVAL_REQUESTS.path(NS, probe["metadata"]["name"]) + "/status",
        body={**get(client, APPROVAL_REQUESTS, probe["metadata"]["name"]), "status": {}},  # type: ignore[dict-item]
    )
    return False


def test_killed_between_create_and_status_a_restart_adopts_the_run(
    plane: ControlPlane, client: Client, controllers: Callable[..., Controller]
) -> None:
    """The real thing: the controller creates the run, its Submitted status write fails,
    it is SIGKILLed; the next one finds the run carrying the request's uid and records it
    (Submitted) without creating anything."""
    probe = create_request(client, "probe-cut")
    _lose_submitted_writes(plane, True)
    try:
        eventually("the policy refuses Submitted", lambda: _submitted_write_refused(client, probe))
        first = controllers("cut-0")
        eventually("cut-0 leads", first.leading)
        name = "cut"
        create_request(client, name)
        approve_twice(client, name)
        eventually("the run is created", lambda: runs_named(client, name))
        eventually("its Submitted write was refused", lambda: LOST in first.log())
        assert phase(client, name) == "Approved"
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        _lose_submitted_writes(plane, False)
    eventually("Submitted writes pass", lambda: not _submitted_write_refused(client, probe))
    second = controllers("cut-1")
    eventually("Submitted", lambda: phase(client, name) == "Submitted")
    [run] = runs_named(client, name)
    status = get(client, APPROVAL_REQUESTS, name)["status"]  # type: ignore[index]
    assert status["run"] == {"name": name, "uid": run["metadata"]["uid"]}
    assert second.metric("approvalgate_controller_runs_created_total") == 0


def test_killed_between_deciding_and_creating_a_restart_creates_the_run_once(
    plane: ControlPlane, client: Client, controllers: Callable[..., Controller]
) -> None:
    """The controller writes Approved, its create fails, it is SIGKILLed; the next one
    creates the run (once) from the approvals in the cluster."""
    _refuse_run_creates(plane, True)
    try:
        eventually("creates are refused", lambda: _run_create_refused(client))
        first = controllers("decided-0")
        eventually("decided-0 leads", first.leading)
        name = "decided"
        create_request(client, name)
        approve_twice(client, name)
        eventually(
            "Approved, the create failing",
            lambda: (
                (get(client, APPROVAL_REQUESTS, name) or {}).get("status", {}).get("reason")
                == "CreateFailed"
            ),
        )
        status = get(client, APPROVAL_REQUESTS, name)["status"]  # type: ignore[index]
        assert status["phase"] == "Approved" and REFUSED in status["message"]
        assert runs_named(client, name) == []
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        _refuse_run_creates(plane, False)
    eventually("creates pass", lambda: not _run_create_refused(client))
    second = controllers("decided-1")
    eventually("Submitted", lambda: phase(client, name) == "Submitted")
    assert len(runs_named(client, name)) == 1
    assert second.metric("approvalgate_controller_runs_created_total") == 1


def test_a_run_created_and_gone_before_its_status_was_written_is_never_created_again(
    plane: ControlPlane, client: Client, controllers: Callable[..., Controller]
) -> None:
    """The controller creates the run, but its Submitted write keeps failing; the run is
    used (its ApprovalUse recorded) and deleted meanwhile. The request must not go back to
    Pending, where its used approvals no longer count and fresh ones (the approvers asked
    again by the "needs you" notice) would create the run a second time: the run's use names
    the request it was created from, and the request is Submitted, the run it made named."""
    probe = create_request(client, "probe-gone")
    _lose_submitted_writes(plane, True)
    try:
        eventually("the policy refuses Submitted", lambda: _submitted_write_refused(client, probe))
        one = controllers("gone-0")
        eventually("gone-0 leads", one.leading)
        name = "gone"
        request = create_request(client, name)
        approve_twice(client, name)
        [run] = eventually("the run is created", lambda: runs_named(client, name))
        uid = run["metadata"]["uid"]
        eventually("its Submitted write was refused", lambda: LOST in one.log())
        use = eventually("the run's use is recorded", lambda: get(client, APPROVAL_USES, uid))
        client.request("delete", "DELETE", AGENT_RUNS.path(NS, name))
        eventually("the run is gone (its use settled)", lambda: not runs_named(client, name))
        looked = one.metric("approvalgate_controller_reconciles_total", 'kind="request"')
        eventually(
            "the request looked at again without the run",
            lambda: (
                one.metric("approvalgate_controller_reconciles_total", 'kind="request"')
                >= looked + 4
            ),
        )
        assert phase(client, name) == "Approved"  # Submitted, had the write not been refused
    finally:
        _lose_submitted_writes(plane, False)
    eventually("Submitted writes pass", lambda: not _submitted_write_refused(client, probe))
    eventually("Submitted", lambda: phase(client, name) == "Submitted")
    status = get(client, APPROVAL_REQUESTS, name)["status"]  # type: ignore[index]
    assert status["run"] == {"name": name, "uid": uid}
    # the approvers approve again: the request is history, nothing is created
    approve_twice(client, name)
    looked = one.metric("approvalgate_controller_reconciles_total", 'kind="request"')
    eventually(
        "two resyncs",
        lambda: (
            one.metric("approvalgate_controller_reconciles_total", 'kind="request"') >= looked + 4
        ),
    )
    assert runs_named(client, name) == []
    assert phase(client, name) == "Submitted"
    assert one.metric("approvalgate_controller_runs_created_total") == 1
    assert use["spec"]["run"]["requestUid"] == request["metadata"]["uid"]


INVALID = "e2e: the run is invalid (HTTP 422)"


def _steal_the_lease(client: Client) -> None:
    """Another holder writes the Lease, renewed now: the leader cannot renew and steps
    down; once that holder stops renewing (4 s), the controller leads again."""
    lease = get(client, LEASES, LEASE)
    assert lease is not None
    now = records.now_utc().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease["spec"] = {
        **lease["spec"],
        "holderIdentity": "thief",
        "renewTime": now,
        "acquireTime": now,
        "leaseDurationSeconds": 4,
    }
    client.request("steal the lease", "PUT", LEASES.path(NS, LEASE), body=lease)


def test_a_request_made_again_under_the_name_of_a_refused_one_is_created(
    plane: ControlPlane, client: Client, controllers: Callable[..., Controller]
) -> None:
    """The API server refuses request A's run as invalid (HTTP 422): A is Failed. The
    controller loses the Lease for a moment (another holder); meanwhile an admin deletes A
    and the requester files B under the same name with the run fixed, and B is approved.
    Leading again, the controller creates B's run: it remembered A's refusal by name and
    failed B with it, never trying (approved, never created)."""
    rule = {
        "apiGroups": ["agents.proompteng.ai"],
        "operations": ["CREATE"],
        "resources": ["agentruns"],
    }
    invalid = "!has(object.metadata.labels) || !('e2e-invalid' in object.metadata.labels)"
    _policy(plane, "e2e-invalid-runs", rule, invalid, INVALID, True, reason="Invalid")
    try:
        one = controllers("remade-0")
        eventually("remade-0 leads", one.leading)
        name = "remade"
        first = create_request(client, name, {"e2e-invalid": "yes"})
        approve_twice(client, name)
        eventually("A is Failed", lambda: phase(client, name) == "Failed")
        status = get(client, APPROVAL_REQUESTS, name)["status"]  # type: ignore[index]
        assert status["reason"] == "CreateFailed" and INVALID in status["message"]
        _steal_the_lease(client)
        eventually("remade-0 steps down", lambda: not one.leading())
        client.request("delete A", "DELETE", APPROVAL_REQUESTS.path(NS, name))
        second = create_request(client, name)
        assert second["metadata"]["uid"] != first["metadata"]["uid"]
        approve_twice(client, name)
        eventually("remade-0 leads again", one.leading)
        eventually("B is Submitted", lambda: phase(client, name) in ("Submitted", "Failed"))
        status = get(client, APPROVAL_REQUESTS, name)["status"]  # type: ignore[index]
        assert (status["phase"], status["reason"]) == ("Submitted", "RunCreated"), status
        [run] = runs_named(client, name)
        assert (
            run["metadata"]["annotations"][view.REQUEST_UID_ANNOTATION]
            == (second["metadata"]["uid"])
        )
    finally:
        _policy(plane, "e2e-invalid-runs", rule, invalid, INVALID, False, reason="Invalid")


def test_a_leader_frozen_mid_work_and_thawed_after_a_takeover_creates_nothing_twice(
    client: Client, controllers: Callable[..., Controller]
) -> None:
    """The leader is frozen (SIGSTOP: a stalled node, a long pause) while it works through
    a batch, its Lease runs out, the other replica takes over and finishes; then the first
    is thawed mid-reconcile, still believing for a moment that it leads. Every request has
    one run, the one its status names: the fixed name fences the creates, the status's
    resourceVersion fences the writes."""
    first, second = controllers("frozen-a"), controllers("frozen-b")
    leader = eventually(
        "one of them leads", lambda: [c for c in (first, second) if c.leading()] or None
    )
    [old] = leader
    new = second if old is first else first
    names = [f"frozen-{i}" for i in range(8)]
    for name in names:
        create_request(client, name)
        approve_twice(client, name)
    eventually("some work done", lambda: any(runs_named(client, n) for n in names) or None)
    assert old.process is not None
    old.process.send_signal(signal.SIGSTOP)
    try:
        eventually("the other takes over", new.leading)
        for name in names:
            eventually(f"{name} Submitted", lambda name=name: phase(client, name) == "Submitted")
    finally:
        old.process.send_signal(signal.SIGCONT)
    eventually("the thawed one steps down", lambda: not old.leading())
    looked = new.metric("approvalgate_controller_reconciles_total", 'kind="request"')
    eventually(
        "two resyncs after the thaw",
        lambda: (
            new.metric("approvalgate_controller_reconciles_total", 'kind="request"')
            >= looked + 2 * len(names)
        ),
    )
    for name in names:
        [run] = runs_named(client, name)
        status = get(client, APPROVAL_REQUESTS, name)["status"]  # type: ignore[index]
        assert (status["phase"], status["run"]) == (
            "Submitted",
            {"name": name, "uid": run["metadata"]["uid"]},
        )
    created = sum(c.metric("approvalgate_controller_runs_created_total") for c in (old, new))
    assert created == len(names)


def test_a_create_the_api_server_stored_whose_answer_was_lost_makes_one_run(
    plane: ControlPlane, client: Client, controllers: Callable[..., Controller], tmp_path: Path
) -> None:
    """The controller's create reaches the API server, which stores the run, and its answer
    is lost (a proxy on 127.0.0.1 resets the connection instead): the controller cannot tell
    whether the create happened. It retries; the run found carries the request's uid and is
    adopted. One run, the request Submitted with it."""
    with DropCreateAnswers(plane.server, plane.ca_file) as proxy:
        through = proxy.kubeconfig(plane.kubeconfig("admin"), tmp_path / "through-proxy.json")
        one = controllers("lost-0", kubeconfig=through)
        eventually("lost-0 leads", one.leading)
        proxy.arm(1)
        name = "lost-answer"
        request = create_request(client, name)
        approve_twice(client, name)
        eventually("Submitted", lambda: phase(client, name) == "Submitted")
        assert [line.split(" ", 2)[1] for line in proxy.dropped] == ["201"]  # it was stored
        assert "creating the run failed" in one.log()  # and the controller saw no answer
    [run] = runs_named(client, name)
    assert (
        run["metadata"]["annotations"][view.REQUEST_UID_ANNOTATION] == (request["metadata"]["uid"])
    )
    status = get(client, APPROVAL_REQUESTS, name)["status"]  # type: ignore[index]
    assert status["run"] == {"name": name, "uid": run["metadata"]["uid"]}


def test_the_use_of_a_gone_run_is_not_collected_before_its_request_says_submitted(
    plane: ControlPlane, client: Client, controllers: Callable[..., Controller]
) -> None:
    """The state a run needing no approval leaves when the controller's Submitted write
    keeps failing and the run is used and deleted: the request Approved, no run, the run's
    use listing no approval and expired at once. The collector must keep that use (the
    request's only memory of its run) until the request is Submitted; collected, the next
    reconcile would create the run again (fresh approvals stand in for "none needed")."""
    from datetime import timedelta

    probe = create_request(client, "probe-kept")
    _lose_submitted_writes(plane, True)
    name = "kept"
    try:
        eventually("the policy refuses Submitted", lambda: _submitted_write_refused(client, probe))
        request = create_request(client, name)
        client.request(
            "status",
            "PUT",
            APPROVAL_REQUESTS.path(NS, name) + "/status",
            body={**request, "status": {"phase": "Approved", "reason": "Quorum"}},
        )
        gone = f"{request['metadata']['uid'][:8]}-gone-run-uid"
        use = {
            "apiVersion": view.API_VERSION,
            "kind": "ApprovalUse",
            "metadata": {"name": gone, "namespace": NS},
            "spec": {
                "run": {"name": name, "uid": gone, "requestUid": request["metadata"]["uid"]},
                "environment": ENV,
                "specDigest": "0" * 64,
                "statements": [],
                "expiresAt": records.format_time(records.now_utc() - timedelta(minutes=1)),
            },
        }
        client.request("use", "POST", APPROVAL_USES.path(NS), body=use)
        approve_twice(client, name)
        one = controllers("kept-0", "--gc-interval", "1")
        eventually("kept-0 leads", one.leading)
        eventually("its Submitted write was refused", lambda: LOST in one.log())
        looked = one.metric("approvalgate_controller_reconciles_total", 'kind="request"')
        eventually(
            "resyncs (each runs the collector)",
            lambda: (
                one.metric("approvalgate_controller_reconciles_total", 'kind="request"')
                >= looked + 6
            ),
        )
        assert get(client, APPROVAL_USES, gone) is not None  # kept: the request is Approved
        assert runs_named(client, name) == []
    finally:
        _lose_submitted_writes(plane, False)
    eventually("Submitted writes pass", lambda: not _submitted_write_refused(client, probe))
    eventually("Submitted", lambda: phase(client, name) == "Submitted")
    status = get(client, APPROVAL_REQUESTS, name)["status"]  # type: ignore[index]
    assert status["run"] == {"name": name, "uid": gone}
    eventually("collected once the request says so", lambda: not get(client, APPROVAL_USES, gone))
    assert runs_named(client, name) == []
    assert one.metric("approvalgate_controller_runs_created_total") == 0
