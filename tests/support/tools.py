"""Real components for tests: a pinned binary from tools/testbin.py, and the one rule for
when something real is missing: a failure under `make test` and CI (both set
APPROVALGATE_REQUIRE_E2E=1), else a skip with the reason. A skip in tests/e2e, tests/chart or
tests/reliability still fails the run (tests/support/skips.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.paths import ROOT


def unavailable(reason: str) -> NoReturn:
    """Fail when every real component is required (APPROVALGATE_REQUIRE_E2E=1), else skip."""
    if os.environ.get("APPROVALGATE_REQUIRE_E2E") == "1":
        pytest.fail(f"required (APPROVALGATE_REQUIRE_E2E=1) but unavailable: {reason}")
    pytest.skip(reason)


def pinned_binary(tool: str, binary: str) -> Path:
    """``binary`` of ``tool`` (k8s, etcd, helm), built by tools/testbin.py when missing."""
    script = ROOT / "tools" / "testbin.py"
    reason = f"{script} does not exist"
    if script.exists():
        result = subprocess.run(
            [sys.executable, str(script), "--print-dir", tool],
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        lines = result.stdout.strip().splitlines()
        path = Path(lines[-1] if lines else ".") / binary
        if result.returncode == 0 and path.exists():
            return path
        reason = f"testbin.py failed: {result.stderr.strip()[-2000:]}"
    unavailable(f"no {binary}: {reason}")
