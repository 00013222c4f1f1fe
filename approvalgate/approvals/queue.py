"""The approval queue's verdict on one ApprovalRequest: pure, shared by the controller and
``approvalgate status``.

:func:`evaluate_request` asks :func:`approvals.decide.decide` what the webhook would say to a
CREATE of the request's run, as the requester would make it, carrying every decision recorded
for it in the cluster, and turns the answer into a phase: the controller writes it to the
request's status and, at quorum, creates the run (:attr:`QueueVerdict.run`) exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

Phase = Literal["Pending", "Approved", "Submitted", "Rejected", "Expired", "Failed", "Cancelled"]
PHASES: Final = ("Pending", "Approved", "Submitted", "Rejected", "Expired", "Failed", "Cancelled")
TERMINAL: Final = frozenset({"Submitted", "Rejected", "Expired", "Failed", "Cancelled"})


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


def evaluate_request(
    request: Mapping[str, Any],
    bundle: Any,
    now: datetime,
    view: Any,
) -> QueueVerdict:
    """The phase of ApprovalRequest object ``request`` under ``bundle`` at ``now``, given
    ``view`` (its decisions are read from there). Never raises: a defect is InvalidRequest
    (phase Failed). Implemented by the lead (issue 15); signature is the contract."""
    raise NotImplementedError
