"""Class 22 of security.md against a real kube-apiserver: namespaces and usernames.

- Every namespace is enforced unless excluded by name: a namespace created after the
  webhook was registered, and the webhook's own namespace, deny an unapproved run; only the
  namespace excluded by name (``sandbox`` in the e2e copy of the example) admits it, and a
  look-alike name does not.
- The opt-in label mode, an explicit choice (``namespaceSelection: optInLabel``): a labelled
  namespace is enforced; a namespace admin who may patch the namespace removes the label and
  the API server stops calling the webhook, exactly as docs/deploy.md warns; the audit then
  reports the namespace as holding AgentRuns without enforcement.
- Usernames are explicit: an approver whose Kubernetes username differs from its Approver
  name (``bob`` logs in as ``mallory`` here) cannot count their own approval.

The webhook configuration is always the chart's, rendered from the compiled bundle (as in
tests/e2e/gate.py); every webhook denial is exactly decide()'s message for the same request.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from approvalgate.cli import main
from tests.e2e.controlplane import ControlPlane
from tests.e2e.gate import ENV, NOT_ENFORCED, WEBHOOK_NAME, Gate, run_manifest

pytestmark = pytest.mark.e2e
REQUESTER = "requester"
OWN_NAMESPACE = "approvalgate-system"  # where the chart installs the webhook
LABEL = "approvals.proompteng.ai/enforce"


def denial(message: str) -> str:
    return (
        'Error from server (Forbidden): error when creating "STDIN": admission webhook '
        f'"{WEBHOOK_NAME}" denied the request: {message}'
    )


@pytest.fixture(scope="module")
def gate(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    gate = Gate(control_plane, tmp_path_factory.mktemp("namespaces"))
    gate.prepare()
    # bob's Kubernetes username is not his Approver name: he logs in as "mallory" here
    gate.cli(
        "keygen",
        "bob",
        "--out",
        str(gate.keys),
        "--groups",
        "platform-leads",
        "--usernames",
        "mallory",
        "--force",
    )
    shutil.copy(gate.keys / "bob.yaml", gate.repo / "approvers" / "bob.yaml")
    gate.recompile()  # the served bundle signed again
    for ns in ("agents", NOT_ENFORCED, OWN_NAMESPACE):
        control_plane.kubectl("admin", "create", "namespace", ns, check=False)
    gate.start()
    gate.register()
    try:
        yield gate
    finally:
        gate.unregister()
        gate.stop()


def _drop(gate: Gate, namespace: str) -> None:
    """Its runs first: no namespace controller runs here, so the namespace never goes away
    (and later modules' audits list every namespace)."""
    gate.kubectl("admin", "delete", "agentruns", "--all", "-n", namespace)
    gate.kubectl("admin", "delete", "namespace", namespace, "--wait=false")


def _fresh_namespace(gate: Gate, prefix: str) -> Iterator[str]:
    name = gate.plane.create_namespace(prefix)
    try:
        yield name
    finally:
        _drop(gate, name)


@pytest.fixture
def late_namespace(gate: Gate) -> Iterator[str]:
    """A namespace nobody listed, created after the webhook was registered."""
    yield from _fresh_namespace(gate, "team")


def _denied_as_decide_says(gate: Gate, manifest: str, user: str = REQUESTER) -> str:
    done = gate.kubectl(user, "create", "-f", "-", manifest=manifest)
    assert done.returncode == 1, done.stdout
    expected = gate.verify(manifest, user)
    assert expected["allowed"] is False
    assert done.stderr.strip() == denial(expected["message"])
    message: str = expected["message"]
    return message


# --- every namespace unless excluded by name ------------------------------------------------


def test_a_namespace_created_after_install_is_enforced(gate: Gate, late_namespace: str) -> None:
    message = _denied_as_decide_says(gate, run_manifest("late", namespace=late_namespace))
    assert f"no ApprovalPolicy selects it in namespace '{late_namespace}'" in message


def test_the_webhooks_own_namespace_is_enforced(gate: Gate) -> None:
    message = _denied_as_decide_says(gate, run_manifest("own", namespace=OWN_NAMESPACE))
    assert f"no ApprovalPolicy selects it in namespace '{OWN_NAMESPACE}'" in message


def test_only_the_namespace_excluded_by_name_is_left_out(gate: Gate) -> None:
    manifest = run_manifest("by-name", namespace=NOT_ENFORCED)
    done = gate.kubectl(REQUESTER, "create", "-f", "-", manifest=manifest)
    assert done.returncode == 0, done.stderr
    gate.kubectl("admin", "delete", "-f", "-", manifest=manifest)
    look_alike = gate.plane.create_namespace(NOT_ENFORCED)  # sandbox-<hex>: never a prefix match
    try:
        _denied_as_decide_says(gate, run_manifest("by-name", namespace=look_alike))
    finally:
        _drop(gate, look_alike)


def test_a_namespace_admin_cannot_rename_her_namespace_into_the_excluded_one(gate: Gate) -> None:
    """The chart selects namespaces by kubernetes.io/metadata.name NotIn [excludeNamespaces].
    A namespace admin who may patch her namespace relabels it with the excluded name: the
    API server keeps that label equal to the name, so the webhook is still called."""
    namespace = gate.plane.create_namespace("relabel")
    gate.plane.grant(
        f"approvalgate-e2e:{namespace}-admin",
        subjects=["mallory"],
        rules=[
            {
                "apiGroups": [""],
                "resources": ["namespaces"],
                "resourceNames": [namespace],
                "verbs": ["get", "patch"],
            }
        ],
    )
    try:
        gate.kubectl(
            "mallory",
            "label",
            "namespace",
            namespace,
            f"kubernetes.io/metadata.name={NOT_ENFORCED}",
            "--overwrite",
        )
        done = gate.kubectl(
            "admin",
            "get",
            "namespace",
            namespace,
            "-o",
            "jsonpath={.metadata.labels.kubernetes\\.io/metadata\\.name}",
        )
        assert done.stdout == namespace, done.stdout  # whatever the patch said
        _denied_as_decide_says(gate, run_manifest("relabelled", namespace=namespace))
    finally:
        _drop(gate, namespace)


# --- usernames are explicit -----------------------------------------------------------------


def test_an_approver_whose_username_is_not_their_name_cannot_approve_their_own_run(
    gate: Gate,
) -> None:
    manifest = gate.approve(run_manifest("bobs-own"), "alice", "bob")
    message = _denied_as_decide_says(gate, manifest, "mallory")
    assert "nobody approves their own run" in message and "1 of 2" in message
    done = gate.kubectl(REQUESTER, "create", "-f", "-", manifest=manifest)
    assert done.returncode == 0, done.stderr  # anyone else: both approvals count
    gate.kubectl("admin", "delete", "-f", "-", manifest=manifest)


@pytest.mark.parametrize(
    "login",
    # the last two passed before: an Armenian oh and a small capital M were not in the
    # hand-made table of look-alikes (now every UTS #39 confusable is folded)
    ["Mallory", "oidc:mallory", "mallory\u200b", "mall\u0585ry", "\u1d0dallory"],
)
def test_an_approver_whose_username_is_spelt_otherwise_cannot_approve_their_own_run(
    gate: Gate, login: str
) -> None:
    """bob's Approver lists "mallory"; the API server passes on whatever spelling his login
    arrives with (an IdP matching logins case-insensitively, --oidc-username-prefix, an
    invisible character, a look-alike letter of any script): still bob, his approval does
    not count (approvals.identity)."""
    name = f"bobs-own-{abs(hash(login)) % 10_000}"
    manifest = gate.approve(run_manifest(name), "alice", "bob")
    # admin acting as that login (system:masters for RBAC: no binding names the spelling)
    done = gate.kubectl(
        "admin",
        f"--as={login}",
        "--as-group=system:masters",
        "create",
        "-f",
        "-",
        manifest=manifest,
    )
    assert done.returncode == 1, done.stdout
    expected = gate.verify(manifest, login)
    assert expected["allowed"] is False
    assert done.stderr.strip() == denial(expected["message"])
    assert f"bob submitted this run (as {login})" in expected["message"]
    assert "1 of 2" in expected["message"]


def test_one_key_under_two_approvers_counts_once_on_the_api_server(gate: Gate) -> None:
    """A bundle made by hand and signed (or compiled before the compiler's key check) lists
    bob's key under alice too: bob signs as bob and as alice. Two records, one key, one
    person: 1 of 2, denied (admitted 2 of 2 before)."""
    from approvalgate.approvals.policy import bundle_generation

    # the bundle served (this module's gate re-keys bob and recompiles: rendered/ has it)
    obj = json.loads((gate.work / "rendered" / ENV / "bundle.json").read_text())
    held = {a["name"]: a for a in obj["approvers"]}
    held["alice"]["keys"] = [*held["alice"]["keys"], *held["bob"]["keys"]]
    obj["generation"] = bundle_generation(obj)
    edited = gate.work / "bundle-shared-key.json"
    edited.write_text(json.dumps(obj, sort_keys=True, indent=2) + "\n")
    path = gate.work / "shared-key-run.yaml"
    path.write_text(run_manifest("shared-key"))
    for approver in ("bob", "alice"):
        gate.cli(
            "approve",
            str(path),
            "--bundle",
            str(edited),
            "--key",
            str(gate.keys / "bob.key"),
            "--approver",
            approver,
            "--in-place",
        )
    with gate.serving(edited):
        message = _denied_as_decide_says(gate, path.read_text())
    assert "1 of 2 required approvals" in message, message
    assert "by alice: valid approve" in message and "by bob: valid approve" in message


# --- the opt-in label mode, an explicit choice -------------------------------------------------


def _label_mode_configuration(gate: Gate) -> dict[str, Any]:
    """The chart's configuration for the same bundle compiled with namespaceSelection:
    optInLabel (the webhook's loaded bundle enforces whatever reaches it either way)."""
    config = gate.repo / "approvalgate.yaml"
    config.write_text(
        config.read_text().replace("defaults:\n", "defaults:\n  namespaceSelection: optInLabel\n")
    )
    out = gate.work / "rendered-label"
    gate.cli("compile", str(gate.repo), "--env", ENV, "--out", str(out))
    values = out / ENV / "approvalgate-values.yaml"
    # the operator pins the selection beside the keys (the chart refuses a content that differs)
    rendered = _chart_configuration(
        gate, "-f", str(values), "--set", "bundleSigning.namespaceSelection=optInLabel"
    )
    assert rendered["webhooks"][0]["namespaceSelector"]["matchLabels"] == {LABEL: "true"}
    return rendered


def _chart_configuration(gate: Gate, *values: str) -> dict[str, Any]:
    """The chart's webhook configuration for these values, calling the e2e webhook."""
    (rendered,) = [
        d for d in gate.chart_render(*values) if d["kind"] == "ValidatingWebhookConfiguration"
    ]
    rendered["metadata"].get("annotations", {}).pop("cert-manager.io/inject-ca-from", None)
    original = gate.webhook_configuration()
    for hook, ours in zip(rendered["webhooks"], original["webhooks"], strict=True):
        hook["clientConfig"] = ours["clientConfig"]
    return rendered


def test_an_edited_values_file_excludes_no_namespace_under_pinned_keys(
    gate: Gate, tmp_path: Path
) -> None:
    """Whoever may edit the compiled values Argo CD syncs, but not the pinned keys, adds a
    namespace to the bundle's excludeNamespaces. The pods refuse that unsigned content and
    keep enforcing the signed bundle; the webhook configuration the chart renders from the
    same values must still send the namespace, or its runs are admitted without a decision."""
    namespace = gate.plane.create_namespace("edited")
    compiled = gate.work / "rendered" / ENV / "approvalgate-values.yaml"
    values = yaml.safe_load(compiled.read_text(encoding="utf-8"))
    bundle = json.loads(values["policyBundle"]["content"])
    bundle["excludeNamespaces"] = [*bundle.get("excludeNamespaces", []), namespace]
    values["policyBundle"]["content"] = json.dumps(bundle)  # bundle.sig.json no longer holds
    edited = tmp_path / "edited-values.yaml"
    edited.write_text(yaml.safe_dump(values), encoding="utf-8")
    try:
        configuration = _chart_configuration(gate, "-f", str(edited))
        gate.kubectl("admin", "apply", "-f", "-", manifest=json.dumps(configuration))
        time.sleep(2)  # the API server's webhook informer catches up asynchronously
        _until(lambda: _judged(gate, namespace), "the namespace is still sent")
        _denied_as_decide_says(gate, run_manifest("edited", namespace=namespace))
    finally:
        gate.register()
        _drop(gate, namespace)


def _until(check: Any, what: str, seconds: float = 30) -> None:
    """The API server's namespace and webhook informers catch up asynchronously."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:.0f} s: {what}")
        time.sleep(0.2)


def _judged(gate: Gate, namespace: str) -> bool:
    probe = run_manifest("probe", namespace=namespace)
    done = gate.kubectl(REQUESTER, "create", "--dry-run=server", "-f", "-", manifest=probe)
    return done.returncode != 0 and WEBHOOK_NAME in done.stderr


def test_in_label_mode_a_namespace_admin_removing_the_label_turns_enforcement_off(
    gate: Gate, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    namespace = gate.plane.create_namespace("optin")
    gate.kubectl("admin", "label", "namespace", namespace, f"{LABEL}=true")
    # a namespace admin as clusters make them: may patch (label) their own namespace
    gate.plane.grant(
        f"approvalgate-e2e:{namespace}-admin",
        subjects=["mallory"],
        rules=[
            {
                "apiGroups": [""],
                "resources": ["namespaces"],
                "resourceNames": [namespace],
                "verbs": ["get", "patch"],
            }
        ],
    )
    label_mode = _label_mode_configuration(gate)
    try:
        gate.kubectl("admin", "apply", "-f", "-", manifest=json.dumps(label_mode))
        _until(lambda: _judged(gate, namespace), "the labelled namespace is enforced")
        _denied_as_decide_says(gate, run_manifest("labelled", namespace=namespace))

        done = gate.kubectl("mallory", "label", "namespace", namespace, f"{LABEL}-")
        assert done.returncode == 0, done.stderr
        _until(lambda: not _judged(gate, namespace), "the webhook is no longer called")
        done = gate.kubectl(
            REQUESTER, "create", "-f", "-", manifest=run_manifest("unlabelled", namespace=namespace)
        )
        assert done.returncode == 0, done.stderr  # admitted unapproved: the documented weakness

        code, report = _audit(gate, capsys, tmp_path)
        assert code == 1
        (finding,) = [f for f in report["findings"] if f["subject"] == f"Namespace/{namespace}"]
        assert finding["severity"] == "finding"
        assert f"lacks the label {LABEL}=true" in finding["message"]
    finally:
        gate.register()  # the chart's configuration for every namespace again
        _drop(gate, namespace)


def _audit(
    gate: Gate, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> tuple[int, dict[str, Any]]:
    """The audit against the label-mode bundle, as admin (who may list namespaces)."""
    capsys.readouterr()
    code = main(
        [
            "audit",
            "--kubeconfig",
            str(gate.plane.kubeconfig("admin")),
            "--bundle",
            str(gate.work / "rendered-label" / ENV / "bundle.json"),
            "--output",
            "json",
        ]
    )
    out, _ = capsys.readouterr()
    report: dict[str, Any] = json.loads(out)
    return code, report
