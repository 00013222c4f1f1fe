"""The e2e harness itself: a real, RBAC-enforcing kube-apiserver serving our CRDs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.paths import UPSTREAM_AGENTS

from .controlplane import CONTROLLER, ControlPlane

pytestmark = pytest.mark.e2e

SAMPLE_NAME = "codex-run-sample"


def _sample() -> str:
    return str(UPSTREAM_AGENTS / "examples" / "agentrun-sample.yaml")


def _json(result: Any) -> Any:
    return json.loads(result.stdout)


def test_api_server_is_ready_and_versioned(control_plane: ControlPlane) -> None:
    assert control_plane.kubectl("admin", "get", "--raw", "/readyz").stdout == "ok"
    versions = _json(control_plane.kubectl("admin", "version", "-o", "json"))
    server, client = versions["serverVersion"], versions["clientVersion"]
    assert server["gitVersion"].startswith("v1.")  # the build's ldflags, not v0.0.0-master
    assert server["gitVersion"] == client["gitVersion"]
    assert (server["major"], server["minor"]) == (client["major"], client["minor"])


def test_all_crds_are_established(control_plane: ControlPlane) -> None:
    crds = _json(control_plane.kubectl("admin", "get", "crd", "-o", "json"))["items"]
    established = {
        crd["metadata"]["name"]
        for crd in crds
        if any(
            c["type"] == "Established" and c["status"] == "True"
            for c in crd["status"]["conditions"]
        )
    }
    assert {
        "agentruns.agents.proompteng.ai",
        "agents.agents.proompteng.ai",
        "approvalpolicies.approvals.proompteng.ai",
        "applications.argoproj.io",
        "applicationsets.argoproj.io",
        "certificates.cert-manager.io",
        "servicemonitors.monitoring.coreos.com",
        "policyreports.wgpolicyk8s.io",
    } <= established
    resources = control_plane.kubectl(
        "requester", "api-resources", "--api-group=agents.proompteng.ai", "-o", "name"
    )
    assert "agentruns.agents.proompteng.ai" in resources.stdout.split()


def test_requester_applies_the_sample_agentrun(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl("requester", "apply", "-n", namespace, "-f", _sample())
    run = _json(
        control_plane.kubectl(
            "requester", "get", "agentrun", SAMPLE_NAME, "-n", namespace, "-o", "json"
        )
    )
    assert run["metadata"]["namespace"] == namespace
    assert run["spec"]["agentRef"] == {"name": "codex-agent"}
    assert run["spec"]["runtime"]["config"]["ttlSecondsAfterFinished"] == 600


def test_server_side_dry_run_validates_without_storing(
    control_plane: ControlPlane, namespace: str
) -> None:
    dry = control_plane.kubectl(
        "requester", "apply", "--dry-run=server", "-n", namespace, "-f", _sample(), "-o", "json"
    )
    assert _json(dry)["metadata"]["name"] == SAMPLE_NAME
    absent = control_plane.kubectl(
        "requester", "get", "agentrun", SAMPLE_NAME, "-n", namespace, check=False
    )
    assert absent.returncode != 0
    assert "NotFound" in absent.stderr

    invalid = {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "AgentRun",
        "metadata": {"name": "invalid"},
        "spec": {"agentRef": {}},  # the CRD schema requires agentRef.name
    }
    rejected = control_plane.kubectl(
        "requester",
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(invalid),
        check=False,
    )
    assert rejected.returncode != 0
    assert "spec.agentRef.name: Required value" in rejected.stderr


def test_rbac_is_enforced(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl(
        "admin", "create", "configmap", "guarded", "-n", namespace, "--from-literal=k=v"
    )
    denied = control_plane.kubectl(
        "mallory", "delete", "configmap", "guarded", "-n", namespace, check=False
    )
    assert denied.returncode != 0
    assert 'User "mallory" cannot delete resource "configmaps"' in denied.stderr
    control_plane.kubectl("admin", "get", "configmap", "guarded", "-n", namespace)  # still there

    def can_i(user: str, *args: str) -> str:
        result = control_plane.kubectl(user, "auth", "can-i", *args, "-n", namespace, check=False)
        return result.stdout.strip()

    assert can_i("mallory", "create", "agentruns.agents.proompteng.ai") == "yes"
    assert can_i("mallory", "delete", "namespaces") == "no"
    assert (
        can_i("requester", "update", "agentruns.agents.proompteng.ai", "--subresource=status")
        == "no"
    )
    assert (
        can_i(CONTROLLER, "update", "agentruns.agents.proompteng.ai", "--subresource=status")
        == "yes"
    )


def test_only_the_controller_writes_agentrun_status(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("requester", "apply", "-n", namespace, "-f", _sample())
    patch = (
        "patch",
        "agentrun",
        SAMPLE_NAME,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
    )
    status = json.dumps({"status": {"phase": "Succeeded"}})
    forged = control_plane.kubectl("requester", *patch, "-p", status, check=False)
    assert forged.returncode != 0
    assert "(Forbidden)" in forged.stderr
    assert 'User "requester" cannot' in forged.stderr  # denied at kubectl's GET before its PATCH
    assert 'resource "agentruns/status"' in forged.stderr
    control_plane.kubectl(CONTROLLER, *patch, "-p", json.dumps({"status": {"phase": "Running"}}))
    run = _json(
        control_plane.kubectl(
            "requester", "get", "agentrun", SAMPLE_NAME, "-n", namespace, "-o", "json"
        )
    )
    assert run["status"]["phase"] == "Running"


def test_metrics_are_served_to_admin(control_plane: ControlPlane) -> None:
    assert "apiserver_request_total" in control_plane.metrics()
