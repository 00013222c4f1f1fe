"""The ValidatingWebhookConfiguration and its TLS, as rendered by the real helm."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.support import CHART, NAMESPACE, by_kind, one, render

pytestmark = pytest.mark.helm

EXISTING = CHART / "ci" / "existing-secret-values.yaml"
HA = CHART / "ci" / "ha-values.yaml"


def webhook(objects: list[dict[str, Any]]) -> dict[str, Any]:
    hook: dict[str, Any]
    (hook,) = one(objects, "ValidatingWebhookConfiguration")["webhooks"]
    return hook


def test_fails_closed_on_agentruns_only(helm: Path) -> None:
    hook = webhook(render(helm))
    assert hook["failurePolicy"] == "Fail"
    assert hook["sideEffects"] == "None"
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert 1 <= hook["timeoutSeconds"] <= 5
    assert hook["rules"] == [
        {
            "apiGroups": ["agents.proompteng.ai"],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["agentruns"],  # not agentruns/status: controllers keep working
            "scope": "Namespaced",
        }
    ]
    assert "objectSelector" not in hook


def test_calls_the_service_it_renders(helm: Path) -> None:
    objects = render(helm)
    service = one(objects, "Service")
    client = webhook(objects)["clientConfig"]["service"]
    https = next(p for p in service["spec"]["ports"] if p["name"] == "https")
    assert client == {
        "name": service["metadata"]["name"],
        "namespace": NAMESPACE,
        "path": "/validate",
        "port": https["port"],
    }
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert https["targetPort"] in [p["name"] for p in container["ports"]]


@pytest.mark.parametrize("namespace", ["approvalgate-system", "gate"])
def test_never_sees_kube_system_nor_its_own_namespace(helm: Path, namespace: str) -> None:
    selector = webhook(render(helm, namespace=namespace))["namespaceSelector"]
    assert selector == {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["kube-system", namespace],
            }
        ]
    }


def test_excluded_namespaces_are_configurable_and_keep_its_own(helm: Path) -> None:
    selector = webhook(
        render(helm, sets=["webhook.excludeNamespaces={kube-system,approvalgate-system,infra}"])
    )["namespaceSelector"]
    assert selector["matchExpressions"][0]["values"] == [
        "kube-system",
        "approvalgate-system",
        "infra",
    ]
    emptied = webhook(render(helm, sets=["webhook.excludeNamespaces=null"]))
    assert emptied["namespaceSelector"]["matchExpressions"][0]["values"] == [NAMESPACE]


def test_opt_in_mode_needs_the_label_and_keeps_the_exclusions(helm: Path) -> None:
    selector = webhook(render(helm, sets=["webhook.optInNamespaces=true"]))["namespaceSelector"]
    assert selector["matchLabels"] == {"approvals.proompteng.ai/enforce": "true"}
    assert selector["matchExpressions"][0]["values"] == ["kube-system", NAMESPACE]


def test_default_render_has_no_ca_bundle_and_no_generated_certificates(helm: Path) -> None:
    objects = render(helm)
    vwc = one(objects, "ValidatingWebhookConfiguration")
    assert "caBundle" not in webhook(objects)["clientConfig"]
    assert "caBundle" not in yaml.safe_dump(objects)
    assert by_kind(objects, "Secret") == []  # cert-manager makes them, in the cluster
    serving = next(c for c in by_kind(objects, "Certificate") if not c["spec"].get("isCA"))
    assert vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{NAMESPACE}/{serving['metadata']['name']}"
    )


def test_cert_manager_chain(helm: Path) -> None:
    objects = render(helm)
    issuers = {i["metadata"]["name"]: i["spec"] for i in by_kind(objects, "Issuer")}
    certificates = {c["metadata"]["name"]: c["spec"] for c in by_kind(objects, "Certificate")}
    ca = certificates["approvalgate-ca"]
    serving = certificates["approvalgate-tls"]
    assert issuers["approvalgate-selfsigned"] == {"selfSigned": {}}
    assert ca["isCA"] is True and ca["issuerRef"]["name"] == "approvalgate-selfsigned"
    assert issuers["approvalgate-ca"] == {"ca": {"secretName": ca["secretName"]}}
    assert serving["issuerRef"] == {
        "group": "cert-manager.io",
        "kind": "Issuer",
        "name": "approvalgate-ca",
    }
    assert "isCA" not in serving
    assert serving["dnsNames"][0] == f"approvalgate.{NAMESPACE}.svc"  # what the API server dials
    assert serving["privateKey"]["rotationPolicy"] == "Always"
    volumes = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    tls = next(v for v in volumes if v["name"] == "tls")
    assert tls["secret"]["secretName"] == serving["secretName"]


def test_an_issuer_of_your_own_replaces_the_chain(helm: Path) -> None:
    objects = render(
        helm,
        sets=[
            "tls.certManager.issuerRef.name=corp-ca",
            "tls.certManager.issuerRef.kind=ClusterIssuer",
        ],
    )
    assert by_kind(objects, "Issuer") == []
    (serving,) = by_kind(objects, "Certificate")
    assert serving["spec"]["issuerRef"] == {
        "group": "cert-manager.io",
        "kind": "ClusterIssuer",
        "name": "corp-ca",
    }


def test_existing_secret_mode(helm: Path) -> None:
    objects = render(helm, EXISTING)
    values = yaml.safe_load(EXISTING.read_text(encoding="utf-8"))["tls"]["existingSecret"]
    for kind in ("Issuer", "Certificate", "Secret"):
        assert by_kind(objects, kind) == []
    vwc = one(objects, "ValidatingWebhookConfiguration")
    assert "cert-manager.io/inject-ca-from" not in vwc["metadata"].get("annotations", {})
    ca_bundle = webhook(objects)["clientConfig"]["caBundle"]
    assert ca_bundle == values["caBundle"]
    assert base64.b64decode(ca_bundle).startswith(b"-----BEGIN CERTIFICATE-----")
    volumes = one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "tls",
        "secret": {"secretName": values["name"], "defaultMode": 0o440},
    } in volumes


def test_timeout_is_configurable_and_bounded_by_the_schema(helm: Path) -> None:
    assert webhook(render(helm, HA))["timeoutSeconds"] == 3
