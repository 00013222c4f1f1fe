"""What every arm of the peers benchmark provides (bench/peers/run.py drives them).

An arm is one admission gate judging AgentRun creates in its own namespace: the driver
creates the namespace, starts the arm, registers exactly one ValidatingWebhookConfiguration
for it (scoped to that namespace by `kubernetes.io/metadata.name`, failurePolicy Fail,
webhook name `Hook.name`, so the API server's
apiserver_admission_webhook_admission_duration_seconds series of that name counts its
admissions and nothing else), creates runs that must be admitted and runs that must be
denied, and counts wrong decisions, CPU (utime + stime of `pids()`) and memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tests.e2e.controlplane import ControlPlane

POLICIES = Path(__file__).resolve().parent / "policies"
GROUP, VERSION, PLURAL = "agents.proompteng.ai", "v1alpha1", "agentruns"


@dataclass(frozen=True)
class Hook:
    """Where the API server sends the arm's admission requests."""

    url: str  # https://127.0.0.1:PORT/path
    ca_bundle: str  # base64 of the PEM CA that signed the serving certificate


class Arm(Protocol):
    key: str  # "kyverno-presence": names the namespace peer-<key> (approvalgate: "agents")
    title: str  # a table row's first cell
    checks: str  # what this arm actually verifies, one sentence for the table
    namespace: str

    def start(self, plane: ControlPlane, work: Path) -> None:
        """Install what it needs (CRDs, policies scoped to `namespace`, RBAC), start its
        process(es) out of cluster against `plane`, return when it answers admission
        requests. Loopback only. Raises RuntimeError with the log tail when it cannot."""

    def hook(self) -> Hook | None:
        """None for the arm without a webhook."""

    def pids(self) -> list[int]:
        """The processes whose CPU and memory are the webhook's (empty: no webhook)."""

    def manifest(self, name: str, valid: bool) -> dict[str, Any]:
        """An AgentRun in `namespace`: `valid` ones must be admitted, the others denied
        (for a presence rule: no approvals annotation; for a signature check: a signature
        that does not verify)."""

    def stop(self) -> None:
        """Stop every process it started (idempotent)."""
