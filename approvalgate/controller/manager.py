"""The approval queue's reconciler: caches, a work queue, one worker, a Lease, the writes.

Threads: one per watch cache (:mod:`kube.informer`), the leader election
(:mod:`kube.leader`), one worker that reconciles keys, one resync/collector loop, and the
notifier. The asyncio loop of the process serves /healthz, /readyz and /metrics and polls
the bundle file. Every replica keeps its caches warm; only the leader's worker acts, and
it checks :attr:`Elector.leading` before every write (a leader whose renewals stall stops
writing before another can lead).

Keys: ``("request", ns, name)`` for an ApprovalRequest (queued when it, one of its
decisions, or the run of the same name changes) and ``("run", ns, name)`` for an AgentRun
(queued when it or its ApprovalUse changes: the finalizer's runs, and the derived runs whose
use the ledger records). Every key is also queued on each resync, when
this replica becomes the leader, and when a new bundle is in force. A failed reconcile is
retried with a per-key backoff; a 409 Conflict (our cache was behind) is the common case.

The decisions themselves are pure: :func:`controller.reconcile.plan_request` and
:func:`controller.ledger.plan_run`; this module reads the caches, runs them, and writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from approvalgate.approvals import records, view
from approvalgate.approvals.bundle import Bundle
from approvalgate.approvals.queue import TERMINAL, QueueVerdict, evaluate_request
from approvalgate.controller import announce, ledger
from approvalgate.controller.caches import Caches
from approvalgate.controller.config import ControllerConfig
from approvalgate.controller.metrics import Metrics
from approvalgate.controller.notify import Notifier
from approvalgate.controller.reconcile import (
    OUTCOMES,
    RequestPlan,
    Transition,
    plan_request,
    request_uid,
    wait_seconds,
)
from approvalgate.controller.workqueue import WorkQueue
from approvalgate.kube import objects
from approvalgate.kube.client import Client
from approvalgate.kube.errors import KubeError
from approvalgate.kube.leader import Elector, LeaseLock
from approvalgate.kube.resources import (
    AGENT_RUNS,
    APPROVAL_DECISIONS,
    APPROVAL_REQUESTS,
    APPROVAL_USES,
    EVENTS,
    SIGNAL_DELIVERIES,
)
from approvalgate.kube.store import Change
from approvalgate.runtime.logs import fields

log = logging.getLogger("approvalgate.controller")

Key = tuple[str, str, str]
DECIDED_NOTICE: Final = frozenset({"Approved", "Rejected", "Expired", "Cancelled", "Failed"})


class NotLeader(Exception):
    """This replica lost the Lease: the key is dropped (the new leader resyncs)."""


class Retry(Exception):
    """Look at this key again after its backoff (the reason is already in the status)."""


class Controller:
    def __init__(
        self,
        config: ControllerConfig,
        client: Client,
        *,
        bundle: Callable[[], Bundle | None],
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = records.now_utc,
    ) -> None:
        self.config = config
        self.client = client
        self.bundle = bundle
        self.metrics = metrics or Metrics.create()
        self.clock = clock
        self.caches = Caches(
            client,
            config.namespaces,
            max_age=config.view_max_age,
            watch_timeout=config.watch_timeout,
        )
        self.queue: WorkQueue[Key] = WorkQueue()
        self.elector = Elector(
            LeaseLock(client, config.lease_name, config.lease_namespace, config.identity),
            lease_duration=config.lease_duration,
            renew_deadline=config.renew_deadline,
            retry_period=config.retry_period,
            on_started=self._started_leading,
            on_stopped=self._stopped_leading,
        )
        self.notifier: Notifier | None = None
        if config.notify_url:
            self.notifier = Notifier(
                config.notify_url,
                timeout=config.notify_timeout,
                attempts=config.notify_attempts,
                on_result=self._notified,
            )
        self._create_errors: dict[Key, tuple[str, str, bool]] = {}
        """Per request key: the uid of the request whose last create failed, why, and
        whether the API server refused the run itself. Kept with the uid: a request made
        again under the name is another request, and neither inherits the other's."""
        self._expiring_sent: set[str] = set()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_gc = 0.0
        self._last_resync = 0.0
        self._username = ""
        self.caches.add_handler(APPROVAL_REQUESTS, self._on_request)
        self.caches.add_handler(APPROVAL_DECISIONS, self._on_decision)
        self.caches.add_handler(APPROVAL_USES, self._on_use)
        self.caches.add_handler(AGENT_RUNS, self._on_run)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.caches.start()
        if self.notifier is not None:
            self.notifier.start()
        self.elector.start()
        for target, name in ((self._work, "reconciler"), (self._resync_loop, "resync")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the reconcile in flight (up to ``timeout``), release the Lease, stop."""
        self._stopping.set()
        self.queue.shutdown()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
        self.elector.stop(release=True)
        self.metrics.leader.set(0)
        self.caches.stop()
        if self.notifier is not None:
            self.notifier.stop()

    @property
    def ready(self) -> bool:
        return self.bundle() is not None and self.caches.synced and not self.caches.problem()

    @property
    def leading(self) -> bool:
        return self.elector.leading

    def resync(self) -> None:
        """Queue every request, every run holding our finalizer and every derived run whose
        use is not recorded yet, behind the keys that changes queue (a resync never delays
        a fresh decision)."""
        for obj in self.caches.objects(APPROVAL_REQUESTS):
            if not _decided(obj):  # a decided request is history: nothing to look at again
                self.queue.add(_key("request", obj), background=True)
        bundle = self.bundle()
        current = self.caches.view() if bundle is not None else None
        for obj in self.caches.objects(AGENT_RUNS):
            if bundle is None or current is None:
                due = ledger.holds_finalizer(obj)
            else:  # a run whose use is recorded waits for its deletion, a change
                due = ledger.awaits_ledger(obj, bundle, current.use_of_run(*_namespace_uid(obj)))
            if due:
                self.queue.add(_key("run", obj), background=True)

    # --- change handlers (informer threads) ----------------------------------------------------

    def _on_request(self, change: Change) -> None:
        unchanged = change.old is not None and _what_reconcile_reads(
            change.old
        ) == _what_reconcile_reads(change.object)
        if change.type == "MODIFIED" and unchanged:
            return  # labels, annotations: nothing the queue reads changed
        self.queue.add(_key("request", change.object))

    def _on_decision(self, change: Change) -> None:
        key = view.decision_key(change.object)
        if key is not None:
            self.queue.add(("request", *key))

    def _on_use(self, change: Change) -> None:
        use = view.Use.of(change.object)
        if use is None or not use.run_name:
            return
        run = self.caches.get(AGENT_RUNS, use.namespace, use.run_name)
        if (
            change.type != "DELETED"
            and run is not None
            and _namespace_uid(run) == (use.namespace, use.run_uid)
            and not (run.get("metadata") or {}).get("deletionTimestamp")
        ):
            return  # its run has a use now and is not being deleted: nothing to release yet
        self.queue.add(("run", use.namespace, use.run_name))

    def _on_run(self, change: Change) -> None:
        """A run the ledger looks after (ours: the finalizer; a derived one) is queued; so
        is the request of the same name, if there is one (its status shows the run)."""
        run = change.object
        if ledger.holds_finalizer(run) or ledger.is_derived(run):
            self.queue.add(_key("run", run))
        key = _key("request", run)
        if self.caches.get(APPROVAL_REQUESTS, key[1], key[2]) is not None:
            self.queue.add(key)

    def _started_leading(self) -> None:
        self.metrics.leader.set(1)
        self.resync()

    def _stopped_leading(self) -> None:
        self.metrics.leader.set(0)

    # --- the worker ---------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            key = self.queue.get(timeout=1.0)
            if key is None:
                continue
            try:
                if self.leading:
                    self.reconcile(key)
            except NotLeader:
                pass
            except Retry as exc:
                delay = self.queue.retry(key)
                log.info(
                    "retrying",
                    extra=fields(
                        kind=key[0], namespace=key[1], name=key[2], why=str(exc), retry=delay
                    ),
                )
            except KubeError as exc:
                self.metrics.reconcile_errors.labels(kind=key[0]).inc()
                delay = self.queue.retry(key)
                level = logging.INFO if exc.status == 409 else logging.WARNING
                log.log(
                    level,
                    "reconcile failed; retrying",
                    extra=fields(
                        kind=key[0], namespace=key[1], name=key[2], error=exc.message, retry=delay
                    ),
                )
            except Exception:
                self.metrics.reconcile_errors.labels(kind=key[0]).inc()
                delay = self.queue.retry(key)
                log.exception(
                    "reconcile crashed; retrying",
                    extra=fields(kind=key[0], namespace=key[1], name=key[2], retry=delay),
                )
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)

    def reconcile(self, key: Key) -> None:
        kind, namespace, name = key
        self.metrics.reconciles.labels(kind=kind).inc()
        bundle = self.bundle()
        if bundle is None:
            return  # queued again for everything when a bundle is in force
        # asked before the view is taken: when the parents are reliable now, they are in it
        derivation = self.caches.derivation_problem() if kind == "run" else ""
        current = self.caches.view()
        if current.problem:  # write nothing on a stale picture; back off per key
            raise Retry(current.problem)
        if kind == "request":
            self.reconcile_request(namespace, name, bundle, current)
        else:
            self.reconcile_run(namespace, name, bundle, current, derivation)

    # --- requests -----------------------------------------------------------------------

    def reconcile_request(
        self, namespace: str, name: str, bundle: Bundle, current: view.StaticView
    ) -> None:
        key: Key = ("request", namespace, name)
        request = self.caches.get(APPROVAL_REQUESTS, namespace, name)
        if request is None or _decided(request):
            self._create_errors.pop(key, None)
            return  # a decided request stays as it is (plan_request): no verdict to compute
        now = self.clock()
        verdict = evaluate_request(request, bundle, now, current, courier=self.username())
        run = self.caches.get(AGENT_RUNS, namespace, name)
        decisions = len(current.records_for(namespace, name))
        failed_uid, error, permanent = self._create_errors.get(key, ("", "", False))
        if failed_uid != request_uid(request):
            error, permanent = "", False
        use = current.use_of_request(namespace, request_uid(request))
        plan = plan_request(
            request,
            verdict,
            run,
            now,
            decisions=decisions,
            create_error=error,
            create_refused=error if permanent else "",
            use=use,
        )
        request = self._write_status(request, plan, now)
        if plan.create is not None:
            created, error, permanent = self._create_run(plan.create, bundle)
            if created is None:
                self._create_errors[key] = (request_uid(request), error, permanent)
                replan = plan_request(
                    request,
                    verdict,
                    None,
                    now,
                    decisions=decisions,
                    create_error=error,
                    create_refused=error if permanent else "",
                )
                self._write_status(request, replan, now)
                if not permanent:
                    raise Retry(error)
                return
            self._create_errors.pop(key, None)
            replan = plan_request(request, verdict, created, now, decisions=decisions)
            self._write_status(request, replan, now)
            return
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after)
        self._maybe_expiring(request, verdict, now, key)

    def _write_status(
        self, request: dict[str, Any], plan: RequestPlan, now: datetime
    ) -> dict[str, Any]:
        if plan.status is None:
            return request
        self._guard()
        meta = request["metadata"]
        log.debug(
            "writing status",
            extra=fields(namespace=meta["namespace"], name=meta["name"], status=plan.status),
        )
        body = {**request, "status": plan.status}
        updated: dict[str, Any] = self.client.request(
            f"writing the status of approvalrequest {meta['namespace']}/{meta['name']}",
            "PUT",
            APPROVAL_REQUESTS.path(meta["namespace"], meta["name"]) + "/status",
            body=body,
        )
        if plan.transition is not None:
            self._announce(updated, plan.transition, plan.status, now)
        return updated

    def _create_run(
        self, manifest: Mapping[str, Any], bundle: Bundle
    ) -> tuple[dict[str, Any] | None, str, bool]:
        """Create the run; ``(run, "", False)``, or ``(None, why, permanent)``. An
        AlreadyExists answers with the existing run (ours or not: the plan decides)."""
        self._guard()
        body = dict(manifest)
        meta = dict(body.get("metadata") or {})
        if bundle.needs_view:
            finalizers = list(meta.get("finalizers") or [])
            if view.USE_FINALIZER not in finalizers:
                meta["finalizers"] = [*finalizers, view.USE_FINALIZER]
        body["metadata"] = meta
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        what = f"creating agentrun {namespace}/{name}"
        try:
            created: dict[str, Any] = self.client.request(
                what, "POST", AGENT_RUNS.path(namespace), body=body
            )
        except KubeError as exc:
            if exc.status == 409:
                existing = objects.get(self.client, AGENT_RUNS, name, namespace)
                if existing is not None:
                    return existing, "", False
                return None, exc.message, False
            permanent = exc.status in (400, 422)
            log.warning(
                "creating the run failed",
                extra=fields(
                    namespace=namespace, name=name, error=exc.message, permanent=permanent
                ),
            )
            return None, exc.message, permanent
        self.metrics.runs_created.inc()
        log.info(
            "run created",
            extra=fields(
                namespace=namespace, name=name, uid=(created.get("metadata") or {}).get("uid")
            ),
        )
        return created, "", False

    def _announce(
        self,
        request: Mapping[str, Any],
        transition: Transition,
        status: Mapping[str, Any],
        now: datetime,
    ) -> None:
        meta = request.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        log.info(
            "request phase",
            extra=fields(
                namespace=namespace,
                name=name,
                old=transition.old,
                phase=transition.new,
                reason=transition.reason,
            ),
        )
        outcome = OUTCOMES.get(transition.new)
        if outcome is not None:
            self.metrics.approvals.labels(outcome=outcome).inc()
        if transition.new in ("Approved", "Rejected"):
            waited = wait_seconds(request, now)
            if waited is not None:
                self.metrics.wait.observe(waited)
        self._post(
            f"recording an event for approvalrequest {namespace}/{name}",
            EVENTS.path(namespace),
            announce.event(request, transition, now, self.config.identity),
        )
        if self.config.signal_deliveries:
            self._post(
                f"creating a signaldelivery for approvalrequest {namespace}/{name}",
                SIGNAL_DELIVERIES.path(namespace),
                announce.signal_delivery(request, transition, status, self.config.signal_name),
            )
        if self.notifier is not None:
            if transition.new == "Pending":
                self.notifier.send("needs-you", announce.needs_you(request, status))
            elif transition.new in DECIDED_NOTICE or (
                transition.new == "Submitted" and transition.old != "Approved"
            ):
                self.notifier.send("decided", announce.decided(request, transition))

    def _post(self, what: str, path: str, body: Mapping[str, Any]) -> None:
        """Create an announcement; a failure is logged, never retried (AlreadyExists: a
        retry of a delivery that was made)."""
        try:
            self.client.request(what, "POST", path, body=dict(body))
        except KubeError as exc:
            if exc.status != 409:
                log.warning("announcement failed", extra=fields(what=what, error=exc.message))

    def _maybe_expiring(
        self, request: Mapping[str, Any], verdict: QueueVerdict, now: datetime, key: Key
    ) -> None:
        stored = str((request.get("status") or {}).get("phase") or "")
        if (
            self.notifier is None
            or stored != "Pending"  # a decided request is history, whatever time does
            or verdict.phase != "Pending"
            or verdict.expires_at is None
        ):
            return
        uid = str((request.get("metadata") or {}).get("uid") or "")
        notice_at = verdict.expires_at - timedelta(seconds=self.config.notify_expiring_before)
        if now < notice_at:
            self.queue.add_after(key, (notice_at - now).total_seconds() + 0.1)
            return
        if uid in self._expiring_sent or now >= verdict.expires_at:
            return
        self._expiring_sent.add(uid)
        self.notifier.send("expiring", announce.expiring(request, request.get("status") or {}))

    def _notified(self, kind: str, result: str) -> None:
        self.metrics.notifications.labels(kind=kind, result=result).inc()

    # --- runs: the ledger ---------------------------------------------------------------------

    def reconcile_run(
        self,
        namespace: str,
        name: str,
        bundle: Bundle,
        current: view.StaticView,
        derivation: str = "",
    ) -> None:
        """The ledger for one run. ``derivation``: why the parents' caches could not be
        relied on when ``current`` was taken ("" when they could): a derived run's use is
        not written then (it would list no approval, once and for all)."""
        key: Key = ("run", namespace, name)
        run = self.caches.get(AGENT_RUNS, namespace, name)
        if run is None:
            return
        uid = str((run.get("metadata") or {}).get("uid") or "")
        now = self.clock()
        plan = ledger.plan_run(run, bundle, current.use_of_run(namespace, uid), now, current)
        if plan.create_use is not None and ledger.is_derived(run) and derivation:
            raise Retry(derivation)  # its parent cannot be read reliably: its use would be wrong
        if plan.create_use is not None:
            self._guard()
            try:
                self.client.request(
                    f"recording the use of agentrun {namespace}/{name} (uid {uid})",
                    "POST",
                    APPROVAL_USES.path(namespace),
                    body=plan.create_use,
                )
                self.metrics.uses_created.inc()
                log.info(
                    "use recorded",
                    extra=fields(
                        namespace=namespace, name=name, uid=uid, derived=ledger.is_derived(run)
                    ),
                )
            except KubeError as exc:
                if exc.status != 409:
                    raise
            if ledger.holds_finalizer(run) and (run.get("metadata") or {}).get("deletionTimestamp"):
                # the use's creation time comes back through the watch: look again then (a
                # run not being deleted is queued by its deletion)
                self.queue.add_after(key, float(bundle.use_settle_seconds) + 0.2)
        if plan.remove_finalizer is not None:
            self._guard()
            try:
                self.client.request(
                    f"removing the approval-use finalizer of agentrun {namespace}/{name}",
                    "PATCH",
                    AGENT_RUNS.path(namespace, name),
                    body=plan.remove_finalizer,
                    content_type="application/json-patch+json",
                )
                self.metrics.finalizers_removed.inc()
                log.info("finalizer removed", extra=fields(namespace=namespace, name=name, uid=uid))
            except KubeError as exc:
                if exc.status != 404:
                    raise
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after)

    # --- resync and collection ----------------------------------------------------------------

    def _resync_loop(self) -> None:
        while not self._stopping.wait(min(self.config.resync_seconds, 5.0)):
            self._gauges()
            now = time.monotonic()
            if not self.leading:
                continue
            if now - self._last_resync >= self.config.resync_seconds:
                self._last_resync = now
                self.resync()
            if self.config.gc and now - self._last_gc >= self.config.gc_interval:
                self._last_gc = now
                try:
                    self.collect()
                except (KubeError, NotLeader) as exc:
                    log.warning("collection stopped", extra=fields(error=str(exc)))

    def _gauges(self) -> None:
        pending = sum(
            1
            for obj in self.caches.objects(APPROVAL_REQUESTS)
            if str((obj.get("status") or {}).get("phase") or "Pending") == "Pending"
        )
        self.metrics.pending.set(pending)
        self.metrics.synced.set(1 if self.caches.synced and not self.caches.problem() else 0)
        self.metrics.leader.set(1 if self.leading else 0)

    def collect(self) -> int:
        """Delete up to ``gc_max_deletes`` decisions and uses that can no longer count."""
        if self.caches.problem():
            return 0
        now = self.clock()
        bundle = self.bundle()
        if bundle is None:
            return 0  # what may be deleted depends on the bundle's policies' lifetimes
        budget = self.config.gc_max_deletes
        live = frozenset(
            str((run.get("metadata") or {}).get("uid") or "")
            for run in self.caches.objects(AGENT_RUNS)
        )
        undecided = frozenset(
            str((request.get("metadata") or {}).get("uid") or "")
            for request in self.caches.objects(APPROVAL_REQUESTS)
            if str((request.get("status") or {}).get("phase") or "") not in TERMINAL
        )
        deleted = 0
        candidates = [
            (APPROVAL_DECISIONS, "decision", obj)
            for obj in self.caches.objects(APPROVAL_DECISIONS)
            if ledger.decision_expired(obj, now, bundle)
        ] + [
            (APPROVAL_USES, "use", obj)
            for obj in self.caches.objects(APPROVAL_USES)
            if ledger.use_expired(obj, now, live, undecided)
        ]
        for resource, kind, obj in candidates[:budget]:
            self._guard()
            meta = obj["metadata"]
            try:
                self.client.request(
                    f"deleting expired {resource.singular_name} {meta['namespace']}/{meta['name']}",
                    "DELETE",
                    resource.path(meta["namespace"], meta["name"]),
                    body={
                        "apiVersion": "v1",
                        "kind": "DeleteOptions",
                        "preconditions": {"uid": meta.get("uid")},
                    },
                )
            except KubeError as exc:
                if exc.status not in (404, 409):
                    log.warning("collection failed", extra=fields(kind=kind, error=exc.message))
                continue
            deleted += 1
            self.metrics.collected.labels(kind=kind).inc()
        if deleted:
            log.info("collected expired objects", extra=fields(deleted=deleted))
        return deleted

    def username(self) -> str:
        """Who the API server says we are: the courier of the runs we create (the webhook
        excludes it from approving them), asked once."""
        if not self._username:
            review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
            try:
                answer = self.client.request(
                    "reviewing our own identity",
                    "POST",
                    "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                    body=review,
                )
                self._username = str(answer["status"]["userInfo"]["username"])
            except (KubeError, KeyError, TypeError):
                return ""
        return self._username

    def _guard(self) -> None:
        if not self.leading:
            raise NotLeader


def _namespace_uid(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("uid") or "")


def _key(kind: str, obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _decided(request: Mapping[str, Any]) -> bool:
    """The request's stored phase is terminal: :func:`controller.reconcile.plan_request`
    leaves it as it is, so neither a change nor a resync needs its verdict (which digests its
    run). Requests are never deleted by the controller: without this every resync, and every
    label patch of any request, re-judged all of them."""
    status = request.get("status")
    return isinstance(status, Mapping) and status.get("phase") in TERMINAL


def _what_reconcile_reads(request: Mapping[str, Any]) -> tuple[object, ...]:
    """What of a request a reconcile depends on: its spec, status, uid and deletion (not its
    labels, annotations, managedFields or resourceVersion, which the requester may patch
    as often as the API server lets her)."""
    meta = request.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return (
        request.get("spec"),
        request.get("status"),
        meta.get("uid"),
        meta.get("deletionTimestamp"),
    )
