"""The Kyverno arms of `make bench-peers` (bench/peers/kyverno.py) on the real control plane:
each arm admits a valid run and denies an invalid one with Kyverno's message, through a
webhook configuration for its namespace only. A smoke test of the script: nothing here
measures speed. Skipped with the reason when the peers are not built (`make peers`)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.peers import manifest_signing
from bench.peers.kyverno import (
    KyvernoArm,
    KyvernoManifestsArm,
    KyvernoPresenceArm,
    KyvernoUnavailable,
    create,
    kyverno_binary,
    kyverno_module_dir,
    register,
    stray_webhooks,
    unregister,
)
from tests.e2e.controlplane import ControlPlane, locate_binaries
from tests.support.paths import UPSTREAM_AGENTS, crd_files


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    try:
        kyverno_binary()
        kyverno_module_dir()
    except KyvernoUnavailable as error:
        print(f"SKIP: {error}")
        pytest.skip("kyverno not built: run `make peers`")
    with ControlPlane(locate_binaries()) as control_plane:
        control_plane.apply_crds(crd_files(UPSTREAM_AGENTS / "crds"))
        yield control_plane


def test_signing_round_trip() -> None:
    arm = KyvernoManifestsArm()
    public = [key.public_key() for key in arm.keys]
    valid, invalid = arm.manifest("a", valid=True), arm.manifest("b", valid=False)
    assert manifest_signing.verify(valid, public) == 2
    # the signatures still verify over the message: it is the object that no longer matches
    assert manifest_signing.verify(invalid, public) == 2
    assert invalid["spec"] != valid["spec"]
    annotations = valid["metadata"]["annotations"]
    assert set(annotations) == {
        "cosign.sigstore.dev/message",
        "cosign.sigstore.dev/signature",
        "cosign.sigstore.dev/signature_1",
    }


METRIC = "apiserver_admission_webhook_admission_duration_seconds"


def admissions(plane: ControlPlane, name: str) -> tuple[float, float]:
    """(count, sum in seconds) of the API server's admission histogram for webhook `name`."""
    count = total = 0.0
    for line in plane.metrics().splitlines():
        if f'name="{name}"' not in line or 'operation="CREATE"' not in line:
            continue
        if line.startswith(METRIC + "_count"):
            count += float(line.rsplit(" ", 1)[1])
        elif line.startswith(METRIC + "_sum"):
            total += float(line.rsplit(" ", 1)[1])
    return count, total


def decisions(plane: ControlPlane, arm: KyvernoArm, name: str, timed: int = 0) -> None:
    """A valid run is admitted; an invalid one is denied through webhook `name` with the
    policy's message; then `timed` valid runs in one kubectl, whose mean admission as the
    API server measures it is printed (never asserted)."""
    tag = secrets.token_hex(3)  # the plane outlives a test: names never repeat
    admitted, output = create(plane, arm.manifest(f"valid-{tag}", valid=True))
    assert admitted, output
    admitted, output = create(plane, arm.manifest(f"invalid-{tag}", valid=False))
    assert not admitted
    assert f'admission webhook "{name}" denied the request' in output, output
    assert arm.policy_name in output, output
    print(f"{arm.key}: denied with: {output}")
    if timed:
        before = admissions(plane, name)
        text = "\n---\n".join(
            json.dumps(arm.manifest(f"timed-{tag}-{i:03d}", valid=True)) for i in range(timed)
        )
        plane.kubectl("admin", "create", "-f", "-", "-o", "name", input=text, timeout=600)
        count, total = (a - b for a, b in zip(admissions(plane, name), before, strict=True))
        assert count == timed
        mean_ms = total / count * 1e3
        print(f"{arm.key}: mean admission over {timed} sequential creates: {mean_ms:.1f} ms")


def test_both_arms_at_once(plane: ControlPlane, tmp_path: Path) -> None:
    """The driver's situation: both kyverno processes up (one installation, two replicas),
    each namespace judged only through its own webhook configuration."""
    arms: list[KyvernoArm] = [KyvernoPresenceArm(), KyvernoManifestsArm()]
    names: list[str] = []
    try:
        for arm in arms:
            arm.start(plane, tmp_path / arm.key)
        assert len({pid for arm in arms for pid in arm.pids()}) == 2
        # Kyverno's own webhook configurations never send it an AgentRun
        assert stray_webhooks(plane, selector="") == []
        names = [register(plane, arm) for arm in arms]
        assert stray_webhooks(plane, selector="", ours=tuple(names)) == []
        for arm, name in zip(arms, names, strict=True):
            decisions(plane, arm, name, timed=50)
    finally:
        for name in names:
            unregister(plane, name)
        for arm in arms:
            arm.stop()
    assert all(arm.pids() == [] for arm in arms)


def test_arms_one_after_another(plane: ControlPlane, tmp_path: Path) -> None:
    """An arm started after another one stopped (the first took Kyverno's webhooks with it)
    still leaves no Kyverno webhook that could judge AgentRuns."""
    for arm in (KyvernoManifestsArm(), KyvernoPresenceArm()):
        arm.start(plane, tmp_path / arm.key)
        name = ""
        try:
            assert stray_webhooks(plane, selector="") == []
            name = register(plane, arm)
            decisions(plane, arm, name)
        finally:
            if name:
                unregister(plane, name)
            arm.stop()
        assert arm.pids() == []
