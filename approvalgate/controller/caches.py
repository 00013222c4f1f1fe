"""The controller's watch caches: requests, decisions, uses, runs and the parents of derived
runs, and the view over them.

One :class:`kube.informer.Informer` per resource and watched namespace (or one for all
namespaces). :meth:`Caches.view` is the :class:`approvals.view.ClusterView` the queue's
verdicts read: a :class:`~approvals.view.StaticView` of the stores, kept current one change
at a time by :class:`controller.viewindex.ViewIndex` (a snapshot of it per reconcile, shared
by every reconcile until the next change). Its ``problem`` says when the
caches cannot be relied on (not listed yet, or no contact with the API server for longer
than ``max_age`` seconds): the controller then writes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from approvalgate.approvals.view import StaticView
from approvalgate.controller import viewindex
from approvalgate.kube.client import Client
from approvalgate.kube.informer import Informer, Transform
from approvalgate.kube.resources import (
    AGENT_RUNS,
    APPROVAL_DECISIONS,
    APPROVAL_REQUESTS,
    APPROVAL_USES,
    ORCHESTRATION_RUNS,
    ORCHESTRATIONS,
    SCHEDULES,
    SWARMS,
    Resource,
)
from approvalgate.kube.store import Change
from approvalgate.kube.view import PARENT_TRANSFORMS

CORE = (APPROVAL_REQUESTS, APPROVAL_DECISIONS, APPROVAL_USES, AGENT_RUNS)
PARENTS = (SCHEDULES, ORCHESTRATION_RUNS, ORCHESTRATIONS, SWARMS)
PARENT_KINDS: Final = {
    SCHEDULES: "Schedule",
    ORCHESTRATION_RUNS: "OrchestrationRun",
    ORCHESTRATIONS: "Orchestration",
    SWARMS: "Swarm",
}
"""What a derived run's use is worked out from (its parent, the parent's Orchestration or
Swarm). Their watches do not hold the queue up: a cluster without those CRDs (or without the
RBAC to read them) still gets its requests reconciled; only derived runs wait
(:meth:`Caches.derivation_problem`)."""
WATCHED = (*CORE, *PARENTS)
TRANSFORMS: Final[Mapping[Resource, Transform]] = {
    resource: PARENT_TRANSFORMS[kind] for resource, kind in PARENT_KINDS.items()
}
"""What the parents' stores keep: the webhook view's summary (kube.view.PARENT_TRANSFORMS),
all that deriving a run reads; requests, decisions, uses and runs are kept whole."""


class Caches:
    def __init__(
        self,
        client: Client,
        namespaces: Sequence[str] = (),
        *,
        max_age: float = 90.0,
        watch_timeout: int = 60,
    ) -> None:
        self.namespaces: tuple[str | None, ...] = tuple(namespaces) or (None,)
        self.max_age = max_age
        self.informers: dict[Resource, dict[str | None, Informer]] = {
            resource: {
                ns: Informer(
                    client,
                    resource,
                    ns,
                    watch_timeout=watch_timeout,
                    transform=TRANSFORMS.get(resource),
                )
                for ns in self.namespaces
            }
            for resource in WATCHED
        }
        # before any handler of the controller's: a key queued by a change is reconciled
        # with that change in the view
        self.index = viewindex.ViewIndex(
            {
                viewindex.REQUESTS: self._kinds((APPROVAL_REQUESTS,)),
                viewindex.DECISIONS: self._kinds((APPROVAL_DECISIONS,)),
                viewindex.USES: self._kinds((APPROVAL_USES,)),
                viewindex.PARENTS: self._kinds(PARENTS),
            },
            max_age=max_age,
        )

    def _kinds(self, resources: Sequence[Resource]) -> list[tuple[Informer, str | None]]:
        return [
            (informer, PARENT_KINDS.get(resource))
            for resource in resources
            for informer in self.informers[resource].values()
        ]

    def add_handler(self, resource: Resource, handler: Callable[[Change], None]) -> None:
        for informer in self.informers[resource].values():
            informer.add_handler(handler)

    def all(self) -> Iterator[Informer]:
        for by_namespace in self.informers.values():
            yield from by_namespace.values()

    def start(self) -> None:
        for informer in self.all():
            informer.start()

    def stop(self) -> None:
        """Stop every watch and wait for its thread (each stop wakes its blocked read).

        urllib3 may refuse to shut down a response whose connection is already closing
        (ValueError, or EBADF as an OSError): that watch is ending anyway."""
        for informer in self.all():
            with contextlib.suppress(ValueError, OSError):
                informer.stop(timeout=5.0)

    # --- reads ---------------------------------------------------------------------------

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        by_namespace = self.informers[resource]
        informer = by_namespace.get(namespace) or by_namespace.get(None)
        return informer.get(name, namespace) if informer is not None else None

    def objects(self, resource: Resource) -> list[dict[str, Any]]:
        return [
            obj
            for informer in self.informers[resource].values()
            for obj in informer.snapshot().values()
        ]

    def parents(self) -> list[Mapping[str, Any]]:
        """Every Schedule, OrchestrationRun, Orchestration and Swarm, each with its ``kind``
        (what the view indexes them by; a list's items may omit it)."""
        found: list[Mapping[str, Any]] = []
        for resource, kind in PARENT_KINDS.items():
            for obj in self.objects(resource):
                found.append(obj if obj.get("kind") == kind else {**obj, "kind": kind})
        return found

    @property
    def synced(self) -> bool:
        return all(informer.synced for informer in self._of(CORE))

    def problem(self) -> str:
        """Why the caches of the queue cannot be relied on now ("" when they can)."""
        return self._problem(CORE)

    def derivation_problem(self) -> str:
        """Why the caches of the parents cannot be relied on now ("" when they can): the use
        of a derived run is recorded only when this and :meth:`problem` are empty."""
        return self._problem(PARENTS)

    def _of(self, resources: Sequence[Resource]) -> Iterator[Informer]:
        for resource in resources:
            yield from self.informers[resource].values()

    def _problem(self, resources: Sequence[Resource]) -> str:
        for informer in self._of(resources):
            if informer.fresh(self.max_age):
                continue  # the common case, asked per reconcile: no sentence to build
            what = informer.resource.describe(informer.namespace)
            if informer.list_error is not None and not informer.synced:
                return f"the watch of {what} cannot list: {informer.list_error.message}"
            if not informer.synced:
                return f"the watch of {what} has not listed yet"
            if not informer.fresh(self.max_age):
                seconds = informer.seconds_since_contact()
                return (
                    f"no contact with the API server for {seconds:.0f}s (watch of {what}; "
                    f"the bound is {self.max_age:g}s)"
                )
        return ""

    def view(self) -> StaticView:
        """The cluster view as of the last change (with the caches' current problem)."""
        problem = self.problem()
        built = self.index.snapshot()
        if built.problem != problem:
            built = dataclasses.replace(built, problem=problem)
        return built
