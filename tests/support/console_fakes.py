"""In-memory stand-ins for the console's pages (tests and bench/console_render.py).

- :class:`FakeState`: the protocol ``console.pages.QueueView`` over plain lists;
- :class:`FakeClient`: answers the reads the request page makes (an ImplementationSpec, an
  Agent, the Events of a request) from fixed objects, or with an HTTP error;
- :class:`Me`: a stand-in for ``console/identity.py`` ``Me`` until it is on this branch;
- :func:`fake_actions`: a stand-in for console-decide's ``console/actions.py`` (refusals
  and notes), installed only by tests, never committed as a module.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from approvalgate.approvals import records
from approvalgate.approvals.digest import spec_digest
from approvalgate.commands import _queue
from approvalgate.commands._cluster import CREATED_BY
from approvalgate.kube.errors import ApiError


def now() -> datetime:

    return datetime(2026, 12, 6, 19, 0, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def run_spec(task: str = "Update onboarding flow", image: str = "1.4.2") -> dict[str, Any]:
    return {
        "agentRef": {"name": "codex-agent"},
        "implementationSpecRef": {"name": "codex-impl-sample"},
        "runtime": {"type": "workflow", "config": {"ttlSecondsAfterFinished": 600}},
        "workload": {"image": f"ghcr.io/proompteng/codex-runner:{image}"},
        "parameters": {"repository": "proompteng/lab", "task": task},
    }


def make_request(
    name: str,
    *,
    namespace: str = "agents",
    requester: str = "requester",
    reason: str = "",
    created: datetime | None = None,
    phase: str = "Pending",
    required: int = 2,
    approved: tuple[str, ...] = (),
    eligible: tuple[str, ...] = ("alice", "bob", "carol"),
    spec: dict[str, Any] | None = None,
    uid: str = "",
) -> dict[str, Any]:
    """An ApprovalRequest as the CLI creates it, with a status as the controller writes it."""
    body = spec if spec is not None else run_spec()
    run = {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "AgentRun",
        "metadata": {"name": name},
        "spec": body,
    }
    obj = _queue.request_object(
        run,
        name=name,
        namespace=namespace,
        environment="prod",
        requester=requester,
        digest=spec_digest(body),
        reason=reason,
    )
    moment = created or now() - timedelta(hours=1)
    obj["metadata"].update(
        {"uid": uid or f"uid-{namespace}-{name}", "creationTimestamp": stamp(moment)}
    )
    if phase:
        obj["status"] = {
            "phase": phase,
            "reason": "WaitingForApprovals" if phase == "Pending" else phase,
            "required": required,
            "approvedBy": list(approved),
            "eligible": list(eligible) if phase == "Pending" else [],
            "requestedAt": stamp(moment),
            "expiresAt": stamp(moment + timedelta(days=1)),
        }
    return obj


def make_decision(
    request: Mapping[str, Any],
    approver: str,
    decision: str = "approve",
    reason: str = "",
    *,
    order: int = 1,
    issued: datetime | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """An ApprovalDecision carrying a record signed with the corpus key ``key``."""
    from tests.support.corpus import signer

    meta = request["metadata"]
    spec = request["spec"]
    moment = issued or now() - timedelta(minutes=30)
    claim = records.Claim(
        subject=records.subject_name(meta["namespace"], meta["name"]),
        digest=spec["specDigest"],
        decision=decision,  # type: ignore[arg-type]
        approver=approver,
        reason=reason,
        issued_at=moment,
        expires_at=moment + timedelta(hours=4),
        nonce=f"nonce-{approver}-{order}",
        environment="prod",
    )
    obj = _queue.decision_object(
        request=meta["name"],
        namespace=meta["namespace"],
        decision=decision,
        approver=approver,
        envelope=records.sign(claim, signer(key or approver)),
        created_by=approver,
        created_by_annotation=CREATED_BY,
    )
    obj["metadata"].update(
        {
            "name": f"{meta['name']}-{order}",
            "creationTimestamp": stamp(moment),
            "resourceVersion": str(order),
        }
    )
    return obj


@dataclass
class FakeState:
    """``console.pages.QueueView`` over lists."""

    request_objects: list[dict[str, Any]] = field(default_factory=list)
    decision_objects: list[dict[str, Any]] = field(default_factory=list)
    problem_lines: list[str] = field(default_factory=list)
    down_since: str | None = None

    def requests(self) -> list[dict[str, Any]]:
        return self.request_objects

    def decisions(self) -> list[dict[str, Any]]:
        return self.decision_objects

    def problems(self) -> list[str]:
        return self.problem_lines

    def unreachable_since(self) -> str | None:
        return self.down_since


@dataclass(frozen=True)
class Me:
    """Stand-in for ``console/identity.py`` ``Me``."""

    user: str
    groups: tuple[str, ...] = ()
    approver: str | None = None
    signer: Any = None
    bundle: Any = None
    bundle_path: Any = None

    @property
    def can_sign(self) -> bool:
        """As ``Me.can_sign`` (console/actions.py reads it)."""
        return self.signer is not None and bool(self.approver)


IMPLEMENTATION_SPEC: dict[str, Any] = {
    "apiVersion": "agents.proompteng.ai/v1alpha1",
    "kind": "ImplementationSpec",
    "metadata": {"name": "codex-impl-sample", "namespace": "agents"},
    "spec": {
        "summary": "Update the onboarding flow",
        "text": "Change the sign-up form.\nRun the tests.\nOpen a pull request.",
    },
}
AGENT: dict[str, Any] = {
    "apiVersion": "agents.proompteng.ai/v1alpha1",
    "kind": "Agent",
    "metadata": {"name": "codex-agent", "namespace": "agents"},
    "spec": {"provider": "codex", "model": "gpt-5-codex"},
}


class FakeClient:
    """Answers ``Client.request`` for the request page's reads: objects by path, the
    Events list, or an :class:`ApiError` with a status for a path given in ``errors``."""

    def __init__(
        self,
        objects: Mapping[str, dict[str, Any]] | None = None,
        events: list[dict[str, Any]] | None = None,
        errors: Mapping[str, int] | None = None,
    ) -> None:
        self.objects = dict(
            objects
            if objects is not None
            else {
                "implementationspecs/codex-impl-sample": IMPLEMENTATION_SPEC,
                "agents/codex-agent": AGENT,
            }
        )
        self.events = events or []
        self.errors = dict(errors or {})
        self.calls: list[tuple[str, str]] = []

    def request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        query: Any = (),
        body: Any = None,
        content_type: str = "",
        missing_ok: bool = False,
    ) -> Any:
        self.calls.append((method, path))
        for suffix, status in self.errors.items():
            if path.endswith(suffix):
                raise ApiError(f"forbidden while {what}: nope", status=status)
        if path.endswith("/events"):
            return {"items": self.events}
        for suffix, obj in self.objects.items():
            if path.endswith(suffix):
                return obj
        if missing_ok:
            return None
        raise ApiError(f"the API server answered HTTP 404 while {what}", status=404)


def refusals(item: Mapping[str, Any], me: Any) -> dict[str, str]:
    """What console-decide's ``actions.refusals`` says, in short (tests only)."""
    out = {"approve": "", "reject": "", "withdraw": ""}
    if not me.approver:
        return dict.fromkeys(out, "start the console with --approver NAME to decide")
    if item["requester"] == me.user:
        out["approve"] = (
            f"you cannot approve your own request: it was requested by {item['requester']}"
        )
    if not _queue.is_pending(item):
        return {k: f"the request is {_queue.phase_text(item)}" for k in out}
    return out


def notes(item: Mapping[str, Any], me: Any) -> list[str]:
    return []


def fake_actions() -> types.ModuleType:
    module = types.ModuleType("approvalgate.console.actions")
    module.refusals = refusals  # type: ignore[attr-defined]
    module.notes = notes  # type: ignore[attr-defined]
    return module


def install_fake_actions() -> None:
    """Make ``from approvalgate.console import actions`` find the fake (the bench; tests
    use monkeypatch), unless the real module is there."""
    import importlib.util

    import approvalgate.console

    if importlib.util.find_spec("approvalgate.console.actions") is not None:
        return
    module = fake_actions()
    sys.modules["approvalgate.console.actions"] = module
    approvalgate.console.actions = module  # type: ignore[attr-defined]
