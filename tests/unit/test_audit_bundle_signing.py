"""The audit checks the bundle's signatures with the pinned keys (--bundle-key): the mounted
bundle (the chart's CronJob) refused is a finding with the reason and what to do."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from approvalgate.approvals.bundle_trust import trust_from_texts
from approvalgate.audit.runner import Options, _audit_bundle, load_expectations
from approvalgate.cli import main
from tests.support import bundle_signing
from tests.support.corpus import BASE, compile_case_bundle

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    path = tmp_path / "bundle.json"
    path.write_text(bundle_signing.with_revision(compile_case_bundle(BASE), 3))
    return path


def options(bundle: Path, **kw: Any) -> Options:
    trust = trust_from_texts([("test", bundle_signing.public_pem())], **kw)
    return Options(now=NOW, bundle=bundle, trust=trust)


def test_a_signed_bundle_is_no_finding(bundle: Path) -> None:
    bundle_signing.sign_file(bundle)
    found = load_expectations(options(bundle))
    assert found.refused is None
    assert _audit_bundle(None, options(bundle), found) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reason", "prepare"),
    [
        ("unsigned", lambda path: None),
        (
            "untrusted-key",
            lambda path: bundle_signing.sign_file(path, bundle_signing.other_signer()),
        ),
        ("below-min-revision", bundle_signing.sign_file),
    ],
)
def test_a_refused_mounted_bundle_is_a_finding_with_the_reason(
    bundle: Path, reason: str, prepare: Any
) -> None:
    prepare(bundle)
    opts = options(bundle, min_revision=4)
    found = load_expectations(opts)
    assert found.refused is not None and found.refused.reason == reason
    (finding,) = _audit_bundle(None, opts, found)  # type: ignore[arg-type]
    assert finding.severity == "finding" and finding.area == "bundle"
    assert f"the pinned bundle-signing keys refuse the bundle in {bundle} ({reason}:" in (
        finding.message
    )
    assert "deploy the signed bundle again" in finding.advice


def test_the_flags_are_checked_before_any_cluster_call(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = bundle_signing.public_pem()
    assert (
        main(["audit", "--bundle", str(bundle), "--bundle-key", key, "--allow-unsigned-bundle"])
        == 2
    )
    assert "choose one" in capsys.readouterr().err
    assert main(["audit", "--bundle", str(bundle), "--bundle-key", "missing.pub"]) == 2
    assert "--bundle-key missing.pub: neither a public key's text nor a readable file" in (
        capsys.readouterr().err
    )
