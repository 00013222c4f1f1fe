"""The approval queue's verdict on one ApprovalRequest: pure, shared by the controller and
``approvalgate status``.

:func:`evaluate_request` asks :func:`approvals.decide.decide` what the webhook would say to a
CREATE of the request's run, as the requester would make it, carrying every decision recorded
for it in the cluster, and turns the answer into a phase: the controller writes it to the
request's status and, at quorum, creates the run (:attr:`QueueVerdict.run`) exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from approvalgate.approvals import gates, records
from approvalgate.approvals.admission import request_for_manifest
from approvalgate.approvals.bundle import Bundle
from approvalgate.approvals.decide import Decision, decide, matching_policies
from approvalgate.approvals.view import (
    REQUEST_ANNOTATION,
    REQUEST_UID_ANNOTATION,
    TERMINAL_PHASES,
    USE_FINALIZER,
    ClusterView,
    api_time,
)

Phase = Literal["Pending", "Approved", "Submitted", "Rejected", "Expired", "Failed", "Cancelled"]
PHASES: Final = ("Pending", "Approved", "Submitted", "Rejected", "Expired", "Failed", "Cancelled")
TERMINAL: Final = TERMINAL_PHASES


@dataclass(frozen=True)
class QueueVerdict:
    """Where a request stands, and the run to create once it is Approved."""

    phase: Phase
    reason: str
    """CamelCase: WaitingForApprovals, Quorum, Vetoed, TimedOut, CancelledByRequester,
    InvalidRequest, RunCreated (the controller sets the last)."""
    message: str
    required: int = 0
    approved_by: tuple[str, ...] = ()
    rejected_by: tuple[str, ...] = ()
    withdrawn_by: tuple[str, ...] = ()
    eligible: tuple[str, ...] = ()
    """Approvers who may still approve (named by a matching policy, not yet decided, not the
    requester)."""
    expires_at: datetime | None = None
    bypass_reason: str = ""
    run: Mapping[str, Any] | None = field(default=None, repr=False)
    """Approved only: the AgentRun to create (namespace, name, labels, finalizer, records,
    author, request uid and request annotations set)."""


_APPROVED: Final = frozenset({"approved", "bypass", "enforcement-off"})
_TRANSIENT: Final = frozenset({"cluster-view-unavailable"})
_FAILED: Final = {
    "service-account-requester": "RequesterNotAllowed",
    "trusted-submitter-unbound": "RequesterNotAllowed",
    "gitops-applier-unbound": "RequesterNotAllowed",
    "request-mismatch": "InvalidRequest",
    "invalid-reference": "InvalidRequest",
    "undigestable-spec": "InvalidRequest",
    "no-policy": "NoPolicy",
    "malformed": "InvalidRequest",
    "internal-error": "InternalError",
}


def evaluate_request(
    request: Mapping[str, Any],
    bundle: Bundle,
    now: datetime,
    view: ClusterView,
    courier: str = "",
) -> QueueVerdict:
    """The phase of ApprovalRequest object ``request`` under ``bundle`` at ``now``.

    The run is judged exactly as the webhook will judge the controller's CREATE of it:
    ``courier`` is the controller's username (the run says which request it comes from, so
    the webhook judges it as the request's requester asked for it), and every decision
    recorded in ``view`` for it counts. Never raises: a defect is phase Failed.
    """
    try:
        return _evaluate(request, bundle, now, view, courier)
    except Exception as exc:  # total: a broken request is Failed, never a crash loop
        return QueueVerdict("Failed", "InternalError", f"{type(exc).__name__}: {exc}")


def run_manifest(
    request: Mapping[str, Any], envelopes: Sequence[Mapping[str, Any]], needs_view: bool
) -> dict[str, Any]:
    """The AgentRun the controller creates for ``request``: its name, labels and spec, the
    decisions' records, the requester as author, the request it comes from, the finalizer."""
    meta = _mapping(request.get("metadata"))
    spec = _mapping(request.get("spec"))
    run = _mapping(spec.get("run"))
    run_meta = _mapping(run.get("metadata"))
    namespace = str(meta.get("namespace") or "")
    name = str(meta.get("name") or "")
    annotations = {str(k): str(v) for k, v in _mapping(run_meta.get("annotations")).items()}
    kept = list(envelopes)[-records.MAX_RECORDS :]
    if kept:
        annotations[records.ANNOTATION] = records.dump_annotation([dict(e) for e in kept])
    annotations[records.AUTHOR_ANNOTATION] = str(spec.get("requester") or "")
    annotations[REQUEST_UID_ANNOTATION] = str(meta.get("uid") or "")
    annotations[REQUEST_ANNOTATION] = f"{namespace}/{name}"
    out_meta: dict[str, Any] = {"name": name, "namespace": namespace, "annotations": annotations}
    labels = _mapping(run_meta.get("labels"))
    if labels:
        out_meta["labels"] = dict(labels)
    if needs_view:
        out_meta["finalizers"] = [USE_FINALIZER]
    return {
        "apiVersion": str(run.get("apiVersion") or "agents.proompteng.ai/v1alpha1"),
        "kind": "AgentRun",
        "metadata": out_meta,
        "spec": run.get("spec"),
    }


def _evaluate(
    request: Mapping[str, Any],
    bundle: Bundle,
    now: datetime,
    view: ClusterView,
    courier: str,
) -> QueueVerdict:
    meta = _mapping(request.get("metadata"))
    spec = _mapping(request.get("spec"))
    namespace = str(meta.get("namespace") or "")
    name = str(meta.get("name") or "")
    requester = str(spec.get("requester") or "")
    if spec.get("cancelled") is True:
        return QueueVerdict(
            "Cancelled", "CancelledByRequester", f"cancelled by its requester {requester}"
        )
    problem = gates.request_problem(meta, spec, namespace, requester, bundle)
    if problem:
        return QueueVerdict("Failed", "InvalidRequest", problem)
    envelopes = view.records_for(namespace, name)
    manifest = run_manifest(request, envelopes, bundle.needs_view)
    admission = request_for_manifest(manifest, username=courier or requester, namespace=namespace)
    decision = decide(admission, bundle, now, view)
    policies = matching_policies(admission, bundle)
    created = api_time(meta.get("creationTimestamp")) or now
    timeouts = [p.timeout_seconds for p in policies]
    expires_at = created + timedelta(seconds=min(timeouts)) if timeouts else None
    results = decision.results
    approved = tuple(sorted({a for r in results for a in r.approvals}))
    rejected = tuple(sorted({a for r in results for a in r.rejects}))
    withdrawn = tuple(sorted({a for r in results for a in r.withdrawn} - set(approved)))
    excluded = bundle.approvers_known_as(requester) | bundle.approvers_known_as(courier)
    named = {a for p in policies for a in p.approvers}
    eligible = tuple(sorted(named - set(approved) - set(rejected) - excluded))
    required = max((p.required_approvals for p in policies), default=0)
    common: dict[str, Any] = {
        "required": required,
        "approved_by": approved,
        "rejected_by": rejected,
        "withdrawn_by": withdrawn,
        "eligible": eligible,
        "expires_at": expires_at,
    }
    reasons = {r.reason for r in results}
    if decision.allowed and reasons <= _APPROVED:
        bypass = "; ".join(r.bypass_reason for r in results if r.reason == "bypass")
        why = "Bypassed" if bypass else "Quorum"
        message = f"bypassed: {bypass}" if bypass else _approved_message(approved)
        # expires_at is the API server's creation time plus the timeout; our clock may be
        # behind the API server's by up to clockSkewSeconds. Fail closed: a quorum within
        # the skew of the expiry is Expired, never a run (a request still waiting expires
        # at expires_at itself, below)
        if expires_at is not None and now + bundle.clock_skew >= expires_at:
            return QueueVerdict("Expired", "TimedOut", _expired(expires_at), **common)
        return QueueVerdict("Approved", why, message, bypass_reason=bypass, run=manifest, **common)
    if "vetoed" in reasons:
        return QueueVerdict("Rejected", "Vetoed", decision.message, **common)
    if decision.reason in _TRANSIENT:
        return QueueVerdict("Pending", "ViewUnavailable", decision.message, **common)
    failed = _failure(decision)
    if failed:
        return QueueVerdict("Failed", failed, decision.message, **common)
    if expires_at is not None and now >= expires_at:
        return QueueVerdict("Expired", "TimedOut", _expired(expires_at), **common)
    return QueueVerdict("Pending", "WaitingForApprovals", decision.message, **common)


def _failure(decision: Decision) -> str:
    """A reason the request can never be approved as it is ("" when approvals can help)."""
    if decision.reason in _FAILED and not decision.allowed:
        return _FAILED[decision.reason]
    for result in decision.results:
        if result.outcome == "deny" and result.reason in _FAILED:
            return _FAILED[result.reason]
    return ""


def _approved_message(approved: Sequence[str]) -> str:
    return f"approved by {', '.join(approved)}" if approved else "no approval required"


def _expired(expires_at: datetime) -> str:
    return (
        f"no decision before {records.format_time(expires_at)} (the policy's timeoutSeconds); "
        "an expired request is never approved: request again"
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}
