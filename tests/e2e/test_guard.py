"""The guard (docs/design.md "The guard") on a real kube-apiserver: the chart's
ValidatingAdmissionPolicies against whoever may patch the gate's own webhook configuration,
or (optInLabel) a namespace's labels.

Each attack is first shown to work without the guard (the control step), then refused with
the chart's guard applied, while what must keep working works: a server-side apply sync of
the chart's configuration, cert-manager's cainjector writing the caBundle, a `helm upgrade`
that changes the rendered rules, and deletion by the deployer.

The one change made to the chart's policy here: the e2e webhook is called by URL (no
Service is reachable from this API server), so the validation naming the chart's Service is
replaced by one naming that URL, as tests/e2e/gate.py replaces the configuration's
clientConfig.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from approvalgate.cli import main
from tests.e2e.controlplane import ControlPlane
from tests.e2e.gate import ENFORCED, ENV, WEBHOOK_NAME, Gate, eventually, helm, run_manifest

pytestmark = pytest.mark.e2e

CONFIG = "approvalgate"  # the release's full name: the ValidatingWebhookConfiguration's name
GUARD = "approvalgate-guard"
OPT_IN = "approvalgate-guard-opt-in"
DEPLOYMENTS_GUARD = "approvalgate-guard-deployments"
LABEL = "approvals.proompteng.ai/enforce"
SKIP = {"name": "skip-everything", "expression": "false"}
ATTACKER = "mallory"  # may patch the webhook configuration; not cluster-admin


@pytest.fixture(scope="module")
def gate(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    gate = Gate(control_plane, tmp_path_factory.mktemp("guard"))
    gate.prepare()
    for ns in (ENFORCED, "approvalgate-system"):
        control_plane.kubectl("admin", "create", "namespace", ns, check=False)
    control_plane.grant(
        "approvalgate-e2e:webhook-config-editor",
        subjects=[ATTACKER],
        rules=[
            {
                "apiGroups": ["admissionregistration.k8s.io"],
                "resources": ["validatingwebhookconfigurations"],
                "resourceNames": [CONFIG],
                "verbs": ["get", "patch", "update", "delete"],
            }
        ],
    )
    gate.start()
    gate.register()
    try:
        yield gate
    finally:
        _unguard(gate)
        gate.unregister()
        gate.stop()


def guard_objects(gate: Gate, *values: str) -> list[dict[str, Any]]:
    """The chart's guard for these values, its Service check naming the e2e webhook's URL."""
    objects = [
        d
        for d in gate.chart_render(*values)
        if d["kind"] in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
    ]
    url = gate.webhook_configuration()["webhooks"][0]["clientConfig"]["url"]
    for obj in objects:
        if obj["metadata"]["name"] == GUARD and obj["kind"] == "ValidatingAdmissionPolicy":
            (check,) = [v for v in obj["spec"]["validations"] if "Service" in v["message"]]
            check["expression"] = (
                f"variables.hooks.all(w, !has(w.clientConfig.service) && "
                f"has(w.clientConfig.url) && w.clientConfig.url == {json.dumps(url)})"
            )
    return objects


def _apply(gate: Gate, objects: list[dict[str, Any]]) -> None:
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    done = gate.kubectl(
        "admin", "apply", "--server-side", "--force-conflicts", "-f", "-", manifest=manifest
    )
    assert done.returncode == 0, done.stderr


def _unguard(gate: Gate) -> None:
    """The guard deleted, and out of force (the API server drops it asynchronously too)."""
    for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
        gate.kubectl(
            "admin", "delete", kind, GUARD, OPT_IN, DEPLOYMENTS_GUARD, "--ignore-not-found"
        )
    add = [{"op": "add", "path": "/webhooks/0/matchConditions", "value": [SKIP]}]
    eventually(
        "the guard is out of force",
        lambda: (
            "ValidatingAdmissionPolicy"
            not in _patch(gate, ATTACKER, add, "--dry-run=server").stderr
        ),
    )


def _patch(
    gate: Gate, user: str, ops: list[dict[str, Any]], *extra: str
) -> subprocess.CompletedProcess[str]:
    return gate.kubectl(
        user,
        "patch",
        "validatingwebhookconfiguration",
        CONFIG,
        "--type=json",
        "-p",
        json.dumps(ops),
        *extra,
    )


def _refused(done: subprocess.CompletedProcess[str], message: str) -> bool:
    return (
        done.returncode != 0
        and f"ValidatingAdmissionPolicy '{GUARD}' with binding '{GUARD}' denied request"
        in done.stderr
        and message in done.stderr
    )


def _guarded(gate: Gate) -> None:
    """The API server compiles policies asynchronously: wait until the guard is in force."""
    eventually(
        "the guard refuses an added matchCondition",
        lambda: _refused(
            _patch(
                gate,
                ATTACKER,
                [{"op": "add", "path": "/webhooks/0/matchConditions", "value": [SKIP]}],
                "--dry-run=server",
            ),
            "matchConditions",
        ),
    )


def _admitted(gate: Gate, name: str) -> bool:
    done = gate.kubectl(
        "requester", "create", "--dry-run=server", "-f", "-", manifest=run_manifest(name)
    )
    return done.returncode == 0


def _denied_by_the_webhook(gate: Gate, name: str) -> bool:
    done = gate.kubectl(
        "requester", "create", "--dry-run=server", "-f", "-", manifest=run_manifest(name)
    )
    return done.returncode != 0 and WEBHOOK_NAME in done.stderr


def live(gate: Gate) -> dict[str, Any]:
    done = gate.kubectl("admin", "get", "validatingwebhookconfiguration", CONFIG, "-o", "json")
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def sync(
    gate: Gate, config: dict[str, Any], user: str = "admin"
) -> subprocess.CompletedProcess[str]:
    """What an Argo CD sync with ServerSideApply=true sends."""
    return gate.kubectl(
        user,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=argocd-controller",
        "-f",
        "-",
        manifest=json.dumps(config),
    )


WEAKENINGS: dict[str, tuple[list[dict[str, Any]], str]] = {
    "matchConditions": (
        [{"op": "add", "path": "/webhooks/0/matchConditions", "value": [SKIP]}],
        "matchConditions on the gate's webhooks let requests skip the gate",
    ),
    "objectSelector": (
        [
            {
                "op": "add",
                "path": "/webhooks/0/objectSelector",
                "value": {"matchLabels": {"g": "on"}},
            }
        ],
        "an objectSelector on the gate's webhooks lets objects skip the gate",
    ),
    "namespaceSelector": (
        [
            {
                "op": "add",
                "path": "/webhooks/0/namespaceSelector",
                "value": {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": [ENFORCED],
                        }
                    ]
                },
            }
        ],
        "namespaceSelector must stay as the chart renders it",
    ),
    "failurePolicy": (
        [{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}],
        "must keep failurePolicy Fail",
    ),
    "a rule removed": (
        [{"op": "remove", "path": "/webhooks/0/rules/0"}],
        "rules must stay as the chart renders them",
    ),
    "an operation removed": (
        [{"op": "replace", "path": "/webhooks/0/rules/0/operations", "value": ["UPDATE"]}],
        "rules must stay as the chart renders them",
    ),
    "an entry removed": (
        [{"op": "remove", "path": "/webhooks/0"}],
        "must keep exactly its entries",
    ),
    "another endpoint": (
        [
            {
                "op": "replace",
                "path": "/webhooks/0/clientConfig/url",
                "value": "https://127.0.0.1:1/validate",
            }
        ],
        "must call the Service",
    ),
}


def test_a_match_condition_added_by_whoever_may_patch_the_configuration_is_refused(
    gate: Gate,
) -> None:
    # control: without the guard the patch is admitted and the API server stops asking the
    # webhook (the hole: an unapproved run admitted)
    done = _patch(gate, ATTACKER, WEAKENINGS["matchConditions"][0])
    assert done.returncode == 0, done.stderr
    try:
        eventually(
            "an unapproved run admitted without the webhook", lambda: _admitted(gate, "skipped")
        )
    finally:
        gate.unregister()
        gate.register()
    _apply(gate, guard_objects(gate))
    try:
        _guarded(gate)
        before = live(gate)
        for what, (ops, message) in WEAKENINGS.items():
            done = _patch(gate, ATTACKER, ops)
            assert _refused(done, message), f"{what}: {done.returncode} {done.stderr}"
        after = live(gate)
        assert after["webhooks"] == before["webhooks"]
        assert _denied_by_the_webhook(gate, "still-judged")
        # The sync as Argo CD sends it passes: the chart's configuration is what it expects.
        done = sync(gate, gate.webhook_configuration())
        assert done.returncode == 0, done.stderr
        # ... and so does anyone's sync of something weaker, never
        weaker = gate.webhook_configuration()
        weaker["webhooks"][0]["matchConditions"] = [SKIP]
        assert _refused(sync(gate, weaker), "matchConditions")
    finally:
        _unguard(gate)


def test_drift_from_before_the_guard_fails_the_sync_loudly_until_removed(gate: Gate) -> None:
    """A matchCondition added before the guard was installed: a server-side apply sync cannot
    remove it (another manager's entry), so with the guard the sync is refused, naming it,
    rather than leaving it silently; removing it is an update back to the render, which
    anyone allowed to patch may make, and the sync then passes."""
    done = _patch(gate, ATTACKER, WEAKENINGS["matchConditions"][0])
    assert done.returncode == 0, done.stderr
    _apply(gate, guard_objects(gate))
    try:
        _guarded(gate)
        assert _refused(sync(gate, gate.webhook_configuration()), "matchConditions")
        done = _patch(gate, "admin", [{"op": "remove", "path": "/webhooks/0/matchConditions"}])
        assert done.returncode == 0, done.stderr
        done = sync(gate, gate.webhook_configuration())
        assert done.returncode == 0, done.stderr
        assert _denied_by_the_webhook(gate, "after-the-repair")
    finally:
        _unguard(gate)
        gate.unregister()
        gate.register()


def test_the_ca_bundle_stays_writable(gate: Gate) -> None:
    """cert-manager's cainjector patches the caBundle of every entry (as anyone not the
    deployer): a changed bundle (the CA twice, as a rotation holds old and new) passes."""
    _apply(gate, guard_objects(gate))
    try:
        _guarded(gate)
        pem = base64.b64decode(live(gate)["webhooks"][0]["clientConfig"]["caBundle"])
        rotated = base64.b64encode(pem + pem).decode()
        ops = [
            {"op": "replace", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": rotated}
            for i in range(len(live(gate)["webhooks"]))
        ]
        done = _patch(gate, ATTACKER, ops)
        assert done.returncode == 0, done.stderr
        assert all(h["clientConfig"]["caBundle"] == rotated for h in live(gate)["webhooks"])
        assert _denied_by_the_webhook(gate, "after-injection")
    finally:
        _unguard(gate)
        gate.unregister()
        gate.register()


def test_only_the_named_deployers_may_delete_or_change_it(gate: Gate) -> None:
    """guard.deployers named (the Argo CD Application names its controller): anyone else's
    DELETE is refused; the deployer may change and delete the configuration (prune)."""
    _apply(gate, guard_objects(gate, "--set", "guard.deployers.users={admin}"))
    try:
        _guarded(gate)
        done = gate.kubectl(ATTACKER, "delete", "validatingwebhookconfiguration", CONFIG)
        assert _refused(done, "deleting the gate's webhook configuration"), done.stderr
        done = _patch(gate, "admin", WEAKENINGS["failurePolicy"][0])
        assert done.returncode == 0, done.stderr
        done = gate.kubectl("admin", "delete", "validatingwebhookconfiguration", CONFIG)
        assert done.returncode == 0, done.stderr
    finally:
        _unguard(gate)
        gate.unregister()
        gate.register()


def test_with_no_deployer_named_deletion_is_left_to_rbac(gate: Gate) -> None:
    """Empty guard.deployers (the chart's default): helm uninstall and Argo CD's prune delete
    the configuration as whoever runs them, so DELETE is not guarded (the audit reports a
    missing configuration as the gate off)."""
    _apply(gate, guard_objects(gate))
    try:
        _guarded(gate)
        done = gate.kubectl(ATTACKER, "delete", "validatingwebhookconfiguration", CONFIG)
        assert done.returncode == 0, done.stderr
    finally:
        _unguard(gate)
        gate.register()


def _chart_copy(gate: Gate, tmp_path: Path, name: str, objects: list[dict[str, Any]]) -> Path:
    """A chart whose templates are these rendered objects: `helm upgrade` then applies them
    in Helm's own order, as it applies the real chart's."""
    chart = tmp_path / name
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: approvalgate\nversion: 0.1.0\n")
    for i, rendered in enumerate(objects):
        obj = copy.deepcopy(rendered)
        obj["metadata"].pop("namespace", None)
        text = yaml.safe_dump(obj, sort_keys=False)
        assert "{{" not in text
        (chart / "templates" / f"{i}.yaml").write_text(text)
    return chart


@pytest.mark.parametrize(
    "deployers", [(), ("--set", "guard.deployers.users={admin}")], ids=["none", "named"]
)
def test_a_helm_upgrade_that_changes_the_rules_passes_the_guard(
    gate: Gate, tmp_path: Path, deployers: tuple[str, ...]
) -> None:
    """A new chart version changing the rendered rules (here: one resource fewer in the
    parents' rule). With the deployer named (guard.deployers), `helm upgrade` passes at
    once. With none, Helm applies the new guard before the configuration (it orders
    ValidatingAdmissionPolicy before ValidatingWebhookConfiguration), and the configuration
    meets the new guard once the API server has compiled it: a try or two."""
    old = [*guard_objects(gate, *deployers), gate.webhook_configuration()]
    new = copy.deepcopy(old)
    for obj in new:
        if obj["kind"] == "ValidatingWebhookConfiguration":
            obj["webhooks"][0]["rules"][1]["resources"] = ["schedules"]
        if obj["kind"] == "ValidatingAdmissionPolicy":
            for check in obj["spec"]["validations"]:
                check["expression"] = check["expression"].replace(
                    '"schedules","schedules/scale"', '"schedules"'
                )
    assert new != old
    kubeconfig = str(gate.plane.kubeconfig("admin"))
    gate.unregister()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(helm()), *args, "--kubeconfig", kubeconfig, "-n", "approvalgate-system"],
            capture_output=True,
            text=True,
            check=False,
        )

    try:
        done = run("install", "approvalgate", str(_chart_copy(gate, tmp_path, "v1", old)))
        assert done.returncode == 0, done.stderr
        _guarded(gate)
        assert _refused(_patch(gate, ATTACKER, WEAKENINGS["a rule removed"][0]), "rules")
        v2 = str(_chart_copy(gate, tmp_path, "v2", new))
        done = run("upgrade", "approvalgate", v2)
        if not deployers and done.returncode != 0:
            # Helm applies the new guard first, but the API server compiles it
            # asynchronously: the configuration, patched milliseconds later, may still meet
            # the old one. Refused by the guard and nothing else; the next try passes
            # (Argo CD retries; with helm, name yourself in guard.deployers).
            assert "the gate's webhook rules must stay as the chart renders them" in done.stderr
            eventually(
                "the upgrade passes once the new guard is in force",
                lambda: run("upgrade", "approvalgate", v2).returncode == 0,
            )
        else:
            assert done.returncode == 0, done.stderr
        assert live(gate)["webhooks"][0]["rules"][1]["resources"] == ["schedules"]
        # the new guard holds the new rules
        restored = [
            {
                "op": "replace",
                "path": "/webhooks/0/rules/1/resources",
                "value": ["schedules", "schedules/scale"],
            }
        ]
        eventually(
            "the upgraded guard is in force",
            lambda: _refused(_patch(gate, ATTACKER, restored, "--dry-run=server"), "rules"),
        )
        done = run("uninstall", "approvalgate", "--wait")
        assert done.returncode == 0, done.stderr
    finally:
        run("uninstall", "approvalgate")
        _unguard(gate)
        gate.unregister()
        gate.register()


def _label_mode_values(gate: Gate) -> Path:
    """The example compiled with namespaceSelection: optInLabel (the repo left as it was)."""
    config = gate.repo / "approvalgate.yaml"
    text = config.read_text()
    config.write_text(text.replace("defaults:\n", "defaults:\n  namespaceSelection: optInLabel\n"))
    try:
        out = gate.work / "rendered-label"
        gate.cli("compile", str(gate.repo), "--env", ENV, "--out", str(out))
    finally:
        config.write_text(text)
    return out / ENV / "approvalgate-values.yaml"


def test_in_label_mode_removing_the_opt_in_label_is_refused(gate: Gate) -> None:
    """Class 22: a namespace admin who may patch her namespace removes (or changes) the
    opt-in label and the API server stops sending its runs to the gate. With the chart's
    guard in label mode that update is refused; other labels stay hers, and a deployer may
    still opt the namespace out."""
    namespace = gate.plane.create_namespace("optin")
    gate.kubectl("admin", "label", "namespace", namespace, f"{LABEL}=true")
    gate.plane.grant(
        f"approvalgate-e2e:{namespace}-admin",
        subjects=[ATTACKER],
        rules=[
            {
                "apiGroups": [""],
                "resources": ["namespaces"],
                "resourceNames": [namespace],
                "verbs": ["get", "patch", "update"],
            }
        ],
    )
    # control: without the guard the label goes
    done = gate.kubectl(ATTACKER, "label", "namespace", namespace, f"{LABEL}-")
    assert done.returncode == 0, done.stderr
    gate.kubectl("admin", "label", "namespace", namespace, f"{LABEL}=true")

    values = _label_mode_values(gate)
    objects = guard_objects(
        gate,
        "-f",
        str(values),
        "--set",
        "bundleSigning.namespaceSelection=optInLabel",
        "--set",
        "guard.deployers.groups={system:masters}",
    )
    assert {o["metadata"]["name"] for o in objects} == {GUARD, OPT_IN, DEPLOYMENTS_GUARD}
    _apply(gate, objects)
    refusal = f"ValidatingAdmissionPolicy '{OPT_IN}' with binding '{OPT_IN}' denied request"
    try:
        eventually(
            "the opt-in guard is in force",
            lambda: (
                refusal
                in gate.kubectl(
                    ATTACKER, "label", "namespace", namespace, f"{LABEL}-", "--dry-run=server"
                ).stderr
            ),
        )
        for change in (f"{LABEL}-", f"{LABEL}=false", f"{LABEL}=True"):
            done = gate.kubectl(ATTACKER, "label", "--overwrite", "namespace", namespace, change)
            assert done.returncode != 0 and refusal in done.stderr, (change, done.stderr)
            assert "only guard.deployers may remove or change it" in done.stderr
        patch = {"metadata": {"labels": {LABEL: None}}}
        done = gate.kubectl(
            ATTACKER, "patch", "namespace", namespace, "--type=merge", "-p", json.dumps(patch)
        )
        assert done.returncode != 0 and refusal in done.stderr, done.stderr
        done = gate.kubectl(ATTACKER, "label", "namespace", namespace, "team=platform")
        assert done.returncode == 0, done.stderr
        done = gate.kubectl("admin", "label", "namespace", namespace, f"{LABEL}-")
        assert done.returncode == 0, done.stderr  # a deployer (system:masters here) may
    finally:
        _unguard(gate)
        gate.kubectl("admin", "delete", "namespace", namespace, "--wait=false")


def _guard_findings(
    gate: Gate, capsys: pytest.CaptureFixture[str], manifest: Path
) -> list[dict[str, Any]]:
    capsys.readouterr()
    main(
        [
            "audit",
            "--kubeconfig",
            str(gate.plane.kubeconfig("admin")),
            "--repo",
            str(gate.repo),
            "--env",
            ENV,
            "--webhook-manifest",
            str(manifest),
            "--output",
            "json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    return [f for f in report["findings"] if f["subject"].startswith("ValidatingAdmissionPolicy")]


def test_the_audit_reports_a_missing_or_altered_guard(
    gate: Gate, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Whoever may edit admission policies can make way for a weakened configuration by
    switching the guard to Audit (or deleting it): the audit says so."""
    objects = guard_objects(gate)
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(
        yaml.safe_dump_all([*objects, gate.webhook_configuration()]), encoding="utf-8"
    )
    (missing,) = _guard_findings(gate, capsys, manifest)
    assert missing["severity"] == "note" and "is not installed" in missing["message"]
    _apply(gate, objects)
    try:
        assert _guard_findings(gate, capsys, manifest) == []
        patch = {"spec": {"validationActions": ["Audit"]}}
        done = gate.kubectl(
            "admin",
            "patch",
            "validatingadmissionpolicybinding",
            GUARD,
            "--type=merge",
            "-p",
            json.dumps(patch),
        )
        assert done.returncode == 0, done.stderr
        found = _guard_findings(gate, capsys, manifest)
        assert {(f["severity"], f["field"]) for f in found} == {
            ("finding", "spec.validationActions")
        }
        assert "its actions are Audit, without Deny" in found[0]["message"]
    finally:
        _unguard(gate)


def test_the_gates_deployments_keep_their_pod_template(gate: Gate) -> None:
    """Optional third shape (only with guard.deployers named): whoever may patch the gate's
    Deployments in the release namespace adds PYTHONPATH (code of theirs in the webhook), a
    volume, a container or another image, which outlived every sync (an entry of a list kept
    by name is its adder's). With the guard those updates are refused; scaling and a
    restart (a template annotation) stay free, and the deployer may change the image."""
    release = "approvalgate-system"
    (deployment,) = [
        d
        for d in gate.chart_render()
        if d["kind"] == "Deployment" and d["metadata"]["name"] == CONFIG
    ]
    deployment["metadata"]["namespace"] = release
    done = gate.kubectl(
        "admin", "apply", "--server-side", "-f", "-", manifest=json.dumps(deployment)
    )
    assert done.returncode == 0, done.stderr
    gate.plane.grant(
        "approvalgate-e2e:deployment-editor",
        subjects=[ATTACKER],
        namespace=release,
        rules=[
            {
                "apiGroups": ["apps"],
                "resources": ["deployments", "deployments/scale"],
                "verbs": ["get", "patch", "update"],
            }
        ],
    )

    def patch(
        user: str, ops: list[dict[str, Any]], *extra: str
    ) -> subprocess.CompletedProcess[str]:
        return gate.kubectl(
            user,
            "patch",
            "deployment",
            CONFIG,
            "-n",
            release,
            "--type=json",
            "-p",
            json.dumps(ops),
            *extra,
        )

    env = [
        {
            "op": "add",
            "path": "/spec/template/spec/containers/0/env/-",
            "value": {"name": "PYTHONPATH", "value": "/tmp/theirs"},
        }
    ]
    # control: without the guard the env entry is admitted
    done = patch(ATTACKER, env, "--dry-run=server")
    assert done.returncode == 0, done.stderr

    objects = guard_objects(gate, "--set", "guard.deployers.users={admin}")
    assert DEPLOYMENTS_GUARD in {o["metadata"]["name"] for o in objects}
    _apply(gate, objects)
    refusal = (
        f"ValidatingAdmissionPolicy '{DEPLOYMENTS_GUARD}' "
        f"with binding '{DEPLOYMENTS_GUARD}' denied request"
    )
    try:
        eventually(
            "the Deployments' guard is in force",
            lambda: refusal in patch(ATTACKER, env, "--dry-run=server").stderr,
        )
        container = {"name": "theirs", "image": "registry.invalid/theirs:1"}
        weakenings = {
            "env": env,
            "volume": [
                {
                    "op": "add",
                    "path": "/spec/template/spec/volumes/-",
                    "value": {"name": "theirs", "emptyDir": {}},
                }
            ],
            "container": [
                {"op": "add", "path": "/spec/template/spec/containers/-", "value": container}
            ],
            "image": [
                {
                    "op": "replace",
                    "path": "/spec/template/spec/containers/0/image",
                    "value": "registry.invalid/theirs:1",
                }
            ],
            "label": [{"op": "add", "path": "/spec/template/metadata/labels/extra", "value": "x"}],
        }
        for what, ops in weakenings.items():
            done = patch(ATTACKER, ops)
            assert done.returncode != 0 and refusal in done.stderr, (what, done.stderr)
        done = gate.kubectl(ATTACKER, "scale", "deployment", CONFIG, "-n", release, "--replicas=3")
        assert done.returncode == 0, done.stderr
        restart = [
            {
                "op": "add",
                "path": "/spec/template/metadata/annotations",
                "value": {"kubectl.kubernetes.io/restartedAt": "2026-12-07T20:00:00Z"},
            }
        ]
        done = patch(ATTACKER, restart)
        assert done.returncode == 0, done.stderr
        done = patch("admin", weakenings["image"])
        assert done.returncode == 0, done.stderr
    finally:
        _unguard(gate)
        gate.kubectl("admin", "delete", "deployment", CONFIG, "-n", release, "--ignore-not-found")
