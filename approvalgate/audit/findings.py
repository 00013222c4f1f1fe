"""What an audit produces: findings about the cluster's configuration, and one result per run.

A :class:`Finding` with severity ``finding`` makes the audit exit 1; a ``note`` is shown but
never fails it (harmless drift, things the audit could not check). Every message says what
was found and ``advice`` says what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

Severity = Literal["finding", "note"]
RunStatus = Literal["pass", "fail", "warn", "error"]

#: Areas of configuration findings, in the order they are shown.
AREAS: Final = ("cluster", "webhook", "workloads", "bundle", "policies", "rbac", "runs")


@dataclass(frozen=True)
class Finding:
    """One difference between the cluster and what git (or the chart) says it should be."""

    area: str
    severity: Severity
    subject: str
    message: str
    advice: str = ""
    field: str = ""

    @property
    def failing(self) -> bool:
        return self.severity == "finding"


@dataclass(frozen=True)
class RunResult:
    """The audit's verdict on one stored AgentRun (one PolicyReport result)."""

    namespace: str
    name: str
    uid: str
    api_version: str
    status: RunStatus
    rule: str
    policies: tuple[str, ...]
    reason: str
    message: str
    advice: str = ""
    properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def failing(self) -> bool:
        return self.status in ("fail", "error")


@dataclass(frozen=True)
class ReportWrite:
    """A PolicyReport the audit applied."""

    namespace: str
    name: str
    results: int


@dataclass
class AuditResult:
    """Everything one audit found, in the order it is reported."""

    environment: str
    generation: str
    now: str
    server: str
    namespaces: tuple[str, ...]
    findings: list[Finding] = field(default_factory=list)
    runs: list[RunResult] = field(default_factory=list)
    reports: list[ReportWrite] = field(default_factory=list)

    @property
    def failing(self) -> bool:
        return any(f.failing for f in self.findings) or any(r.failing for r in self.runs)

    @property
    def exit_code(self) -> int:
        return 1 if self.failing else 0

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "fail": 0, "warn": 0, "error": 0}
        for run in self.runs:
            out[run.status] += 1
        return out
