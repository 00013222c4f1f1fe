"""Issue 15 on the real kube-apiserver: the approval queue end to end.

The requester, the approvers (alice, bob: platform leads; dana: agents admin; oncall: break
glass) and an admin work with the real CLI and kubectl, each with their own token and the
chart's ClusterRoles; the webhook judges everything with its watch-fed cluster view (read as
its ServiceAccount); the queue's controller (its ServiceAccount, the chart's RBAC) writes
status, Events and metrics and creates the run. Nobody writes a status by hand here.

Done-when 1: request -> pending --watch -> two approvals -> the run, once, admitted by the
webhook on its records -> status. Done-when 3: veto, vote, withdrawal, expiry, cancel,
bypass, a request for someone else, a decision filed by someone else, a spec edit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from approvalgate.approvals import records, view
from tests.e2e.controlplane import QUEUE_CONTROLLER, ControlPlane
from tests.e2e.gate import ENFORCED, ENV, WEBHOOK_NAME, Gate, eventually, run_manifest

from .queue_support import (
    REQUESTS,
    USES,
    People,
    Watch,
    decisions_of,
    delete_run,
    events_of,
    get,
    people,
    phase,
    queue_gate,
    review,
    runs_named,
    status,
    unique,
    wait_phase,
)

pytestmark = pytest.mark.e2e
__all__ = ["people"]  # the fixture, imported for pytest


@pytest.fixture(scope="module")
def gate(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    yield from queue_gate(control_plane, tmp_path_factory.mktemp("queue"))


def allowed_runs(gate: Gate) -> float:
    """AgentRun admissions the webhook allowed on approvals (its own metric)."""
    return gate.webhook_metric("approvalgate_admission_requests_total", decision="allow")


# --- Done-when 1 ---------------------------------------------------------------------------------


def test_request_watch_two_approvals_the_run_once_status_events_metrics(
    gate: Gate, people: People
) -> None:
    controller = gate.leader()
    name = unique("q-story")
    ref = f"{ENFORCED}/{name}"
    pending_before = controller.metric("approvalgate_pending_requests")
    approved_before = controller.metric("approvalgate_approvals_total", outcome="approved")
    submitted_before = controller.metric("approvalgate_approvals_total", outcome="submitted")
    waits_before = controller.metric("approvalgate_approval_wait_seconds_count")
    created_before = controller.metric("approvalgate_controller_runs_created_total")

    watch = Watch(gate, "alice", "-n", ENFORCED)
    try:
        request = people.request(name, reason="ship the onboarding fix")
        uid = request["metadata"]["uid"]
        assert request["spec"]["requester"] == "requester"
        assert request["spec"]["environment"] == ENV

        # it appears in alice's long-poll, then as Pending with who may approve
        event = watch.next_about(name)
        assert event["event"] == "ADDED"
        while event["request"]["phase"] != "Pending":  # New until the controller looked
            event = watch.next_about(name)
            assert event["event"] != "REMOVED", event
        assert {"alice", "bob"} <= set(event["request"]["eligible"])
        assert "requester" not in event["request"]["eligible"]
        eventually(
            "the pending gauge counts it",
            lambda: controller.metric("approvalgate_pending_requests") >= pending_before + 1,
        )

        people.approve(name, "alice")
        eventually("alice counted", lambda: status(gate, name).get("approvedBy") == ["alice"])
        assert phase(gate, name) == "Pending" and runs_named(gate, name) == []

        admitted_before = allowed_runs(gate)
        people.approve(name, "bob")
        story = wait_phase(gate, name, "Submitted")
        event = watch.next_about(name)  # no longer pending: it leaves the list
        while event["event"] != "REMOVED":
            event = watch.next_about(name)
    finally:
        code, stderr = watch.stop()
    assert code == 0, stderr

    # the run exists exactly once, created by the controller from this request
    [run] = runs_named(gate, name)
    meta = run["metadata"]
    assert story["reason"] == "RunCreated"
    assert story["run"] == {"name": name, "uid": meta["uid"]}
    assert story["approvedBy"] == ["alice", "bob"] and story["required"] == 2
    annotations = meta["annotations"]
    assert annotations[view.REQUEST_UID_ANNOTATION] == uid
    assert annotations[view.REQUEST_ANNOTATION] == ref
    assert annotations[records.AUTHOR_ANNOTATION] == "requester"
    carried = json.loads(annotations[records.ANNOTATION])
    # every decision's record, each once (their order is creation order to the second)
    assert sorted(r["payload"] for r in carried) == sorted(
        d["spec"]["record"]["payload"] for d in decisions_of(gate, name)
    )
    assert meta["finalizers"] == [view.USE_FINALIZER]
    shown = gate.kubectl(
        "admin", "get", "agentrun", name, "-n", ENFORCED, "-o", "json", "--show-managed-fields"
    )
    fields = json.loads(shown.stdout)["metadata"]["managedFields"]
    assert {f["operation"] for f in fields} <= {"Update"}  # the create, then the finalizer
    assert len({f["manager"] for f in fields}) == 1, fields  # one writer: the controller
    assert controller.metric("approvalgate_controller_runs_created_total") == created_before + 1
    assert '"msg": "run created"' in controller.log(20000)
    # admitted by the webhook on its records (a courier's run: judged as the requester's)
    assert allowed_runs(gate) >= admitted_before + 1
    # verify --cluster judges the stored run as the webhook did: the courier's CREATE,
    # judged as the request's requester's
    report = gate.verify(yaml.safe_dump(run), QUEUE_CONTROLLER)
    assert report["allowed"] is True, report

    # status tells the whole story (as the requester sees it)
    text = people.ok("requester", "status", ref).stdout
    assert text.startswith(f"ApprovalRequest {ref}: Submitted (RunCreated)\n"), text
    assert "  requester:     requester\n" in text
    assert "  approvals:     2 of 2 (alice, bob)\n" in text
    assert f"  run:           AgentRun {ref} (uid {meta['uid']})\n" in text
    assert "decisions (2):" in text
    as_json = json.loads(people.ok("admin", "status", ref, "-o", "json").stdout)
    assert as_json["phase"] == "Submitted"
    assert [(d["approver"], d["createdBy"]) for d in as_json["decisions"]] == [
        ("alice", "alice"),
        ("bob", "bob"),
    ]

    # every transition: an Event (events.k8s.io, regarding the request) and a metric
    actions = eventually(
        "three Events",
        lambda: (
            sorted(e["action"] for e in events_of(gate, name))
            if len(events_of(gate, name)) >= 3
            else None
        ),
    )
    assert actions == ["Approved", "Pending", "Submitted"]
    for event in events_of(gate, name):
        assert event["reportingController"], event
        assert event["regarding"]["uid"] == uid
    assert (
        controller.metric("approvalgate_approvals_total", outcome="approved") == approved_before + 1
    )
    assert (
        controller.metric("approvalgate_approvals_total", outcome="submitted")
        == submitted_before + 1
    )
    assert controller.metric("approvalgate_approval_wait_seconds_count") == waits_before + 1

    # the gauge counts every request still waiting in the cluster, other tests' included (the
    # console's tests leave some): it must let ours go and agree with the API server's list
    def pending_in_cluster() -> list[str]:
        listed = json.loads(
            gate.plane.kubectl("admin", "get", "approvalrequests", "-A", "-o", "json").stdout
        )
        return [
            f"{r['metadata']['namespace']}/{r['metadata']['name']}"
            for r in listed["items"]
            if str((r.get("status") or {}).get("phase") or "Pending") == "Pending"
        ]

    eventually(
        "the pending gauge lets it go",
        lambda: (
            ref not in (waiting := pending_in_cluster())
            and controller.metric("approvalgate_pending_requests") == len(waiting)
        ),
    )

    # the admin deletes the run: its use is recorded, then the finalizer goes
    delete_run(gate, name)
    use = get(gate, USES, meta["uid"])
    assert use is not None and use["spec"]["run"] == {
        "name": name,
        "uid": meta["uid"],
        "requestUid": meta["annotations"][view.REQUEST_UID_ANNOTATION],
    }
    assert len(use["spec"]["statements"]) == 2
    assert phase(gate, name) == "Submitted"  # history stays


# --- Done-when 3 ---------------------------------------------------------------------------------


def test_a_reject_vetoes_and_no_run_is_created(gate: Gate, people: People) -> None:
    controller = gate.leader()
    rejected_before = controller.metric("approvalgate_approvals_total", outcome="rejected")
    name = unique("q-veto")
    people.request(name)
    people.approve(name, "alice")
    people.decide("reject", "bob", name, "--reason", "touches billing")
    story = wait_phase(gate, name, "Rejected")
    assert story["reason"] == "Vetoed" and story["rejectedBy"] == ["bob"]
    # a later approval changes nothing: rejection short-circuits
    late = people.decide("approve", "dana", name, check=False)
    assert late.returncode == 1 and "Rejected" in late.stderr, late.stderr
    eventually(
        "a Rejected Event", lambda: "Rejected" in [e["action"] for e in events_of(gate, name)]
    )
    assert controller.metric("approvalgate_approvals_total", outcome="rejected") == (
        rejected_before + 1
    )
    text = people.run("requester", "status", f"{ENFORCED}/{name}")
    assert text.returncode == 1 and "  rejected by:   bob\n" in text.stdout
    assert "  run:           not created\n" in text.stdout
    assert runs_named(gate, name) == []


def test_under_a_vote_a_reject_is_outvoted(gate: Gate, people: People) -> None:
    """rejection: vote (one policy changed in a copy of the repo): rejects count against
    approvals instead of vetoing."""

    def vote(repo: Any) -> None:
        path = repo / "policies" / "codex-two-person.yaml"
        path.write_text(path.read_text().replace("rejection: veto", "rejection: vote"))

    bundle = gate.compile_changed(unique("vote"), vote)
    with gate.serving(bundle):
        gate.leader()
        name = unique("q-vote")
        people.request(name)
        people.decide("reject", "bob", name, "--reason", "not this week")
        people.approve(name, "alice")
        story = eventually(
            "alice and bob counted",
            lambda: (
                status(gate, name)
                if status(gate, name).get("rejectedBy") == ["bob"]
                and status(gate, name).get("approvedBy") == ["alice"]
                else None
            ),
        )
        assert story["phase"] == "Pending", story  # no veto: the request still waits
        assert runs_named(gate, name) == []


def test_a_withdrawn_approval_no_longer_counts(gate: Gate, people: People) -> None:
    name = unique("q-withdraw")
    people.request(name)
    people.approve(name, "alice")
    eventually("alice counted", lambda: status(gate, name).get("approvedBy") == ["alice"])
    people.decide("withdraw", "alice", name)
    people.approve(name, "bob")
    story = eventually(
        "bob counted, alice withdrawn",
        lambda: (
            status(gate, name)
            if status(gate, name).get("approvedBy") == ["bob"]
            and status(gate, name).get("withdrawnBy") == ["alice"]
            else None
        ),
    )
    assert story["phase"] == "Pending"
    assert [d["spec"]["decision"] for d in decisions_of(gate, name)] == [
        "approve",
        "withdraw",
        "approve",
    ]
    # a withdrawal is an Ed25519-signed record: its expiry outlives anything it takes back
    withdrawal = decisions_of(gate, name)[1]["spec"]["record"]
    (record,), problems = records.parse_annotation(json.dumps([withdrawal]))
    assert not problems
    assert (record.claim.expires_at - record.claim.issued_at).total_seconds() >= 86400
    assert runs_named(gate, name) == []


def test_an_expired_request_is_never_approved(gate: Gate, people: People) -> None:
    """timeoutSeconds 60 (the schema's minimum) and defaultDecision: allow in a copy of the
    repo: the request expires, and approvals after that create nothing."""

    def short(repo: Any) -> None:
        for policy in (repo / "policies").glob("*.yaml"):
            text = policy.read_text().replace("timeoutSeconds: 86400", "timeoutSeconds: 60")
            policy.write_text(text.replace("defaultDecision: deny", "defaultDecision: allow"))

    bundle = gate.compile_changed(unique("expiry"), short)
    with gate.serving(bundle):
        controller = gate.leader()
        expired_before = controller.metric("approvalgate_approvals_total", outcome="expired")
        name = unique("q-expire")
        people.request(name)
        wait_phase(gate, name, "Pending")
        story = wait_phase(gate, name, "Expired", timeout=150)
        created = (get(gate, REQUESTS, name) or {})["metadata"]["creationTimestamp"]
        assert story["expiresAt"] > created
        assert story["reason"] == "TimedOut"
        for approver in ("alice", "bob"):
            people.decide("approve", approver, name, check=False)
        eventually(
            "an Expired Event", lambda: "Expired" in [e["action"] for e in events_of(gate, name)]
        )
        # (requests of other tests still pending expire under this bundle too)
        assert controller.metric("approvalgate_approvals_total", outcome="expired") >= (
            expired_before + 1
        )
        # a resync or two later: still Expired, still no run (a resync looks again at pending
        # requests only, a decided one is history: one is filed so that resyncs show)
        tick = unique("q-tick")
        people.request(tick)
        reconciles = controller.metric("approvalgate_controller_reconciles_total", kind="request")
        eventually(
            "two more resyncs",
            lambda: (
                controller.metric("approvalgate_controller_reconciles_total", kind="request")
                >= reconciles + 2
            ),
        )
        assert phase(gate, name) == "Expired"
        assert runs_named(gate, name) == []
        people.run("requester", "cancel", f"{ENFORCED}/{tick}")  # unless already expired
        # The run of the expired request, made as the controller makes it (its uid), on
        # approvals given since (valid, within the 60 s timeoutSeconds): as a controller
        # whose clock runs behind would create it. The webhook compares the API server's
        # two times, the run's creation and the request's, and denies it (sixth pass).
        uid = (get(gate, REQUESTS, name) or {})["metadata"]["uid"]
        annotation = f"  annotations:\n    {view.REQUEST_UID_ANNOTATION}: {uid}\n"
        made = run_manifest(name, finalizer=True).replace("spec:\n", annotation + "spec:\n", 1)
        approved = gate.approve(made, "alice", "bob", extra=("--ttl", "1m"))
        done = gate.kubectl("requester", "create", "-f", "-", manifest=approved)
        assert done.returncode == 1, done.stdout + done.stderr
        assert f'admission webhook "{WEBHOOK_NAME}" denied the request' in done.stderr
        assert "its ApprovalRequest expired at" in done.stderr, done.stderr
        assert runs_named(gate, name) == []


def test_a_cancelled_request_creates_nothing(gate: Gate, people: People) -> None:
    controller = gate.leader()
    cancelled_before = controller.metric("approvalgate_approvals_total", outcome="cancelled")
    name = unique("q-cancel")
    people.request(name)
    people.approve(name, "alice")
    # only the requester may cancel (the CLI says so, and the webhook would deny)
    refused = people.run("alice", "cancel", f"{ENFORCED}/{name}")
    assert refused.returncode == 1
    people.ok("requester", "cancel", f"{ENFORCED}/{name}")
    story = wait_phase(gate, name, "Cancelled")
    assert story["reason"] == "CancelledByRequester"
    people.decide("approve", "bob", name, check=False)
    assert controller.metric("approvalgate_approvals_total", outcome="cancelled") == (
        cancelled_before + 1
    )
    eventually(
        "a Cancelled Event", lambda: "Cancelled" in [e["action"] for e in events_of(gate, name)]
    )
    assert phase(gate, name) == "Cancelled"
    assert runs_named(gate, name) == []


def test_a_bypass_with_its_reason_creates_the_run(gate: Gate, people: People) -> None:
    name = unique("q-bypass")
    people.request(name)
    no_reason = people.decide("approve", "oncall", name, "--bypass", check=False)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    # (the policy caps a bypass at 2h: without --bundle the CLI's default TTL is 24h)
    people.decide(
        "approve", "oncall", name, "--bypass", "--reason", "INC-42 checkout down", "--ttl", "1h"
    )
    # the example's default-approval policy (no subjects, no bypass) also selects codex runs:
    # one agents-admin approves (dana)
    eventually("the bypass seen", lambda: status(gate, name).get("decisions") == 1)
    assert phase(gate, name) == "Pending" and runs_named(gate, name) == []
    people.approve(name, "dana")
    story = wait_phase(gate, name, "Submitted")
    [run] = runs_named(gate, name)
    carried = json.loads(run["metadata"]["annotations"][records.ANNOTATION])
    parsed, problems = records.parse_annotation(json.dumps(carried))
    assert not problems
    # decisions come in creation order, to the second: two filed within one second may come
    # either way, so compare the set
    assert sorted((r.claim.decision, r.claim.approver, r.claim.reason) for r in parsed) == [
        ("approve", "dana", ""),
        ("bypass", "oncall", "INC-42 checkout down"),
    ]
    assert story["run"]["uid"] == run["metadata"]["uid"]
    delete_run(gate, name)


def test_a_request_for_someone_else_is_denied(gate: Gate, people: People) -> None:
    name = unique("q-other")
    dry = people.ok(
        "requester", "request", str(people.run_file(name)), "--env", ENV, "--dry-run", "-o", "json"
    )
    obj = json.loads(dry.stdout)
    for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation"):
        obj["metadata"].pop(key, None)
    obj["spec"]["requester"] = "alice"  # mallory-style: filed by requester, in alice's name
    done = gate.kubectl("requester", "create", "-f", "-", manifest=json.dumps(obj))
    assert done.returncode == 1
    assert "admission webhook" in done.stderr and "denied the request" in done.stderr
    assert "requester" in done.stderr and "alice" in done.stderr
    assert get(gate, REQUESTS, name) is None


def test_a_decision_filed_by_someone_other_than_its_approver_is_denied(
    gate: Gate, people: People
) -> None:
    name = unique("q-filed")
    people.request(name)
    # bob holds alice's key and files her approval as himself
    done = people.decide("approve", "alice", name, user="bob", check=False)
    assert done.returncode == 1
    assert "denied" in done.stderr and "bob" in done.stderr, done.stderr
    assert decisions_of(gate, name) == []
    # and the requester may not file decisions at all (RBAC: no approver role)
    done = people.decide("approve", "alice", name, user="requester", check=False)
    assert done.returncode == 1 and "forbidden" in done.stderr.lower(), done.stderr
    assert decisions_of(gate, name) == []
    wait_phase(gate, name, "Pending")


def test_an_edit_of_a_request_spec_is_denied_by_the_crd_and_by_the_webhook(
    gate: Gate, people: People
) -> None:
    name = unique("q-edit")
    request = people.request(name)
    # the API server's own CEL rule refuses it first
    patch = json.dumps({"spec": {"reason": "something else entirely"}})
    done = gate.kubectl(
        "requester", "patch", REQUESTS, name, "-n", ENFORCED, "--type=merge", "-p", patch
    )
    assert done.returncode == 1 and "Invalid" in done.stderr, done.stderr
    task = {"spec": {"run": {"spec": {"parameters": {"task": "rm -rf"}}}}}
    done = gate.kubectl(
        "requester", "patch", REQUESTS, name, "-n", ENFORCED, "--type=merge", "-p", json.dumps(task)
    )
    assert done.returncode == 1, done.stderr
    # cancelling is the one change allowed, and only by the requester: CEL lets an admin's
    # false -> true through, the webhook refuses it
    done = gate.kubectl(
        "admin",
        "patch",
        REQUESTS,
        name,
        "-n",
        ENFORCED,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"cancelled": True}}),
    )
    assert done.returncode == 1 and WEBHOOK_NAME.replace("agentruns", "gates") in done.stderr
    # the webhook judges a spec edit on its own too (the AdmissionReview the API server would
    # send if the CRD had no rule)
    stored = get(gate, REQUESTS, name)
    assert stored is not None
    edited = json.loads(json.dumps(stored))
    edited["spec"]["reason"] = "something else entirely"
    gv = {"group": view.GROUP, "version": view.VERSION}
    answer = review(
        gate,
        {
            "uid": "edit-1",
            "kind": {**gv, "kind": "ApprovalRequest"},
            "resource": {**gv, "resource": "approvalrequests"},
            "requestKind": {**gv, "kind": "ApprovalRequest"},
            "name": name,
            "namespace": ENFORCED,
            "operation": "UPDATE",
            "userInfo": {"username": "requester", "groups": ["agents-users"]},
            "object": edited,
            "oldObject": stored,
            "dryRun": False,
        },
    )
    assert answer["allowed"] is False, answer
    assert (get(gate, REQUESTS, name) or {})["spec"] == request["spec"]
