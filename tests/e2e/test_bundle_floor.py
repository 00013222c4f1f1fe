"""A bundle rollback through the compiled values, on the real API server (docs/design.md,
"The revision floor").

The attacker edits the compiled values (git, synced by Argo CD) and signs nothing: she puts
back an older signed bundle with its signatures and its old revision. The chart's pinned
minimum (``bundleSigning.minRevision``) defaults to ``policyBundle.revision``, which she
also sets, so the pods roll onto a floor the old bundle meets. The older policy here did not
enforce the runs' namespace: with it in force an unapproved AgentRun is admitted.

The webhook and the controller run as the chart runs them (their arguments and RBAC from
``helm template``: ``--bundle-floor``, the webhook's Role that may only get the floor
ConfigMap, the controller's that may create it and raise it by name). The controller
records the newer revision it enforced; after the roll the webhook refuses the older bundle
(not ready, ``below-floor``, every run denied with the reason) and so does the controller.
Without the floor (the code before it) the same roll enforces the older bundle: the control
step shows the attack is real. An operator's deliberate rollback (the documented kubectl
command) lifts it without a restart. The audit reports whoever else may lower the floor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from approvalgate.approvals.bundle_floor import lower_command
from approvalgate.approvals.bundle_trust import SIGNATURES_FILE
from approvalgate.cli import main
from tests.e2e.controlplane import GATE_NAMESPACE, QUEUE_CONTROLLER, WEBHOOK_SA, ControlPlane
from tests.e2e.gate import ENFORCED, ENV, Gate, _http_get, eventually, run_manifest
from tests.support import bundle_signing

pytestmark = pytest.mark.e2e

FLOOR_NAME = "approvalgate-bundle-floor"
FLOOR = f"{GATE_NAMESPACE}/{FLOOR_NAME}"
WHERE = f"ConfigMap/{FLOOR}"
OLD, NEW = 5, 6


def older_policy(compiled: str) -> str:
    """The older bundle: its policy did not enforce the runs' namespace."""
    obj: dict[str, Any] = json.loads(compiled)
    obj["excludeNamespaces"] = [ENFORCED]
    return bundle_signing.with_revision(json.dumps(obj), OLD)


def serve(gate: Gate, text: str) -> None:
    """The bundle and its own signatures, as the compiled values hold them."""
    signatures = bundle_signing.signatures_text(text.encode())
    bundle_signing.write_atomic(gate.bundle.parent / SIGNATURES_FILE, signatures)
    bundle_signing.write_atomic(gate.bundle, text)


def trust(min_revision: int, floor: bool = True) -> tuple[str, ...]:
    """The chart's trust arguments: the pinned environment, the minimum the compiled values
    set (policyBundle.revision), and --bundle-floor as the chart renders it."""
    found = ("--bundle-environment", ENV, "--bundle-min-revision", str(min_revision))
    return (*found, "--bundle-floor", FLOOR) if floor else found


def floor_data(plane: ControlPlane) -> dict[str, str]:
    done = plane.kubectl(
        "admin", "get", "configmap", FLOOR_NAME, "-n", GATE_NAMESPACE, "-o", "json", check=False
    )
    if done.returncode != 0:
        return {}
    data: dict[str, str] = json.loads(done.stdout).get("data") or {}
    return data


def admitted(gate: Gate, name: str) -> tuple[bool, str]:
    done = gate.kubectl(
        "requester", "create", "--dry-run=server", "-f", "-", manifest=run_manifest(name)
    )
    return done.returncode == 0, done.stderr


def log_records(gate: Gate, reason: str) -> list[dict[str, Any]]:
    found = []
    for line in (gate.work / "webhook.log").read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"reason": "{reason}"' in line:
            found.append(json.loads(line))
    return found


@pytest.fixture(scope="module")
def floored(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    gate = Gate(control_plane, tmp_path_factory.mktemp("bundle-floor"))
    gate.prepare()
    control_plane.kubectl("admin", "create", "namespace", ENFORCED, check=False)
    # first install: no floor yet
    control_plane.kubectl(
        "admin", "delete", "configmap", FLOOR_NAME, "-n", GATE_NAMESPACE, "--ignore-not-found"
    )
    compiled = gate.bundle.read_text()
    serve(gate, bundle_signing.with_revision(compiled, NEW))
    gate.extra_trust = trust(NEW)
    gate.start()
    gate.register()
    try:
        yield gate, compiled
    finally:
        print(f"--- webhook (last lines) ---\n{gate.log_tail(60)}")
        for process in gate.controllers:
            print(f"--- controller {process.identity} ---\n{process.log(3000)}")
        gate.unregister()
        gate.stop()
        control_plane.kubectl(
            "admin", "delete", "configmap", FLOOR_NAME, "-n", GATE_NAMESPACE, "--ignore-not-found"
        )


def test_the_chart_runs_both_pods_with_the_floor_and_lets_only_the_controller_raise_it(
    floored: Any,
) -> None:
    gate, _ = floored
    rendered = gate.chart_render()
    for name in ("approvalgate", "approvalgate-controller"):
        (deployment,) = [
            d for d in rendered if d["kind"] == "Deployment" and d["metadata"]["name"] == name
        ]
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--bundle-floor") + 1] == FLOOR, name
    target = f"configmap/{FLOOR_NAME}"

    def can(user: str, verb: str, what: str = target) -> bool:
        done = gate.plane.kubectl(
            user, "auth", "can-i", verb, what, "-n", GATE_NAMESPACE, check=False
        )
        return done.stdout.strip() == "yes"

    assert can(WEBHOOK_SA, "get")
    assert not [v for v in ("update", "patch", "delete", "create") if can(WEBHOOK_SA, v)]
    assert can(QUEUE_CONTROLLER, "get") and can(QUEUE_CONTROLLER, "update")
    assert not can(QUEUE_CONTROLLER, "delete") and not can(QUEUE_CONTROLLER, "patch")
    assert not can(QUEUE_CONTROLLER, "update", "configmap/approvalgate-bundle")
    assert not can(QUEUE_CONTROLLER, "get", "configmap/approvalgate-bundle")


def test_an_older_signed_bundle_put_back_in_the_compiled_values_is_not_enforced(
    floored: Any,
) -> None:
    gate, compiled = floored
    (controller,) = gate.controllers
    # the newer bundle is in force and the controller recorded it (first install: created)
    eventually("the controller records the floor", lambda: floor_data(gate.plane) == {ENV: "6"})
    eventually("the floor metric", lambda: controller.metric("approvalgate_bundle_floor") == NEW)
    ok, stderr = admitted(gate, "floor-before")
    assert not ok and "0 of 2 required approvals" in stderr, stderr

    # the compiled values put back the older signed bundle: the running pods refuse it (their
    # pinned minimum is still the newer revision) ...
    older = older_policy(compiled)
    serve(gate, older)
    eventually(
        "the running webhook refuses the rollback",
        lambda: (
            gate.webhook_metric("approvalgate_bundle_rejected_total", reason="below-min-revision")
            >= 1
        ),
    )
    # ... and the pods roll, their pinned minimum following the values (5)
    gate.stop()

    # the hole as it was: without the floor the rolled webhook enforces the older bundle
    gate.extra_trust = trust(OLD, floor=False)
    gate.start(controller=False)
    assert json.loads(older)["generation"] == gate.served_generation()
    ok, stderr = admitted(gate, "floor-hole")
    assert ok, f"the control step: the older bundle should admit without the floor: {stderr}"
    gate.stop()

    # with the floor (as the chart runs them): not ready, every run denied, and why
    gate.extra_trust = trust(OLD)
    gate.start(controller=False, ready=False)
    rolled = gate.start_controller(wait=False)
    eventually(
        "the webhook says why it is not ready",
        lambda: "below-floor" in gate.readyz()[1],
        timeout=30,
    )
    status, body = gate.readyz()
    assert status == 503 and "refused: below-floor" in body, body
    ok, stderr = admitted(gate, "floor-after")
    assert not ok and "no policy bundle loaded" in stderr and "(below-floor)" in stderr, stderr
    (record, *_) = log_records(gate, "below-floor")
    assert "revision 5, below revision 6" in record["error"] and WHERE in record["error"]
    assert lower_command(WHERE, ENV, OLD) in record["error"]
    assert gate.webhook_metric("approvalgate_bundle_rejected_total", reason="below-floor") >= 1
    eventually(
        "the controller refuses it too",
        lambda: rolled.metric("approvalgate_bundle_rejected_total", reason="below-floor") >= 1,
    )
    assert _http_get(f"http://127.0.0.1:{rolled.health_port}/readyz")[0] == 503
    assert floor_data(gate.plane) == {ENV: "6"}  # never lowered by the rolled pods

    # an operator's deliberate rollback: the documented command, no restart needed
    done = gate.plane.kubectl(
        "admin",
        "patch",
        "configmap",
        FLOOR_NAME,
        "-n",
        GATE_NAMESPACE,
        "--type",
        "merge",
        "-p",
        json.dumps({"data": {ENV: str(OLD)}}),
    )
    assert done.returncode == 0, done.stderr
    eventually("the webhook takes the older bundle", lambda: gate.readyz()[0] == 200, timeout=60)
    eventually("the controller too", rolled.ready, timeout=60)
    assert admitted(gate, "floor-lowered")[0]
    assert floor_data(gate.plane) == {ENV: "5"}


def test_the_audit_reports_whoever_else_may_lower_the_floor(
    floored: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The chart's own RBAC: nobody but the controller writes the floor. A namespace admin
    of the release namespace (the built-in edit role, bound there) may: a finding."""
    gate, _ = floored

    def floor_findings() -> list[dict[str, Any]]:
        capsys.readouterr()
        main(
            [
                "audit",
                "--kubeconfig",
                str(gate.plane.kubeconfig("admin")),
                "--bundle",
                str(gate.bundle),
                *gate.trust_args(),  # --bundle-floor among them, as the CronJob passes it
                "--bundle-floor-writer",
                QUEUE_CONTROLLER,
                "--output",
                "json",
            ]
        )
        report: dict[str, Any] = json.loads(capsys.readouterr().out)
        return [f for f in report["findings"] if "revision floor" in f["message"]]

    assert floor_findings() == []
    binding = ["rolebinding", "floor-editor", "-n", GATE_NAMESPACE]
    done = gate.plane.kubectl(
        "admin", "create", *binding, "--clusterrole", "edit", "--user", "mallory", check=False
    )
    assert done.returncode == 0, done.stderr
    try:
        writes, acts = sorted(floor_findings(), key=lambda f: "can act as" in f["message"])
        for finding in (writes, acts):
            assert finding["subject"] == "User/mallory" and finding["severity"] == "finding"
            assert f"the bundle revision floor {WHERE}" in finding["message"]
            assert (
                "RoleBinding approvalgate-system/floor-editor -> ClusterRole edit"
                in (finding["message"])
            )
        assert "may update, patch, delete" in writes["message"]
        # edit also lets her act as the controller (which may update the floor)
        assert f"can act as {QUEUE_CONTROLLER}" in acts["message"]
    finally:
        gate.plane.kubectl("admin", "delete", *binding, check=False)


def test_the_audit_reports_whoever_may_act_as_the_floors_writer(
    floored: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone who may not touch the ConfigMap but may exec into the release namespace's
    pods (the controller's among them) can lower the floor with the controller's token: a
    finding, naming the way and the binding, shown on the real API server's RBAC."""
    gate, _ = floored
    role = ["role", "pod-exec", "-n", GATE_NAMESPACE]
    binding = ["rolebinding", "pod-exec", "-n", GATE_NAMESPACE]
    for command in (
        ["create", *role, "--verb=create", "--resource=pods/exec"],
        ["create", *binding, "--role", "pod-exec", "--user", "oscar"],
    ):
        done = gate.plane.kubectl("admin", *command, check=False)
        assert done.returncode == 0, done.stderr
    try:
        capsys.readouterr()
        main(
            [
                "audit",
                "--kubeconfig",
                str(gate.plane.kubeconfig("admin")),
                "--bundle",
                str(gate.bundle),
                *gate.trust_args(),
                "--bundle-floor-writer",
                QUEUE_CONTROLLER,
                "--output",
                "json",
            ]
        )
        report: dict[str, Any] = json.loads(capsys.readouterr().out)
        (finding,) = [f for f in report["findings"] if "revision floor" in f["message"]]
        assert finding["subject"] == "User/oscar" and finding["severity"] == "finding"
        assert f"can act as {QUEUE_CONTROLLER}" in finding["message"]
        assert (
            "enter its running pods via RoleBinding approvalgate-system/pod-exec -> Role pod-exec"
            in finding["message"]
        )
    finally:
        gate.plane.kubectl("admin", "delete", *binding, check=False)
        gate.plane.kubectl("admin", "delete", *role, check=False)


AUDIT_SA = f"system:serviceaccount:{GATE_NAMESPACE}:approvalgate-audit"
AUDIT_TEMPLATES = tuple(
    f"templates/audit-{name}.yaml"
    for name in (
        "serviceaccount",
        "clusterrole",
        "clusterrolebinding",
        "floor-role",
        "floor-rolebinding",
    )
)


def test_the_audit_finds_a_mounted_bundle_below_the_floor(
    floored: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """As the chart's audit ServiceAccount with the RBAC helm renders for it: the compiled
    values put back a signed bundle one revision below the floor the controller recorded,
    the pinned minimum following them. The keys accept it, the pods would refuse it: the
    audit says so before they roll onto it."""
    gate, compiled = floored
    docs = gate.chart_render(
        "--set", "audit.enabled=true", *(a for t in AUDIT_TEMPLATES for a in ("--show-only", t))
    )
    assert sorted(d["kind"] for d in docs) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    items = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    done = gate.kubectl("admin", "apply", "-f", "-", manifest=items)
    assert done.returncode == 0, done.stderr
    try:
        floor = int(eventually("a floor", lambda: floor_data(gate.plane).get(ENV)))
        text = bundle_signing.with_revision(compiled, floor - 1)
        bundle = tmp_path / "bundle.json"
        bundle.write_text(text)
        bundle_signing.sign_file(bundle)

        def floor_findings() -> list[dict[str, Any]]:
            capsys.readouterr()
            main(
                [
                    "audit",
                    "--kubeconfig",
                    str(gate.plane.kubeconfig("admin")),
                    "--as",
                    AUDIT_SA,
                    "--bundle",
                    str(bundle),
                    *bundle_signing.cli_args(gate.work),
                    *trust(floor - 1),
                    "--output",
                    "json",
                ]
            )
            report: dict[str, Any] = json.loads(capsys.readouterr().out)
            return [f for f in report["findings"] if "floor" in f["message"]]

        # until the API server's RBAC cache has the audit's roles
        eventually(
            "the audit reads the floor",
            lambda: any("below-floor" in f["message"] for f in floor_findings()),
            timeout=15,
        )
        (finding,) = floor_findings()
        assert finding["area"] == "bundle" and finding["severity"] == "finding"
        assert f"revision {floor - 1}, below revision {floor}" in finding["message"]
        assert WHERE in finding["message"]
        assert f"revision {floor} or higher" in finding["advice"]
    finally:
        gate.kubectl("admin", "delete", "-f", "-", manifest=items)
