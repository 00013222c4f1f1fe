"""The approval controller in the chart (controller-*.yaml): its Deployment, command line,
least-privilege RBAC, Lease, PodDisruptionBudget, NetworkPolicy and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart.support import (
    CHART,
    NAMESPACE,
    by_kind,
    component,
    example_values,
    one,
    render,
    webhook_part,
)

pytestmark = pytest.mark.helm

SELECTOR = {
    "app.kubernetes.io/name": "approvalgate",
    "app.kubernetes.io/instance": "approvalgate",
    "app.kubernetes.io/component": "controller",
}
GATES = "gates.proompteng.ai"


def controller(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return component(objects, "controller")


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(controller(objects), "Deployment")["spec"]["template"]["spec"]
    return spec


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = pod_spec(objects)["containers"]
    return found


def flags(objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    """`--flag value` pairs (repeatable flags keep every value); bare flags map to []."""
    args = container(objects)["args"]
    assert args[0] == "controller"
    out: dict[str, list[str]] = {}
    i = 1
    while i < len(args):
        flag = args[i]
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            out.setdefault(flag, []).append(args[i + 1])
            i += 2
        else:
            out.setdefault(flag, [])
            i += 1
    return out


def grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_two_replicas_one_leader_restricted_pods(helm: Path) -> None:
    objects = render(helm)
    deployment = one(controller(objects), "Deployment")
    assert deployment["metadata"]["name"] == "approvalgate-controller"
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"] == {"matchLabels": SELECTOR}
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    spec = pod_spec(objects)
    webhook = one(webhook_part(objects), "Deployment")["spec"]["template"]["spec"]
    assert spec["securityContext"] == webhook["securityContext"]
    assert container(objects)["securityContext"] == webhook["containers"][0]["securityContext"]
    assert container(objects)["image"] == webhook["containers"][0]["image"]
    assert spec["enableServiceLinks"] is False
    assert not any(key.startswith("host") for key in spec)
    writable = [m for m in container(objects)["volumeMounts"] if not m.get("readOnly")]
    assert writable == [{"name": "tmp", "mountPath": "/tmp"}]
    (term,) = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == SELECTOR


def test_its_pods_are_never_selected_as_webhook_pods(helm: Path) -> None:
    objects = render(helm, CHART / "ci" / "ha-values.yaml")
    labels = one(controller(objects), "Deployment")["spec"]["template"]["metadata"]["labels"]
    webhook = webhook_part(objects)
    selectors = [
        one(webhook, "Deployment")["spec"]["selector"]["matchLabels"],
        one(webhook, "Service")["spec"]["selector"],
        one(webhook, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        one(webhook, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
        one(webhook, "ServiceMonitor")["spec"]["selector"]["matchLabels"],
    ]
    assert [s for s in selectors if s.items() <= labels.items()] == []


def test_the_command_line_is_the_contracts(helm: Path) -> None:
    objects = render(helm)
    got = flags(objects)
    mounts = {m["name"]: m["mountPath"] for m in container(objects)["volumeMounts"]}
    assert got["--bundle"] == [f"{mounts['bundle']}/bundle.json"]
    assert got["--lease-namespace"] == [NAMESPACE]
    assert got["--lease-name"] == ["approvalgate-controller"]
    assert got["--identity"] == ["$(POD_NAME)"]
    env = {e["name"]: e for e in container(objects)["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert got["--health-port"] == [str(ports["health"])] == ["8081"]
    assert got["--metrics-port"] == [str(ports["metrics"])] == ["9090"]
    for absent in ("--namespace", "--signal-deliveries", "--notify-url", "--kubeconfig"):
        assert absent not in got  # every namespace, in-cluster credentials
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    webhook_volumes = {
        v["name"]: v
        for v in one(webhook_part(objects), "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["bundle"] == webhook_volumes["bundle"]  # the same ConfigMap, mounted alike


def test_options_reach_the_command_line(helm: Path) -> None:
    objects = render(
        helm,
        sets=[
            "controller.namespaces={agents,agents-prod}",
            "controller.signalDeliveries.enabled=true",
            "controller.notify.secretName=slack",
            "controller.leaseName=gate-leader",
            "controller.extraArgs={--resync-seconds=300}",
            "metrics.enabled=false",
        ],
    )
    got = flags(objects)
    assert got["--namespace"] == ["agents", "agents-prod"]
    assert got["--signal-deliveries"] == []
    assert "--notify-url" not in got  # the secret URL is read from the environment only
    env = {e["name"]: e for e in container(objects)["env"]}
    assert env["APPROVALGATE_NOTIFY_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "slack", "key": "url"}
    }
    assert got["--lease-name"] == ["gate-leader"]
    assert got["--resync-seconds=300"] == []
    assert got["--metrics-port"] == ["0"]
    assert [p["name"] for p in container(objects)["ports"]] == ["health"]
    assert by_kind(controller(objects), "Service") == []
    (lease_role,) = [
        r for r in by_kind(controller(objects), "Role") if r["metadata"]["name"].endswith("-lease")
    ]
    assert lease_role["rules"][1]["resourceNames"] == ["gate-leader"]


def test_probes_on_the_health_port(helm: Path) -> None:
    found = container(render(helm))
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert found[probe]["httpGet"] == {"path": path, "port": "health"}, probe


def test_rollout_on_change_rolls_the_controller_too(helm: Path) -> None:
    objects = render(helm, example_values("prod"), sets=["policyBundle.rolloutOnChange=true"])
    template = one(controller(objects), "Deployment")["spec"]["template"]
    config = one(objects, "ConfigMap")
    assert template["metadata"]["annotations"] == config["metadata"]["annotations"]


# --- RBAC -------------------------------------------------------------------------------

CLUSTER_GRANTS = {
    *((GATES, "approvalrequests", v) for v in ("get", "list", "watch")),
    (GATES, "approvalrequests/status", "update"),
    (GATES, "approvalrequests/status", "patch"),
    *((GATES, "approvaldecisions", v) for v in ("get", "list", "watch", "delete")),
    *((GATES, "approvaluses", v) for v in ("get", "list", "watch", "create", "delete")),
    *(
        ("agents.proompteng.ai", "agentruns", v)
        for v in ("get", "list", "watch", "create", "update", "patch")
    ),
    *(
        (group, plural, v)
        for group, plural in (
            ("schedules.proompteng.ai", "schedules"),
            ("orchestration.proompteng.ai", "orchestrationruns"),
            ("orchestration.proompteng.ai", "orchestrations"),
            ("swarm.proompteng.ai", "swarms"),
        )
        for v in ("get", "list", "watch")
    ),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
    ("", "events", "create"),
    ("", "events", "patch"),
}


def test_least_privilege_cluster_role(helm: Path) -> None:
    role = one(controller(render(helm)), "ClusterRole")
    assert grants(role) == CLUSTER_GRANTS
    # never the request spec, never secrets, never a wildcard
    assert (GATES, "approvalrequests", "update") not in grants(role)
    assert all("*" not in part for grant in grants(role) for part in grant)


def test_signal_deliveries_add_create_only(helm: Path) -> None:
    role = one(
        controller(render(helm, sets=["controller.signalDeliveries.enabled=true"])), "ClusterRole"
    )
    assert grants(role) - CLUSTER_GRANTS == {
        ("signals.proompteng.ai", "signaldeliveries", "create")
    }


def test_the_lease_role_names_the_one_lease(helm: Path) -> None:
    """(The controller's other Role, the revision floor's, is in
    tests/chart/test_render_bundle_floor.py.)"""
    objects = [o for o in controller(render(helm)) if not o["metadata"]["name"].endswith("-floor")]
    role = one(objects, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["approvalgate-controller"],
            "verbs": ["get", "update"],
        },
    ]
    (binding,) = by_kind(objects, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }


def subject(objects: list[dict[str, Any]]) -> dict[str, str]:
    account = one(controller(objects), "ServiceAccount")
    assert pod_spec(objects)["serviceAccountName"] == account["metadata"]["name"]
    return {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}


def test_every_namespace_by_default_through_a_cluster_role_binding(helm: Path) -> None:
    objects = render(helm)
    account = one(controller(objects), "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert pod_spec(objects)["automountServiceAccountToken"] is True  # the controller's pods only
    binding = one(controller(objects), "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one(controller(objects), "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [subject(objects)]


def test_watched_namespaces_get_role_bindings_only(helm: Path) -> None:
    objects = render(helm, sets=["controller.namespaces={agents,approvalgate-system}"])
    assert by_kind(controller(objects), "ClusterRoleBinding") == []
    bindings = {
        (b["metadata"]["namespace"], b["roleRef"]["kind"], b["metadata"]["name"])
        for b in by_kind(controller(objects), "RoleBinding")
    }
    assert bindings == {
        (NAMESPACE, "Role", "approvalgate-controller-lease"),
        (NAMESPACE, "Role", "approvalgate-controller-floor"),
        ("agents", "ClusterRole", "approvalgate-controller"),
        (NAMESPACE, "ClusterRole", "approvalgate-controller"),  # no clash with the lease's
    }
    for binding in by_kind(controller(objects), "RoleBinding"):
        assert binding["subjects"] == [subject(objects)]


def test_no_other_grant_names_the_controller(helm: Path) -> None:
    objects = render(helm, sets=["audit.enabled=true"])
    name = one(controller(objects), "ServiceAccount")["metadata"]["name"]
    foreign = [
        o["metadata"]["name"]
        for o in objects
        if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and name in [s["name"] for s in o["subjects"]]
        and o not in controller(objects)
    ]
    assert foreign == []


# --- availability, network, metrics ------------------------------------------------------


def test_pdb_keeps_one_controller_pod(helm: Path) -> None:
    pdb = one(controller(render(helm)), "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": SELECTOR}}


def test_network_policy(helm: Path) -> None:
    policy = one(controller(render(helm)), "NetworkPolicy")["spec"]
    assert policy["podSelector"] == {"matchLabels": SELECTOR}
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (metrics,) = policy["ingress"]
    assert metrics["ports"] == [{"port": 9090, "protocol": "TCP"}]
    assert metrics["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    api = policy["egress"][-1]
    assert api == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]}
    notify = render(
        helm,
        sets=[
            "controller.extraEgress[0].ports[0].port=443",
            "metrics.enabled=false",
            "networkPolicy.dns.enabled=false",
        ],
    )
    policy = one(controller(notify), "NetworkPolicy")["spec"]
    assert policy["ingress"] == []
    assert policy["egress"] == [api, {"ports": [{"port": 443}]}]


def test_metrics_service_and_monitor(helm: Path) -> None:
    objects = controller(render(helm, CHART / "ci" / "ha-values.yaml"))
    service = one(objects, "Service")
    assert service["spec"]["selector"] == SELECTOR
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    monitor = one(objects, "ServiceMonitor")
    assert monitor["spec"]["selector"] == {"matchLabels": SELECTOR}
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_the_controller_can_be_left_out(helm: Path) -> None:
    objects = render(helm, sets=["controller.enabled=false"])
    assert controller(objects) == []


def test_sync_wave_with_the_webhook(helm: Path) -> None:
    deployment = one(controller(render(helm)), "Deployment")
    assert deployment["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "0"
