"""`approve --cluster` of a Schedule, and `status`/`explain` of the Schedule and of a run made
from it, against the real kube-apiserver: approvers with their own kubeconfig (static tokens,
real RBAC), the target AgentRun, the ImplementationSpec and the Agent read from the API server
(with the defaults and pruning it applied), the chain printed as the webhook would judge it.

Neither the webhook nor the schedule controller runs here: the admin applies the approved
Schedule and creates the run the controller would create (`parents.schedule_run_manifest`,
its placeholder replaced), so what `status` and `explain` say of them is tested; the chain
with both running is tested where they are wired (tests/e2e/test_parents.py).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from approvalgate.approvals import content, parents, records
from approvalgate.approvals.digest import canonical_json
from approvalgate.approvals.view import StaticView
from approvalgate.cli import main
from tests.e2e.controlplane import ControlPlane

pytestmark = pytest.mark.e2e

ENV = "staging"
CREATOR = "system:serviceaccount:{namespace}:agents-schedule"
"""The user the schedule's CronJob pods create runs as (the policy's parents.creators)."""


@dataclass
class World:
    plane: ControlPlane
    namespace: str
    work: Path

    def cli(
        self, capsys: pytest.CaptureFixture[str], user: str, *args: str
    ) -> tuple[int, str, str]:
        """``approvalgate ARGS --kubeconfig <user's>`` in this process: (exit, stdout, stderr)."""
        capsys.readouterr()
        code = main([*args, "--kubeconfig", str(self.plane.kubeconfig(user))])
        out, err = capsys.readouterr()
        return code, out, err

    def apply(self, text: str) -> None:
        self.plane.kubectl("admin", "apply", "-n", self.namespace, "-f", "-", input=text)

    def get(self, resource: str, name: str) -> dict[str, Any]:
        done = self.plane.kubectl(
            "admin", "get", resource, name, "-n", self.namespace, "-o", "json"
        )
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    def file(self, name: str, text: str) -> Path:
        path = self.work / name
        path.write_text(text)
        return path

    def approve(
        self, capsys: pytest.CaptureFixture[str], user: str, path: Path, *extra: str
    ) -> tuple[int, str, str]:
        """``approve PATH --cluster`` as a script does it (no terminal): read what it would
        sign with --dry-run, then sign with the pin printed (the dry run's answer when it
        fails)."""
        read = self.approve_args(capsys, user, path, *extra, "--dry-run")
        if read[0] != 0:
            return read
        pin = read[1].splitlines()[-1].removeprefix("pin: ")
        return self.approve_args(capsys, user, path, *extra, "--expect", pin)

    def approve_args(
        self, capsys: pytest.CaptureFixture[str], user: str, path: Path, *extra: str
    ) -> tuple[int, str, str]:
        return self.cli(
            capsys,
            user,
            *("approve", str(path), "--cluster", "--in-place", *self.policies()),
            *("--key", str(self.work / "keys" / f"{user}.key"), "--approver", user),
            *extra,
        )

    def policies(self) -> list[str]:
        return ["--policies", str(self.work / "policies"), "--env", ENV]


def policy(namespace: str) -> str:
    return f"""\
apiVersion: approvals.proompteng.ai/v1alpha1
kind: ApprovalPolicy
metadata:
  name: two-person
  namespace: {namespace}
spec:
  mode: manual
  defaultDecision: deny
  subjects:
    - kind: Agent
      name: codex-agent
  approvers: [alice, bob]
  requiredApprovals: 2
  timeoutSeconds: 3600
  rejection: veto
  parents:
    creators: ["{CREATOR}"]
    maxTTL: 48h
"""


@pytest.fixture(scope="module")
def world(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("parents")
    keys = work / "keys"
    (work / "policies").mkdir()
    for name in ("alice", "bob"):
        assert main(["keygen", name, "--out", str(keys), "--usernames", name]) == 0
        (work / "policies" / f"{name}.yaml").write_text((keys / f"{name}.yaml").read_text())
    namespace = control_plane.create_namespace("parents")
    (work / "policies" / "policy.yaml").write_text(policy(namespace))
    control_plane.grant(
        "parents-approver",
        subjects=["group:approvers"],
        namespace=namespace,
        rules=[
            {
                "apiGroups": ["agents.proompteng.ai"],
                "resources": ["agentruns", "implementationspecs", "agents", "agentproviders"],
                "verbs": ["get", "list"],
            },
            {
                "apiGroups": [
                    "schedules.proompteng.ai",
                    "orchestration.proompteng.ai",
                    "swarm.proompteng.ai",
                ],
                "resources": ["schedules", "orchestrationruns", "orchestrations", "swarms"],
                "verbs": ["get", "list"],
            },
            {
                "apiGroups": ["gates.proompteng.ai"],
                "resources": ["approvalrequests", "approvaldecisions", "approvaluses"],
                "verbs": ["get", "list"],
            },
            {  # withdraw --run files a decision about a Schedule
                "apiGroups": ["gates.proompteng.ai"],
                "resources": ["approvaldecisions"],
                "verbs": ["create"],
            },
        ],
    )
    world = World(control_plane, namespace, work)
    world.apply(
        f"""\
apiVersion: agents.proompteng.ai/v1alpha1
kind: ImplementationSpec
metadata:
  name: task-a
spec:
  summary: The nightly finance report
  text: |
    Write the nightly finance report.
    Post it to #finance.
---
apiVersion: agents.proompteng.ai/v1alpha1
kind: Agent
metadata:
  name: codex-agent
spec:
  providerRef:
    name: codex-runner
---
apiVersion: agents.proompteng.ai/v1alpha1
kind: AgentProvider
metadata:
  name: codex-runner
spec:
  binary: /usr/local/bin/codex
---
apiVersion: agents.proompteng.ai/v1alpha1
kind: AgentRun
metadata:
  name: nightly-target
  namespace: {namespace}
spec:
  agentRef:
    name: codex-agent
  implementationSpecRef:
    name: task-a
  runtime:
    type: job
  parameters:
    task: report
"""
    )
    yield world
    control_plane.kubectl("admin", "delete", "namespace", namespace, "--wait=false")


def schedule(namespace: str, name: str, target: str) -> str:
    return f"""\
# {name}: every night
apiVersion: schedules.proompteng.ai/v1alpha1
kind: Schedule
metadata:
  name: {name}
  namespace: {namespace}
spec:
  cron: "0 2 * * *"
  targetRef:
    kind: AgentRun
    name: {target}
"""


def statements(obj: dict[str, Any]) -> list[dict[str, Any]]:
    value = obj["metadata"]["annotations"][records.ANNOTATION]
    return [json.loads(base64.b64decode(e["payload"])) for e in json.loads(value)]


def derived_run(world: World, schedule_obj: dict[str, Any], target: dict[str, Any]) -> str:
    """Create the run the schedule's CronJob would (as the admin: no webhook here); its name."""
    manifest = parents.schedule_run_manifest(schedule_obj, target)
    text = json.dumps(manifest).replace("__AGENTS_DELIVERY_ID__", str(uuid.uuid4()))
    done = world.plane.kubectl(
        "admin", "create", "-n", world.namespace, "-f", "-", "-o", "json", input=text
    )
    name: str = json.loads(done.stdout)["metadata"]["name"]
    return name


def test_approve_a_schedule_from_the_cluster_then_status_and_explain_its_chain(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = world.namespace
    path = world.file("nightly.yaml", schedule(ns, "nightly", "nightly-target"))
    for user in ("alice", "bob"):
        code, out, err = world.approve(capsys, user, path)
        assert (code, out) == (0, ""), err
        assert f"signed approve of Schedule {ns}/nightly coverage sha256:" in err
        assert f"(from AgentRun {ns}/nightly-target) for environment {ENV} as {user}" in err
        assert "    | summary: The nightly finance report" in err
        assert "    | Write the nightly finance report." in err
    approved = yaml.safe_load(path.read_text())
    assert path.read_text().startswith("# nightly: every night\n")
    # the template is made from the target as the API server has it
    target = world.get("agentruns.agents.proompteng.ai", "nightly-target")
    template = parents.schedule_template(target["spec"], parents.DEFAULT_PER_RUN_FIELDS)
    annotations = approved["metadata"]["annotations"]
    assert annotations[parents.TEMPLATE_ANNOTATION] == canonical_json(template).decode()
    spec = world.get("implementationspecs.agents.proompteng.ai", "task-a")
    agent = world.get("agents.agents.proompteng.ai", "codex-agent")
    runner = world.get("agentproviders.agents.proompteng.ai", "codex-runner")
    signed = statements(approved)
    assert [s["predicate"]["approver"] for s in signed] == ["alice", "bob"]
    for statement in signed:
        assert statement["subject"][0]["name"] == parents.subject("Schedule", ns, "nightly")
        assert statement["predicate"]["references"] == {
            "ImplementationSpec/task-a": content.digest(spec),
            "Agent/codex-agent": content.digest(agent),
            "AgentProvider/codex-runner": content.digest(runner),  # followed from the Agent
        }
    world.apply(path.read_text())

    # a run's approval binds its content read from the cluster the same way
    run_path = world.file(
        "target.yaml",
        yaml.safe_dump(
            {k: target[k] for k in ("apiVersion", "kind", "spec")}
            | {"metadata": {"name": "nightly-copy", "namespace": ns}}
        ),
    )
    code, _, err = world.approve(capsys, "alice", run_path)
    assert code == 0, err
    (statement,) = statements(yaml.safe_load(run_path.read_text()))
    assert statement["predicate"]["references"] == signed[0]["predicate"]["references"]

    code, out, err = world.cli(
        capsys, "alice", "status", f"schedule/{ns}/nightly", *world.policies()
    )
    assert code == 0, out + err
    assert out.startswith(f"Schedule {ns}/nightly: would be admitted in {ENV}")

    stored = world.get("schedules.schedules.proompteng.ai", "nightly")
    name = derived_run(world, stored, target)
    code, out, err = world.cli(
        capsys, "alice", "status", f"agentrun/{ns}/{name}", *world.policies()
    )
    assert code == 0, out + err
    assert out.splitlines()[:3] == [
        f"AgentRun {ns}/{name}: would be admitted in {ENV} ({out.split('(')[1].split(')')[0]})",
        f"  created by:  {CREATOR.format(namespace=ns)} (assumed: its policies' "
        "parents.creators; --user says another)",
        f"  chain:   AgentRun {ns}/{name} <- Schedule {ns}/nightly <- approval (2 of 2: alice, "
        "bob)",
    ]

    run_file = world.file(
        "derived.yaml", json.dumps(world.get("agentruns.agents.proompteng.ai", name))
    )
    code, out, err = world.cli(
        capsys,
        "alice",
        *("explain", str(run_file), *world.policies(), "--cluster"),
        *("--user", CREATOR.format(namespace=ns)),
    )
    assert code == 0, err
    assert (
        f"  chain: AgentRun {ns}/{name} <- Schedule {ns}/nightly <- approval (2 of 2: alice, bob)"
        in out.splitlines()
    )

    # the Schedule itself: its coverage and its approval
    code, out, err = world.cli(
        capsys, "alice", "explain", str(path), *world.policies(), "--cluster"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:2] == [
        f"Schedule {ns}/nightly",
        f"  subject {parents.subject('Schedule', ns, 'nightly')}",
    ]
    assert lines[2].startswith("  coverage sha256:") and lines[2].endswith(" (1 run template)")
    assert lines[3:5] == [
        "  references Agent/codex-agent",
        "  references ImplementationSpec/task-a",
    ]
    assert f"  chain: Schedule {ns}/nightly <- approval (2 of 2: alice, bob)" in lines
    assert lines[-1].startswith("  => admitted (")

    # the ImplementationSpec changes after the approval: the run no longer derives from it
    world.plane.kubectl(
        "admin",
        *("patch", "implementationspecs.agents.proompteng.ai", "task-a", "-n", ns),
        *("--type=merge", "-p", json.dumps({"spec": {"text": "Delete the finance data."}})),
    )
    code, out, err = world.cli(
        capsys, "alice", "status", f"agentrun/{ns}/{name}", *world.policies()
    )
    assert code == 1, out + err
    assert out.splitlines()[2] == (
        f"  chain:   AgentRun {ns}/{name} <- Schedule {ns}/nightly <- approval (0 of 2)"
    )
    assert (
        f"- record 0 by alice: ImplementationSpec {ns}/task-a changed since the approval "
        "(approved sha256:"
    ) in out


def test_approve_cluster_errors_name_what_is_missing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = world.namespace
    path = world.file("missing.yaml", schedule(ns, "missing", "no-such-run"))
    before = path.read_text()
    code, out, err = world.approve(capsys, "alice", path)
    assert (code, out) == (1, "")
    assert err == (
        f"error: AgentRun target {ns}/no-such-run not found in the cluster\n"
        "  hint: apply it first, or give its manifest (--target / --orchestration) instead of "
        "--cluster\n"
    )
    assert path.read_text() == before
    # mallory may read nothing in the namespace: the 403 says what to ask for
    path = world.file("forbidden.yaml", schedule(ns, "forbidden", "nightly-target"))
    code, _, err = world.cli(
        capsys,
        "mallory",
        *("approve", str(path), "--cluster", "--env", ENV, "--dry-run"),
        *("--key", str(world.work / "keys" / "alice.key"), "--approver", "alice"),
    )
    assert code == 1
    assert "forbidden" in err
    assert "you need get on them in the namespace" in err
    # content absent from the cluster
    world.apply(
        f"""\
apiVersion: agents.proompteng.ai/v1alpha1
kind: AgentRun
metadata:
  name: orphan-target
  namespace: {ns}
spec:
  agentRef:
    name: codex-agent
  implementationSpecRef:
    name: not-there
  runtime:
    type: job
"""
    )
    path = world.file("orphan.yaml", schedule(ns, "orphan", "orphan-target"))
    code, _, err = world.approve(capsys, "alice", path)
    assert code == 1
    assert err.startswith(
        f"error: Schedule {ns}/orphan references ImplementationSpec {ns}/not-there, not found "
        "in the cluster:"
    )


def test_content_rewritten_between_the_dry_run_and_approve_is_not_signed(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """A script approving a Schedule with --cluster reads what it would sign (--dry-run: the
    run template made from the target, the task text, whole, and the pin); the requester
    (who may edit ImplementationSpecs) rewrites the task text before the script signs: the
    pin no longer matches, nothing is signed. Without --expect nothing is signed either."""
    ns = world.namespace
    world.apply(
        """\
apiVersion: agents.proompteng.ai/v1alpha1
kind: ImplementationSpec
metadata:
  name: task-pinned
spec:
  summary: The weekly report
  text: |
    Write the weekly report.
---
apiVersion: agents.proompteng.ai/v1alpha1
kind: AgentRun
metadata:
  name: weekly-target
spec:
  agentRef:
    name: codex-agent
  implementationSpecRef:
    name: task-pinned
  runtime:
    type: job
"""
    )
    path = world.file("weekly.yaml", schedule(ns, "weekly", "weekly-target"))
    before = path.read_text()
    code, _, err = world.approve_args(capsys, "alice", path)
    assert code == 2 and "--cluster needs --expect PIN when not run on a terminal" in err
    code, out, err = world.approve_args(capsys, "alice", path, "--dry-run")
    assert code == 0, err
    assert f"Schedule {ns}/weekly coverage sha256:" in out
    assert f"  it binds ImplementationSpec {ns}/task-pinned spec sha256:" in out
    assert "    |   Write the weekly report.\n" in out
    pin = out.splitlines()[-1].removeprefix("pin: ")
    world.plane.kubectl(
        "admin",
        *("patch", "implementationspecs.agents.proompteng.ai", "task-pinned", "-n", ns),
        *("--type=merge", "-p", json.dumps({"spec": {"text": "Delete the finance data."}})),
    )
    code, _, err = world.approve_args(capsys, "alice", path, "--expect", pin)
    assert code == 1, err
    assert f"error: {path} and what it binds in the cluster are not as you read them" in err
    assert path.read_text() == before
    # read again: what is signed is what was read then
    code, out, err = world.approve(capsys, "alice", path)
    assert code == 0, err
    (statement,) = statements(yaml.safe_load(path.read_text()))
    rewritten = world.get("implementationspecs.agents.proompteng.ai", "task-pinned")
    assert statement["predicate"]["references"]["ImplementationSpec/task-pinned"] == (
        content.digest(rewritten)
    )


def test_withdraw_a_schedule_in_the_cluster(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """An approver takes back their approval of a Schedule with the file they approved: an
    ApprovalDecision about the Schedule, counted whether or not the Schedule carries it."""
    ns = world.namespace
    path = world.file("weekly.yaml", schedule(ns, "weekly", "nightly-target"))
    for user in ("alice", "bob"):
        code, _, err = world.approve(capsys, user, path)
        assert code == 0, err
    world.apply(path.read_text())
    code, out, err = world.cli(
        capsys, "alice", "status", f"schedule/{ns}/weekly", *world.policies()
    )
    assert code == 0, out + err
    code, out, err = world.cli(
        capsys,
        "alice",
        *("withdraw", "--run", str(path), "--env", ENV),
        *("--key", str(world.work / "keys" / "alice.key"), "--approver", "alice"),
    )
    assert code == 0, err
    assert out.startswith(f"created ApprovalDecision {ns}/weekly-")
    assert f": withdraw of Schedule {ns}/weekly (coverage sha256:" in out
    code, out, err = world.cli(
        capsys, "alice", "status", f"schedule/{ns}/weekly", *world.policies(), "-o", "json"
    )
    assert code == 1, out + err
    shown = json.loads(out)
    assert (shown["allowed"], shown["chain"]) == (False, [f"Schedule {ns}/weekly"])
    assert shown["approval"] == "approval (1 of 2: bob)"


def test_approve_an_orchestration_run_with_its_orchestration_from_the_cluster(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = world.namespace
    world.apply(
        f"""\
apiVersion: orchestration.proompteng.ai/v1alpha1
kind: Orchestration
metadata:
  name: release
  namespace: {ns}
spec:
  steps:
    - name: build
      kind: AgentRun
      agentRef:
        name: codex-agent
      with:
        implementationSpecRef: task-a
        target: prod
"""
    )
    path = world.file(
        "release-1.yaml",
        f"""\
apiVersion: orchestration.proompteng.ai/v1alpha1
kind: OrchestrationRun
metadata:
  name: release-1
  namespace: {ns}
spec:
  orchestrationRef:
    name: release
  parameters:
    version: "1.2"
""",
    )
    code, out, err = world.approve(capsys, "alice", path)
    assert (code, out) == (0, ""), err
    assert f"signed approve of OrchestrationRun {ns}/release-1 coverage sha256:" in err
    assert f"(from Orchestration {ns}/release)" in err
    orchestration = world.get("orchestrations.orchestration.proompteng.ai", "release")
    view = StaticView.build(objects=[{**orchestration, "kind": "Orchestration"}])
    approved = yaml.safe_load(path.read_text())
    covered = parents.coverage(approved, view)
    assert not isinstance(covered, str)
    (statement,) = statements(approved)
    assert statement["subject"][0] == {
        "name": parents.subject("OrchestrationRun", ns, "release-1"),
        "digest": {"sha256": covered.digest},
    }
    assert sorted(statement["predicate"]["references"]) == [
        "Agent/codex-agent",
        "AgentProvider/codex-runner",
        "ImplementationSpec/task-a",
    ]
    world.apply(path.read_text())
    code, out, err = world.cli(
        capsys, "alice", "status", f"orchestrationrun/{ns}/release-1", *world.policies()
    )
    assert code == 1, out + err  # one of two approvals
    assert out.splitlines()[0].startswith(
        f"OrchestrationRun {ns}/release-1: would be denied in {ENV} ("
    )
    assert f"  chain:   OrchestrationRun {ns}/release-1 <- approval (1 of 2: alice)" in out


def test_a_withdrawal_reaches_the_orchestration_that_was_approved(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """`withdraw --run` of an OrchestrationRun reads its Orchestration from the cluster: the
    requester rewrites it while the approver withdraws, and puts it back after. The
    withdrawal named only the coverage read then, so the approval of the original came back
    with it; it now names the coverage the file's approval was signed for too."""
    ns = world.namespace
    steps = [
        {
            "name": "build",
            "kind": "AgentRun",
            "agentRef": {"name": "codex-agent"},
            "with": {"implementationSpecRef": "task-a", "target": "prod"},
        }
    ]
    world.apply(
        json.dumps(
            {
                "apiVersion": "orchestration.proompteng.ai/v1alpha1",
                "kind": "Orchestration",
                "metadata": {"name": "rollout", "namespace": ns},
                "spec": {"steps": steps},
            }
        )
    )
    path = world.file(
        "rollout-1.yaml",
        f"""\
apiVersion: orchestration.proompteng.ai/v1alpha1
kind: OrchestrationRun
metadata:
  name: rollout-1
  namespace: {ns}
spec:
  orchestrationRef:
    name: rollout
""",
    )
    for user in ("alice", "bob"):
        code, _, err = world.approve(capsys, user, path)
        assert code == 0, err
    world.apply(path.read_text())

    def approval() -> str:
        ref = f"orchestrationrun/{ns}/rollout-1"
        _, out, _ = world.cli(capsys, "alice", "status", ref, *world.policies(), "-o", "json")
        found: str = json.loads(out)["approval"]
        return found

    assert approval() == "approval (2 of 2: alice, bob)"

    def patch(new_steps: list[dict[str, Any]]) -> None:
        world.plane.kubectl(
            "admin",
            *("patch", "orchestrations.orchestration.proompteng.ai", "rollout", "-n", ns),
            *("--type=merge", "-p", json.dumps({"spec": {"steps": new_steps}})),
        )

    patch([{**steps[0], "name": "build-and-push"}])
    code, _, err = world.cli(
        capsys,
        "alice",
        *("withdraw", "--run", str(path), "--env", ENV),
        *("--key", str(world.work / "keys" / "alice.key"), "--approver", "alice"),
    )
    assert code == 0, err
    patch(steps)
    assert approval() == "approval (1 of 2: bob)"
    assert "the withdraw is filed for both" in err


def test_approve_a_swarm_with_its_stage_targets_from_the_cluster(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = world.namespace
    path = world.file(
        "swarm.yaml",
        f"""\
apiVersion: swarm.proompteng.ai/v1alpha1
kind: Swarm
metadata:
  name: torghut
  namespace: {ns}
spec:
  mode: lights-out
  owner: {{channel: slack, id: team-finance}}
  domains: [finance]
  objectives: [nightly report]
  discovery: {{sources: [{{name: ledger}}]}}
  delivery: {{deploymentTargets: [prod]}}
  execution:
    discover: {{enabled: false}}
    plan: {{enabled: false}}
    implement:
      enabled: true
      every: 1d
      targetRef: {{kind: AgentRun, name: nightly-target}}
    verify: {{enabled: false}}
""",
    )
    code, out, err = world.approve(capsys, "alice", path)
    assert (code, out) == (0, ""), err
    assert f"(from implement: AgentRun {ns}/nightly-target)" in err
    target = world.get("agentruns.agents.proompteng.ai", "nightly-target")
    approved = yaml.safe_load(path.read_text())
    expected = {"implement": parents.schedule_template(target["spec"])}
    annotations = approved["metadata"]["annotations"]
    assert annotations[parents.TEMPLATES_ANNOTATION] == canonical_json(expected).decode()
    (statement,) = statements(approved)
    assert statement["subject"][0]["name"] == parents.subject("Swarm", ns, "torghut")
    world.apply(path.read_text())
    code, out, err = world.cli(capsys, "alice", "status", f"swarm/{ns}/torghut", *world.policies())
    assert code == 1, out + err
    assert f"  chain:   Swarm {ns}/torghut <- approval (1 of 2: alice)" in out
