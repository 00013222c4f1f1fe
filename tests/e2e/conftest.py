"""The `control_plane` fixture: a real etcd + kube-apiserver + kubectl with every CRD we use.

Binaries are built once from pinned Go modules (tools/testbin.py) and cached. When they or the
control plane are unavailable the e2e tests are skipped, or fail when APPROVALGATE_REQUIRE_E2E=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.tools import unavailable

from .controlplane import ControlPlane, ControlPlaneError, locate_binaries, shared_dir

THIRD_PARTY_CRDS = ("argocd", "cert-manager", "prometheus-operator", "policy-report")


def crd_paths() -> list[Path]:
    shared = shared_dir()
    paths = [
        shared / "upstream-agents" / "crds",
        *(shared / "crds" / name for name in THIRD_PARTY_CRDS),
    ]
    missing = [str(path) for path in paths if not path.is_dir()]
    if missing:
        raise ControlPlaneError(
            f"CRD folders missing (set APPROVALGATE_SHARED?): {', '.join(missing)}"
        )
    return paths


def _unavailable(reason: str) -> NoReturn:
    unavailable(f"e2e control plane: {reason}")


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    try:
        paths = crd_paths()
        plane = ControlPlane(locate_binaries())
        plane.start()
    except ControlPlaneError as error:
        _unavailable(str(error))
    try:
        plane.apply_crds(paths)
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace (created as admin), deleted afterwards without waiting."""
    name = control_plane.create_namespace()
    yield name
    control_plane.kubectl("admin", "delete", "namespace", name, "--wait=false")
