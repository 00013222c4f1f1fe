"""The `control_plane` fixture: a real etcd + kube-apiserver + kubectl with every CRD we use.

Binaries are built once from pinned Go modules (tools/testbin.py) and cached. When they or the
control plane are unavailable the e2e tests fail under `make test` (APPROVALGATE_REQUIRE_E2E=1),
else they are skipped with the reason (and the run still fails: tests/support/skips.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.support.paths import ROOT, THIRD_PARTY_CRDS, UPSTREAM_AGENTS, crd_files
from tests.support.tools import unavailable

from .controlplane import ControlPlane, ControlPlaneError, locate_binaries

CRD_FOLDERS = ("argocd", "cert-manager", "prometheus-operator", "policy-report")
# the gates.proompteng.ai kinds of the approval queue (the webhook's cluster view, the
# controller, the CLI): the chart's own CRDs, CEL rules included
GATES_CRDS = ROOT / "charts" / "approvalgate" / "files" / "crds"


def crd_paths() -> list[Path]:
    """Every vendored CRD file (third_party/README.md) and the chart's queue CRDs."""
    folders = [UPSTREAM_AGENTS / "crds", *(THIRD_PARTY_CRDS / name for name in CRD_FOLDERS)]
    missing = [str(folder) for folder in folders if not crd_files(folder)]
    if missing:
        raise ControlPlaneError(
            f"vendored CRD folders missing or empty (third_party/README.md): {', '.join(missing)}"
        )
    if not crd_files(GATES_CRDS):
        raise ControlPlaneError(f"the chart's queue CRDs are missing: {GATES_CRDS}")
    return [*(path for folder in folders for path in crd_files(folder)), *crd_files(GATES_CRDS)]


def _unavailable(reason: str) -> NoReturn:
    unavailable(f"e2e control plane: {reason}")


def own_control_plane(
    crds: bool = True, audit_policy: Mapping[str, Any] | None = None
) -> Iterator[ControlPlane]:
    """A control plane of its own (with every CRD we use unless ``crds`` is False), stopped
    at the end: the session's, and a module's that stops its API server or must not share
    one (``yield from own_control_plane()`` in a module-scoped fixture); ``audit_policy``
    turns on the API server's audit log (:attr:`ControlPlane.audit_log`)."""
    try:
        paths = crd_paths() if crds else []
        plane = ControlPlane(locate_binaries(), audit_policy=audit_policy)
        plane.start()
    except ControlPlaneError as error:
        _unavailable(str(error))
    try:
        if paths:
            plane.apply_crds(paths)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    yield from own_control_plane()


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace (created as admin), deleted afterwards without waiting."""
    name = control_plane.create_namespace()
    yield name
    control_plane.kubectl("admin", "delete", "namespace", name, "--wait=false")
