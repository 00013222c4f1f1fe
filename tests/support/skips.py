"""The skip report: every skipped test with its reason at the end of a run, and a failed run
when a test that must run for real was skipped.

`make test` builds the real tools (kube-apiserver, etcd, kubectl, helm) and sets
APPROVALGATE_REQUIRE_E2E=1, so nothing in tests/e2e, tests/chart or tests/reliability has a
reason to skip there: a skip in those folders fails the run (exit status 1), whatever the
environment. Elsewhere a skip is listed, not failed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pytest

MUST_RUN = ("tests/e2e", "tests/chart", "tests/reliability")
"""Folders whose tests test the real components: a skip there is a failure."""


def must_run(nodeid: str) -> bool:
    """Whether the test (or module) ``nodeid`` is in one of the MUST_RUN folders."""
    path = PurePosixPath(nodeid.split("::", 1)[0])
    return any(path.is_relative_to(folder) for folder in MUST_RUN)


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        return reason.removeprefix("Skipped: ")
    return str(longrepr)


@dataclass(eq=False)  # a plugin: hashable, compared by identity
class SkipReport:
    """A pytest plugin (registered by tests/conftest.py)."""

    skips: dict[str, str] = field(default_factory=dict)
    """nodeid -> reason, in the order they happened."""

    def _record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skips.setdefault(report.nodeid, _reason(report))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._record(report)

    def forbidden(self) -> list[str]:
        """The skipped nodeids in MUST_RUN folders."""
        return [nodeid for nodeid in self.skips if must_run(nodeid)]

    def lines(self) -> list[str]:
        """The report: skips grouped by reason, each test named; then the failure, if any."""
        by_reason: dict[str, list[str]] = defaultdict(list)
        for nodeid, reason in self.skips.items():
            by_reason[reason].append(nodeid)
        out: list[str] = []
        for reason, nodeids in sorted(by_reason.items()):
            out.append(f"{len(nodeids)} skipped: {reason}")
            out.extend(f"    {nodeid}" for nodeid in sorted(nodeids))
        forbidden = self.forbidden()
        if forbidden:
            out.append(
                f"FAILED: {len(forbidden)} of these are in {', '.join(MUST_RUN)}, which must "
                "run for real (`make test` builds every tool they need): make the missing "
                "component available, or fix the test"
            )
        return out
