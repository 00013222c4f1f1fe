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


class FloorCluster:
    """The two reads the floor check makes: the floor's ConfigMap, and RBAC (none here)."""

    def __init__(self, data: dict[str, str] | None, error: Exception | None = None) -> None:
        self.data = data
        self.error = error
        self.reads: list[str] = []

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(f"{namespace}/{name}")
        if self.error is not None:
            raise self.error
        return None if self.data is None else {"data": self.data}

    def list_rbac(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return []


FLOOR = "approvalgate-system/approvalgate-bundle-floor"


def _floor_findings(bundle: Path, cluster: FloorCluster, **kw: Any) -> list[Any]:
    from approvalgate.audit.runner import _audit_floor

    opts = options(bundle, **kw)
    opts = Options(now=NOW, bundle=bundle, trust=opts.trust, bundle_floor=FLOOR)
    return _audit_floor(cluster, opts, load_expectations(opts))  # type: ignore[arg-type]


def test_a_mounted_bundle_below_the_revision_floor_is_a_finding(bundle: Path) -> None:
    """The compiled values put back revision 3, signed; the chart's pinned minimum follows
    them, so the keys accept it, but the floor (5) makes the pods refuse it: the audit says
    so, with the reason and what to do, before the pods are rolled onto it."""
    from approvalgate.approvals.bundle import parse_bundle_text

    bundle_signing.sign_file(bundle)
    environment = parse_bundle_text(bundle.read_text(), "b").environment or "any-environment"
    cluster = FloorCluster({environment: "5"})
    (finding,) = _floor_findings(bundle, cluster, min_revision=3)
    assert cluster.reads == [FLOOR]
    assert finding.severity == "finding" and finding.area == "bundle"
    assert "(below-floor:" in finding.message
    assert "revision 3, below revision 5" in finding.message
    assert f"ConfigMap/{FLOOR}" in finding.message
    assert "revision 5 or higher" in finding.advice
    # at or above the floor, or no floor recorded yet: nothing
    assert _floor_findings(bundle, FloorCluster({environment: "3"}), min_revision=3) == []
    assert _floor_findings(bundle, FloorCluster(None), min_revision=3) == []


def test_a_floor_the_audit_cannot_read_is_said(bundle: Path) -> None:
    from approvalgate.kube.errors import ApiError

    bundle_signing.sign_file(bundle)
    denied = FloorCluster(None, ApiError("forbidden", status=403))
    (finding,) = _floor_findings(bundle, denied)
    assert "cannot compare the mounted bundle with the revision floor" in finding.message
    assert "get on configmaps" in finding.advice
    # an API server that cannot be reached is the audit's error, as for its other reads
    from approvalgate.kube.errors import UnreachableError

    with pytest.raises(UnreachableError):
        _floor_findings(bundle, FloorCluster(None, UnreachableError("cannot reach it")))
    # a bundle the keys refuse already is a finding: the floor is not read for it
    unsigned = FloorCluster({"any": "1"})
    bundle.with_name("bundle.sig.json").unlink()
    assert _floor_findings(bundle, unsigned) == [] and unsigned.reads == []
