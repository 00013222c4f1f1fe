"""Fixtures of the webhook integration tests: a test CA, serving certificates, bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from approvalgate.approvals.policy import BundleSettings
from tests.integration.harness import TestPKI
from tests.support.corpus import CORPUS, CORPUS_ENVIRONMENT, compile_case_bundle


@pytest.fixture(scope="session")
def base_bundle_text() -> str:
    """The decision corpus's base policy (two approvals of platform leads, carol, requester),
    with ``clusterView: off`` (as the example's dev): these tests run the webhook without an
    API server, so a bundle requiring the view would deny every run judged by records for
    want of one. The view's own tests: test_webhook_view.py here, tests/e2e/test_view.py."""
    settings = BundleSettings(environment=CORPUS_ENVIRONMENT, cluster_view="off")
    return compile_case_bundle(CORPUS / "_base", settings)


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
