"""The webhook's cluster view: ApprovalRequests, ApprovalDecisions and ApprovalUses, fed by watches.

:class:`WatchedView` implements :class:`approvals.view.ClusterView` for decide() from three
informers (:mod:`kube.informer`), one per kind, each listing and watching in all namespaces.
Admissions never call the API server: they read :class:`ViewIndex`, which the informers'
change handlers keep current one object at a time.

Index. Each informer thread is the only writer of its own dicts; a change replaces the value
of one key (an immutable tuple) with one assignment, so a reader on another thread sees the
old tuple or the new one, never half of a change, and takes no lock. A lookup is one dict
``get`` however many objects are cached (10,000 decisions cost no more than ten); a change
costs O(objects under that key). After a 410 Gone the informer lists again and hands the
difference to the handlers as ordinary changes, so the index needs no rebuild.

- decisions by ``(namespace, spec.requestName)``: their ``spec.record`` envelopes in
  ``creationTimestamp`` order (then name), as :meth:`approvals.view.StaticView.build` orders them;
- uses by statement digest, and by ``(namespace, spec.run.uid)``;
- requests by ``(namespace, name)``.

Trust. :attr:`WatchedView.problem` is "" only while all three informers are synced and each has
heard from the API server within ``max_age`` seconds; otherwise it names the kind and why
(not listed yet and the last error, a watch lost N s ago, the CRDs not installed), and
decide() denies what needs the view with that sentence. Each watch is re-opened every
``watch_timeout`` seconds (a third of ``max_age`` by default, at most 60), so a healthy view
is never older than the bound.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from approvalgate.approvals.view import (
    KINDS,
    StaticView,
    Use,
    decision_envelope,
    decision_key,
)
from approvalgate.kube.backoff import Backoff
from approvalgate.kube.client import Client
from approvalgate.kube.errors import KubeError
from approvalgate.kube.informer import Informer
from approvalgate.kube.lists import list_all
from approvalgate.kube.resources import (
    APPROVAL_DECISIONS,
    APPROVAL_REQUESTS,
    APPROVAL_USES,
    Resource,
    object_key,
)
from approvalgate.kube.store import Change

DEFAULT_MAX_AGE: Final = 30.0
GROUP: Final = APPROVAL_REQUESTS.group
CRDS_MISSING: Final = f"the {GROUP} CRDs are not installed: install the chart's CRDs"

REQUEST: Final = KINDS[APPROVAL_REQUESTS.plural]
DECISION: Final = KINDS[APPROVAL_DECISIONS.plural]
USE: Final = KINDS[APPROVAL_USES.plural]
RESOURCES: Final[Mapping[str, Resource]] = {
    REQUEST: APPROVAL_REQUESTS,
    DECISION: APPROVAL_DECISIONS,
    USE: APPROVAL_USES,
}
"""The three kinds the view holds, by Kind (the ``kind`` label of the view's metrics)."""

_K = TypeVar("_K", str, tuple[str, str])
_Entry = tuple[tuple[str, str], Mapping[str, Any]]  # ((creationTimestamp, name), envelope)


class ViewIndex:
    """What decide() looks up, updated one change at a time (see the module docstring).

    Writers: :meth:`request_changed`, :meth:`decision_changed`, :meth:`use_changed`, each called
    from one thread only (its informer's). Readers: the four lookups, from any thread.
    """

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str], Mapping[str, Any]] = {}
        # decisions: entries (for order) and envelopes (what a lookup returns) per request
        self._entries: dict[tuple[str, str], tuple[_Entry, ...]] = {}
        self._envelopes: dict[tuple[str, str], tuple[Mapping[str, Any], ...]] = {}
        self._decision_at: dict[str, tuple[str, str]] = {}  # object key -> request key
        # uses
        self._by_statement: dict[str, tuple[Use, ...]] = {}
        self._by_run: dict[tuple[str, str], tuple[Use, ...]] = {}
        self._use_at: dict[str, Use] = {}  # object key -> its use

    # --- reads (any thread, no lock) -------------------------------------------------------

    def records_for(self, namespace: str, name: str) -> Sequence[Mapping[str, Any]]:
        return self._envelopes.get((namespace, name), ())

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

    def counts(self) -> dict[str, int]:
        """Objects indexed, by kind (decisions and uses that are not well-formed are not)."""
        return {
            REQUEST: len(self._requests),
            DECISION: len(self._decision_at),
            USE: len(self._use_at),
        }

    # --- writers (one thread each) ---------------------------------------------------------

    def request_changed(self, change: Change) -> None:
        key = _name_key(change.object)
        if change.type == "DELETED":
            if self._requests.get(key) is not None:
                del self._requests[key]
        else:
            self._requests[key] = change.object

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
        entry: _Entry = ((str(meta.get("creationTimestamp") or ""), change.key), envelope)
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

    def _set_entries(self, key: tuple[str, str], entries: tuple[_Entry, ...]) -> None:
        if entries:
            self._entries[key] = entries
            self._envelopes[key] = tuple(envelope for _, envelope in entries)
        else:  # envelopes first: a reader sees the old tuple or nothing, never a stale one
            self._envelopes.pop(key, None)
            self._entries.pop(key, None)

    def _drop_use(self, use: Use) -> None:
        run = (use.namespace, use.run_uid)
        _put(self._by_run, run, tuple(u for u in self._by_run.get(run, ()) if u is not use))
        for statement in use.statements:
            remaining = tuple(u for u in self._by_statement.get(statement, ()) if u is not use)
            _put(self._by_statement, statement, remaining)


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

    ``start`` launches the three informers (threads); ``stop`` ends them. Until every kind is
    synced, and whenever one has gone ``max_age`` seconds without the API server,
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
            )
            for kind, resource in RESOURCES.items()
        }
        self.informers[REQUEST].add_handler(self.index.request_changed)
        self.informers[DECISION].add_handler(self.index.decision_changed)
        self.informers[USE].add_handler(self.index.use_changed)
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
        deadline = None if timeout is None else time.monotonic() + timeout
        for informer in self.informers.values():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not informer.wait_synced(left):
                return False
        return True

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
            return ""  # the admission path: three reads and a clock, no allocation
        if not self.started:
            return "the cluster view is not started"
        return describe_problem(self.status(), self.max_age)

    # --- ClusterView -------------------------------------------------------------------------

    def records_for(self, namespace: str, name: str) -> Sequence[Mapping[str, Any]]:
        return self.index.records_for(namespace, name)

    def uses_of(self, statement: str) -> Sequence[Use]:
        return self.index.uses_of(statement)

    def use_of_run(self, namespace: str, uid: str) -> Use | None:
        return self.index.use_of_run(namespace, uid)

    def request(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.index.request(namespace, name)

    # Issue 16 (parents, referenced content): informers for those kinds come next; until
    # then the view knows none of them, so decide() denies what needs them (fail closed).
    def object(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        return None

    def content(self, kind: str, namespace: str, name: str) -> str | None:
        return None

    def content_uses(self, namespace: str, key: str) -> Sequence[Use]:
        return ()


def default_watch_timeout(max_age: float) -> int:
    """How long each watch lasts: a third of the bound (at most 60 s, at least 1 s), so a
    healthy view hears from the server well within ``max_age``."""
    return max(1, min(60, math.floor(max_age / 3)))


def describe_problem(statuses: Sequence[KindStatus], max_age: float) -> str:
    """One sentence per cause, kinds named: what :attr:`WatchedView.problem` says."""
    lost = [s for s in statuses if s.synced and s.seconds_since_contact > max_age]
    missing = [s.kind for s in statuses if s.missing and (not s.synced or s in lost)]
    parts = []
    if missing:
        parts.append(f"{CRDS_MISSING} (the API server does not serve {_kinds(missing)})")
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
    """The three kinds listed once (in ``namespaces``, or all) as a :class:`StaticView`.

    Raises:
        KubeError: a list failed; a 404 (the CRDs are not installed) says so.
    """
    scopes: list[str | None] = list(namespaces) if namespaces else [None]
    objects: dict[str, list[dict[str, Any]]] = {}
    for kind, resource in RESOURCES.items():
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
