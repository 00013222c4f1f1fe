"""The webhook's Prometheus metrics: their names, labels and how processes combine them.

Served on their own plain-HTTP port by :mod:`runtime.metrics_server`: one worker (the
default) serves its own registry; with ``--workers N`` the workers write prometheus_client's
multiprocess files and only the supervisor serves the port, summing every worker. The gauges
say how to combine processes (``multiprocess_mode``): in-flight requests and open
connections add up, the other gauges take the live maximum (minimum for the certificate's
expiry).

``approvalgate_admission_requests_total`` counts each answered review once; ``policy`` is the
comma-joined list of the policies that decided it (empty when none matched), so the sum
over labels is the number of requests. A requester chooses that list with her run's labels
and agent (n policies selecting on labels make 2**n lists), so each process names at most
:data:`MAX_POLICY_SETS` lists of several policies and counts the others as
:data:`OTHER_POLICIES`; a list of one policy (as many as the bundle has) is always named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from approvalgate.approvals.decide import Decision

MAX_POLICY_SETS: Final = 64
"""Lists of several deciding policies each process names in ``policy``; later ones are
:data:`OTHER_POLICIES`. Bounds the series (and the memo of children) a requester can make."""
OTHER_POLICIES: Final = "(other policy sets)"

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    duration: Histogram
    in_flight: Gauge
    malformed: Counter
    bundle_generation: Gauge
    bundle_loaded: Gauge
    bundle_reload_failures: Counter
    bundle_rejected: Counter
    bundle_revision: Gauge
    bundle_unsigned_allowed: Gauge
    certificate_loaded: Gauge
    certificate_expiry: Gauge
    certificate_reload_failures: Counter
    connections_open: Gauge
    connections_dropped: Counter
    view_synced: Gauge
    view_objects: Gauge
    view_seconds_since_contact: Gauge
    # labelled children of ``requests`` by (allowed, reason, policies): labels() takes a
    # lock and builds label tuples on every call; bounded like the label set (see _child)
    _children: dict[tuple[bool, str, tuple[str, ...]], Any] = field(
        default_factory=dict, repr=False, compare=False
    )
    # the lists of several policies named in ``policy`` so far (at most MAX_POLICY_SETS)
    _policy_sets: set[tuple[str, ...]] = field(default_factory=set, repr=False, compare=False)

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        """Every metric, registered in ``registry`` (a new one by default)."""
        reg = CollectorRegistry(auto_describe=True) if registry is None else registry
        return cls(
            registry=reg,
            requests=Counter(
                "approvalgate_admission_requests_total",
                "AdmissionReviews answered, by decision, reason and deciding policies",
                ["decision", "reason", "policy"],
                registry=reg,
            ),
            duration=Histogram(
                "approvalgate_admission_duration_seconds",
                "Time from the request's headers to the review being ready",
                buckets=LATENCY_BUCKETS,
                registry=reg,
            ),
            in_flight=Gauge(
                "approvalgate_requests_in_flight",
                "Admission requests being read or decided",
                registry=reg,
                multiprocess_mode="livesum",
            ),
            malformed=Counter(
                "approvalgate_malformed_requests_total",
                "Requests answered with HTTP 4xx because they are not a readable AdmissionReview",
                ["kind"],
                registry=reg,
            ),
            bundle_generation=Gauge(
                "approvalgate_bundle_generation_info",
                "1 for the generation of the bundle being enforced",
                ["generation"],
                registry=reg,
                multiprocess_mode="livemax",
            ),
            bundle_loaded=Gauge(
                "approvalgate_bundle_loaded_timestamp_seconds",
                "Unix time the enforced bundle was loaded (0: none loaded)",
                registry=reg,
                multiprocess_mode="livemax",
            ),
            bundle_reload_failures=Counter(
                "approvalgate_bundle_reload_failures_total",
                "Bundle files that could not be loaded (the last good bundle was kept)",
                registry=reg,
            ),
            bundle_rejected=Counter(
                "approvalgate_bundle_rejected_total",
                "Bundles refused (the last good bundle was kept), by reason: unsigned,"
                " signature-stripped, untrusted-key, below-threshold, rollback, ...",
                ["reason"],
                registry=reg,
            ),
            bundle_revision=Gauge(
                "approvalgate_bundle_revision",
                "Revision of the bundle being enforced (0: none or unrevised)",
                registry=reg,
                multiprocess_mode="livemax",
            ),
            bundle_unsigned_allowed=Gauge(
                "approvalgate_bundle_unsigned_allowed",
                "1 when --allow-unsigned-bundle is set (signatures are not checked:"
                " development only)",
                registry=reg,
                multiprocess_mode="livemax",
            ),
            certificate_loaded=Gauge(
                "approvalgate_tls_certificate_loaded_timestamp_seconds",
                "Unix time the serving certificate was loaded",
                registry=reg,
                multiprocess_mode="livemax",
            ),
            certificate_expiry=Gauge(
                "approvalgate_tls_certificate_expiry_timestamp_seconds",
                "notAfter of the serving certificate, as Unix time",
                registry=reg,
                multiprocess_mode="livemin",
            ),
            certificate_reload_failures=Counter(
                "approvalgate_tls_reload_failures_total",
                "Certificate/key changes that could not be loaded (the last good pair was kept)",
                registry=reg,
            ),
            connections_open=Gauge(
                "approvalgate_connections_open",
                "HTTPS connections accepted and not yet closed (handshaking ones included)",
                registry=reg,
                multiprocess_mode="livesum",
            ),
            connections_dropped=Counter(
                "approvalgate_connections_dropped_total",
                "Connections closed by the webhook before a request: evicted (the table was"
                " full), refused (full and none evictable), handshake-failed",
                ["reason"],
                registry=reg,
            ),
            view_synced=Gauge(
                "approvalgate_view_synced",
                "1 while the cluster view's kind is listed and heard from the API server within"
                " --view-max-age (usable), else 0; absent when no view runs",
                ["kind"],
                registry=reg,
                multiprocess_mode="livemin",
            ),
            view_objects=Gauge(
                "approvalgate_view_objects",
                "Objects of the kind in the cluster view",
                ["kind"],
                registry=reg,
                multiprocess_mode="livemax",
            ),
            view_seconds_since_contact=Gauge(
                "approvalgate_view_seconds_since_contact",
                "Seconds since the cluster view's watch of the kind last heard from the API"
                " server (+Inf before any contact)",
                ["kind"],
                registry=reg,
                multiprocess_mode="livemax",
            ),
        )

    def observe(self, decision: Decision, seconds: float) -> None:
        key = (decision.allowed, decision.reason, decision.policies)
        child = self._children.get(key)
        if child is None:
            child = self._child(key)
        child.inc()
        self.duration.observe(seconds)

    def _child(self, key: tuple[bool, str, tuple[str, ...]]) -> Any:
        """The counter of ``key``'s series, remembered only while the lists of several
        policies named stay within MAX_POLICY_SETS: past it, a new list is counted as
        OTHER_POLICIES and its key is not kept (one more dict lookup for such a request)."""
        allowed, reason, policies = key
        if len(policies) > 1 and policies not in self._policy_sets:
            if len(self._policy_sets) >= MAX_POLICY_SETS:
                key = (allowed, reason, (OTHER_POLICIES,))
                child = self._children.get(key)
                if child is None:
                    child = self._children[key] = self.requests.labels(
                        "allow" if allowed else "deny", reason, OTHER_POLICIES
                    )
                return child
            self._policy_sets.add(policies)
        child = self._children[key] = self.requests.labels(
            "allow" if allowed else "deny", reason, ",".join(policies)
        )
        return child

    def bundle_switched(self, previous: str, generation: str, loaded_at: float) -> None:
        if previous and previous != generation:
            # 0 first: in multiprocess mode remove() cannot erase the value a file holds
            self.bundle_generation.labels(previous).set(0)
            self.bundle_generation.remove(previous)
        self.bundle_generation.labels(generation).set(1)
        self.bundle_loaded.set(loaded_at)

    def bundle_revision_set(self, revision: int) -> None:
        self.bundle_revision.set(revision)
