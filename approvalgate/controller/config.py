"""Everything ``approvalgate controller`` was told on its command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from approvalgate.approvals.bundle_trust import SIGNATURES_FILE, BundleTrust, trust_from_texts


@dataclass(frozen=True)
class ControllerConfig:
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
    # which bundles are enforced (see webhook.config.ServeConfig: the same flags)
    bundle_keys: tuple[str, ...] = ()
    bundle_threshold: int = 1
    bundle_min_revision: int = 0
    bundle_environment: str = ""  # "": any environment
    allow_unsigned_bundle: bool = False
    bundle_signatures: Path | None = None  # None: bundle.sig.json beside the bundle

    def trust(self) -> BundleTrust:
        """The pinned trust; UsageError (exit 2) when nothing is pinned nor unsigned allowed."""
        return trust_from_texts(
            (("--bundle-key", text) for text in self.bundle_keys),
            threshold=self.bundle_threshold,
            min_revision=self.bundle_min_revision,
            environment=self.bundle_environment,
            allow_unsigned=self.allow_unsigned_bundle,
        )

    @property
    def signatures_path(self) -> Path:
        if self.bundle_signatures is not None:
            return Path(self.bundle_signatures)
        return Path(self.bundle).parent / SIGNATURES_FILE
