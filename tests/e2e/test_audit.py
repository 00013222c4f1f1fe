"""`approvalgate audit` against the real API server, with the real webhook registered by the chart.

Runs are created while the webhook is unregistered (the gap the audit exists for), then the
webhook is registered and the live cluster is audited: the runs that slipped through are
found, the live webhook configuration is edited the way an attacker would, PolicyReports are
written twice, and the CronJob's RBAC (rendered by helm) is proved minimal by running the
audit as that ServiceAccount (impersonated) with each permission removed in turn.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from approvalgate.approvals.identity import POD_NAME_EXTRA
from approvalgate.cli import build_parser, main
from tests.e2e.controlplane import ControlPlane
from tests.e2e.gate import (
    ENFORCED,
    ENV,
    EXAMPLE,
    WEBHOOK_NAME,
    Gate,
    eventually,
    pod_bound_token,
    run_manifest,
)

pytestmark = pytest.mark.e2e

RELEASE_NS = "approvalgate-system"
SA = f"system:serviceaccount:{RELEASE_NS}:approvalgate-audit"
CONFIG = "approvalgate"  # the release's full name: the ValidatingWebhookConfiguration's name
REPORTS = ("policyreports.wgpolicyk8s.io",)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def gate(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    """The example repo compiled for staging, its ApprovalPolicies applied, runs created while
    the webhook was not registered, then the webhook registered as the chart renders it."""
    gate = Gate(control_plane, tmp_path_factory.mktemp("audit"))
    gate.prepare()
    for ns in (ENFORCED, RELEASE_NS):
        control_plane.kubectl("admin", "create", "namespace", ns, check=False)
    control_plane.kubectl(
        "admin", "apply", "-f", str(gate.work / "rendered" / ENV / "approvalpolicies")
    )
    gate.unregister()  # nothing judges these runs: the webhook is down or not installed
    # The audit lists every namespace: start from a cluster holding this module's runs only
    # (earlier modules leave runs in namespaces that, without a namespace controller, never
    # finish terminating).
    # Runs judged by records where the view is required hold the approval-use finalizer
    # until a queue controller has recorded their use: one runs while they are deleted.
    gate.install_rbac()
    gate.start_controller()
    try:
        control_plane.kubectl(
            "admin", "delete", "agentruns", "--all", "--all-namespaces", "--wait=false"
        )
        _wait_until_no_runs(gate)
        yield from _audited(gate, control_plane)
    finally:
        gate.stop()


def _wait_until_no_runs(gate: Gate, timeout: float = 120) -> None:
    def left() -> list[dict[str, Any]]:
        done = gate.kubectl("admin", "get", "agentruns", "-A", "-o", "json")
        found: list[dict[str, Any]] = json.loads(done.stdout)["items"]
        return found

    deadline = time.monotonic() + timeout
    while left():
        if time.monotonic() > deadline:
            meta = [
                {k: r["metadata"].get(k) for k in ("namespace", "name", "finalizers", "uid")}
                for r in left()
            ]
            raise AssertionError(
                f"runs not deleted in {timeout:.0f}s: {meta}\n"
                + "\n".join(c.log(3000) for c in gate.controllers)
            )
        time.sleep(0.5)


def _audited(gate: Gate, control_plane: ControlPlane) -> Iterator[Gate]:
    past = _stamp(datetime.now(UTC) - timedelta(days=2))
    runs = {
        # with the approval-use finalizer: what it lacks is then its approvals (without it,
        # decide() names the missing finalizer first)
        "audit-slipped": run_manifest("audit-slipped", task="Slipped in", finalizer=True),
        "audit-approved": gate.approve(
            run_manifest("audit-approved", task="Approved"), "alice", "bob"
        ),
        "audit-expired": gate.approve(
            run_manifest("audit-expired", task="Expired"),
            "alice",
            "bob",
            extra=("--now", past, "--ttl", "1h"),
        ),
        "audit-authored": run_manifest("audit-authored", task="Authored").replace(
            "  namespace: agents\n",
            "  namespace: agents\n  annotations:\n    approvals.proompteng.ai/requested-by: dana\n",
        ),
    }
    for name, manifest in runs.items():
        done = gate.kubectl("requester", "apply", "-f", "-", manifest=manifest)
        assert done.returncode == 0, f"{name}: {done.stderr}"
    expected = gate.work / "expected-webhook.yaml"
    expected.write_text(yaml.safe_dump(gate.webhook_configuration()))
    gate.start(controller=False)  # the one above goes on
    gate.register()
    try:
        yield gate
    finally:
        gate.unregister()


def audit(
    gate: Gate,
    capsys: pytest.CaptureFixture[str],
    *extra: str,
    user: str = "admin",
    output: str = "json",
) -> tuple[int, Any, str]:
    """Run the audit in this process; return (exit code, parsed output, stderr)."""
    capsys.readouterr()
    code = main(
        [
            "audit",
            "--kubeconfig",
            str(gate.plane.kubeconfig(user)),
            "--repo",
            str(gate.repo),
            "--env",
            ENV,
            "--webhook-manifest",
            str(gate.work / "expected-webhook.yaml"),
            "--output",
            output,
            *extra,
        ]
    )
    out, err = capsys.readouterr()
    parsed = json.loads(out) if output == "json" and out.strip() else out
    return code, parsed, err


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in report["runs"]}


def failing(report: dict[str, Any], area: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["area"] == area and f["severity"] == "finding"]


def live_webhook(gate: Gate) -> dict[str, Any]:
    done = gate.kubectl("admin", "get", "validatingwebhookconfiguration", CONFIG, "-o", "json")
    assert done.returncode == 0, done.stderr
    obj: dict[str, Any] = json.loads(done.stdout)
    return obj


def replace_webhook(gate: Gate, obj: dict[str, Any]) -> None:
    done = gate.kubectl("admin", "replace", "-f", "-", manifest=json.dumps(obj))
    assert done.returncode == 0, done.stderr


# --- runs -----------------------------------------------------------------------------------


def test_runs_created_while_the_webhook_was_unregistered_are_found(
    gate: Gate, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, err = audit(gate, capsys, "--page-size", "2")
    assert code == 1, err
    runs = by_name(report)
    listed = json.loads(
        gate.kubectl("admin", "get", "agentruns", "-n", ENFORCED, "-o", "json").stdout
    )
    assert set(runs) == {r["metadata"]["name"] for r in listed["items"]}  # every page read

    slipped = runs["audit-slipped"]
    assert (slipped["result"], slipped["rule"]) == ("fail", "recorded-approvals")
    assert slipped["message"].startswith(
        "AgentRun agents/audit-slipped would be denied if created now: it lacks the approvals "
        "it needs (missing-approvals); it would have been denied when it was created ("
    )
    assert "policy agents/codex-two-person: 0 of 2 required approvals" in slipped["message"]
    assert "decided for an unknown requester" in slipped["message"]
    assert slipped["properties"]["requester"] == "unknown (not recorded on the object)"
    assert "kubectl delete agentrun -n agents audit-slipped" in slipped["advice"]

    approved = runs["audit-approved"]
    assert (approved["result"], approved["rule"]) == ("pass", "recorded-approvals")
    assert approved["message"].startswith(
        "AgentRun agents/audit-approved is approved by alice, bob"
    )

    authored = runs["audit-authored"]
    assert (authored["result"], authored["rule"]) == ("warn", "trusted-submitter-unverified")
    assert "system:serviceaccount:agents-system:submission-api" in authored["message"]
    assert authored["properties"]["author"] == "dana"

    # Nothing else is wrong: the webhook and the policies are exactly what git says.
    assert failing(report, "webhook") == []
    assert failing(report, "policies") == []
    assert report["exitCode"] == 1


def test_a_run_whose_approvals_had_expired_is_reported_as_such(
    gate: Gate, capsys: pytest.CaptureFixture[str]
) -> None:
    _, report, _ = audit(gate, capsys)
    expired = by_name(report)["audit-expired"]
    assert (expired["result"], expired["rule"]) == ("fail", "approvals-expired")
    assert "its approvals had already expired (alice expired at " in expired["message"]
    assert "record 0 by alice: expired at" in expired["message"]
    assert expired["properties"]["expired"] == "true"


def test_approvals_that_expired_after_admission_are_a_warning(
    gate: Gate, capsys: pytest.CaptureFixture[str]
) -> None:
    later = _stamp(datetime.now(UTC) + timedelta(days=3))  # the default TTL is 24 h
    _, report, _ = audit(gate, capsys, "--now", later)
    approved = by_name(report)["audit-approved"]
    assert (approved["result"], approved["rule"]) == ("warn", "approvals-expired")
    assert "was admissible when it was created" in approved["message"]
    assert "expired at" in approved["message"]


def test_text_output_says_what_to_do(gate: Gate, capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = audit(gate, capsys, output="text")
    assert code == 1
    assert "FAIL agents/audit-slipped [recorded-approvals]" in text
    assert "    fix: delete it (`kubectl delete agentrun -n agents audit-slipped`)" in text
    assert "Who created a run is not recorded on it" in text
    assert "pass agents/audit-approved" in text
    assert text.rstrip().splitlines()[-1].startswith("FAILED: 0 finding(s)")


# --- the webhook configuration --------------------------------------------------------------


@pytest.fixture
def restored(gate: Gate) -> Iterator[dict[str, Any]]:
    """The live configuration; registered afresh, as the chart renders it, after the test."""
    yield live_webhook(gate)
    gate.unregister()
    gate.register()


def test_failure_policy_ignore_is_found(
    gate: Gate, capsys: pytest.CaptureFixture[str], restored: dict[str, Any]
) -> None:
    edited = copy.deepcopy(restored)
    edited["webhooks"][0]["failurePolicy"] = "Ignore"
    edited["webhooks"][0]["timeoutSeconds"] = 10  # harmless: a note, not a finding
    replace_webhook(gate, edited)
    code, report, _ = audit(gate, capsys)
    assert code == 1
    (finding,) = failing(report, "webhook")
    assert finding["field"] == f"webhooks[{WEBHOOK_NAME}].failurePolicy"
    assert finding["message"].startswith("failurePolicy is Ignore (the chart sets Fail)")
    assert "restore it from the chart" in finding["advice"]
    notes = [f["field"] for f in report["findings"] if f["severity"] == "note"]
    assert f"webhooks[{WEBHOOK_NAME}].timeoutSeconds" in notes


def test_removing_the_agentruns_rule_is_found(
    gate: Gate, capsys: pytest.CaptureFixture[str], restored: dict[str, Any]
) -> None:
    edited = copy.deepcopy(restored)
    edited["webhooks"][0]["rules"][0]["resources"] = ["agents", "agentruns/scale"]
    replace_webhook(gate, edited)
    code, report, _ = audit(gate, capsys)
    assert code == 1
    (finding,) = failing(report, "webhook")
    assert finding["field"] == f"webhooks[{WEBHOOK_NAME}].rules"
    assert finding["message"] == (
        "the rules no longer send CREATE of agentruns.agents.proompteng.ai (v1alpha1); UPDATE "
        "of agentruns.agents.proompteng.ai (v1alpha1) to the webhook: those requests are "
        "admitted without a decision"
    )


def test_a_narrower_namespace_selector_and_an_object_selector_are_found(
    gate: Gate, capsys: pytest.CaptureFixture[str], restored: dict[str, Any]
) -> None:
    edited = copy.deepcopy(restored)
    hook = edited["webhooks"][0]
    # with pinned keys the chart sends every namespace: exclude the enforced one by name
    hook["namespaceSelector"] = {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [ENFORCED]}
        ]
    }
    hook["objectSelector"] = {"matchLabels": {"gate": "on"}}
    replace_webhook(gate, edited)
    _, report, _ = audit(gate, capsys)
    fields = {f["field"]: f["message"] for f in failing(report, "webhook")}
    assert set(fields) == {
        f"webhooks[{WEBHOOK_NAME}].namespaceSelector",
        f"webhooks[{WEBHOOK_NAME}].objectSelector",
    }
    assert fields[f"webhooks[{WEBHOOK_NAME}].namespaceSelector"].endswith(
        "this excludes the enforced namespace(s) agents"
    )


def test_a_deleted_configuration_is_found(
    gate: Gate, capsys: pytest.CaptureFixture[str], restored: dict[str, Any]
) -> None:
    gate.kubectl("admin", "delete", "validatingwebhookconfiguration", CONFIG)
    code, report, _ = audit(gate, capsys)
    assert code == 1
    (finding,) = failing(report, "webhook")
    assert (
        "does not exist: no AgentRun request is sent to approvalgate, the gate is off"
        in (finding["message"])
    )


def test_an_addition_a_server_side_apply_sync_leaves_is_found(
    gate: Gate, capsys: pytest.CaptureFixture[str], restored: dict[str, Any]
) -> None:
    """Argo CD syncs the chart with ServerSideApply=true, and every sync (selfHeal, or the
    next policy change) applies the chart's manifest again as its own field manager: what it
    applies is put back, but a field another manager added and it does not apply is not its
    to remove. The chart renders both selectors, even empty, so the sync owns them and puts
    back a namespace exclusion or an objectSelector someone added (a LabelSelector is atomic
    to server-side apply; without `objectSelector: {}` in the chart an added one stayed). A
    matchCondition that is always false, added by anyone who may patch the configuration,
    is an entry of a list kept by name, its adder's: it outlives the re-apply, and the API
    server then admits an unapproved run without asking the webhook. The audit finds it."""
    chart = gate.webhook_configuration()

    def sync() -> None:  # what an Argo CD sync with ServerSideApply=true sends
        done = gate.kubectl(
            "admin",
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=argocd-controller",
            "-f",
            "-",
            manifest=json.dumps(chart),
        )
        assert done.returncode == 0, done.stderr

    sync()
    skip = {"name": "skip-everything", "expression": "false"}
    away = {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [ENFORCED]}
    added = [
        {"op": "add", "path": "/webhooks/0/matchConditions", "value": [skip]},
        {"op": "add", "path": "/webhooks/0/namespaceSelector/matchExpressions", "value": [away]},
        {"op": "add", "path": "/webhooks/0/objectSelector", "value": {"matchLabels": {"g": "on"}}},
    ]
    done = gate.kubectl(
        "admin",
        "patch",
        "validatingwebhookconfiguration",
        CONFIG,
        "--type=json",
        "--field-manager=someone-else",
        "-p",
        json.dumps(added),
    )
    assert done.returncode == 0, done.stderr
    sync()
    hook = live_webhook(gate)["webhooks"][0]
    assert hook["namespaceSelector"] == {} and hook["objectSelector"] == {}
    assert hook["matchConditions"] == [skip]

    probe = run_manifest("not-approved-after-a-sync")
    eventually(
        "an unapproved run admitted without the webhook",
        lambda: (
            gate.kubectl(
                "requester", "apply", "--dry-run=server", "-f", "-", manifest=probe
            ).returncode
            == 0
        ),
    )
    code, report, _ = audit(gate, capsys)
    assert code == 1
    (finding,) = failing(report, "webhook")
    assert finding["field"] == f"webhooks[{WEBHOOK_NAME}].matchConditions"
    assert "skip-everything" in finding["message"]


WORKLOAD_KINDS = ("Deployment", "CronJob", "Service")


@pytest.fixture
def chart_workloads(gate: Gate) -> Iterator[list[dict[str, Any]]]:
    """The chart's Deployments and Services, as rendered for this environment (nothing runs
    them here: no controller manager, no kubelet); deleted afterwards."""
    docs = [  # what the audit's ConfigMap embeds (not the controller's metrics Service)
        d
        for d in gate.chart_render()
        if d["kind"] in WORKLOAD_KINDS
        and (d["kind"] != "Service" or d["metadata"]["name"] == CONFIG)
    ]
    yield docs
    for doc in docs:
        gate.kubectl(
            "admin", "delete", doc["kind"].lower(), doc["metadata"]["name"], "-n", RELEASE_NS
        )
    gate.kubectl("admin", "delete", "rolebinding", "patch-gate", "-n", RELEASE_NS)
    gate.kubectl("admin", "delete", "role", "patch-gate", "-n", RELEASE_NS)


def expected_chart(gate: Gate, workloads: list[dict[str, Any]]) -> Path:
    """--webhook-manifest as the CronJob's ConfigMap holds it: the configuration, then the
    workloads."""
    expected = gate.work / "expected-chart.yaml"
    expected.write_text(yaml.safe_dump_all([gate.webhook_configuration(), *workloads]))
    return expected


def test_additions_to_the_gates_workloads_a_sync_leaves_are_found(
    gate: Gate, capsys: pytest.CaptureFixture[str], chart_workloads: list[dict[str, Any]]
) -> None:
    """Whoever may patch deployments and services in the release namespace (mallory, by a
    Role there) adds to the webhook's Deployment an env PYTHONPATH over a mounted ConfigMap
    (a package shadowing approvalgate's), a sidecar, an initContainer and hostAliases, to the
    controller's a KUBECONFIG, and a selector key to the webhook's Service (admission then
    goes only to a pod with the attacker's label); it also changes the image and the args.
    An Argo CD sync (server-side apply, its own field manager) puts back the image and the
    args, which it applies, and the Service's selector (atomic), and leaves every addition to
    the Deployments, another manager's. The audit compares
    the live objects with the chart's rendering and names each one."""
    manifest = {"apiVersion": "v1", "kind": "List", "items": chart_workloads}

    def sync() -> None:  # what an Argo CD sync with ServerSideApply=true sends
        done = gate.kubectl(
            "admin",
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=argocd-controller",
            "-f",
            "-",
            manifest=json.dumps(manifest),
        )
        assert done.returncode == 0, done.stderr

    sync()
    rolled_out(gate)
    expected = expected_chart(gate, chart_workloads)
    code, report, _ = audit(gate, capsys, "--webhook-manifest", str(expected))
    assert [f for f in report["findings"] if f["area"] == "workloads"] == []

    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "patch-gate", "namespace": RELEASE_NS},
        "rules": [
            {
                "apiGroups": ["apps", ""],
                "resources": ["deployments", "services"],
                "verbs": ["get", "patch"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "patch-gate", "namespace": RELEASE_NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "patch-gate"},
        "subjects": [{"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}],
    }
    apply(gate, role, binding)
    # before any patch the audit names mallory as able to change what the gate runs, from the
    # names in --webhook-manifest (seventh pass: prevention is RBAC, the comparison is after)
    _, report, _ = audit(gate, capsys, "--webhook-manifest", str(expected))
    (named,) = [
        f
        for f in report["findings"]
        if f["area"] == "rbac" and f.get("field") == "release" and f["subject"] == "User/mallory"
    ]
    assert named["severity"] == "note"
    assert named["message"].startswith(
        f"User mallory can change what approvalgate runs in namespace {RELEASE_NS}: edit or "
        f"delete Deployment {CONFIG}, {CONFIG}-controller (another image"
    )
    assert f"edit Service {CONFIG} (another selector" in named["message"]
    assert f"via RoleBinding {RELEASE_NS}/patch-gate -> Role patch-gate" in named["message"]
    (hook,) = [
        d for d in chart_workloads if d["kind"] == "Deployment" and d["metadata"]["name"] == CONFIG
    ]
    controller = next(
        d for d in chart_workloads if d["kind"] == "Deployment" and d["metadata"]["name"] != CONFIG
    )
    args = hook["spec"]["template"]["spec"]["containers"][0]["args"]
    shadow = {
        "spec": {
            "template": {
                "spec": {
                    "hostAliases": [{"ip": "10.0.0.66", "hostnames": ["kubernetes.default.svc"]}],
                    "initContainers": [{"name": "prime", "image": "evil:1", "command": ["true"]}],
                    "containers": [
                        {
                            "name": "webhook",
                            "image": "evil/approvalgate:1",
                            "args": [*args, "--allow-unsigned-bundle"],
                            "env": [{"name": "PYTHONPATH", "value": "/opt/shadow"}],
                            "volumeMounts": [{"name": "shadow", "mountPath": "/opt/shadow"}],
                        },
                        {"name": "sidecar", "image": "evil:1"},
                    ],
                    "volumes": [{"name": "shadow", "configMap": {"name": "shadow"}}],
                }
            }
        }
    }
    other = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": controller["spec"]["template"]["spec"]["containers"][0]["name"],
                            "env": [{"name": "KUBECONFIG", "value": "/tmp/elsewhere"}],
                        }
                    ]
                }
            }
        }
    }
    for kind_, name, patch in (
        ("deployment", CONFIG, shadow),
        ("deployment", controller["metadata"]["name"], other),
        ("service", CONFIG, {"spec": {"selector": {"shadow": "yes"}}}),
    ):
        done = gate.kubectl(
            "mallory", "patch", kind_, name, "-n", RELEASE_NS, "-p", json.dumps(patch)
        )
        assert done.returncode == 0, done.stderr
    sync()

    def live(kind_: str, name: str) -> dict[str, Any]:
        done = gate.kubectl("admin", "get", kind_, name, "-n", RELEASE_NS, "-o", "json")
        assert done.returncode == 0, done.stderr
        obj: dict[str, Any] = json.loads(done.stdout)
        return obj

    pod = live("deployment", CONFIG)["spec"]["template"]["spec"]
    webhook_container = next(c for c in pod["containers"] if c["name"] == "webhook")
    # the sync applied these: put back
    assert webhook_container["image"] == hook["spec"]["template"]["spec"]["containers"][0]["image"]
    assert webhook_container["args"] == args
    # and left these, another manager's
    assert {"name": "PYTHONPATH", "value": "/opt/shadow"} in webhook_container["env"]
    assert [c["name"] for c in pod["containers"]] == ["webhook", "sidecar"]
    assert [c["name"] for c in pod["initContainers"]] == ["prime"]
    # a Service's selector is atomic to server-side apply: the sync put it back; patched again
    # after the sync (Argo CD without selfHeal syncs at the next change)
    assert "shadow" not in live("service", CONFIG)["spec"]["selector"]
    selector = {"spec": {"selector": {"shadow": "yes"}}}
    done = gate.kubectl(
        "mallory", "patch", "service", CONFIG, "-n", RELEASE_NS, "-p", json.dumps(selector)
    )
    assert done.returncode == 0, done.stderr

    code, report, _ = audit(gate, capsys, "--webhook-manifest", str(expected))
    assert code == 1
    found = {(f["subject"], f["field"]) for f in failing(report, "workloads")}
    spec = "spec.template.spec"
    hook_subject = f"Deployment/{RELEASE_NS}/{CONFIG}"
    controller_subject = f"Deployment/{RELEASE_NS}/{controller['metadata']['name']}"
    controller_container = controller["spec"]["template"]["spec"]["containers"][0]["name"]
    assert found == {
        (hook_subject, f"{spec}.containers[webhook].env[PYTHONPATH]"),
        (hook_subject, f"{spec}.containers[webhook].volumeMounts[/opt/shadow]"),
        (hook_subject, f"{spec}.volumes[shadow]"),
        (hook_subject, f"{spec}.containers[sidecar]"),
        (hook_subject, f"{spec}.initContainers[prime]"),
        (hook_subject, f"{spec}.hostAliases"),
        (controller_subject, f"{spec}.containers[{controller_container}].env[KUBECONFIG]"),
        (f"Service/{RELEASE_NS}/{CONFIG}", "spec.selector"),
    }, report["findings"]


def test_an_edited_approval_policy_is_found(gate: Gate, capsys: pytest.CaptureFixture[str]) -> None:
    patch = ["patch", "approvalpolicy", "codex-two-person", "-n", ENFORCED, "--type", "merge"]
    done = gate.kubectl("admin", *patch, "-p", '{"spec":{"requiredApprovals":1}}')
    assert done.returncode == 0, done.stderr
    try:
        _, report, _ = audit(gate, capsys)
        (finding,) = failing(report, "policies")
        assert finding["message"].startswith(
            "ApprovalPolicy agents/codex-two-person differs from git "
            f"({gate.repo}, environment {ENV}): spec.requiredApprovals: 2 in git, 1 live"
        )
        assert "field manager 'kubectl-patch'" in finding["message"]
        # In-cluster the audit has only the bundle: the same change is found by meaning.
        bundle = gate.work / "bundle-only" / "bundle.json"
        bundle.parent.mkdir(exist_ok=True)
        shutil.copy(gate.bundle, bundle)
        capsys.readouterr()
        main(
            [
                "audit",
                "--kubeconfig",
                str(gate.plane.kubeconfig("admin")),
                "--bundle",
                str(bundle),
                "--output",
                "json",
                "--webhook-manifest",
                str(gate.work / "expected-webhook.yaml"),
            ]
        )
        report = json.loads(capsys.readouterr().out)
        (finding,) = failing(report, "policies")
        assert "compiled.requiredApprovals: 2 in git, 1 live" in finding["message"]
    finally:
        gate.kubectl("admin", *patch, "-p", '{"spec":{"requiredApprovals":2}}')


# --- PolicyReports --------------------------------------------------------------------------


def reports_in(gate: Gate, namespace: str = ENFORCED) -> list[dict[str, Any]]:
    # The version we write, not the CRD's preferred (storage) version kubectl picks by default.
    done = gate.kubectl(
        "admin",
        "get",
        "policyreports.v1alpha2.wgpolicyk8s.io",
        "-n",
        namespace,
        "-o",
        "json",
        "--show-managed-fields",
    )
    assert done.returncode == 0, done.stderr
    items: list[dict[str, Any]] = json.loads(done.stdout)["items"]
    return items


def test_policy_reports_are_written_then_updated_in_place(
    gate: Gate, capsys: pytest.CaptureFixture[str]
) -> None:
    first = datetime.now(UTC).replace(microsecond=0)
    _, out, err = audit(gate, capsys, "--write-reports", "--now", _stamp(first))
    assert out["reports"] == [
        {"name": "approvalgate-audit", "namespace": ENFORCED, "results": len(out["runs"])}
    ], err
    (report,) = reports_in(gate)
    assert report["apiVersion"] == "wgpolicyk8s.io/v1alpha2"
    assert report["metadata"]["name"] == "approvalgate-audit"
    managers = {(m["manager"], m["operation"]) for m in report["metadata"]["managedFields"]}
    assert managers == {("approvalgate-audit", "Apply")}
    results = {r["resources"][0]["name"]: r for r in report["results"]}
    runs = json.loads(
        gate.kubectl("admin", "get", "agentruns", "-n", ENFORCED, "-o", "json").stdout
    )
    assert set(results) == {r["metadata"]["name"] for r in runs["items"]}  # one per AgentRun
    uids = {r["metadata"]["name"]: r["metadata"]["uid"] for r in runs["items"]}
    slipped = results["audit-slipped"]
    assert slipped["result"] == "fail"
    assert slipped["policy"] == "agents/codex-two-person,agents/default-approval"
    assert slipped["rule"] == "recorded-approvals"
    assert slipped["source"] == "approvalgate"
    assert slipped["message"].startswith("AgentRun agents/audit-slipped would be denied")
    assert slipped["resources"] == [
        {
            "apiVersion": "agents.proompteng.ai/v1alpha1",
            "kind": "AgentRun",
            "name": "audit-slipped",
            "namespace": ENFORCED,
            "uid": uids["audit-slipped"],
        }
    ]
    assert slipped["timestamp"] == {"seconds": int(first.timestamp()), "nanos": 0}
    assert slipped["properties"]["requester"] == "unknown (not recorded on the object)"
    assert results["audit-approved"]["result"] == "pass"
    assert results["audit-authored"]["result"] == "warn"
    counts = {k: sum(r["result"] == k for r in report["results"]) for k in report["summary"]}
    assert report["summary"] == counts
    # Every field sent was stored (the apply was strict: nothing pruned).
    assert all(
        set(r)
        == {
            "source",
            "policy",
            "rule",
            "result",
            "scored",
            "severity",
            "category",
            "message",
            "resources",
            "timestamp",
            "properties",
        }
        for r in report["results"]
    )

    # A second audit, later and with one more run: the same object, updated in place.
    done = gate.kubectl(
        "requester", "apply", "-f", "-", manifest=run_manifest("audit-late", task="Late")
    )
    assert done.returncode == 1  # the webhook is registered now: denied at admission
    gate.unregister()
    try:
        done = gate.kubectl(
            "requester", "apply", "-f", "-", manifest=run_manifest("audit-late", task="Late")
        )
        assert done.returncode == 0, done.stderr
    finally:
        gate.register()
    second = first + timedelta(minutes=5)
    audit(gate, capsys, "--write-reports", "--now", _stamp(second))
    (updated,) = reports_in(gate)
    assert updated["metadata"]["uid"] == report["metadata"]["uid"]
    assert updated["metadata"]["resourceVersion"] != report["metadata"]["resourceVersion"]
    assert len(updated["results"]) == len(report["results"]) + 1
    late = [r for r in updated["results"] if r["resources"][0]["name"] == "audit-late"]
    assert [r["result"] for r in late] == ["fail"]
    assert {r["timestamp"]["seconds"] for r in updated["results"]} == {int(second.timestamp())}


def test_the_report_is_valid_for_its_crd(gate: Gate, capsys: pytest.CaptureFixture[str]) -> None:
    audit(gate, capsys, "--write-reports")
    (report,) = reports_in(gate)
    for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"):
        report["metadata"].pop(key, None)
    # The stored report passes the server's strict validation again, as a fresh object.
    done = gate.kubectl(
        "admin",
        "create",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        manifest=json.dumps(
            {**report, "metadata": {**report["metadata"], "name": "validation-copy"}}
        ),
    )
    assert done.returncode == 0, done.stderr
    bad = copy.deepcopy(report)
    bad["metadata"]["name"] = "invalid-copy"
    bad["results"][0]["result"] = "denied"  # not one of pass/fail/warn/error/skip
    done = gate.kubectl("admin", "create", "--dry-run=server", "-f", "-", manifest=json.dumps(bad))
    assert done.returncode == 1 and "Unsupported value" in done.stderr


# --- the CronJob and its RBAC ---------------------------------------------------------------


#: The chart's audit templates, one kind each (the rest of the render is the webhook's).
AUDIT_TEMPLATES = tuple(
    f"templates/audit-{name}.yaml"
    for name in (
        "serviceaccount",
        "clusterrole",
        "clusterrolebinding",
        "configmap",
        "cronjob",
        "workloads-role",
        "workloads-rolebinding",
    )
)


def render_audit(gate: Gate, *sets: str) -> list[dict[str, Any]]:
    """The chart's audit objects, rendered with this environment's compiled values."""
    extra = ["--set", "audit.enabled=true", *(a for s in sets for a in ("--set", s))]
    return gate.chart_render(*extra, *(a for t in AUDIT_TEMPLATES for a in ("--show-only", t)))


def kind(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == name]
    return found


def apply(gate: Gate, *docs: dict[str, Any]) -> None:
    items = {"apiVersion": "v1", "kind": "List", "items": list(docs)}
    done = gate.kubectl("admin", "apply", "-f", "-", manifest=json.dumps(items))
    assert done.returncode == 0, done.stderr


def audit_as_sa(
    gate: Gate, capsys: pytest.CaptureFixture[str], error: str = ""
) -> tuple[int, str, str]:
    """The audit as the CronJob's ServiceAccount, until it fails with `error` (or does not
    fail) as the API server's RBAC cache catches up with the last change (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        code, out, err = audit(
            gate, capsys, "--as", SA, "--write-reports", "--namespace", ENFORCED, output="text"
        )
        done = err.startswith(error) if error else "forbidden" not in err
        if done or time.monotonic() > deadline:
            return code, out, err
        time.sleep(0.2)


def test_the_cronjob_rbac_is_exactly_what_the_audit_needs(
    gate: Gate, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = render_audit(gate, "audit.writeReports=true")
    account, role, binding = (
        kind(docs, k) for k in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
    )
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "approvalgate-audit", "namespace": RELEASE_NS}
    ]
    apply(gate, account, role, binding)
    gate.kubectl("admin", "delete", *REPORTS, "--all", "-n", ENFORCED)

    code, out, err = audit_as_sa(gate, capsys)
    assert "forbidden" not in err, err
    assert code == 1  # findings (the runs that slipped in), not errors
    assert f" as {SA} (groups system:serviceaccounts, " in out.splitlines()[0]
    assert f"applied {ENFORCED}/approvalgate-audit" in out

    removals: list[tuple[str, str, str]] = [
        ("agents.proompteng.ai", "list", "listing agentruns.agents.proompteng.ai"),
        ("approvals.proompteng.ai", "list", "listing approvalpolicies.approvals.proompteng.ai"),
        ("admissionregistration.k8s.io", "get", f"getting validatingwebhookconfiguration {CONFIG}"),
        ("wgpolicyk8s.io", "patch", "applying policyreports.wgpolicyk8s.io"),
        ("wgpolicyk8s.io", "create", "applying policyreports.wgpolicyk8s.io"),
    ]
    try:
        for group, verb, request in removals:
            fewer = copy.deepcopy(role)
            for rule in fewer["rules"]:
                if rule["apiGroups"] == [group]:
                    rule["verbs"].remove(verb)
            fewer["rules"] = [r for r in fewer["rules"] if r["verbs"]]
            apply(gate, fewer)
            if verb == "create":  # creating is only needed when there is no report yet
                gate.kubectl("admin", "delete", *REPORTS, "--all", "-n", ENFORCED)
            expected = f"error: forbidden while {request}"
            code, out, err = audit_as_sa(gate, capsys, expected)
            assert code == 1 and err.startswith(expected), f"without {verb} on {group}: {out}{err}"
            assert "templates/audit-clusterrole.yaml) lists exactly what the audit needs" in err
    finally:
        apply(gate, role)
    # Writing reports is optional: without it, the ClusterRole has no policyreports rule.
    reader = kind(render_audit(gate), "ClusterRole")
    assert [r for r in reader["rules"] if "wgpolicyk8s.io" in r["apiGroups"]] == []
    assert reader["rules"] == [r for r in role["rules"] if "wgpolicyk8s.io" not in r["apiGroups"]]


def test_the_cronjob_runs_a_valid_audit_command(gate: Gate) -> None:
    docs = render_audit(gate, "audit.writeReports=true", "audit.namespaces={agents}")
    cronjob, config = kind(docs, "CronJob"), kind(docs, "ConfigMap")
    done = gate.kubectl(
        "admin",
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        manifest=json.dumps({"apiVersion": "v1", "kind": "List", "items": [cronjob, config]}),
    )
    assert done.returncode == 0, done.stderr
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "audit" and args.write_reports and args.namespace == [ENFORCED]
    assert args.expect_generation == json.loads(gate.bundle.read_text())["generation"]
    assert pod["serviceAccountName"] == "approvalgate-audit"
    labels = cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "audit"  # never selected as a webhook pod
    # The embedded expectation is the chart's own webhook configuration, then its workloads,
    # then the guard's policy and binding.
    embedded = [d for d in yaml.safe_load_all(config["data"]["webhook.yaml"]) if d]
    rendered = gate.chart_render(
        *("--set", "audit.enabled=true", "--set", "audit.writeReports=true"),
        *("--set", "audit.namespaces={agents}"),
    )
    assert embedded[0] == kind(rendered, "ValidatingWebhookConfiguration")
    assert [(d["kind"], d["metadata"]["name"]) for d in embedded[1:]] == [
        ("Deployment", CONFIG),
        ("Deployment", f"{CONFIG}-controller"),
        ("Service", CONFIG),
        ("CronJob", f"{CONFIG}-audit"),
        ("ValidatingAdmissionPolicy", f"{CONFIG}-guard"),
        ("ValidatingAdmissionPolicyBinding", f"{CONFIG}-guard"),
    ]
    assert all(d in rendered for d in embedded)


def rolled_out(gate: Gate) -> None:
    """The gate's Deployments' status as their controller writes it once every pod is made
    from the template (no controller manager here)."""
    for name in (CONFIG, f"{CONFIG}-controller"):
        status = {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2}
        done = gate.kubectl(
            "admin",
            "patch",
            "deployment",
            name,
            "-n",
            RELEASE_NS,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )
        assert done.returncode == 0, done.stderr


def test_a_pod_the_webhooks_service_selects_that_runs_other_code_is_found(
    gate: Gate, capsys: pytest.CaptureFixture[str], chart_workloads: list[dict[str, Any]]
) -> None:
    """Whoever may create pods in the release namespace (mallory, by a Role there) makes one
    carrying the webhook's selector labels, from the chart's template but another image and a
    PYTHONPATH: the webhook's Service sends it a share of every admission request, and no
    Deployment, Service or configuration changed. Likewise an EndpointSlice of hers labelled
    for the Service adds an address kube-proxy routes its traffic to. The audit compares each
    pod the live Service selects with the chart's webhook pod template (one made from it is
    not reported) and each address the Service routes to with those pods.
    (No kubelet or controller manager here: the pods never run, and the Deployment's rollout
    status is written as its controller would.)"""
    apply(gate, *chart_workloads)
    expected = expected_chart(gate, chart_workloads)
    (hook,) = [
        d for d in chart_workloads if d["kind"] == "Deployment" and d["metadata"]["name"] == CONFIG
    ]
    template = hook["spec"]["template"]
    labels = template["metadata"]["labels"]

    def pod(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": RELEASE_NS, "labels": labels},
            "spec": spec,
        }

    (controller,) = [
        d
        for d in chart_workloads
        if d["kind"] == "Deployment" and d["metadata"]["name"] == f"{CONFIG}-controller"
    ]
    as_controller = copy.deepcopy(controller["spec"]["template"]["spec"])
    as_controller["containers"][0]["image"] = "evil/approvalgate:1"
    shadow = copy.deepcopy(template["spec"])
    shadow["containers"][0]["image"] = "evil/approvalgate:1"
    shadow["containers"][0]["env"].append({"name": "PYTHONPATH", "value": "/tmp/shadow"})
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "patch-gate", "namespace": RELEASE_NS},
        "rules": [  # pods: create only, never patch (a patched pod is found the same way)
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]},
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["create"],
            },
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "patch-gate", "namespace": RELEASE_NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "patch-gate"},
        "subjects": [{"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}],
    }
    apply(gate, role, binding, pod(f"{CONFIG}-made-by-its-replicaset", template["spec"]))
    try:
        route = {  # an address of mallory's for the webhook's Service, which kube-proxy uses
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "shadow-route",
                "namespace": RELEASE_NS,
                "labels": {"kubernetes.io/service-name": CONFIG},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.66"]}],
            "ports": [{"name": "https", "port": 8443, "protocol": "TCP"}],
        }
        acting = pod("acting-as-the-controller", as_controller)
        acting["metadata"]["labels"] = controller["spec"]["template"]["metadata"]["labels"]
        for obj in (pod("shadow", shadow), acting, route):
            done = gate.kubectl("mallory", "create", "-f", "-", manifest=json.dumps(obj))
            assert done.returncode == 0, done.stderr

        def workload_report() -> list[dict[str, Any]]:
            _, report, _ = audit(gate, capsys, "--webhook-manifest", str(expected))
            return [f for f in report["findings"] if f["area"] == "workloads"]

        shadowed = {
            (f"Pod/{RELEASE_NS}/shadow", "spec.containers[webhook].image", "finding"),
            (f"Pod/{RELEASE_NS}/shadow", "spec.containers[webhook].env[PYTHONPATH]", "finding"),
            (f"Service/{RELEASE_NS}/{CONFIG}", "EndpointSlice/shadow-route", "finding"),
            (
                f"Pod/{RELEASE_NS}/acting-as-the-controller",
                "spec.containers[controller].image",
                "finding",
            ),
        }
        # while the Deployment rolls out, the pods are compared all the same, with a note (a
        # rollout held forever must not hide a pod)
        found = workload_report()
        notes = {(f["subject"], f["field"], f["severity"]) for f in found if not f["field"]}
        assert notes == {
            (f"Deployment/{RELEASE_NS}/{name}", "", "note")
            for name in (CONFIG, f"{CONFIG}-controller")
        }
        assert all("rolling out" in f["message"] for f in found if not f["field"])
        assert {(f["subject"], f["field"], f["severity"]) for f in found} - notes == shadowed
        rolled_out(gate)
        found = workload_report()
        assert {(f["subject"], f["field"], f["severity"]) for f in found} == shadowed, found
        assert all(
            f"selected by Service/{RELEASE_NS}/{CONFIG}" in f["message"]
            for f in found
            if f["subject"] == f"Pod/{RELEASE_NS}/shadow"
        )
    finally:
        gate.kubectl("admin", "delete", "endpointslice", "shadow-route", "-n", RELEASE_NS)
        for name in ("shadow", "acting-as-the-controller", f"{CONFIG}-made-by-its-replicaset"):
            gate.kubectl("admin", "delete", "pod", name, "-n", RELEASE_NS, "--wait=false")


def test_the_audit_gets_the_gates_workloads_through_its_role(
    gate: Gate, capsys: pytest.CaptureFixture[str], chart_workloads: list[dict[str, Any]]
) -> None:
    """The CronJob's audit compares the workloads embedded in its ConfigMap: it needs get on
    each by name and list on pods (audit-workloads-role.yaml), and without them says so as a
    finding."""
    docs = render_audit(gate)
    account, role, binding = (
        kind(docs, k) for k in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
    )
    workloads_role, workloads_binding = kind(docs, "Role"), kind(docs, "RoleBinding")
    apply(gate, account, role, binding, *chart_workloads)
    rolled_out(gate)  # so that the pods the Service selects are listed too
    expected = expected_chart(gate, chart_workloads)

    def workload_findings() -> list[dict[str, Any]]:
        code, report, err = audit(gate, capsys, "--as", SA, "--webhook-manifest", str(expected))
        assert code == 1 and "forbidden" not in err, err  # the runs that slipped in
        return [f for f in report["findings"] if f["area"] == "workloads"]

    refused = workload_findings()
    assert sorted(f["subject"] for f in refused) == sorted(
        f"{d['kind']}/{RELEASE_NS}/{d['metadata']['name']}" for d in chart_workloads
    )
    assert all(
        f["severity"] == "finding" and "cannot compare it with the chart" in f["message"]
        for f in refused
    ), refused
    try:
        apply(gate, workloads_role, workloads_binding)
        try:
            eventually("the Role in force", lambda: workload_findings() == [], timeout=15)
        except AssertionError as exc:
            raise AssertionError(workload_findings()) from exc
    finally:
        for obj in (workloads_binding, workloads_role):
            gate.kubectl(
                "admin", "delete", obj["kind"].lower(), obj["metadata"]["name"], "-n", RELEASE_NS
            )


# --- the bundle -----------------------------------------------------------------------------


def test_a_bundle_that_is_not_gits_is_found(gate: Gate, capsys: pytest.CaptureFixture[str]) -> None:
    cm = ["configmap", "approvalgate-bundle", "-n", RELEASE_NS]
    gate.kubectl("admin", "create", *cm, f"--from-file=bundle.json={gate.bundle}")
    try:
        _, report, _ = audit(
            gate, capsys, "--bundle-configmap", f"{RELEASE_NS}/approvalgate-bundle"
        )
        assert failing(report, "bundle") == []
        # The committed example bundle: same policies, other approver keys, other generation.
        other = EXAMPLE / "rendered" / ENV / "bundle.json"
        gate.kubectl("admin", "delete", *cm)
        gate.kubectl("admin", "create", *cm, f"--from-file=bundle.json={other}")
        _, report, _ = audit(
            gate,
            capsys,
            "--bundle-configmap",
            f"{RELEASE_NS}/approvalgate-bundle",
            "--expect-generation",
            "0123456789abcdef",
        )
        generations = {json.loads(p.read_text())["generation"] for p in (gate.bundle, other)}
        assert len(generations) == 2
        found = {f["subject"]: f["message"] for f in failing(report, "bundle")}
        assert found[f"ConfigMap/{RELEASE_NS}/approvalgate-bundle"].startswith(
            "the webhook enforces bundle generation "
            f"{json.loads(other.read_text())['generation']}, not "
            f"{json.loads(gate.bundle.read_text())['generation']}"
        )
        (expect,) = [m for s, m in found.items() if not s.startswith("ConfigMap/")]
        assert "not 0123456789abcdef as rendered with the chart" in expect
    finally:
        gate.kubectl("admin", "delete", *cm)


# --- who can act as a trusted ServiceAccount ------------------------------------------------

SUBMITTER_NS, SUBMITTER = "agents-system", "submission-api"
TRUSTED = f"system:serviceaccount:{SUBMITTER_NS}:{SUBMITTER}"
POD = f"{SUBMITTER}-audit"  # the submitter's running pod (no kubelet: it stays Pending)


def _bind(gate: Gate, name: str, cluster_role: str, user: str) -> None:
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": SUBMITTER_NS},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": cluster_role,
        },
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}],
    }
    apply(gate, binding)


def rbac_findings(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Who can act as a trusted identity (not who may switch the gate off, field switch, nor
    who may change what it runs, field release)."""
    return {
        f["subject"]: f
        for f in report["findings"]
        if f["area"] == "rbac" and f.get("field") not in ("switch", "release")
    }


def test_who_can_act_as_the_trusted_submitter_is_listed(
    gate: Gate, capsys: pytest.CaptureFixture[str]
) -> None:
    gate.plane.kubectl("admin", "create", "namespace", SUBMITTER_NS, check=False)
    _, report, _ = audit(gate, capsys)
    before = rbac_findings(report)
    # Only the control plane's own default bindings: one note per trusted identity.
    assert [f["severity"] for f in before.values()] == ["note", "note"]
    # Who may switch the gate off: the controllers owning a status, by design (notes)
    switches = {f["subject"]: f for f in report["findings"] if f.get("field") == "switch"}
    assert {f["severity"] for f in switches.values()} == {"note"}
    assert "agentruns/status" in switches["ServiceAccount/agents/agents-controller"]["message"]
    # Who may change what the gate runs in its release namespace: notes (seventh pass); the
    # gate's own ServiceAccounts are not among them
    changers = {f["subject"]: f for f in report["findings"] if f.get("field") == "release"}
    assert {f["severity"] for f in changers.values()} <= {"note"}
    assert not [s for s in changers if s.startswith(f"ServiceAccount/{RELEASE_NS}/")]
    assert (
        "Group/system:masters (impersonate, token, pods, enter, node, grant)"
        in (before[TRUSTED]["message"])
    )
    assert "system:serviceaccount:argocd:argocd-application-controller" in before

    # The built-in edit role as the API server creates it: an aggregation rule, no rules of
    # its own (no kube-controller-manager runs here to fill them in). The audit follows the
    # selectors; requester gets the rules edit aggregates directly, which the API server
    # enforces now.
    edit = json.loads(gate.kubectl("admin", "get", "clusterrole", "edit", "-o", "json").stdout)
    assert edit["aggregationRule"]["clusterRoleSelectors"] and not edit.get("rules")
    _bind(gate, "mallory-edit", "edit", "mallory")
    _bind(gate, "requester-edit", "system:aggregate-to-edit", "requester")
    _bind(gate, "bob-view", "view", "bob")
    try:
        for verb, *what in (
            ("impersonate", f"serviceaccounts/{SUBMITTER}"),
            ("create", f"serviceaccounts/{SUBMITTER}", "--subresource=token"),
            ("create", "pods"),
        ):
            can = gate.kubectl("requester", "auth", "can-i", verb, *what, "-n", SUBMITTER_NS)
            assert can.stdout.strip() == "yes", (verb, what, can.stderr)
        # Minting is enough even where the webhook wants a pod-bound token: the API server
        # binds a token to the submitter's own running pod for whoever may create tokens.
        pod_bound_token(gate.plane, SUBMITTER_NS, SUBMITTER, POD)
        minted = gate.kubectl(
            "requester",
            "create",
            "token",
            SUBMITTER,
            "-n",
            SUBMITTER_NS,
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            POD,
        )
        assert minted.returncode == 0, minted.stderr
        who = gate.plane.kubectl_with_token(minted.stdout.strip(), "auth", "whoami", "-o", "json")
        info = json.loads(who.stdout)["status"]["userInfo"]
        assert info["username"] == TRUSTED
        assert info["extra"][POD_NAME_EXTRA] == [POD]
        code, report, _ = audit(gate, capsys)
        assert code == 1
        found = rbac_findings(report)
        for user, via in (
            ("mallory", "ClusterRole edit"),
            ("requester", "ClusterRole system:aggregate-to-edit"),
        ):
            finding = found[f"User/{user}"]
            assert finding["severity"] == "finding"
            assert finding["field"] == TRUSTED
            binding = f"RoleBinding {SUBMITTER_NS}/{user}-edit -> {via}"
            assert finding["message"].startswith(
                f"User {user} can act as the trusted submitter ServiceAccount {TRUSTED} "
                f"(policies agents/codex-two-person, agents/default-approval): impersonate it, "
                f"mint tokens for it, run pods as it and enter its running pods via {binding}"
            ), finding["message"]
            assert f"namespace {SUBMITTER_NS}" in finding["advice"]
        assert "User/bob" not in found  # view grants none of it
        # The GitOps applier lives elsewhere: nothing bound there.
        assert [
            f for f in found.values() if "argocd" in f["message"] and f["severity"] != "note"
        ] == []
        _, text, _ = audit(gate, capsys, output="text")
        assert "\nWho can act as a trusted ServiceAccount (RBAC):\n  FINDING: User mallory" in text
    finally:
        for name in ("mallory-edit", "requester-edit", "bob-view"):
            gate.kubectl("admin", "delete", "rolebinding", name, "-n", SUBMITTER_NS)
        gate.kubectl("admin", "delete", "pod", POD, "-n", SUBMITTER_NS, "--wait=false")


def test_a_subject_named_to_forge_a_line_is_quoted_in_the_audit(
    gate: Gate, capsys: pytest.CaptureFixture[str]
) -> None:
    """The API server takes any string as a User subject's name (fifth red-team pass,
    outputs): a binding of edit where the submitter lives, to a user whose name holds a
    newline, a line saying nothing can act as the submitter and an escape sequence erasing
    the line, is reported with the name quoted on one line."""
    gate.plane.kubectl("admin", "create", "namespace", SUBMITTER_NS, check=False)
    forged = "mallory\n  ok: nothing can act as the trusted submitter\x1b[2K\u202e"
    _bind(gate, "forged-edit", "edit", forged)
    try:
        code, text, _ = audit(gate, capsys, output="text")
        assert code == 1
        shown = json.dumps(forged)
        assert f"  FINDING: User {shown} can act as the trusted submitter" in text, text
        assert "\n  ok: nothing" not in text and "\x1b" not in text and "\u202e" not in text
    finally:
        gate.kubectl("admin", "delete", "rolebinding", "forged-edit", "-n", SUBMITTER_NS)


def test_a_role_aggregated_into_edit_that_switches_the_gate_off_is_found(
    gate: Gate, capsys: pytest.CaptureFixture[str]
) -> None:
    """RBAC widened (classes 17 and 22): a ClusterRole carrying edit's aggregation label and
    granting writes of approvalrequests/status (never sent to the webhook) and of webhook
    configurations gives them to every requester. The audit names the role."""
    name = "approvalgate-e2e-team-extras"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"},
        },
        "rules": [
            {"apiGroups": ["gates.proompteng.ai"], "resources": ["*"], "verbs": ["*"]},
            {
                "apiGroups": ["admissionregistration.k8s.io"],
                "resources": ["validatingwebhookconfigurations"],
                "verbs": ["patch"],
            },
        ],
    }
    apply(gate, role)
    try:
        _, report, _ = audit(gate, capsys)
        (finding,) = [f for f in failing(report, "rbac") if f["subject"] == "ClusterRole/edit"]
        assert f"through ClusterRole {name} (aggregated)" in finding["message"]
        assert "approvalrequests/status" in finding["message"]
        assert "ValidatingWebhookConfiguration" in finding["message"]
    finally:
        gate.kubectl("admin", "delete", "clusterrole", name)
    _, report, _ = audit(gate, capsys)
    assert not [f for f in failing(report, "rbac") if f["subject"] == "ClusterRole/edit"]


def test_an_audit_that_may_not_read_rbac_says_so_as_a_finding(
    gate: Gate, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = render_audit(gate)
    account, role, binding = (
        kind(docs, k) for k in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
    )
    fewer = copy.deepcopy(role)
    fewer["rules"] = [r for r in role["rules"] if "rbac.authorization.k8s.io" not in r["apiGroups"]]
    assert len(fewer["rules"]) == len(role["rules"]) - 1
    apply(gate, account, fewer, binding)
    try:
        deadline = time.monotonic() + 10
        while True:  # until the API server's RBAC cache has the narrower role
            code, out, err = audit(gate, capsys, "--as", SA, "--namespace", ENFORCED, output="text")
            if "cannot tell who can act" in out or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert code == 1 and "forbidden" not in err, err  # a finding, not an error
        assert (
            "  FINDING: cannot tell who can act as the trusted ServiceAccounts (forbidden while "
            "listing clusterroles.rbac.authorization.k8s.io"
        ) in out
        assert "pass agents/audit-approved" in out  # the rest of the audit ran
        assert "(list on roles, rolebindings, clusterroles, clusterrolebindings)" in out
    finally:
        apply(gate, role)
