"""Everything ``approvalgate controller`` was told on its command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from approvalgate.approvals.bundle_trust import TrustFlags


@dataclass(frozen=True)
class ControllerConfig(TrustFlags):
    bundle: Path
    identity: str
    lease_namespace: str
    lease_name: str = "approvalgate-controller"
    kubeconfig: Path | None = None
    context: str | None = None
    namespaces: tuple[str, ...] = ()
    """Watched namespaces; empty means all."""
    host: str = "0.0.0.0"  # noqa: S104 (the pod's ports, as the webhook's)
    metrics_port: int = 9090
    health_port: int = 8081
    signal_deliveries: bool = False
    signal_name: str = "approvalgate"
    notify_url: str = ""
    notify_expiring_before: float = 3600.0
    notify_timeout: float = 5.0
    notify_attempts: int = 3
    resync_seconds: float = 300.0
    gc: bool = True
    gc_interval: float = 300.0
    gc_max_deletes: int = 50
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    view_max_age: float = 90.0
    watch_timeout: int = 60
    reload_interval: float = 2.0
    grace_period: float = 10.0
    log_level: str = "info"
