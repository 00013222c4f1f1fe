"""Fixtures of the webhook integration tests: a test CA, serving certificates, bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import TestPKI
from tests.support.corpus import CORPUS, compile_case_bundle


@pytest.fixture(scope="session")
def base_bundle_text() -> str:
    """The decision corpus's base policy (two approvals of platform leads, carol, requester)."""
    return compile_case_bundle(CORPUS / "_base")


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return TestPKI.create(tmp_path / "tls")


@pytest.fixture(scope="module")
def module_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def bundle_file(tmp_path: Path, base_bundle_text: str) -> Path:
    path = tmp_path / "bundle.json"
    path.write_text(base_bundle_text)
    return path
