"""What the cluster knows that a requester must not control: the view decide() reads.

An AgentRun carries its approval records, but the requester chooses what it carries. Three
facts live in the cluster instead, where requesters cannot edit them (docs/design.md,
"Approvals in the cluster"):

- **decisions**: every ApprovalDecision (one signed record each, append-only) for a run name:
  a reject or a withdrawal counts whether or not the run carries it;
- **uses**: every ApprovalUse (the consumption ledger, one per admitted run, named by the
  run's uid): an approval admits one run, so a record another run has used does not count;
- **requests**: every ApprovalRequest, so a run the controller creates from a request is
  judged as requested by the request's requester (the controller is a courier, not trusted).

decide() stays pure: it takes a :class:`ClusterView` as an argument. The webhook's view is
fed by watches (``kube.view``); ``verify --cluster`` and the controller build one from lists;
tests build :class:`StaticView` directly. A view that cannot be relied on says why in
:attr:`ClusterView.problem`, and decide() then denies what needs it (fail closed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, NamedTuple, Protocol

from approvalgate.approvals import content, records

GROUP: Final = "gates.proompteng.ai"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
REQUESTS: Final = "approvalrequests"
DECISIONS: Final = "approvaldecisions"
USES: Final = "approvaluses"
KINDS: Final = {REQUESTS: "ApprovalRequest", DECISIONS: "ApprovalDecision", USES: "ApprovalUse"}

VIEWED_KINDS: Final = ("Schedule", "OrchestrationRun", "Orchestration", "Swarm")
"""Kinds the view holds by name (:meth:`ClusterView.object`): whole in a :class:`StaticView`
built from objects, as :func:`approvals.parents.summary` in the webhook's and the
controller's watch-fed views (decide() reads either alike); ImplementationSpecs, Agents and
AgentProviders are held as digests only (:meth:`ClusterView.content`), and each Agent's
provider name besides (:meth:`ClusterView.provider`)."""

USE_FINALIZER: Final = "gates.proompteng.ai/approval-use"
"""Held on every run judged by records where the view is required, until its use is recorded:
the run's name cannot be taken again before the ledger knows it was used."""
REQUEST_UID_ANNOTATION: Final = "gates.proompteng.ai/request-uid"
REQUEST_ANNOTATION: Final = "gates.proompteng.ai/request"

OFFLINE_CHECKS: Final = (
    "rejections and withdrawals recorded in the cluster",
    "whether the approval was already used by another run",
)
CONTENT_CHECK: Final = (
    "whether the approvals bind the current content of the ImplementationSpecs, Agent and "
    "AgentProvider the run executes"
)


@dataclass(frozen=True)
class Use:
    """One ApprovalUse: the records ``statements`` admitted the run ``run_name`` (``run_uid``)."""

    name: str
    namespace: str
    run_name: str
    run_uid: str
    statements: frozenset[str]
    created: datetime | None
    expires_at: datetime | None
    references: Mapping[str, str] = field(default_factory=dict, hash=False)
    """The content the used records bound (``"ImplementationSpec/x"`` -> sha256): while the
    use lasts, a write giving that object other content is denied."""
    request_uid: str = ""
    """The ApprovalRequest the run was created from (``spec.run.requestUid``: "" when the
    run names none, or an older controller recorded the use)."""

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Use | None:
        """The use an ApprovalUse object records, or None when it is not one (ignored)."""
        meta = obj.get("metadata")
        spec = obj.get("spec")
        if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
            return None
        run = spec.get("run")
        statements = spec.get("statements")
        if not isinstance(run, Mapping) or not isinstance(statements, list):
            return None
        references = spec.get("references")
        bound = (
            {str(k): v for k, v in references.items() if isinstance(v, str)}
            if isinstance(references, Mapping)
            else {}
        )
        return cls(
            name=str(meta.get("name") or ""),
            namespace=str(meta.get("namespace") or ""),
            run_name=str(run.get("name") or ""),
            run_uid=str(run.get("uid") or ""),
            statements=frozenset(s for s in statements if isinstance(s, str)),
            created=api_time(meta.get("creationTimestamp")),
            expires_at=api_time(spec.get("expiresAt")),
            references=bound,
            request_uid=str(run.get("requestUid") or ""),
        )

    def live(self, now: datetime) -> bool:
        """Not expired at ``now`` (a use without an expiry lasts)."""
        return self.expires_at is None or now < self.expires_at


TERMINAL_PHASES: Final = frozenset({"Submitted", "Rejected", "Expired", "Failed", "Cancelled"})
"""Phases of an ApprovalRequest the controller is done with."""


def is_pending(request: Mapping[str, Any]) -> bool:
    """The ApprovalRequest still waits on the queue: not cancelled, and its phase (none yet,
    Pending or Approved) not one of :data:`TERMINAL_PHASES`."""
    spec = request.get("spec")
    if isinstance(spec, Mapping) and spec.get("cancelled") is True:
        return False
    status = request.get("status")
    phase = status.get("phase") if isinstance(status, Mapping) else None
    return phase not in TERMINAL_PHASES


def requester_of(request: Mapping[str, Any]) -> str:
    """The request's ``spec.requester`` ("" when it names none)."""
    spec = request.get("spec")
    requester = spec.get("requester") if isinstance(spec, Mapping) else None
    return requester if isinstance(requester, str) else ""


class Filed(NamedTuple):
    """One ApprovalDecision's record and when the API server created the object
    (``metadata.creationTimestamp``, which no client sets; None when it has none)."""

    envelope: Mapping[str, Any]
    created: datetime | None


class ClusterView(Protocol):
    """The cluster state decide() may consult (read-only, one consistent moment per call)."""

    @property
    def problem(self) -> str:
        """Empty when the view can be relied on; else why not (said in a denial)."""
        ...

    @property
    def offline(self) -> bool:
        """True for :data:`OFFLINE`: the checks were not made (verify without a cluster)."""
        ...

    @property
    def max_age(self) -> float:
        """How long (seconds) this view may go without hearing from the API server and still
        be usable: a use must be at least this old before a run's finalizer is released, so
        that every usable view has heard from the server since the use was written."""
        ...

    def records_for(self, namespace: str, name: str) -> Sequence[Mapping[str, Any]]:
        """The DSSE envelopes of the ApprovalDecisions for run (request) ``namespace/name``."""
        ...

    def decisions_for(self, namespace: str, name: str) -> Sequence[Filed]:
        """:meth:`records_for` with each decision's creation time, read at one moment: a run
        counts (and its use records) only the decisions filed by the time it was created."""
        ...

    def uses_of(self, statement: str) -> Sequence[Use]:
        """The uses of the record whose DSSE payload has sha256 ``statement``."""
        ...

    def use_of_run(self, namespace: str, uid: str) -> Use | None:
        """The use recorded for the run with this uid, if any."""
        ...

    def request(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The ApprovalRequest ``namespace/name``, if any."""
        ...

    def pending_requests(self, namespace: str, requester: str) -> int:
        """How many ApprovalRequests of ``requester`` (``spec.requester``) in ``namespace``
        are pending (:func:`is_pending`)."""
        ...

    def object(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        """A parent (Schedule, OrchestrationRun, Swarm) or Orchestration, if any."""
        ...

    def content(self, kind: str, namespace: str, name: str) -> str | None:
        """:func:`approvals.content.digest` of the ImplementationSpec, Agent or AgentProvider,
        if it exists."""
        ...

    def provider(self, namespace: str, agent: str) -> str | None:
        """The AgentProvider the Agent ``namespace/agent`` names now
        (:func:`approvals.content.provider_name`: "" when it names none), None when the view
        does not hold the Agent."""
        ...

    def prompt_source(self, namespace: str, agent: str) -> str:
        """The ConfigMap or Secret the Agent ``namespace/agent`` takes its system prompt from
        now (:func:`approvals.content.prompt_ref`: ``"ConfigMap/name"``), "" when it names
        none or the view does not hold the Agent."""
        ...

    def content_uses(self, namespace: str, key: str) -> Sequence[Use]:
        """The uses in ``namespace`` whose references bind ``key`` (expired ones included:
        the caller judges expiry at its own ``now``)."""
        ...


@dataclass(frozen=True)
class StaticView:
    """A view built from object lists (tests, ``verify --cluster``, controller snapshots)."""

    decisions: Mapping[tuple[str, str], tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    filed: Mapping[tuple[str, str], tuple[Filed, ...]] = field(default_factory=dict)
    """:attr:`decisions` with their creation times (a key missing here: times unknown)."""
    uses: Mapping[str, tuple[Use, ...]] = field(default_factory=dict)
    runs: Mapping[tuple[str, str], Use] = field(default_factory=dict)
    requested: Mapping[tuple[str, str], Use] = field(default_factory=dict)
    """Uses by ``(namespace, request uid)`` of the request their run was created from."""
    requests: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    objects: Mapping[tuple[str, str, str], Mapping[str, Any]] = field(default_factory=dict)
    contents: Mapping[tuple[str, str, str], str] = field(default_factory=dict)
    providers: Mapping[tuple[str, str], str] = field(default_factory=dict)
    prompts: Mapping[tuple[str, str], str] = field(default_factory=dict)
    bound: Mapping[tuple[str, str], tuple[Use, ...]] = field(default_factory=dict)
    problem: str = ""
    offline: bool = False
    max_age: float = 0.0

    @classmethod
    def build(
        cls,
        *,
        requests: Iterable[Mapping[str, Any]] = (),
        decisions: Iterable[Mapping[str, Any]] = (),
        uses: Iterable[Mapping[str, Any]] = (),
        objects: Iterable[Mapping[str, Any]] = (),
        problem: str = "",
    ) -> StaticView:
        """``objects``: parents, Orchestrations, ImplementationSpecs, Agents and
        AgentProviders (any order; other kinds are ignored)."""
        by_run: dict[tuple[str, str], list[Filed]] = {}
        for obj in sorted(decisions, key=_creation_order):
            key = decision_key(obj)
            envelope = decision_envelope(obj)
            if key is not None and envelope is not None:
                by_run.setdefault(key, []).append(Filed(envelope, filed_at(obj)))
        by_statement: dict[str, list[Use]] = {}
        by_uid: dict[tuple[str, str], Use] = {}
        by_ref: dict[tuple[str, str], list[Use]] = {}
        by_request: dict[tuple[str, str], Use] = {}
        for obj in uses:
            use = Use.of(obj)
            if use is None:
                continue
            by_uid[use.namespace, use.run_uid] = use
            if use.request_uid:
                by_request[use.namespace, use.request_uid] = use
            for statement in use.statements:
                by_statement.setdefault(statement, []).append(use)
            for ref in use.references:
                by_ref.setdefault((use.namespace, ref), []).append(use)
        held: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        digests: dict[tuple[str, str, str], str] = {}
        named: dict[tuple[str, str], str] = {}
        prompts: dict[tuple[str, str], str] = {}
        for obj in objects:
            kind = str(obj.get("kind") or "")
            meta = obj.get("metadata") or {}
            ident = (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
            if kind in content.KINDS:
                digests[ident] = content.digest(obj)
            if kind == content.AGENT:
                named[ident[1:]] = content.provider_name(obj)
                prompts[ident[1:]] = content.prompt_ref(obj)
            elif kind in VIEWED_KINDS:
                held[ident] = obj
        by_name = {}
        for obj in requests:
            meta = obj.get("metadata") or {}
            by_name[str(meta.get("namespace") or ""), str(meta.get("name") or "")] = obj
        return cls(
            decisions={k: tuple(f.envelope for f in v) for k, v in by_run.items()},
            filed={k: tuple(v) for k, v in by_run.items()},
            uses={k: tuple(v) for k, v in by_statement.items()},
            runs=by_uid,
            requested=by_request,
            requests=by_name,
            objects=held,
            contents=digests,
            providers=named,
            prompts=prompts,
            bound={k: tuple(v) for k, v in by_ref.items()},
            problem=problem,
        )

    def records_for(self, namespace: str, name: str) -> Sequence[Mapping[str, Any]]:
        return self.decisions.get((namespace, name), ())

    def decisions_for(self, namespace: str, name: str) -> Sequence[Filed]:
        found = self.filed.get((namespace, name))
        if found is not None:
            return found
        return tuple(Filed(e, None) for e in self.decisions.get((namespace, name), ()))

    def uses_of(self, statement: str) -> Sequence[Use]:
        return self.uses.get(statement, ())

    def use_of_run(self, namespace: str, uid: str) -> Use | None:
        return self.runs.get((namespace, uid))

    def use_of_request(self, namespace: str, uid: str) -> Use | None:
        """A use of a run created from the ApprovalRequest with this uid, if any (the
        controller's: not part of :class:`ClusterView`, which the webhook reads)."""
        return self.requested.get((namespace, uid)) if uid else None

    def request(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.requests.get((namespace, name))

    def pending_requests(self, namespace: str, requester: str) -> int:
        return sum(
            1
            for (ns, _), r in self.requests.items()
            if ns == namespace and requester_of(r) == requester and is_pending(r)
        )

    def object(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def content(self, kind: str, namespace: str, name: str) -> str | None:
        return self.contents.get((kind, namespace, name))

    def provider(self, namespace: str, agent: str) -> str | None:
        return self.providers.get((namespace, agent))

    def prompt_source(self, namespace: str, agent: str) -> str:
        return self.prompts.get((namespace, agent), "")

    def content_uses(self, namespace: str, key: str) -> Sequence[Use]:
        return self.bound.get((namespace, key), ())


EMPTY: Final = StaticView()
"""A synced view of a cluster holding no requests, decisions or uses."""
OFFLINE: Final = StaticView(offline=True)
"""No cluster at all (``verify`` without ``--cluster``): the checks are reported as not made."""


def decision_key(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(namespace, spec.requestName)`` of an ApprovalDecision object."""
    meta = obj.get("metadata")
    spec = obj.get("spec")
    if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
        return None
    name = spec.get("requestName")
    namespace = meta.get("namespace")
    if not isinstance(name, str) or not isinstance(namespace, str) or not name:
        return None
    return namespace, name


def filed_at(obj: Mapping[str, Any]) -> datetime | None:
    """When the API server created the ApprovalDecision ``obj`` (its creationTimestamp)."""
    meta = obj.get("metadata")
    return api_time(meta.get("creationTimestamp")) if isinstance(meta, Mapping) else None


def decision_envelope(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    spec = obj.get("spec")
    record = spec.get("record") if isinstance(spec, Mapping) else None
    return record if isinstance(record, Mapping) else None


def statement_digest(record: records.ParsedRecord) -> str:
    """sha256 (hex) of the record's DSSE payload: the signed statement, nonce included."""
    return hashlib.sha256(record.envelope.payload).hexdigest()


def _creation_order(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")


def api_time(value: object) -> datetime | None:
    """A time the API server wrote (``creationTimestamp``), or None if absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return records.parse_time(value)
    except ValueError:
        return None
