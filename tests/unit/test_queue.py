"""approvals.queue.evaluate_request: the phase of one ApprovalRequest, and the run the
controller creates from it.

The bundle is the decision corpus's ``_base`` (two of alice, bob, carol, requester; veto;
oncall may bypass; timeoutSeconds 86400) in prod with the cluster view required. Decisions
are ApprovalDecision objects in a :class:`StaticView`, their records signed at test time.
Every Approved verdict is checked the way it will be used: its run, created by the
controller's ServiceAccount, must be admitted by decide() with the same view.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approvalgate.approvals import records
from approvalgate.approvals.admission import request_for_manifest
from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.decide import decide
from approvalgate.approvals.digest import spec_digest
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.policy import BundleSettings, compile_bundle, dump_bundle
from approvalgate.approvals.queue import PHASES, QueueVerdict, evaluate_request, run_manifest
from approvalgate.approvals.view import (
    API_VERSION,
    REQUEST_ANNOTATION,
    REQUEST_UID_ANNOTATION,
    USE_FINALIZER,
    StaticView,
)
from tests.support.corpus import BASE, CORPUS_ENVIRONMENT, DEFAULT_NOW, make_record

NOW = records.parse_time(DEFAULT_NOW)
NS = "agents"
CONTROLLER = "system:serviceaccount:approvalgate-system:approvalgate-controller"
RUN: dict[str, Any] = dict(load_manifests((BASE / "run.yaml").read_text())[0].obj)
NAME = RUN["metadata"]["name"]
TIMEOUT = timedelta(seconds=86400)


def _bundle(**policy_spec: Any) -> Bundle:
    docs = []
    for name in ("policies.yaml", "approvers.yaml"):
        docs += [
            copy.deepcopy(dict(d.obj)) for d in load_manifests((BASE / name).read_text()) if d.obj
        ]
    docs[0]["spec"].update(policy_spec)
    bundle, problems = compile_bundle(
        docs,
        BundleSettings(
            environment=CORPUS_ENVIRONMENT, cluster_view="required", referenced_content="off"
        ),
    )
    assert bundle is not None, problems
    return parse_bundle_text(dump_bundle(bundle))


BUNDLE = _bundle()


def approval_request(
    requester: str = "requester", created: datetime = NOW - timedelta(hours=1), **spec: Any
) -> dict[str, Any]:
    run = copy.deepcopy(RUN)
    run["metadata"] = {
        "name": NAME,
        "labels": {"team": "onboarding"},
        "annotations": {"note": "kept"},
    }
    body: dict[str, Any] = {
        "requester": requester,
        "environment": CORPUS_ENVIRONMENT,
        "reason": "ship the onboarding fix",
        "specDigest": spec_digest(run["spec"]),
        "cancelled": False,
        "run": run,
    }
    body.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "ApprovalRequest",
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "uid": "request-uid-1",
            "creationTimestamp": records.format_time(created),
        },
        "spec": body,
    }


def decision(
    key: str,
    what: str = "approve",
    at: str = "2026-11-21T11:00:00Z",
    filed: str = "",
    **recipe: Any,
) -> dict[str, Any]:
    """An ApprovalDecision for the request, created when its record was issued (or at
    ``filed``, the API server's creationTimestamp, where the signer's clock was wrong)."""
    run = copy.deepcopy(RUN)
    envelope = make_record({"key": key, "decision": what, "issuedAt": at, **recipe}, run, BASE, NOW)
    meta = {"name": f"{NAME}-{key}-{what}-{at}", "namespace": NS, "creationTimestamp": filed or at}
    return {
        "apiVersion": API_VERSION,
        "kind": "ApprovalDecision",
        "metadata": meta,
        "spec": {
            "requestName": NAME,
            "decision": what,
            "approver": recipe.get("approver", key),
            "record": envelope,
        },
    }


def view(request: dict[str, Any], *decisions: dict[str, Any], **more: Any) -> StaticView:
    return StaticView.build(requests=[request], decisions=list(decisions), **more)


def evaluate(
    request: dict[str, Any],
    *decisions: dict[str, Any],
    bundle: Bundle = BUNDLE,
    now: datetime = NOW,
    courier: str = CONTROLLER,
    **more: Any,
) -> QueueVerdict:
    verdict = evaluate_request(request, bundle, now, view(request, *decisions, **more), courier)
    assert verdict.reason != "InternalError", verdict.message
    assert verdict.phase in PHASES
    if verdict.phase == "Approved":
        _created_run_is_admitted(verdict, request, decisions, bundle, now, courier, **more)
    else:
        assert verdict.run is None
    return verdict


def _created_run_is_admitted(
    verdict: QueueVerdict,
    request: dict[str, Any],
    decisions: tuple[dict[str, Any], ...],
    bundle: Bundle,
    now: datetime,
    courier: str,
    **more: Any,
) -> None:
    """The run the controller creates is admitted: created by the same ``courier`` the
    verdict was evaluated for (the controller's own identity)."""
    assert verdict.run is not None
    admission = request_for_manifest(
        verdict.run, username=courier, groups=["system:serviceaccounts"]
    )
    admission["object"]["metadata"]["uid"] = "run-uid-1"  # the API server sets it
    answer = decide(admission, bundle, now, view(request, *decisions, **more))
    assert answer.allowed, answer.message


# --- phases -------------------------------------------------------------------------------


def test_a_request_without_decisions_is_pending_with_who_may_approve() -> None:
    request = approval_request()
    verdict = evaluate(request)
    assert (verdict.phase, verdict.reason) == ("Pending", "WaitingForApprovals")
    assert verdict.required == 2
    assert verdict.eligible == ("alice", "bob", "carol")  # the requester is named but excluded
    assert verdict.approved_by == verdict.rejected_by == verdict.withdrawn_by == ()
    assert verdict.expires_at == NOW - timedelta(hours=1) + TIMEOUT
    assert "0 of 2 required approvals" in verdict.message


def test_one_approval_is_pending_and_leaves_the_others_eligible() -> None:
    verdict = evaluate(approval_request(), decision("alice"))
    assert (verdict.phase, verdict.approved_by, verdict.eligible) == (
        "Pending",
        ("alice",),
        ("bob", "carol"),
    )


def test_the_requester_and_the_courier_are_never_eligible() -> None:
    verdict = evaluate(approval_request("alice"), courier="bob")
    assert verdict.eligible == ("carol", "requester")  # the approver named requester is not


def test_two_approvals_approve_and_the_run_carries_everything() -> None:
    request = approval_request()
    alice, bob = decision("alice"), decision("bob", at="2026-11-21T11:10:00Z")
    verdict = evaluate(request, alice, bob)
    assert (verdict.phase, verdict.reason) == ("Approved", "Quorum")
    assert verdict.approved_by == ("alice", "bob")
    assert verdict.message == "approved by alice, bob"
    run = verdict.run
    assert run is not None
    meta = run["metadata"]
    assert (run["apiVersion"], run["kind"]) == (RUN["apiVersion"], "AgentRun")
    assert (meta["name"], meta["namespace"]) == (NAME, NS)
    assert run["spec"] == RUN["spec"]
    assert meta["labels"] == {"team": "onboarding"}
    assert meta["finalizers"] == [USE_FINALIZER]
    annotations = meta["annotations"]
    assert annotations["note"] == "kept"
    assert annotations[records.AUTHOR_ANNOTATION] == "requester"
    assert annotations[REQUEST_UID_ANNOTATION] == "request-uid-1"
    assert annotations[REQUEST_ANNOTATION] == f"{NS}/{NAME}"
    carried = json.loads(annotations[records.ANNOTATION])
    assert carried == [alice["spec"]["record"], bob["spec"]["record"]]  # in decision order


def test_the_run_is_admitted_once_only() -> None:
    """After the run is created and its use recorded, the same approvals admit no other run
    of that name (a controller that lost track and creates it again is denied)."""
    request = approval_request()
    decisions = (decision("alice"), decision("bob"))
    verdict = evaluate(request, *decisions)
    assert verdict.run is not None
    statements = [_statement(d) for d in decisions]
    use = {
        "metadata": {
            "name": "first-uid",
            "namespace": NS,
            "creationTimestamp": "2026-11-21T11:30:00Z",
        },
        "spec": {
            "run": {"name": NAME, "uid": "first-uid"},
            "statements": statements,
            "expiresAt": "2026-11-21T13:00:00Z",
        },
    }
    seen = StaticView.build(requests=[request], decisions=list(decisions), uses=[use])
    again = request_for_manifest(verdict.run, username=CONTROLLER)
    again["object"]["metadata"]["uid"] = "second-uid"
    answer = decide(again, BUNDLE, NOW, seen)
    assert (answer.allowed, answer.reason) == (False, "missing-approvals")
    assert "already used by run agents/codex-run-sample (uid first-uid)" in answer.message


def _statement(obj: dict[str, Any]) -> str:
    import base64
    import hashlib

    return hashlib.sha256(base64.b64decode(obj["spec"]["record"]["payload"])).hexdigest()


def test_the_requesters_own_approval_does_not_count() -> None:
    verdict = evaluate(approval_request("alice"), decision("alice"), decision("bob"))
    assert (verdict.phase, verdict.approved_by) == ("Pending", ("bob",))


def test_a_reject_under_veto_rejects() -> None:
    verdict = evaluate(
        approval_request(), decision("alice"), decision("bob"), decision("carol", "reject")
    )
    assert (verdict.phase, verdict.reason) == ("Rejected", "Vetoed")
    assert verdict.rejected_by == ("carol",)
    assert verdict.approved_by == ("alice", "bob")
    assert verdict.eligible == ()


def test_a_withdrawn_reject_no_longer_rejects() -> None:
    verdict = evaluate(
        approval_request(),
        decision("alice"),
        decision("bob"),
        decision("carol", "reject", at="2026-11-21T10:30:00Z"),
        decision("carol", "withdraw", at="2026-11-21T11:20:00Z"),
    )
    assert verdict.phase == "Approved"
    assert verdict.withdrawn_by == ("carol",)


def test_a_withdrawal_takes_the_approval_back() -> None:
    verdict = evaluate(
        approval_request(),
        decision("alice"),
        decision("bob"),
        decision("alice", "withdraw", at="2026-11-21T11:30:00Z"),
    )
    assert (verdict.phase, verdict.approved_by, verdict.withdrawn_by) == (
        "Pending",
        ("bob",),
        ("alice",),
    )
    assert "alice" in verdict.eligible  # she may approve again


def test_approving_again_after_withdrawing_counts() -> None:
    verdict = evaluate(
        approval_request(),
        decision("alice", at="2026-11-21T10:00:00Z"),
        decision("alice", "withdraw", at="2026-11-21T10:30:00Z"),
        decision("alice", at="2026-11-21T11:00:00Z"),
        decision("bob"),
    )
    assert (verdict.phase, verdict.approved_by, verdict.withdrawn_by) == (
        "Approved",
        ("alice", "bob"),
        (),
    )


# --- the signer's clock: a withdrawal or reject holds from when it was filed -------------


def test_a_withdrawal_signed_by_a_clock_behind_takes_back_an_approval_filed_before_it() -> None:
    """alice approved at 11:00; her withdrawal, filed at 11:30 (the API server's clock), was
    signed on a machine whose clock said 10:30. Read by the signer's clock alone it came
    first and took nothing back: the approval she withdrew admitted the run."""
    verdict = evaluate(
        approval_request(),
        decision("alice"),
        decision("bob"),
        decision("alice", "withdraw", at="2026-11-21T10:30:00Z", filed="2026-11-21T11:30:00Z"),
    )
    assert (verdict.phase, verdict.approved_by, verdict.withdrawn_by) == (
        "Pending",
        ("bob",),
        ("alice",),
    )


def test_a_reject_signed_by_a_clock_behind_outvotes_the_approval_filed_before_it() -> None:
    """alice approved at 11:00 and changed her mind: her reject, filed at 11:30, was signed
    by a clock saying 10:30. Her latest record is the reject, whatever her clock said."""
    verdict = evaluate(
        approval_request(),
        decision("alice"),
        decision("bob"),
        decision(
            "alice",
            "reject",
            at="2026-11-21T10:30:00Z",
            filed="2026-11-21T11:30:00Z",
            reason="wrong repository",
        ),
    )
    assert (verdict.phase, verdict.reason, verdict.rejected_by) == (
        "Rejected",
        "Vetoed",
        ("alice",),
    )


def test_a_withdrawal_filed_late_does_not_take_back_a_reject_signed_after_it() -> None:
    """The filing time only ever makes a withdrawal take back more approvals, never a
    reject: carol's withdrawal signed at 10:30 and filed at 11:30 leaves her 11:00 reject."""
    verdict = evaluate(
        approval_request(),
        decision("alice"),
        decision("bob"),
        decision("carol", "reject", reason="wrong repository"),
        decision("carol", "withdraw", at="2026-11-21T10:30:00Z", filed="2026-11-21T11:30:00Z"),
    )
    assert (verdict.phase, verdict.rejected_by) == ("Rejected", ("carol",))


def test_a_withdrawal_signed_and_filed_before_an_approval_leaves_it() -> None:
    """Approving again after withdrawing still counts when the clock was right."""
    verdict = evaluate(
        approval_request(),
        decision("alice", "withdraw", at="2026-11-21T10:30:00Z", filed="2026-11-21T10:30:00Z"),
        decision("alice"),
        decision("bob"),
    )
    assert (verdict.phase, verdict.approved_by) == ("Approved", ("alice", "bob"))


def _created_by_controller(request: dict[str, Any], created: str, *decisions: Any) -> Any:
    """decide() on the run the controller makes of ``request``, created (the API server's
    creationTimestamp) at ``created``, with the view holding the request and decisions."""
    current = view(request, *decisions)
    envelopes = current.records_for(NS, NAME)
    manifest = run_manifest(request, envelopes, BUNDLE.needs_view)
    admission = request_for_manifest(
        manifest, username=CONTROLLER, groups=["system:serviceaccounts"]
    )
    admission["object"]["metadata"]["uid"] = "run-uid-1"
    admission["object"]["metadata"]["creationTimestamp"] = created
    return decide(admission, BUNDLE, NOW, current)


def test_a_run_created_after_its_request_expired_is_denied_whatever_the_controllers_clock() -> None:
    """The request was filed 24 hours and 30 minutes ago (timeoutSeconds 86400: it expired
    30 minutes ago, by the API server's clock); a controller whose clock runs more than the
    skew behind still saw it waiting and created its run on approvals given since. The
    webhook compares the API server's two times: the run's creation and the request's."""
    request = approval_request(created=NOW - timedelta(hours=24, minutes=30))
    approvals = (decision("alice"), decision("bob"))
    late = _created_by_controller(request, DEFAULT_NOW, *approvals)
    assert not late.allowed
    assert late.reason == "request-expired"
    assert "expired at 2026-11-21T11:30:00Z" in late.message
    # created within the request's time: admitted
    in_time = _created_by_controller(request, "2026-11-21T11:29:59Z", *approvals)
    assert in_time.allowed, in_time.message


def test_a_bypass_approves_with_its_reason() -> None:
    verdict = evaluate(
        approval_request(),
        decision(
            "oncall", "bypass", at="2026-11-21T11:30:00Z", reason="prod is down, INC-4711", ttl="1h"
        ),
    )
    assert (verdict.phase, verdict.reason) == ("Approved", "Bypassed")
    assert verdict.bypass_reason == "prod is down, INC-4711"


def test_an_expired_request_is_never_approved() -> None:
    request = approval_request(created=NOW - TIMEOUT)
    verdict = evaluate(request, decision("alice"), decision("bob"))
    assert (verdict.phase, verdict.reason) == ("Expired", "TimedOut")
    assert verdict.expires_at == NOW
    assert verdict.approved_by == ("alice", "bob")  # the story is still told
    assert "never approved" in verdict.message
    still = evaluate(approval_request(created=NOW - TIMEOUT + timedelta(seconds=1)))
    assert still.phase == "Pending"


def test_default_decision_allow_never_auto_approves() -> None:
    """Not at expiry, and not under enforcement audit either (the webhook would admit the
    run, but the queue approves on approvals only)."""
    for enforcement in ("enforce", "audit"):
        bundle = _bundle(defaultDecision="allow", enforcement=enforcement)
        expired = evaluate(approval_request(created=NOW - 2 * TIMEOUT), bundle=bundle)
        assert (expired.phase, expired.reason) == ("Expired", "TimedOut")
        fresh = evaluate(approval_request(), bundle=bundle)
        assert (fresh.phase, fresh.reason) == ("Pending", "WaitingForApprovals")
        both = evaluate(
            approval_request(created=NOW - 2 * TIMEOUT),
            decision("alice"),
            decision("bob"),
            bundle=bundle,
        )
        assert both.phase == "Expired"


def test_the_shortest_timeout_of_the_selecting_policies_expires_the_request() -> None:
    bundle = _bundle(timeoutSeconds=3600)
    verdict = evaluate(approval_request(created=NOW - timedelta(hours=1)), bundle=bundle)
    assert (verdict.phase, verdict.expires_at) == ("Expired", NOW)


def test_a_cancelled_request_is_cancelled_whatever_its_decisions() -> None:
    verdict = evaluate(approval_request(cancelled=True), decision("alice"), decision("bob"))
    assert (verdict.phase, verdict.reason) == ("Cancelled", "CancelledByRequester")
    assert verdict.run is None


def test_a_service_account_requester_fails_where_the_policy_denies_them() -> None:
    request = approval_request("system:serviceaccount:agents:bot")
    verdict = evaluate(request, decision("alice"), decision("bob"), decision("carol"))
    assert (verdict.phase, verdict.reason) == ("Failed", "RequesterNotAllowed")


def test_a_service_account_requester_needs_one_more_approval_under_extra_approval() -> None:
    bundle = _bundle(serviceAccountRequesters="extraApproval")
    request = approval_request("system:serviceaccount:agents:bot")
    two = evaluate(request, decision("alice"), decision("bob"), bundle=bundle)
    assert (two.phase, two.required) == ("Pending", 2)  # the policy's; 3 needed: see message
    assert "one more than the policy's 2" in two.message
    three = evaluate(request, decision("alice"), decision("bob"), decision("carol"), bundle=bundle)
    assert three.phase == "Approved"


def test_the_trusted_submitters_request_is_judged_on_records() -> None:
    request = approval_request("system:serviceaccount:agents-system:submission-api")
    verdict = evaluate(request)
    assert verdict.phase != "Approved"


def test_an_invalid_request_fails() -> None:
    for spec in (
        {"specDigest": "0" * 64},
        {"environment": "staging"},
        {"run": {"kind": "Pod"}},
        {"requester": ""},
    ):
        verdict = evaluate(approval_request(**spec), decision("alice"), decision("bob"))
        assert (verdict.phase, verdict.reason) == ("Failed", "InvalidRequest"), spec
    uncancelled = approval_request(cancelled="yes")
    assert evaluate(uncancelled, decision("alice"), decision("bob")).phase == "Failed"


def test_an_invalid_reference_fails() -> None:
    request = approval_request()
    request["spec"]["run"]["spec"]["agentRef"]["name"] = "codex-agent\u200b"
    request["spec"]["specDigest"] = spec_digest(request["spec"]["run"]["spec"])
    verdict = evaluate(request, decision("alice"), decision("bob"))
    assert (verdict.phase, verdict.reason) == ("Failed", "InvalidRequest")


def test_staging_decisions_do_not_approve_in_prod() -> None:
    verdict = evaluate(
        approval_request(),
        decision("alice", environment="staging"),
        decision("bob", environment="staging"),
    )
    assert (verdict.phase, verdict.approved_by) == ("Pending", ())


def test_an_unusable_view_keeps_the_request_pending() -> None:
    request = approval_request()
    verdict = evaluate_request(
        request,
        BUNDLE,
        NOW,
        StaticView.build(
            requests=[request],
            decisions=[decision("alice"), decision("bob")],
            problem="watch lost 120s ago",
        ),
        CONTROLLER,
    )
    assert (verdict.phase, verdict.reason) == ("Pending", "ViewUnavailable")
    assert "watch lost 120s ago" in verdict.message
    assert verdict.run is None


# --- never raises, never a defect ---------------------------------------------------------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.text(max_size=12),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
PATHS = [  # the object itself is always a mapping (the API server's JSON object)
    ("metadata",),
    ("metadata", "name"),
    ("metadata", "namespace"),
    ("metadata", "uid"),
    ("metadata", "creationTimestamp"),
    ("spec",),
    ("spec", "requester"),
    ("spec", "environment"),
    ("spec", "reason"),
    ("spec", "specDigest"),
    ("spec", "cancelled"),
    ("spec", "run"),
    ("spec", "run", "apiVersion"),
    ("spec", "run", "metadata"),
    ("spec", "run", "metadata", "name"),
    ("spec", "run", "metadata", "labels"),
    ("spec", "run", "metadata", "annotations"),
    ("spec", "run", "spec"),
    ("spec", "run", "spec", "agentRef"),
    ("spec", "run", "spec", "parameters"),
]
VIEW = view(approval_request(), decision("alice"), decision("bob"))


def _put(obj: Any, path: tuple[str, ...], value: Any) -> Any:
    if not path:
        return value
    if not isinstance(obj, dict):
        return obj
    out = dict(obj)
    out[path[0]] = _put(out.get(path[0]), path[1:], value)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    changes=st.lists(st.tuples(st.sampled_from(PATHS), json_value), min_size=1, max_size=3),
    courier=st.sampled_from(["", CONTROLLER, "requester"]),
)
def test_evaluate_request_never_raises_on_mangled_requests(
    changes: list[tuple[tuple[str, ...], Any]], courier: str
) -> None:
    request: Any = approval_request()
    for path, value in changes:
        request = _put(request, path, value)
    verdict = evaluate_request(request, BUNDLE, NOW, VIEW, courier)
    assert verdict.phase in PHASES
    assert verdict.reason != "InternalError", verdict.message
    if verdict.phase == "Approved":  # whatever was mangled, an approval is a real one
        assert verdict.run is not None
        admission = request_for_manifest(verdict.run, username=courier or CONTROLLER)
        admission["object"]["metadata"]["uid"] = "run-uid-1"
        assert decide(admission, BUNDLE, NOW, VIEW).allowed


def test_the_requester_is_known_by_any_of_her_usernames() -> None:
    verdict = evaluate(approval_request("alice@example.com"), decision("alice"), decision("bob"))
    assert (verdict.phase, verdict.approved_by) == ("Pending", ("bob",))
    assert "alice" not in verdict.eligible


decisions_drawn = st.lists(
    st.tuples(
        st.sampled_from(["alice", "bob", "carol", "requester", "oncall", "mallory"]),
        st.sampled_from(["approve", "approve", "reject", "withdraw", "bypass"]),
        st.integers(-120, 0),
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drawn=decisions_drawn,
    age_hours=st.integers(0, 30),
    requester=st.sampled_from(["requester", "alice", "alice@example.com", "dana"]),
    courier=st.sampled_from([CONTROLLER, "bob", ""]),
)
def test_phases_keep_their_promises(
    drawn: list[tuple[str, str, int]], age_hours: int, requester: str, courier: str
) -> None:
    """Never Approved at or after expiry; the requester and courier are never eligible nor
    counted; eligible approvers have not decided; Approved runs are admitted."""
    request = approval_request(requester, created=NOW - timedelta(hours=age_hours))
    objs = []
    for key, what, minutes in drawn:
        at = records.format_time(NOW + timedelta(minutes=minutes - 1))
        reason = "prod is down, INC-4711" if what == "bypass" else ""
        objs.append(decision(key, what, at=at, reason=reason, ttl="1h"))
    verdict = evaluate(request, *objs, courier=courier)  # Approved: admitted (see evaluate)
    if verdict.expires_at is not None and verdict.expires_at <= NOW:
        assert verdict.phase != "Approved"
    own = BUNDLE.approvers_known_as(requester) | BUNDLE.approvers_known_as(courier)
    assert not own & (set(verdict.eligible) | set(verdict.approved_by))
    assert not set(verdict.eligible) & (set(verdict.approved_by) | set(verdict.rejected_by))
