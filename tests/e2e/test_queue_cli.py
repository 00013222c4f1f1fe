"""The approval queue's CLI against the real kube-apiserver, as a requester, two approvers,
an outsider and an admin (tokens, real RBAC): request -> pending (and pending --watch sees
it) -> approve --request twice -> decisions exist, created by the right users; reject,
withdraw, cancel, status, and the errors a user meets (403, 404, 409, a forged digest).

Neither the controller nor the webhook runs here: the admin writes the status the
controller would write (status subresource), so what `pending` and `status` show of it is
tested; the chain with both is tested where they are wired (issue 15's end-to-end test).
The CRDs are the chart's (charts/approvalgate/files/crds/, with their CEL rules).
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from approvalgate.approvals import content, records
from approvalgate.approvals.digest import spec_digest
from approvalgate.cli import main
from tests.e2e.controlplane import ControlPlane
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e

CHART_CRDS = ROOT / "charts" / "approvalgate" / "files" / "crds"
ENV = "staging"
GROUP = "gates.proompteng.ai"
LINE_TIMEOUT = 60.0  # generous: a line is expected long before; never a speed assertion
CONTENT = """\
apiVersion: agents.proompteng.ai/v1alpha1
kind: Agent
metadata:
  name: codex-agent
spec:
  providerRef:
    name: codex-runner
---
apiVersion: agents.proompteng.ai/v1alpha1
kind: ImplementationSpec
metadata:
  name: codex-impl-sample
spec:
  summary: The nightly report
  text: Write the nightly report.
---
apiVersion: agents.proompteng.ai/v1alpha1
kind: AgentProvider
metadata:
  name: codex-runner
spec:
  binary: /usr/local/bin/codex
"""
"""What the runs reference, and the AgentProvider their Agent names: an approval binds it
(referencedContent: bind, the default)."""


def queue_crds() -> list[Path]:
    found = sorted(CHART_CRDS.glob(f"{GROUP}_*.yaml"))
    assert len(found) == 3, f"the chart's CRDs of the queue are missing from {CHART_CRDS}"
    return found


@dataclass
class Queue:
    plane: ControlPlane
    namespace: str
    keys: Path
    work: Path

    def cli(
        self, capsys: pytest.CaptureFixture[str], user: str, *args: str
    ) -> tuple[int, str, str]:
        """``approvalgate ARGS --kubeconfig <user's>`` in this process: (exit, stdout, stderr)."""
        capsys.readouterr()
        code = main([*args, "--kubeconfig", str(self.plane.kubeconfig(user))])
        out, err = capsys.readouterr()
        return code, out, err

    def run_file(
        self,
        name: str,
        *,
        generate: bool = False,
        task: str = "report",
        impl: str = "codex-impl-sample",
    ) -> Path:
        meta = f"  generateName: {name}-\n" if generate else f"  name: {name}\n"
        path = self.work / f"{name}.yaml"
        path.write_text(
            "apiVersion: agents.proompteng.ai/v1alpha1\nkind: AgentRun\nmetadata:\n"
            f"{meta}  namespace: {self.namespace}\n  labels:\n    team: finance\n"
            "spec:\n  agentRef:\n    name: codex-agent\n"
            f"  implementationSpecRef:\n    name: {impl}\n"
            "  runtime:\n    type: workflow\n"
            f"  parameters:\n    task: '{task}'\n"
        )
        return path

    def request(
        self, capsys: pytest.CaptureFixture[str], name: str, impl: str = "codex-impl-sample"
    ) -> dict[str, Any]:
        code, out, err = self.cli(
            capsys,
            "requester",
            "request",
            str(self.run_file(name, impl=impl)),
            "--env",
            ENV,
            "--reason",
            f"need {name}",
            "-o",
            "json",
        )
        assert code == 0, err
        created: dict[str, Any] = json.loads(out)
        return created

    def decide(
        self, capsys: pytest.CaptureFixture[str], command: str, user: str, name: str, *extra: str
    ) -> tuple[int, str, str]:
        """``approvalgate COMMAND --request NS/NAME`` as ``user``; an approval names the pin
        ``status`` showed ``user`` just before (no terminal here), unless ``extra`` does."""
        ref = f"{self.namespace}/{name}"
        if command == "approve" and "--expect" not in extra:
            extra = ("--expect", self.pin(capsys, user, name), *extra)
        return self.cli(
            capsys,
            user,
            command,
            "--request",
            ref,
            "--key",
            str(self.keys / f"{user}.key"),
            "--approver",
            user,
            *extra,
        )

    def pin(self, capsys: pytest.CaptureFixture[str], user: str, name: str) -> str:
        """The pin ``approvalgate status`` shows ``user`` for request ``name``."""
        code, out, err = self.cli(capsys, user, "status", f"{self.namespace}/{name}", "-o", "json")
        assert code in (0, 1), err
        pin: str = json.loads(out)["pin"]
        return pin

    def kubectl_json(self, *args: str) -> Any:
        done = self.plane.kubectl("admin", *args, "-n", self.namespace, "-o", "json")
        return json.loads(done.stdout)

    def decisions(self, request: str) -> list[dict[str, Any]]:
        items = self.kubectl_json("get", f"approvaldecisions.{GROUP}")["items"]
        mine = [i for i in items if i["spec"]["requestName"] == request]
        # the order `status` shows: creation time, then the order etcd stored them in
        return sorted(
            mine,
            key=lambda i: (
                i["metadata"]["creationTimestamp"],
                int(i["metadata"]["resourceVersion"]),
            ),
        )

    def set_status(self, name: str, status: dict[str, Any]) -> None:
        """Write the status as the controller would (admin, status subresource)."""
        self.plane.kubectl(
            "admin",
            "patch",
            f"approvalrequests.{GROUP}",
            name,
            "-n",
            self.namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )


@pytest.fixture(scope="module")
def q(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Queue]:
    control_plane.apply_crds(queue_crds())
    work = tmp_path_factory.mktemp("queue")
    keys = work / "keys"
    for name in ("alice", "bob"):
        assert main(["keygen", name, "--out", str(keys), "--usernames", name]) == 0
    namespace = control_plane.create_namespace("queue")
    control_plane.grant(
        "queue-requester",
        subjects=["requester"],
        namespace=namespace,
        rules=[
            {
                "apiGroups": [GROUP],
                "resources": ["approvalrequests"],
                "verbs": ["create", "get", "list", "watch", "patch"],
            },
            {"apiGroups": [GROUP], "resources": ["approvaldecisions"], "verbs": ["get", "list"]},
        ],
    )
    control_plane.grant(
        "queue-approver",
        subjects=["group:approvers"],
        namespace=namespace,
        rules=[
            {
                "apiGroups": [GROUP],
                "resources": ["approvalrequests"],
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": [GROUP],
                "resources": ["approvaldecisions"],
                "verbs": ["create", "get", "list"],
            },
            {  # approve --request binds the content the run references, read from here
                "apiGroups": ["agents.proompteng.ai"],
                "resources": ["implementationspecs", "agents", "agentproviders"],
                "verbs": ["get"],
            },
        ],
    )
    control_plane.kubectl("admin", "apply", "-n", namespace, "-f", "-", input=CONTENT)
    yield Queue(control_plane, namespace, keys, work)
    control_plane.kubectl("admin", "delete", "namespace", namespace, "--wait=false")


class Lines:
    """A child process's stdout, line by line, with a timeout per line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stream = process.stdout
        threading.Thread(target=lambda: [self.lines.put(x) for x in stream], daemon=True).start()

    def next(self) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=LINE_TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no line from pending --watch in {LINE_TIMEOUT:.0f}s") from None
        event: dict[str, Any] = json.loads(line)
        return event


def test_request_pending_watch_approve_twice_status(
    q: Queue, capsys: pytest.CaptureFixture[str]
) -> None:
    watch = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "approvalgate",
            "pending",
            "--watch",
            "-n",
            q.namespace,
            "-o",
            "json",
            "--kubeconfig",
            str(q.plane.kubeconfig("alice")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(watch)
        # the requester asks for a generateName run: it is named now, and said so
        path = q.run_file("story", generate=True)
        code, out, err = q.cli(
            capsys, "requester", "request", str(path), "--env", ENV, "--reason", "nightly report"
        )
        assert code == 0, err
        match = re.search(r"named it (story-[a-z0-9]{5}) ", err)
        assert match, err
        name = match.group(1)
        ref = f"{q.namespace}/{name}"
        assert out.startswith(f"created ApprovalRequest {ref}: AgentRun spec sha256:")
        assert "requested by requester" in out
        assert (
            f"  approvers: approvalgate status {ref} (the run, its content and a pin), then "
            f"approvalgate approve --request {ref} --expect PIN --key KEY --approver NAME\n"
        ) in out
        stored = q.kubectl_json("get", f"approvalrequests.{GROUP}", name)
        spec = stored["spec"]
        assert spec["requester"] == "requester"
        assert spec["environment"] == ENV and spec["reason"] == "nightly report"
        assert spec["cancelled"] is False
        assert spec["run"]["metadata"] == {"name": name, "labels": {"team": "finance"}}
        assert spec["specDigest"] == spec_digest(spec["run"]["spec"])

        event = lines.next()
        assert event["event"] == "ADDED" and event["request"]["name"] == name
        assert event["request"]["phase"] == "" and event["request"]["requester"] == "requester"

        # the controller's evaluation (written here by the admin)
        q.set_status(
            name,
            {
                "phase": "Pending",
                "reason": "WaitingForApprovals",
                "required": 2,
                "approvedBy": [],
                "eligible": ["alice", "bob"],
                "expiresAt": "2099-01-01T00:00:00Z",
            },
        )
        event = lines.next()
        assert event["event"] == "MODIFIED"
        assert event["request"]["phase"] == "Pending"
        assert event["request"]["eligible"] == ["alice", "bob"]

        code, out, _ = q.cli(capsys, "alice", "pending", "-n", q.namespace, "--needs", "alice")
        assert code == 0
        header, row = out.splitlines()
        assert header.split() == [
            "NAME",
            "REQUESTER",
            "ENVIRONMENT",
            "PHASE",
            "APPROVED",
            "MAY-APPROVE",
            "EXPIRES",
            "AGE",
        ]
        assert row.split()[:6] == [name, "requester", ENV, "Pending", "0/2", "alice,bob"]
        code, out, err = q.cli(capsys, "alice", "pending", "-n", q.namespace, "--needs", "dana")
        assert (code, out) == (0, "") and "no pending approval requests" in err
        code, out, _ = q.cli(
            capsys, "alice", "pending", "-n", q.namespace, "--exclude", f"other,{ref}", "-o", "json"
        )
        assert json.loads(out) == []

        for approver in ("alice", "bob"):
            code, out, err = q.decide(capsys, "approve", approver, name)
            assert code == 0, err
            assert out.startswith(f"created ApprovalDecision {q.namespace}/{name}-")
            assert f"approve of ApprovalRequest {ref}" in out and f"user {approver}" in out
            # the content it binds, as the cluster has it, with the text to read
            assert "  binds ImplementationSpec " + f"{q.namespace}/codex-impl-sample" in err
            assert "    | summary: The nightly report\n    | Write the nightly report.\n" in err

        decisions = q.decisions(name)
        assert [d["spec"]["approver"] for d in decisions] == ["alice", "bob"]
        for decision in decisions:
            approver = decision["spec"]["approver"]
            assert decision["metadata"]["generateName"] == f"{name}-"
            assert decision["metadata"]["annotations"][f"{GROUP}/created-by"] == approver
            assert decision["spec"]["decision"] == "approve"
            (record,), problems = records.parse_annotation(json.dumps([decision["spec"]["record"]]))
            assert not problems
            claim = record.claim
            assert claim.subject == f"agents.proompteng.ai/AgentRun/{ref}"
            assert claim.digest == spec["specDigest"]
            statement = json.loads(record.envelope.payload)
            assert statement["predicate"]["references"] == {
                "Agent/codex-agent": content.digest(
                    q.kubectl_json("get", "agents.agents.proompteng.ai", "codex-agent")
                ),
                "AgentProvider/codex-runner": content.digest(  # followed from the Agent
                    q.kubectl_json("get", "agentproviders.agents.proompteng.ai", "codex-runner")
                ),
                "ImplementationSpec/codex-impl-sample": content.digest(
                    q.kubectl_json(
                        "get", "implementationspecs.agents.proompteng.ai", "codex-impl-sample"
                    )
                ),
            }
            assert (claim.decision, claim.approver, claim.environment) == (
                "approve",
                approver,
                ENV,
            )

        # the controller counted both and created the run
        q.set_status(
            name,
            {
                "phase": "Submitted",
                "reason": "RunCreated",
                "approvedBy": ["alice", "bob"],
                "eligible": [],
                "run": {"name": name, "uid": "uid-1"},
            },
        )
        event = lines.next()
        assert event["event"] == "REMOVED" and event["request"]["phase"] == "Submitted"

        code, out, err = q.cli(capsys, "requester", "status", ref)
        assert code == 0, err
        assert out.startswith(f"ApprovalRequest {ref}: Submitted (RunCreated)\n")
        assert "  requester:     requester\n" in out
        assert "  approvals:     2 of 2 (alice, bob)\n" in out
        assert f"  run:           AgentRun {ref} (uid uid-1)\n" in out
        assert "decisions (2):" in out
        rows = [line.split() for line in out.splitlines() if line.startswith(f"  {name}-")]
        assert [(r[1], r[2], r[4]) for r in rows] == [
            ("approve", "alice", "alice"),
            ("approve", "bob", "bob"),
        ]
        code, out, _ = q.cli(capsys, "requester", "status", ref, "-o", "json")
        story = json.loads(out)
        assert story["phase"] == "Submitted" and story["run"] == {"name": name, "uid": "uid-1"}
        assert [(d["approver"], d["decision"], d["createdBy"]) for d in story["decisions"]] == [
            ("alice", "approve", "alice"),
            ("bob", "approve", "bob"),
        ]

        code, _, err = q.decide(capsys, "approve", "alice", name)
        assert code == 1
        assert f"ApprovalRequest {ref} is Submitted: a decision would change nothing" in err
    finally:
        watch.send_signal(signal.SIGINT)
        try:
            code = watch.wait(30)
        finally:
            if watch.poll() is None:
                watch.kill()
                watch.wait()
            stderr = watch.stderr.read() if watch.stderr else ""
            for stream in (watch.stdout, watch.stderr):
                if stream is not None:
                    stream.close()
    assert code == 0, stderr


def test_reject_needs_a_reason_and_status_tells_the_veto(
    q: Queue, capsys: pytest.CaptureFixture[str]
) -> None:
    q.request(capsys, "veto-me")
    ref = f"{q.namespace}/veto-me"
    with pytest.raises(SystemExit) as usage:
        q.decide(capsys, "reject", "alice", "veto-me")
    assert usage.value.code == 2
    assert "the following arguments are required: --reason" in capsys.readouterr().err
    code, _, err = q.decide(capsys, "reject", "alice", "veto-me", "--reason", "   ")
    assert code == 2 and "reject needs --reason" in err
    code, out, err = q.decide(capsys, "reject", "alice", "veto-me", "--reason", "touches billing")
    assert code == 0, err
    assert "reject of ApprovalRequest" in out
    (decision,) = q.decisions("veto-me")
    assert decision["spec"]["decision"] == "reject"
    (record,), _ = records.parse_annotation(json.dumps([decision["spec"]["record"]]))
    assert record.claim.reason == "touches billing"

    q.set_status(
        "veto-me",
        {
            "phase": "Rejected",
            "reason": "Vetoed",
            "message": "alice rejected it",
            "required": 2,
            "approvedBy": [],
            "rejectedBy": ["alice"],
        },
    )
    code, out, _ = q.cli(capsys, "requester", "status", ref)
    assert code == 1
    assert out.startswith(f"ApprovalRequest {ref}: Rejected (Vetoed)\n")
    assert "  message:       alice rejected it\n" in out
    assert "  rejected by:   alice\n" in out
    assert "  run:           not created\n" in out


def test_withdraw_follows_the_approval(q: Queue, capsys: pytest.CaptureFixture[str]) -> None:
    q.request(capsys, "changed-mind")
    assert q.decide(capsys, "approve", "bob", "changed-mind")[0] == 0
    code, out, err = q.decide(capsys, "withdraw", "bob", "changed-mind", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["spec"]["decision"] == "withdraw"
    assert [d["spec"]["decision"] for d in q.decisions("changed-mind")] == ["approve", "withdraw"]
    code, out, _ = q.cli(capsys, "bob", "status", f"{q.namespace}/changed-mind", "-o", "json")
    assert code == 0
    assert json.loads(out)["phase"] == ""  # no controller ran: not evaluated yet
    assert [d["decision"] for d in json.loads(out)["decisions"]] == ["approve", "withdraw"]


def test_status_shows_what_approve_signs_and_content_changed_since_is_not_signed(
    q: Queue, capsys: pytest.CaptureFixture[str]
) -> None:
    """status shows the run and the ImplementationSpec it runs, whole (a long text's tail
    too), with a pin. The text is rewritten after alice read it (no run uses it yet, so its
    writer may): `approve --expect PIN` refuses, where it used to bind the new text."""
    impl = "impl-long"
    text = "".join(f"step {n}: tidy the report\n" for n in range(1, 30)) + "last: push the branch"
    spec = {"apiVersion": "agents.proompteng.ai/v1alpha1", "kind": "ImplementationSpec"}
    obj = {**spec, "metadata": {"name": impl}, "spec": {"text": text}}
    q.plane.kubectl("admin", "apply", "-n", q.namespace, "-f", "-", input=json.dumps(obj))
    q.request(capsys, "read-then-sign", impl=impl)
    ref = f"{q.namespace}/read-then-sign"
    code, out, err = q.cli(capsys, "alice", "status", ref)
    assert code == 0, err
    pin = q.pin(capsys, "alice", "read-then-sign")
    assert f"  pin:           {pin}\n" in out
    assert f"  it binds ImplementationSpec {q.namespace}/{impl} spec sha256:" in out
    assert "    |   step 29: tidy the report\n    |   last: push the branch\n" in out
    assert "    |     team: finance\n" in out  # the run's labels, as the request embeds them
    assert out.endswith(f"approvalgate approve --request {ref} --expect {pin}\n")  # next:

    obj["spec"] = {"text": text + "\nthen force-push to main"}
    q.plane.kubectl("admin", "apply", "-n", q.namespace, "-f", "-", input=json.dumps(obj))
    code, _, err = q.decide(capsys, "approve", "alice", "read-then-sign", "--expect", pin)
    assert code == 1
    assert f"error: ApprovalRequest {ref} is not as you read it: you were shown pin {pin}" in err
    assert "the content its run references changed; nothing was signed" in err
    assert q.decisions("read-then-sign") == []
    code, _, err = q.decide(capsys, "approve", "alice", "read-then-sign")  # read again
    assert code == 0, err
    [filed] = q.decisions("read-then-sign")
    (record,), _ = records.parse_annotation(json.dumps([filed["spec"]["record"]]))
    stored = q.kubectl_json("get", "implementationspecs.agents.proompteng.ai", impl)
    assert record.claim.references[f"ImplementationSpec/{impl}"] == content.digest(stored)


def test_cancel_by_the_requester_only(q: Queue, capsys: pytest.CaptureFixture[str]) -> None:
    q.request(capsys, "not-needed")
    ref = f"{q.namespace}/not-needed"
    code, _, err = q.cli(capsys, "alice", "cancel", ref)
    assert code == 1
    assert f"only the requester (requester) may cancel ApprovalRequest {ref}; you are alice" in err
    code, out, err = q.cli(capsys, "requester", "cancel", ref)
    assert code == 0, err
    assert out == f"cancelled ApprovalRequest {ref}: no run will be created from it\n"
    assert q.kubectl_json("get", f"approvalrequests.{GROUP}", "not-needed")["spec"]["cancelled"]
    code, _, err = q.cli(capsys, "requester", "cancel", ref)
    assert code == 0 and "cancelled already" in err
    code, out, _ = q.cli(capsys, "alice", "pending", "-n", q.namespace, "-o", "json")
    assert "not-needed" not in [i["name"] for i in json.loads(out)]


def test_errors_say_what_to_do(q: Queue, capsys: pytest.CaptureFixture[str]) -> None:
    ns = q.namespace
    # 403: who you are, and the permission needed
    code, _, err = q.cli(capsys, "mallory", "pending", "-n", ns)
    assert code == 1
    assert err.startswith(
        f"error: forbidden while listing approvalrequests.{GROUP} in namespace {ns}: "
    )
    assert 'User "mallory" cannot list resource "approvalrequests"' in err
    assert f"hint: you need list and watch on approvalrequests.{GROUP} in namespace {ns}" in err
    # may read a request but not list decisions: status still tells the rest
    q.plane.grant(
        "queue-reader",
        subjects=["mallory"],
        namespace=ns,
        rules=[{"apiGroups": [GROUP], "resources": ["approvalrequests"], "verbs": ["get"]}],
    )
    q.request(capsys, "half-visible")
    code, out, err = q.cli(capsys, "mallory", "status", f"{ns}/half-visible")
    assert code == 0
    assert "decisions: not shown (you may not list approvaldecisions here)\n" in out
    assert err.startswith(
        f"warning: decisions not shown: forbidden while listing approvaldecisions.{GROUP} in "
        f"namespace {ns}: "
    )
    # 404: the object named
    code, _, err = q.cli(capsys, "alice", "status", f"{ns}/nothing-here")
    assert code == 1
    assert f"error: ApprovalRequest {ns}/nothing-here not found" in err
    assert f"approvalgate pending -n {ns}" in err
    # 409: one request per run name
    q.request(capsys, "twice")
    code, _, err = q.cli(capsys, "requester", "request", str(q.run_file("twice")), "--env", ENV)
    assert code == 1
    assert f"error: an ApprovalRequest {ns}/twice exists already (one request per run name)" in err
    # a dry run stores nothing
    code, out, err = q.cli(
        capsys, "requester", "request", str(q.run_file("dry")), "--env", ENV, "--dry-run"
    )
    assert code == 0, err
    assert out.startswith(f"would create ApprovalRequest {ns}/dry: ")
    done = q.plane.kubectl(
        "admin", "get", f"approvalrequests.{GROUP}", "dry", "-n", ns, check=False
    )
    assert done.returncode != 0 and "NotFound" in done.stderr
    # a request whose digest is not its run's: nobody signs it
    forged = q.request(capsys, "forged")
    forged["spec"]["run"]["spec"]["parameters"]["task"] = "something else"
    forged["metadata"] = {"name": "forged-2", "namespace": ns}
    forged["spec"]["run"]["metadata"]["name"] = "forged-2"
    q.plane.kubectl("admin", "create", "-f", "-", input=json.dumps(forged))
    code, _, err = q.decide(capsys, "approve", "alice", "forged-2")
    assert code == 1
    assert f"error: ApprovalRequest {ns}/forged-2: spec.specDigest " in err
    assert "is not the digest of the run it embeds" in err
    assert q.decisions("forged-2") == []
    # content the run references but the cluster does not have: nothing is signed
    missing = q.run_file("missing-content")
    missing.write_text(missing.read_text().replace("codex-impl-sample", "not-applied"))
    code, _, err = q.cli(capsys, "requester", "request", str(missing), "--env", ENV)
    assert code == 0, err
    staging = ROOT / "examples" / "gitops-repo" / "rendered" / ENV / "bundle.json"
    code, _, err = q.decide(capsys, "approve", "alice", "missing-content", "--bundle", str(staging))
    assert code == 1
    assert err == (
        f"error: ApprovalRequest {ns}/missing-content: its AgentRun references "
        f"ImplementationSpec {ns}/not-applied, not found in the cluster: the approval must "
        "bind the content it runs (referencedContent: bind), so nothing was signed\n"
        "  hint: the run cannot start without it either: ask the requester to apply it (or "
        "cancel the request); you need get on implementationspecs, agents and agentproviders "
        "to read them\n"
    )
    assert q.decisions("missing-content") == []
    # without --bundle the environment's setting is unknown: what can be read is bound, and
    # stderr says what is not and what it means
    code, out, err = q.decide(capsys, "approve", "alice", "missing-content")
    assert code == 0, err
    assert err.startswith(
        f"note: ApprovalRequest {ns}/missing-content: its AgentRun references "
        f"ImplementationSpec {ns}/not-applied, not bound by this record (not read from the "
        "cluster): where the environment binds referenced content"
    )
    (decision,) = q.decisions("missing-content")
    (record,), _ = records.parse_annotation(json.dumps([decision["spec"]["record"]]))
    assert list(json.loads(record.envelope.payload)["predicate"]["references"]) == [
        "Agent/codex-agent",
        "AgentProvider/codex-runner",
    ]


def test_an_approver_who_may_not_read_the_provider_is_told_so_everywhere(
    q: Queue, capsys: pytest.CaptureFixture[str]
) -> None:
    """alice may read the requests, file decisions and read the ImplementationSpec and the
    Agent, but not the AgentProvider (no get on agentproviders here). The console's page read
    past the refusal and pinned what it could read, status and approve stopped at it: their
    pins differed and every approval from the page was refused as "not as you read it" (409).
    The three read the content one way now: status and the page say the refusal in place of
    the provider, with the same pin, and the page's approval is filed as the CLI's would be
    (without a bundle, binding none of the content, and saying why)."""
    from dataclasses import replace

    from approvalgate.commands import _signer
    from approvalgate.console import actions, pages
    from approvalgate.console.identity import Me
    from approvalgate.kube.client import Client
    from tests.support import console_fakes

    namespace = q.plane.create_namespace("partial")
    part = replace(q, namespace=namespace)
    q.plane.grant(
        "queue-requester",
        subjects=["requester"],
        namespace=namespace,
        rules=[{"apiGroups": [GROUP], "resources": ["approvalrequests"], "verbs": ["create"]}],
    )
    q.plane.grant(
        "queue-partial-approver",
        subjects=["alice"],
        namespace=namespace,
        rules=[
            {"apiGroups": [GROUP], "resources": ["approvalrequests"], "verbs": ["get", "list"]},
            {
                "apiGroups": [GROUP],
                "resources": ["approvaldecisions"],
                "verbs": ["create", "get", "list"],
            },
            {  # all but agentproviders
                "apiGroups": ["agents.proompteng.ai"],
                "resources": ["implementationspecs", "agents"],
                "verbs": ["get"],
            },
        ],
    )
    q.plane.kubectl("admin", "apply", "-n", namespace, "-f", "-", input=CONTENT)
    part.request(capsys, "partly-readable")
    ref = f"{namespace}/partly-readable"
    refused = f"you may not read AgentProvider {namespace}/codex-runner (HTTP 403)"

    code, out, err = part.cli(capsys, "alice", "status", ref)
    assert code == 0, err
    assert f"its content could not be read: {refused}" in out
    assert f"  it binds ImplementationSpec {namespace}/codex-impl-sample spec sha256:" in out
    pin = part.pin(capsys, "alice", "partly-readable")

    request = part.kubectl_json("get", f"approvalrequests.{GROUP}", "partly-readable")
    signer = _signer.load(str(q.keys / "alice.key"))
    alice = Me(user="alice", approver="alice", signer=signer)
    state = console_fakes.FakeState([request])
    with Client.connect(q.plane.kubeconfig("alice")) as as_alice:
        page = pages.request_context(state, as_alice, namespace, "partly-readable", alice)  # type: ignore[arg-type]
        assert page["pin"] == pin
        [provider] = [e for e in page["content"] if e["kind"] == "AgentProvider"]
        assert refused in provider["error"] and "get on implementationspecs" in provider["error"]
        seen = actions.Seen(request["metadata"]["uid"], request["spec"]["specDigest"], page["pin"])
        filed = actions.decide_filed(
            as_alice, alice, namespace, "partly-readable", "approve", "read it", seen=seen
        )
    assert any(refused in note for note in filed.notes), filed.notes
    assert filed.references == {}
    assert len(part.decisions("partly-readable")) == 1
