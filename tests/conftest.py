"""Session-wide rules of the test suite.

- Every skip is listed at the end of the run with its reason, and a skip in tests/e2e,
  tests/chart or tests/reliability fails the run (tests/support/skips.py).
- No test reads the `shared` folder beside the checkout, which a user's clone does not have:
  such a read raises, and fails the run (tests/support/outside_reads.py).
"""

from __future__ import annotations

import signal

import pytest

from tests.support import outside_reads
from tests.support.paths import ROOT
from tests.support.skips import SkipReport

# Tests stop CLI processes with SIGINT, as Ctrl-C would (`pending --watch`). A suite started
# in the background by a non-interactive shell (`make test &`, nohup) has SIGINT ignored, and
# every process it starts inherits that and would never stop (two `pending --watch` tests
# then failed after 30 s, killed): give this process Python's default, which children get.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

_SKIPS = "approvalgate-skip-report"


def pytest_configure(config: pytest.Config) -> None:
    outside_reads.install(ROOT)
    if not config.pluginmanager.has_plugin(_SKIPS):
        config.pluginmanager.register(SkipReport(), _SKIPS)


def _skip_report(config: pytest.Config) -> SkipReport:
    plugin = config.pluginmanager.get_plugin(_SKIPS)
    assert isinstance(plugin, SkipReport)
    return plugin


def pytest_sessionfinish(session: pytest.Session) -> None:
    broken = bool(_skip_report(session.config).forbidden() or outside_reads.seen())
    if broken and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    report = _skip_report(config)
    if report.skips:
        terminalreporter.section(f"skipped tests: {len(report.skips)}, with their reasons")
        for line in report.lines():
            terminalreporter.line(line, red=line.startswith("FAILED"))
    reads = outside_reads.seen()
    if reads:
        terminalreporter.section("FAILED: reads outside the repository", red=True)
        for path in reads:
            terminalreporter.line(f"{path} (vendor it under third_party/)", red=True)
