"""The queue's CRDs for e2e tests: the chart's when it ships them, else a minimal fixture.

The chart's CRDs (charts/approvalgate/files/crds/, written by the chart's helper for issue
15) are used as soon as they exist. Until then this fixture defines the three kinds with
their names, scope, short names and the status subresource of ApprovalRequest, and a
schema that keeps every field (``x-kubernetes-preserve-unknown-fields``): enough for the
controller's reads and writes, nothing about validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.paths import ROOT

CHART_CRDS = ROOT / "charts" / "approvalgate" / "files" / "crds"
GROUP = "gates.proompteng.ai"
KINDS = {
    "approvalrequests": ("ApprovalRequest", ["areq"], True),
    "approvaldecisions": ("ApprovalDecision", ["adec"], False),
    "approvaluses": ("ApprovalUse", [], False),
}


def chart_crd_files() -> list[Path]:
    """The chart's queue CRDs, if all three are there (else [] and the fixture is used)."""
    if not CHART_CRDS.is_dir():
        return []
    files = sorted(CHART_CRDS.glob("*.yaml"))
    text = "".join(path.read_text() for path in files)
    return files if all(f"{plural}.{GROUP}" in text for plural in KINDS) else []


def fixture_crds() -> list[dict[str, Any]]:
    crds = []
    for plural, (kind, short, status) in KINDS.items():
        version: dict[str, Any] = {
            "name": "v1alpha1",
            "served": True,
            "storage": True,
            "schema": {
                "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            },
        }
        if status:
            version["subresources"] = {"status": {}}
        names: dict[str, Any] = {"plural": plural, "singular": kind.lower(), "kind": kind}
        if short:
            names["shortNames"] = short
        crds.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.{GROUP}"},
                "spec": {
                    "group": GROUP,
                    "scope": "Namespaced",
                    "names": names,
                    "versions": [version],
                },
            }
        )
    return crds
