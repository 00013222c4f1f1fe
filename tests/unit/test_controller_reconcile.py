"""The controller's decisions, pure: what it writes for a request, and what the ledger does.

The bundle is the decision corpus's ``_base`` (two approvals out of platform-leads, carol
and requester; veto; timeoutSeconds 86400), compiled for real; decisions are real signed
records (tests/corpus/keys); the verdicts come from the real evaluate_request over a
StaticView. Nothing is mocked: plan_request and plan_run are pure.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from approvalgate.approvals import records, view
from approvalgate.approvals.admission import request_for_manifest
from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.decide import decide, used_statements
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.policy import BundleSettings
from approvalgate.approvals.queue import QueueVerdict, evaluate_request
from approvalgate.controller import announce, ledger
from approvalgate.controller.reconcile import plan_request, wait_seconds
from tests.support.corpus import BASE, compile_case_bundle, make_record

ENV = "prod"
NOW = records.parse_time("2026-11-21T12:00:00Z")
CREATED = NOW - timedelta(minutes=10)
BUNDLE = parse_bundle_text(
    compile_case_bundle(BASE, BundleSettings(environment=ENV, referenced_content="off"))
)
BUNDLE_OFF = parse_bundle_text(
    compile_case_bundle(BASE, BundleSettings(environment=ENV, cluster_view="off"))
)
RUN: dict[str, Any] = dict(load_manifests((BASE / "run.yaml").read_text())[0].obj)
NAME, NS = RUN["metadata"]["name"], RUN["metadata"]["namespace"]
UID = "11111111-2222-3333-4444-555555555555"


def request(**status: Any) -> dict[str, Any]:
    run = copy.deepcopy(RUN)
    run["metadata"] = {"name": NAME, "labels": {"team": "lab"}}
    obj: dict[str, Any] = {
        "apiVersion": view.API_VERSION,
        "kind": "ApprovalRequest",
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "uid": UID,
            "generation": 1,
            "resourceVersion": "7",
            "creationTimestamp": records.format_time(CREATED),
        },
        "spec": {
            "requester": "requester",
            "environment": ENV,
            "reason": "release notes",
            "specDigest": BUNDLE.spec_digest(RUN["spec"]),
            "cancelled": False,
            "run": run,
        },
    }
    if status:
        obj["status"] = status
    return obj


def decision(
    key: str, kind: str = "approve", minutes: int = 5, ttl: str = "2h", at: datetime = NOW
) -> dict[str, Any]:
    """An ApprovalDecision made ``minutes`` before ``at``, its record issued 1 h before."""
    envelope = make_record({"key": key, "decision": kind, "ttl": ttl}, RUN, BASE, at, ENV)
    created = at - timedelta(minutes=minutes)
    return {
        "apiVersion": view.API_VERSION,
        "kind": "ApprovalDecision",
        "metadata": {
            "name": f"{NAME}-{key}{kind}",
            "namespace": NS,
            "uid": f"uid-{key}-{kind}",
            "creationTimestamp": records.format_time(created),
        },
        "spec": {"requestName": NAME, "decision": kind, "approver": key, "record": envelope},
    }


def verdict_of(
    req: dict[str, Any], *decisions: dict[str, Any], now: datetime = NOW, bundle: Bundle = BUNDLE
) -> tuple[QueueVerdict, view.StaticView]:
    current = view.StaticView.build(requests=[req], decisions=decisions)
    return evaluate_request(req, bundle, now, current), current


def created_run(req: dict[str, Any], verdict: QueueVerdict, uid: str = "run-uid") -> dict[str, Any]:
    assert verdict.run is not None
    run = copy.deepcopy(dict(verdict.run))
    run["metadata"] = {**run["metadata"], "uid": uid, "resourceVersion": "9"}
    return run


# --- requests --------------------------------------------------------------------------


def test_a_new_request_is_pending_and_says_who_may_approve_and_when_it_expires() -> None:
    req = request()
    verdict, _ = verdict_of(req)
    plan = plan_request(req, verdict, None, NOW)
    assert plan.create is None
    assert plan.status is not None
    assert plan.status["phase"] == "Pending"
    assert plan.status["reason"] == "WaitingForApprovals"
    assert plan.status["required"] == 2
    assert plan.status["approvedBy"] == []
    assert "requester" not in plan.status["eligible"]
    assert {"alice", "bob", "carol"} <= set(plan.status["eligible"])
    assert plan.status["requestedAt"] == records.format_time(CREATED)
    assert plan.status["expiresAt"] == records.format_time(CREATED + timedelta(seconds=86400))
    assert plan.status["observedGeneration"] == 1
    assert "decidedAt" not in plan.status
    assert plan.transition is not None
    assert (plan.transition.old, plan.transition.new) == ("", "Pending")
    # looked at again when it expires, even if nothing else happens
    assert plan.requeue_after == pytest.approx(86400 - 600 + 0.5)


def test_a_status_already_stored_is_not_written_again() -> None:
    req = request()
    verdict, _ = verdict_of(req)
    first = plan_request(req, verdict, None, NOW)
    assert first.status is not None
    stored = request(**first.status)
    again = plan_request(stored, verdict, None, NOW + timedelta(seconds=30))
    assert again.status is None and again.transition is None


def test_one_approval_of_two_stays_pending_and_names_the_approver() -> None:
    req = request()
    verdict, _ = verdict_of(req, decision("alice"))
    plan = plan_request(req, verdict, None, NOW, decisions=1)
    assert plan.status is not None
    assert plan.status["phase"] == "Pending"
    assert plan.status["approvedBy"] == ["alice"]
    assert "alice" not in plan.status["eligible"]
    assert plan.status["decisions"] == 1
    assert plan.create is None


def test_two_approvals_approve_and_give_the_run_to_create_with_its_records() -> None:
    req = request(phase="Pending", reason="WaitingForApprovals")
    alice, bob = decision("alice", minutes=6), decision("bob")
    verdict, _ = verdict_of(req, alice, bob)
    plan = plan_request(req, verdict, None, NOW, decisions=2)
    assert plan.status is not None
    assert plan.status["phase"] == "Approved"
    assert plan.status["approvedBy"] == ["alice", "bob"]
    assert plan.status["decidedAt"] == records.format_time(NOW)
    assert plan.transition is not None and plan.transition.new == "Approved"
    run = plan.create
    assert run is not None
    meta = run["metadata"]
    assert (meta["name"], meta["namespace"]) == (NAME, NS)  # deterministic: the request's
    assert meta["labels"] == {"team": "lab"}
    assert meta["finalizers"] == [view.USE_FINALIZER]
    notes = meta["annotations"]
    assert notes[view.REQUEST_UID_ANNOTATION] == UID
    assert notes[view.REQUEST_ANNOTATION] == f"{NS}/{NAME}"
    assert notes[records.AUTHOR_ANNOTATION] == "requester"
    carried = json.loads(notes[records.ANNOTATION])
    assert carried == [alice["spec"]["record"], bob["spec"]["record"]]  # decision order
    assert run["spec"] == RUN["spec"]


def test_the_run_created_makes_the_request_submitted_with_the_run_recorded() -> None:
    req = request(phase="Approved", reason="Quorum", decidedAt="2026-11-21T11:59:00Z")
    verdict, _ = verdict_of(req, decision("alice"), decision("bob"))
    run = created_run(req, verdict)
    plan = plan_request(req, verdict, run, NOW, decisions=2)
    assert plan.create is None
    assert plan.status is not None
    assert plan.status["phase"] == "Submitted"
    assert plan.status["reason"] == "RunCreated"
    assert plan.status["run"] == {"name": NAME, "uid": "run-uid"}
    assert plan.status["decidedAt"] == "2026-11-21T11:59:00Z"  # kept, not rewritten
    assert plan.status["submittedAt"] == records.format_time(NOW)
    assert plan.transition is not None
    assert (plan.transition.old, plan.transition.new) == ("Approved", "Submitted")


def test_a_crash_between_create_and_status_converges_to_submitted_without_a_create() -> None:
    """On restart the status still says Pending (or Approved) but the run exists carrying
    this request's uid: it is adopted, whatever the verdict says now (its records may even
    count as used by that very run)."""
    req = request(phase="Pending", reason="WaitingForApprovals")
    approved, _ = verdict_of(req, decision("alice"), decision("bob"))
    run = created_run(req, approved)
    for verdict in (approved, QueueVerdict("Pending", "WaitingForApprovals", "")):
        plan = plan_request(req, verdict, run, NOW)
        assert plan.create is None
        assert plan.status is not None and plan.status["phase"] == "Submitted"


def test_a_name_taken_by_a_run_that_is_not_ours_fails_the_request() -> None:
    req = request(phase="Approved", reason="Quorum")
    verdict, _ = verdict_of(req, decision("alice"), decision("bob"))
    run = created_run(req, verdict)
    run["metadata"]["annotations"][view.REQUEST_UID_ANNOTATION] = "another-request-uid"
    plan = plan_request(req, verdict, run, NOW)
    assert plan.create is None
    assert plan.status is not None
    assert (plan.status["phase"], plan.status["reason"]) == ("Failed", "NameTaken")
    assert "already exists" in plan.status["message"]


def test_a_terminal_request_is_never_rewritten() -> None:
    for phase in ("Submitted", "Rejected", "Expired", "Failed", "Cancelled"):
        req = request(phase=phase, reason="X")
        verdict, _ = verdict_of(req, decision("alice"), decision("bob"))
        later = NOW + timedelta(days=3)
        plan = plan_request(req, verdict, None, later)
        assert plan.status is None and plan.create is None, phase


def test_a_cancelled_request_is_cancelled_and_never_creates_even_with_a_quorum() -> None:
    req = request(phase="Pending")
    req["spec"]["cancelled"] = True
    verdict, _ = verdict_of(req, decision("alice"), decision("bob"))
    plan = plan_request(req, verdict, None, NOW)
    assert plan.create is None
    assert plan.status is not None
    assert (plan.status["phase"], plan.status["reason"]) == ("Cancelled", "CancelledByRequester")


def test_expiry_is_never_an_approval() -> None:
    later = CREATED + timedelta(seconds=86400, minutes=1)
    req = request(phase="Pending")
    alone, _ = verdict_of(req, now=later)
    plan = plan_request(req, alone, None, later)
    assert plan.status is not None
    assert (plan.status["phase"], plan.status["reason"]) == ("Expired", "TimedOut")
    assert plan.transition is not None and plan.transition.event_type == "Warning"
    # approvals signed in time but the request expired: still Expired, nothing created
    fresh = [decision("alice", at=later), decision("bob", at=later)]
    quorum, _ = verdict_of(req, *fresh, now=later)
    assert quorum.approved_by == ("alice", "bob")  # the records count...
    plan = plan_request(req, quorum, None, later)  # ...but the request expired
    assert plan.create is None
    assert plan.status is not None and plan.status["phase"] == "Expired"


def test_a_reject_vetoes() -> None:
    req = request(phase="Pending")
    verdict, _ = verdict_of(req, decision("alice"), decision("bob", "reject"))
    plan = plan_request(req, verdict, None, NOW)
    assert plan.create is None
    assert plan.status is not None
    assert (plan.status["phase"], plan.status["reason"]) == ("Rejected", "Vetoed")
    assert plan.status["rejectedBy"] == ["bob"]
    assert plan.status["eligible"] == []


def test_approved_but_not_yet_created_goes_back_to_pending_when_the_quorum_is_lost() -> None:
    """A withdrawal (or an expired record) before the run exists: no run is created."""
    req = request(phase="Approved", reason="Quorum", decidedAt="2026-11-21T11:59:00Z")
    verdict, _ = verdict_of(req, decision("alice"))
    plan = plan_request(req, verdict, None, NOW)
    assert plan.create is None
    assert plan.status is not None and plan.status["phase"] == "Pending"
    assert plan.transition is not None
    assert (plan.transition.old, plan.transition.new) == ("Approved", "Pending")


def test_a_failed_create_keeps_the_request_approved_and_says_why_until_refused() -> None:
    req = request(phase="Approved", reason="Quorum")
    verdict, _ = verdict_of(req, decision("alice"), decision("bob"))
    transient = plan_request(req, verdict, None, NOW, create_error="HTTP 503")
    assert transient.create is not None
    assert transient.status is not None
    assert (transient.status["phase"], transient.status["reason"]) == ("Approved", "CreateFailed")
    assert "HTTP 503" in transient.status["message"]
    refused = plan_request(req, verdict, None, NOW, create_refused="spec.x: Invalid value")
    assert refused.create is None
    assert refused.status is not None
    assert (refused.status["phase"], refused.status["reason"]) == ("Failed", "CreateFailed")


def test_a_request_for_someone_else_or_another_environment_fails() -> None:
    req = request()
    req["spec"]["environment"] = "staging"
    verdict, _ = verdict_of(req)
    plan = plan_request(req, verdict, None, NOW)
    assert plan.status is not None
    assert (plan.status["phase"], plan.status["reason"]) == ("Failed", "InvalidRequest")


def test_wait_seconds_is_from_creation_to_the_decision() -> None:
    assert wait_seconds(request(), NOW) == 600.0
    assert wait_seconds({"metadata": {}}, NOW) is None


# --- announcements ------------------------------------------------------------------


def test_every_transition_has_an_event_regarding_the_request() -> None:
    req = request(phase="Pending")
    verdict, _ = verdict_of(req, decision("alice"), decision("bob"))
    plan = plan_request(req, verdict, None, NOW)
    assert plan.transition is not None
    event = announce.event(req, plan.transition, NOW, "controller-0")
    assert event["apiVersion"] == "events.k8s.io/v1"
    assert event["regarding"] == {
        "apiVersion": view.API_VERSION,
        "kind": "ApprovalRequest",
        "namespace": NS,
        "name": NAME,
        "uid": UID,
    }
    assert event["action"] == "Approved" and event["reason"] == "Quorum"
    assert event["type"] == "Normal"
    assert event["note"].startswith("Pending -> Approved: approved by alice, bob")
    assert event["eventTime"] == "2026-11-21T12:00:00.000000Z"
    assert event["reportingInstance"] == "controller-0"
    long = announce.event(
        req, type(plan.transition)("Pending", "Failed", "X", "y" * 5000), NOW, "c"
    )
    assert len(long["note"].encode()) <= announce.NOTE_MAX_BYTES


def test_a_signal_delivery_has_the_upstream_crd_required_fields_and_a_stable_name() -> None:
    req = request(phase="Pending")
    verdict, _ = verdict_of(req, decision("alice"), decision("bob"))
    plan = plan_request(req, verdict, None, NOW)
    assert plan.transition is not None and plan.status is not None
    one = announce.signal_delivery(req, plan.transition, plan.status, "approvals")
    two = announce.signal_delivery(req, plan.transition, plan.status, "approvals")
    assert one == two  # a retry names the same object: AlreadyExists, not a second delivery
    assert one["spec"]["signalRef"] == {"name": "approvals"}
    assert one["spec"]["deliveryId"] == f"{UID}.approved"
    assert one["spec"]["payload"]["approvedBy"] == ["alice", "bob"]
    assert len(one["metadata"]["name"]) <= 253


def test_notifications_show_a_look_alike_requester_escaped() -> None:
    """The message approvers read in their chat names bоb (a Cyrillic o) with its escaped
    form, every character named: never read as bob."""
    req = request()
    req["spec"]["requester"] = "b\u043eb"
    verdict, _ = verdict_of(req, decision("alice"))
    plan = plan_request(req, verdict, None, NOW)
    assert plan.status is not None
    text = announce.needs_you(req, plan.status)["text"]
    assert 'requested by b\u043eb ["b\\u043eb" (CYRILLIC SMALL LETTER O)])' in text


def test_notification_texts_name_the_request_and_who_may_approve() -> None:
    req = request()
    verdict, _ = verdict_of(req, decision("alice"))
    plan = plan_request(req, verdict, None, NOW)
    assert plan.status is not None
    text = announce.needs_you(req, plan.status)["text"]
    assert f"{NS}/{NAME}" in text and "requested by requester" in text
    assert "1/2 approvals" in text and "bob" in text and "carol" in text
    assert f"approvalgate approve --request {NS}/{NAME}" in text
    assert "expires at 2026-11-22T11:50:00Z" in announce.expiring(req, plan.status)["text"]


SLACK_BAIT = (
    "hotfix for INC-4711 <!channel> <@U0123ABCD> see "
    "<https://evil.example/approve|approvalgate status agents/other> & approve"
)


def test_a_requesters_reason_never_becomes_a_mention_or_a_link_in_the_chat() -> None:
    """Slack reads ``<...>`` in a message's text as a control sequence: ``<!channel>``
    pings everyone, ``<URL|label>`` shows a link under any label. A requester's reason (and
    anything else the gate did not write itself) goes out escaped (``&lt;`` ``&gt;``
    ``&amp;``), after the gate's own instructions, quoted as the requester's words."""
    req = request()
    req["spec"]["reason"] = SLACK_BAIT
    verdict, _ = verdict_of(req, decision("alice"))
    plan = plan_request(req, verdict, None, NOW)
    assert plan.status is not None and plan.transition is not None
    texts = [
        announce.needs_you(req, plan.status)["text"],
        announce.expiring(req, plan.status)["text"],
        announce.decided(req, dataclasses.replace(plan.transition, message=SLACK_BAIT))["text"],
    ]
    for text in texts:
        assert "<" not in text and ">" not in text, text
        assert "&" not in text.replace("&lt;", "").replace("&gt;", "").replace("&amp;", "")
    needs = texts[0]
    assert "&lt;!channel&gt;" in needs and "&lt;https://evil.example/approve|" in needs
    command = needs.index(f"approvalgate approve --request {NS}/{NAME}")
    assert command < needs.index("INC-4711"), "the requester's words come after the command"
    assert "The requester's reason: \"hotfix for INC-4711 &lt;!channel&gt;" in needs
    assert '&amp; approve"' in needs


# --- the ledger ----------------------------------------------------------------------


def admitted_run(deleting: bool = False) -> dict[str, Any]:
    req = request()
    verdict, _ = verdict_of(req, decision("alice", ttl="2h"), decision("bob", ttl="3h"))
    run = created_run(req, verdict, uid="run-uid-1")
    if deleting:
        run["metadata"]["deletionTimestamp"] = records.format_time(NOW)
    run["metadata"]["finalizers"] = ["other.example/keep", view.USE_FINALIZER]
    return run


def test_the_use_of_a_run_lists_the_sha256_of_each_record_payload_and_the_latest_expiry() -> None:
    run = admitted_run()
    use = ledger.use_object(run, BUNDLE, NOW)
    assert use["metadata"]["name"] == "run-uid-1"
    assert use["metadata"]["namespace"] == NS
    envelopes = json.loads(run["metadata"]["annotations"][records.ANNOTATION])
    import base64

    digests = sorted(hashlib.sha256(base64.b64decode(e["payload"])).hexdigest() for e in envelopes)
    assert use["spec"]["statements"] == digests
    assert use["spec"]["run"] == {"name": NAME, "uid": "run-uid-1", "requestUid": UID}
    assert use["spec"]["environment"] == ENV
    assert use["spec"]["specDigest"] == BUNDLE.spec_digest(RUN["spec"])
    parsed, _ = records.parse_annotation(run["metadata"]["annotations"][records.ANNOTATION])
    assert use["spec"]["expiresAt"] == records.format_time(max(r.claim.expires_at for r in parsed))
    # and the view reads it back as a use of those statements by this run
    read = view.Use.of({**use, "metadata": {**use["metadata"], "creationTimestamp": "x"}})
    assert read is not None and read.statements == frozenset(digests)


def test_the_use_also_records_cluster_approvals_issued_before_the_run_was_created() -> None:
    """A cluster approval the run does not carry may still have counted for it (decide
    reads the view): recorded too, unless it was issued after the run existed."""
    run = admitted_run()
    run["metadata"]["creationTimestamp"] = records.format_time(NOW)
    before = decision("carol")  # issued an hour before NOW
    after = decision("requester", at=NOW + timedelta(hours=3))  # issued 2 h after
    cluster = view.StaticView.build(decisions=[before, after])
    statements = set(ledger.use_object(run, BUNDLE, NOW, cluster)["spec"]["statements"])
    alone = set(ledger.use_object(run, BUNDLE, NOW)["spec"]["statements"])
    parsed, _ = records.parse_annotation(json.dumps([before["spec"]["record"]]))
    assert statements == alone | {view.statement_digest(parsed[0])}
    plan = ledger.plan_run(run, BUNDLE, None, NOW, cluster)
    assert plan.create_use is not None
    assert set(plan.create_use["spec"]["statements"]) == statements


def _direct_run(uid: str, created: datetime, *carried: dict[str, Any]) -> dict[str, Any]:
    """RUN as a requester applies it: with the use finalizer, a uid and a creationTimestamp
    (the API server stamps both before admission), carrying ``carried``."""
    run = copy.deepcopy(RUN)
    meta = run["metadata"]
    meta.update(uid=uid, creationTimestamp=records.format_time(created))
    meta["finalizers"] = [view.USE_FINALIZER]
    meta["annotations"] = {records.ANNOTATION: json.dumps(list(carried))} if carried else {}
    return run


@pytest.mark.parametrize(
    "operation",
    ["CREATE", "UPDATE"],
    ids=["created-within-the-skew", "template-made-live-later"],
)
def test_every_approval_an_admission_counts_is_recorded_by_the_runs_use(operation: str) -> None:
    """Replay through the ledger's time cut (class 21): the use records the cluster
    approvals issued by the run's creation (plus the clock skew), and nothing else. An
    admission that counted a later one (CREATE: within the skew of the admission, which
    comes after the creationTimestamp the API server truncated to the second; UPDATE: a
    template made live on approvals filed since) left it unrecorded, so that, once the run
    was deleted, the same approval admitted a second run of the name."""
    first_at = NOW - timedelta(hours=3) if operation == "UPDATE" else NOW - timedelta(seconds=1)
    # the template's own approvals, expired by now (none on a run created outright)
    expired = [
        make_record({"key": k, "ttl": "1h"}, RUN, BASE, first_at, ENV) for k in ("alice", "bob")
    ]
    run = _direct_run("run-uid-1", first_at, *(expired if operation == "UPDATE" else ()))
    late = NOW + BUNDLE.clock_skew  # issued as late as an admission at NOW allows
    if operation == "UPDATE":
        late = NOW - timedelta(minutes=5)  # filed long after the template was created
    filed = [decision(k, at=late + timedelta(hours=1)) for k in ("alice", "bob")]
    cluster = view.StaticView.build(decisions=filed)
    if operation == "UPDATE":  # admitted as a template on bob's (valid) approval, then live
        old = copy.deepcopy(run)
        old["metadata"]["annotations"]["agents.proompteng.ai/template"] = "true"
        admission = request_for_manifest(run, operation="UPDATE", username="requester", old=old)
        admission["oldObject"] = old
    else:
        admission = request_for_manifest(run, username="requester")
    first = decide(admission, BUNDLE, NOW, cluster)
    use = ledger.use_object(run, BUNDLE, NOW, cluster)
    use["metadata"]["creationTimestamp"] = records.format_time(NOW)
    later = NOW + timedelta(minutes=2)  # run-uid-1 deleted, its finalizer released
    again = _direct_run("run-uid-2", later)
    recorded = view.StaticView.build(decisions=filed, uses=[use])
    second = decide(request_for_manifest(again, username="requester"), BUNDLE, later, recorded)
    assert not (first.allowed and second.allowed), (first.message, second.message)
    assert not first.allowed and "issued after the run was created" in first.message


def _filed(key: str, issued: datetime, created: datetime) -> dict[str, Any]:
    """An ApprovalDecision of ``key`` issued at ``issued``, which the API server created at
    ``created``."""
    made = decision(key, at=issued + timedelta(hours=1))
    made["metadata"]["creationTimestamp"] = records.format_time(created)
    return made


def _released(run: dict[str, Any], at: datetime, cluster: view.ClusterView) -> Any:
    """decide() on the controller's removal of the use finalizer from ``run``, deleted."""
    old = copy.deepcopy(run)
    old["metadata"]["deletionTimestamp"] = records.format_time(at)
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = []
    admission = request_for_manifest(
        new, operation="UPDATE", username="system:serviceaccount:gates:controller", old=old
    )
    admission["oldObject"] = old
    return decide(admission, BUNDLE, at, cluster)


def test_a_decision_filed_after_the_run_was_created_neither_counts_nor_holds_its_finalizer() -> (
    None
):
    """An ApprovalDecision for the run's name and spec, issued within the clock skew of the
    run's creation but filed after its ApprovalUse was written: the release of the
    finalizer asked the use for it, and the use (written once) lacked it, so the run could
    not be deleted until that approval expired. Now the ledger, the release and every
    admission cut at the run's creation by the API server's clock (the ApprovalDecision's
    creationTimestamp, which no client sets): filed later, it counts for no admission of
    the run, is not asked of its use, and admits the next run of the name as its first, and
    only, run (no replay)."""
    created = NOW - timedelta(minutes=10)
    carried = [make_record({"key": k}, RUN, BASE, created, ENV) for k in ("alice", "bob")]
    run = _direct_run("run-uid-1", created, *carried)
    use = ledger.use_object(run, BUNDLE, created, view.EMPTY)  # written before the decisions
    use["metadata"]["creationTimestamp"] = records.format_time(created + timedelta(seconds=1))
    issued = created + timedelta(seconds=20)  # within the skew of the creation
    late = [_filed(k, issued, created + timedelta(seconds=30)) for k in ("carol", "alice")]
    cluster = view.StaticView.build(decisions=late, uses=[use])
    # the controller, seeing them now, would record none; the release asks for none
    assert used_statements(run, BUNDLE, cluster)[0] == sorted(use["spec"]["statements"])
    release = _released(run, NOW, cluster)
    assert (release.allowed, release.reason) == (True, "deleting-object"), release.message
    # the run made a template and live again (its carried approvals still valid) cannot
    # count them: an UPDATE that needs them is denied, naming why
    expired = [
        make_record({"key": k, "ttl": "1h"}, RUN, BASE, created - timedelta(hours=2), ENV)
        for k in ("alice", "bob")
    ]
    template = _direct_run("run-uid-1", created, *expired)
    live = copy.deepcopy(template)
    template["metadata"]["annotations"]["agents.proompteng.ai/template"] = "true"
    admission = request_for_manifest(live, operation="UPDATE", username="requester", old=template)
    admission["oldObject"] = template
    made_live = decide(admission, BUNDLE, NOW, cluster)
    assert not made_live.allowed
    assert "filed after the run was created" in made_live.message, made_live.message
    # the next run of the name is their first: admitted, and its use records them
    later = NOW + timedelta(minutes=2)
    again = _direct_run("run-uid-2", later)
    second = decide(request_for_manifest(again, username="requester"), BUNDLE, later, cluster)
    assert second.allowed, second.message
    use2 = ledger.use_object(again, BUNDLE, later, cluster)
    parsed, _ = records.parse_annotation(json.dumps([d["spec"]["record"] for d in late]))
    assert set(use2["spec"]["statements"]) == {view.statement_digest(r) for r in parsed}
    use2["metadata"]["creationTimestamp"] = records.format_time(later)
    recorded = view.StaticView.build(decisions=late, uses=[use, use2])
    third_at = later + timedelta(minutes=2)
    third = _direct_run("run-uid-3", third_at)
    denied = decide(request_for_manifest(third, username="requester"), BUNDLE, third_at, recorded)
    assert not denied.allowed and "already used by run" in denied.message, denied.message


def test_a_decision_filed_by_the_runs_creation_is_still_asked_of_its_use() -> None:
    """The cut is the creation second, inclusive: a decision filed within it may have been
    counted by the run's CREATE (its admission comes after the truncated timestamp), so a
    use that lacks it still holds the finalizer (fail closed), and counts it for the run."""
    created = NOW - timedelta(minutes=10)
    carried = [make_record({"key": k}, RUN, BASE, created, ENV) for k in ("alice", "bob")]
    run = _direct_run("run-uid-1", created, *carried)
    use = ledger.use_object(run, BUNDLE, created, view.EMPTY)
    use["metadata"]["creationTimestamp"] = records.format_time(created)
    same = _filed("carol", created, created)
    cluster = view.StaticView.build(decisions=[same], uses=[use])
    assert len(used_statements(run, BUNDLE, cluster)[0]) == 3
    release = _released(run, NOW, cluster)
    assert (release.allowed, release.reason) == (False, "use-incomplete"), release.message
    assert "cluster record 2 (approve by carol)" in release.message


def test_a_use_records_only_the_runs_own_approvals_not_copies_of_others() -> None:
    """A requester copies other runs' approvals (from git, a run's annotation, or the
    ApprovalDecisions she may read) onto a run of her own that is admitted anyway (its own
    approvals, a namespace not enforced, a policy in warn): the ledger must not record them
    as used by it, or they would admit nothing else (class 21, denial of service through
    the controller). Only approve/bypass records for this run's name and environment, signed
    by a key of the approver they name, are the run's (of its spec or not)."""
    victim = copy.deepcopy(RUN)
    victim["metadata"]["name"] = "victims-run"
    foreign = [
        make_record({"key": "alice"}, victim, BASE, NOW, ENV),  # another run's approval
        make_record({"key": "carol", "environment": "staging"}, RUN, BASE, NOW, ENV),
        make_record({"key": "carol", "approver": "bob"}, RUN, BASE, NOW, ENV),  # forged
        make_record({"key": "carol", "decision": "reject", "reason": "no"}, RUN, BASE, NOW, ENV),
    ]
    for namespace in (NS, "sandbox"):  # enforced or not, the controller writes its use
        run = admitted_run()
        run["metadata"]["namespace"] = namespace
        own = json.loads(run["metadata"]["annotations"][records.ANNOTATION])
        own = [
            make_record({"key": k}, run, BASE, NOW, ENV) if namespace != NS else e
            for k, e in zip(("alice", "bob"), own, strict=True)
        ]
        run["metadata"]["annotations"][records.ANNOTATION] = json.dumps([*own, *foreign])
        use = ledger.use_object(run, BUNDLE, NOW)
        parsed, _ = records.parse_annotation(json.dumps(own))
        assert sorted(use["spec"]["statements"]) == sorted(
            view.statement_digest(r) for r in parsed
        ), namespace
        assert use["spec"]["expiresAt"] == records.format_time(
            max(r.claim.expires_at for r in parsed)
        )


def test_a_use_records_no_cluster_approval_of_another_spec_of_the_name() -> None:
    """Someone's run of the same name as a pending request, with another spec, admitted on
    its own (its approvals, a policy in warn, noMatch allow): its use must not list the
    request's ApprovalDecisions, which approve another spec and could not have counted for
    it, or once it is gone they would be "already used" (a denial of service through the
    ledger, class 21). Those of its own spec are recorded, as before."""
    decoy = copy.deepcopy(RUN)
    decoy["spec"]["parameters"]["task"] = "the decoy's own task"
    run = _direct_run("decoy-uid", NOW - timedelta(minutes=1))
    run["spec"] = decoy["spec"]
    victims = [decision(k) for k in ("alice", "bob")]  # approve RUN's spec, the request's
    mine = make_record({"key": "carol"}, decoy, BASE, NOW, ENV)
    own = {**decision("carol"), "spec": {**decision("carol")["spec"], "record": mine}}
    cluster = view.StaticView.build(decisions=[*victims, own])
    statements = ledger.use_object(run, BUNDLE, NOW, cluster)["spec"]["statements"]
    parsed, _ = records.parse_annotation(json.dumps([mine]))
    assert statements == [view.statement_digest(parsed[0])]


def _use(run: dict[str, Any], created: datetime) -> view.Use:
    obj = ledger.use_object(run, BUNDLE, NOW)
    obj["metadata"]["creationTimestamp"] = records.format_time(created)
    use = view.Use.of(obj)
    assert use is not None
    return use


def test_a_run_without_its_use_gets_one_and_keeps_its_finalizer() -> None:
    plan = ledger.plan_run(admitted_run(deleting=True), BUNDLE, None, NOW)
    assert plan.create_use is not None and plan.remove_finalizer is None


def test_the_finalizer_goes_only_once_the_use_has_settled_and_only_ours() -> None:
    run = admitted_run(deleting=True)
    young = ledger.plan_run(run, BUNDLE, _use(run, NOW - timedelta(seconds=1)), NOW)
    assert young.remove_finalizer is None
    assert young.requeue_after is not None and 0 < young.requeue_after <= BUNDLE.use_settle_seconds
    settled = ledger.plan_run(run, BUNDLE, _use(run, NOW - timedelta(seconds=60)), NOW)
    assert settled.remove_finalizer == [
        {"op": "test", "path": "/metadata/finalizers/1", "value": view.USE_FINALIZER},
        {"op": "remove", "path": "/metadata/finalizers/1"},
    ]


def test_a_live_run_with_its_use_needs_nothing_and_without_the_view_nothing_is_recorded() -> None:
    run = admitted_run()
    assert ledger.plan_run(run, BUNDLE, _use(run, NOW - timedelta(hours=1)), NOW) == (
        ledger.RunPlan()
    )
    assert ledger.plan_run(admitted_run(), BUNDLE_OFF, None, NOW) == ledger.RunPlan()
    bare = admitted_run(True)
    bare["metadata"]["finalizers"] = ["other.example/keep"]
    assert ledger.plan_run(bare, BUNDLE, None, NOW) == ledger.RunPlan()


def test_without_the_view_a_deleted_run_loses_the_finalizer_at_once() -> None:
    """An environment switched to clusterView: off must not leave runs stuck deleting."""
    plan = ledger.plan_run(admitted_run(deleting=True), BUNDLE_OFF, None, NOW)
    assert plan.create_use is None
    assert plan.remove_finalizer is not None and plan.remove_finalizer[1]["op"] == "remove"


@pytest.mark.parametrize("deleting", [False, True])
@pytest.mark.parametrize("finalizers", [[], ["other.example/keep"], None])
@pytest.mark.parametrize("derived", [False, True])
@pytest.mark.parametrize("uid", ["run-uid-1", ""])
@pytest.mark.parametrize("recorded", ["none", "young", "settled"])
@pytest.mark.parametrize("bundle", [BUNDLE, BUNDLE_OFF], ids=["view", "no-view"])
def test_a_run_the_ledger_does_not_await_has_an_empty_plan_at_any_time(
    deleting: bool,
    finalizers: list[str] | None,
    derived: bool,
    uid: str,
    recorded: str,
    bundle: Bundle,
) -> None:
    """What the controller skips (a change or a resync of a run it does not queue,
    issue 18) is what would plan nothing, now or later."""
    run = admitted_run(deleting)
    if finalizers is not None:
        run["metadata"]["finalizers"] = finalizers
    if derived:
        run["metadata"].setdefault("labels", {})["schedules.proompteng.ai/schedule"] = "nightly"
    run["metadata"]["uid"] = uid
    use = None
    if recorded != "none" and uid:
        ago = timedelta(seconds=1) if recorded == "young" else timedelta(hours=1)
        use = _use(run, NOW - ago)
    awaited = ledger.awaits_ledger(run, bundle, use)
    for at in (NOW, NOW + timedelta(days=2)):
        if not awaited:
            assert ledger.plan_run(run, bundle, use, at) == ledger.RunPlan()
    if use is None and uid and bundle is BUNDLE and finalizers is None:
        assert awaited  # a run holding the finalizer without its use: always looked at


def test_collection_takes_expired_decisions_and_uses_of_runs_that_are_gone() -> None:
    assert not ledger.decision_expired(decision("alice", ttl="2h"), NOW)
    assert ledger.decision_expired(decision("alice", ttl="2h"), NOW + timedelta(hours=2))
    assert ledger.decision_expired({"metadata": {}, "spec": {"record": {"x": 1}}}, NOW)
    # with the bundle, as the webhook allows the delete: an expired reject or withdrawal
    # still counts against approvals issued before it, for timeoutSeconds (1 day) more
    for kind in ("approve", "reject", "withdraw"):
        obj = decision("alice", kind, ttl="2h")  # issued NOW - 1h, expires NOW + 1h
        assert not ledger.decision_expired(obj, NOW, BUNDLE)
        held = kind != "approve"
        assert ledger.decision_expired(obj, NOW + timedelta(hours=1), BUNDLE) is not held
        assert ledger.decision_expired(obj, NOW + timedelta(hours=25), BUNDLE)
    run = admitted_run()
    use = ledger.use_object(run, BUNDLE, NOW)
    after = NOW + timedelta(hours=4)
    assert not ledger.use_expired(use, NOW, frozenset())
    assert not ledger.use_expired(use, after, frozenset({"run-uid-1"}))  # run still there
    assert ledger.use_expired(use, after, frozenset())


def test_collection_keeps_a_withdrawal_or_reject_signed_by_a_clock_behind_from_its_filing() -> None:
    """Signed by a clock a day behind (issued at NOW - 25h, expiring an hour later), filed
    five minutes ago: it takes back (vetoes) the approvals issued by its filing, which live
    a day (timeoutSeconds) after it. The controller collected it at once, on its signer's
    dates, reviving the approvals it took back."""
    for kind in ("reject", "withdraw"):
        obj = decision("alice", kind, ttl="1h", at=NOW - timedelta(hours=24))
        obj["metadata"]["creationTimestamp"] = records.format_time(NOW - timedelta(minutes=5))
        assert not ledger.decision_expired(obj, NOW, BUNDLE)
        assert not ledger.decision_expired(obj, NOW + timedelta(hours=23), BUNDLE)
        assert ledger.decision_expired(obj, NOW + timedelta(hours=24), BUNDLE)


def test_approvals_a_template_is_given_when_made_live_neither_count_nor_hold_its_finalizer() -> (
    None
):
    """Carried approvals through the ledger's time cut: a template run, created with
    approvals that have expired since, is made live by an UPDATE that also puts fresh ones
    on its annotation, issued long after its creation. Its use, written at its creation,
    lacks them: they admitted it unrecorded, and the release of its finalizer asked for them
    (held until they expired). Now an approval counts for a run, is recorded by its use and
    is asked at the release only if issued by the run's creation plus the clock skew,
    carried or filed alike; the fresh ones admit the next run of the name, as its first."""
    created = NOW - timedelta(hours=3)
    expired = [
        make_record({"key": k, "ttl": "1h"}, RUN, BASE, created, ENV) for k in ("alice", "bob")
    ]
    template = _direct_run("run-uid-1", created, *expired)
    template["metadata"]["annotations"]["agents.proompteng.ai/template"] = "true"
    use = ledger.use_object(template, BUNDLE, created, view.EMPTY)
    use["metadata"]["creationTimestamp"] = records.format_time(created + timedelta(seconds=1))
    fresh = [make_record({"key": k}, RUN, BASE, NOW, ENV) for k in ("alice", "bob")]
    live = _direct_run("run-uid-1", created, *fresh)
    admission = request_for_manifest(live, operation="UPDATE", username="requester", old=template)
    admission["oldObject"] = template
    cluster = view.StaticView.build(uses=[use])
    made_live = decide(admission, BUNDLE, NOW, cluster)
    assert not made_live.allowed
    assert "record 0 by alice: issued after the run was created" in made_live.message
    # the controller, seeing the live run, would record none of them; the release asks none
    assert set(used_statements(live, BUNDLE, cluster)[0]) <= set(use["spec"]["statements"])
    release = _released(live, NOW, cluster)
    assert (release.allowed, release.reason) == (True, "deleting-object"), release.message
    later = NOW + timedelta(minutes=2)
    again = _direct_run("run-uid-2", later, *fresh)
    second = decide(request_for_manifest(again, username="requester"), BUNDLE, later, cluster)
    assert second.allowed, second.message


def test_the_use_of_a_run_names_the_request_it_was_created_from() -> None:
    """The run's use keeps which request created it: the request's history outlives the
    run (a run used and deleted before the controller wrote Submitted)."""
    req = request(phase="Approved", reason="Quorum")
    verdict, _ = verdict_of(req, decision("alice"), decision("bob"))
    run = created_run(req, verdict)
    use = ledger.use_object(run, BUNDLE, NOW)
    assert use["spec"]["run"] == {"name": NAME, "uid": "run-uid", "requestUid": UID}
    read = view.Use.of(use)
    assert read is not None and read.request_uid == UID
    built = view.StaticView.build(uses=[use])
    assert built.use_of_request(NS, UID) == read
    assert built.use_of_request(NS, "another") is None
    assert built.use_of_request("elsewhere", UID) is None
    direct = admitted_run()  # not created from a request: names none
    del direct["metadata"]["annotations"][view.REQUEST_UID_ANNOTATION]
    assert "requestUid" not in ledger.use_object(direct, BUNDLE, NOW)["spec"]["run"]


def test_a_run_created_used_and_gone_before_submitted_was_written_is_never_created_again() -> None:
    """The controller created the run, then could not write Submitted (it died, lost the
    Lease, its writes failed); the run was used and deleted before it looked again. Its
    approvals are used now, so the verdict says Pending, and fresh approvals would make it
    Approved: the use naming this request keeps it Submitted, the run it made recorded,
    and nothing is created."""
    req = request(phase="Approved", reason="Quorum", decidedAt="2026-11-21T11:59:00Z")
    approved, _ = verdict_of(req, decision("alice"), decision("bob"))
    run = created_run(req, approved)
    use_obj = ledger.use_object(run, BUNDLE, NOW)
    use_obj["metadata"]["creationTimestamp"] = records.format_time(NOW)
    current = view.StaticView.build(
        requests=[req], decisions=[decision("alice"), decision("bob")], uses=[use_obj]
    )
    used = evaluate_request(req, BUNDLE, NOW, current)
    assert used.phase == "Pending"  # what the old controller wrote: its approvals are used
    use = current.use_of_request(NS, UID)
    assert use is not None
    fresh, _ = verdict_of(req, decision("alice", at=NOW), decision("bob", at=NOW))
    for verdict in (used, fresh):
        plan = plan_request(req, verdict, None, NOW, use=use)
        assert plan.create is None
        assert plan.status is not None
        assert (plan.status["phase"], plan.status["reason"]) == ("Submitted", "RunCreated")
        assert plan.status["run"] == {"name": NAME, "uid": "run-uid"}
        assert plan.status["decidedAt"] == "2026-11-21T11:59:00Z"
    # a run of the name another made since is not ours, but we made one: Submitted all the same
    other = created_run(req, approved, uid="other-uid")
    other["metadata"]["annotations"][view.REQUEST_UID_ANNOTATION] = "someone-else"
    plan = plan_request(req, fresh, other, NOW, use=use)
    assert plan.create is None
    assert plan.status is not None and plan.status["run"] == {"name": NAME, "uid": "run-uid"}
    # a use of a run of another name, or of another request, is not this request's
    for name, uid in ((NAME + "-x", UID), (NAME, "another-request")):
        elsewhere = dataclasses.replace(use, run_name=name, request_uid=uid)
        plan = plan_request(req, fresh, None, NOW, use=elsewhere)
        assert plan.create is not None, (name, uid)


def test_a_quorum_within_the_clock_skew_of_the_expiry_is_expired_never_created() -> None:
    """The request expires at its creation (the API server's clock) plus the timeout; the
    controller reads its own clock, which may be behind by up to the bundle's
    clockSkewSeconds. A quorum reached 30 s before the expiry by the controller's clock may
    be 30 s after it by the API server's: Expired, nothing created (expiry is never an
    approval, on any clock the bundle allows)."""
    expiry = CREATED + timedelta(seconds=86400)
    at = expiry - timedelta(seconds=30)
    assert BUNDLE.clock_skew > timedelta(seconds=30)
    req = request(phase="Pending")
    verdict, _ = verdict_of(req, decision("alice", at=at), decision("bob", at=at), now=at)
    plan = plan_request(req, verdict, None, at)
    assert plan.create is None
    assert plan.status is not None
    assert (plan.status["phase"], plan.status["reason"]) == ("Expired", "TimedOut")
    # beyond the skew before the expiry, the quorum creates the run
    early = expiry - BUNDLE.clock_skew - timedelta(seconds=1)
    verdict, _ = verdict_of(req, decision("alice", at=early), decision("bob", at=early), now=early)
    assert plan_request(req, verdict, None, early).create is not None


def test_the_use_of_a_gone_run_is_kept_while_its_request_has_not_recorded_it() -> None:
    """The use is the request's memory of its run until the request says Submitted: a run
    needing no approval has a use that expires at once, and collecting it while the
    request's Submitted write still fails would let a later reconcile create the run
    again. Kept while its request is there and not terminal; collected once it is."""
    req = request(phase="Approved", reason="Quorum")
    verdict, _ = verdict_of(req, decision("alice"), decision("bob"))
    use = ledger.use_object(created_run(req, verdict), BUNDLE, NOW)
    after = NOW + timedelta(hours=4)
    assert ledger.use_expired(use, after, frozenset())
    assert not ledger.use_expired(use, after, frozenset(), frozenset({UID}))
    assert ledger.use_expired(use, after, frozenset(), frozenset({"another-request"}))


def test_a_requesters_reason_shows_in_the_chat_as_typed_on_one_line() -> None:
    """Slack has no escape for its emphasis marks, and a chat client breaks lines at ``\\n``,
    U+2028 and U+2029: a reason could print a bold "APPROVED" or a line of its own that reads
    as the gate's, or reorder the text after it with a bidi override. Every message goes out
    with Slack's markup parsing off, and line breaks and hidden characters written as
    ``<U+XXXX>`` (shown, entity-escaped), as ``status`` and the console write them."""
    req = request()
    req["spec"]["reason"] = (
        "*APPROVED* by _alice_ ~no~ `ok`\nApproved by alice\u2028Approved by bob"
        "\u2029done\r\u202eevil\u200b"
    )
    verdict, _ = verdict_of(req, decision("alice"))
    plan = plan_request(req, verdict, None, NOW)
    assert plan.status is not None and plan.transition is not None
    messages = [
        announce.needs_you(req, plan.status),
        announce.expiring(req, plan.status),
        announce.decided(req, dataclasses.replace(plan.transition, message=req["spec"]["reason"])),
    ]
    for message in messages:
        assert message["mrkdwn"] is False, message
        text = message["text"]
        assert isinstance(text, str)
        assert not any(c in text for c in "\n\r\u2028\u2029\u202e\u200b"), text
    needs = messages[0]["text"]
    assert isinstance(needs, str)
    assert (
        "*APPROVED* by _alice_ ~no~ `ok`&lt;U+000A&gt;Approved by alice&lt;U+2028&gt;Approved"
        " by bob&lt;U+2029&gt;done&lt;U+000D&gt;&lt;U+202E&gt;evil&lt;U+200B&gt;"
    ) in needs
