"""Every object the chart renders validates strictly: unknown fields are errors.

Core kinds against tests/chart/schemas/ (derived from the pinned kube-apiserver's OpenAPI v3,
see generate.py); cert-manager and Prometheus operator kinds against their CRDs in
third_party/crds/, made strict. tests/e2e/test_chart_dry_run.py sends the same renders to a real
API server (`kubectl apply --dry-run=server --validate=strict`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.chart.support import RENDERS, component, one, render, strict_errors, webhook_part

pytestmark = pytest.mark.helm


@pytest.mark.parametrize("case", RENDERS, ids=RENDERS.keys())
def test_every_rendered_object_validates_strictly(helm: Path, case: str) -> None:
    values, sets = RENDERS[case]
    objects = render(helm, *values, sets=list(sets))
    assert objects
    assert [error for obj in objects for error in strict_errors(obj)] == []


def _mutations(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Objects with one unknown or misplaced field each."""
    out: dict[str, dict[str, Any]] = {}
    deployment = copy.deepcopy(one(webhook_part(objects), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    out["container field in the wrong case"] = deployment
    service = copy.deepcopy(one(webhook_part(objects), "Service"))
    service["metadata"]["label"] = {"a": "b"}
    out["unknown ObjectMeta field"] = service
    webhook = copy.deepcopy(one(objects, "ValidatingWebhookConfiguration"))
    webhook["webhooks"][0]["failurePolicy"] = "Fail"
    webhook["webhooks"][0]["timeout"] = 5
    out["unknown webhook field"] = webhook
    certificate = copy.deepcopy(next(o for o in objects if o["kind"] == "Certificate"))
    certificate["spec"]["dnsName"] = ["x"]
    out["unknown Certificate field"] = certificate
    policy = copy.deepcopy(one(webhook_part(objects), "NetworkPolicy"))
    policy["spec"]["egress"][0]["ports"][0]["port"] = 53.5
    out["a port that is no integer"] = policy
    status = copy.deepcopy(one(objects, "ConfigMap"))
    status["status"] = {}
    out["status on a ConfigMap"] = status
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    out["a kind without a schema"] = unknown
    return out


def _audit_mutations(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The audit's kinds (audit.enabled), one unknown or misplaced field each."""
    out: dict[str, dict[str, Any]] = {}
    cronjob = copy.deepcopy(one(objects, "CronJob"))
    cronjob["spec"]["jobTemplate"]["spec"]["backofflimit"] = 0
    out["Job field in the wrong case"] = cronjob
    misplaced = copy.deepcopy(one(objects, "CronJob"))
    misplaced["spec"]["restartPolicy"] = "Never"  # a pod field on the CronJob
    out["pod field on the CronJob"] = misplaced
    role = copy.deepcopy(one(component(objects, "audit"), "ClusterRole"))
    role["rules"][0]["verb"] = ["list"]
    out["unknown PolicyRule field"] = role
    namespaced = copy.deepcopy(one(component(objects, "audit"), "ClusterRoleBinding"))
    namespaced["roleRef"]["namespace"] = "approvalgate-system"
    out["namespace on a roleRef"] = namespaced
    return out


def test_the_validation_is_really_strict(helm: Path) -> None:
    mutations = {
        **_mutations(render(helm)),
        **_audit_mutations(render(helm, sets=["audit.enabled=true"])),
    }
    accepted = [name for name, obj in mutations.items() if not strict_errors(obj)]
    assert accepted == []
