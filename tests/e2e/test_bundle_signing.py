"""The signed bundle on the real API server (issue 17): the bundle ConfigMap edited in place.

The webhook and the queue controller run as the chart runs them: pinned to two
bundle-signing keys, both required (threshold 2; the first pinned again as its OpenSSH line,
still one key of the two), reading ``bundle.json`` and
``bundle.sig.json`` from a folder this test keeps in step with the ConfigMap the way the
kubelet does (the ConfigMap read from the API server, a new timestamped folder, the
``..data`` symlink swapped). mallory
may only get/update/patch ConfigMaps in approvalgate-system (a Role, enforced by the real
RBAC); she edits the bundle ConfigMap in place with kubectl, once per attack, to a bundle
that would admit an unapproved AgentRun (the last two: signed by the first key in both its
forms, and signed by both keys with an approver's Ed25519 key a point nobody generated).
Each time the webhook keeps the last good bundle
(an AgentRun create is still denied), counts and logs the refusal with its reason; the
controller refuses the same bundle and keeps working; and ``approvalgate audit`` with the
pinned key reports the refused ConfigMap.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from approvalgate.cli import main
from tests.e2e.controlplane import GATE_NAMESPACE, ControlPlane
from tests.e2e.gate import (
    ENFORCED,
    ENV,
    NOT_ENFORCED,
    Gate,
    _http_get,
    eventually,
    metric_value,
    run_manifest,
)
from tests.support import bundle_signing
from tests.support.projection import KubeVolume
from tests.unit.test_ed25519_points import Holder, mixed, pem

pytestmark = pytest.mark.e2e

CONFIG_MAP = "approvalgate-bundle"
EDITOR = "mallory"
GOOD_REVISION = 5
SECOND = bundle_signing.other_signer()  # the second pinned key


def sign(content: str, *signers: Any) -> str:
    """bundle.sig.json for ``content``: by both pinned keys unless told."""
    return bundle_signing.signatures_text(
        content.encode(), *(signers or (bundle_signing.signer(), SECOND))
    )


class Kubelet:
    """Projects the bundle ConfigMap into a folder as the kubelet does (read as admin)."""

    def __init__(self, plane: ControlPlane, volume: KubeVolume) -> None:
        self.plane = plane
        self.volume = volume

    def sync(self) -> None:
        done = self.plane.kubectl(
            "admin", "get", "configmap", CONFIG_MAP, "-n", GATE_NAMESPACE, "-o", "json"
        )
        data: dict[str, str] = json.loads(done.stdout).get("data") or {}
        self.volume.publish(dict(data))


def evil(text: str) -> str:
    """The editor's bundle: the runs' namespace is no longer enforced."""
    obj: dict[str, Any] = json.loads(text)
    obj["excludeNamespaces"] = [ENFORCED]
    return json.dumps(obj)


@pytest.fixture(scope="module")
def signed(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    gate = Gate(control_plane, tmp_path_factory.mktemp("bundle-signing"))
    gate.extra_trust = (
        "--bundle-key",
        bundle_signing.public_pem(SECOND),
        # the first key pinned again as its OpenSSH line (a mistake nobody sees): still one
        "--bundle-key",
        bundle_signing.SSHForm(bundle_signing.signer()).line,
        "--bundle-threshold",
        "2",
        "--bundle-environment",
        ENV,  # as the chart pins the deployed bundle's environment
    )
    gate.prepare()
    for ns in (ENFORCED, NOT_ENFORCED, GATE_NAMESPACE):
        control_plane.kubectl("admin", "create", "namespace", ns, check=False)
    compiled = gate.bundle.read_text()
    good = bundle_signing.with_revision(compiled, GOOD_REVISION)
    # the chart's ConfigMap: the bundle and its signatures, byte for byte
    control_plane.kubectl(
        "admin",
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": CONFIG_MAP, "namespace": GATE_NAMESPACE},
                "data": {
                    "bundle.json": good,
                    "bundle.sig.json": sign(good),
                },
            }
        ),
    )
    # who may edit that ConfigMap, and nothing else
    control_plane.kubectl(
        "admin",
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    {
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "Role",
                        "metadata": {"name": "bundle-editor", "namespace": GATE_NAMESPACE},
                        "rules": [
                            {
                                "apiGroups": [""],
                                "resources": ["configmaps"],
                                "verbs": ["get", "update", "patch"],
                            }
                        ],
                    },
                    {
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "RoleBinding",
                        "metadata": {"name": "bundle-editor", "namespace": GATE_NAMESPACE},
                        "roleRef": {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "Role",
                            "name": "bundle-editor",
                        },
                        "subjects": [
                            {
                                "apiGroup": "rbac.authorization.k8s.io",
                                "kind": "User",
                                "name": EDITOR,
                            }
                        ],
                    },
                ],
            }
        ),
    )
    kubelet = Kubelet(control_plane, KubeVolume(gate.work / "projected"))
    kubelet.sync()
    gate.served = kubelet.volume.root / "bundle.json"
    # the audit's "git": the good bundle and its signatures
    git = gate.work / "git"
    git.mkdir()
    (git / "bundle.json").write_text(good)
    (git / "bundle.sig.json").write_text(sign(good))
    gate.start()
    gate.register()
    try:
        yield gate, kubelet, compiled, good
    finally:
        print(f"--- webhook (last lines) ---\n{gate.log_tail(60)}")
        for process in gate.controllers:
            print(f"--- controller {process.identity} ---\n{process.log(3000)}")
        gate.unregister()
        gate.stop()


def edit(gate: Gate, bundle: str | bytes, signatures: str | None) -> None:
    """mallory edits the ConfigMap in place (a merge patch: null removes the signatures)."""
    text = bundle.decode() if isinstance(bundle, bytes) else bundle
    patch = {"data": {"bundle.json": text, "bundle.sig.json": signatures}}
    done = gate.kubectl(
        EDITOR,
        "patch",
        "configmap",
        CONFIG_MAP,
        "-n",
        GATE_NAMESPACE,
        "--type",
        "merge",
        "-p",
        json.dumps(patch),
    )
    assert done.returncode == 0, done.stderr


def unapproved_denied(gate: Gate, name: str) -> bool:
    done = gate.kubectl(
        "requester", "create", "--dry-run=server", "-f", "-", manifest=run_manifest(name)
    )
    if done.returncode == 0:
        return False
    assert "0 of 2 required approvals" in done.stderr, done.stderr
    return True


def refusal_lines(gate: Gate, reason: str) -> list[dict[str, Any]]:
    lines = []
    for line in (gate.work / "webhook.log").read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"reason": "{reason}"' in line:
            record = json.loads(line)
            if record.get("msg", "").startswith("bundle file cannot be loaded"):
                lines.append(record)
    return lines


def audit(gate: Gate, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(
        [
            "audit",
            "--kubeconfig",
            str(gate.plane.kubeconfig("admin")),
            "--bundle",
            str(gate.work / "git" / "bundle.json"),
            *gate.trust_args(),
            "--bundle-configmap",
            f"{GATE_NAMESPACE}/{CONFIG_MAP}",
            "--output",
            "json",
        ]
    )
    out, _ = capsys.readouterr()
    report: dict[str, Any] = json.loads(out)
    return code, report


def attacks(compiled: str, good: str) -> list[tuple[str, str, str | None]]:
    newer = bundle_signing.with_revision(evil(compiled), GOOD_REVISION + 1)
    older = bundle_signing.with_revision(evil(compiled), GOOD_REVISION - 1)
    same = bundle_signing.with_revision(evil(compiled), GOOD_REVISION)
    dev_obj = json.loads(evil(compiled))
    dev_obj["environment"] = "dev"
    dev = bundle_signing.with_revision(json.dumps(dev_obj), GOOD_REVISION + 1)
    stripped = json.loads(sign(newer))
    stripped["signatures"] = []
    odd_obj = json.loads(evil(compiled))
    odd_obj["approvers"][-1]["keys"][0]["publicKey"] = pem(mixed(Holder()))
    odd_key = bundle_signing.with_revision(json.dumps(odd_obj), GOOD_REVISION + 1)
    return [
        ("unsigned", newer, None),
        ("signature-stripped", newer, json.dumps(stripped)),
        ("untrusted-key", newer, sign(newer, bundle_signing.other_signer())),
        ("below-threshold", newer, sign(newer, bundle_signing.signer())),
        ("signed-other-content", newer, sign(good)),  # the good bundle's own signatures
        ("rollback", older, sign(older)),  # an older bundle, validly signed
        ("revision-reused", same, sign(same)),
        ("other-environment", dev, sign(dev)),  # signed by the same keys, a higher revision
        # the first key in both of its pinned forms: one signer of the two required
        (
            "below-threshold",
            newer,
            sign(newer, bundle_signing.signer(), bundle_signing.SSHForm(bundle_signing.signer())),
        ),
        # signed by both keys, an approver's Ed25519 key a point nobody generated
        ("invalid-bundle", odd_key, sign(odd_key)),
    ]


def test_an_editor_of_the_bundle_configmap_cannot_change_the_rules(
    signed: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    gate, kubelet, compiled, good = signed
    (controller,) = gate.controllers
    in_force = json.loads(good)["generation"]
    assert gate.served_generation() == in_force
    assert unapproved_denied(gate, "sig-before")
    code, report = audit(gate, capsys)
    assert not [f for f in report["findings"] if f["area"] == "bundle"], report["findings"]
    # mallory may edit the ConfigMap, and only that
    assert gate.kubectl(EDITOR, "get", "configmap", "-n", GATE_NAMESPACE).returncode != 0
    assert gate.kubectl(EDITOR, "delete", "configmap", CONFIG_MAP, "-n", GATE_NAMESPACE).returncode
    seen: Counter[str] = Counter()
    for index, (reason, bundle, signatures) in enumerate(attacks(compiled, good)):
        seen[reason] += 1
        edit(gate, bundle, signatures)
        kubelet.sync()
        eventually(
            f"the webhook refuses the edited bundle ({reason})",
            lambda reason=reason: (
                metric_value(  # type: ignore[misc]
                    gate_metrics(gate), "approvalgate_bundle_rejected_total", reason=reason
                )
                == seen[reason]
            ),
            timeout=30,
        )
        assert gate.served_generation() == in_force, reason
        assert unapproved_denied(gate, f"sig-{index}"), f"{reason}: the edited bundle is enforced"
        lines = refusal_lines(gate, reason)
        assert len(lines) == seen[reason], lines
        assert (lines[-1]["generation"], lines[-1]["revision"]) == (in_force, GOOD_REVISION)
        # the controller refuses the same bundle and keeps the good one
        eventually(
            f"the controller refuses the edited bundle ({reason})",
            lambda reason=reason: (
                metric_value(  # type: ignore[misc]
                    controller.metrics(), "approvalgate_bundle_rejected_total", reason=reason
                )
                == seen[reason]
            ),
            timeout=30,
        )
        assert metric_value(controller.metrics(), "approvalgate_bundle_revision") == GOOD_REVISION
        assert controller.ready()
        code, report = audit(gate, capsys)
        if reason == "invalid-bundle":  # unusable, whoever signed it: a note, as designed
            (note,) = [f for f in report["findings"] if f["area"] == "bundle"]
            assert note["severity"] == "note", note
            assert "not an Ed25519 public key anyone generated" in note["message"], note
            continue
        # the audit reports the refused ConfigMap, with the reason and what to do
        assert code == 1
        (finding,) = [
            f for f in report["findings"] if f["area"] == "bundle" and f["severity"] == "finding"
        ]
        assert finding["subject"] == f"ConfigMap/{GATE_NAMESPACE}/{CONFIG_MAP}"
        assert (
            f"refuse the bundle in ConfigMap/{GATE_NAMESPACE}/{CONFIG_MAP} ({reason}:"
            in (finding["message"])
        )
        assert "--show-managed-fields" in finding["advice"]
    # the good bundle back: nothing to reload; a newer properly signed one is enforced
    edit(gate, good, sign(good))
    kubelet.sync()
    newer = bundle_signing.with_revision(compiled, GOOD_REVISION + 1)
    edit(gate, newer, sign(newer))
    kubelet.sync()
    generation = json.loads(newer)["generation"]
    eventually("the newer signed bundle", lambda: gate.served_generation() == generation)
    eventually(
        "the controller on the newer bundle",
        lambda: (
            metric_value(controller.metrics(), "approvalgate_bundle_revision") == GOOD_REVISION + 1
        ),
    )
    assert unapproved_denied(gate, "sig-after")


def gate_metrics(gate: Gate) -> str:
    return _http_get(f"http://127.0.0.1:{gate.metrics_port}/metrics")[1]
