"""The controller's Prometheus metrics (one process, its own registry, served by
:mod:`runtime.metrics_server` on ``--metrics-port``).

- ``approvalgate_approvals_total{outcome}``: transitions into approved, rejected, expired,
  cancelled, failed, submitted (counted by the leader that wrote them);
- ``approvalgate_approval_wait_seconds``: from a request's creation to its decision
  (Approved or Rejected), a histogram;
- ``approvalgate_pending_requests``: requests whose stored phase is Pending (or not yet
  set), as every replica's cache sees them;
- ``approvalgate_controller_leader``: 1 while this replica holds the Lease;
- reconcile errors, runs created, uses recorded, finalizers removed, objects collected,
  notifications sent and failed, the bundle in force (its revision, bundles refused by
  reason, whether unsigned bundles are allowed).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

WAIT_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400)
OUTCOMES = ("approved", "rejected", "expired", "cancelled", "failed", "submitted")


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    approvals: Counter
    wait: Histogram
    pending: Gauge
    leader: Gauge
    reconciles: Counter
    reconcile_errors: Counter
    runs_created: Counter
    uses_created: Counter
    finalizers_removed: Counter
    collected: Counter
    notifications: Counter
    bundle_loaded: Gauge
    bundle_reload_failures: Counter
    bundle_rejected: Counter
    bundle_revision: Gauge
    bundle_floor: Gauge
    bundle_unsigned_allowed: Gauge
    synced: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        reg = CollectorRegistry(auto_describe=True) if registry is None else registry
        metrics = cls(
            registry=reg,
            approvals=Counter(
                "approvalgate_approvals_total",
                "Approval requests that reached a phase, by outcome",
                ["outcome"],
                registry=reg,
            ),
            wait=Histogram(
                "approvalgate_approval_wait_seconds",
                "Time from an ApprovalRequest's creation to its decision (Approved or Rejected)",
                buckets=WAIT_BUCKETS,
                registry=reg,
            ),
            pending=Gauge(
                "approvalgate_pending_requests",
                "ApprovalRequests waiting for decisions (phase Pending or not yet set)",
                registry=reg,
            ),
            leader=Gauge(
                "approvalgate_controller_leader",
                "1 while this replica holds the controller's Lease",
                registry=reg,
            ),
            reconciles=Counter(
                "approvalgate_controller_reconciles_total",
                "Keys reconciled, by kind (request, run)",
                ["kind"],
                registry=reg,
            ),
            reconcile_errors=Counter(
                "approvalgate_controller_reconcile_errors_total",
                "Reconciles that failed and were retried, by kind",
                ["kind"],
                registry=reg,
            ),
            runs_created=Counter(
                "approvalgate_controller_runs_created_total",
                "AgentRuns created from approved requests",
                registry=reg,
            ),
            uses_created=Counter(
                "approvalgate_controller_uses_created_total",
                "ApprovalUses recorded for admitted runs",
                registry=reg,
            ),
            finalizers_removed=Counter(
                "approvalgate_controller_finalizers_removed_total",
                "approval-use finalizers removed from runs being deleted",
                registry=reg,
            ),
            collected=Counter(
                "approvalgate_controller_collected_total",
                "Expired ApprovalDecisions and ApprovalUses deleted, by kind",
                ["kind"],
                registry=reg,
            ),
            notifications=Counter(
                "approvalgate_controller_notifications_total",
                "Outgoing notifications, by kind (needs-you, decided, expiring) and result",
                ["kind", "result"],
                registry=reg,
            ),
            bundle_loaded=Gauge(
                "approvalgate_bundle_loaded",
                "1 when a bundle is in force",
                registry=reg,
            ),
            bundle_reload_failures=Counter(
                "approvalgate_bundle_reload_failures",
                "Bundle files that could not be loaded (the last good bundle stays)",
                registry=reg,
            ),
            bundle_rejected=Counter(
                "approvalgate_bundle_rejected_total",
                "Bundles refused (the last good bundle stays), by reason: unsigned,"
                " signature-stripped, untrusted-key, below-threshold, rollback, ...",
                ["reason"],
                registry=reg,
            ),
            bundle_revision=Gauge(
                "approvalgate_bundle_revision",
                "Revision of the bundle in force (0: none or unrevised)",
                registry=reg,
            ),
            bundle_floor=Gauge(
                "approvalgate_bundle_floor",
                "The revision floor this controller last recorded for its environment"
                " (--bundle-floor; 0: none yet); pods refuse signed bundles below it",
                registry=reg,
            ),
            bundle_unsigned_allowed=Gauge(
                "approvalgate_bundle_unsigned_allowed",
                "1 when --allow-unsigned-bundle is set (signatures are not checked:"
                " development only)",
                registry=reg,
            ),
            synced=Gauge(
                "approvalgate_controller_caches_synced",
                "1 when every watch cache has listed once and is in contact",
                registry=reg,
            ),
        )
        for outcome in OUTCOMES:
            metrics.approvals.labels(outcome=outcome)
        return metrics
