"""What an approver reads and what an approver signs, from the command line: ``status``
shows a request whole (the run it embeds, the content that run references) with a pin, and
``approve|reject|withdraw --request --expect PIN`` signs only for the request and content
that pin names; without a terminal an approval needs the pin, on a terminal it is shown and
asked for. The console's buttons carry the same pin.

The API server is a fake here (:class:`Cluster`); tests/e2e/test_queue_attacks.py does the
same on a real one.
"""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import pytest

from approvalgate.approvals import content, records
from approvalgate.approvals.bundle import parse_bundle_text
from approvalgate.approvals.digest import spec_digest
from approvalgate.approvals.errors import ApprovalgateError
from approvalgate.cli import main
from approvalgate.commands import _cluster, _queue
from approvalgate.console import pages
from approvalgate.console.actions import Seen, decide
from approvalgate.console.identity import Me
from approvalgate.kube.errors import ApiError
from tests.support import console_fakes
from tests.support.corpus import KEYS
from tests.support.paths import ROOT

NS = "agents"
NAME = "nightly-abcde"
REF = f"{NS}/{NAME}"
TASK = "\n".join(f"step {n}: tidy the report" for n in range(1, 40)) + "\nlast: push to main"
"""An ImplementationSpec text longer than approve's preview: its tail must be seen."""


def impl(text: str = TASK) -> dict[str, Any]:
    return {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "ImplementationSpec",
        "metadata": {"name": "codex-impl-sample", "namespace": NS},
        "spec": {"summary": "the nightly report", "text": text},
    }


AGENT: dict[str, Any] = {
    "apiVersion": "agents.proompteng.ai/v1alpha1",
    "kind": "Agent",
    "metadata": {"name": "codex-agent", "namespace": NS},
    "spec": {"providerRef": {"name": "codex-runner"}},
}
PROVIDER: dict[str, Any] = {
    "apiVersion": "agents.proompteng.ai/v1alpha1",
    "kind": "AgentProvider",
    "metadata": {"name": "codex-runner", "namespace": NS},
    "spec": {"binary": "/usr/local/bin/codex"},
}


def request(
    task: str = "report", uid: str = "uid-1", reason: str = "nightly report for finance"
) -> dict[str, Any]:
    spec = {
        "agentRef": {"name": "codex-agent"},
        "implementationSpecRef": {"name": "codex-impl-sample"},
        "runtime": {"type": "workflow"},
        "parameters": {"task": task},
    }
    run = {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "AgentRun",
        "metadata": {"name": NAME, "labels": {"team": "finance"}},
        "spec": spec,
    }
    obj = _queue.request_object(
        run,
        name=NAME,
        namespace=NS,
        environment="prod",
        requester="carol",
        digest=spec_digest(spec),
        reason=reason,
    )
    obj["metadata"].update({"uid": uid, "creationTimestamp": "2026-12-07T06:00:00Z"})
    obj["status"] = {"phase": "Pending", "required": 1, "approvedBy": [], "eligible": ["alice"]}
    return obj


class Cluster:
    """Answers what status and approve|reject|withdraw --request ask of the API server:
    the request, the content its run references, who we are, and the decision created
    (kept in :attr:`created`)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {
            f"approvalrequests/{NAME}": request(),
            "implementationspecs/codex-impl-sample": impl(),
            "agents/codex-agent": copy.deepcopy(AGENT),
            "agentproviders/codex-runner": copy.deepcopy(PROVIDER),
        }
        self.created: list[dict[str, Any]] = []
        self.refused: set[str] = set()
        """Objects (as keys of :attr:`objects`) the user may not read: HTTP 403."""

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def request(self, what: str, method: str, path: str, **kwargs: Any) -> Any:
        body = kwargs.get("body")
        if method == "POST" and path.endswith("/selfsubjectreviews"):
            return {"status": {"userInfo": {"username": "alice"}}}
        if method == "POST" and path.endswith("/approvaldecisions"):
            made = copy.deepcopy(body)
            made["metadata"]["name"] = made["metadata"].pop("generateName") + "x1"
            self.created.append(made)
            return made
        if method == "GET" and path.endswith("/approvaldecisions"):
            return {"items": [], "metadata": {"resourceVersion": "1"}}
        assert method == "GET", (method, path)
        for suffix, obj in self.objects.items():
            if path.endswith(suffix) and suffix in self.refused:
                raise ApiError(
                    f"the API server answered HTTP 403 while {what}: {suffix} is forbidden",
                    status=403,
                )
            if path.endswith(suffix):
                return copy.deepcopy(obj)
        if kwargs.get("missing_ok"):
            return None
        raise ApiError(f"the API server answered HTTP 404 while {what}", status=404)

    def made_again(self, task: str = "drop the customer tables") -> None:
        """The request deleted and made again under its name, for another run."""
        self.objects[f"approvalrequests/{NAME}"] = request(task=task, uid="uid-2")


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Cluster:
    fake = Cluster()
    monkeypatch.setattr(_cluster, "connect", lambda args, advice: fake)
    monkeypatch.setattr(_cluster, "namespace_of", lambda args, given: given or NS)
    return fake


class Terminal(io.StringIO):
    """Standard input that is a terminal, with the answers typed."""

    def isatty(self) -> bool:
        return True


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


KEY = ("--key", str(KEYS / "alice.key"), "--approver", "alice")


def status_pin(capsys: pytest.CaptureFixture[str]) -> str:
    code, out, _ = cli(capsys, "status", REF, "-o", "json")
    assert code == 0
    pin: str = json.loads(out)["pin"]
    return pin


# --- the pin -----------------------------------------------------------------------------


def test_the_pin_names_the_request_and_the_content_it_was_shown_with() -> None:
    """Anything an approval signs, or that the approver was shown, changes the pin: another
    uid (made again), the run, its labels, the environment, the reason, each referenced
    object's spec. What changes on its own (status, cancelled, resourceVersion) does not."""
    content = [impl(), AGENT, PROVIDER]
    base = _queue.pin(request(), content)
    assert len(base) == _queue.PIN_CHARS == 16 and int(base, 16) >= 0
    same = request()
    same["status"] = {"phase": "Pending", "approvedBy": ["bob"]}
    same["spec"]["cancelled"] = True
    same["metadata"]["resourceVersion"] = "42"
    assert _queue.pin(same, copy.deepcopy(content)) == base
    changed = [
        _queue.pin(request(uid="uid-2"), content),
        _queue.pin(request(task="other"), content),
        _queue.pin(request(reason="another reason"), content),
        _queue.pin(request(), [impl("another text"), AGENT, PROVIDER]),
        _queue.pin(request(), [impl(), {**AGENT, "spec": {"providerRef": {"name": "x"}}}]),
        _queue.pin(request(), [impl(), AGENT, {**PROVIDER, "spec": {"binary": "/bin/sh"}}]),
        _queue.pin(request(), [impl(), AGENT]),  # the provider could not be read
    ]
    labelled = request()
    labelled["spec"]["run"]["metadata"]["labels"] = {"team": "platform"}
    elsewhere = request()
    elsewhere["spec"]["environment"] = "staging"
    changed += [_queue.pin(labelled, content), _queue.pin(elsewhere, content)]
    assert len({base, *changed}) == len(changed) + 1


# --- status shows what is signed ---------------------------------------------------------


def test_status_shows_the_run_and_its_content_whole_with_the_pin(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run as the request embeds it (labels included) and every object its approval
    binds, whole (the tail of a long task text too), each line behind "|"; then the pin and
    the command that uses it."""
    code, out, _ = cli(capsys, "status", REF)
    assert code == 0
    pin = _queue.pin(request(), [impl(), AGENT, PROVIDER])
    assert f"  pin:           {pin}\n" in out
    assert out.endswith(
        f"next: approvalgate approve --request {REF} --expect {pin} --key KEY --approver NAME\n"
    )
    assert "    | metadata:\n    |   name: nightly-abcde\n    |   labels:\n" in out
    assert "    |     team: finance\n" in out
    assert "    |     task: report\n" in out
    assert f"  it binds ImplementationSpec {NS}/codex-impl-sample spec sha256:" in out
    assert "    |   last: push to main\n" in out
    assert "step 39: tidy the report" in out  # nothing is cut
    assert f"  it binds AgentProvider {NS}/codex-runner spec sha256:" in out
    shown = json.loads(cli(capsys, "status", REF, "-o", "json")[1])
    assert shown["pin"] == pin
    assert shown["shown"]["run"]["spec"]["parameters"] == {"task": "report"}
    assert [c["kind"] for c in shown["shown"]["content"]] == [
        "Agent",
        "ImplementationSpec",
        "AgentProvider",
    ]


def test_what_the_requester_wrote_cannot_print_lines_of_its_own(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reason holding line breaks printed lines that read as status's own: a spec digest,
    a pin the approver copies. They are written as <U+000A>, and everything of the run is
    behind "|", so the only pin line is the command's."""
    forged = "ok\n  spec:          sha256:" + "0" * 64 + "\n  pin:           0123456789abcdef"
    cluster.objects[f"approvalrequests/{NAME}"] = request(reason=forged)
    out = cli(capsys, "status", REF)[1]
    assert "  reason:        ok<U+000A>  spec:          sha256:" in out
    assert [line for line in out.splitlines() if line.startswith("  pin:")] == [
        f"  pin:           {_queue.pin(request(reason=forged), [impl(), AGENT, PROVIDER])}"
    ]
    assert _queue.table(["A"], [["x\ny"]]) == "A\nx<U+000A>y\n"


def test_a_requester_named_like_another_is_shown_escaped_everywhere(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """bоb (a Cyrillic o) requested the run: status (both headings) and pending show the
    name escaped with its characters named beside it, so an approver never reads it as
    bob's. A name in printable ASCII is shown as itself."""
    from datetime import UTC, datetime

    lookalike = "b\u043eb@example.com"
    obj = request()
    obj["spec"]["requester"] = lookalike
    cluster.objects[f"approvalrequests/{NAME}"] = obj
    out = cli(capsys, "status", REF)[1]
    said = 'b\u043eb@example.com ["b\\u043eb@example.com" (CYRILLIC SMALL LETTER O)]'
    assert f"requested by {said}\n" in out
    assert f"  requester:     {said}\n" in out
    row = _queue.pending_row(_queue.summary(obj), datetime(2026, 12, 7, 7, tzinfo=UTC), False)
    assert said in row
    assert _queue.shown_identity("bob@example.com") == "bob@example.com"


def test_status_shows_the_digest_of_the_run_it_shows(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """The digest on the run's line is computed from the run shown, not copied from the
    request's spec.specDigest (the requester's word); a request whose word differs says so."""
    lying = request()
    lying["spec"]["specDigest"] = "0" * 64
    cluster.objects[f"approvalrequests/{NAME}"] = lying
    out = cli(capsys, "status", REF)[1]
    digest = request()["spec"]["specDigest"]
    assert f"  the run an approval signs (spec sha256:{digest}):\n" in out
    assert f"  its spec.specDigest {'0' * 64} is not the digest of this run: approve" in out
    pin = json.loads(cli(capsys, "status", REF, "-o", "json")[1])["pin"]
    code, _, err = cli(capsys, "approve", "--request", REF, "--expect", pin, *KEY)
    assert code == 1 and "is not the digest of the run it embeds" in err
    assert cluster.created == []


def test_pending_cuts_nothing() -> None:
    """A long cell (a requester's name, the approvers who may still approve) is padded to,
    never cut: no tail goes unseen."""
    long = "x" * 300 + "-tail"
    text = _queue.table(["NAME", "REQUESTER"], [["a", long], ["bb", "c"]])
    assert text.splitlines()[1] == f"a      {long}"
    assert text.count("-tail") == 1


def test_status_says_when_the_content_cannot_be_read(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    del cluster.objects["agents/codex-agent"]
    out = cli(capsys, "status", REF)[1]
    assert "it binds Agent" not in out and "it binds ImplementationSpec" in out
    assert f"  pin:           {_queue.pin(request(), [impl()])}\n" in out


# --- approve|reject|withdraw --request --expect ------------------------------------------


def test_approve_with_the_pin_signs_what_status_showed(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    pin = status_pin(capsys)
    code, out, _ = cli(capsys, "approve", "--request", REF, "--expect", pin.upper(), *KEY)
    assert code == 0, out
    [made] = cluster.created
    claim = records.parse_annotation(json.dumps([made["spec"]["record"]]))[0][0].claim
    assert claim.digest == request()["spec"]["specDigest"]
    assert claim.references["ImplementationSpec/codex-impl-sample"] == spec_digest(impl()["spec"])


@pytest.mark.parametrize("command", ["approve", "reject", "withdraw"])
def test_a_request_made_again_between_status_and_the_decision_is_not_signed(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """alice reads the request with status; it is deleted and made again under its name for
    another run (an admin, or anyone with delete); her command names what she read."""
    pin = status_pin(capsys)
    cluster.made_again()
    reason = ("--reason", "not this") if command == "reject" else ()
    code, _, err = cli(capsys, command, "--request", REF, "--expect", pin, *KEY, *reason)
    assert code == 1
    now = _queue.pin(request("drop the customer tables", "uid-2"), [impl(), AGENT, PROVIDER])
    assert err.startswith(
        f"error: ApprovalRequest {REF} is not as you read it: you were shown pin {pin}, it "
        f"has pin {now} now (uid uid-2, created 2026-12-07T06:00:00Z, run spec sha256:"
    )
    assert "nothing was signed" in err and f"read it again: approvalgate status {REF}" in err
    assert cluster.created == []


def test_content_changed_between_status_and_approve_is_not_signed(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """The request stays; the ImplementationSpec it runs (or the Agent, or its provider) is
    rewritten after alice read it. No run uses it yet, so the webhook lets its writer change
    it: the approval would bind the new text, which she never read."""
    for key, changed in (
        ("implementationspecs/codex-impl-sample", impl(TASK + "\nthen delete the backups")),
        ("agents/codex-agent", {**AGENT, "spec": {"providerRef": {"name": "evil"}}}),
        ("agentproviders/codex-runner", {**PROVIDER, "spec": {"binary": "/bin/sh"}}),
    ):
        before = copy.deepcopy(cluster.objects[key])
        pin = status_pin(capsys)
        cluster.objects[key] = changed
        code, _, err = cli(capsys, "approve", "--request", REF, "--expect", pin, *KEY)
        assert code == 1 and "is not as you read it" in err, (key, err)
        assert cluster.created == []
        cluster.objects[key] = before


def test_without_a_terminal_an_approval_needs_the_pin(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A script approving by name signed whatever had that name then. It must say what it
    read; a reject or withdrawal is never refused for it (taking back is never held up)."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    for decision in ((), ("--bypass", "--reason", "INC-42 checkout down")):
        code, _, err = cli(capsys, "approve", "--request", REF, *KEY, *decision)
        assert code == 2
        assert err.startswith(
            f"error: {'bypass' if decision else 'approve'} --request needs --expect PIN when "
            "not run on a terminal"
        )
        assert f"approvalgate status {REF} prints it (-o json: .pin)" in err
    assert cluster.created == []
    assert cli(capsys, "reject", "--request", REF, *KEY, "--reason", "too broad")[0] == 0
    assert cli(capsys, "withdraw", "--request", REF, *KEY)[0] == 0
    assert [d["spec"]["decision"] for d in cluster.created] == ["reject", "withdraw"]


def test_a_pin_is_checked_as_a_pin(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "approve", "--request", REF, "--expect", "uid-1", *KEY)
    first = err.splitlines()[0]
    assert (code, first) == (2, "error: --expect 'uid-1' is not a pin (16 hex digits)")
    code, _, err = cli(capsys, "approve", "run.yaml", "--env", "prod", "--expect", "0" * 16, *KEY)
    assert code == 2 and "--expect is for --request NS/NAME" in err


@pytest.mark.parametrize(("answer", "signed"), [("y\n", True), ("yes\n", True), ("\n", False)])
def test_on_a_terminal_approve_shows_what_it_signs_and_asks(
    cluster: Cluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    signed: bool,
) -> None:
    """Without --expect, on a terminal: the request as read for signing, whole, with its
    content, then a question; only yes signs, and it signs that one reading."""
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    code, _, err = cli(capsys, "approve", "--request", REF, *KEY)
    assert f"ApprovalRequest {REF} (uid uid-1), for environment prod, requested by carol" in err
    assert "    |     task: report\n" in err and "step 39: tidy the report" in err
    assert "sign your approval of exactly this? [y/N] " in err
    assert (code == 0) == signed and (len(cluster.created) == 1) == signed
    if not signed:
        assert f"error: not confirmed: nothing was signed for ApprovalRequest {REF}" in err


def test_approve_of_a_file_shows_what_it_read_from_the_cluster_and_asks(
    cluster: Cluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    """approve FILE --cluster binds content read from the cluster when it signs, and showed
    only its first lines, after signing. On a terminal it now shows it whole first and asks;
    no signs nothing (the file is left as it was)."""
    manifest = tmp_path / "run.yaml"
    run = request()["spec"]["run"]
    manifest.write_text(json.dumps({**run, "metadata": {"name": NAME, "namespace": NS}}))
    before = manifest.read_text()
    argv = ("approve", str(manifest), "--env", "prod", "--cluster", "--in-place", *KEY)
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    code, _, err = cli(capsys, *argv)
    assert code == 1 and f"error: not confirmed: nothing was signed for {manifest}" in err
    assert f"  it binds ImplementationSpec {NS}/codex-impl-sample spec sha256:" in err
    assert "    |   last: push to main\n" in err and "sign these? [y/N] " in err
    assert manifest.read_text() == before
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert cli(capsys, *argv)[0] == 0
    assert "approvals.proompteng.ai/approvals" in manifest.read_text()
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal: --expect (below)
    code, _, err = cli(capsys, *argv)
    assert code == 2 and "sign these?" not in err


def run_file(tmp_path: Any) -> Any:
    """The request's run as a file an approver approves with --cluster."""
    manifest = tmp_path / "run.yaml"
    run = request()["spec"]["run"]
    manifest.write_text(json.dumps({**run, "metadata": {"name": NAME, "namespace": NS}}))
    return manifest


def dry_run_pin(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The pin ``approve ... --dry-run`` prints (its last line), after checking it signed
    nothing."""
    code, out, err = cli(capsys, *argv, "--dry-run")
    assert code == 0, err
    last = out.splitlines()[-1]
    assert last.startswith("pin: ")
    return last.removeprefix("pin: ")


def test_a_script_approving_a_file_with_cluster_needs_the_pin_of_what_it_read(
    cluster: Cluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    """Without a terminal approve FILE --cluster signed the content the cluster held at the
    command: an ImplementationSpec rewritten after the approver (or her script) read it was
    signed. Now: no --expect is a usage error naming --dry-run; --dry-run shows what it
    would sign, whole, and the pin, signing and writing nothing; --expect signs that reading
    or nothing."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    manifest = run_file(tmp_path)
    before = manifest.read_text()
    argv = ("approve", str(manifest), "--env", "prod", "--cluster", "--in-place", *KEY)
    for decision in ((), ("--bypass", "--reason", "INC-42 checkout down")):
        code, _, err = cli(capsys, *argv, *decision)
        assert code == 2, err
        assert "--cluster needs --expect PIN when not run on a terminal" in err
        assert f"approvalgate approve {manifest} --cluster --dry-run" in err
    code, out, err = cli(capsys, *argv, "--dry-run")
    assert code == 0, err
    assert f"AgentRun {REF} spec sha256:" in out and "sign these?" not in out + err
    assert f"  it binds ImplementationSpec {NS}/codex-impl-sample spec sha256:" in out
    assert "    |   last: push to main\n" in out
    assert f"  it binds AgentProvider {NS}/codex-runner spec sha256:" in out
    pin = out.splitlines()[-1].removeprefix("pin: ")
    assert manifest.read_text() == before
    assert dry_run_pin(capsys, *argv) == pin  # the same reading, the same pin
    # the requester rewrites the task text after it was read
    cluster.objects["implementationspecs/codex-impl-sample"] = impl("push to main, skip review")
    code, _, err = cli(capsys, *argv, "--expect", pin)
    assert code == 1, err
    assert f"error: {manifest} and what it binds in the cluster are not as you read them" in err
    assert "nothing was signed" in err and "--dry-run" in err
    assert manifest.read_text() == before
    # read again: that reading is signed, and binds what was shown
    again = dry_run_pin(capsys, *argv)
    assert again != pin
    code, _, err = cli(capsys, *argv, "--expect", again.upper())
    assert code == 0, err
    assert f"signed approve of AgentRun {REF} spec sha256:" in err
    assert content.digest(impl("push to main, skip review")) in err
    assert "approvals.proompteng.ai/approvals" in manifest.read_text()
    # a reject takes away: no pin needed
    assert cli(capsys, *argv, "--reject", "--reason", "not this one")[0] == 0


def test_a_schedule_target_changed_after_the_dry_run_is_not_signed(
    cluster: Cluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    """A Schedule's run template is made from its target as the cluster holds it: a target
    rewritten between --dry-run and --expect gives another template, another pin."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    target = request(task="the target's task")["spec"]["run"]
    target["metadata"] = {"name": "nightly-target", "namespace": NS}
    cluster.objects["agentruns/nightly-target"] = target
    schedule = {
        "apiVersion": "schedules.proompteng.ai/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": "nightly", "namespace": NS},
        "spec": {"cron": "0 2 * * *", "targetRef": {"kind": "AgentRun", "name": "nightly-target"}},
    }
    manifest = tmp_path / "schedule.yaml"
    manifest.write_text(json.dumps(schedule))
    argv = ("approve", str(manifest), "--env", "prod", "--cluster", "--in-place", *KEY)
    code, out, err = cli(capsys, *argv, "--dry-run")
    assert code == 0, err
    assert "  its run template:\n" in out and "    |   task: the target's task\n" in out
    pin = out.splitlines()[-1].removeprefix("pin: ")
    changed = copy.deepcopy(target)
    changed["spec"]["parameters"]["task"] = "drop the customer tables"
    cluster.objects["agentruns/nightly-target"] = changed
    code, _, err = cli(capsys, *argv, "--expect", pin)
    assert code == 1 and "are not as you read them" in err
    assert "approvals.proompteng.ai" not in manifest.read_text()
    # the file changed since it was read: another pin too
    cluster.objects["agentruns/nightly-target"] = target
    assert dry_run_pin(capsys, *argv) == pin
    manifest.write_text(json.dumps({**schedule, "spec": {**schedule["spec"], "cron": "* * * * *"}}))
    assert cli(capsys, *argv, "--expect", pin)[0] == 1


def test_an_orchestration_rewritten_after_the_dry_run_is_not_signed(
    cluster: Cluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    """An OrchestrationRun is approved for the AgentRun steps of the Orchestration read from
    the cluster: a step added after the dry run gives another coverage, another pin."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    step = {
        "name": "build",
        "kind": "AgentRun",
        "agentRef": {"name": "codex-agent"},
        "implementationSpecRef": {"name": "codex-impl-sample"},
    }
    orchestration = {
        "apiVersion": "orchestration.proompteng.ai/v1alpha1",
        "kind": "Orchestration",
        "metadata": {"name": "release", "namespace": NS},
        "spec": {"steps": [step]},
    }
    cluster.objects["orchestrations/release"] = orchestration
    manifest = tmp_path / "release-1.yaml"
    manifest.write_text(
        json.dumps(
            {
                "apiVersion": "orchestration.proompteng.ai/v1alpha1",
                "kind": "OrchestrationRun",
                "metadata": {"name": "release-1", "namespace": NS},
                "spec": {"orchestrationRef": {"name": "release"}},
            }
        )
    )
    argv = ("approve", str(manifest), "--env", "prod", "--cluster", "--in-place", *KEY)
    pin = dry_run_pin(capsys, *argv)
    added = {**step, "name": "publish", "parameters": {"task": "push the tags"}}
    cluster.objects["orchestrations/release"] = {
        **orchestration,
        "spec": {"steps": [step, added]},
    }
    code, _, err = cli(capsys, *argv, "--expect", pin)
    assert code == 1 and "are not as you read them" in err, err
    assert "approvals.proompteng.ai" not in manifest.read_text()
    again = dry_run_pin(capsys, *argv)
    assert cli(capsys, *argv, "--expect", again)[0] == 0
    assert "approvals.proompteng.ai/approvals" in manifest.read_text()


@pytest.mark.parametrize("command", ["withdraw", "reject"])
def test_taking_back_an_orchestration_run_reaches_the_coverage_that_was_approved(
    cluster: Cluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    command: str,
) -> None:
    """``withdraw|reject --run`` of an OrchestrationRun read its Orchestration from the
    cluster and filed a decision for that coverage only: with the Orchestration rewritten
    meanwhile (and put back after), the decision named another coverage and took back
    nothing of the approval on the file. It now also names each coverage the file's
    approvals were signed for."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    step = {
        "name": "build",
        "kind": "AgentRun",
        "agentRef": {"name": "codex-agent"},
        "implementationSpecRef": {"name": "codex-impl-sample"},
    }
    orchestration = {
        "apiVersion": "orchestration.proompteng.ai/v1alpha1",
        "kind": "Orchestration",
        "metadata": {"name": "release", "namespace": NS},
        "spec": {"steps": [step]},
    }
    cluster.objects["orchestrations/release"] = orchestration
    manifest = tmp_path / "release-1.yaml"
    manifest.write_text(
        json.dumps(
            {
                "apiVersion": "orchestration.proompteng.ai/v1alpha1",
                "kind": "OrchestrationRun",
                "metadata": {"name": "release-1", "namespace": NS},
                "spec": {"orchestrationRef": {"name": "release"}},
            }
        )
    )
    argv = ("approve", str(manifest), "--env", "prod", "--cluster", "--in-place", *KEY)
    assert cli(capsys, *argv, "--expect", dry_run_pin(capsys, *argv))[0] == 0
    approved = __import__("yaml").safe_load(manifest.read_text())
    [record], _ = records.parse_annotation(approved["metadata"]["annotations"][records.ANNOTATION])
    renamed = {**step, "name": "publish"}
    cluster.objects["orchestrations/release"] = {**orchestration, "spec": {"steps": [renamed]}}
    reason = ("--reason", "not this release")
    code, out, err = cli(capsys, command, "--run", str(manifest), "--env", "prod", *KEY, *reason)
    assert code == 0, err
    filed = [
        records.parse_annotation(json.dumps([d["spec"]["record"]]))[0][0].claim
        for d in cluster.created
    ]
    assert {c.decision for c in filed} == {command}
    assert record.claim.digest in {c.digest for c in filed}, out
    assert len({c.digest for c in filed}) == 2  # and the coverage read now


PIN0 = "0" * 16


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("approve", "--request", REF, "--dry-run"), "--dry-run is for MANIFEST --cluster"),
        (("approve", "run.yaml", "--env", "prod", "--dry-run"), "--dry-run is for --request"),
        (
            ("approve", "run.yaml", "--env", "prod", "--cluster", "--dry-run", "--expect", PIN0),
            "--dry-run prints the pin; --expect PIN signs with it: not both",
        ),
        (
            ("approve", "run.yaml", "--env", "prod", "--cluster", "--expect", "1234"),
            "is not a pin (16 hex digits)",
        ),
    ],
)
def test_dry_run_and_expect_are_used_as_documented(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    code, _, err = cli(capsys, *argv, *KEY)
    assert code == 2 and message in err, err


def test_approve_of_a_schedule_shows_the_template_it_made_from_the_cluster(
    cluster: Cluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    """A Schedule's target read from the cluster becomes the run template the record binds:
    on a terminal it is shown whole, with the content it binds, before anything is signed."""
    target = request(task="the target's task")["spec"]["run"]
    target["metadata"] = {"name": "nightly-target", "namespace": NS}
    cluster.objects["agentruns/nightly-target"] = target
    schedule = {
        "apiVersion": "schedules.proompteng.ai/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": "nightly", "namespace": NS},
        "spec": {"cron": "0 2 * * *", "targetRef": {"kind": "AgentRun", "name": "nightly-target"}},
    }
    manifest = tmp_path / "schedule.yaml"
    manifest.write_text(json.dumps(schedule))
    monkeypatch.setattr("sys.stdin", Terminal("no\n"))
    code, _, err = cli(capsys, "approve", str(manifest), "--env", "prod", "--cluster", *KEY)
    assert code == 1, err
    assert f"Schedule {NS}/nightly coverage sha256:" in err
    assert "  its run template:\n" in err and "    |   task: the target's task\n" in err
    assert f"  it binds ImplementationSpec {NS}/codex-impl-sample spec sha256:" in err
    assert "error: not confirmed: nothing was signed" in err


# --- the console's buttons ---------------------------------------------------------------


def test_the_console_does_not_sign_content_changed_since_its_page_showed_it(
    cluster: Cluster,
) -> None:
    """The page showed the task text; its buttons named the request (uid, digest) only, so
    a text rewritten before the click was signed. They carry the pin now."""
    shown = request()
    seen = Seen("uid-1", shown["spec"]["specDigest"], _queue.pin(shown, [impl(), AGENT, PROVIDER]))
    cluster.objects["implementationspecs/codex-impl-sample"] = impl("push to main, skip review")
    who = Me(user="alice", approver="alice", signer=object())  # type: ignore[arg-type]
    with pytest.raises(ApprovalgateError, match="is not as you read it"):
        decide(cluster, who, NS, NAME, "approve", "x", seen=seen)  # type: ignore[arg-type]
    assert cluster.created == []


def test_content_rewritten_since_the_page_does_not_keep_an_approver_from_rejecting(
    cluster: Cluster,
) -> None:
    """A reject takes away: its page's uid and digest name the request it rejects. Checking
    the pin too let the requester, who may rewrite the content until a run uses it, keep
    every approver from rejecting through the console (409 on each click)."""
    from approvalgate.commands import _signer

    shown = request()
    seen = Seen("uid-1", shown["spec"]["specDigest"], _queue.pin(shown, [impl(), AGENT, PROVIDER]))
    cluster.objects["implementationspecs/codex-impl-sample"] = impl("push to main, skip review")
    signer = _signer.load(str(KEYS / "alice.key"))
    who = Me(user="alice", approver="alice", signer=signer)
    decide(cluster, who, NS, NAME, "reject", "not this", seen=seen)  # type: ignore[arg-type]
    assert len(cluster.created) == 1


def test_the_console_does_not_approve_from_a_form_without_a_pin(cluster: Cluster) -> None:
    """A page loaded before the forms carried the pin (or a form made elsewhere) names the
    request but not the content it showed: approving from it could sign content rewritten
    since. It is refused, as the CLI without a terminal refuses an approval without
    ``--expect``; rejecting needs no pin."""
    shown = request()
    seen = Seen("uid-1", shown["spec"]["specDigest"])
    who = Me(user="alice", approver="alice", signer=object())  # type: ignore[arg-type]
    with pytest.raises(ApprovalgateError, match="carries no pin of what it showed") as caught:
        decide(cluster, who, NS, NAME, "approve", "x", seen=seen)  # type: ignore[arg-type]
    assert getattr(caught.value, "status", None) == 409
    assert cluster.created == []


# --- one reading of the content, wherever it is shown or signed --------------------------

PROD_BUNDLE = ROOT / "examples" / "gitops-repo" / "rendered" / "prod" / "bundle.json"
"""An environment whose approvals bind the referenced content (clusterView: required)."""

REFUSABLE = [
    "agentproviders/codex-runner",
    "implementationspecs/codex-impl-sample",
    "agents/codex-agent",
]

KINDS = {
    "agentproviders": "AgentProvider",
    "implementationspecs": "ImplementationSpec",
    "agents": "Agent",
}


def page_pin(cluster: Cluster, me: Any) -> str:
    """The pin the console's request page carries in its approve form."""
    state = console_fakes.FakeState([cluster.objects[f"approvalrequests/{NAME}"]])
    context = pages.request_context(state, cluster, NS, NAME, me)  # type: ignore[arg-type]
    pin: str = context["pin"]
    return pin


def prod() -> Any:
    return parse_bundle_text(PROD_BUNDLE.read_text(), str(PROD_BUNDLE))


@pytest.mark.parametrize("refused", REFUSABLE)
def test_the_page_and_status_pin_the_same_reading_of_content_the_approver_may_not_read(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], refused: str
) -> None:
    """An approver without get on one of the objects: the page went on reading past the
    refusal, status and approve stopped at it, so their pins differed and every approval
    from the page was refused as "not as you read it". One reader, one pin."""
    cluster.refused.add(refused)
    who = Me(user="alice", approver="alice", signer=object())  # type: ignore[arg-type]
    assert page_pin(cluster, who) == status_pin(capsys)
    out = cli(capsys, "status", REF)[1]
    kind, name = KINDS[refused.partition("/")[0]], refused.partition("/")[2]
    assert f"  its content could not be read: you may not read {kind} {NS}/{name} (HTTP 403)" in out
    assert "  hint: you need get on implementationspecs, agents and agentproviders" in out


def test_status_names_every_object_it_could_not_read(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two objects refused: status named only the first, while the console's page lists
    each; an approver then asked for one permission at a time. Every one is named (text and
    ``-o json``), the advice once."""
    cluster.refused.update({"implementationspecs/codex-impl-sample", "agentproviders/codex-runner"})
    out = cli(capsys, "status", REF)[1]
    for kind, name in (
        ("ImplementationSpec", "codex-impl-sample"),
        ("AgentProvider", "codex-runner"),
    ):
        assert (
            f"  its content could not be read: you may not read {kind} {NS}/{name} (HTTP 403)"
            in out
        )
    assert out.count("  hint: you need get on implementationspecs, agents and agentproviders") == 1
    shown = json.loads(cli(capsys, "status", REF, "-o", "json")[1])["shown"]
    assert [e.split(" (HTTP")[0] for e in shown["contentErrors"]] == [
        f"you may not read ImplementationSpec {NS}/codex-impl-sample",
        f"you may not read AgentProvider {NS}/codex-runner",
    ]
    assert shown["contentError"] == shown["contentErrors"][0]


@pytest.mark.parametrize("refused", REFUSABLE)
def test_an_approval_of_content_the_approver_may_not_read_is_refused_as_that(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], refused: str
) -> None:
    """Where approvals bind the content, one that cannot be read is not signed, and the
    approver is told why (HTTP 403, which permission), not that the request changed: from
    the console (403, before the pin is compared) and from the CLI alike."""
    from approvalgate.commands import _signer

    cluster.refused.add(refused)
    kind = KINDS[refused.partition("/")[0]]
    said = f"you may not read {kind} {NS}/{refused.partition('/')[2]} (HTTP 403)"
    advice = "get on implementationspecs, agents and agentproviders"
    signer = _signer.load(str(KEYS / "alice.key"))
    who = Me(user="alice", approver="alice", signer=signer, bundle=prod())
    shown = request()
    state = console_fakes.FakeState([cluster.objects[f"approvalrequests/{NAME}"]])
    page = pages.request_context(state, cluster, NS, NAME, who)  # type: ignore[arg-type]
    assert said in page["refusals"]["approve"]  # said on the page, before any click
    for pin in (page_pin(cluster, who), "0123456789abcdef"):  # the refusal comes first
        seen = Seen("uid-1", shown["spec"]["specDigest"], pin)
        with pytest.raises(ApprovalgateError) as caught:
            decide(cluster, who, NS, NAME, "approve", "x", seen=seen)  # type: ignore[arg-type]
        assert said in caught.value.message and "nothing was signed" in caught.value.message
        assert advice in caught.value.advice
        assert getattr(caught.value, "status", None) == 403
    code, _, err = cli(
        capsys,
        "approve",
        "--request",
        REF,
        "--expect",
        status_pin(capsys),
        "--bundle",
        str(PROD_BUNDLE),
        *KEY,
    )
    assert code == 1 and said in err and advice in err and "not as you read it" not in err
    assert cluster.created == []


def test_without_the_bundle_what_could_not_be_read_is_not_bound_and_said(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --bundle the environment's setting is unknown: as from the CLI, the page's
    approval is signed binding none of the content (where the environment binds it, the
    record does not count) and the note says which object could not be read and why."""
    from approvalgate.commands import _signer
    from approvalgate.console.actions import decide_filed

    cluster.refused.add("agentproviders/codex-runner")
    signer = _signer.load(str(KEYS / "alice.key"))
    who = Me(user="alice", approver="alice", signer=signer)
    shown = request()
    seen = Seen("uid-1", shown["spec"]["specDigest"], page_pin(cluster, who))
    filed = decide_filed(cluster, who, NS, NAME, "approve", "x", seen=seen)  # type: ignore[arg-type]
    assert filed.references == {}
    assert any(
        f"you may not read AgentProvider {NS}/codex-runner (HTTP 403)" in note
        for note in filed.notes
    ), filed.notes
    assert len(cluster.created) == 1
