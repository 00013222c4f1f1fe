"""What ``approvalgate webhook serve`` was asked to do; passed to worker processes as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from approvalgate.approvals.bundle_trust import TrustFlags
from approvalgate.webhook.app import DEFAULT_MAX_BODY_BYTES, DEFAULT_READ_TIMEOUT
from approvalgate.webhook.listener import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS
from approvalgate.webhook.state import DEFAULT_RELOAD_INTERVAL
from approvalgate.webhook.view import DEFAULT_MAX_AGE

DEFAULT_PORT = 8443
DEFAULT_METRICS_PORT = 9090
DEFAULT_GRACE_PERIOD = 10.0


@dataclass(frozen=True)
class ServeConfig(TrustFlags):
    bundle: Path
    tls_cert: Path
    tls_key: Path
    host: str = "0.0.0.0"  # noqa: S104 - a pod serves on its pod IP
    port: int = DEFAULT_PORT
    metrics_port: int = DEFAULT_METRICS_PORT  # 0: no metrics listener
    workers: int = 1
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    reload_interval: float = DEFAULT_RELOAD_INTERVAL
    read_timeout: float = DEFAULT_READ_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    grace_period: float = DEFAULT_GRACE_PERIOD
    log_level: str = "info"
    cluster_view: str = "auto"  # auto: a view when the bundle requires one; off: never
    kubeconfig: Path | None = None  # None: in-cluster, else $KUBECONFIG or ~/.kube/config
    context: str | None = None
    view_max_age: float = DEFAULT_MAX_AGE

    def to_json(self) -> str:
        raw = asdict(self)
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in raw.items()})

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        raw: dict[str, Any] = json.loads(text)
        paths = {"bundle", "tls_cert", "tls_key", "kubeconfig", "bundle_signatures"}
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {
            k: Path(v) if k in paths and v is not None else v for k, v in raw.items() if k in known
        }
        if "bundle_keys" in values:
            values["bundle_keys"] = tuple(values["bundle_keys"])
        return cls(**values)
