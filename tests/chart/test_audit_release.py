"""Who may change what the gate runs, named by the audit (rbac.audit_release_holders), with
the gate's objects read as the chart's audit CronJob reads them: from the webhook.yaml of
the audit ConfigMap (--webhook-manifest). The chart's render is the real one (helm)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from approvalgate.audit import rbac
from approvalgate.audit.runner import Options, load_expectations, releases
from tests.chart.support import CHART, by_kind, example_values, render

pytestmark = pytest.mark.helm


@pytest.fixture(scope="module")
def objects(helm: Path) -> list[dict[str, Any]]:
    return render(
        helm,
        CHART / "ci" / "audit-values.yaml",
        example_values("prod"),
        release="approvalgate",
        namespace="approvalgate-system",
    )


def test_the_audit_names_the_gates_objects_from_its_webhook_manifest(
    objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The CronJob's --webhook-manifest holds the Deployments, Service and CronJob; the
    ConfigMaps they mount (the bundle, the audit's expectations) come from their pod
    templates, all in the release namespace."""
    audit_map = next(
        o for o in by_kind(objects, "ConfigMap") if "webhook.yaml" in (o.get("data") or {})
    )
    manifest = tmp_path / "webhook.yaml"
    manifest.write_text(audit_map["data"]["webhook.yaml"])
    options = Options(
        now=datetime.now(UTC),
        bundle=example_values("prod").parent / "bundle.json",
        webhook_manifest=manifest,
    )
    found = releases(options, load_expectations(options))
    assert found == [
        rbac.Release(
            "approvalgate-system",
            deployments=("approvalgate", "approvalgate-controller"),
            services=("approvalgate",),
            cronjobs=("approvalgate-audit",),
            configmaps=(audit_map["metadata"]["name"], "approvalgate-bundle"),
        )
    ]
    # --bundle-configmap names that one as a switch already: not again
    named = Options(
        now=options.now,
        bundle=options.bundle,
        webhook_manifest=manifest,
        bundle_configmap="approvalgate-system/approvalgate-bundle",
    )
    assert releases(named, load_expectations(named))[0].configmaps == (
        audit_map["metadata"]["name"],
    )


def test_the_charts_own_rbac_changes_nothing_the_gate_runs(objects: list[dict[str, Any]]) -> None:
    """Neither the webhook's, the controller's nor the audit's ServiceAccount (nor the
    ClusterRoles the chart gives people) may change what the gate runs: the audit names no
    one from the chart's own RBAC."""
    release = rbac.Release(
        "approvalgate-system",
        ("approvalgate", "approvalgate-controller"),
        ("approvalgate",),
        ("approvalgate-audit",),
        ("approvalgate-audit", "approvalgate-bundle"),
    )

    def placed(kind: str) -> list[dict[str, Any]]:
        out = []
        for obj in by_kind(objects, kind):
            obj["metadata"].setdefault("namespace", "approvalgate-system")
            out.append(obj)
        return out

    assert by_kind(objects, "RoleBinding") and by_kind(objects, "ClusterRoleBinding")
    assert (
        rbac.audit_release_holders(
            roles=placed("Role"),
            cluster_roles=by_kind(objects, "ClusterRole"),
            role_bindings=placed("RoleBinding"),
            cluster_role_bindings=by_kind(objects, "ClusterRoleBinding"),
            release=release,
        )
        == []
    )
