"""The approval queue in the chart: its CRDs (files/crds/), the ClusterRoles for people, and
the webhook entry that judges the three kinds. tests/e2e/test_chart_dry_run.py installs the
CRDs in a real API server and shows their CEL rules refusing edits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.support import (
    CHART,
    NAMESPACE,
    by_kind,
    component,
    namespace_values,
    one,
    render,
)

pytestmark = pytest.mark.helm

CRD_FILES = sorted((CHART / "files" / "crds").glob("*.yaml"))
GROUP = "gates.proompteng.ai"
KINDS = {
    "approvalrequests": ("ApprovalRequest", ["areq"]),
    "approvaldecisions": ("ApprovalDecision", ["adec"]),
    "approvaluses": ("ApprovalUse", ["ause"]),
}


def source(path: Path) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return crd


def version(crd: dict[str, Any]) -> dict[str, Any]:
    (served,) = crd["spec"]["versions"]
    return served


def schema_nodes(node: Any, path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(node, dict):
        return []
    found = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        found += schema_nodes(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        found += schema_nodes(node.get(key), f"{path}{'[]' if key == 'items' else '{}'}")
    return found


# --- CRDs -------------------------------------------------------------------------------


def test_the_crd_files_are_the_three_kinds_named_as_kubebuilder_names_them() -> None:
    names = {path.name for path in CRD_FILES}
    assert names == {f"{GROUP}_{plural}.yaml" for plural in KINDS}
    for path in CRD_FILES:
        crd = source(path)
        plural = crd["spec"]["names"]["plural"]
        kind, short = KINDS[plural]
        assert crd["metadata"]["name"] == f"{plural}.{GROUP}"
        assert crd["spec"]["group"] == GROUP and crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["names"]["kind"] == kind
        assert crd["spec"]["names"]["shortNames"] == short
        served = version(crd)
        assert (served["name"], served["served"], served["storage"]) == ("v1alpha1", True, True)


def test_the_schemas_are_structural_and_bounded() -> None:
    """Every node typed (or explicitly open), every string bounded where CEL compares it."""
    for path in CRD_FILES:
        openapi = version(source(path))["schema"]["openAPIV3Schema"]
        untyped = [
            where
            for where, node in schema_nodes(openapi)
            if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields")
        ]
        assert untyped == [], path.name
        spec = openapi["properties"]["spec"]
        unbounded = [
            where
            for where, node in schema_nodes(spec)
            if node.get("type") == "string"
            and "maxLength" not in node
            and "enum" not in node
            and node.get("format") != "date-time"
        ]
        assert unbounded == [], path.name


def test_only_the_embedded_run_spec_keeps_unknown_fields() -> None:
    open_nodes = [
        (path.name, where)
        for path in CRD_FILES
        for where, node in schema_nodes(version(source(path))["schema"]["openAPIV3Schema"])
        if node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert open_nodes == [(f"{GROUP}_approvalrequests.yaml", "$.spec.run.spec")]


def test_status_is_a_subresource_of_requests_only() -> None:
    status = {
        source(p)["spec"]["names"]["kind"]: version(source(p)).get("subresources")
        for p in CRD_FILES
    }
    assert status == {
        "ApprovalRequest": {"status": {}},
        "ApprovalDecision": None,
        "ApprovalUse": None,
    }


def test_printer_columns() -> None:
    columns = {
        source(p)["spec"]["names"]["kind"]: [
            c["name"]
            for c in version(source(p))["additionalPrinterColumns"]
            if not c.get("priority")
        ]
        for p in CRD_FILES
    }
    assert columns == {
        "ApprovalRequest": ["Phase", "Requester", "Environment", "Required", "Approved-By", "Age"],
        "ApprovalDecision": ["Request", "Decision", "Approver", "Age"],
        "ApprovalUse": ["Run", "Environment", "Expires", "Age"],
    }


def rules(crd: dict[str, Any]) -> dict[str, list[str]]:
    return {
        where: [r["rule"] for r in node["x-kubernetes-validations"]]
        for where, node in schema_nodes(version(crd)["schema"]["openAPIV3Schema"])
        if "x-kubernetes-validations" in node
    }


def test_cel_rules_defend_what_the_webhook_checks() -> None:
    by_kind_rules = {source(p)["spec"]["names"]["kind"]: rules(source(p)) for p in CRD_FILES}
    request = by_kind_rules["ApprovalRequest"]
    assert request["$"] == ["self.metadata.name == self.spec.run.metadata.name"]
    immutable, cancel = request["$.spec"]
    for field in ("requester", "environment", "specDigest", "run", "reason"):
        assert f"self.{field} == oldSelf.{field}" in immutable
    assert "cancelled" not in immutable
    assert cancel == "!oldSelf.cancelled || self.cancelled"
    assert by_kind_rules["ApprovalDecision"] == {"$.spec": ["self == oldSelf"]}
    use = by_kind_rules["ApprovalUse"]
    assert use["$"] == ["self.metadata.name == self.spec.run.uid"]
    assert use["$.spec"] == ["self == oldSelf"]  # spec.references is as immutable
    [keys] = use["$.spec.references"]
    assert "(ImplementationSpec|Agent|AgentProvider)/" in keys
    assert set(use) == {"$", "$.spec", "$.spec.references"}


def test_the_rendered_crds_are_the_files_with_labels_and_keep(helm: Path) -> None:
    crds = by_kind(render(helm), "CustomResourceDefinition")
    assert sorted(c["metadata"]["name"] for c in crds) == sorted(f"{p}.{GROUP}" for p in KINDS)
    files = {source(p)["metadata"]["name"]: source(p) for p in CRD_FILES}
    for crd in crds:
        assert crd["spec"] == files[crd["metadata"]["name"]]["spec"]
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/component"] == "queue"
        assert "namespace" not in crd["metadata"]


def test_crds_can_be_left_to_someone_else(helm: Path) -> None:
    assert by_kind(render(helm, sets=["crds.install=false"]), "CustomResourceDefinition") == []


# --- ClusterRoles for people ------------------------------------------------------------


def roles(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in by_kind(component(objects, "queue"), "ClusterRole")}


def grants(role: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (resource, verb)
        for rule in role["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


READ = {"get", "list", "watch"}


def test_roles_for_people(helm: Path) -> None:
    found = roles(render(helm))
    assert sorted(found) == [
        "approvalgate-approver",
        "approvalgate-queue-admin",
        "approvalgate-requester",
        "approvalgate-viewer",
    ]
    assert grants(found["approvalgate-requester"]) == {
        *(("approvalrequests", v) for v in {*READ, "create", "update", "patch"}),
        *(("approvaldecisions", v) for v in READ),
    }
    # what approvers approve, read-only: runs, parents, referenced content (issue 16)
    platform = {
        (r, v)
        for r in (
            "agentruns",
            "implementationspecs",
            "agents",
            "agentproviders",
            "schedules",
            "orchestrationruns",
            "orchestrations",
            "swarms",
        )
        for v in READ
    }
    assert grants(found["approvalgate-approver"]) == {
        *(("approvalrequests", v) for v in READ),
        *(("approvaldecisions", v) for v in {*READ, "create"}),
        *platform,
    }
    every = {"create", "update", "patch", "delete", "deletecollection", *READ}
    assert grants(found["approvalgate-queue-admin"]) == {(r, v) for r in KINDS for v in every}
    assert grants(found["approvalgate-viewer"]) == {
        *((r, v) for r in KINDS for v in READ),
        *platform,
    }
    # nobody but the controller writes a request's status; only approvers create decisions;
    # nobody here writes the platform's kinds
    for name, role in found.items():
        assert not any(r.endswith("/status") for r, _ in grants(role)), name
        creates_decisions = ("approvaldecisions", "create") in grants(role)
        assert creates_decisions == (name in ("approvalgate-approver", "approvalgate-queue-admin"))
        writes = {(r, v) for r, v in grants(role) if v not in READ}
        assert all(r in KINDS for r, _ in writes), name


def aggregation(role: dict[str, Any]) -> set[str]:
    return {
        label
        for label in role["metadata"]["labels"]
        if label.startswith("rbac.authorization.k8s.io/aggregate-to-")
    }


def test_no_aggregation_to_the_built_in_roles_by_default(helm: Path) -> None:
    assert [aggregation(r) for r in roles(render(helm)).values()] == [set()] * 4


def test_edit_may_request_but_never_approve(helm: Path) -> None:
    sets = ["userRoles.aggregateToView=true", "userRoles.aggregateToEdit=true"]
    labelled = {name: aggregation(r) for name, r in roles(render(helm, sets=sets)).items()}
    assert labelled == {
        "approvalgate-requester": {"rbac.authorization.k8s.io/aggregate-to-edit"},
        "approvalgate-approver": set(),
        "approvalgate-queue-admin": set(),
        "approvalgate-viewer": {"rbac.authorization.k8s.io/aggregate-to-view"},
    }


def test_roles_for_people_are_optional(helm: Path) -> None:
    assert roles(render(helm, sets=["userRoles.create=false"])) == {}


# --- the webhook entry for the queue ----------------------------------------------------


def entries(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    hooks: list[dict[str, Any]] = one(objects, "ValidatingWebhookConfiguration")["webhooks"]
    return hooks


@pytest.mark.parametrize(
    "sets",
    [[], ["tls.mode=existingSecret"]],
    ids=["default", "existing-secret"],
)
def test_the_queue_is_judged_in_every_namespace(
    helm: Path, tmp_path: Path, sets: list[str]
) -> None:
    """Whatever the bundle excludes: a use or decision forged in an unjudged namespace would
    count everywhere. CREATE, UPDATE and DELETE (deletes only after expiry); not the status."""
    values = namespace_values(tmp_path, ["kube-system", "infra"], "optInLabel")
    extra = (
        ["tls.existingSecret.name=mine", f"tls.existingSecret.caBundle={EXAMPLE_CA}"]
        if sets
        else []
    )
    agentruns, gates = entries(render(helm, values, sets=[*sets, *extra]))
    assert agentruns["name"] == "agentruns.approvalgate.proompteng.ai"
    assert agentruns["namespaceSelector"] != {}  # the bundle's selection applies to runs
    assert gates["name"] == "gates.approvalgate.proompteng.ai"
    assert gates["namespaceSelector"] == {}
    assert gates["objectSelector"] == {}
    assert gates["rules"] == [
        {
            "apiGroups": [GROUP],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE", "DELETE"],
            "resources": list(KINDS),
            "scope": "Namespaced",
        }
    ]
    for key in (
        "clientConfig",
        "failurePolicy",
        "matchPolicy",
        "sideEffects",
        "timeoutSeconds",
        "admissionReviewVersions",
    ):
        assert gates[key] == agentruns[key], key
    assert gates["failurePolicy"] == "Fail"
    assert gates["clientConfig"]["service"]["namespace"] == NAMESPACE


EXAMPLE_CA = yaml.safe_load((CHART / "ci" / "existing-secret-values.yaml").read_text())["tls"][
    "existingSecret"
]["caBundle"]
