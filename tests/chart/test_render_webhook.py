"""The ValidatingWebhookConfiguration and its TLS, as rendered by the real helm."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.support import (
    CHART,
    NAMESPACE,
    HelmError,
    by_kind,
    example_values,
    namespace_values,
    one,
    render,
    webhook_part,
)

pytestmark = pytest.mark.helm

EXISTING = CHART / "ci" / "existing-secret-values.yaml"
HA = CHART / "ci" / "ha-values.yaml"


def entries(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    hooks = one(objects, "ValidatingWebhookConfiguration")["webhooks"]
    return {hook["name"]: hook for hook in hooks}


def webhook(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The entry judging AgentRuns."""
    return entries(objects)["agentruns.approvalgate.proompteng.ai"]


def gates_webhook(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The entry judging the approval queue (gates.proompteng.ai)."""
    return entries(objects)["gates.approvalgate.proompteng.ai"]


def test_fails_closed_on_every_path_to_an_agentrun(helm: Path) -> None:
    """AgentRuns, the parents that make them (CREATE, UPDATE) and the content they reference
    (also DELETE), in one entry: one namespaceSelector for all, so they cannot disagree."""
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
            # not agentruns/status: controllers keep working; scale, should the CRD gain it
            "resources": ["agentruns", "agentruns/scale"],
            "scope": "Namespaced",
        },
        *(
            {
                "apiGroups": [group],
                "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"],
                "resources": [resource, f"{resource}/scale"],  # a parent's DELETE makes no run
                "scope": "Namespaced",
            }
            for group, resource in (
                ("schedules.proompteng.ai", "schedules"),
                ("orchestration.proompteng.ai", "orchestrationruns"),
                ("swarm.proompteng.ai", "swarms"),
            )
        ),
        {
            "apiGroups": ["agents.proompteng.ai"],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE", "DELETE"],  # not deleted while an approval binds
            "resources": [
                "implementationspecs",
                "agents",
                "agentproviders",
                "implementationspecs/scale",
                "agents/scale",
                "agentproviders/scale",
            ],
            "scope": "Namespaced",
        },
    ]
    assert hook["objectSelector"] == {}  # every object; rendered so that a sync owns it


def test_calls_the_service_it_renders(helm: Path) -> None:
    objects = render(helm)
    service = one(webhook_part(objects), "Service")
    client = webhook(objects)["clientConfig"]["service"]
    https = next(p for p in service["spec"]["ports"] if p["name"] == "https")
    assert client == {
        "name": service["metadata"]["name"],
        "namespace": NAMESPACE,
        "path": "/validate",
        "port": https["port"],
    }
    container = one(webhook_part(objects), "Deployment")["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert https["targetPort"] in [p["name"] for p in container["ports"]]


@pytest.mark.parametrize("namespace", ["approvalgate-system", "gate"])
def test_every_namespace_is_sent_by_default_its_own_and_kube_system_included(
    helm: Path, namespace: str
) -> None:
    """Class 22: no namespace is excluded silently; namespaces created later match {} too."""
    assert webhook(render(helm, namespace=namespace))["namespaceSelector"] == {}
    compiled = example_values("prod")
    assert webhook(render(helm, compiled, namespace=namespace))["namespaceSelector"] == {}


UNSIGNED = ["bundleSigning.publicKeys=null", "bundleSigning.allowUnsigned=true"]


def test_exclusions_come_from_the_bundle_by_name_when_unsigned(helm: Path, tmp_path: Path) -> None:
    values = namespace_values(tmp_path, ["kube-system", "infra"])
    assert webhook(render(helm, values, sets=UNSIGNED))["namespaceSelector"] == {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["infra", "kube-system"],  # the release namespace is not added
            }
        ]
    }


def test_with_pinned_keys_an_edited_values_file_excludes_no_namespace(
    helm: Path, tmp_path: Path
) -> None:
    """Class 22 through the chart: whoever edits the compiled values (not the pinned keys)
    adds a namespace to the content's excludeNamespaces. The pods refuse that unsigned
    content and keep the signed bundle, which enforces the namespace; a selector built from
    the content would stop sending it, and its AgentRuns would be admitted without a
    decision. With keys, every namespace is sent (the webhook passes the signed bundle's
    exclusions itself)."""
    edited = namespace_values(tmp_path, ["team-a"])  # content edited; its signature no longer holds
    assert webhook(render(helm, edited))["namespaceSelector"] == {}


def test_with_pinned_keys_the_opt_in_label_comes_from_the_pin_only(
    helm: Path, tmp_path: Path
) -> None:
    """An edited content switching to optInLabel would stop sending every unlabelled
    namespace: the render fails unless the pinned bundleSigning.namespaceSelection agrees."""
    values = namespace_values(tmp_path, ["kube-system"], "optInLabel")
    with pytest.raises(HelmError, match=r"bundleSigning\.namespaceSelection is all"):
        render(helm, values, sets=["bundleSigning.namespaceSelection=all"])
    selector = webhook(render(helm, values))["namespaceSelector"]  # pinned optInLabel
    assert selector == {"matchLabels": {"approvals.proompteng.ai/enforce": "true"}}
    with pytest.raises(HelmError, match="namespaceSelection is all but bundleSigning"):
        render(
            helm, namespace_values(tmp_path), sets=["bundleSigning.namespaceSelection=optInLabel"]
        )


def test_opt_in_mode_comes_from_the_bundle_and_keeps_the_exclusions_when_unsigned(
    helm: Path, tmp_path: Path
) -> None:
    values = namespace_values(tmp_path, ["kube-system"], "optInLabel")
    selector = webhook(render(helm, values, sets=UNSIGNED))["namespaceSelector"]
    assert selector["matchLabels"] == {"approvals.proompteng.ai/enforce": "true"}
    assert selector["matchExpressions"][0]["values"] == ["kube-system"]
    only_label = webhook(render(helm, namespace_values(tmp_path, [], "optInLabel"), sets=UNSIGNED))
    assert only_label["namespaceSelector"] == {
        "matchLabels": {"approvals.proompteng.ai/enforce": "true"}
    }


@pytest.mark.parametrize(
    "old", ["webhook.excludeNamespaces={kube-system}", "webhook.optInNamespaces=true"]
)
def test_the_old_chart_switches_are_refused(helm: Path, old: str) -> None:
    """They could make the webhook skip namespaces the bundle enforces: now the bundle decides."""
    with pytest.raises(HelmError, match=r"additional properties .* not allowed"):
        render(helm, sets=[old])


def test_a_bundle_that_does_not_parse_sends_every_namespace(helm: Path) -> None:
    selector = webhook(render(helm, sets=["policyBundle.content=not json"]))["namespaceSelector"]
    assert selector == {}  # the webhook then denies every AgentRun: fail closed


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
    volumes = one(webhook_part(objects), "Deployment")["spec"]["template"]["spec"]["volumes"]
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
    volumes = one(webhook_part(objects), "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "tls",
        "secret": {"secretName": values["name"], "defaultMode": 0o440},
    } in volumes


def test_timeout_is_configurable_and_bounded_by_the_schema(helm: Path) -> None:
    assert webhook(render(helm, HA))["timeoutSeconds"] == 3


@pytest.mark.parametrize(
    "values",
    [(), (EXISTING,), (example_values("prod"),)],
    ids=["default", "existing-secret", "prod-example"],
)
def test_every_entry_renders_what_a_sync_must_own(helm: Path, values: tuple[Path, ...]) -> None:
    """Argo CD (ServerSideApply=true) and `helm upgrade --server-side` put back only the
    fields they apply: a field the chart leaves out is the field manager's who adds it, and
    every later sync leaves it. So each entry renders every field that narrows what reaches
    the webhook: both selectors even when empty (a LabelSelector is atomic, so the sync
    replaces an added one whole; tests/e2e/test_audit.py shows it on the API server), and
    no matchConditions, which is a list kept by name that no sync can empty (the audit finds
    an added one)."""
    for name, hook in entries(render(helm, *values)).items():
        assert "namespaceSelector" in hook and hook["objectSelector"] == {}, name
        assert "matchConditions" not in hook, name
        for key in ("failurePolicy", "matchPolicy", "sideEffects", "timeoutSeconds", "rules"):
            assert key in hook, (name, key)
