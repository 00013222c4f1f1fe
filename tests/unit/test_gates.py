"""decide() for the approval queue's own kinds (approvals/gates.py): ApprovalRequest,
ApprovalDecision, ApprovalUse.

Each test is an attacker's move against one rule, next to the honest move it must not
block. The bundle is the decision corpus's ``_base`` in prod with the cluster view required;
records are signed at test time with the corpus's keys (alice's usernames are ``alice`` and
``alice@example.com``; :data:`STRICT` is the same bundle where alice is only
``alice@example.com``, so the bare approver name is not one of her usernames).
"""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta
from typing import Any

import pytest

from approvalgate.approvals import records
from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.decide import Decision, decide
from approvalgate.approvals.digest import spec_digest
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.policy import BundleSettings, compile_bundle, dump_bundle
from approvalgate.approvals.view import (
    API_VERSION,
    EMPTY,
    GROUP,
    REQUEST_ANNOTATION,
    REQUEST_UID_ANNOTATION,
    VERSION,
)
from tests.support.corpus import BASE, CORPUS_ENVIRONMENT, DEFAULT_NOW, make_record, signer

NOW = records.parse_time(DEFAULT_NOW)
SETTINGS = BundleSettings(
    environment=CORPUS_ENVIRONMENT, cluster_view="required", referenced_content="off"
)
NS = "agents"
NAMESPACE_CONTROLLER = "system:serviceaccount:kube-system:namespace-controller"


def _bundle(alice_usernames: list[str] | None = None) -> Bundle:
    docs = []
    for name in ("policies.yaml", "approvers.yaml"):
        docs += [
            copy.deepcopy(dict(d.obj)) for d in load_manifests((BASE / name).read_text()) if d.obj
        ]
    if alice_usernames is not None:
        (alice,) = [d for d in docs if d["kind"] == "Approver" and d["metadata"]["name"] == "alice"]
        alice["spec"]["usernames"] = alice_usernames
    bundle, problems = compile_bundle(docs, SETTINGS)
    assert bundle is not None, problems
    return parse_bundle_text(dump_bundle(bundle))


BUNDLE = _bundle()
STRICT = _bundle(["alice@example.com"])
RUN: dict[str, Any] = dict(load_manifests((BASE / "run.yaml").read_text())[0].obj)
RUN_NAME = RUN["metadata"]["name"]


def review(
    plural: str,
    operation: str,
    obj: dict[str, Any] | None,
    *,
    old: dict[str, Any] | None = None,
    user: str = "requester",
    namespace: str = NS,
    sub: str | None = None,
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "operation": operation,
        "resource": {"group": GROUP, "version": VERSION, "resource": plural},
        "namespace": namespace,
        "name": ((obj or old or {}).get("metadata") or {}).get("name", ""),
        "userInfo": {"username": user, "groups": ["agents-users"]},
        "object": obj,
        "oldObject": old,
    }
    if sub is not None:
        request["subResource"] = sub
    return request


def judge(request: dict[str, Any], bundle: Bundle = BUNDLE, now: Any = NOW) -> Decision:
    decision = decide(request, bundle, now, EMPTY)
    assert decision.internal_error == ""
    return decision


def denied(decision: Decision, reason: str, *parts: str) -> None:
    assert (decision.allowed, decision.reason) == (False, reason), decision.message
    for part in parts:
        assert part in decision.message, decision.message


# --- ApprovalRequest ---------------------------------------------------------------------


def approval_request(requester: str = "requester", **spec: Any) -> dict[str, Any]:
    run = copy.deepcopy(RUN)
    run["metadata"] = {"name": RUN_NAME, "labels": {"team": "a"}}
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
        "metadata": {"name": RUN_NAME, "namespace": NS, "uid": "request-uid-1"},
        "spec": body,
    }


def create_request(obj: dict[str, Any], user: str = "requester") -> Decision:
    return judge(review("approvalrequests", "CREATE", obj, user=user))


def test_a_request_made_by_its_requester_is_admitted() -> None:
    decision = create_request(approval_request())
    assert (decision.allowed, decision.reason) == (True, "request-created")


@pytest.mark.parametrize("user", ["alice", "system:serviceaccount:agents:bot", ""])
def test_a_request_made_for_someone_else_is_denied(user: str) -> None:
    denied(
        create_request(approval_request("requester"), user=user),
        "invalid-request",
        "spec.requester is 'requester'",
    )


def test_a_request_for_another_environment_is_denied() -> None:
    for environment in ("staging", "Prod", "", None):
        denied(
            create_request(approval_request(environment=environment)),
            "invalid-request",
            "this cluster enforces 'prod'",
        )


def _with_run(mutate: Any) -> dict[str, Any]:
    obj = approval_request()
    mutate(obj["spec"]["run"])
    obj["spec"]["specDigest"] = spec_digest(obj["spec"]["run"].get("spec"))
    return obj


def test_the_run_must_have_the_requests_name() -> None:
    obj = _with_run(lambda run: run["metadata"].update(name="other-run"))
    denied(create_request(obj), "invalid-request", "it must equal the request's name")
    obj = _with_run(lambda run: run["metadata"].pop("name"))
    denied(create_request(obj), "invalid-request", "it must equal the request's name")


def test_a_generate_name_run_is_denied() -> None:
    obj = _with_run(lambda run: run["metadata"].update(generateName="codex-run-"))
    denied(create_request(obj), "invalid-request", "names a generateName")


def test_the_run_must_be_in_the_requests_namespace() -> None:
    obj = _with_run(lambda run: run["metadata"].update(namespace="elsewhere"))
    denied(create_request(obj), "invalid-request", "must be 'agents'")
    obj = _with_run(lambda run: run["metadata"].update(namespace=NS))
    assert create_request(obj).allowed


def test_the_run_must_be_an_agent_run() -> None:
    denied(
        create_request(_with_run(lambda run: run.update(kind="Pod"))),
        "invalid-request",
        "must be an AgentRun",
    )
    denied(
        create_request(_with_run(lambda run: run.update(apiVersion="evil.example.com/v1"))),
        "invalid-request",
        "must be an AgentRun",
    )


def test_a_wrong_digest_is_denied() -> None:
    obj = approval_request()
    obj["spec"]["run"]["spec"]["parameters"]["task"] = "something else"  # digest not updated
    denied(create_request(obj), "invalid-request", "use `approvalgate request RUN.yaml`")
    for digest in ("", "0" * 64, None, spec_digest(RUN["spec"]).upper()):
        denied(create_request(approval_request(specDigest=digest)), "invalid-request")


@pytest.mark.parametrize(
    "annotation", [records.ANNOTATION, REQUEST_UID_ANNOTATION, REQUEST_ANNOTATION]
)
def test_a_run_carrying_what_the_controller_sets_is_denied(annotation: str) -> None:
    obj = _with_run(lambda run: run["metadata"].update(annotations={annotation: "[]"}))
    denied(create_request(obj), "invalid-request", f"carries annotation {annotation}")


def test_invalid_reference_names_are_denied() -> None:
    obj = _with_run(lambda run: run["spec"]["agentRef"].update(name="codex-agent "))
    denied(create_request(obj), "invalid-request", "refers to objects by invalid names")


def test_a_request_cannot_be_created_cancelled_or_with_an_invisible_reason() -> None:
    denied(create_request(approval_request(cancelled=True)), "invalid-request", "cancelled")
    denied(
        create_request(approval_request(reason="\u200b\u200b\u200b")),
        "invalid-request",
        "only invisible characters",
    )
    for hiding in ("\x1b[2K\x1b[1A", "\u202e", "\n", "\u200b"):  # escapes, bidi, a new line
        denied(
            create_request(approval_request(reason=f"nightly report {hiding}for finance")),
            "invalid-request",
            f"spec.reason must read as written: character 16 is U+{ord(hiding[0]):04X}",
        )
    denied(create_request(approval_request(reason="x" * 1025)), "invalid-request", "1024")
    assert create_request(approval_request(reason="x" * 1024)).allowed


def update_request(new: dict[str, Any], old: dict[str, Any], user: str = "requester") -> Decision:
    return judge(review("approvalrequests", "UPDATE", new, old=old, user=user))


def test_a_requests_spec_is_immutable() -> None:
    old = approval_request()
    for change in (
        {"requester": "alice"},
        {"environment": "staging"},
        {"reason": "another reason"},
        {"specDigest": "0" * 64},
    ):
        new = copy.deepcopy(old)
        new["spec"].update(change)
        denied(update_request(new, old), "request-immutable", "its spec is immutable")
    new = copy.deepcopy(old)
    new["spec"]["run"]["spec"]["parameters"]["task"] = "rm -rf"
    denied(update_request(new, old), "request-immutable")
    new["spec"]["cancelled"] = True  # cancelling does not carry a spec change along
    denied(update_request(new, old), "request-immutable")


def test_a_value_changed_to_another_json_type_is_a_change() -> None:
    """1 -> true, 0 -> false, 1 -> 1.0: equal in Python, not in the stored spec."""
    old = approval_request()
    old["spec"]["run"]["spec"]["parameters"]["retries"] = 1
    for value in (True, 1.0, "1"):
        new = copy.deepcopy(old)
        new["spec"]["run"]["spec"]["parameters"]["retries"] = value
        denied(update_request(new, old), "request-immutable")


def test_cancelled_absent_and_false_are_the_same() -> None:
    old = approval_request()
    del old["spec"]["cancelled"]
    new = approval_request(cancelled=False)
    assert update_request(new, old, user="anyone").allowed
    assert update_request(old, new, user="anyone").allowed
    cancelled = approval_request(cancelled=True)
    assert update_request(cancelled, old).reason == "request-cancelled"


def test_metadata_of_a_request_may_change() -> None:
    old = approval_request()
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"seen": "yes"}
    decision = update_request(new, old, user="anyone")
    assert (decision.allowed, decision.reason) == (True, "unchanged-spec")


OWNER = {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": "no-such-uid"}


@pytest.mark.parametrize("plural", ["approvalrequests", "approvaldecisions", "approvaluses"])
def test_the_queues_objects_are_never_owned(plural: str) -> None:
    """An owner reference to an object that does not exist has the garbage collector delete
    the object: a requester allowed to update requests but not to delete them would delete
    another's request (or her own, to file one of the same name under the approvals given);
    a decision or use would be retried for deletion forever. Denied on create and update."""
    obj = {
        "approvalrequests": approval_request,
        "approvaldecisions": decision_obj,
        "approvaluses": use_obj,
    }[plural]()
    user = {"approvaldecisions": "alice"}.get(plural, "requester")
    owned = copy.deepcopy(obj)
    owned["metadata"]["ownerReferences"] = [OWNER]
    denied(judge(review(plural, "CREATE", owned, user=user)), "owned-queue-object")
    for who in (user, "someone-else"):
        decision = judge(review(plural, "UPDATE", owned, old=obj, user=who))
        denied(decision, "owned-queue-object", "remove metadata.ownerReferences")
    # an object that is owned already (written before this check) may be left as it is, or freed
    assert judge(review(plural, "UPDATE", owned, old=owned, user=user)).allowed
    assert judge(review(plural, "UPDATE", obj, old=owned, user=user)).allowed
    assert judge(review(plural, "DELETE", None, old=owned, user="admin")).reason != (
        "owned-queue-object"
    )


def test_the_requester_may_cancel() -> None:
    old = approval_request()
    new = approval_request(cancelled=True)
    decision = update_request(new, old)
    assert (decision.allowed, decision.reason) == (True, "request-cancelled")


def test_nobody_else_may_cancel() -> None:
    old = approval_request()
    new = approval_request(cancelled=True)
    for user in ("alice", "system:serviceaccount:approvalgate-system:approvalgate-controller"):
        denied(update_request(new, old, user=user), "not-requester", "only its requester")


def test_a_cancelled_request_cannot_be_uncancelled() -> None:
    old = approval_request(cancelled=True)
    for cancelled in (False, None):
        new = approval_request(cancelled=cancelled)
        denied(update_request(new, old), "request-immutable", "never un-cancelled")


def test_the_status_subresource_and_delete_pass() -> None:
    old = approval_request()
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Approved"}
    new["spec"]["requester"] = "forged"  # the status subresource cannot write spec
    decision = judge(
        review("approvalrequests", "UPDATE", new, old=old, user="anyone", sub="status")
    )
    assert (decision.allowed, decision.reason) == (True, "status-subresource")
    decision = judge(review("approvalrequests", "DELETE", None, old=old, user="admin"))
    assert (decision.allowed, decision.reason) == (True, "request-deleted")


def test_a_request_without_a_namespace_or_object_is_malformed() -> None:
    denied(
        judge(review("approvalrequests", "CREATE", approval_request(), namespace="")), "malformed"
    )
    denied(judge(review("approvalrequests", "CREATE", None)), "malformed")


# --- ApprovalDecision --------------------------------------------------------------------


def decision_obj(key: str = "alice", request_name: str = RUN_NAME, **recipe: Any) -> dict[str, Any]:
    run = copy.deepcopy(RUN)
    envelope = make_record({"key": key, **recipe}, run, BASE, NOW)
    claim_decision = recipe.get("decision", "approve")
    return {
        "apiVersion": API_VERSION,
        "kind": "ApprovalDecision",
        "metadata": {
            "generateName": f"{request_name}-",
            "name": f"{request_name}-x1",
            "namespace": NS,
        },
        "spec": {
            "requestName": request_name,
            "decision": claim_decision,
            "approver": recipe.get("approver", key),
            "record": envelope,
        },
    }


def create_decision(
    obj: dict[str, Any], user: str = "alice", bundle: Bundle = BUNDLE, namespace: str = NS
) -> Decision:
    return judge(review("approvaldecisions", "CREATE", obj, user=user, namespace=namespace), bundle)


@pytest.mark.parametrize("decision", ["approve", "reject", "withdraw"])
def test_an_approver_records_her_decision(decision: str) -> None:
    for user in ("alice", "alice@example.com"):
        verdict = create_decision(decision_obj(decision=decision), user=user)
        assert (verdict.allowed, verdict.reason) == (True, "decision-recorded")


def test_a_bypass_by_a_bypasser_with_a_reason_is_recorded() -> None:
    obj = decision_obj("oncall", decision="bypass", reason="prod is down, INC-4711")
    assert create_decision(obj, user="oncall").allowed


@pytest.mark.parametrize(
    "user",
    [
        "bob",  # another approver
        "requester",  # the requester creating decisions in her approvers' names
        "system:serviceaccount:approvalgate-system:approvalgate-controller",
        "Alice",
        "alice ",
        "",
    ],
)
def test_a_decision_created_by_someone_else_is_denied(user: str) -> None:
    """Class 17: a record is counted for the approver who signed it, and only she may put it
    in the cluster (whoever holds a copy of her signed record cannot)."""
    denied(
        create_decision(decision_obj(), user=user), "invalid-decision", "who is not approver alice"
    )


def test_the_bare_approver_name_is_not_a_username() -> None:
    """Class 17/22: alice is known to the cluster only as alice@example.com; a user called
    'alice' (a second identity, or someone else entirely) cannot create her decisions."""
    denied(
        create_decision(decision_obj(), user="alice", bundle=STRICT),
        "invalid-decision",
        "their usernames: alice@example.com",
    )
    assert create_decision(decision_obj(), user="alice@example.com", bundle=STRICT).allowed


@pytest.mark.parametrize("decision", ["approve", "bypass", "reject", "withdraw"])
def test_a_parent_takes_only_rejects_and_withdrawals_in_the_cluster(decision: str) -> None:
    """Class 7 through a parent: its runs are judged without knowing who wrote it, so an
    approval filed here would count for its writer's own Schedule (approvals.inherit counts
    none); refused when filed, so nobody is told their approval was recorded."""
    subject = f"schedules.proompteng.ai/Schedule/{NS}/{RUN_NAME}"
    approver = "oncall" if decision == "bypass" else "alice"
    claim = records.Claim(
        subject=subject,
        digest="0" * 64,
        decision=decision,  # type: ignore[arg-type]
        approver=approver,
        reason="INC-4711 outage" if decision == "bypass" else "",
        issued_at=NOW - timedelta(minutes=5),
        expires_at=NOW + timedelta(hours=1),
        nonce=uuid.uuid4().hex,
        environment=CORPUS_ENVIRONMENT,
    )
    obj = decision_obj(approver)
    obj["spec"].update(decision=decision, record=records.sign(claim, signer(approver)))
    verdict = create_decision(obj, user=approver)
    if decision in ("reject", "withdraw"):
        assert verdict.allowed, verdict.message
        return
    denied(verdict, "invalid-decision", "a parent's approval counts only carried on the parent")


def test_spec_fields_must_say_what_the_record_says() -> None:
    obj = decision_obj(decision="reject")
    obj["spec"]["decision"] = "approve"  # shown as an approval in `status`, counted as reject
    denied(
        create_decision(obj), "invalid-decision", "the signed record says 'alice' decided 'reject'"
    )
    obj = decision_obj()
    obj["spec"]["approver"] = "bob"
    denied(create_decision(obj, user="bob"), "invalid-decision", "the signed record says 'alice'")
    obj = decision_obj()
    del obj["spec"]["approver"]
    denied(create_decision(obj), "invalid-decision")


def test_a_record_for_another_run_or_namespace_is_denied() -> None:
    denied(
        create_decision(decision_obj(subject="agents/other-run")),
        "invalid-decision",
        "this decision is for 'agents.proompteng.ai/AgentRun/agents/codex-run-sample'",
    )
    denied(create_decision(decision_obj(request_name="other-run")), "invalid-decision")
    denied(create_decision(decision_obj(), namespace="elsewhere"), "invalid-decision")
    denied(
        create_decision(decision_obj(subject="agents/codex-run-*")),
        "invalid-decision",
        "is for 'agents.proompteng.ai/AgentRun/agents/codex-run-*'",
    )


def test_a_record_for_another_environment_or_format_is_denied() -> None:
    denied(
        create_decision(decision_obj(environment="staging")),
        "invalid-decision",
        "the record is for environment 'staging', this cluster enforces 'prod'",
    )
    denied(
        create_decision(decision_obj(format="v1")),
        "invalid-decision",
        "(none: format v1)",
    )


def test_an_expired_record_is_denied_but_an_expired_withdrawal_is_not() -> None:
    old = {"issuedAt": "2026-11-21T09:00:00Z", "ttl": "1h"}
    denied(
        create_decision(decision_obj(**old)),
        "invalid-decision",
        f"expired at 2026-11-21T10:00:00Z (it is {DEFAULT_NOW} by the webhook's clock): sign "
        "again, after syncing the signing machine's clock if it is behind",
    )
    denied(create_decision(decision_obj(decision="reject", **old)), "invalid-decision", "expired")
    assert create_decision(decision_obj(decision="withdraw", **old)).allowed


def test_a_record_issued_in_the_future_is_denied() -> None:
    later = records.format_time(NOW + timedelta(seconds=BUNDLE.clock_skew_seconds + 60))
    denied(
        create_decision(decision_obj(issuedAt=later)),
        "invalid-decision",
        "issued in the future",
        f"it is {DEFAULT_NOW} by the webhook's clock, 60s of clock skew allowed): sync the "
        "signing machine's clock (NTP)",
    )
    denied(
        create_decision(decision_obj(decision="withdraw", issuedAt=later)),
        "invalid-decision",
        "issued in the future",
    )


@pytest.mark.parametrize(
    "tamper",
    ["no-signatures", "payload-type", "predicate-type", "flip-payload", "garbage-signature"],
)
def test_a_tampered_record_is_denied(tamper: str) -> None:
    denied(create_decision(decision_obj(tamper=[tamper])), "invalid-decision")


def test_a_record_signed_by_another_key_is_denied() -> None:
    for key in ("mallory", "stranger", "bob"):
        denied(
            create_decision(decision_obj(key, approver="alice")),
            "invalid-decision",
            "the signature does not verify with a key of alice",
        )


def test_a_retired_key_is_denied_even_back_dated() -> None:
    """Class 20: alice-old was retired on 2026-01-01; a record back-dated into its window."""
    obj = decision_obj("alice-old", approver="alice", issuedAt="2025-12-31T23:00:00Z", ttl="8000h")
    denied(create_decision(obj), "invalid-decision", "valid at 2025-12-31T23:00:00Z and now")
    withdraw = decision_obj(
        "alice-old", approver="alice", decision="withdraw", issuedAt="2025-12-31T23:00:00Z"
    )
    denied(create_decision(withdraw), "invalid-decision", "and now")


def test_a_bypass_needs_a_visible_reason() -> None:
    for reason in ("", "\u200b" * 12, "\u200b\u00a0\u200c\u200d\u2060\ufeff\u200b\u200b"):
        obj = decision_obj("oncall", decision="bypass", reason=reason)
        denied(create_decision(obj, user="oncall"), "invalid-decision")


def test_an_unknown_approver_or_junk_record_is_denied() -> None:
    obj = decision_obj("stranger")
    denied(create_decision(obj, user="stranger"), "invalid-decision", "is not an approver")
    for record in (None, {}, "[]", {"payload": "x", "payloadType": "y", "signatures": []}):
        obj = decision_obj()
        obj["spec"]["record"] = record
        denied(create_decision(obj), "invalid-decision", "not an approval record")
    obj = decision_obj()
    obj["spec"]["requestName"] = ""
    denied(create_decision(obj), "invalid-decision", "spec.requestName is missing")


def test_a_decisions_spec_never_changes() -> None:
    old = decision_obj()
    new = copy.deepcopy(old)
    new["spec"]["record"] = decision_obj(decision="reject")["spec"]["record"]
    new["spec"]["decision"] = "reject"
    denied(
        judge(review("approvaldecisions", "UPDATE", new, old=old, user="alice")),
        "decision-immutable",
        "append-only",
    )
    same = copy.deepcopy(old)
    same["metadata"]["labels"] = {"x": "y"}
    assert judge(review("approvaldecisions", "UPDATE", same, old=old, user="alice")).allowed


def delete_decision(old: dict[str, Any], user: str = "alice", now: Any = NOW) -> Decision:
    return judge(review("approvaldecisions", "DELETE", None, old=old, user=user), now=now)


def test_a_decision_is_deleted_only_once_it_expired() -> None:
    obj = decision_obj(decision="approve")  # expires 13:00
    for user in ("alice", "requester", "cluster-admin"):
        denied(delete_decision(obj, user), "append-only", "it counts until 2026-11-21T13:00:00Z")
    later = records.parse_time("2026-11-21T13:00:00Z")
    assert delete_decision(obj, "requester", now=later).allowed


def test_the_namespace_controller_deletes_decisions_any_time() -> None:
    decision = delete_decision(decision_obj(), NAMESPACE_CONTROLLER)
    assert (decision.allowed, decision.reason) == (True, "namespace-deleted")


def test_a_decision_without_a_record_may_be_deleted() -> None:
    obj = decision_obj()
    obj["spec"]["record"] = "junk"  # nothing can count it
    assert delete_decision(obj, "requester").allowed


def test_a_withdrawal_is_deleted_only_when_nothing_it_took_back_can_count() -> None:
    """A withdrawal counts expired or not; deleting it must not revive an approval it took
    back: not before it expires, and not before the longest-lived record issued before it
    (timeoutSeconds after it) has expired either."""
    withdraw = decision_obj(decision="withdraw", issuedAt="2026-11-21T11:30:00Z", ttl="10m")
    # the base policy's timeoutSeconds is 86400: an approval issued at 11:30 lives until
    # 2026-11-22T11:30:00Z at most
    denied(delete_decision(withdraw, "requester"), "append-only", "2026-11-22T11:30:00Z")
    just_before = records.parse_time("2026-11-22T11:29:59Z")
    denied(delete_decision(withdraw, "requester", now=just_before), "append-only")
    after = records.parse_time("2026-11-22T11:30:00Z")
    assert delete_decision(withdraw, "requester", now=after).allowed
    signed_long = decision_obj(decision="withdraw", issuedAt="2026-11-21T11:30:00Z", ttl="48h")
    denied(delete_decision(signed_long, "requester", now=after), "append-only", "2026-11-23")


def test_a_reject_is_deleted_only_when_nothing_it_vetoes_can_count() -> None:
    """An expired reject still vetoes the approvals issued before it expired (class 21: a
    veto is not waited out); deleting it must not revive them: not before the longest-lived
    approval issued before its expiry (timeoutSeconds after it) has expired."""
    reject = decision_obj(decision="reject", issuedAt="2026-11-21T11:30:00Z", ttl="10m")
    # expired at 11:40; an approval issued just before lives until 2026-11-22T11:40:00Z
    later = records.parse_time("2026-11-21T13:00:00Z")
    denied(delete_decision(reject, "requester", now=later), "append-only", "2026-11-22T11:40:00Z")
    just_before = records.parse_time("2026-11-22T11:39:59Z")
    denied(delete_decision(reject, "requester", now=just_before), "append-only")
    after = records.parse_time("2026-11-22T11:40:00Z")
    assert delete_decision(reject, "requester", now=after).allowed


def test_a_withdrawal_or_reject_signed_by_a_clock_behind_counts_from_its_filing() -> None:
    """Signed on a machine whose clock said a day and ten minutes ago, filed at 11:00 (the
    API server's creationTimestamp): it takes back (vetoes) the approvals issued by its
    filing, which live until 2026-11-22T11:00:00Z; deleting it on its signer's dates (at
    12:00, long after them) revived an approval it took back."""
    behind = "2026-11-20T11:50:00Z"
    for decision in ("withdraw", "reject"):
        obj = decision_obj(decision=decision, issuedAt=behind, ttl="10m", reason="wrong repo")
        obj["metadata"]["creationTimestamp"] = "2026-11-21T11:00:00Z"
        denied(delete_decision(obj, "requester"), "append-only", "2026-11-22T11:00:00Z")
        after = records.parse_time("2026-11-22T11:00:00Z")
        assert delete_decision(obj, "requester", now=after).allowed
        # filed when signed: its own dates, as before
        obj["metadata"]["creationTimestamp"] = behind
        assert delete_decision(obj, "requester").allowed


def test_a_reject_expiring_before_it_was_issued_holds_from_its_issue() -> None:
    """A reject signed to expire before its issuedAt (a hand-made record, within the clock
    skew ahead) vetoes the approvals issued before it was issued: it holds the longest
    lifetime past its issuedAt, not past the earlier expiry."""
    reject = decision_obj(
        decision="reject",
        reason="wrong repo",
        signedTimes={"issuedAt": "2026-11-21T12:00:50Z", "expiresAt": "2026-11-21T12:00:20Z"},
    )
    late = records.parse_time("2026-11-22T12:00:30Z")
    denied(delete_decision(reject, "requester", now=late), "append-only", "2026-11-22T12:00:50Z")


def test_a_reject_or_withdrawal_dated_at_the_end_of_time_is_judged_not_crashed() -> None:
    """Counting a reject or withdrawal the longest lifetime past its dates must not overflow
    (a record may be dated up to 9999-12-31): the delete is refused, not an internal error."""
    for decision in ("reject", "withdraw"):
        obj = decision_obj(decision=decision, issuedAt="9999-12-31T22:00:00Z", ttl="1h")
        verdict = delete_decision(obj, "requester")
        assert verdict.internal_error == ""
        denied(verdict, "append-only", "9999-12-31T23:59:59Z")


# --- ApprovalUse -------------------------------------------------------------------------


def use_obj(uid: str = "run-uid-1", name: str | None = None, **spec: Any) -> dict[str, Any]:
    body = {
        "run": {"name": RUN_NAME, "uid": uid},
        "environment": CORPUS_ENVIRONMENT,
        "specDigest": spec_digest(RUN["spec"]),
        "statements": ["ab" * 32],
        "expiresAt": "2026-11-21T13:00:00Z",
    }
    body.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "ApprovalUse",
        "metadata": {"name": uid if name is None else name, "namespace": NS},
        "spec": body,
    }


CONTROLLER = "system:serviceaccount:approvalgate-system:approvalgate-controller"


def test_a_use_named_by_its_runs_uid_is_recorded() -> None:
    decision = judge(review("approvaluses", "CREATE", use_obj(), user=CONTROLLER))
    assert (decision.allowed, decision.reason) == (True, "use-recorded")


@pytest.mark.parametrize("name", ["other-uid", "", "run-uid-1 "])
def test_a_use_not_named_by_its_runs_uid_is_denied(name: str) -> None:
    denied(
        judge(review("approvaluses", "CREATE", use_obj(name=name), user=CONTROLLER)),
        "invalid-use",
        "named by its run's uid",
    )
    denied(judge(review("approvaluses", "CREATE", use_obj(uid=""), user=CONTROLLER)), "invalid-use")


def test_a_use_binds_referenced_content_by_kind_name_and_sha256() -> None:
    bound = {
        "ImplementationSpec/codex-impl-sample": "cd" * 32,
        "Agent/codex.agent-1": "ef" * 32,
        "AgentProvider/codex": "ab" * 32,
    }
    for references in (bound, {}):
        decision = judge(
            review("approvaluses", "CREATE", use_obj(references=references), user=CONTROLLER)
        )
        assert (decision.allowed, decision.reason) == (True, "use-recorded")


@pytest.mark.parametrize(
    ("references", "says"),
    [
        (["Agent/a"], "must be an object"),
        (
            {"Secret/a": "cd" * 32},
            "'Secret/a' is not ImplementationSpec/<name>, Agent/<name> or AgentProvider/<name>",
        ),
        ({"AgentProviders/a": "cd" * 32}, "'AgentProviders/a' is not"),
        ({"Agent/Codex": "cd" * 32}, "'Agent/Codex' is not"),
        ({"Agent/": "cd" * 32}, "'Agent/' is not"),
        ({"Agent/" + "a" * 254: "cd" * 32}, "is not ImplementationSpec/<name>"),
        ({"Agent/a": "CD" * 32}, "spec.references['Agent/a'] is not a lowercase hex sha256"),
        ({"Agent/a": "sha256:" + "cd" * 32}, "is not a lowercase hex sha256"),
        ({"Agent/a": 1}, "is not a lowercase hex sha256"),
        ({f"Agent/a{i}": "cd" * 32 for i in range(257)}, "257 entries, at most 256"),
    ],
)
def test_a_use_with_malformed_references_is_denied(references: object, says: str) -> None:
    denied(
        judge(review("approvaluses", "CREATE", use_obj(references=references), user=CONTROLLER)),
        "invalid-use",
        says,
    )


def test_a_uses_spec_never_changes() -> None:
    old = use_obj()
    for change in (
        {"statements": []},
        {"expiresAt": "2026-11-21T12:00:01Z"},
        {"run": {"uid": "x"}},
        {"references": {"Agent/codex-agent": "cd" * 32}},
    ):
        new = copy.deepcopy(old)
        new["spec"].update(change)
        denied(
            judge(review("approvaluses", "UPDATE", new, old=old, user=CONTROLLER)),
            "use-immutable",
        )
    same = copy.deepcopy(old)
    same["metadata"]["finalizers"] = ["x"]
    assert judge(review("approvaluses", "UPDATE", same, old=old, user=CONTROLLER)).allowed


def test_a_use_is_deleted_only_after_it_expires() -> None:
    old = use_obj()
    denied(
        judge(review("approvaluses", "DELETE", None, old=old, user=CONTROLLER)),
        "append-only",
        "it counts until 2026-11-21T13:00:00Z",
    )
    later = records.parse_time("2026-11-21T13:00:00Z")
    assert judge(
        review("approvaluses", "DELETE", None, old=old, user=CONTROLLER), now=later
    ).allowed
    assert judge(review("approvaluses", "DELETE", None, old=old, user=NAMESPACE_CONTROLLER)).allowed


def test_other_kinds_of_the_group_and_connect_pass() -> None:
    decision = judge(review("somethingelse", "CREATE", {"metadata": {}}))
    assert (decision.allowed, decision.reason) == (True, "not-gated")
    decision = judge(review("approvalrequests", "CONNECT", None))
    assert decision.allowed
