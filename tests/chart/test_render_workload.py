"""Deployment, Service, PDB, ServiceAccount, NetworkPolicy, ServiceMonitor and names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart.support import CHART, CI_VALUES, by_kind, component, one, render, webhook_part

pytestmark = pytest.mark.helm

HA = CHART / "ci" / "ha-values.yaml"
SELECTOR = {
    "app.kubernetes.io/name": "approvalgate",
    "app.kubernetes.io/instance": "approvalgate",
    "app.kubernetes.io/component": "webhook",
}


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(webhook_part(objects), "Deployment")["spec"]["template"]["spec"]
    return spec


def test_two_replicas_spread_over_nodes(helm: Path) -> None:
    objects = render(helm)
    deployment = one(webhook_part(objects), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    anti = pod_spec(objects)["affinity"]["podAntiAffinity"]
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == SELECTOR


def test_restricted_pod_security(helm: Path) -> None:
    spec = pod_spec(render(helm))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 65532
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert spec["automountServiceAccountToken"] is True  # the view's credentials, read-only
    assert not any(key.startswith("host") for key in spec)  # hostNetwork, hostPID, ...
    writable = [m for m in container["volumeMounts"] if not m.get("readOnly")]
    assert writable == [{"name": "tmp", "mountPath": "/tmp"}]
    tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["medium"] == "Memory"


def test_probes_and_resources(helm: Path) -> None:
    (container,) = pod_spec(render(helm))["containers"]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}
    assert container["startupProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert container["resources"]["limits"]["memory"] == "256Mi"


def test_args_point_at_the_mounted_files(helm: Path) -> None:
    (container,) = pod_spec(render(helm))["containers"]
    args = container["args"]
    assert args[:2] == ["webhook", "serve"]
    flags = dict(zip(args[2::2], args[3::2], strict=True))
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert flags["--bundle"] == f"{mounts['bundle']}/bundle.json"
    assert flags["--tls-cert"] == f"{mounts['tls']}/tls.crt"
    assert flags["--tls-key"] == f"{mounts['tls']}/tls.key"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert flags["--port"] == str(ports["https"]) == "8443"
    assert flags["--metrics-port"] == str(ports["metrics"]) == "9090"
    assert {"name": "HOME", "value": "/tmp"} in container["env"]  # crash log, caches


def test_metrics_can_be_turned_off(helm: Path) -> None:
    objects = render(helm, sets=["metrics.enabled=false"])
    (container,) = pod_spec(objects)["containers"]
    assert container["args"][container["args"].index("--metrics-port") + 1] == "0"
    assert [p["name"] for p in container["ports"]] == ["https"]
    assert [p["name"] for p in one(webhook_part(objects), "Service")["spec"]["ports"]] == ["https"]
    assert len(one(webhook_part(objects), "NetworkPolicy")["spec"]["ingress"]) == 1


def test_pdb_keeps_one_pod(helm: Path) -> None:
    pdb = one(webhook_part(render(helm)), "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": SELECTOR}}


VIEW_RULES = [
    {"apiGroups": [group], "resources": resources, "verbs": ["get", "list", "watch"]}
    for group, resources in (
        ("gates.proompteng.ai", ["approvalrequests", "approvaldecisions", "approvaluses"]),
        ("schedules.proompteng.ai", ["schedules"]),
        ("orchestration.proompteng.ai", ["orchestrationruns", "orchestrations"]),
        ("swarm.proompteng.ai", ["swarms"]),
        ("agents.proompteng.ai", ["implementationspecs", "agents", "agentproviders"]),
    )
]


def rbac(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kinds = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
    return [o for o in objects if o["kind"] in kinds]


def test_the_webhook_account_may_only_read_its_view(helm: Path) -> None:
    """Its view (webhook.clusterView, on by default): get/list/watch on the queue's three
    kinds and the six of the agents platform it judges runs by, cluster-wide, and get on the
    revision floor's ConfigMap by name (tests/chart/test_render_bundle_floor.py); no other
    grant anywhere in the chart names its ServiceAccount."""
    for values in CI_VALUES:
        objects = render(helm, values)
        account = one(webhook_part(objects), "ServiceAccount")
        assert account["automountServiceAccountToken"] is False  # the pod mounts it
        assert pod_spec(objects)["serviceAccountName"] == account["metadata"]["name"]
        assert pod_spec(objects)["automountServiceAccountToken"] is True
        assert one(webhook_part(objects), "ClusterRole")["rules"] == VIEW_RULES
        bindings = [
            o
            for o in rbac(objects)
            if account["metadata"]["name"] in [s["name"] for s in o.get("subjects", [])]
        ]
        assert sorted((b["kind"], b["roleRef"]["name"]) for b in bindings) == [
            ("ClusterRoleBinding", one(webhook_part(objects), "ClusterRole")["metadata"]["name"]),
            ("RoleBinding", "approvalgate-webhook-floor"),
        ], values.name


UNSIGNED = ["bundleSigning.publicKeys=null", "bundleSigning.allowUnsigned=true"]


def test_without_the_view_the_webhook_has_no_token_and_no_rbac(helm: Path) -> None:
    """Nor the revision floor (unsigned: none); with keys the webhook reads the floor:
    tests/chart/test_render_bundle_floor.py."""
    objects = render(helm, sets=["webhook.clusterView=false", *UNSIGNED])
    assert pod_spec(objects)["automountServiceAccountToken"] is False
    assert rbac(webhook_part(objects)) == []
    account = one(webhook_part(objects), "ServiceAccount")["metadata"]["name"]
    assert account not in [s["name"] for o in rbac(objects) for s in o.get("subjects", [])]
    (container,) = pod_spec(objects)["containers"]
    assert container["args"][container["args"].index("--cluster-view") + 1] == "off"
    egress = one(webhook_part(objects), "NetworkPolicy")["spec"]["egress"]
    assert [rule for rule in egress if {"port": 443, "protocol": "TCP"} in rule["ports"]] == []


def test_network_policy_defaults(helm: Path) -> None:
    policy = one(webhook_part(render(helm)), "NetworkPolicy")["spec"]
    assert policy["podSelector"] == {"matchLabels": SELECTOR}
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    webhook_rule, metrics_rule = policy["ingress"]
    # the API server's source address is not selectable in general: any source, this port only
    assert webhook_rule == {"ports": [{"port": 8443, "protocol": "TCP"}]}
    assert metrics_rule == {
        "ports": [{"port": 9090, "protocol": "TCP"}],
        "from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
    }
    dns_ports = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert policy["egress"] == [
        {
            "to": [  # one peer: namespace AND pod selector
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                    },
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": dns_ports,
        },
        {"to": [{"ipBlock": {"cidr": "169.254.20.10/32"}}], "ports": dns_ports},
        # the view's watches: the API server's endpoints are unknown to the chart, so any
        # destination on its ports until networkPolicy.apiServer names them (NOTES says so)
        {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]},
    ]


def test_the_api_server_peers_narrow_the_views_egress(helm: Path) -> None:
    sets = [
        "networkPolicy.apiServer[0].ipBlock.cidr=10.0.0.10/32",
        "networkPolicy.apiServerPorts={6443}",
    ]
    for part in ("webhook", "controller"):
        egress = one(component(render(helm, sets=sets), part), "NetworkPolicy")["spec"]["egress"]
        assert egress[-1] == {
            "ports": [{"port": 6443, "protocol": "TCP"}],
            "to": [{"ipBlock": {"cidr": "10.0.0.10/32"}}],
        }, part


def test_network_policy_without_dns_and_view_denies_all_egress(helm: Path) -> None:
    sets = ["networkPolicy.dns.enabled=false", "webhook.clusterView=false", *UNSIGNED]
    policy = one(webhook_part(render(helm, sets=sets)), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["egress"] == []


def test_ha_values(helm: Path) -> None:
    objects = render(helm, HA)
    assert one(webhook_part(objects), "Deployment")["spec"]["replicas"] == 3
    spec = pod_spec(objects)
    (required,) = spec["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert required["labelSelector"]["matchLabels"] == SELECTOR
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["labelSelector"] == {"matchLabels": SELECTOR}  # filled in by the chart
    assert one(webhook_part(objects), "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    monitor = one(webhook_part(objects), "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"] == {"matchLabels": SELECTOR}
    webhook_rule = one(webhook_part(objects), "NetworkPolicy")["spec"]["ingress"][0]
    assert webhook_rule["from"] == [{"ipBlock": {"cidr": "10.0.0.0/24"}}]


def test_no_service_monitor_by_default(helm: Path) -> None:
    assert by_kind(render(helm), "ServiceMonitor") == []


@pytest.mark.parametrize(
    ("release", "sets"),
    [
        ("approvalgate", []),
        ("r" * 53, []),
        ("x", ["fullnameOverride=" + "f" * 63]),
        ("x", ["nameOverride=" + "n" * 63]),
    ],
    ids=["default", "long-release", "long-fullname", "long-name"],
)
def test_names_fit_in_63_characters_and_never_collide(
    helm: Path, release: str, sets: list[str]
) -> None:
    objects = render(helm, release=release, sets=[*sets, "audit.enabled=true"])
    names = [(obj["kind"], obj["metadata"]["name"]) for obj in objects]
    assert all(len(name) <= 63 and not name.endswith("-") for _, name in names), names
    assert len(set(names)) == len(names), names
    secrets = [c["spec"]["secretName"] for c in by_kind(objects, "Certificate")]
    assert all(len(s) <= 63 for s in secrets) and len(set(secrets)) == len(secrets), secrets
    for obj in objects:
        assert all(len(v) <= 63 for v in obj["metadata"].get("labels", {}).values())
