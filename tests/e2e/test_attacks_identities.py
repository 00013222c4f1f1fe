"""Classes 17-21 of security.md against a real kube-apiserver with real RBAC and real tokens.

Borrowed identities (17): the trusted submitter impersonated with ``kubectl --as``, or used
with a token minted by ``kubectl create token``, is denied by the webhook with the reason;
the same ServiceAccount with a token bound to a Pod running as it (what the kubelet mounts)
is admitted as ``trusted-submitter``; a ServiceAccount that is not trusted is denied even
with approvals. The RBAC is the one real clusters grant: the rules of the built-in ``edit``
role (``system:aggregate-to-edit``, what kube-controller-manager aggregates into ``edit``;
no controller-manager runs here) bound in a namespace. A requester with ``edit`` where the
runs are cannot reach the submitter in its own namespace at all.

References (18), labels added after admission (19), a retired key signing a back-dated
record and break-glass reasons (20), and an approval for staging applied where the webhook
enforces prod (21) go through kubectl too.
For every webhook denial the whole kubectl error is exactly decide()'s message for the same
object, bundle, user and time (as in test_attacks.py).
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from approvalgate.approvals import records
from approvalgate.approvals.admission import request_for_manifest
from approvalgate.approvals.decide import decide
from tests.e2e.controlplane import WORKER, ControlPlane
from tests.e2e.gate import ENFORCED, ENV, OTHER_ENV, Gate, pod_bound_token, run_manifest
from tests.e2e.test_attacks import (
    REQUESTER,
    Signer,
    annotated,
    cluster_view,
    create,
    denial,
    run,
    stored_uid,
)

pytestmark = pytest.mark.e2e
SUBMITTER_NS = "agents-system"  # the example trusts system:serviceaccount:agents-system:...
SUBMITTER = "submission-api"
TRUSTED = f"system:serviceaccount:{SUBMITTER_NS}:{SUBMITTER}"
HIGH_RISK = """\
apiVersion: approvals.proompteng.ai/v1alpha1
kind: ApprovalPolicy
metadata:
  name: high-risk
  namespace: agents
spec:
  selector:
    matchLabels:
      risk: high
  approvers: [oncall]
  requiredApprovals: 1
"""


def _edit_in(plane: ControlPlane, namespace: str, user: str) -> None:
    """``user`` gets the built-in edit role's rules in ``namespace``, bound as clusters do."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{user}-edit", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:aggregate-to-edit",
        },
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}],
    }
    plane.kubectl("admin", "apply", "-f", "-", input=json.dumps(binding))


@pytest.fixture(scope="module")
def gate(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    gate = Gate(control_plane, tmp_path_factory.mktemp("identities"))
    gate.prepare()
    (gate.repo / "policies" / "high-risk.yaml").write_text(HIGH_RISK)
    gate.recompile()  # the served bundle signed again
    for ns in (ENFORCED, SUBMITTER_NS):
        control_plane.kubectl("admin", "create", "namespace", ns, check=False)
    # requester may edit where the runs are; mallory (a misconfiguration the token rule
    # still catches) may edit where the submitter lives
    _edit_in(control_plane, ENFORCED, REQUESTER)
    _edit_in(control_plane, SUBMITTER_NS, "mallory")
    gate.bound_token = pod_bound_token(  # type: ignore[attr-defined]
        control_plane, SUBMITTER_NS, SUBMITTER, f"{SUBMITTER}-0"
    )
    gate.start()
    gate.register()
    try:
        yield gate
    finally:
        gate.unregister()
        gate.stop()
        # later modules (the audit's RBAC findings) see the cluster without these grants
        for ns, user in ((ENFORCED, REQUESTER), (SUBMITTER_NS, "mallory")):
            control_plane.kubectl(
                "admin", "delete", "rolebinding", f"{user}-edit", "-n", ns, check=False
            )


def _message(s: Signer, obj: dict[str, Any], user: str, **request: Any) -> str:
    """decide()'s denial for ``obj`` sent by ``user`` (as the API server sends it)."""
    built = dict(request_for_manifest(stored_uid(s.gate, obj), username=user, **request))
    decision = decide(built, s.bundle, datetime.now(UTC), cluster_view(s.gate))
    assert not decision.allowed, decision
    return decision.message


def _gone(gate: Gate, name: str) -> bool:
    return "NotFound" in gate.kubectl("admin", "get", "agentrun", name, "-n", ENFORCED).stderr


# --- 17: borrowed identities ----------------------------------------------------------------------


def test_the_trusted_submitter_impersonated_is_denied(gate: Gate) -> None:
    s = Signer(gate)
    obj = run("idt-as")
    done = create(gate, obj, "mallory", f"--as={TRUSTED}")
    assert done.returncode == 1, done.stdout
    assert "impersonated with --as" in done.stderr, done.stderr
    assert done.stderr.strip() == denial(_message(s, obj, TRUSTED))
    assert _gone(gate, "idt-as")


def test_the_trusted_submitter_with_a_minted_token_is_denied(gate: Gate) -> None:
    s = Signer(gate)
    minted = gate.plane.kubectl("mallory", "create", "token", SUBMITTER, "-n", SUBMITTER_NS)
    assert minted.returncode == 0, minted.stderr  # edit grants create serviceaccounts/token
    obj = run("idt-minted")
    done = gate.plane.kubectl_with_token(
        minted.stdout.strip(), "create", "-f", "-", input=json.dumps(obj)
    )
    assert done.returncode == 1, done.stdout
    assert "--bound-object-kind Pod" in done.stderr, done.stderr
    assert done.stderr.strip() == denial(_message(s, obj, TRUSTED))
    assert _gone(gate, "idt-minted")


def test_the_pod_name_extra_cannot_be_impersonated_with_edit(gate: Gate) -> None:
    """Setting userInfo.extra by impersonation needs impersonate on userextras/...: not in edit.
    (kubectl has no flag for it: a kubeconfig's ``as-user-extra`` sends Impersonate-Extra-*.)"""
    plane = gate.plane
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "e2e",
                "cluster": {"server": plane.server, "certificate-authority": str(plane.ca_file)},
            }
        ],
        "users": [
            {
                "name": "mallory-as",
                "user": {
                    "token": plane.tokens["mallory"],
                    "as": TRUSTED,
                    "as-user-extra": {
                        "authentication.kubernetes.io/pod-name": [f"{SUBMITTER}-0"],
                        "authentication.kubernetes.io/pod-uid": ["0"],
                    },
                },
            }
        ],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "mallory-as"}}],
        "current-context": "e2e",
    }
    path = gate.work / "mallory-as-extra.json"
    path.write_text(json.dumps(config))
    body = gate.work / "idt-as-extra.json"
    body.write_text(json.dumps(run("idt-as-extra")))
    done = subprocess.run(  # --raw: no discovery, which the same Forbidden would stop first
        [
            str(plane.binaries.kubectl),
            f"--kubeconfig={path}",
            "create",
            "--raw",
            f"/apis/agents.proompteng.ai/v1alpha1/namespaces/{ENFORCED}/agentruns",
            "-f",
            str(body),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "cannot impersonate resource" in done.stderr, done.stderr
    assert "userextras" in done.stderr, done.stderr
    assert _gone(gate, "idt-as-extra")


def test_a_requester_with_edit_where_the_runs_are_cannot_reach_the_submitter(gate: Gate) -> None:
    """Why the submitter must live in a namespace of its own (a compile error otherwise)."""
    impersonated = create(gate, run("idt-reach"), REQUESTER, f"--as={TRUSTED}", "--validate=false")
    assert impersonated.returncode == 1 and "cannot impersonate" in impersonated.stderr
    minted = gate.plane.kubectl(
        REQUESTER, "create", "token", SUBMITTER, "-n", SUBMITTER_NS, check=False
    )
    assert minted.returncode == 1 and "forbidden" in minted.stderr.lower(), minted.stderr
    own = gate.plane.kubectl(
        REQUESTER, "auth", "can-i", "impersonate", "serviceaccounts", "-n", ENFORCED, check=False
    )
    assert own.stdout.strip() == "yes"  # where the runs are, edit could act as any SA


def test_the_trusted_submitter_from_its_pod_is_admitted(gate: Gate) -> None:
    token: str = gate.bound_token  # type: ignore[attr-defined]
    whoami = gate.plane.kubectl_with_token(token, "auth", "whoami", "-o", "json")
    extra = json.loads(whoami.stdout)["status"]["userInfo"]["extra"]
    assert extra["authentication.kubernetes.io/pod-name"] == [f"{SUBMITTER}-0"]
    # a trusted submitter's run is not judged by records: it carries no approval-use
    # finalizer (nothing to record as used)
    plain = yaml.safe_load(run_manifest("idt-pod"))
    done = gate.plane.kubectl_with_token(token, "create", "-f", "-", input=json.dumps(plain))
    assert done.returncode == 0, done.stderr
    assert not _gone(gate, "idt-pod")


def test_a_service_account_that_is_not_trusted_is_denied_even_with_approvals(
    gate: Gate,
) -> None:
    s = Signer(gate)
    obj = run("idt-sa")
    approved = annotated(obj, [s.record(obj, "alice"), s.record(obj, "bob")])
    done = create(gate, approved, WORKER)
    assert done.returncode == 1, done.stdout
    assert "serviceAccountRequesters: deny" in done.stderr, done.stderr
    assert done.stderr.strip() == denial(_message(s, approved, WORKER))


# --- 18: references read two ways -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "change", "where"),
    [
        ("idt-ref-space", ("agentRef", "codex-agent "), 'spec.agentRef.name "codex-agent "'),
        ("idt-ref-nbsp", ("agentRef", "codex-agent\u00a0"), "U+00A0 (NO-BREAK SPACE)"),
        ("idt-ref-step", ("step", "Codex-Impl"), "spec.workflow.steps[1].implementationSpecRef"),
        # seventh pass: the corpus's other spellings on the API server too
        ("idt-ref-lookalike", ("agentRef", "\u0441odex-agent"), "U+0441 (CYRILLIC SMALL"),
        (
            "idt-ref-zero-width",
            ("implementationSpecRef", "codex-impl-sample\u200b"),
            "U+200B (ZERO WIDTH SPACE)",
        ),
        ("idt-ref-secret", ("secrets", "openai-key "), 'spec.secrets[1] "openai-key "'),
    ],
)
def test_a_reference_that_is_not_a_kubernetes_name_is_denied_with_its_field(
    gate: Gate, name: str, change: tuple[str, str], where: str
) -> None:
    s = Signer(gate)
    obj = run(name)
    field, value = change
    if field in ("agentRef", "implementationSpecRef"):
        obj["spec"][field]["name"] = value
    elif field == "secrets":
        obj["spec"]["secrets"] = ["github-token", value]
    else:
        obj["spec"]["workflow"] = {
            "steps": [
                {"name": "plan", "implementationSpecRef": {"name": "codex-impl-sample"}},
                {"name": "ship", "implementationSpecRef": {"name": value}},
            ]
        }
    approved = annotated(obj, [s.record(obj, "alice"), s.record(obj, "bob")])
    done = create(gate, approved)
    assert done.returncode == 1, done.stdout
    assert where in done.stderr, done.stderr
    assert done.stderr.strip() == denial(_message(s, approved, REQUESTER))
    assert _gone(gate, name)


# --- 19: a label added after admission ------------------------------------------------------


def test_a_label_that_selects_a_stricter_policy_is_judged_on_update(gate: Gate) -> None:
    s = Signer(gate)
    obj = run("idt-label")
    approved = annotated(obj, [s.record(obj, "alice"), s.record(obj, "bob")])
    assert create(gate, approved).returncode == 0
    unrelated = gate.kubectl(REQUESTER, "label", "agentrun", "idt-label", "-n", ENFORCED, "team=x")
    assert unrelated.returncode == 0, unrelated.stderr  # no policy selects on it
    done = gate.kubectl(REQUESTER, "label", "agentrun", "idt-label", "-n", ENFORCED, "risk=high")
    assert done.returncode == 1, done.stdout
    assert "policy agents/high-risk: 0 of 1 required approvals" in done.stderr, done.stderr
    labelled = copy.deepcopy(approved)
    labelled["metadata"]["labels"] = {"team": "x", "risk": "high"}
    expected = _message(s, labelled, REQUESTER, operation="UPDATE", old=approved)
    assert done.stderr.strip() == (
        'Error from server (Forbidden): admission webhook "agentruns.approvalgate.proompteng.ai" '
        f"denied the request: {expected}"
    )
    stored = json.loads(
        gate.kubectl("admin", "get", "agentrun", "idt-label", "-n", ENFORCED, "-o", "json").stdout
    )
    assert stored["metadata"]["labels"] == {"team": "x"}


# --- 20: a retired key signing a back-dated record; a break-glass reason that says nothing --------


def test_a_retired_key_signing_a_back_dated_record_is_denied(gate: Gate) -> None:
    """alice's key retired an hour ago (its ``notAfter``) signs with the CLI, ``--now``
    back-dated into the key's window, a record whose lifetime reaches past now: denied by the
    webhook enforcing that Approver (the key is not valid at admission time), admitted by the
    one whose Approver has no window (the key is valid at issuedAt and now)."""
    now = datetime.now(UTC).replace(microsecond=0)
    retired = now - timedelta(hours=1)

    def retire_alice(repo: Path) -> None:
        path = repo / "approvers" / "alice.yaml"
        approver = yaml.safe_load(path.read_text())
        (key,) = approver["spec"]["keys"]
        key["notBefore"] = records.format_time(now - timedelta(days=30))
        key["notAfter"] = records.format_time(retired)
        path.write_text(yaml.safe_dump(approver))

    windowed = gate.compile_changed("retired-key", retire_alice)
    back_dated = ("--now", records.format_time(now - timedelta(hours=2)))
    manifest = gate.approve(yaml.safe_dump(run("idt-retired")), "alice", extra=back_dated)
    approved = yaml.safe_load(gate.approve(manifest, "bob"))
    parsed, problems = records.parse_annotation(
        approved["metadata"]["annotations"][records.ANNOTATION]
    )
    assert not problems and parsed[0].claim.approver == "alice", problems
    assert parsed[0].claim.issued_at < retired < now < parsed[0].claim.expires_at
    with gate.serving(windowed):
        s = Signer(gate)
        done = create(gate, approved)
        assert done.returncode == 1, done.stdout
        assert (
            done.stderr.count(
                "record 0 by alice: signed with a key of alice that is expired (retired) at "
                f"{records.format_time(retired)}: a key counts only while it is valid, at the "
                "record's issuedAt and at admission time"
            )
            == 2
        ), done.stderr  # under each of the example's two policies
        assert done.stderr.strip() == denial(_message(s, approved, REQUESTER))
        assert _gone(gate, "idt-retired")
    done = create(gate, approved)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "agentrun.agents.proompteng.ai/idt-retired created"


@pytest.mark.parametrize(
    ("name", "reason", "why"),
    [
        ("idt-bypass", "\u200b" * 12, "at least 8 visible characters"),
        # seventh pass: the corpus's other reasons that are none, on the API server too
        (
            "idt-bypass-mix",
            " \t\u00a0\u2060\u200e\u3164\u2800\u00ad\u034f\u180e\ufeff",
            "only invisible characters",
        ),
        ("idt-bypass-short", "fix \u200b it", "only 5 visible characters"),
        ("idt-bypass-no-words", "!!!!....----", "no visible letter or digit"),
        ("idt-bypass-filler", "--------\u3164", "no visible letter or digit"),
    ],
)
def test_a_bypass_reason_of_invisible_characters_is_denied(
    gate: Gate, name: str, reason: str, why: str
) -> None:
    s = Signer(gate)
    obj = run(name)
    record = s.record(obj, "oncall", decision="bypass", reason=reason)
    approved = annotated(obj, [record, s.record(obj, "alice")])
    done = create(gate, approved)
    assert done.returncode == 1, done.stdout
    assert why in done.stderr, done.stderr
    assert done.stderr.strip() == denial(_message(s, approved, REQUESTER))
    assert _gone(gate, name)


# --- 21: an approval for staging used in prod -------------------------------------------------


def test_an_approval_for_staging_is_denied_where_the_webhook_enforces_prod(gate: Gate) -> None:
    """The same file, approved with the CLI against staging, applied with kubectl: admitted
    by the webhook enforcing staging, denied by the one enforcing prod (saying why), and
    admitted there once approved for prod too."""
    manifest = gate.approve(yaml.safe_dump(run("idt-env")), "alice", "bob", env=ENV)
    staging = yaml.safe_load(manifest)
    done = create(gate, staging, REQUESTER, "--dry-run=server")
    assert done.returncode == 0, done.stderr
    with gate.enforcing(OTHER_ENV):
        s = Signer(gate)
        assert s.bundle.environment == OTHER_ENV
        done = create(gate, staging)
        assert done.returncode == 1, done.stdout
        assert (
            done.stderr.count(
                f"approved for {ENV}, this bundle enforces {OTHER_ENV}: a record counts only "
                "in the environment it names; re-approve with "
                f"`approvalgate approve --env {OTHER_ENV}`"
            )
            == 4
        ), done.stderr  # two records, under each of the example's two policies
        assert done.stderr.strip() == denial(_message(s, staging, REQUESTER))
        assert _gone(gate, "idt-env")
        both = yaml.safe_load(gate.approve(manifest, "alice", "bob", env=OTHER_ENV))
        done = create(gate, both)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "agentrun.agents.proompteng.ai/idt-env created"
