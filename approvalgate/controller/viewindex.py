"""The controller's cluster view, kept current one change at a time (issue 18).

:meth:`approvals.view.StaticView.build` over every cached request, decision, use and parent
costs O(objects) in Python, and the controller used to pay it after every change: each run
it admits adds a use, so a thousand runs cost a thousand builds over up to a thousand uses
each (half the controller's CPU in the peers benchmark). :class:`ViewIndex` keeps the same
dictionaries the build makes, updated by the informers' change handlers (one object each),
and :meth:`ViewIndex.snapshot` hands the reconciler a :class:`StaticView` over shallow copies
of them (C-level dict copies, only of the dictionaries that changed since the last one): one
consistent moment per reconcile, as before.

The snapshot equals ``StaticView.build`` over the caches' objects, in the caches' order:
a use's tuples (per statement, per reference) keep the order of the stores (an object keeps
its place when modified, a new one goes last; namespaces in the caches' order), and a run
with more than one use gets the last, as the build's loop does. After a list (the first, or
one after a 410 Gone) the order of a store is the list's, which its changes do not convey:
so whenever an informer has listed again (or become synced) since the last snapshot, the
index is rebuilt from the stores first, as the controller used to do every time.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from approvalgate.approvals.view import (
    VIEWED_KINDS,
    Filed,
    StaticView,
    Use,
    decision_envelope,
    decision_key,
    filed_at,
)
from approvalgate.kube.informer import Informer
from approvalgate.kube.store import Change

Place = tuple[int, int]
"""Where an object sits in the caches' order: (its informer's namespace index, arrival)."""
Member = tuple[int, str]
"""An object of one resource: (its informer's namespace index, its store key)."""
NameKey = tuple[str, str]

REQUESTS, DECISIONS, USES, PARENTS = "requests", "decisions", "uses", "parents"
ROLES = (REQUESTS, DECISIONS, USES, PARENTS)


class ViewIndex:
    """The parts of a :class:`StaticView`, updated per change (see the module docstring).

    ``informers``: for each role (:data:`ROLES`), the informers in the caches' order, each
    with the Kind its objects are indexed as (parents: Schedule, OrchestrationRun, ...;
    ``None`` for the queue's kinds). Writers: the handlers :meth:`handler` makes (one per
    informer, on its thread); reader: :meth:`snapshot` (any thread). One lock: a change
    costs O(objects under its keys), a snapshot O(entries of the parts that changed).
    """

    def __init__(
        self,
        informers: Mapping[str, Sequence[tuple[Informer, str | None]]],
        *,
        max_age: float,
    ) -> None:
        self.informers = informers
        self.max_age = max_age
        self.rebuilds = 0  # complete rebuilds from the stores (after a list)
        self._lock = threading.Lock()
        self._arrivals = itertools.count()
        self._listed: tuple[tuple[bool, int], ...] | None = None
        self._snapshot: StaticView | None = None
        self._dirty: set[str] = set()
        self._clear()
        for role, entries in informers.items():
            for index, (informer, kind) in enumerate(entries):
                informer.add_handler(self.handler(role, index, kind))

    def _clear(self) -> None:
        self._requests: dict[NameKey, Mapping[str, Any]] = {}
        self._request_at: dict[Member, NameKey] = {}
        # decisions: per request, the entries in creation order and their envelopes
        self._entries: dict[NameKey, list[tuple[tuple[str, str], Filed]]] = {}
        self._decisions: dict[NameKey, tuple[Mapping[str, Any], ...]] = {}
        self._filed: dict[NameKey, tuple[Filed, ...]] = {}
        self._decision_at: dict[Member, tuple[NameKey, tuple[str, str]]] = {}
        # uses: the place of every stored use object (parsed or not), and each parsed one
        self._places: dict[Member, Place] = {}
        self._use_at: dict[Member, tuple[Place, Use]] = {}
        self._statement_members: dict[str, dict[Member, tuple[Place, Use]]] = {}
        self._uses: dict[str, tuple[Use, ...]] = {}
        self._run_members: dict[NameKey, dict[Member, tuple[Place, Use]]] = {}
        self._runs: dict[NameKey, Use] = {}
        self._request_members: dict[NameKey, dict[Member, tuple[Place, Use]]] = {}
        self._requested: dict[NameKey, Use] = {}
        self._reference_members: dict[NameKey, dict[Member, tuple[Place, Use]]] = {}
        self._bound: dict[NameKey, tuple[Use, ...]] = {}
        # parents (Schedules, OrchestrationRuns, Orchestrations, Swarms)
        self._objects: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        self._object_at: dict[Member, tuple[str, str, str]] = {}
        self._dirty = {"requests", "decisions", "uses", "runs", "bound", "objects"}

    # --- writers --------------------------------------------------------------------------

    def handler(self, role: str, index: int, kind: str | None) -> Callable[[Change], None]:
        """The change handler of the ``index``-th informer of ``role``."""
        apply = self._applier(role, kind)

        def changed(change: Change) -> None:
            with self._lock:
                apply((index, change.key), None if change.type == "DELETED" else change.object)

        return changed

    def _applier(
        self, role: str, kind: str | None
    ) -> Callable[[Member, Mapping[str, Any] | None], None]:
        """What one object's new state (None: deleted) does to the parts of ``role``."""
        if role == REQUESTS:
            return self._request
        if role == DECISIONS:
            return self._decision
        if role == USES:
            return self._use

        def parent(member: Member, obj: Mapping[str, Any] | None) -> None:
            # as Caches.parents() has them: each with its kind (a list's items may omit it)
            if obj is not None and obj.get("kind") != kind:
                obj = {**obj, "kind": kind}
            self._parent(member, obj)

        return parent

    def _request(self, member: Member, obj: Mapping[str, Any] | None) -> None:
        old = self._request_at.pop(member, None)
        if old is not None:
            self._requests.pop(old, None)
        if obj is not None:
            meta = obj.get("metadata") or {}
            key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
            self._request_at[member] = key
            self._requests[key] = obj
        self._dirty.add("requests")

    def _decision(self, member: Member, obj: Mapping[str, Any] | None) -> None:
        old = self._decision_at.pop(member, None)
        if old is not None:
            key, order = old
            entries = [e for e in self._entries.get(key, ()) if e[0] != order]
            self._set_entries(key, entries)
        if obj is not None:
            key_ = decision_key(obj)
            envelope = decision_envelope(obj)
            if key_ is not None and envelope is not None:
                meta = obj.get("metadata") or {}
                order = (str(meta.get("creationTimestamp") or ""), str(meta.get("name") or ""))
                entries = list(self._entries.get(key_, ()))
                # after any entry of the same order, as a stable sort would keep them
                bisect.insort(entries, (order, Filed(envelope, filed_at(obj))), key=_order)
                self._decision_at[member] = (key_, order)
                self._set_entries(key_, entries)
        self._dirty.add("decisions")

    def _set_entries(self, key: NameKey, entries: list[tuple[tuple[str, str], Filed]]) -> None:
        if entries:
            self._entries[key] = entries
            self._decisions[key] = tuple(filed.envelope for _, filed in entries)
            self._filed[key] = tuple(filed for _, filed in entries)
        else:
            self._entries.pop(key, None)
            self._decisions.pop(key, None)
            self._filed.pop(key, None)

    def _use(self, member: Member, obj: Mapping[str, Any] | None) -> None:
        old = self._use_at.pop(member, None)
        if old is not None:
            _, use = old
            for statement in use.statements:
                self._leave(self._statement_members, self._uses, statement, member)
            self._leave_run(self._run_members, self._runs, member, (use.namespace, use.run_uid))
            if use.request_uid:
                key = (use.namespace, use.request_uid)
                self._leave_run(self._request_members, self._requested, member, key)
            for reference in use.references:
                key = (use.namespace, reference)
                self._leave(self._reference_members, self._bound, key, member)
        if obj is None:
            self._places.pop(member, None)
            self._dirty.update(("uses", "runs", "bound"))
            return
        place = self._places.get(member)
        if place is None:  # new in the store: after everything of its informer
            place = (member[0], next(self._arrivals))
            self._places[member] = place
        use_ = Use.of(obj)
        if use_ is not None:
            entry = (place, use_)
            self._use_at[member] = entry
            for statement in use_.statements:
                self._join(self._statement_members, self._uses, statement, member, entry)
            self._join_run(
                self._run_members, self._runs, (use_.namespace, use_.run_uid), member, entry
            )
            if use_.request_uid:
                key = (use_.namespace, use_.request_uid)
                self._join_run(self._request_members, self._requested, key, member, entry)
            for reference in use_.references:
                key = (use_.namespace, reference)
                self._join(self._reference_members, self._bound, key, member, entry)
        self._dirty.update(("uses", "runs", "bound"))

    @staticmethod
    def _join_run(
        members: dict[NameKey, dict[Member, tuple[Place, Use]]],
        index: dict[NameKey, Use],
        key: NameKey,
        member: Member,
        entry: tuple[Place, Use],
    ) -> None:
        """One use per key (a run's uid, a request's uid): the last in the caches' order."""
        held = members.setdefault(key, {})
        held[member] = entry
        index[key] = max(held.values(), key=_place)[1]

    @staticmethod
    def _leave_run(
        members: dict[NameKey, dict[Member, tuple[Place, Use]]],
        index: dict[NameKey, Use],
        member: Member,
        key: NameKey,
    ) -> None:
        held = members.get(key)
        if held is None:
            return
        held.pop(member, None)
        if held:
            index[key] = max(held.values(), key=_place)[1]
        else:
            del members[key]
            index.pop(key, None)

    @staticmethod
    def _join(
        members: dict[Any, dict[Member, tuple[Place, Use]]],
        index: dict[Any, tuple[Use, ...]],
        key: Any,
        member: Member,
        entry: tuple[Place, Use],
    ) -> None:
        held = members.setdefault(key, {})
        held[member] = entry
        index[key] = tuple(use for _, use in sorted(held.values(), key=_place))

    @staticmethod
    def _leave(
        members: dict[Any, dict[Member, tuple[Place, Use]]],
        index: dict[Any, tuple[Use, ...]],
        key: Any,
        member: Member,
    ) -> None:
        held = members.get(key)
        if held is None:
            return
        held.pop(member, None)
        if held:
            index[key] = tuple(use for _, use in sorted(held.values(), key=_place))
        else:
            del members[key]
            index.pop(key, None)

    def _parent(self, member: Member, obj: Mapping[str, Any] | None) -> None:
        old = self._object_at.pop(member, None)
        if old is not None:
            self._objects.pop(old, None)
        if obj is not None:
            kind = str(obj.get("kind") or "")
            if kind in VIEWED_KINDS:
                meta = obj.get("metadata") or {}
                ident = (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
                self._object_at[member] = ident
                self._objects[ident] = obj
        self._dirty.add("objects")

    # --- reader ---------------------------------------------------------------------------

    def snapshot(self) -> StaticView:
        """The view as of the last change (``problem`` empty: the caller sets it)."""
        listed = tuple(
            (informer.synced, informer.lists)
            for entries in self.informers.values()
            for informer, _ in entries
        )
        with self._lock:
            if listed != self._listed:
                self._rebuild()
                self._listed = listed
            if self._snapshot is not None and not self._dirty:
                return self._snapshot
            previous = self._snapshot or StaticView()
            dirty = self._dirty
            built = dataclasses.replace(
                previous,
                requests=dict(self._requests) if "requests" in dirty else previous.requests,
                decisions=dict(self._decisions) if "decisions" in dirty else previous.decisions,
                filed=dict(self._filed) if "decisions" in dirty else previous.filed,
                uses=dict(self._uses) if "uses" in dirty else previous.uses,
                runs=dict(self._runs) if "runs" in dirty else previous.runs,
                requested=dict(self._requested) if "runs" in dirty else previous.requested,
                bound=dict(self._bound) if "bound" in dirty else previous.bound,
                objects=dict(self._objects) if "objects" in dirty else previous.objects,
                max_age=self.max_age,
            )
            self._snapshot = built
            self._dirty = set()
            return built

    def _rebuild(self) -> None:
        """Everything again from the stores, in their order (the lock is held: a change
        handled after this was read from the store already, and applies as a no-op)."""
        self._clear()
        self.rebuilds += 1
        for role, entries in self.informers.items():
            for index, (informer, kind) in enumerate(entries):
                apply = self._applier(role, kind)
                for key, obj in informer.snapshot().items():
                    apply((index, key), obj)


def _order(entry: tuple[tuple[str, str], Filed]) -> tuple[str, str]:
    return entry[0]


def _place(entry: tuple[Place, Use]) -> Place:
    return entry[0]
