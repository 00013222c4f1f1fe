"""The optional in-cluster audit (audit-*.yaml, docs/audit.md): a CronJob running
`approvalgate audit` under its own least-privilege ServiceAccount.

tests/e2e/test_audit.py runs the audit as this ServiceAccount against a real API server and
proves each verb of the ClusterRole necessary; here the render itself is pinned.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from approvalgate.cli import build_parser
from tests.chart.support import (
    CHART,
    NAMESPACE,
    by_kind,
    example_values,
    namespace_values,
    one,
    render,
    webhook_part,
)

pytestmark = pytest.mark.helm

AUDIT_VALUES = CHART / "ci" / "audit-values.yaml"
AUDIT_KINDS = ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "CronJob", "ServiceAccount"]
#: With a revision floor (signed bundles): get on it by name (audit-floor-role.yaml)
FLOOR_KINDS = ["Role", "RoleBinding"]
#: The gate's workloads, compared with the chart's (audit-workloads-role.yaml): get by name
WORKLOADS_KINDS = ["Role", "RoleBinding"]
ENABLED = ["audit.enabled=true"]

#: ClusterRole rules without audit.writeReports: read only, this release's configuration only
READER_RULES = [
    {"apiGroups": ["agents.proompteng.ai"], "resources": ["agentruns"], "verbs": ["list"]},
    {
        "apiGroups": ["approvals.proompteng.ai"],
        "resources": ["approvalpolicies"],
        "verbs": ["list"],
    },
    {  # the cluster view runs are judged with (audit/runner.py _cluster_view)
        "apiGroups": ["gates.proompteng.ai"],
        "resources": ["approvalrequests", "approvaldecisions", "approvaluses"],
        "verbs": ["list"],
    },
    # parents and referenced content (audit/runner.py _platform_objects)
    {"apiGroups": ["schedules.proompteng.ai"], "resources": ["schedules"], "verbs": ["list"]},
    {
        "apiGroups": ["orchestration.proompteng.ai"],
        "resources": ["orchestrationruns", "orchestrations"],
        "verbs": ["list"],
    },
    {"apiGroups": ["swarm.proompteng.ai"], "resources": ["swarms"], "verbs": ["list"]},
    {
        "apiGroups": ["agents.proompteng.ai"],
        "resources": ["implementationspecs", "agents", "agentproviders"],
        "verbs": ["list"],
    },
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["validatingwebhookconfigurations"],
        "resourceNames": ["approvalgate"],
        "verbs": ["get"],
    },
    {  # the guard's policy and binding (audit/guard.py)
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["validatingadmissionpolicies", "validatingadmissionpolicybindings"],
        "resourceNames": ["approvalgate-guard"],
        "verbs": ["get"],
    },
    {  # who can act as a trusted ServiceAccount (audit/rbac.py)
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["roles", "rolebindings", "clusterroles", "clusterrolebindings"],
        "verbs": ["list"],
    },
]
REPORT_RULE = {
    "apiGroups": ["wgpolicyk8s.io"],
    "resources": ["policyreports"],
    "verbs": ["create", "patch"],
}


def component(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])


def audit_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for obj in objects if component(obj) == "audit"]


def pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]
    return spec


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = pod(objects)["spec"]["containers"]
    result: dict[str, Any] = found
    return result


def parsed_args(objects: list[dict[str, Any]]) -> Any:
    """The container's args, parsed by the real CLI (an unknown flag fails here)."""
    args = container(objects)["args"]
    assert all(isinstance(arg, str) for arg in args), args
    return build_parser().parse_args(args)


def test_off_by_default(helm: Path) -> None:
    objects = render(helm)
    assert audit_objects(objects) == []
    assert by_kind(objects, "CronJob") == []


def test_one_object_of_each_kind_named_after_the_release(helm: Path) -> None:
    objects = audit_objects(render(helm, sets=ENABLED))
    assert sorted(obj["kind"] for obj in objects) == sorted(
        AUDIT_KINDS + FLOOR_KINDS + WORKLOADS_KINDS
    )
    assert {obj["metadata"]["name"] for obj in objects} == {
        "approvalgate-audit",
        "approvalgate-audit-floor",
        "approvalgate-audit-workloads",
    }
    for obj in objects:
        cluster_scoped = obj["kind"].startswith("Cluster")
        assert obj["metadata"].get("namespace") == (None if cluster_scoped else NAMESPACE)


def test_the_cluster_role_is_read_only_without_reports(helm: Path) -> None:
    assert one(audit_objects(render(helm, sets=ENABLED)), "ClusterRole")["rules"] == READER_RULES


def test_reports_add_create_and_patch_on_policyreports_only(helm: Path) -> None:
    role = one(
        audit_objects(render(helm, sets=[*ENABLED, "audit.writeReports=true"])), "ClusterRole"
    )
    assert role["rules"] == [*READER_RULES, REPORT_RULE]


def test_label_mode_adds_list_namespaces_only(helm: Path, tmp_path: Path) -> None:
    """To find namespaces holding AgentRuns without the opt-in label (class 22), and the
    opt-in label's guard by name."""
    values = namespace_values(tmp_path, [], "optInLabel")
    role = one(audit_objects(render(helm, values, sets=ENABLED)), "ClusterRole")
    rules = copy.deepcopy(READER_RULES)
    (guard,) = [r for r in rules if "validatingadmissionpolicies" in r["resources"]]
    guard["resourceNames"] = ["approvalgate-guard", "approvalgate-guard-opt-in"]
    assert role["rules"] == [
        *rules,
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]},
    ]
    every = one(
        audit_objects(render(helm, namespace_values(tmp_path, ["infra"]), sets=ENABLED)),
        "ClusterRole",
    )
    assert every["rules"] == READER_RULES


def test_the_webhook_configuration_it_may_read_is_this_releases(helm: Path) -> None:
    objects = render(helm, release="other", sets=[*ENABLED, "nameOverride=gate"])
    vwc = one(objects, "ValidatingWebhookConfiguration")
    rule, guard = [
        r for r in one(audit_objects(objects), "ClusterRole")["rules"] if "resourceNames" in r
    ]
    assert rule["resourceNames"] == [vwc["metadata"]["name"]] == ["other-gate"]
    policy = one(objects, "ValidatingAdmissionPolicy")
    assert guard["resourceNames"] == [policy["metadata"]["name"]] == ["other-gate-guard"]


def test_the_binding_grants_the_role_to_the_audit_account_only(helm: Path) -> None:
    objects = render(helm, sets=ENABLED)
    account = one(audit_objects(objects), "ServiceAccount")
    binding = one(audit_objects(objects), "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": one(audit_objects(objects), "ClusterRole")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert account["automountServiceAccountToken"] is False  # only the Job's pod mounts it
    spec = pod(objects)["spec"]
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert spec["automountServiceAccountToken"] is True


def test_the_webhook_account_never_gets_the_audits_rights(helm: Path) -> None:
    objects = render(helm, AUDIT_VALUES)
    webhook_account = one(webhook_part(objects), "ServiceAccount")
    deployment = one(webhook_part(objects), "Deployment")["spec"]["template"]["spec"]
    assert deployment["serviceAccountName"] == webhook_account["metadata"]["name"]
    subjects = one(audit_objects(objects), "ClusterRoleBinding")["subjects"]
    assert webhook_account["metadata"]["name"] not in [s["name"] for s in subjects]


def test_audit_pods_are_never_selected_as_webhook_pods(helm: Path) -> None:
    objects = render(helm, AUDIT_VALUES, sets=["metrics.serviceMonitor.enabled=true"])
    labels = pod(objects)["metadata"]["labels"]
    assert labels == one(objects, "CronJob")["spec"]["jobTemplate"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "audit"
    selectors = {
        "Deployment": one(webhook_part(objects), "Deployment")["spec"]["selector"]["matchLabels"],
        "Service": one(webhook_part(objects), "Service")["spec"]["selector"],
        "PodDisruptionBudget": one(webhook_part(objects), "PodDisruptionBudget")["spec"][
            "selector"
        ]["matchLabels"],
        "NetworkPolicy": one(webhook_part(objects), "NetworkPolicy")["spec"]["podSelector"][
            "matchLabels"
        ],
    }
    selected = [kind for kind, sel in selectors.items() if sel.items() <= labels.items()]
    assert selected == []


def test_the_job_runs_once_and_never_overlaps(helm: Path) -> None:
    cronjob = one(render(helm, sets=ENABLED), "CronJob")["spec"]
    assert cronjob["schedule"] == "17 * * * *"
    assert cronjob["concurrencyPolicy"] == "Forbid"
    assert (cronjob["successfulJobsHistoryLimit"], cronjob["failedJobsHistoryLimit"]) == (1, 3)
    job = cronjob["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0  # a finding fails the Job: no retry hides it
    assert job["activeDeadlineSeconds"] == 600
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_default_command(helm: Path) -> None:
    args = parsed_args(render(helm, sets=ENABLED))
    assert args.command == "audit"
    assert (args.namespace, args.write_reports, args.output) == ([], False, "text")
    assert args.expect_generation is None  # no bundle, no generation to expect
    assert args.repo is None and args.kubeconfig is None  # the bundle and the pod's account


def test_the_ci_values_reach_every_option(helm: Path) -> None:
    objects = render(helm, AUDIT_VALUES, example_values("prod"))
    values = yaml.safe_load(AUDIT_VALUES.read_text(encoding="utf-8"))["audit"]
    cronjob = one(objects, "CronJob")["spec"]
    assert cronjob["schedule"] == values["schedule"]
    assert cronjob["successfulJobsHistoryLimit"] == values["successfulJobsHistoryLimit"]
    assert cronjob["failedJobsHistoryLimit"] == values["failedJobsHistoryLimit"]
    assert (
        cronjob["jobTemplate"]["spec"]["activeDeadlineSeconds"] == values["activeDeadlineSeconds"]
    )
    spec = pod(objects)["spec"]
    assert spec["nodeSelector"] == values["nodeSelector"]
    assert spec["tolerations"] == values["tolerations"]
    assert container(objects)["resources"] == values["resources"]
    args = parsed_args(objects)
    assert args.namespace == values["namespaces"]
    assert args.write_reports is True
    assert args.output == values["output"]
    compiled = yaml.safe_load(example_values("prod").read_text(encoding="utf-8"))
    assert args.expect_generation == compiled["policyBundle"]["generation"]


def test_it_audits_with_the_webhooks_own_bundle_and_image(helm: Path) -> None:
    objects = render(
        helm, example_values("prod"), sets=[*ENABLED, "image.digest=sha256:" + "b" * 64]
    )
    args = parsed_args(objects)
    spec = pod(objects)["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in container(objects)["volumeMounts"]}
    assert str(args.bundle) == f"{mounts['bundle']['mountPath']}/bundle.json"
    bundle = next(c for c in by_kind(objects, "ConfigMap") if "bundle.json" in c["data"])
    assert volumes["bundle"]["configMap"]["name"] == bundle["metadata"]["name"]
    assert str(args.webhook_manifest) == f"{mounts['expected']['mountPath']}/webhook.yaml"
    expected = one(audit_objects(objects), "ConfigMap")
    assert volumes["expected"]["configMap"]["name"] == expected["metadata"]["name"]
    webhook = one(webhook_part(objects), "Deployment")["spec"]["template"]["spec"]
    assert container(objects)["image"] == webhook["containers"][0]["image"]
    assert container(objects)["image"].endswith("@sha256:" + "b" * 64)


@pytest.mark.parametrize(
    "values",
    [(), (CHART / "ci" / "existing-secret-values.yaml",), (CHART / "ci" / "ha-values.yaml",)],
    ids=["default", "existing-secret", "ha"],
)
def test_the_expected_configuration_is_the_one_the_chart_renders(
    helm: Path, values: tuple[Path, ...]
) -> None:
    """The webhook configuration, then the workloads the audit compares (audit/workloads.py)
    and the guard's policy and binding (audit/guard.py): each exactly as the chart renders it."""
    objects = render(helm, *values, sets=ENABLED)
    text = one(audit_objects(objects), "ConfigMap")["data"]["webhook.yaml"]
    embedded = [d for d in yaml.safe_load_all(text) if d]
    assert [(d["kind"], d["metadata"]["name"]) for d in embedded] == [
        ("ValidatingWebhookConfiguration", "approvalgate"),
        ("Deployment", "approvalgate"),
        ("Deployment", "approvalgate-controller"),
        ("Service", "approvalgate"),
        ("CronJob", "approvalgate-audit"),
        ("ValidatingAdmissionPolicy", "approvalgate-guard"),
        ("ValidatingAdmissionPolicyBinding", "approvalgate-guard"),
    ]
    for doc in embedded:
        (rendered,) = [
            o
            for o in objects
            if o["kind"] == doc["kind"] and o["metadata"]["name"] == doc["metadata"]["name"]
        ]
        assert doc == rendered


def test_restricted_pod_security_like_the_webhook(helm: Path) -> None:
    objects = render(helm, sets=ENABLED)
    spec = pod(objects)["spec"]
    webhook = one(webhook_part(objects), "Deployment")["spec"]["template"]["spec"]
    assert spec["securityContext"] == webhook["securityContext"]
    assert container(objects)["securityContext"] == webhook["containers"][0]["securityContext"]
    assert spec["enableServiceLinks"] is False
    assert not any(key.startswith("host") for key in spec)
    writable = [m for m in container(objects)["volumeMounts"] if not m.get("readOnly")]
    assert writable == [{"name": "tmp", "mountPath": "/tmp"}]


def test_resources_default_and_can_be_removed(helm: Path) -> None:
    assert container(render(helm, sets=ENABLED))["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"memory": "256Mi"},
    }
    assert "resources" not in container(render(helm, sets=[*ENABLED, "audit.resources=null"]))


def test_pull_secrets_are_the_webhooks(helm: Path) -> None:
    objects = render(helm, sets=[*ENABLED, "imagePullSecrets[0].name=registry"])
    assert pod(objects)["spec"]["imagePullSecrets"] == [{"name": "registry"}]


def test_every_audit_value_is_used(helm: Path) -> None:
    """Each key of `audit` changes the render (a key nothing reads would be a lie)."""
    values = json.loads((CHART / "values.schema.json").read_text())["properties"]["audit"]
    changes = {
        "enabled": "audit.enabled=true",
        "schedule": "audit.schedule=0 3 * * *",
        "writeReports": "audit.writeReports=true",
        "namespaces": "audit.namespaces={agents}",
        "output": "audit.output=junit",
        "activeDeadlineSeconds": "audit.activeDeadlineSeconds=60",
        "successfulJobsHistoryLimit": "audit.successfulJobsHistoryLimit=2",
        "failedJobsHistoryLimit": "audit.failedJobsHistoryLimit=1",
        "resources": "audit.resources.limits.cpu=1",
        "nodeSelector": "audit.nodeSelector.disk=ssd",
        "tolerations": "audit.tolerations[0].operator=Exists",
    }
    assert sorted(changes) == sorted(values["properties"])
    base = render(helm, sets=ENABLED)
    unchanged = [
        key
        for key, item in changes.items()
        if key != "enabled" and render(helm, sets=[*ENABLED, item]) == base
    ]
    assert unchanged == []
    assert render(helm) != base


@pytest.mark.parametrize("controller", [True, False])
def test_the_workloads_it_may_get_are_the_ones_it_compares(helm: Path, controller: bool) -> None:
    """Get, by name, on exactly the objects embedded after the webhook configuration, and
    bound to the audit's ServiceAccount only."""
    objects = render(
        helm,
        release="other",
        sets=[*ENABLED, "nameOverride=gate", f"controller.enabled={str(controller).lower()}"],
    )
    audit = audit_objects(objects)
    text = one(audit, "ConfigMap")["data"]["webhook.yaml"]
    embedded = [  # the guard's objects are cluster-scoped: the ClusterRole gets those
        d
        for d in yaml.safe_load_all(text)
        if d and d["kind"] in {"Deployment", "Service", "CronJob"}
    ]
    (role,) = [r for r in by_kind(audit, "Role") if r["metadata"]["name"].endswith("workloads")]
    listed = [  # the pods the webhook's Service selects, and where it routes
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]},
    ]
    endpoints = {
        "apiGroups": [""],
        "resources": ["endpoints"],
        "resourceNames": ["other-gate"],
        "verbs": ["get"],
    }
    assert all(rule in role["rules"] for rule in [*listed, endpoints])
    named = [rule for rule in role["rules"] if rule not in [*listed, endpoints]]
    granted = sorted(
        (rule["resources"][0], name) for rule in named for name in rule["resourceNames"]
    )
    assert all(rule["verbs"] == ["get"] for rule in named)
    assert granted == sorted((d["kind"].lower() + "s", d["metadata"]["name"]) for d in embedded)
    assert ("deployments", "other-gate-controller") in granted if controller else len(granted) == 3
    (binding,) = [
        b for b in by_kind(audit, "RoleBinding") if b["metadata"]["name"].endswith("workloads")
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "other-gate-audit", "namespace": NAMESPACE}
    ]
