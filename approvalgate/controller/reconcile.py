"""What to do about one ApprovalRequest: a pure function of what was observed.

:func:`plan_request` takes the request, the queue's verdict on it
(:func:`approvals.queue.evaluate_request`), the AgentRun of the same name if one exists,
and the time, and returns a :class:`RequestPlan`: the status to write (None when it would
not change), the run to create, the transition to announce (Event, metric, notification).
The controller executes plans; nothing here does I/O, so every decision is a unit test.

The rules, in order:

1. A request in a terminal phase (Submitted, Rejected, Expired, Failed, Cancelled) stays
   there: time passing (expiry) or a later decision never rewrites history.
2. A run named like the request that carries this request's uid
   (``gates.proompteng.ai/request-uid``) was created by us: the request is Submitted,
   whatever the verdict says now. This is how a controller that died between creating the
   run and writing the status converges on restart, without a second run. So is a request
   whose uid an ApprovalUse of a run of its name records (``spec.run.requestUid``): the run
   was created, used and may be gone (deleted before Submitted could be written); its
   approvals are used then, the verdict says Pending, and fresh approvals would otherwise
   create the run a second time.
3. Approved, no run of that name: write Approved, then create the run (exactly once: the
   name is fixed, so a second create answers AlreadyExists, and rule 2 or 4 applies).
4. Approved but the name is taken by a run that is not ours: Failed, NameTaken.
5. Anything else: the verdict's phase (Pending, Rejected, Expired, Cancelled, Failed).
   Approved -> Pending happens (a withdrawal or an expired record before the run was
   created): the run is then not created. Expiry is never an approval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from approvalgate.approvals import records, view
from approvalgate.approvals.queue import TERMINAL, QueueVerdict

OUTCOMES: Final = {
    "Approved": "approved",
    "Rejected": "rejected",
    "Expired": "expired",
    "Cancelled": "cancelled",
    "Failed": "failed",
    "Submitted": "submitted",
}
"""Phase -> the ``outcome`` label of ``approvalgate_approvals_total``."""

DECIDED: Final = frozenset({"Approved", "Rejected", "Expired", "Cancelled", "Failed", "Submitted"})
WARNING_PHASES: Final = frozenset({"Failed", "Expired"})


@dataclass(frozen=True)
class Transition:
    """The request moved from ``old`` to ``new`` (phase) for ``reason`` (Event, metric)."""

    old: str
    new: str
    reason: str
    message: str

    @property
    def event_type(self) -> str:
        return "Warning" if self.new in WARNING_PHASES else "Normal"


@dataclass(frozen=True)
class RequestPlan:
    status: dict[str, Any] | None
    """The whole new status, or None when the one stored is already right."""
    create: Mapping[str, Any] | None = None
    """The AgentRun to create (after the status is written)."""
    transition: Transition | None = None
    requeue_after: float | None = None
    """Look again in this many seconds (expiry), even if nothing changes."""


def request_uid(request: Mapping[str, Any]) -> str:
    return str((request.get("metadata") or {}).get("uid") or "")


def run_request_uid(run: Mapping[str, Any] | None) -> str:
    if run is None:
        return ""
    annotations = (run.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(view.REQUEST_UID_ANNOTATION) or "")


def is_ours(request: Mapping[str, Any], run: Mapping[str, Any] | None) -> bool:
    """The run was created from this request (it carries the request's uid)."""
    uid = request_uid(request)
    return bool(uid) and run_request_uid(run) == uid


def made_by_request(request: Mapping[str, Any], use: view.Use) -> bool:
    """``use`` records a run created from ``request``: of its name, in its namespace, the
    run naming the request's uid."""
    meta = request.get("metadata") or {}
    uid = request_uid(request)
    return (
        bool(uid)
        and use.request_uid == uid
        and use.namespace == str(meta.get("namespace") or "")
        and use.run_name == str(meta.get("name") or "")
    )


def plan_request(
    request: Mapping[str, Any],
    verdict: QueueVerdict,
    run: Mapping[str, Any] | None,
    now: datetime,
    *,
    decisions: int = 0,
    create_error: str = "",
    create_refused: str = "",
    use: view.Use | None = None,
) -> RequestPlan:
    """The plan for ``request`` (see the module's rules). ``run``: the AgentRun of the same
    name and namespace, if any. ``use``: an ApprovalUse naming this request's uid as its
    run's request (:meth:`approvals.view.StaticView.use_of_request`), if any.
    ``create_error``: why the last create failed (kept in the status message while the
    request stays Approved and the create is retried); ``create_refused``: the API server
    refused the run itself (invalid): Failed."""
    old: Mapping[str, Any] = request.get("status") or {}
    old_phase = str(old.get("phase") or "")
    if old_phase in TERMINAL:
        return RequestPlan(status=None)
    made: tuple[str, str] | None = None
    if run is not None and is_ours(request, run):
        meta = run.get("metadata") or {}
        made = (str(meta.get("name") or ""), str(meta.get("uid") or ""))
    elif use is not None and made_by_request(request, use):
        made = (use.run_name, use.run_uid)
    if made is not None:
        namespace = str((request.get("metadata") or {}).get("namespace") or "")
        status = _status(
            request,
            verdict,
            now,
            decisions,
            phase="Submitted",
            reason="RunCreated",
            message=f"created AgentRun {namespace}/{made[0]}",
            run={"name": made[0], "uid": made[1]},
        )
        return _plan(old, status)
    if verdict.phase == "Approved" and run is not None:
        meta = run.get("metadata") or {}
        status = _status(
            request,
            verdict,
            now,
            decisions,
            phase="Failed",
            reason="NameTaken",
            message=f"an AgentRun named {meta.get('name')} already exists in namespace "
            f"{meta.get('namespace')} and was not created from this request (uid "
            f"{request_uid(request)}): delete it, or request the run under another name",
        )
        return _plan(old, status)
    if verdict.phase == "Approved":
        if create_refused:
            status = _status(
                request,
                verdict,
                now,
                decisions,
                phase="Failed",
                reason="CreateFailed",
                message=f"the API server refused the run: {create_refused}",
            )
            return _plan(old, status)
        if verdict.run is None:
            status = _status(
                request,
                verdict,
                now,
                decisions,
                phase="Failed",
                reason="InvalidRequest",
                message="approved, but the queue gave no run to create (a defect: report it)",
            )
            return _plan(old, status)
        message = verdict.message
        reason = verdict.reason
        if create_error:
            reason, message = "CreateFailed", f"creating the run failed, retrying: {create_error}"
        status = _status(
            request, verdict, now, decisions, phase="Approved", reason=reason, message=message
        )
        plan = _plan(old, status)
        return RequestPlan(status=plan.status, create=verdict.run, transition=plan.transition)
    status = _status(request, verdict, now, decisions)
    plan = _plan(old, status)
    requeue = None
    if verdict.phase == "Pending" and verdict.expires_at is not None:
        requeue = max((verdict.expires_at - now).total_seconds(), 0.0) + 0.5
    return RequestPlan(status=plan.status, transition=plan.transition, requeue_after=requeue)


def _plan(old: Mapping[str, Any], status: dict[str, Any]) -> RequestPlan:
    if same_status(old, status):
        return RequestPlan(status=None)
    old_phase = str(old.get("phase") or "")
    transition = None
    if status["phase"] != old_phase:
        transition = Transition(old_phase, status["phase"], status["reason"], status["message"])
    return RequestPlan(status=status, transition=transition)


def same_status(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """The status as we would write it equals the one stored (a write would change nothing)."""
    return dict(old) == dict(new)


def _status(
    request: Mapping[str, Any],
    verdict: QueueVerdict,
    now: datetime,
    decisions: int,
    *,
    phase: str = "",
    reason: str = "",
    message: str = "",
    run: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The full status for ``phase`` (the verdict's by default); times already recorded are
    kept (requestedAt, decidedAt, submittedAt), so a status is stable between reconciles."""
    meta = request.get("metadata") or {}
    old: Mapping[str, Any] = request.get("status") or {}
    phase = phase or verdict.phase
    status: dict[str, Any] = {
        "phase": phase,
        "reason": reason or verdict.reason,
        "message": _bounded(message or verdict.message),
        "required": verdict.required,
        "approvedBy": list(verdict.approved_by),
        "rejectedBy": list(verdict.rejected_by),
        "withdrawnBy": list(verdict.withdrawn_by),
        "eligible": list(verdict.eligible) if phase in ("Pending", "Approved") else [],
        "decisions": decisions,
    }
    requested = meta.get("creationTimestamp")
    if isinstance(requested, str) and requested:
        status["requestedAt"] = requested
    if verdict.expires_at is not None:
        status["expiresAt"] = records.format_time(verdict.expires_at)
    elif old.get("expiresAt"):
        status["expiresAt"] = old["expiresAt"]
    if phase in DECIDED:
        status["decidedAt"] = old.get("decidedAt") or records.format_time(now)
    if phase == "Submitted":
        status["submittedAt"] = old.get("submittedAt") or records.format_time(now)
    if run is not None:
        status["run"] = dict(run)
    generation = meta.get("generation")
    if isinstance(generation, int):
        status["observedGeneration"] = generation
    return status


MAX_MESSAGE_CHARS: Final = 4096


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 1] + "…"


def wait_seconds(request: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds from the request's creation to ``now`` (the decision), None if unknown."""
    created = (request.get("metadata") or {}).get("creationTimestamp")
    if not isinstance(created, str):
        return None
    try:
        return max((now - records.parse_time(created)).total_seconds(), 0.0)
    except ValueError:
        return None
