"""kubectl against a real kube-apiserver, which calls the real webhook: issue 6's matrix.

The API server applies its own defaulting, pruning and YAML-to-JSON conversion before it
sends the AdmissionReview; these tests show the CLI signs exactly what it then sends.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from approvalgate.approvals.digest import spec_digest
from approvalgate.approvals.records import ANNOTATION
from approvalgate.approvals.view import USE_FINALIZER
from tests.e2e.controlplane import CONTROLLER, ControlPlane
from tests.e2e.gate import (
    ENFORCED,
    EXAMPLE,
    NOT_ENFORCED,
    WEBHOOK_NAME,
    Gate,
    eventually,
    pod_bound_token,
    run_manifest,
)
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e
REQUESTER = "requester"


def denial(message: str, verb: str = "creating") -> str:
    return (
        f'Error from server (Forbidden): error when {verb} "STDIN": admission webhook '
        f'"{WEBHOOK_NAME}" denied the request: {message}'
    )


def shipped_manifests(gate: Gate) -> list[tuple[str, str, str | None]]:
    """(what, YAML text, namespace to create) for every manifest the project ships."""
    out: list[tuple[str, str, str | None]] = []
    for env_dir in sorted((EXAMPLE / "rendered").iterdir()):
        kustomization = yaml.safe_load((env_dir / "kustomization.yaml").read_text())
        for rel in kustomization["resources"]:
            out.append((f"rendered/{env_dir.name}/{rel}", (env_dir / rel).read_text(), None))
    for doc in gate.chart_render():
        out.append(
            (
                f"chart {doc['kind']}/{doc['metadata']['name']}",
                json.dumps(doc),
                "approvalgate-system",
            )
        )
    for path in sorted((ROOT / "argocd").glob("*.yaml")):
        out.append((f"argocd/{path.name}", path.read_text(), "argocd"))
    return out


@pytest.fixture(scope="module")
def gate(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    gate = Gate(control_plane, tmp_path_factory.mktemp("gate"))
    gate.prepare()
    for ns in (ENFORCED, NOT_ENFORCED, "agents-prod", "approvalgate-system", "argocd"):
        control_plane.kubectl("admin", "create", "namespace", ns, check=False)
    # Server-side dry-run of everything we ship, before the webhook is registered (the
    # git-kept run's records were signed with the example's own keys, not ours).
    gate.shipped = []  # type: ignore[attr-defined]
    for what, text, _ in shipped_manifests(gate):
        done = control_plane.kubectl(
            "admin",
            "apply",
            "--server-side",
            "--dry-run=server",
            "--validate=strict",
            "--field-manager=e2e",
            "-f",
            "-",
            input=text,
            check=False,
        )
        gate.shipped.append((what, done.returncode, done.stderr))  # type: ignore[attr-defined]
    gate.start()
    gate.register()
    try:
        yield gate
    finally:
        gate.unregister()
        gate.stop()


def created(gate: Gate, name: str, namespace: str = ENFORCED) -> dict[str, Any]:
    done = gate.kubectl("admin", "get", "agentrun", name, "-n", namespace, "-o", "json")
    assert done.returncode == 0, done.stderr
    obj: dict[str, Any] = json.loads(done.stdout)
    return obj


def test_every_shipped_manifest_passes_server_side_dry_run(gate: Gate) -> None:
    results = gate.shipped  # type: ignore[attr-defined]
    kinds = {what.split(" ")[0].split("/")[0] for what, _, _ in results}
    assert {"rendered", "chart", "argocd"} <= kinds
    failed = [f"{what}: {err.strip()}" for what, code, err in results if code != 0]
    assert failed == []


def test_unapproved_run_is_denied_with_our_message(gate: Gate) -> None:
    manifest = run_manifest("unapproved", finalizer=True)
    done = gate.kubectl(REQUESTER, "apply", "-f", "-", manifest=manifest)
    assert done.returncode == 1
    expected = gate.verify(manifest, REQUESTER)
    assert expected["allowed"] is False
    assert done.stderr.strip() == denial(expected["message"])
    assert expected["message"].startswith(
        "approvalgate denied creating AgentRun agents/unapproved:\n"
        "- policy agents/codex-two-person: 0 of 2 required approvals (approvers: "
        "group:platform-leads)\n  - annotation approvals.proompteng.ai/approvals is missing\n"
    )
    # issue 15: where the cluster view is required, an unapproved run is told what it lacks
    # first (approvals), and a run its records would admit is denied for lacking the
    # approval-use finalizer (the message says how to add it)
    bare = run_manifest("unapproved", finalizer=False)
    done = gate.kubectl(REQUESTER, "apply", "-f", "-", manifest=bare)
    assert done.returncode == 1
    expected = gate.verify(bare, REQUESTER)
    assert done.stderr.strip() == denial(expected["message"])
    assert "0 of 2 required approvals" in expected["message"]
    approved = json.loads(
        json.dumps(yaml.safe_load(gate.approve(run_manifest("unfinalized"), "alice", "bob")))
    )
    approved["metadata"].pop("finalizers")
    unfinalized = json.dumps(approved)
    done = gate.kubectl(REQUESTER, "apply", "-f", "-", manifest=unfinalized)
    assert done.returncode == 1
    expected = gate.verify(unfinalized, REQUESTER)
    assert done.stderr.strip() == denial(expected["message"])
    assert f"must carry the finalizer {USE_FINALIZER}" in expected["message"]


def test_run_approved_by_two_of_the_leads_is_created(gate: Gate) -> None:
    manifest = gate.approve(run_manifest("approved"), "alice", "bob")
    done = gate.kubectl(REQUESTER, "apply", "-f", "-", manifest=manifest)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "agentrun.agents.proompteng.ai/approved created"
    stored = created(gate, "approved")
    assert len(json.loads(stored["metadata"]["annotations"][ANNOTATION])) == 2


def test_self_approval_is_denied(gate: Gate) -> None:
    manifest = gate.approve(run_manifest("self-approved"), "alice", "bob", "dana")
    done = gate.kubectl("alice", "apply", "-f", "-", manifest=manifest)
    assert done.returncode == 1
    assert "alice submitted this run (as alice): nobody approves their own run" in done.stderr
    assert done.stderr.strip() == denial(gate.verify(manifest, "alice")["message"])


def test_expired_approval_is_denied(gate: Gate) -> None:
    past = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = gate.approve(
        run_manifest("expired"), "alice", "bob", extra=("--now", past, "--ttl", "1h")
    )
    done = gate.kubectl(REQUESTER, "apply", "-f", "-", manifest=manifest)
    assert done.returncode == 1
    assert "record 0 by alice: expired at" in done.stderr


def test_approval_copied_from_another_run_is_denied(gate: Gate) -> None:
    original = gate.approve(run_manifest("original"), "alice", "bob")
    copy = original.replace("name: original", "name: copied")
    done = gate.kubectl(REQUESTER, "apply", "-f", "-", manifest=copy)
    assert done.returncode == 1
    assert "approves another run (agents/original), not agents/copied" in done.stderr


def test_spec_changes_by_apply_patch_and_edit_are_denied(gate: Gate) -> None:
    manifest = gate.approve(run_manifest("changed"), "alice", "bob")
    assert gate.kubectl(REQUESTER, "apply", "-f", "-", manifest=manifest).returncode == 0
    changed = manifest.replace("Update onboarding flow", "Delete the onboarding flow")
    done = gate.kubectl(REQUESTER, "apply", "-f", "-", manifest=changed)
    assert done.returncode == 1
    assert "approvalgate denied updating AgentRun agents/changed" in done.stderr
    assert "approves another spec" in done.stderr
    done = gate.kubectl(
        REQUESTER,
        "patch",
        "agentrun",
        "changed",
        "-n",
        ENFORCED,
        "--type",
        "merge",
        "-p",
        '{"spec":{"parameters":{"task":"patched"}}}',
    )
    assert done.returncode == 1 and "approves another spec" in done.stderr
    plane = gate.plane
    env = {**os.environ, "KUBE_EDITOR": "sed -i s/Update.onboarding.flow/edited/"}
    edit = subprocess.run(
        [
            str(plane.binaries.kubectl),
            f"--kubeconfig={plane.kubeconfig(REQUESTER)}",
            "edit",
            "agentrun",
            "changed",
            "-n",
            ENFORCED,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert edit.returncode == 1 and "approves another spec" in edit.stderr
    assert created(gate, "changed")["spec"]["parameters"]["task"] == "Update onboarding flow"


def test_controller_updates_and_deletion_pass(gate: Gate) -> None:
    manifest = gate.approve(run_manifest("controlled"), "alice", "bob")
    assert gate.kubectl(REQUESTER, "apply", "-f", "-", manifest=manifest).returncode == 0
    done = gate.kubectl(
        CONTROLLER,
        "patch",
        "agentrun",
        "controlled",
        "-n",
        ENFORCED,
        "--type",
        "merge",
        "-p",
        json.dumps(
            {
                "metadata": {
                    "labels": {"agents.proompteng.ai/phase": "running"},
                    # the agents controller adds its own finalizer next to approvalgate's
                    "finalizers": [USE_FINALIZER, "agents.proompteng.ai/cleanup"],
                }
            }
        ),
    )
    assert done.returncode == 0, done.stderr
    done = gate.kubectl(
        CONTROLLER,
        "patch",
        "agentrun",
        "controlled",
        "-n",
        ENFORCED,
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        '{"status":{"phase":"Running"}}',
    )
    assert done.returncode == 0, done.stderr
    assert created(gate, "controlled")["status"]["phase"] == "Running"
    done = gate.kubectl(
        REQUESTER, "delete", "agentrun", "controlled", "-n", ENFORCED, "--wait=false"
    )
    assert done.returncode == 0, done.stderr
    assert created(gate, "controlled")["metadata"]["deletionTimestamp"]
    # the queue controller releases approvalgate's finalizer once the run's use is recorded
    eventually(
        "approvalgate's finalizer released",
        lambda: (
            created(gate, "controlled")["metadata"]["finalizers"]
            == ["agents.proompteng.ai/cleanup"]
        ),
    )
    done = gate.kubectl(
        CONTROLLER,
        "patch",
        "agentrun",
        "controlled",
        "-n",
        ENFORCED,
        "--type",
        "json",
        "-p",
        '[{"op":"remove","path":"/metadata/finalizers"}]',
    )
    assert done.returncode == 0, done.stderr
    gone = gate.kubectl("admin", "get", "agentrun", "controlled", "-n", ENFORCED)
    assert "NotFound" in gone.stderr


def test_generate_name_approval_admits_one_run(gate: Gate) -> None:
    """Issue 15 changed this: a generateName approval used to admit any number of runs of
    the prefix. Where the cluster view is required `approve` names the run (generateName +
    5 characters) and the approval admits that one run: a second create is denied."""
    manifest = gate.approve(run_manifest("batch", generate=True), "alice", "bob")
    name = yaml.safe_load(manifest)["metadata"]["name"]
    assert name.startswith("batch-") and len(name) == len("batch-") + 5
    assert "generateName" not in yaml.safe_load(manifest)["metadata"]
    done = gate.kubectl(REQUESTER, "create", "-f", "-", "-o", "name", manifest=manifest)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"agentrun.agents.proompteng.ai/{name}"
    again = gate.kubectl(REQUESTER, "create", "-f", "-", "-o", "name", manifest=manifest)
    assert again.returncode == 1
    assert "already used" in again.stderr or "already exists" in again.stderr, again.stderr


def test_server_dry_run_gets_the_same_verdict(gate: Gate) -> None:
    unapproved = run_manifest("dry-run")
    real = gate.kubectl(REQUESTER, "apply", "-f", "-", manifest=unapproved)
    dry = gate.kubectl(REQUESTER, "apply", "--dry-run=server", "-f", "-", manifest=unapproved)
    assert real.returncode == dry.returncode == 1
    assert dry.stderr.strip() == real.stderr.strip()
    approved = gate.approve(unapproved, "alice", "bob")
    dry = gate.kubectl(REQUESTER, "apply", "--dry-run=server", "-f", "-", manifest=approved)
    assert dry.returncode == 0, dry.stderr
    assert "NotFound" in gate.kubectl("admin", "get", "agentrun", "dry-run", "-n", ENFORCED).stderr


TRICKY = """\
apiVersion: agents.proompteng.ai/v1alpha1
kind: AgentRun
metadata:
  name: tricky
  namespace: agents
spec:
  agentRef:
    name: codex-agent
  implementationSpecRef:
    name: codex-impl-sample
  runtime:
    type: workflow
    config:
      enabled: yes          # YAML 1.1 boolean
      verbose: on
      mode: 0600            # octal -> 384
      mask: 0x1F
      big: 1e3              # -> 1000
      ratio: 2.0            # -> 2
      half: 0.5
      when: 2026-11-21T10:00:00Z   # stays a string
      day: 2026-11-21
      clock: 1:30
      name: "Ünïcødé ✓ 日本"
      script: |
        #!/bin/sh
        echo "approved"
      folded: >
        one
        two
      list: [1, "2", three]
  parameters:
    task: 'yes'
    count: "0600"
"""


def test_tricky_yaml_digest_agrees_with_the_server(gate: Gate) -> None:
    manifest = gate.approve(TRICKY, "alice", "bob")
    done = gate.kubectl(REQUESTER, "apply", "-f", "-", manifest=manifest)
    assert done.returncode == 0, done.stderr
    stored = created(gate, "tricky")
    config = stored["spec"]["runtime"]["config"]
    assert (config["enabled"], config["mode"], config["mask"], config["big"]) == (
        True,
        384,
        31,
        1000,
    )
    assert config["when"] == "2026-11-21T10:00:00Z" and config["clock"] == "1:30"
    claimed = gate.verify(manifest, REQUESTER)["digest"]
    assert spec_digest(stored["spec"]) == claimed


def test_webhook_down_fails_closed_and_recovers(gate: Gate) -> None:
    manifest = gate.approve(run_manifest("outage"), "alice", "bob")
    gate.stop()
    try:
        done = gate.kubectl(REQUESTER, "apply", "-f", "-", manifest=manifest)
        assert done.returncode == 1
        assert f'failed calling webhook "{WEBHOOK_NAME}"' in done.stderr
    finally:
        gate.start()
    deadline = time.monotonic() + 30
    while True:
        done = gate.kubectl(REQUESTER, "apply", "-f", "-", manifest=manifest)
        if done.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert done.returncode == 0, done.stderr


def test_namespace_not_enforced_is_allowed(gate: Gate) -> None:
    done = gate.kubectl(
        REQUESTER, "apply", "-f", "-", manifest=run_manifest("free", namespace=NOT_ENFORCED)
    )
    assert done.returncode == 0, done.stderr
    assert created(gate, "free", NOT_ENFORCED)["metadata"]["name"] == "free"


def test_trusted_submission_api_needs_no_records(gate: Gate) -> None:
    """From a pod running as it (a pod-bound token); tests/e2e/test_attacks_identities.py
    shows the same ServiceAccount denied without one."""
    control_plane_ns = "agents-system"
    gate.plane.kubectl("admin", "create", "namespace", control_plane_ns, check=False)
    token = pod_bound_token(gate.plane, control_plane_ns, "submission-api", "submission-api-0")
    done = gate.plane.kubectl_with_token(
        token, "create", "-f", "-", input=run_manifest("submitted")
    )
    assert done.returncode == 0, done.stderr
