"""Issue 16 on the real kube-apiserver: the controller's ledger of derived runs.

A Schedule (or an OrchestrationRun) approved by its records creates runs through the
platform's controllers, which never add the approval-use finalizer. The queue's controller
(the chart's ServiceAccount and RBAC, reading the parents through its own watches) records
an ApprovalUse for each such run it sees: named by the run's uid, listing the statements of
the approved parent's records (what ``parents.maxRuns`` counts) and the content those records
bound (``spec.references``: what the webhook keeps unchanged while the use counts).

The webhook is not registered here: these tests are about the controller's writes and the
API server's own rules for a use (CEL). The run is created as the platform's controller
ServiceAccount, exactly as upstream's supporting-schedule-runner applies it.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from approvalgate.approvals import content, parents, records, view
from approvalgate.approvals.keys import signer_from_pem
from approvalgate.kube import objects
from approvalgate.kube.client import Client
from approvalgate.kube.resources import AGENT_RUNS, APPROVAL_USES
from tests.e2e.controlplane import CONTROLLER, GATE_NAMESPACE, ControlPlane
from tests.e2e.gate import ENFORCED, ENV, NOT_ENFORCED, Gate, eventually

from .queue_support import USES, unique

pytestmark = pytest.mark.e2e

AGENT = "codex-agent"  # the example's codex-two-person policy selects its runs
APPROVERS = ("alice", "bob")  # two platform leads
PLATFORM_CREATOR = CONTROLLER  # the agents platform's controller ServiceAccount


def with_parent_creators(repo: Path) -> None:
    """The example's codex policy, its runs also created by the platform's controllers (the
    example names them: checked, and added if it ever stops doing so)."""
    path = repo / "policies" / "codex-two-person.yaml"
    text = path.read_text()
    if f"      - {PLATFORM_CREATOR}\n" in text:
        return
    assert "  parents:\n" not in text, "the example's parents block no longer names the creator"
    path.write_text(
        text.rstrip("\n") + f"\n  parents:\n    creators:\n      - {PLATFORM_CREATOR}\n"
    )


@pytest.fixture(scope="module")
def gate(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    """The chart's RBAC and one queue controller (no webhook in front of the API server)."""
    gate = Gate(control_plane, tmp_path_factory.mktemp("derived"))
    gate.prepare()
    for ns in (ENFORCED, NOT_ENFORCED, GATE_NAMESPACE):
        control_plane.kubectl("admin", "create", "namespace", ns, check=False)
    gate.install_rbac()
    bundle = gate.compile_changed("parents", with_parent_creators)
    gate.start_controller(bundle=bundle)
    try:
        yield gate
    finally:
        for process in gate.controllers:
            print(f"--- controller {process.identity} (last lines) ---\n{process.log(3000)}")
        gate.stop()


@pytest.fixture
def admin(gate: Gate) -> Iterator[Client]:
    with Client.connect(gate.plane.kubeconfig("admin")) as connected:
        yield connected


def apply(gate: Gate, user: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Create ``obj`` as ``user`` (kubectl create -o json): the stored object."""
    done = gate.kubectl(user, "create", "-o", "json", "-f", "-", manifest=json.dumps(obj))
    assert done.returncode == 0, done.stderr
    stored: dict[str, Any] = json.loads(done.stdout)
    return stored


def content_objects(gate: Gate, suffix: str) -> list[dict[str, Any]]:
    """The run's Agent, the AgentProvider it names, and its ImplementationSpec, as stored
    (their spec is what is bound)."""
    provider = {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "AgentProvider",
        "metadata": {"name": "codex", "namespace": ENFORCED},
        "spec": {"binary": "/usr/local/bin/codex"},
    }
    agent = {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": AGENT, "namespace": ENFORCED},
        "spec": {"providerRef": {"name": "codex"}},
    }
    impl = {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "ImplementationSpec",
        "metadata": {"name": f"impl-{suffix}", "namespace": ENFORCED},
        "spec": {"text": f"nightly task {suffix}"},
    }
    gate.kubectl("admin", "apply", "-f", "-", manifest=json.dumps(agent))
    gate.kubectl("admin", "apply", "-f", "-", manifest=json.dumps(provider))
    return [
        json.loads(
            gate.kubectl(
                "admin", "get", "agents.agents.proompteng.ai", AGENT, "-n", ENFORCED, "-o", "json"
            ).stdout
        ),
        json.loads(
            gate.kubectl(
                *("admin", "get", "agentproviders.agents.proompteng.ai", "codex"),
                *("-n", ENFORCED, "-o", "json"),
            ).stdout
        ),
        apply(gate, "admin", impl),
    ]


def sign_parent(
    gate: Gate, subject: str, digest: str, references: dict[str, str]
) -> list[dict[str, Any]]:
    """Two platform leads' approvals of the parent (``subject``, its coverage ``digest``),
    binding ``references``: what `approvalgate approve` writes on a parent."""
    now = records.now_utc()
    envelopes = []
    for name in APPROVERS:
        claim = records.Claim(
            subject=subject,
            digest=digest,
            decision="approve",
            approver=name,
            reason="",
            issued_at=now - timedelta(minutes=1),
            expires_at=now + timedelta(hours=2),
            nonce=records.new_nonce(),
            environment=ENV,
            references=references,
        )
        signer = signer_from_pem((gate.keys / f"{name}.key").read_bytes())
        envelopes.append(records.sign(claim, signer))
    return envelopes


def statement_of(envelope: dict[str, Any]) -> str:
    return hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()


def use_of(admin: Client, namespace: str, uid: str) -> dict[str, Any] | None:
    return objects.get(admin, APPROVAL_USES, uid, namespace)


# --- the API server's rules for a use --------------------------------------------------------


def test_the_api_server_keeps_a_uses_references_well_formed_and_immutable(gate: Gate) -> None:
    uid = str(uuid.uuid4())
    use = {
        "apiVersion": view.API_VERSION,
        "kind": "ApprovalUse",
        "metadata": {"name": uid, "namespace": NOT_ENFORCED},
        "spec": {
            "run": {"name": "r", "uid": uid},
            "environment": ENV,
            "specDigest": "ab" * 32,
            "statements": ["cd" * 32],
            "expiresAt": "2026-01-01T00:00:00Z",
            "references": {"ImplementationSpec/task-a": "ef" * 32, "Agent/codex-agent": "01" * 32},
        },
    }
    stored = apply(gate, "admin", use)
    assert stored["spec"]["references"] == use["spec"]["references"]
    changed = copy.deepcopy(stored)
    changed["spec"]["references"]["Agent/codex-agent"] = "02" * 32
    done = gate.kubectl("admin", "replace", "-f", "-", manifest=json.dumps(changed))
    assert done.returncode != 0 and "an ApprovalUse is immutable" in done.stderr, done.stderr
    for key, digest in (("Secret/x", "ef" * 32), ("Agent/Codex", "ef" * 32), ("Agent/x", "EF")):
        bad = copy.deepcopy(use)
        other = str(uuid.uuid4())
        bad["metadata"]["name"] = bad["spec"]["run"]["uid"] = other
        bad["spec"]["references"] = {key: digest}
        done = gate.kubectl("admin", "create", "-f", "-", manifest=json.dumps(bad))
        assert done.returncode != 0 and "spec.references" in done.stderr, (key, done.stderr)


# --- derived runs --------------------------------------------------------------------------


@dataclass(frozen=True)
class Approved:
    """A parent's records and the content they bind."""

    envelopes: list[dict[str, Any]]
    binding: dict[str, str]


def approve_parent(gate: Gate, parent: dict[str, Any], *others: dict[str, Any]) -> Approved:
    """Two platform leads approve the stored ``parent`` (its coverage, from the objects as
    stored: ``others`` are what it covers), binding the content its runs execute; their
    records are then put on it (an annotation: the coverage does not change)."""
    current = view.StaticView.build(objects=[parent, *others])
    coverage = parents.coverage(parent, current)
    assert isinstance(coverage, parents.Coverage), coverage
    binding = content.binding(coverage.references, ENFORCED, current)
    envelopes = sign_parent(gate, coverage.subject, coverage.digest, binding)
    kind = {"Schedule": "schedules.schedules.proompteng.ai"}.get(
        parent["kind"], "orchestrationruns.orchestration.proompteng.ai"
    )
    done = gate.kubectl(
        "admin",
        "annotate",
        kind,
        parent["metadata"]["name"],
        "-n",
        ENFORCED,
        f"{records.ANNOTATION}={records.dump_annotation(envelopes)}",
    )
    assert done.returncode == 0, done.stderr
    return Approved(envelopes, binding)


def approved_schedule(gate: Gate, name: str) -> tuple[dict[str, Any], dict[str, Any], Approved]:
    """Schedule ``name`` of a run of codex-agent with its own ImplementationSpec, approved
    (its run-template annotation as `approvalgate approve --target` writes it); and its
    target AgentRun (the template: not created)."""
    agent, provider, impl = content_objects(gate, name)
    target_spec = {
        "agentRef": {"name": AGENT},
        "implementationSpecRef": {"name": impl["metadata"]["name"]},
        "runtime": {"type": "job"},
        "parameters": {"repository": "proompteng/lab", "task": "nightly"},
    }
    target = {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "AgentRun",
        "metadata": {"name": f"{name}-target", "namespace": ENFORCED},
        "spec": target_spec,
    }
    template = parents.schedule_template(target_spec)
    schedule = apply(
        gate,
        "admin",
        {
            "apiVersion": "schedules.proompteng.ai/v1alpha1",
            "kind": "Schedule",
            "metadata": {
                "name": name,
                "namespace": ENFORCED,
                "annotations": {parents.TEMPLATE_ANNOTATION: json.dumps(template)},
            },
            "spec": {
                "cron": "0 3 * * *",
                "targetRef": {"kind": "AgentRun", "name": target["metadata"]["name"]},
            },
        },
    )
    approved = approve_parent(gate, schedule, agent, provider, impl)
    assert set(approved.binding) == {
        f"Agent/{AGENT}",
        "AgentProvider/codex",  # the one the Agent names
        f"ImplementationSpec/{impl['metadata']['name']}",
    }
    return schedule, target, approved


def fire(gate: Gate, schedule: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """What upstream's schedule runner applies (run.json, a fresh delivery id), as the
    platform's controller ServiceAccount: the stored run."""
    manifest = json.loads(
        json.dumps(parents.schedule_run_manifest(schedule, target)).replace(
            parents.DELIVERY_PLACEHOLDER, str(uuid.uuid4())
        )
    )
    assert manifest["metadata"]["labels"][parents.SCHEDULE_LABEL] == schedule["metadata"]["name"]
    return apply(gate, PLATFORM_CREATOR, manifest)


def assert_use_records(use: dict[str, Any], run: dict[str, Any], approved: Approved) -> None:
    meta = run["metadata"]
    spec = use["spec"]
    assert spec["run"] == {"name": meta["name"], "uid": meta["uid"]}
    assert spec["environment"] == ENV
    assert sorted(spec["statements"]) == sorted(statement_of(e) for e in approved.envelopes)
    assert spec["references"] == approved.binding
    expiries = [
        json.loads(base64.b64decode(e["payload"]))["predicate"]["expiresAt"]
        for e in approved.envelopes
    ]
    assert records.parse_time(spec["expiresAt"]) == max(map(records.parse_time, expiries))


def test_a_schedules_run_gets_a_use_of_the_schedules_approvals_and_bound_content(
    gate: Gate, admin: Client
) -> None:
    """The platform's controller creates a run from an approved Schedule (no finalizer):
    the queue's controller records its use, with the Schedule's records and what they bind;
    each fire is a use of its own."""
    schedule, target, approved = approved_schedule(gate, unique("nightly"))
    runs = [fire(gate, schedule, target) for _ in range(2)]
    for run in runs:
        meta = run["metadata"]
        assert view.USE_FINALIZER not in (meta.get("finalizers") or [])
        use = eventually(
            "the derived run's use is recorded", lambda m=meta: use_of(admin, ENFORCED, m["uid"])
        )
        assert_use_records(use, run, approved)
        # the run itself is left alone (no finalizer added)
        again = objects.get(admin, AGENT_RUNS, meta["name"], ENFORCED)
        assert again is not None
        assert view.USE_FINALIZER not in (again["metadata"].get("finalizers") or [])
    # two runs, two uses of the same approvals: what parents.maxRuns counts
    statements = {statement_of(e) for e in approved.envelopes}
    listed = json.loads(gate.kubectl("admin", "get", USES, "-n", ENFORCED, "-o", "json").stdout)[
        "items"
    ]
    using = [u for u in listed if statements & set(u["spec"]["statements"])]
    assert sorted(u["metadata"]["name"] for u in using) == sorted(
        r["metadata"]["uid"] for r in runs
    )


def test_an_orchestration_steps_run_gets_a_use_of_the_orchestration_runs_approvals(
    gate: Gate, admin: Client
) -> None:
    """The orchestration controller creates a step's run the moment the OrchestrationRun
    is there: its use lists the OrchestrationRun's records and the content they bind."""
    name = unique("release")
    agent, provider, impl = content_objects(gate, name)
    orchestration = apply(
        gate,
        "admin",
        {
            "apiVersion": "orchestration.proompteng.ai/v1alpha1",
            "kind": "Orchestration",
            "metadata": {"name": f"{name}-flow", "namespace": ENFORCED},
            "spec": {
                "steps": [
                    {
                        "name": "implement",
                        "kind": "AgentRun",
                        "agentRef": {"name": AGENT},
                        "implementationSpecRef": {"name": impl["metadata"]["name"]},
                        "with": {"task": "ship"},
                    }
                ]
            },
        },
    )
    orun = apply(
        gate,
        "admin",
        {
            "apiVersion": "orchestration.proompteng.ai/v1alpha1",
            "kind": "OrchestrationRun",
            "metadata": {"name": name, "namespace": ENFORCED},
            "spec": {
                "orchestrationRef": {"name": orchestration["metadata"]["name"]},
                "parameters": {"repository": "proompteng/lab"},
            },
        },
    )
    approved = approve_parent(gate, orun, orchestration, agent, provider, impl)
    spec = parents.step_run_spec(orchestration["spec"], orun["spec"], "implement")
    assert spec is not None
    run = apply(
        gate,
        PLATFORM_CREATOR,
        {
            "apiVersion": "agents.proompteng.ai/v1alpha1",
            "kind": "AgentRun",
            "metadata": parents.step_run_metadata(name, "implement", ENFORCED),
            "spec": spec,
        },
    )
    use = eventually(
        "the step run's use is recorded", lambda: use_of(admin, ENFORCED, run["metadata"]["uid"])
    )
    assert_use_records(use, run, approved)


def test_a_run_with_no_parent_label_and_no_finalizer_gets_no_use(gate: Gate, admin: Client) -> None:
    """Only derived runs are recorded without the finalizer: an ordinary run is not (here,
    with no webhook, one that would have been denied)."""
    plain = apply(gate, "admin", _run(unique("plain"), {}))
    schedule, target, _ = approved_schedule(gate, unique("nightly"))
    derived = fire(gate, schedule, target)
    eventually(
        "the derived run's use is recorded",
        lambda: use_of(admin, ENFORCED, derived["metadata"]["uid"]),
    )
    # the controller has looked at every run by now (it saw the later one)
    assert use_of(admin, ENFORCED, plain["metadata"]["uid"]) is None


def _run(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "AgentRun",
        "metadata": {"name": name, "namespace": ENFORCED, "labels": labels},
        "spec": {
            "agentRef": {"name": AGENT},
            "implementationSpecRef": {"name": "codex-impl-sample"},
            "runtime": {"type": "job"},
        },
    }
