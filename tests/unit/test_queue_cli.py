"""The approval queue's CLI without a cluster: argument handling, the objects it writes, what
it shows of a request, and `approve` of a file where an approval admits one run.

Everything that talks to the API server is in tests/e2e/test_queue_cli.py.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from approvalgate.approvals.digest import spec_digest
from approvalgate.approvals.errors import UsageError
from approvalgate.cli import main
from approvalgate.commands import _cluster, _queue
from approvalgate.commands.pending import Filter
from approvalgate.commands.status import render
from approvalgate.kube.client import Client
from approvalgate.kube.errors import ApiError, DeniedError
from tests.support.corpus import KEYS
from tests.support.paths import ROOT

EXAMPLE_BUNDLES = ROOT / "examples" / "gitops-repo" / "rendered"
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
RUN = """\
# the nightly report
apiVersion: agents.proompteng.ai/v1alpha1
kind: AgentRun
metadata:
  generateName: nightly-   # one per night
  namespace: agents
spec:
  agentRef:
    name: codex-agent
  implementationSpecRef:
    name: codex-impl-sample
  runtime:
    type: workflow
  parameters:
    task: report
"""
CONTENT = """\
apiVersion: agents.proompteng.ai/v1alpha1
kind: Agent
metadata:
  name: codex-agent
  namespace: agents
spec:
  providerRef:
    name: codex-runner
---
apiVersion: agents.proompteng.ai/v1alpha1
kind: ImplementationSpec
metadata:
  name: codex-impl-sample
  namespace: agents
spec:
  text: Write the nightly report.
---
apiVersion: agents.proompteng.ai/v1alpha1
kind: AgentProvider
metadata:
  name: codex-runner
  namespace: agents
spec:
  binary: /usr/local/bin/codex
"""
"""What RUN references, and the AgentProvider its Agent names: approve binds them
(referencedContent: bind, the default)."""


def content_file(folder: Path) -> str:
    path = folder / "content.yaml"
    path.write_text(CONTENT)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def usage(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a command line that argparse itself refuses (exit 2); its stderr."""
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    assert exit_.value.code == 2
    return capsys.readouterr().err


# --- arguments ---------------------------------------------------------------------------


def test_request_refs() -> None:
    assert _cluster.request_ref("agents/nightly") == ("agents", "nightly")
    assert _cluster.request_ref("nightly") == (None, "nightly")
    for bad in ("/nightly", "agents/", "a/b/c", ""):
        with pytest.raises(UsageError, match="is not NAMESPACE/NAME"):
            _cluster.request_ref(bad)


def test_approve_needs_a_manifest_or_a_request(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key = str(KEYS / "alice.key")
    code, _, err = run(capsys, "approve", "--env", "prod", "--key", key, "--approver", "alice")
    assert code == 2
    assert err.startswith("error: approve needs a MANIFEST or --request NS/NAME\n")
    manifest = tmp_path / "run.yaml"
    manifest.write_text(RUN)
    common = ("--key", key, "--approver", "alice")
    code, _, err = run(capsys, "approve", str(manifest), "--request", "a/b", *common)
    assert (code, err) == (2, "error: give a MANIFEST or --request NS/NAME, not both\n")
    code, _, err = run(capsys, "approve", "--request", "a/b", "--in-place", *common)
    assert code == 2 and "--in-place and --policies are for a MANIFEST" in err
    code, _, err = run(capsys, "approve", "--request", "a/b", "-o", "out.yaml", *common)
    assert (code, err) == (2, "error: with --request, -o/--output is the format: text or json\n")
    code, _, err = run(
        capsys, "approve", str(manifest), "--env", "prod", "--kubeconfig", "k", *common
    )
    assert (code, err) == (
        2,
        "error: --kubeconfig and --context are for --request NS/NAME or --cluster\n",
    )
    code, _, err = run(capsys, "approve", "--request", "/b", *common)
    assert code == 2 and "--request: '/b' is not NAMESPACE/NAME" in err


def test_reject_needs_a_reason_withdraw_does_not(capsys: pytest.CaptureFixture[str]) -> None:
    common = ("--request", "agents/x", "--key", str(KEYS / "alice.key"), "--approver", "alice")
    err = usage(capsys, "reject", *common)
    assert "the following arguments are required: --reason" in err
    code, _, err = run(capsys, "reject", *common, "--reason", " \t")
    assert (code, err) == (2, "error: reject needs --reason: the requester must learn why\n")
    # withdraw's reason is optional: it gets as far as the cluster (none configured here)
    code, _, err = run(capsys, "withdraw", *common, "--kubeconfig", "/nonexistent/kubeconfig")
    assert code == 1 and "cannot load Kubernetes credentials" in err


def test_reject_and_withdraw_name_a_request_or_a_run_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key = ("--key", str(KEYS / "alice.key"), "--approver", "alice")
    err = usage(capsys, "withdraw", *key)
    assert "one of the arguments --request --run is required" in err
    err = usage(capsys, "withdraw", "--request", "agents/x", "--run", "run.yaml", *key)
    assert "not allowed with argument" in err
    run_file = tmp_path / "run.yaml"
    run_file.write_text((ROOT / "tests/corpus/decide/_base/run.yaml").read_text())
    # --run needs the environment the record names, checked before the cluster
    code, _, err = run(capsys, "withdraw", "--run", str(run_file), *key)
    assert code == 2 and "withdraw --run needs --env NAME (or --bundle)" in err
    code, _, err = run(
        capsys, "withdraw", "--run", str(run_file), *key, "--env", "prod",
        "--kubeconfig", "/nonexistent/kubeconfig",
    )  # fmt: skip
    assert code == 1 and "cannot load Kubernetes credentials" in err


def test_request_checks_its_arguments_before_the_cluster(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifest = tmp_path / "run.yaml"
    manifest.write_text(RUN)
    code, _, err = run(capsys, "request", str(manifest))
    assert code == 2 and err.startswith("error: request needs --env NAME (or --bundle)")
    code, _, err = run(capsys, "request", str(manifest), "--env", "prod", "--reason", "x" * 1025)
    assert (code, err) == (2, "error: --reason is 1025 characters, over 1024\n")
    code, _, err = run(capsys, "request", str(manifest), "--env", "prod", "--reason", "a\u200bb")
    assert code == 2 and "--reason has invisible characters" in err
    err = usage(capsys, "request", str(manifest), "--env", "prod", "--bundle", "b.json")
    assert "not allowed with argument" in err
    manifest.write_text(RUN.replace("  runtime:\n    type: workflow\n", ""))
    code, _, err = run(
        capsys, "request", str(manifest), "--env", "prod", "--kubeconfig", "/nonexistent"
    )
    assert code == 1 and f"{manifest}:7:1: $.spec.runtime: required field" in err


def test_request_refuses_the_annotations_the_controller_sets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifest = tmp_path / "run.yaml"
    manifest.write_text(
        RUN.replace(
            "  namespace: agents\n",
            "  namespace: agents\n  annotations:\n    gates.proompteng.ai/request-uid: u-1\n",
        )
    )
    code, _, err = run(
        capsys, "request", str(manifest), "--env", "prod", "--kubeconfig", "/nonexistent"
    )
    assert code == 1
    assert err.startswith(
        f"error: {manifest}:8:5: $.metadata.annotations.gates.proompteng.ai/request-uid: the run "
        "carries annotation gates.proompteng.ai/request-uid: the controller sets it"
    )


def test_pending_scope_is_one_of_all_or_a_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    assert "not allowed with argument" in usage(capsys, "pending", "-A", "-n", "agents")
    assert "invalid choice: 'yaml'" in usage(capsys, "pending", "-o", "yaml")


# --- objects -----------------------------------------------------------------------------


def test_a_generated_name_is_the_prefix_and_five_characters() -> None:
    names = {_queue.fixed_name("nightly-") for _ in range(20)}
    assert all(re.fullmatch(r"nightly-[a-z0-9]{5}", n) for n in names)
    assert len(names) > 1
    long = _queue.fixed_name("x" * 80)
    assert len(long) == 63 and long.startswith("x" * 58)


def test_the_request_object_embeds_the_run_minus_its_namespace() -> None:
    run_obj = yaml.safe_load(RUN)
    run_obj["metadata"]["labels"] = {"team": "finance"}
    obj = _queue.request_object(
        run_obj,
        name="nightly-abcde",
        namespace="agents",
        environment="prod",
        requester="alice@example.com",
        digest=spec_digest(run_obj["spec"]),
        reason="",
    )
    assert obj == {
        "apiVersion": "gates.proompteng.ai/v1alpha1",
        "kind": "ApprovalRequest",
        "metadata": {"name": "nightly-abcde", "namespace": "agents"},
        "spec": {
            "requester": "alice@example.com",
            "environment": "prod",
            "specDigest": spec_digest(run_obj["spec"]),
            "cancelled": False,
            "run": {
                "apiVersion": "agents.proompteng.ai/v1alpha1",
                "kind": "AgentRun",
                "metadata": {"name": "nightly-abcde", "labels": {"team": "finance"}},
                "spec": run_obj["spec"],
            },
        },
    }


def test_the_decision_object() -> None:
    envelope = {"payload": "e30=", "payloadType": "t", "signatures": []}
    obj = _queue.decision_object(
        request="nightly-abcde",
        namespace="agents",
        decision="withdraw",
        approver="bob",
        envelope=envelope,
        created_by="bob@example.com",
        created_by_annotation=_cluster.CREATED_BY,
    )
    assert obj["metadata"] == {
        "generateName": "nightly-abcde-",
        "namespace": "agents",
        "annotations": {"gates.proompteng.ai/created-by": "bob@example.com"},
    }
    assert obj["spec"] == {
        "requestName": "nightly-abcde",
        "decision": "withdraw",
        "approver": "bob",
        "record": envelope,
    }


# --- showing a request -------------------------------------------------------------------


def request(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "nightly-abcde",
            "namespace": "agents",
            "uid": "u-1",
            "creationTimestamp": "2026-11-21T11:00:00Z",
        },
        "spec": {
            "requester": "carol",
            "environment": "prod",
            "specDigest": "ab" * 32,
            "cancelled": False,
            "reason": "nightly",
            **spec,
        },
        **({"status": status} if status is not None else {}),
    }


PENDING = {
    "phase": "Pending",
    "reason": "WaitingForApprovals",
    "required": 2,
    "approvedBy": ["alice"],
    "eligible": ["bob", "dana"],
    "expiresAt": "2026-11-21T16:00:00Z",
}


def test_pending_rows_and_filters() -> None:
    new, pending = _queue.summary(request()), _queue.summary(request(PENDING))
    header = _queue.pending_header(False)
    assert _queue.pending_row(new, NOW, False) == [
        "nightly-abcde", "carol", "prod", "New", "-", "-", "-", "1h"
    ]  # fmt: skip
    assert _queue.pending_row(pending, NOW, True) == [
        "agents", "nightly-abcde", "carol", "prod", "Pending", "1/2", "bob,dana", "in 4h", "1h"
    ]  # fmt: skip
    assert _queue.table(header, [_queue.pending_row(pending, NOW, False)]) == (
        "NAME            REQUESTER   ENVIRONMENT   PHASE     APPROVED   MAY-APPROVE   EXPIRES"
        "   AGE\n"
        "nightly-abcde   carol       prod          Pending   1/2        bob,dana      in 4h"
        "     1h\n"
    )
    assert Filter(None, "")(new) and Filter(None, "")(pending)
    assert Filter("bob", "")(pending) and not Filter("bob", "")(new)
    assert not Filter("alice", "")(pending)  # approved already: not eligible any more
    assert not Filter(None, "x, nightly-abcde")(pending)
    assert not Filter(None, "agents/nightly-abcde")(pending)
    assert Filter(None, "other/nightly-abcde")(pending)
    for done in ("Approved", "Submitted", "Rejected", "Expired", "Failed", "Cancelled"):
        assert not Filter(None, "")(_queue.summary(request({**PENDING, "phase": done})))
    assert not Filter(None, "")(_queue.summary(request(cancelled=True)))


def test_status_text_pending_and_submitted() -> None:
    item = _queue.summary(request(PENDING))
    item["decisions"] = []
    assert render(item, NOW) == (
        "ApprovalRequest agents/nightly-abcde: Pending (WaitingForApprovals)\n"
        "  requester:     carol\n"
        "  reason:        nightly\n"
        "  environment:   prod\n"
        f"  spec:          sha256:{'ab' * 32}\n"
        "  approvals:     1 of 2 (alice)\n"
        "  may approve:   bob, dana\n"
        "  expires:       2026-11-21T16:00:00Z (in 4h)\n"
        "  run:           not created\n"
        "decisions: none yet\n"
        "next: approvalgate approve --request agents/nightly-abcde --key KEY --approver NAME\n"
    )
    done = {
        **PENDING,
        "phase": "Submitted",
        "reason": "RunCreated",
        "approvedBy": ["alice", "bob"],
        "eligible": [],
        "run": {"name": "nightly-abcde", "uid": "r-1"},
    }
    item = _queue.summary(request(done))
    item["decisions"] = [
        {
            "name": "nightly-abcde-x1y2z",
            "decision": "approve",
            "approver": "alice",
            "created": "2026-11-21T11:10:00Z",
            "createdBy": "alice@example.com",
            "expiresAt": "2026-11-22T11:10:00Z",
        }
    ]
    text = render(item, NOW)
    assert "  approvals:     2 of 2 (alice, bob)\n" in text
    assert "may approve" not in text
    assert "  run:           AgentRun agents/nightly-abcde (uid r-1)\n" in text
    assert text.endswith(
        "decisions (1):\n"
        "  NAME                  DECISION   APPROVER   CREATED                CREATED-BY"
        "          EXPIRES\n"
        "  nightly-abcde-x1y2z   approve    alice      2026-11-21T11:10:00Z   alice@example.com"
        "   2026-11-22T11:10:00Z\n"
    )
    new = _queue.summary(request())
    new["decisions"] = []
    assert "next: the approvalgate controller has not evaluated it yet" in render(new, NOW)


def test_status_and_pending_never_print_escape_codes_or_bidi_controls() -> None:
    """A message or reason written by someone else (a status message, a decision's name)
    reaches the approver's terminal with its escape sequences and bidi controls written as
    <U+XXXX>: it cannot clear a line, move the cursor or reorder text."""
    item = _queue.summary(request({**PENDING, "message": "ok\x1b[1A\x1b[2KApproved \u202eby"}))
    item["decisions"] = []
    text = render(item, NOW)
    assert "  message:       ok<U+001B>[1A<U+001B>[2KApproved <U+202E>by\n" in text
    assert "\x1b" not in text and "\u202e" not in text
    assert _queue.table(["A"], [["x\x1b]0;title\x07"]]) == "A\nx<U+001B>]0;title<U+0007>\n"


# --- approve of a file: one run per approval where the cluster view is required -----------


def test_approve_names_a_generate_name_run_and_adds_the_finalizer(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifest = tmp_path / "run.yaml"
    manifest.write_text(RUN)
    bundle = str(EXAMPLE_BUNDLES / "prod" / "bundle.json")
    key = str(KEYS / "alice.key")
    content = content_file(tmp_path)
    code, out, err = run(
        capsys, "approve", str(manifest), "--bundle", bundle, "--key", key, "--approver", "alice",
        "--content", content,
    )  # fmt: skip
    assert code == 0, err
    match = re.search(r"named it (nightly-[a-z0-9]{5}), since an approval admits one run", err)
    assert match, err
    assert "(environment prod has clusterView: required)" in err
    assert "added the finalizer gates.proompteng.ai/approval-use" in err
    assert out.startswith(f"# the nightly report\n{RUN.splitlines()[1]}\n")
    assert re.search(f"\n  name: {match.group(1)} +# one per night\n", out)  # comment kept
    obj = yaml.safe_load(out)
    assert "generateName" not in obj["metadata"]
    assert obj["metadata"]["finalizers"] == ["gates.proompteng.ai/approval-use"]
    records_value = json.loads(obj["metadata"]["annotations"]["approvals.proompteng.ai/approvals"])
    assert len(records_value) == 1
    # a second approver of the approved file: the same name, the finalizer once
    manifest.write_text(out)
    code, again, err = run(
        capsys, "approve", str(manifest), "--bundle", bundle, "--key", str(KEYS / "bob.key"),
        "--approver", "bob", "--content", content,
    )  # fmt: skip
    assert code == 0 and "named it" not in err and "finalizer" not in err
    obj = yaml.safe_load(again)
    assert obj["metadata"]["name"] == match.group(1)
    assert obj["metadata"]["finalizers"] == ["gates.proompteng.ai/approval-use"]


def test_approve_without_a_bundle_assumes_the_default_and_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    manifest = tmp_path / "run.yaml"
    manifest.write_text(RUN)
    code, out, err = run(
        capsys, "approve", str(manifest), "--env", "staging",
        "--key", str(KEYS / "alice.key"), "--approver", "alice",
        "--content", content_file(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    assumed = (
        "(clusterView: required assumed for environment staging, approvalgate.yaml's default; "
        "approve with --bundle rendered/staging/bundle.json to use its setting"
    )
    name_note, _, agent, provider, spec, text, finalizer_note = err.splitlines()
    assert agent.startswith("  binds Agent agents/codex-agent spec sha256:")
    assert provider.startswith("  binds AgentProvider agents/codex-runner spec sha256:")
    assert spec.startswith("  binds ImplementationSpec agents/codex-impl-sample spec sha256:")
    assert text == "    | Write the nightly report."
    assert name_note.startswith("note: AgentRun agents/nightly-* has only generateName: named it")
    assert name_note.endswith(f"{assumed})")
    assert finalizer_note.endswith(f"{assumed}: the controller removes it once the run's use of "
                                   "the approval is recorded)")  # fmt: skip
    obj = yaml.safe_load(out)
    assert "generateName" not in obj["metadata"]
    assert obj["metadata"]["finalizers"] == ["gates.proompteng.ai/approval-use"]


def test_approve_in_an_environment_without_the_view_keeps_the_file_as_it_was(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle.json"
    shutil.copy(EXAMPLE_BUNDLES / "dev" / "bundle.json", bundle)
    assert json.loads(bundle.read_text())["clusterView"] == "off"
    manifest = tmp_path / "run.yaml"
    manifest.write_text(RUN)
    code, out, err = run(
        capsys, "approve", str(manifest), "--bundle", str(bundle),
        "--key", str(KEYS / "alice.key"), "--approver", "alice",
    )  # fmt: skip
    assert code == 0, err
    assert "named it" not in err and "finalizer" not in err
    obj = yaml.safe_load(out)
    assert obj["metadata"]["generateName"] == "nightly-"
    assert "finalizers" not in obj["metadata"]


# --- the API server's answers ------------------------------------------------------------


def test_a_webhook_denial_is_not_a_missing_permission() -> None:
    client = Client(SimpleNamespace(configuration=SimpleNamespace(host="https://k")))
    denied = client.error(
        "creating approvaldecisions.gates.proompteng.ai agents/x-*",
        ApiError(
            'admission webhook "approvaldecisions.approvalgate.proompteng.ai" denied the '
            "request: bob is not one of approver alice's usernames",
            status=403,
        ),
    )
    assert isinstance(denied, DeniedError)
    assert denied.render() == (
        "denied while creating approvaldecisions.gates.proompteng.ai agents/x-*: admission "
        'webhook "approvaldecisions.approvalgate.proompteng.ai" denied the request: bob is not '
        "one of approver alice's usernames"
    )
    forbidden = client.error(
        "listing x", ApiError('x is forbidden: User "m" cannot list resource "x"', status=403)
    )
    assert not isinstance(forbidden, DeniedError) and forbidden.advice


def test_watch_lines_as_a_table_and_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    from approvalgate.commands.pending import _Printer

    item = _queue.summary(request(PENDING))
    table_printer = _Printer("table", all_namespaces=True)
    table_printer.event("ADDED", item)
    table_printer.event("REMOVED", {**item, "phase": "Deleted"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["EVENT", "NAMESPACE", *_queue.PENDING_HEADER]
    start = ["agents", "nightly-abcde", "carol", "prod"]
    assert lines[1].split()[:7] == ["ADDED", *start, "Pending", "1/2"]
    assert lines[2].split()[:6] == ["REMOVED", *start, "Deleted"]
    _Printer("json", all_namespaces=False).event("MODIFIED", item)
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line) == {"event": "MODIFIED", "request": item}


def test_an_unknown_kind_says_to_install_the_crds() -> None:
    missing = ApiError(
        "the API server answered HTTP 404 while listing approvalrequests.gates.proompteng.ai "
        "in namespace a: the server could not find the requested resource",
        status=404,
    )
    told = _cluster.not_served(missing, "approvalrequests")
    assert told.advice.startswith("install the approvalgate CRDs (the chart's files/crds/)")
    assert told.advice.endswith("does not serve approvalrequests.gates.proompteng.ai")
    other = ApiError('approvalrequests.gates.proompteng.ai "x" not found', status=404)
    assert _cluster.not_served(other, "approvalrequests") is other
