"""The Gatekeeper arm of `make bench-peers` works end to end (a smoke test of the script).

The real Gatekeeper manager (built by `make peers`) runs out of cluster against the real e2e
control plane; one ValidatingWebhookConfiguration, scoped to the arm's namespace, sends it the
AgentRun creates made through the API server. A run with the approvals annotation is admitted,
one without is denied with the constraint's message. Nothing here looks at how long anything
took. Skipped, with the reason printed, when Gatekeeper is not built.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from approvalgate.approvals.records import ANNOTATION
from bench.peers import gatekeeper
from bench.peers.arms import GROUP, PLURAL, VERSION, Arm
from bench.peers.gatekeeper import GatekeeperPresenceArm
from tests.e2e.controlplane import ControlPlane, locate_binaries
from tests.support.paths import UPSTREAM_AGENTS, crd_files

WEBHOOK = "gatekeeper-presence.peers.approvalgate.test"


def webhook_configuration(arm: Arm, name: str) -> dict[str, Any]:
    """One webhook for `arm`, judging AgentRun creates and updates in its namespace only."""
    hook = arm.hook()
    assert hook is not None
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": name,
                "clientConfig": {"url": hook.url, "caBundle": hook.ca_bundle},
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "resources": [PLURAL],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "In",
                            "values": [arm.namespace],
                        }
                    ]
                },
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 10,
            }
        ],
    }


def register(plane: ControlPlane, arm: Arm, name: str = WEBHOOK) -> None:
    """Register `arm`'s webhook and wait until the API server sends it requests (it picks up
    webhook configurations asynchronously): a server-side dry run of a run that must be
    denied is denied by this webhook."""
    plane.kubectl("admin", "apply", "-f", "-", input=json.dumps(webhook_configuration(arm, name)))
    probe = json.dumps(arm.manifest("registration-probe", valid=False))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = plane.kubectl(
            "requester", "create", "--dry-run=server", "-f", "-", input=probe, check=False
        )
        if done.returncode != 0 and f'admission webhook "{name}" denied' in done.stderr:
            return
        time.sleep(0.2)
    raise AssertionError(f"the webhook configuration {name} never took effect")


@pytest.fixture
def plane() -> Iterator[ControlPlane]:
    if not gatekeeper.built():
        reason = f"gatekeeper not built ({gatekeeper.binary()} missing): run `make peers`"
        print(reason)
        pytest.skip(reason)
    control_plane = ControlPlane(locate_binaries())
    control_plane.start()
    try:
        control_plane.apply_crds(crd_files(UPSTREAM_AGENTS / "crds"))
        yield control_plane
    finally:
        control_plane.stop()


def test_gatekeeper_admits_a_run_with_approvals_and_denies_one_without(
    plane: ControlPlane, tmp_path: Path
) -> None:
    arm = GatekeeperPresenceArm()
    try:
        arm.start(plane, tmp_path)
        (pid,) = arm.pids()
        register(plane, arm)

        admitted = plane.kubectl(
            "requester", "create", "-f", "-", input=json.dumps(arm.manifest("approved", True))
        )
        assert "agentrun.agents.proompteng.ai/approved created" in admitted.stdout

        denied = plane.kubectl(
            "requester",
            "create",
            "-f",
            "-",
            input=json.dumps(arm.manifest("unapproved", False)),
            check=False,
        )
        assert denied.returncode == 1
        assert f'admission webhook "{WEBHOOK}" denied the request' in denied.stderr
        assert f"[agentrun-approvals-present] {gatekeeper.MESSAGE}" in denied.stderr
        listed = plane.kubectl("admin", "get", PLURAL, "-n", arm.namespace, "-o", "name")
        assert listed.stdout.split() == ["agentrun.agents.proompteng.ai/approved"]
    finally:
        arm.stop()
    assert arm.pids() == []
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped: no process left behind
    arm.stop()  # idempotent


def test_the_arm_says_what_it_checks() -> None:
    arm = GatekeeperPresenceArm()
    assert (arm.key, arm.namespace) == ("gatekeeper-presence", "peer-gatekeeper-presence")
    valid, invalid = arm.manifest("a", True), arm.manifest("b", False)
    assert valid["metadata"]["annotations"][ANNOTATION]
    assert "annotations" not in invalid["metadata"]
    assert {valid["metadata"]["namespace"], invalid["metadata"]["namespace"]} == {arm.namespace}
    assert arm.pids() == []
