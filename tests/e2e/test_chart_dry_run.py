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
from tests.chart.support import EXAMPLE_REPO, RENDERS, example_values, pinned_binary, render

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
    stored = dry_run(control_plane, namespace, objects)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in stored) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in objects
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
    ("values", "kind"),
    [
        ("default-values", "Deployment"),
        ("ha-values", "Deployment"),
        ("audit-values", "CronJob"),
        ("audit-defaults", "CronJob"),
    ],
)
def test_pods_meet_the_restricted_pod_security_standard(
    control_plane: ControlPlane, namespace: str, helm: Path, values: str, kind: str
) -> None:
    """PodSecurity admission enforces on Pods (only warns on workloads): dry-run the pod."""
    control_plane.kubectl(
        "admin", "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    files, sets = RENDERS[values]
    objects = render(helm, *files, sets=list(sets), namespace=namespace)
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
