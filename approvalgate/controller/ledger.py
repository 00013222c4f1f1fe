"""The consumption ledger and its finalizer: pure plans for one AgentRun, and what may go.

In an environment whose bundle requires the cluster view, every run judged by records is
created with the finalizer ``gates.proompteng.ai/approval-use`` (the webhook denies it
otherwise). The controller then:

- records the run's **use** of its records: an ApprovalUse named by the run's uid, listing
  the sha256 of every record's DSSE payload (:func:`use_object`): the records the run
  carries and the cluster's approvals for its name filed (and issued) by the time it was
  created (:func:`approvals.decide.used_statements`), and the referenced content
  (ImplementationSpec, Agent) those records bound, by digest
  (:func:`approvals.decide.used_references`); the webhook counts a record another run
  has used as used (an approval admits one run), and keeps bound content unchanged while
  the use counts;
- when the run is being deleted, removes the finalizer once that use has **settled**: it
  exists in the controller's own watch cache and was created at least the bundle's
  ``useSettleSeconds`` ago (the webhook checks the same against its own view, so the name
  cannot be taken again before every view knows the approval was used);
- records the use of every **derived** run it sees (ADDED, or a resync) in a namespace the
  bundle enforces: a run labelled by the Schedule (``schedules.proompteng.ai/schedule``) or
  the OrchestrationRun (``agents.proompteng.ai/orchestration-run``) it comes from. Those
  runs are created by the platform's controllers, which never add the finalizer, so there
  is nothing to release: the use lists the statements of the approved parent's records
  (what ``parents.maxRuns`` counts) and the content they bind (a young run whose parent's
  approvals are not in sight yet waits up to the settle time: its watch may be ahead);
- optionally collects what can no longer count (:func:`decision_expired`,
  :func:`use_expired`): the webhook allows those deletes only then.

The finalizer is removed with a JSON patch whose ``test`` op pins the list entry being
removed: a concurrent edit of the finalizers makes the patch fail (and the run is looked at
again) instead of removing somebody else's finalizer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from approvalgate.approvals import gates, records, view
from approvalgate.approvals.bundle import Bundle
from approvalgate.approvals.decide import used_references, used_statements
from approvalgate.approvals.digest import stored_spec_digest
from approvalgate.approvals.errors import DigestError
from approvalgate.approvals.parents import ORCHESTRATION_RUN_LABEL, SCHEDULE_LABEL

DERIVED_LABELS = (SCHEDULE_LABEL, ORCHESTRATION_RUN_LABEL)
"""A run carrying one of these labels comes from a parent (Schedule, OrchestrationRun)."""
DERIVED_POLL_SECONDS = 2.0
"""How often a young derived run whose parent's approvals are not in view is looked at."""


@dataclass(frozen=True)
class RunPlan:
    create_use: dict[str, Any] | None = None
    remove_finalizer: list[dict[str, Any]] | None = None
    """A JSON patch (RFC 6902) for the run."""
    requeue_after: float | None = None


def holds_finalizer(run: Mapping[str, Any]) -> bool:
    return view.USE_FINALIZER in ((run.get("metadata") or {}).get("finalizers") or [])


def is_derived(run: Mapping[str, Any]) -> bool:
    """The run names the parent it comes from (a Schedule's or an OrchestrationRun's run)."""
    labels = (run.get("metadata") or {}).get("labels")
    return isinstance(labels, Mapping) and any(labels.get(key) for key in DERIVED_LABELS)


def records_derived_use(run: Mapping[str, Any], bundle: Bundle) -> bool:
    """The ledger records a use of ``run`` without a finalizer: a derived run, in a namespace
    the bundle enforces, where the bundle requires the cluster view."""
    namespace = str((run.get("metadata") or {}).get("namespace") or "")
    return bundle.needs_view and bundle.enforces(namespace) and is_derived(run)


def awaits_ledger(run: Mapping[str, Any], bundle: Bundle, use: view.Use | None) -> bool:
    """:func:`plan_run` may have something to do for ``run`` (a use to record, a finalizer
    to release, a look again), given its recorded ``use``: False only when the plan is
    empty whatever the time and the rest of the view. A run holding no finalizer and not
    derived never needs the ledger; one holding the finalizer whose use is recorded, not
    until it is deleted (its deletion is a change, which queues it)."""
    meta = run.get("metadata") or {}
    if not holds_finalizer(run):
        return use is None and bool(meta.get("uid")) and records_derived_use(run, bundle)
    if meta.get("deletionTimestamp"):
        return True
    return bundle.needs_view and bool(meta.get("uid")) and use is None


def plan_run(
    run: Mapping[str, Any],
    bundle: Bundle,
    use: view.Use | None,
    now: datetime,
    cluster: view.ClusterView = view.EMPTY,
) -> RunPlan:
    """What the ledger needs for ``run`` given its recorded ``use`` (None if none yet).

    Where the bundle does not require the view (an environment switched to ``clusterView:
    off``), no use is recorded and a run being deleted loses the finalizer at once: nothing
    would ever release it otherwise. A derived run without the finalizer gets its use once
    (deleting or not: the parent's approval was used all the same), and nothing else."""
    meta = run.get("metadata") or {}
    if not holds_finalizer(run):
        if use is None and meta.get("uid") and records_derived_use(run, bundle):
            return _derived_use(run, bundle, now, cluster)
        return RunPlan()
    if not bundle.needs_view:
        deleting = bool(meta.get("deletionTimestamp"))
        return RunPlan(remove_finalizer=finalizer_patch(run) if deleting else None)
    if not meta.get("uid"):
        return RunPlan()
    if use is None:
        return RunPlan(create_use=use_object(run, bundle, now, cluster))
    if not meta.get("deletionTimestamp"):
        return RunPlan()
    if use.created is None:  # not yet seen with a creation time: look again soon
        return RunPlan(requeue_after=1.0)
    settled_at = use.created + timedelta(seconds=bundle.use_settle_seconds)
    if now < settled_at:
        return RunPlan(requeue_after=(settled_at - now).total_seconds() + 0.2)
    return RunPlan(remove_finalizer=finalizer_patch(run))


def _derived_use(
    run: Mapping[str, Any], bundle: Bundle, now: datetime, cluster: view.ClusterView
) -> RunPlan:
    """The use of a derived run; while the run is young and no approval of its parent is in
    sight, wait: the run's watch may be ahead of its parent's (an OrchestrationRun's steps
    are created the moment it is), and a use is never written twice. Once the run is older
    than the settle time (``useSettleSeconds``, at least the view's bound), the use is
    recorded with whatever the view shows, nothing included (a run no approved parent
    admitted was not admitted on an approval: it uses none)."""
    planned = use_object(run, bundle, now, cluster)
    if planned["spec"]["statements"]:
        return RunPlan(create_use=planned)
    created = view.api_time((run.get("metadata") or {}).get("creationTimestamp"))
    if created is not None:
        settled_at = created + timedelta(
            seconds=max(float(bundle.use_settle_seconds), cluster.max_age)
        )
        if now < settled_at:  # look again soon: the parent may be in view any moment
            wait = (settled_at - now).total_seconds() + 0.2
            return RunPlan(requeue_after=min(wait, DERIVED_POLL_SECONDS))
    return RunPlan(create_use=planned)


def use_object(
    run: Mapping[str, Any],
    bundle: Bundle,
    now: datetime,
    cluster: view.ClusterView = view.EMPTY,
) -> dict[str, Any]:
    """The ApprovalUse recording the records ``run`` used (those it carries, and the
    cluster's approvals for its name it may have counted; for a derived run, its approved
    parent's) and the content they bound; expiring with the latest record."""
    meta = run.get("metadata") or {}
    statements, latest = used_statements(run, bundle, cluster)
    references = used_references(run, bundle, cluster)
    if latest is None:
        latest = now
    return {
        "apiVersion": view.API_VERSION,
        "kind": view.KINDS[view.USES],
        "metadata": {
            "name": str(meta["uid"]),
            "namespace": str(meta.get("namespace") or ""),
            "labels": {"gates.proompteng.ai/run": _label_value(str(meta.get("name") or ""))},
        },
        "spec": {
            "run": _run_ref(meta),
            "environment": bundle.environment,
            "specDigest": _stored_digest(run.get("spec"), bundle),
            "statements": list(statements),
            "expiresAt": records.format_time(latest),
            "references": dict(sorted(references.items())),
        },
    }


def _run_ref(meta: Mapping[str, Any]) -> dict[str, str]:
    """The run a use records: name, uid, and the ApprovalRequest it was created from
    (``requestUid``, where the run names one): the request's "a run was created" outlives
    the run, so a run used and deleted before its request's status said Submitted is
    never created again (:func:`controller.reconcile.plan_request`, rule 2)."""
    ref = {"name": str(meta.get("name") or ""), "uid": str(meta["uid"])}
    annotations = meta.get("annotations")
    request_uid = (
        annotations.get(view.REQUEST_UID_ANNOTATION) if isinstance(annotations, Mapping) else None
    )
    if isinstance(request_uid, str) and request_uid:
        ref["requestUid"] = request_uid
    return ref


def finalizer_patch(run: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """Remove our finalizer, testing that it is still at the index we saw."""
    finalizers = list((run.get("metadata") or {}).get("finalizers") or [])
    if view.USE_FINALIZER not in finalizers:
        return None
    index = finalizers.index(view.USE_FINALIZER)
    path = f"/metadata/finalizers/{index}"
    return [
        {"op": "test", "path": path, "value": view.USE_FINALIZER},
        {"op": "remove", "path": path},
    ]


def decision_expired(obj: Mapping[str, Any], now: datetime, bundle: Bundle | None = None) -> bool:
    """The ApprovalDecision's record has expired (or cannot be read: it never counted). With
    ``bundle``: it can no longer count at all, as the webhook allows its deletion
    (:func:`approvals.gates.decision_expiry`: a withdrawal, or an expired reject, still
    counts against approvals issued before it)."""
    envelope = view.decision_envelope(obj)
    if envelope is None:
        return True
    if bundle is not None:
        meta = obj.get("metadata")
        filed = view.api_time(meta.get("creationTimestamp")) if isinstance(meta, Mapping) else None
        expiry = gates.decision_expiry(envelope, bundle, filed)
        return expiry is None or expiry <= now
    parsed, _ = records.parse_annotation(json.dumps([envelope]))
    if not parsed:
        return True
    return parsed[0].claim.expires_at <= now


def use_expired(
    obj: Mapping[str, Any],
    now: datetime,
    live_runs: frozenset[str],
    undecided_requests: frozenset[str] = frozenset(),
) -> bool:
    """The ApprovalUse's records have all expired, its run (uid) is gone, and the request
    its run was created from (if any) is not in ``undecided_requests`` (uids of requests
    there whose status is not terminal yet): until that request says Submitted, the use is
    its only memory of the run (:func:`controller.reconcile.plan_request`, rule 2)."""
    use = view.Use.of(obj)
    if use is None or use.expires_at is None:
        return False
    if use.request_uid and use.request_uid in undecided_requests:
        return False
    return use.expires_at <= now and use.run_uid not in live_runs


def _label_value(name: str) -> str:
    """A run name as a label value (63 characters at most)."""
    return name[:63].rstrip("-_.")


def _stored_digest(spec: object, bundle: Bundle) -> str:
    """The run's spec digest for its use: memoised by the bundle, or, for a run stored before
    ``digest.MAX_SPEC_BYTES`` bounded what is admitted, its whole digest (a use is still
    written, so its finalizer can go)."""
    try:
        return bundle.spec_digest(spec)
    except DigestError:
        return stored_spec_digest(spec)
