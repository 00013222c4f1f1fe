"""The chart's renders and argocd/ against a real kube-apiserver: server-side dry-run with
strict field validation (unknown or duplicate fields are errors), with the cert-manager,
Prometheus operator and Argo CD CRDs installed. Nothing is stored.

Also: the compact schemas tests/chart/schemas/ were derived from this very API server's
OpenAPI v3 (regenerate with `UPDATE_SCHEMAS=1`, or `python -m tests.chart.schemas.generate`).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.argocd_apps import MANIFESTS, generated_applications
from tests.chart.schemas import generate
from tests.chart.support import (
    EXAMPLE_REPO,
    RENDERS,
    component,
    example_values,
    namespace_values,
    pinned_binary,
    render,
)

from .controlplane import ControlPlane, KubectlError

pytestmark = [pytest.mark.e2e, pytest.mark.helm]


@pytest.fixture(scope="module")
def helm() -> Path:
    return pinned_binary("helm", "helm")


def dry_run(plane: ControlPlane, namespace: str, objects: list[dict[str, Any]]) -> list[Any]:
    """What the API server would store, as it answers a strict server-side dry-run.

    A stream of documents, not a `List`: kubectl validates a List client-side (OpenAPI v2),
    but sends each document of a stream with fieldValidation=Strict for the server to check.
    """
    result = plane.kubectl(
        "admin",
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        namespace,
        "-o",
        "json",
        "-f",
        "-",
        input="\n---\n".join(json.dumps(obj) for obj in objects),
    )
    answer = json.loads(result.stdout)
    items: list[Any] = answer["items"] if answer.get("kind") == "List" else [answer]
    return items


@pytest.mark.parametrize("case", RENDERS, ids=RENDERS.keys())
def test_every_render_passes_a_strict_server_side_dry_run(
    control_plane: ControlPlane, namespace: str, helm: Path, case: str
) -> None:
    values, sets = RENDERS[case]
    objects = render(helm, *values, sets=list(sets), namespace=namespace)
    # kubectl -n refuses objects of another namespace (controller.namespaces' RoleBindings)
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        by_namespace.setdefault(obj["metadata"].get("namespace", namespace), []).append(obj)
    stored = []
    for other, objs in by_namespace.items():
        stored += dry_run(control_plane, other, objs)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in stored) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in objects
    )


@pytest.mark.parametrize(
    ("selection", "sets"),
    [
        ("all", ()),
        ("optInLabel", ("guard.deployers.users={helm}", "guard.deployers.groups={platform-ops}")),
    ],
    ids=["all-no-deployers", "opt-in-deployers"],
)
def test_the_guards_cel_compiles_on_the_api_server(
    control_plane: ControlPlane,
    namespace: str,
    helm: Path,
    tmp_path: Path,
    selection: str,
    sets: tuple[str, ...],
) -> None:
    """Every CEL expression of the guard in each shape (namespaces excluded by name, the
    opt-in policy, the deployers' exemption and their DELETE rule) is type-checked by the
    API server when the policy is created: a strict dry-run fails on any that does not."""
    values = namespace_values(tmp_path, ("legacy", "kube-system"), selection)
    objects = [
        o
        for o in render(helm, values, sets=list(sets), namespace=namespace)
        if o["kind"].startswith("ValidatingAdmissionPolicy")
    ]
    assert len(objects) == (6 if selection == "optInLabel" else 2)  # with deployers: 3 pairs
    stored = dry_run(control_plane, namespace, objects)
    assert sorted(o["metadata"]["name"] for o in stored) == sorted(
        o["metadata"]["name"] for o in objects
    )


def test_the_stored_bundle_is_byte_for_byte_the_compiled_one(
    control_plane: ControlPlane, namespace: str, helm: Path
) -> None:
    objects = render(helm, example_values("prod"), namespace=namespace)
    (config,) = [o for o in dry_run(control_plane, namespace, objects) if o["kind"] == "ConfigMap"]
    bundle = (EXAMPLE_REPO / "rendered" / "prod" / "bundle.json").read_bytes()
    assert config["data"]["bundle.json"].encode() == bundle


def pod_template(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod template of a Deployment or a CronJob."""
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    template: dict[str, Any] = spec["template"]
    return template


@pytest.mark.parametrize(
    ("values", "kind", "part"),
    [
        ("default-values", "Deployment", "webhook"),
        ("ha-values", "Deployment", "webhook"),
        ("default-values", "Deployment", "controller"),
        ("controller-options", "Deployment", "controller"),
        ("audit-values", "CronJob", "audit"),
        ("audit-defaults", "CronJob", "audit"),
    ],
)
def test_pods_meet_the_restricted_pod_security_standard(
    control_plane: ControlPlane, namespace: str, helm: Path, values: str, kind: str, part: str
) -> None:
    """PodSecurity admission enforces on Pods (only warns on workloads): dry-run the pod."""
    control_plane.kubectl(
        "admin", "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    files, sets = RENDERS[values]
    objects = component(render(helm, *files, sets=list(sets), namespace=namespace), part)
    template = pod_template(next(o for o in objects if o["kind"] == kind))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": "approvalgate-pss-check"},
        "spec": template["spec"],
    }
    pod["spec"].pop("priorityClassName", None)  # the Priority plugin is not under test here
    result = control_plane.kubectl(
        "admin",
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(pod),
    )
    assert "Warning" not in result.stderr, result.stderr
    insecure = copy.deepcopy(pod)
    insecure["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    refused = control_plane.kubectl(
        "admin",
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(insecure),
        check=False,
    )
    assert refused.returncode != 0 and 'violates PodSecurity "restricted' in refused.stderr


TYPOS: dict[str, tuple[str, list[str | int], str]] = {
    "core kind": ("Deployment", ["spec", "template", "spec", "containers", 0], "readinessprobe"),
    "cert-manager CRD": ("Certificate", ["spec"], "dnsName"),
    "admission config": ("ValidatingWebhookConfiguration", ["webhooks", 0], "timeout"),
    "audit CronJob": ("CronJob", ["spec", "jobTemplate", "spec"], "backofflimit"),
    "audit ClusterRole": ("ClusterRole", ["rules", 0], "verb"),
    "controller RoleBinding": ("RoleBinding", ["roleRef"], "namespace"),
    "queue CRD": ("CustomResourceDefinition", ["spec", "versions", 0], "servd"),
}


@pytest.mark.parametrize(("kind", "where", "field"), TYPOS.values(), ids=TYPOS.keys())
def test_strict_validation_rejects_an_unknown_field(
    control_plane: ControlPlane,
    namespace: str,
    helm: Path,
    kind: str,
    where: list[str | int],
    field: str,
) -> None:
    objects = render(helm, sets=["audit.enabled=true"], namespace=namespace)
    obj = copy.deepcopy(next(o for o in objects if o["kind"] == kind))
    node: Any = obj
    for step in where:
        node = node[step]
    node[field] = 5
    with pytest.raises(KubectlError) as caught:
        dry_run(control_plane, namespace, [obj])
    path = ".".join(f"{s}" if isinstance(s, str) else f"[{s}]" for s in [*where, field])
    assert f'unknown field "{path.replace(".[", "[")}"' in str(caught.value)


def test_argocd_manifests_and_generated_applications_pass(
    control_plane: ControlPlane, namespace: str
) -> None:
    objects = [*MANIFESTS.values(), *generated_applications().values()]
    moved = copy.deepcopy(objects)
    for obj in moved:  # they live in `argocd`; the dry-run goes to this test's namespace
        obj["metadata"]["namespace"] = namespace
    stored = dry_run(control_plane, namespace, moved)
    assert len(stored) == len(objects) == len(MANIFESTS) + 3


def test_committed_core_schemas_match_the_api_server(control_plane: ControlPlane) -> None:
    def fetch(path: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(
            control_plane.kubectl("admin", "get", "--raw", path).stdout
        )
        return document

    served = generate.render_all(fetch)
    if os.environ.get("UPDATE_SCHEMAS") == "1":
        generate.write(sorted(served.items()))
    committed = generate.committed()
    assert sorted(served) == sorted(committed)
    stale = [name for name in served if served[name] != committed[name]]
    assert stale == [], "run: UPDATE_SCHEMAS=1 pytest tests/e2e/test_chart_dry_run.py"
    assert yaml.safe_load(json.dumps(generate.KINDS))  # the list the chart tests rely on


# --- the approval queue's CRDs, installed: their CEL rules on the real API server ----------

GATES = "gates.proompteng.ai/v1alpha1"
DIGEST = "0" * 64


@pytest.fixture(scope="module")
def queue_crds(
    control_plane: ControlPlane, helm: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[str]:
    """The chart's three CRDs, as it renders them, installed and Established."""
    crds = [o for o in render(helm) if o["kind"] == "CustomResourceDefinition"]
    path = tmp_path_factory.mktemp("crds") / "crds.yaml"
    path.write_text(yaml.safe_dump_all(crds), encoding="utf-8")
    return control_plane.apply_crds([path])


def create(plane: ControlPlane, obj: dict[str, Any]) -> Any:
    return plane.kubectl(
        "admin", "create", "-o", "json", "-f", "-", input=json.dumps(obj), check=False
    )


def patch(plane: ControlPlane, namespace: str, what: str, body: dict[str, Any], *extra: str) -> Any:
    return plane.kubectl(
        "admin",
        "patch",
        what,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps(body),
        *extra,
        check=False,
    )


def request(namespace: str, name: str, run_name: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": GATES,
        "kind": "ApprovalRequest",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "requester": "alice",
            "environment": "prod",
            "reason": "nightly evaluation",
            "specDigest": DIGEST,
            "run": {
                "apiVersion": "agents.proompteng.ai/v1alpha1",
                "kind": "AgentRun",
                "metadata": {"name": run_name or name, "labels": {"team": "ml"}},
                "spec": {"agentRef": {"name": "codex"}, "parameters": {"depth": 3}},
            },
        },
    }


def decision(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": GATES,
        "kind": "ApprovalDecision",
        "metadata": {"generateName": "train-", "namespace": namespace},
        "spec": {
            "requestName": "train",
            "decision": "approve",
            "approver": "bob",
            "record": {
                "payload": "eyJfdHlwZSI6ICJ4In0=",
                "payloadType": "application/vnd.in-toto+json",
                "signatures": [{"keyid": "bob-2026", "sig": "c2lnbmF0dXJl"}],
            },
        },
    }


def use(namespace: str, name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": GATES,
        "kind": "ApprovalUse",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "run": {"name": "train", "uid": uid},
            "environment": "prod",
            "specDigest": DIGEST,
            "statements": ["1" * 64],
            "expiresAt": "2026-12-31T00:00:00Z",
        },
    }


def test_the_crds_install_with_their_cel_rules(queue_crds: list[str]) -> None:
    assert sorted(name.rpartition("/")[2] for name in queue_crds) == [
        "approvaldecisions.gates.proompteng.ai",
        "approvalrequests.gates.proompteng.ai",
        "approvaluses.gates.proompteng.ai",
    ]


def test_an_approval_decision_is_append_only(
    control_plane: ControlPlane, namespace: str, queue_crds: list[str]
) -> None:
    done = create(control_plane, decision(namespace))
    assert done.returncode == 0, done.stderr
    name = f"approvaldecision/{json.loads(done.stdout)['metadata']['name']}"
    for body in (
        {"spec": {"decision": "reject"}},
        {"spec": {"approver": "mallory"}},
        {"spec": {"record": {"signatures": [{"sig": "b3RoZXI="}]}}},
    ):
        refused = patch(control_plane, namespace, name, body)
        assert refused.returncode != 0
        assert "an ApprovalDecision is append-only" in refused.stderr, refused.stderr
    # metadata stays writable (labels, finalizers of other tools)
    assert (
        patch(control_plane, namespace, name, {"metadata": {"labels": {"a": "b"}}}).returncode == 0
    )
    got = control_plane.kubectl("admin", "get", name, "-n", namespace, "-o", "json")
    assert json.loads(got.stdout)["spec"] == decision(namespace)["spec"]


def test_an_approval_request_spec_is_immutable_except_cancel(
    control_plane: ControlPlane, namespace: str, queue_crds: list[str]
) -> None:
    done = create(control_plane, request(namespace, "train"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["spec"]["cancelled"] is False  # defaulted
    name = "approvalrequest/train"
    for body in (
        {"spec": {"requester": "mallory"}},
        {"spec": {"reason": "something else"}},
        {"spec": {"reason": None}},
        {"spec": {"specDigest": "f" * 64}},
        {"spec": {"run": {"spec": {"parameters": {"depth": 4}}}}},
        {"spec": {"run": {"metadata": {"labels": {"team": "other"}}}}},
    ):
        refused = patch(control_plane, namespace, name, body)
        assert refused.returncode != 0, body
        assert "the spec of an ApprovalRequest is immutable except cancelled" in refused.stderr
    assert patch(control_plane, namespace, name, {"spec": {"cancelled": True}}).returncode == 0
    back = patch(control_plane, namespace, name, {"spec": {"cancelled": False}})
    assert back.returncode != 0 and "a cancelled ApprovalRequest stays cancelled" in back.stderr


def test_an_approval_request_is_named_after_its_run(
    control_plane: ControlPlane, namespace: str, queue_crds: list[str]
) -> None:
    refused = create(control_plane, request(namespace, "train", run_name="other"))
    assert refused.returncode != 0
    assert "an ApprovalRequest is named after its run" in refused.stderr
    assert "spec.run.metadata.name" in refused.stderr


def test_the_status_is_written_through_its_subresource_only(
    control_plane: ControlPlane, namespace: str, queue_crds: list[str]
) -> None:
    assert create(control_plane, request(namespace, "train")).returncode == 0
    name = "approvalrequest/train"
    status = {"status": {"phase": "Submitted", "required": 2, "approvedBy": ["bob", "carol"]}}
    assert patch(control_plane, namespace, name, status).returncode == 0  # ignored
    got = control_plane.kubectl("admin", "get", name, "-n", namespace, "-o", "json")
    assert "status" not in json.loads(got.stdout)
    done = patch(control_plane, namespace, name, status, "--subresource=status")
    assert done.returncode == 0, done.stderr
    bad = patch(
        control_plane, namespace, name, {"status": {"phase": "Done"}}, "--subresource=status"
    )
    assert bad.returncode != 0 and "Unsupported value" in bad.stderr
    table = control_plane.kubectl("admin", "get", "areq", "-n", namespace).stdout
    assert table.split("\n")[0].split() == [
        "NAME",
        "PHASE",
        "REQUESTER",
        "ENVIRONMENT",
        "REQUIRED",
        "APPROVED-BY",
        "AGE",
    ]
    assert table.split("\n")[1].split()[:5] == ["train", "Submitted", "alice", "prod", "2"]


def test_a_run_argo_cd_would_prune_cannot_be_requested(
    control_plane: ControlPlane, namespace: str, queue_crds: list[str]
) -> None:
    tracked = request(namespace, "train")
    tracked["spec"]["run"]["metadata"]["annotations"] = {
        "argocd.argoproj.io/tracking-id": "policies-prod:agents.proompteng.ai/AgentRun:ns/train"
    }
    refused = create(control_plane, tracked)
    assert refused.returncode != 0 and "Argo CD tracking annotation" in refused.stderr


def test_an_approval_use_is_named_after_its_run_and_immutable(
    control_plane: ControlPlane, namespace: str, queue_crds: list[str]
) -> None:
    uid = "6f1c2d3e-0000-4000-8000-000000000001"
    refused = create(control_plane, use(namespace, "not-the-uid", uid))
    assert refused.returncode != 0 and "named after the run it records" in refused.stderr
    assert create(control_plane, use(namespace, uid, uid)).returncode == 0
    edited = patch(control_plane, namespace, f"approvaluse/{uid}", {"spec": {"statements": []}})
    assert edited.returncode != 0
    changed = patch(
        control_plane, namespace, f"approvaluse/{uid}", {"spec": {"environment": "dev"}}
    )
    assert changed.returncode != 0 and "an ApprovalUse is immutable" in changed.stderr
