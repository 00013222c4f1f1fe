"""The Kyverno arms of `make bench-peers` (bench/peers/kyverno.py) on the real control plane:
each arm admits a valid run and denies an invalid one with Kyverno's message, through a
webhook configuration for its namespace only. A smoke test of the script: nothing here
measures speed. Skipped with the reason when the peers are not built (`make peers`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.peers import manifest_signing
from bench.peers.kyverno import (
    KyvernoManifestsArm,
    KyvernoPresenceArm,
    KyvernoUnavailable,
    create,
    kyverno_binary,
    kyverno_module_dir,
    register,
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


@pytest.mark.parametrize("arm_class", [KyvernoPresenceArm, KyvernoManifestsArm])
def test_arm_admits_valid_and_denies_invalid(
    plane: ControlPlane, tmp_path: Path, arm_class: type[KyvernoPresenceArm]
) -> None:
    arm = arm_class()
    arm.start(plane, tmp_path)
    name = ""
    try:
        assert arm.pids() and arm.hook() is not None
        name = register(plane, arm)
        timings = []
        for i in range(5):
            started = time.perf_counter()
            admitted, output = create(plane, arm.manifest(f"valid-{i}", valid=True))
            timings.append(time.perf_counter() - started)
            assert admitted, output
        admitted, output = create(plane, arm.manifest("invalid", valid=False))
        assert not admitted
        assert f'admission webhook "{name}" denied the request' in output, output
        assert arm.policy_name in output, output
        print(f"{arm.key}: denied with: {output}")
        print(f"{arm.key}: kubectl create of a valid run, best of 5: {min(timings) * 1000:.0f} ms")
    finally:
        if name:
            unregister(plane, name)
        arm.stop()
    assert arm.pids() == []
