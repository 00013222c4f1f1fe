"""Fixtures of the chart tests: the real helm binary, built by tools/testbin.py when missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.support import pinned_binary


@pytest.fixture(scope="session")
def helm() -> Path:
    return pinned_binary("helm", "helm")


@pytest.fixture(scope="session")
def kubectl() -> Path:
    return pinned_binary("k8s", "kubectl")
