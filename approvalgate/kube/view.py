"""The webhook's cluster view: the approval queue and the agents platform's objects, fed by watches.

:class:`WatchedView` implements :class:`approvals.view.ClusterView` for decide() from one
informer (:mod:`kube.informer`) per kind, each listing and watching in all namespaces: the
queue's ApprovalRequests, ApprovalDecisions and ApprovalUses, and the agents platform's
parents (Schedules, OrchestrationRuns, Swarms), the Orchestrations OrchestrationRuns follow,
and the content runs execute (ImplementationSpecs, Agents, AgentProviders). Admissions never
call the API server: they read :class:`ViewIndex`, which the informers' change handlers keep
current one object at a time.

Index. Each informer thread is the only writer of its own dicts; a change replaces the value
of one key (an immutable tuple, or one object) with one assignment, so a reader on another
thread sees the old value or the new one, never half of a change, and takes no lock. A lookup
is one dict ``get`` however many objects are cached (10,000 decisions cost no more than ten);
a change costs O(objects under that key). After a 410 Gone the informer lists again and hands
the difference to the handlers as ordinary changes, so the index needs no rebuild.

- decisions by ``(namespace, spec.requestName)``: their ``spec.record`` envelopes in
  ``creationTimestamp`` order (then name), as :meth:`approvals.view.StaticView.build` orders them,
  and (``decisions_for``) each with that creation time, parsed once per change;
- uses by statement digest, by ``(namespace, spec.run.uid)``, and by ``(namespace, reference)``
  for each ``spec.references`` key ("ImplementationSpec/name", "AgentProvider/name");
- requests by ``(namespace, name)``, as a summary (:func:`request_summary`: never the run);
- Schedules, OrchestrationRuns, Orchestrations and Swarms by ``(kind, namespace, name)``, as
  a summary (:func:`approvals.parents.summary`: what decide() reads, a Schedule's or Swarm's
  coverage computed when the change arrives; bounded, a stub saying why past the bound);
- ImplementationSpecs, Agents and AgentProviders by ``(kind, namespace, name)`` as a digest
  only (:func:`approvals.content.digest`): their text can be large, and a digest is all
  decide() compares; an Agent's summary keeps the name of the AgentProvider it names too
  (:data:`CONTENT_PROVIDER`), which a run executes with it.

Trust. :attr:`WatchedView.problem` is "" only while every informer is synced and each has
heard from the API server within ``max_age`` seconds; otherwise it names the kind and why
(not listed yet and the last error, a watch lost N s ago, the CRDs not installed: the
approval queue's or the agents platform's), and decide() denies what needs the view with
that sentence. Each watch is re-opened every ``watch_timeout`` seconds (a third of
``max_age`` by default, at most 60), so a healthy view is never older than the bound.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from approvalgate.approvals import content, parents
from approvalgate.approvals.view import (
    KINDS,
    Filed,
    StaticView,
    Use,
    decision_envelope,
    decision_key,
    filed_at,
    is_pending,
    requester_of,
)
from approvalgate.kube.backoff import Backoff
from approvalgate.kube.client import Client
from approvalgate.kube.errors import KubeError
from approvalgate.kube.informer import Informer, Transform, wait_all_synced
from approvalgate.kube.lists import list_all
from approvalgate.kube.resources import (
    AGENT_PROVIDERS,
    AGENTS,
    APPROVAL_DECISIONS,
    APPROVAL_REQUESTS,
    APPROVAL_USES,
    IMPLEMENTATION_SPECS,
    ORCHESTRATION_RUNS,
    ORCHESTRATIONS,
    SCHEDULES,
    SWARMS,
    Resource,
    object_key,
)
from approvalgate.kube.store import Change

DEFAULT_MAX_AGE: Final = 30.0
GROUP: Final = APPROVAL_REQUESTS.group
CRDS_MISSING: Final = f"the {GROUP} CRDs are not installed: install the chart's CRDs"
PLATFORM_CRDS_MISSING: Final = (
    "the agents platform's CRDs are not installed: install (or upgrade) the agents chart's CRDs"
)

REQUEST: Final = KINDS[APPROVAL_REQUESTS.plural]
DECISION: Final = KINDS[APPROVAL_DECISIONS.plural]
USE: Final = KINDS[APPROVAL_USES.plural]
QUEUE_RESOURCES: Final[Mapping[str, Resource]] = {
    REQUEST: APPROVAL_REQUESTS,
    DECISION: APPROVAL_DECISIONS,
    USE: APPROVAL_USES,
}
"""The approval queue's kinds (the chart's CRDs), by Kind."""

SCHEDULE: Final = parents.SCHEDULE.kind
ORCHESTRATION_RUN: Final = parents.ORCHESTRATION_RUN.kind
ORCHESTRATION: Final = parents.ORCHESTRATION.kind
SWARM: Final = parents.SWARM.kind
IMPLEMENTATION_SPEC, AGENT, AGENT_PROVIDER = content.KINDS
OBJECT_RESOURCES: Final[Mapping[str, Resource]] = {
    SCHEDULE: SCHEDULES,
    ORCHESTRATION_RUN: ORCHESTRATION_RUNS,
    ORCHESTRATION: ORCHESTRATIONS,
    SWARM: SWARMS,
    IMPLEMENTATION_SPEC: IMPLEMENTATION_SPECS,
    AGENT: AGENTS,
    AGENT_PROVIDER: AGENT_PROVIDERS,
}
"""The agents platform's kinds decide() reads by name (:meth:`WatchedView.object`)."""
CONTENT_KINDS: Final = frozenset(content.KINDS)
"""Referenced content: kept as a digest only (:meth:`WatchedView.content`)."""

RESOURCES: Final[Mapping[str, Resource]] = {**QUEUE_RESOURCES, **OBJECT_RESOURCES}
"""Every kind the view holds, by Kind (the ``kind`` label of the view's metrics)."""

CONTENT_DIGEST: Final = "contentDigest"
"""Where a content summary (:func:`content_summary`) keeps the digest of the object's spec."""
CONTENT_PROVIDER: Final = "providerName"
"""Where an Agent's content summary keeps the AgentProvider it names ("" when none)."""
CONTENT_PROMPT: Final = "systemPromptSource"
"""Where an Agent's content summary keeps the ConfigMap or Secret it takes its system prompt
from (:func:`approvals.content.prompt_ref`; "" when none)."""
LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"

_K = TypeVar("_K", str, tuple[str, str])
_Entry = tuple[tuple[str, str], Filed]  # ((creationTimestamp, name), (envelope, created))


class ViewIndex:
    """What decide() looks up, updated one change at a time (see the module docstring).

    Writers: :meth:`request_changed`, :meth:`decision_changed`, :meth:`use_changed` and the
    handlers :meth:`object_changed` makes (one per kind of :data:`OBJECT_RESOURCES`), each
    called from one thread only (its informer's). Readers: the lookups, from any thread.
    """

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str], Mapping[str, Any]] = {}
        # (namespace, spec.requester) -> pending requests (is_pending)
        self._pending: dict[tuple[str, str], int] = {}
        # decisions: entries (for order) and envelopes (what a lookup returns) per request
        self._entries: dict[tuple[str, str], tuple[_Entry, ...]] = {}
        self._envelopes: dict[tuple[str, str], tuple[Mapping[str, Any], ...]] = {}
        self._filed: dict[tuple[str, str], tuple[Filed, ...]] = {}
        self._decision_at: dict[str, tuple[str, str]] = {}  # object key -> request key
        # uses
        self._by_statement: dict[str, tuple[Use, ...]] = {}
        self._by_run: dict[tuple[str, str], tuple[Use, ...]] = {}
        self._by_reference: dict[tuple[str, str], tuple[Use, ...]] = {}  # (ns, "Kind/name")
        self._use_at: dict[str, Use] = {}  # object key -> its use
        # the agents platform's objects: one dict per kind, (namespace, name) -> object
        self._objects: dict[str, dict[tuple[str, str], Mapping[str, Any]]] = {
            kind: {} for kind in OBJECT_RESOURCES
        }

    # --- reads (any thread, no lock) -------------------------------------------------------

    def records_for(self, namespace: str, name: str) -> Sequence[Mapping[str, Any]]:
        return self._envelopes.get((namespace, name), ())

    def decisions_for(self, namespace: str, name: str) -> Sequence[Filed]:
        return self._filed.get((namespace, name), ())

    def uses_of(self, statement: str) -> Sequence[Use]:
        return self._by_statement.get(statement, ())

    def use_of_run(self, namespace: str, uid: str) -> Use | None:
        """The use of that run: the one named by its uid (as the controller names it), else
        the newest (the least settled: a finalizer waits for it)."""
        uses = self._by_run.get((namespace, uid), ())
        if not uses:
            return None
        for use in uses:
            if use.name == uid:
                return use
        return uses[-1]

    def request(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._requests.get((namespace, name))

    def pending_requests(self, namespace: str, requester: str) -> int:
        return self._pending.get((namespace, requester), 0)

    def object(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The object as stored: a summary (:func:`approvals.parents.summary`) for Schedule,
        OrchestrationRun, Orchestration and Swarm; a summary (metadata and
        :data:`CONTENT_DIGEST`) for ImplementationSpec, Agent and AgentProvider. None for any
        other kind."""
        objects = self._objects.get(kind)
        return None if objects is None else objects.get((namespace, name))

    def content(self, kind: str, namespace: str, name: str) -> str | None:
        """:func:`approvals.content.digest` of an ImplementationSpec, Agent or AgentProvider;
        None when the view does not hold it."""
        if kind not in CONTENT_KINDS:
            return None
        obj = self.object(kind, namespace, name)
        digest = obj.get(CONTENT_DIGEST) if obj is not None else None
        return digest if isinstance(digest, str) else None

    def provider(self, namespace: str, agent: str) -> str | None:
        """The AgentProvider the Agent names ("" when none); None when the view does not
        hold the Agent."""
        obj = self.object(AGENT, namespace, agent)
        if obj is None:
            return None
        name = obj.get(CONTENT_PROVIDER)
        return name if isinstance(name, str) else ""

    def prompt_source(self, namespace: str, agent: str) -> str:
        """The ConfigMap or Secret the Agent takes its system prompt from ("" when none, or
        when the view does not hold the Agent)."""
        obj = self.object(AGENT, namespace, agent)
        source = obj.get(CONTENT_PROMPT) if obj is not None else None
        return source if isinstance(source, str) else ""

    def content_uses(self, namespace: str, key: str) -> Sequence[Use]:
        """The uses in ``namespace`` whose ``references`` bind ``key`` ("Agent/name"),
        expired ones included (decide() judges expiry at its own ``now``)."""
        return self._by_reference.get((namespace, key), ())

    def counts(self) -> dict[str, int]:
        """Objects indexed, by kind (decisions and uses that are not well-formed are not)."""
        return {
            REQUEST: len(self._requests),
            DECISION: len(self._decision_at),
            USE: len(self._use_at),
            **{kind: len(objects) for kind, objects in self._objects.items()},
        }

    # --- writers (one thread each) ---------------------------------------------------------

    def request_changed(self, change: Change) -> None:
        key = _name_key(change.object)
        old = self._requests.get(key)
        if change.type == "DELETED":
            if old is not None:
                del self._requests[key]
        else:
            self._requests[key] = change.object
        if old is not None and is_pending(old):  # O(1): one counter per requester
            self._count_pending((key[0], requester_of(old)), -1)
        if change.type != "DELETED" and is_pending(change.object):
            self._count_pending((key[0], requester_of(change.object)), 1)

    def decision_changed(self, change: Change) -> None:
        old_key = self._decision_at.pop(change.key, None)
        if old_key is not None:
            self._set_entries(
                old_key, tuple(e for e in self._entries.get(old_key, ()) if e[0][1] != change.key)
            )
        if change.type == "DELETED":
            return
        key = decision_key(change.object)
        envelope = decision_envelope(change.object)
        if key is None or envelope is None:
            return  # not a decision decide() could read: ignored, as StaticView.build does
        meta = change.object.get("metadata") or {}
        order = (str(meta.get("creationTimestamp") or ""), change.key)
        entry: _Entry = (order, Filed(envelope, filed_at(change.object)))
        entries = list(self._entries.get(key, ()))
        bisect.insort(entries, entry, key=lambda e: e[0])
        self._decision_at[change.key] = key
        self._set_entries(key, tuple(entries))

    def use_changed(self, change: Change) -> None:
        old = self._use_at.pop(change.key, None)
        if old is not None:
            self._drop_use(old)
        if change.type == "DELETED":
            return
        use = Use.of(change.object)
        if use is None:
            return
        self._use_at[change.key] = use
        run = (use.namespace, use.run_uid)
        self._by_run[run] = _by_creation((*self._by_run.get(run, ()), use))
        for statement in use.statements:
            self._by_statement[statement] = (*self._by_statement.get(statement, ()), use)
        for reference in use.references:
            key = (use.namespace, reference)
            self._by_reference[key] = (*self._by_reference.get(key, ()), use)

    def _count_pending(self, key: tuple[str, str], delta: int) -> None:
        count = self._pending.get(key, 0) + delta
        if count > 0:
            self._pending[key] = count
        else:
            self._pending.pop(key, None)

    def object_changed(self, kind: str) -> Callable[[Change], None]:
        """The handler of ``kind``'s informer (one of :data:`OBJECT_RESOURCES`)."""
        objects = self._objects[kind]

        def changed(change: Change) -> None:
            key = _name_key(change.object)
            if change.type == "DELETED":
                objects.pop(key, None)
            else:
                objects[key] = change.object

        return changed

    def _set_entries(self, key: tuple[str, str], entries: tuple[_Entry, ...]) -> None:
        if entries:
            self._entries[key] = entries
            self._envelopes[key] = tuple(filed.envelope for _, filed in entries)
            self._filed[key] = tuple(filed for _, filed in entries)
        else:  # envelopes first: a reader sees the old tuple or nothing, never a stale one
            self._envelopes.pop(key, None)
            self._filed.pop(key, None)
            self._entries.pop(key, None)

    def _drop_use(self, use: Use) -> None:
        run = (use.namespace, use.run_uid)
        _put(self._by_run, run, tuple(u for u in self._by_run.get(run, ()) if u is not use))
        for statement in use.statements:
            remaining = tuple(u for u in self._by_statement.get(statement, ()) if u is not use)
            _put(self._by_statement, statement, remaining)
        for reference in use.references:
            key = (use.namespace, reference)
            remaining = tuple(u for u in self._by_reference.get(key, ()) if u is not use)
            _put(self._by_reference, key, remaining)


def _put(index: dict[_K, tuple[Use, ...]], key: _K, values: tuple[Use, ...]) -> None:
    if values:
        index[key] = values
    else:
        index.pop(key, None)


def _by_creation(uses: Iterable[Use]) -> tuple[Use, ...]:
    return tuple(sorted(uses, key=lambda u: (u.created is not None, u.created or 0, u.name)))


def _name_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


# --- what the informers store ---------------------------------------------------------------


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` less ``metadata.managedFields`` and the last-applied annotation (copies of
    what the object says; decide() reads neither)."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return obj
    annotations = meta.get("annotations")
    last_applied = isinstance(annotations, Mapping) and LAST_APPLIED in annotations
    if "managedFields" not in meta and not last_applied:
        return obj
    kept = {k: v for k, v in meta.items() if k != "managedFields"}
    if last_applied:
        assert isinstance(annotations, Mapping)
        kept["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    return {**obj, "metadata": kept}


_SUMMARY_METADATA: Final = parents.IDENTITY_FIELDS


def content_summary(obj: dict[str, Any]) -> dict[str, Any]:
    """What the view keeps of an ImplementationSpec, Agent or AgentProvider: its identity and
    the digest of its spec under :data:`CONTENT_DIGEST`, not the spec (its text can be
    large); an Agent's the AgentProvider it names under :data:`CONTENT_PROVIDER` and the
    source of its system prompt under :data:`CONTENT_PROMPT` too."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    summary = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {k: meta[k] for k in _SUMMARY_METADATA if k in meta},
        CONTENT_DIGEST: content.digest(obj),
    }
    if obj.get("kind") == AGENT:
        summary[CONTENT_PROVIDER] = content.provider_name(obj)
        summary[CONTENT_PROMPT] = content.prompt_ref(obj)
    return summary


def request_summary(obj: dict[str, Any]) -> dict[str, Any]:
    """What the view keeps of an ApprovalRequest: what decide() reads of it (its uid, and
    the spec less the run: requester, environment, specDigest, cancelled, reason), its
    status phase, never ``spec.run`` nor its own labels and annotations. Each request then
    costs the view a few KiB, bounded by the CRD's ``maxLength``s, however large its run: a
    requester making many requests of large runs cannot grow every webhook worker's memory
    by the size of what she sent (the view is per worker process, and fail-closed
    admission dies with it)."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    spec = obj.get("spec")
    status = obj.get("status")
    summary: dict[str, Any] = {k: obj[k] for k in ("apiVersion", "kind") if k in obj}
    summary["metadata"] = {k: meta[k] for k in _SUMMARY_METADATA if k in meta}
    if isinstance(spec, Mapping):
        summary["spec"] = {k: v for k, v in spec.items() if k != "run"}
    if isinstance(status, Mapping) and "phase" in status:
        summary["status"] = {"phase": status["phase"]}
    return summary


def parent_summary(obj: dict[str, Any]) -> dict[str, Any]:
    """What the view keeps of a Schedule, OrchestrationRun, Orchestration or Swarm
    (:func:`approvals.parents.summary`: what decide() reads, a Schedule's or Swarm's
    coverage computed here, off the admission path; a stub past its bound)."""
    return dict(parents.summary(obj))


def _summary_of(kind: str) -> Transform:
    """:func:`parent_summary` of an object of ``kind`` (a list's items may omit their kind,
    which the summary is made by)."""

    def summarise(obj: dict[str, Any]) -> dict[str, Any]:
        return parent_summary(obj if obj.get("kind") == kind else {**obj, "kind": kind})

    summarise.__name__ = f"parent_summary_of_{kind}"
    return summarise


PARENT_TRANSFORMS: Final[Mapping[str, Transform]] = {
    kind: _summary_of(kind) for kind in (SCHEDULE, ORCHESTRATION_RUN, ORCHESTRATION, SWARM)
}
"""The informers' transforms of the parents, by Kind (the webhook's and the controller's)."""


TRANSFORMS: Final[Mapping[str, Transform]] = {
    REQUEST: request_summary,
    **PARENT_TRANSFORMS,
    IMPLEMENTATION_SPEC: content_summary,
    AGENT: content_summary,
    AGENT_PROVIDER: content_summary,
}
"""What each informer's store keeps of an object, by Kind (decisions and uses: all of it;
their specs are bounded by the CRDs' ``maxLength`` and ``maxItems``)."""


@dataclass(frozen=True)
class KindStatus:
    """One informer's state, for /readyz, the metrics and the log lines."""

    kind: str
    synced: bool
    objects: int
    seconds_since_contact: float  # inf before any contact
    error: KubeError | None  # the last failed list (or watch), if it has not worked since

    @property
    def missing(self) -> bool:
        """The API server does not serve this kind (HTTP 404): its CRD is not installed."""
        return self.error is not None and self.error.status == 404


class WatchedView:
    """The cluster view decide() reads in the webhook (see the module docstring).

    ``start`` launches the informers (threads, one per kind); ``stop`` ends them. Until every
    kind is synced, and whenever one has gone ``max_age`` seconds without the API server,
    :attr:`problem` says so and decide() denies what needs the view.
    """

    offline = False

    def __init__(
        self,
        client: Client,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        watch_timeout: int | None = None,
        page_size: int = 500,
        backoff: Callable[[], Backoff] | None = None,
    ) -> None:
        if watch_timeout is None:
            watch_timeout = default_watch_timeout(max_age)
        self.client = client
        self.max_age = max_age
        self.index = ViewIndex()
        self.informers: dict[str, Informer] = {
            kind: Informer(
                client,
                resource,
                None,
                page_size=page_size,
                watch_timeout=watch_timeout,
                backoff=backoff() if backoff is not None else Backoff(),
                transform=TRANSFORMS.get(kind),
            )
            for kind, resource in RESOURCES.items()
        }
        self.informers[REQUEST].add_handler(self.index.request_changed)
        self.informers[DECISION].add_handler(self.index.decision_changed)
        self.informers[USE].add_handler(self.index.use_changed)
        for kind in OBJECT_RESOURCES:
            self.informers[kind].add_handler(self.index.object_changed(kind))
        self.started = False

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for informer in self.informers.values():
            informer.start()
        self.started = True

    def stop(self, timeout: float = 10.0) -> None:
        for informer in self.informers.values():
            informer.stop(timeout)  # a stop wakes a blocked read: each ends at once

    def __enter__(self) -> WatchedView:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return wait_all_synced(self.informers.values(), timeout)

    # --- state ---------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """Every kind has been listed once (it may have gone stale since)."""
        return all(informer.synced for informer in self.informers.values())

    def status(self) -> list[KindStatus]:
        return [
            KindStatus(
                kind=kind,
                synced=informer.synced,
                objects=len(informer.store),
                seconds_since_contact=informer.seconds_since_contact(),
                error=informer.list_error or informer.watcher.last_error,
            )
            for kind, informer in self.informers.items()
        ]

    @property
    def problem(self) -> str:
        """ "" when every kind is synced and fresh within ``max_age``; else why not."""
        informers = self.informers
        if all(i.fresh(self.max_age) for i in informers.values()):
            return ""  # the admission path: a read and a clock per kind, no allocation
        if not self.started:
            return "the cluster view is not started"
        return describe_problem(self.status(), self.max_age)

    # --- ClusterView -------------------------------------------------------------------------

    def records_for(self, namespace: str, name: str) -> Sequence[Mapping[str, Any]]:
        return self.index.records_for(namespace, name)

    def decisions_for(self, namespace: str, name: str) -> Sequence[Filed]:
        return self.index.decisions_for(namespace, name)

    def uses_of(self, statement: str) -> Sequence[Use]:
        return self.index.uses_of(statement)

    def use_of_run(self, namespace: str, uid: str) -> Use | None:
        return self.index.use_of_run(namespace, uid)

    def request(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.index.request(namespace, name)

    def pending_requests(self, namespace: str, requester: str) -> int:
        return self.index.pending_requests(namespace, requester)

    def object(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.index.object(kind, namespace, name)

    def content(self, kind: str, namespace: str, name: str) -> str | None:
        return self.index.content(kind, namespace, name)

    def provider(self, namespace: str, agent: str) -> str | None:
        return self.index.provider(namespace, agent)

    def prompt_source(self, namespace: str, agent: str) -> str:
        return self.index.prompt_source(namespace, agent)

    def content_uses(self, namespace: str, key: str) -> Sequence[Use]:
        return self.index.content_uses(namespace, key)


def default_watch_timeout(max_age: float) -> int:
    """How long each watch lasts: a third of the bound (at most 60 s, at least 1 s), so a
    healthy view hears from the server well within ``max_age``."""
    return max(1, min(60, math.floor(max_age / 3)))


def describe_problem(statuses: Sequence[KindStatus], max_age: float) -> str:
    """One sentence per cause, kinds named: what :attr:`WatchedView.problem` says."""
    lost = [s for s in statuses if s.synced and s.seconds_since_contact > max_age]
    missing = [s.kind for s in statuses if s.missing and (not s.synced or s in lost)]
    parts = []
    queue = [kind for kind in missing if kind not in OBJECT_RESOURCES]
    platform = [kind for kind in missing if kind in OBJECT_RESOURCES]
    if queue:
        parts.append(f"{CRDS_MISSING} (the API server does not serve {_kinds(queue)})")
    if platform:
        parts.append(f"{PLATFORM_CRDS_MISSING} (the API server does not serve {_kinds(platform)})")
    unsynced = [s for s in statuses if not s.synced and not s.missing]
    failing = [s for s in unsynced if s.error is not None]
    for status in failing:
        assert status.error is not None
        parts.append(f"the cluster view has not synced {status.kind}s yet: {status.error.message}")
    waiting = [s.kind for s in unsynced if s.error is None]
    if waiting:
        parts.append(f"the cluster view has not synced {_kinds(waiting)} yet (listing)")
    for status in lost:
        if not status.missing:  # a CRD deleted after the sync is said above
            why = f": {status.error.message}" if status.error is not None else ""
            parts.append(
                f"the cluster view lost its watch of {status.kind}s "
                f"{status.seconds_since_contact:.0f} s ago (bound {max_age:g} s){why}"
            )
    return "; ".join(parts)


def _kinds(kinds: Sequence[str]) -> str:
    return ", ".join(f"{kind}s" for kind in kinds)


# --- one list of everything (verify --cluster) --------------------------------------------------


def list_view(client: Client, namespaces: Sequence[str] | None = None) -> StaticView:
    """The queue's three kinds listed once (in ``namespaces``, or all) as a :class:`StaticView`.

    Raises:
        KubeError: a list failed; a 404 (the CRDs are not installed) says so.
    """
    scopes: list[str | None] = list(namespaces) if namespaces else [None]
    objects: dict[str, list[dict[str, Any]]] = {}
    for kind, resource in QUEUE_RESOURCES.items():
        items: dict[str, dict[str, Any]] = {}
        for namespace in scopes:
            try:
                listing = list_all(client, resource, namespace)
            except KubeError as exc:
                if exc.status == 404:
                    raise KubeError(
                        f"{CRDS_MISSING} ({client.server} does not serve {kind}s)",
                        status=404,
                        advice="install the chart's CRDs, or verify without --cluster",
                    ) from exc
                raise
            items.update((object_key(obj), obj) for obj in listing.items)
        objects[kind] = list(items.values())
    return StaticView.build(
        requests=objects[REQUEST], decisions=objects[DECISION], uses=objects[USE]
    )
