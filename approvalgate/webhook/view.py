"""The webhook's cluster view: started when the bundle needs it, watched, reported.

``--cluster-view auto`` (the default) starts a :class:`kube.view.WatchedView` the first time a
bundle with ``clusterView: required`` is in force (at start-up or on a reload), and keeps it
for the life of the process (a later bundle without the requirement does not stop it: a
re-list would cost more than the idle watches). ``--cluster-view off`` never starts one:
decide() then gets ``view=None`` and denies what a bundle requiring the view needs it for.

Each serving process (each ``--workers`` process) holds its own view: one watch per kind on
the API server (the queue's three, the agents platform's seven) and one copy of the objects
per process (docs/design.md, "The cluster view"); ImplementationSpecs, Agents and
AgentProviders are kept as digests only (an Agent with the name of its provider).

Credentials that cannot be loaded are not a crash: the view then reports that as its problem
(decide() denies what needs the view, /readyz says why) and the log says what to pass.
A background task refreshes the view's metrics every second and logs each change of state
once: a kind synced, lost, regained, or failing to list (e.g. the CRDs not installed).

The ``kubernetes`` client is imported only when a view starts: a webhook without one (and
every test that runs it without an API server) never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from approvalgate.approvals.bundle import Bundle
from approvalgate.approvals.errors import ApprovalgateError
from approvalgate.approvals.view import ClusterView, StaticView
from approvalgate.runtime.logs import fields
from approvalgate.webhook.logs import get_logger
from approvalgate.webhook.metrics import Metrics

if TYPE_CHECKING:
    from approvalgate.kube.view import KindStatus, WatchedView

MODES: Final = ("auto", "off")
DEFAULT_MAX_AGE: Final = 30.0
POLL_INTERVAL: Final = 1.0

log = get_logger("view")


class ViewState:
    """The process's view, if any: what decide() gets (:attr:`current`) and /readyz reads."""

    def __init__(
        self,
        mode: str = "auto",
        *,
        kubeconfig: Path | None = None,
        context: str | None = None,
        max_age: float = DEFAULT_MAX_AGE,
        metrics: Metrics | None = None,
        factory: Callable[[], WatchedView] | None = None,
        fixed: ClusterView | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"cluster view mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode
        self.kubeconfig = kubeconfig
        self.context = context
        self.max_age = max_age
        self.metrics = metrics
        self.factory = factory or self._connect
        self.view: WatchedView | None = None
        self.start_error = ""
        self.fixed = fixed
        self.current: ClusterView | None = fixed
        """What decide() gets: the view, a view whose problem is why it could not start, or
        None (no view: off, or no bundle has required one). ``fixed`` (tests only, like the
        hidden clock) is given to decide() instead, and nothing is started."""
        self._logged: dict[str, str] = {}
        self._warned = ""

    # --- lifecycle ---------------------------------------------------------------------------

    def ensure(self, bundle: Bundle | None) -> None:
        """Start the view if ``bundle`` requires it and none runs (never with ``off``)."""
        if bundle is None or not bundle.needs_view or self.fixed is not None:
            return
        if self.mode == "off":
            if self._warned != bundle.generation:
                self._warned = bundle.generation
                log.warning(
                    "the bundle requires the cluster view but --cluster-view is off: CREATEs"
                    " judged by records, ApprovalDecision CREATEs and removals of the"
                    " approval-use finalizer are denied",
                    extra=fields(generation=bundle.generation),
                )
            return
        if self.view is not None or self.start_error:
            return
        try:
            view = self.factory()
            view.start()
        except ApprovalgateError as exc:
            given = f" (--kubeconfig {self.kubeconfig})" if self.kubeconfig else ""
            self.start_error = f"the cluster view cannot start: {exc.message}{given}"
            advice = exc.advice or "pass --kubeconfig FILE (and --context NAME)"
            self.current = StaticView(problem=self.start_error)
            log.error(
                "cluster view cannot start",
                extra=fields(error=exc.message, advice=advice, generation=bundle.generation),
            )
            return
        self.view = view
        self.current = view
        log.info(
            "cluster view started",
            extra=fields(
                server=view.client.server,
                max_age_s=self.max_age,
                generation=bundle.generation,
                kinds=list(view.informers),
            ),
        )

    def _connect(self) -> WatchedView:
        from approvalgate.kube.client import Client
        from approvalgate.kube.view import WatchedView

        client = Client.connect(self.kubeconfig, self.context)
        return WatchedView(client, max_age=self.max_age)

    async def stop(self) -> None:
        view = self.view
        if view is not None:
            await asyncio.to_thread(view.stop)
            with contextlib.suppress(Exception):
                view.client.close()

    async def watch(self, bundle: Callable[[], Bundle | None]) -> None:
        """Every second: start the view if the bundle now needs it, refresh the metrics and
        log what changed (until cancelled)."""
        while True:
            try:
                self.ensure(bundle())
                self.report()
            except Exception:  # reporting must never stop
                log.exception("cluster view report failed")
            await asyncio.sleep(POLL_INTERVAL)

    # --- what others read ----------------------------------------------------------------------

    def readiness(self, bundle: Bundle | None) -> str:
        """Why the webhook is not ready because of the view ("" when it is not the reason).

        Not ready until every kind has been listed once, when the bundle requires the view and
        the view is on. A view that was synced and then lost its watch keeps the webhook
        ready: decide() denies what needs it with the reason, and every other admission still
        works (an unready webhook in every replica would fail them all).
        """
        if self.mode != "auto" or bundle is None or not bundle.needs_view:
            return ""
        if self.fixed is not None:
            return self.fixed.problem
        if self.view is None:
            return self.start_error or "the cluster view is not started"
        if not self.view.synced:
            return self.view.problem or "the cluster view is not synced yet"
        return ""

    def report(self) -> None:
        """Metrics from the view's state, and a log line for each change of it."""
        view = self.view
        if view is None:
            return
        for status in view.status():
            usable = status.synced and status.seconds_since_contact <= self.max_age
            if self.metrics is not None:
                self.metrics.view_synced.labels(status.kind).set(1 if usable else 0)
                self.metrics.view_objects.labels(status.kind).set(status.objects)
                self.metrics.view_seconds_since_contact.labels(status.kind).set(
                    status.seconds_since_contact  # +Inf before any contact
                )
            self._log_change(status, usable)

    def _log_change(self, status: KindStatus, usable: bool) -> None:
        error = status.error.message if status.error is not None else ""
        if usable:
            state = "synced"
        elif status.synced:
            state = "lost"
        else:
            state = f"unsynced:{error}"
        previous = self._logged.get(status.kind)
        if previous == state:
            return
        self._logged[status.kind] = state
        kind = status.kind
        if state == "synced":
            message = (
                "cluster view contact restored" if previous == "lost" else "cluster view synced"
            )
            log.info(message, extra=fields(kind=kind, objects=status.objects))
        elif state == "lost":
            log.warning(
                "cluster view lost its watch",
                extra=fields(
                    kind=kind,
                    seconds_since_contact=round(status.seconds_since_contact),
                    max_age_s=self.max_age,
                    error=error,
                ),
            )
        elif error:
            assert self.view is not None
            log.warning(
                "cluster view not synced",
                extra=fields(kind=kind, error=error, problem=self.view.problem),
            )
