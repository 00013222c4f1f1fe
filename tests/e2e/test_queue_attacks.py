"""The review's hidden cases (issue 15, Done-when 4; security.md class 21) at the API level:
what a requester controls (the run's annotation, its name, when it is created and deleted)
no longer decides what counts, because the webhook reads the cluster's decisions and the
ledger of uses (its watch-fed view) and the use finalizer holds a run's name until the use
is recorded.

The runs are approved with `approvalgate approve` on a file (the path of runs applied
directly or kept in git) and created with kubectl as the requester; decisions are filed
with the queue's CLI; the queue's controller (the chart's ServiceAccount and RBAC) records
uses and releases finalizers.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from approvalgate.approvals import records, view
from approvalgate.approvals.digest import spec_digest
from approvalgate.approvals.gates import MAX_PENDING_REQUESTS
from tests.e2e.controlplane import CONTROLLER, ControlPlane
from tests.e2e.gate import (
    ENFORCED,
    ENV,
    NOT_ENFORCED,
    OTHER_ENV,
    WEBHOOK_NAME,
    Gate,
    eventually,
    pod_bound_token,
    run_manifest,
)

from .queue_support import (
    DECISIONS,
    USES,
    People,
    decisions_of,
    delete_run,
    get,
    items,
    people,
    queue_gate,
    runs_named,
    unique,
    wait_phase,
)
from .test_attacks import Signer, run

pytestmark = pytest.mark.e2e
__all__ = ["people"]  # the fixture, imported for pytest
REQUESTER = "requester"
ARGOCD = "system:serviceaccount:argocd:argocd-application-controller"


@pytest.fixture(scope="module")
def gate(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    yield from queue_gate(control_plane, tmp_path_factory.mktemp("queue-attacks"))


def create(gate: Gate, manifest: str, user: str = REQUESTER) -> subprocess.CompletedProcess[str]:
    return gate.kubectl(user, "create", "-f", "-", manifest=manifest)


def denied(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert f'admission webhook "{WEBHOOK_NAME}" denied the request' in done.stderr, done.stderr
    for needle in needles:
        assert needle in done.stderr, (needle, done.stderr)


def use_of(gate: Gate, run: dict[str, Any]) -> dict[str, Any]:
    uid = run["metadata"]["uid"]
    found: dict[str, Any] = eventually(
        f"the use of {run['metadata']['name']}", lambda: get(gate, USES, uid)
    )
    return found


# --- rejections and withdrawals nobody can leave out -------------------------------------------


def test_a_reject_in_the_cluster_vetoes_a_run_whose_annotation_leaves_it_out(
    gate: Gate, people: People
) -> None:
    name = unique("qa-veto")
    approved = gate.approve(run_manifest(name), "alice", "bob")
    people.request(name)  # the queue knows the run, so bob can record his reject there
    people.decide("reject", "bob", name, "--reason", "leaks customer data")
    wait_phase(gate, name, "Rejected")
    carried = yaml.safe_load(approved)["metadata"]["annotations"][records.ANNOTATION]
    assert [r["payload"] for r in json.loads(carried)]  # two approvals, no reject
    done = create(gate, approved)
    denied(done, "bob", "reject")
    assert runs_named(gate, name) == []


def test_a_withdrawal_in_the_cluster_takes_the_approval_back(gate: Gate, people: People) -> None:
    name = unique("qa-withdraw")
    approved = gate.approve(run_manifest(name), "alice", "bob")
    people.request(name)
    people.decide("withdraw", "alice", name)
    done = create(gate, approved)
    denied(done, "1 of 2")
    assert runs_named(gate, name) == []
    # the same records without the withdrawal in the cluster would have been admitted
    other = unique("qa-withdraw-ctl")
    assert create(gate, gate.approve(run_manifest(other), "alice", "bob")).returncode == 0
    delete_run(gate, other)


def test_a_reject_filed_for_a_directly_applied_run_counts_though_the_run_leaves_it_out(
    gate: Gate, people: People
) -> None:
    """No request at all: the approver files the reject for the run's file with `reject
    --run`; the requester applies the run with only the approvals (class 21)."""
    name = unique("qa-run-veto")
    approved = gate.approve(run_manifest(name), "alice", "bob")
    path = people.run_file(name)
    key = str(gate.keys / "bob.key")
    people.ok(
        "bob", "reject", "--run", str(path), "--env", ENV, "--key", key, "--approver", "bob",
        "--reason", "the task touches billing",
    )  # fmt: skip
    filed = [d for d in decisions_of(gate, name) if d["spec"]["decision"] == "reject"]
    assert [d["spec"]["approver"] for d in filed] == ["bob"]
    denied(create(gate, approved), "rejected by bob")
    assert runs_named(gate, name) == []
    # a withdrawal takes back every earlier record of bob's, his approval too: still denied
    people.ok(
        "bob", "withdraw", "--run", str(path), "--env", ENV, "--key", key, "--approver", "bob",
    )  # fmt: skip
    denied(create(gate, approved), "1 of 2", "withdrawn by bob")
    assert runs_named(gate, name) == []


@pytest.mark.parametrize(("decision", "approver"), [("reject", "bob"), ("withdraw", "alice")])
def test_a_forged_copy_carried_by_the_run_never_hides_the_clusters_reject_or_withdrawal(
    gate: Gate, people: People, decision: str, approver: str
) -> None:
    """Seventh pass (class 21 on the API server; decide() and HTTPS:
    view-cluster-reject-copy-with-forged-signature, view-cluster-withdrawal-copy-...). The
    requester copies the reject (or withdrawal) filed in the cluster onto the run, its
    signature replaced by one nobody made, beside the two approvals: one statement, read
    twice, must not let the invalid carried copy stand for the cluster's valid record."""
    name = unique(f"qa-forged-{decision}")
    approved = gate.approve(run_manifest(name), "alice", "bob")
    path = people.run_file(name)
    key = str(gate.keys / f"{approver}.key")
    extra = ("--reason", "the task touches billing") if decision == "reject" else ()
    people.ok(
        approver, decision, "--run", str(path), "--env", ENV, "--key", key,
        "--approver", approver, *extra,
    )  # fmt: skip
    [filed] = [d for d in decisions_of(gate, name) if d["spec"]["decision"] == decision]
    copy = json.loads(json.dumps(filed["spec"]["record"]))
    copy["signatures"][0]["sig"] = base64.b64encode(bytes(64)).decode()
    obj = yaml.safe_load(approved)
    carried = json.loads(obj["metadata"]["annotations"][records.ANNOTATION])
    obj["metadata"]["annotations"][records.ANNOTATION] = json.dumps([*carried, copy])
    expected = f"rejected by {approver}" if decision == "reject" else f"withdrawn by {approver}"
    denied(create(gate, yaml.safe_dump(obj)), expected)
    assert runs_named(gate, name) == []


@pytest.mark.parametrize("decision", ["withdraw", "reject"])
def test_a_withdrawal_or_reject_signed_by_a_clock_behind_holds_from_its_filing(
    gate: Gate, people: People, decision: str
) -> None:
    """alice approved; her withdrawal (or reject) is signed on a machine whose clock is an
    hour behind (`--now`) and filed now. Read by her clock it came before her approval and
    took nothing back: the run was admitted. It was said by its filing (the API server's
    creationTimestamp of the ApprovalDecision), after her approval."""
    name = unique(f"qa-clock-{decision}")
    approved = gate.approve(run_manifest(name), "alice", "bob")
    path = people.run_file(name)
    key = str(gate.keys / "alice.key")
    behind = records.format_time(datetime.now(UTC) - timedelta(hours=1))
    extra = ("--reason", "the task touches billing") if decision == "reject" else ()
    people.ok(
        "alice", decision, "--run", str(path), "--env", ENV, "--key", key, "--approver", "alice",
        "--now", behind, *extra,
    )  # fmt: skip
    [filed] = [d for d in decisions_of(gate, name) if d["spec"]["decision"] == decision]
    assert filed["metadata"]["creationTimestamp"] > behind
    expected = "withdrawn by alice" if decision == "withdraw" else "rejected by alice"
    denied(create(gate, approved), expected)
    assert runs_named(gate, name) == []


def test_a_creation_time_the_approver_writes_on_a_decision_is_the_api_servers(
    gate: Gate, people: People
) -> None:
    """Tried and already so (sixth pass): the gate reads when a decision was filed from its
    creationTimestamp (a withdrawal or reject counts from its filing, an approval filed
    after the run's creation does not count for it). The approver files a copy of her
    reject with a creationTimestamp of her own, years back or ahead: the API server writes
    its own."""
    name = unique("qa-forged-time")
    path = people.run_file(name)
    key = str(gate.keys / "alice.key")
    people.ok(
        "alice", "reject", "--run", str(path), "--env", ENV, "--key", key, "--approver", "alice",
        "--reason", "the task touches billing",
    )  # fmt: skip
    [filed] = decisions_of(gate, name)
    for forged in ("2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z"):
        copy = {
            "apiVersion": filed["apiVersion"],
            "kind": filed["kind"],
            "metadata": {
                "name": f"{name}-{forged[:4]}",
                "namespace": ENFORCED,
                "creationTimestamp": forged,
            },
            "spec": filed["spec"],
        }
        done = gate.kubectl("alice", "create", "-f", "-", manifest=json.dumps(copy))
        assert done.returncode == 0, done.stderr
        stored = get(gate, DECISIONS, copy["metadata"]["name"])
        assert stored is not None
        created = stored["metadata"]["creationTimestamp"]
        assert created != forged
        now = datetime.now(UTC)
        assert abs((records.parse_time(created) - now).total_seconds()) < 120


# --- replay ----------------------------------------------------------------------------------


def test_replay_after_delete_is_denied_as_already_used(gate: Gate) -> None:
    name = unique("qa-replay")
    approved = gate.approve(run_manifest(name), "alice", "bob")
    assert view.USE_FINALIZER in yaml.safe_load(approved)["metadata"]["finalizers"]
    first = create(gate, approved)
    assert first.returncode == 0, first.stderr
    [run] = runs_named(gate, name)
    use = use_of(gate, run)
    assert len(use["spec"]["statements"]) == 2
    delete_run(gate, name)  # the controller releases the finalizer once the use settled
    again = create(gate, approved)
    denied(
        again,
        f"already used by run {ENFORCED}/{name} (uid {run['metadata']['uid']})",
        "approve it again",
    )
    assert runs_named(gate, name) == []
    # approving again (new records) admits one more run
    fresh = gate.approve(run_manifest(name), "alice", "bob")
    assert create(gate, fresh).returncode == 0
    delete_run(gate, name)


def test_approvals_filed_after_a_run_was_created_never_admit_it_then_a_second_run(
    gate: Gate, people: People
) -> None:
    """Replay through the ledger's time cut (class 21): a run's ApprovalUse records the
    approvals it carries and the cluster's issued by its creation. A template run (admitted
    on approvals that are then withdrawn) made live by an UPDATE on ApprovalDecisions filed
    since would run on approvals its use never records; once deleted, the same decisions
    admitted a second run of the name. Now they count for the second run only."""
    name = unique("qa-late")
    template = yaml.safe_load(run_manifest(name))
    template["metadata"]["annotations"] = {"agents.proompteng.ai/template": "true"}
    assert create(gate, gate.approve(yaml.safe_dump(template), "alice", "bob")).returncode == 0
    [run] = runs_named(gate, name)
    use_of(gate, run)
    path = people.run_file(name)
    for approver in ("alice", "bob"):  # the template's approvals taken back
        key = str(gate.keys / f"{approver}.key")
        people.ok(
            approver, "withdraw", "--run", str(path), "--env", ENV, "--key", key,
            "--approver", approver,
        )  # fmt: skip
    # approvals issued after the withdrawals, and after the run's creation plus the clock
    # skew (60 s): those issued before are asked of its use (and hold its finalizer)
    created = records.parse_time(run["metadata"]["creationTimestamp"])
    time.sleep(max((created - records.now_utc()).total_seconds() + 62, 1.1))
    people.request(name)
    people.approve(name, "alice", "bob")  # filed after the run was created
    live = gate.kubectl(
        REQUESTER, "annotate", "agentrun", name, "-n", ENFORCED, "agents.proompteng.ai/template-"
    )
    delete_run(gate, name)
    second = create(gate, run_manifest(name, finalizer=True))
    assert not (live.returncode == 0 and second.returncode == 0), "one approval, two runs"
    denied(live, "issued after the run was created")
    assert second.returncode == 0, second.stderr  # the decisions' first run
    [again] = runs_named(gate, name)
    use_of(gate, again)
    delete_run(gate, name)
    denied(create(gate, run_manifest(name, finalizer=True)), "already used by run")


def test_a_decision_filed_after_a_runs_use_neither_counts_for_it_nor_holds_its_finalizer(
    gate: Gate, people: People
) -> None:
    """ApprovalDecisions for a run's name and spec, issued within the clock skew of its
    creation but filed after its ApprovalUse was written: the release of the finalizer
    asked the use for them, and the use (written once) lacked them, so the run could not
    be deleted until they expired; and the template made live counted them. Now the API
    server's creation times decide (the decisions' and the run's creationTimestamp): filed
    after the run was created, they count for none of its admissions, are not asked of its
    use, and admit the next run of the name as their first and only run."""
    name = unique("qa-filed")
    template = yaml.safe_load(run_manifest(name))
    template["metadata"]["annotations"] = {"agents.proompteng.ai/template": "true"}
    assert create(gate, gate.approve(yaml.safe_dump(template), "alice", "bob")).returncode == 0
    [run] = runs_named(gate, name)
    use = use_of(gate, run)
    path = people.run_file(name)
    for approver in ("alice", "bob"):  # the template's approvals taken back
        key = str(gate.keys / f"{approver}.key")
        people.ok(
            approver, "withdraw", "--run", str(path), "--env", ENV, "--key", key,
            "--approver", approver,
        )  # fmt: skip
    created = records.parse_time(run["metadata"]["creationTimestamp"])
    # filed in a later second than the run's creation (and its use), within the skew (60 s)
    time.sleep(max((created + timedelta(seconds=1.1) - records.now_utc()).total_seconds(), 0))
    people.request(name)
    people.approve(name, "alice", "bob")
    filed = [d for d in decisions_of(gate, name) if d["spec"]["decision"] == "approve"]
    assert len(filed) == 2
    for decision in filed:
        at = records.parse_time(decision["metadata"]["creationTimestamp"])
        assert at > records.parse_time(use["metadata"]["creationTimestamp"])
        issued = json.loads(base64.b64decode(decision["spec"]["record"]["payload"]))
        assert records.parse_time(issued["predicate"]["issuedAt"]) <= created + timedelta(
            seconds=60
        ), "filed too late for this test: the clock skew already cuts it"
    live = gate.kubectl(
        REQUESTER, "annotate", "agentrun", name, "-n", ENFORCED, "agents.proompteng.ai/template-"
    )
    denied(live, "filed after the run was created")
    delete_run(gate, name, timeout=30)  # not held until the decisions expire
    second = create(gate, run_manifest(name, finalizer=True))
    assert second.returncode == 0, second.stderr  # the decisions' first run
    [again] = runs_named(gate, name)
    recorded = use_of(gate, again)
    assert len(recorded["spec"]["statements"]) == 2
    delete_run(gate, name)
    denied(create(gate, run_manifest(name, finalizer=True)), "already used by run")


def test_approvals_put_on_a_template_made_live_after_its_creation_do_not_admit_it(
    gate: Gate,
) -> None:
    """Carried approvals through the ledger's time cut: a template run admitted on its
    approvals, then made live by an UPDATE that also replaces them with fresh ones, issued
    after the run's creation plus the clock skew (60 s). Its use, written at its creation,
    records only the first ones, so the fresh ones admitted it unrecorded (and held its
    finalizer until they expired). Now an approval a run carries counts only if issued by
    its creation, as a filed one does: denied, and the fresh ones admit the next run of the
    name, as their first and only run."""
    name = unique("qa-carried")
    template = yaml.safe_load(run_manifest(name))
    template["metadata"]["annotations"] = {"agents.proompteng.ai/template": "true"}
    assert create(gate, gate.approve(yaml.safe_dump(template), "alice", "bob")).returncode == 0
    [run] = runs_named(gate, name)
    use = use_of(gate, run)
    created = records.parse_time(run["metadata"]["creationTimestamp"])
    time.sleep(max((created - records.now_utc()).total_seconds() + 62, 1.1))
    fresh = gate.approve(run_manifest(name), "alice", "bob")
    carried = yaml.safe_load(fresh)["metadata"]["annotations"][records.ANNOTATION]
    patch = {
        "metadata": {
            "annotations": {"agents.proompteng.ai/template": None, records.ANNOTATION: carried}
        }
    }
    live = gate.kubectl(
        REQUESTER, "patch", "agentrun", name, "-n", ENFORCED, "--type", "merge",
        "-p", json.dumps(patch),
    )  # fmt: skip
    denied(live, "issued after the run was created")
    stored = get(gate, "agentruns", name)
    assert stored is not None and stored["metadata"]["uid"] == run["metadata"]["uid"]
    recorded = get(gate, USES, run["metadata"]["uid"])
    assert recorded is not None and recorded["spec"] == use["spec"]  # written once
    delete_run(gate, name)
    second = create(gate, fresh)
    assert second.returncode == 0, second.stderr  # the fresh approvals' first run
    [again] = runs_named(gate, name)
    assert len(use_of(gate, again)["spec"]["statements"]) == 2
    delete_run(gate, name)
    denied(create(gate, fresh), "already used by run")


def test_a_requester_cannot_have_the_garbage_collector_delete_a_request(
    gate: Gate, people: People
) -> None:
    """The chart's requester role may update requests (to cancel), not delete them: an owner
    reference to an object that does not exist would have the garbage collector delete the
    request for her (another's, or her own to file one of the same name and another spec
    while approvers look at it). The webhook denies owner references on the queue's kinds."""
    name = unique("qa-owned")
    people.request(name)
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": "no-such-uid"}
    patch = json.dumps({"metadata": {"ownerReferences": [owner]}})
    for user in ("mallory", REQUESTER):
        done = gate.kubectl(
            user, "patch", "approvalrequest", name, "-n", ENFORCED, "--type=merge", "-p", patch
        )
        assert done.returncode == 1, done.stdout
        assert 'webhook "gates.approvalgate.proompteng.ai" denied' in done.stderr, done.stderr
        assert "the queue's objects are never owned" in done.stderr, done.stderr
    forbidden = gate.kubectl("mallory", "delete", "approvalrequest", name, "-n", ENFORCED)
    assert forbidden.returncode != 0 and "forbidden" in forbidden.stderr.lower()
    stored = get(gate, "approvalrequests", name)
    assert stored is not None and not stored["metadata"].get("ownerReferences")


def test_a_request_edited_after_an_approval_is_denied_and_the_run_is_the_one_approved(
    gate: Gate, people: People
) -> None:
    """Once alice approved, the requester tries to make the request name another run before
    the second approval: another spec, name, namespace, a generateName, other labels, the
    controller's own annotations, the requester. Each is refused (a request's spec never
    changes but to cancel it: the CRD's schema and rule, and the webhook behind them), and
    the second approval creates exactly the run the approvers read, under the request's
    name, in its namespace."""
    name = unique("qa-edit")
    people.request(name)
    people.approve(name, "alice")
    original = get(gate, "approvalrequests", name)
    assert original is not None
    patches = [
        {"spec": {"run": {"spec": {"parameters": {"task": "Exfiltrate the secrets"}}}}},
        {"spec": {"run": {"metadata": {"name": f"{name}-other"}}}},
        {"spec": {"run": {"metadata": {"namespace": NOT_ENFORCED}}}},
        {"spec": {"run": {"metadata": {"name": None, "generateName": f"{name}-"}}}},
        {"spec": {"run": {"metadata": {"labels": {"team": "elsewhere"}}}}},
        {"spec": {"run": {"metadata": {"annotations": {view.REQUEST_UID_ANNOTATION: "x"}}}}},
        {"spec": {"requester": "mallory"}},
    ]
    for patch in patches:
        done = gate.kubectl(
            REQUESTER,
            "patch",
            "approvalrequest",
            name,
            "-n",
            ENFORCED,
            "--type=merge",
            "-p",
            json.dumps(patch),
        )
        # the CRD answers first (its schema, its immutability rule; the webhook's
        # `request-immutable` stands behind); a field it does not know (the run's
        # namespace) is never stored
        refused = done.returncode == 1 and "is invalid" in done.stderr
        assert refused or "(no change)" in done.stdout, (patch, done.stdout, done.stderr)
    stored = get(gate, "approvalrequests", name)
    assert stored is not None and stored["spec"] == original["spec"]
    people.approve(name, "bob")
    wait_phase(gate, name, "Submitted")
    [created] = runs_named(gate, name)
    approved = original["spec"]["run"]
    assert created["spec"] == approved["spec"]
    assert created["metadata"].get("labels") == approved["metadata"].get("labels")
    assert (
        created["metadata"]["annotations"][view.REQUEST_UID_ANNOTATION]
        == (original["metadata"]["uid"])
    )
    assert runs_named(gate, f"{name}-other") == []
    assert runs_named(gate, name, NOT_ENFORCED) == []


def test_a_look_alike_run_naming_the_request_is_never_adopted_in_its_place(
    gate: Gate, people: People
) -> None:
    """The controller adopts a run of the request's name that carries the request's uid
    (how it converges after a crash). The requester, who may create runs, plants such a
    run before the approvals: with another spec, or with the approved one before the
    quorum. The webhook denies both (the courier rule: the request approves another spec;
    the request's own approvals are missing), so nothing stands in for the approved run:
    the approvals create it, once, with the spec the approvers read."""
    name = unique("qa-lookalike")
    request = people.request(name)
    uid = request["metadata"]["uid"]
    annotation = f"  annotations:\n    {view.REQUEST_UID_ANNOTATION}: {uid}\n"

    def planted(task: str = "Update onboarding flow") -> str:
        text = run_manifest(name, task=task, finalizer=True)
        return text.replace("spec:\n", annotation + "spec:\n", 1)

    denied(create(gate, planted("Exfiltrate the secrets")), "approves another spec")
    denied(create(gate, planted()), "approvals")
    assert runs_named(gate, name) == []
    people.approve(name, "alice", "bob")
    story = wait_phase(gate, name, "Submitted")
    [created] = runs_named(gate, name)
    assert story["run"] == {"name": name, "uid": created["metadata"]["uid"]}
    assert created["spec"] == request["spec"]["run"]["spec"]
    assert created["metadata"]["annotations"][view.REQUEST_UID_ANNOTATION] == uid


def test_an_approver_carrying_a_request_to_the_cluster_cannot_count_her_own_approval(
    gate: Gate, people: People
) -> None:
    """Seventh pass (class 17 on the API server; decide() and HTTPS:
    view-courier-approver-excluded). bob, a platform lead allowed to create runs, takes the
    requester's request to the cluster himself: its run, with the request's uid, carrying
    his and alice's approvals signed on the file (none filed in the queue, so the controller
    sees no quorum). The run is judged as the requester's, and bob, its courier, decides
    nothing about it: 1 of 2."""
    name = unique("qa-courier")
    request = people.request(name)
    uid = request["metadata"]["uid"]
    obj = yaml.safe_load(gate.approve(run_manifest(name), "alice", "bob"))
    obj["metadata"]["annotations"][view.REQUEST_UID_ANNOTATION] = uid
    done = create(gate, yaml.safe_dump(obj), user="bob")
    denied(done, "bob created this run for its requester (as bob)", "1 of 2")
    assert runs_named(gate, name) == []


def test_a_request_made_again_between_status_and_approve_is_not_signed(
    gate: Gate, people: People
) -> None:
    """alice reads a request with `approvalgate status`; it is deleted (whoever may: a queue
    admin) and made again under its name for another run. `approve --request NAME` used to
    sign it as it was then, a run she never read. Her command names the pin status printed:
    the new request has another one and nothing is signed, for an approval or a reject;
    without a terminal an approval needs the pin at all."""
    name = unique("qa-swap")
    people.request(name, task="Update onboarding flow")
    pin = people.pin(name, "alice")
    done = gate.kubectl("admin", "delete", "approvalrequest", name, "-n", ENFORCED)
    assert done.returncode == 0, done.stderr
    people.request(name, task="Drop the customer tables")
    ref = f"{ENFORCED}/{name}"
    for command, extra in (("approve", ()), ("reject", ("--reason", "not this one"))):
        refused = people.decide(command, "alice", name, "--expect", pin, *extra, check=False)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert refused.stderr.startswith(
            f"error: ApprovalRequest {ref} is not as you read it: you were shown pin {pin}, it "
            "has pin "
        ), refused.stderr
        assert "deleted and made again" in refused.stderr and "nothing was signed" in refused.stderr
    blind = people.run(
        "alice",
        *("approve", "--request", ref, "--key", str(gate.keys / "alice.key")),
        *("--approver", "alice"),
    )
    assert blind.returncode == 2, blind.stdout + blind.stderr
    assert "approve --request needs --expect PIN when not run on a terminal" in blind.stderr
    assert decisions_of(gate, name) == []
    # read again, the pin names the request as it is now: that one is signed
    people.decide("approve", "alice", name)
    [filed] = decisions_of(gate, name)
    stored = get(gate, "approvalrequests", name) or {}
    (record,), _ = records.parse_annotation(json.dumps([filed["spec"]["record"]]))
    assert record.claim.digest == stored["spec"]["specDigest"]


def test_an_admitted_run_cannot_be_given_another_approved_spec(gate: Gate) -> None:
    """Approvals of a second spec for the same name, brought in by an UPDATE, would admit
    the run unrecorded (its ApprovalUse lists what it was created with, once), and then a new
    run of that name after a swap back and a delete: a replay. The UPDATE is denied."""
    name = unique("qa-respec")
    approved = gate.approve(run_manifest(name), "alice", "bob")
    assert create(gate, approved).returncode == 0
    [run] = runs_named(gate, name)
    use_of(gate, run)
    second = yaml.safe_load(gate.approve(run_manifest(name, task="a second task"), "alice", "bob"))
    second["metadata"]["resourceVersion"] = run["metadata"]["resourceVersion"]
    done = gate.kubectl(REQUESTER, "replace", "-f", "-", manifest=json.dumps(second))
    denied(done, "an admitted run keeps its spec")
    [stored] = runs_named(gate, name)
    assert stored["spec"] == run["spec"]
    # the second spec's approvals are left for a run of their own, once this one is gone
    delete_run(gate, name)
    del second["metadata"]["resourceVersion"]
    assert create(gate, json.dumps(second)).returncode == 0
    delete_run(gate, name)


def test_copies_of_anothers_approvals_on_a_run_of_ones_own_are_not_recorded_as_used(
    gate: Gate,
) -> None:
    """The requester copies the approvals of someone else's run (from git, an annotation,
    or the ApprovalDecisions she may read) onto a run of her own in a namespace nothing
    enforces, with the use finalizer: the controller records that run's use. It must not
    list the copies, or the other run would be denied as "already used" (a denial of
    service through the controller's ledger, class 21)."""
    victim = unique("qa-victim")
    approved = yaml.safe_load(gate.approve(run_manifest(victim), "alice", "bob"))
    copies = approved["metadata"]["annotations"][records.ANNOTATION]
    decoy = yaml.safe_load(run_manifest(unique("qa-decoy"), NOT_ENFORCED, finalizer=True))
    decoy["metadata"]["annotations"] = {records.ANNOTATION: copies}
    assert create(gate, json.dumps(decoy)).returncode == 0
    [stored] = runs_named(gate, decoy["metadata"]["name"], NOT_ENFORCED)
    uid = stored["metadata"]["uid"]
    recorded = eventually("the decoy's use", lambda: get(gate, USES, uid, NOT_ENFORCED))
    assert recorded["spec"]["statements"] == []
    done = create(gate, json.dumps(approved))
    assert done.returncode == 0, done.stderr
    delete_run(gate, victim)
    gate.kubectl("admin", "delete", "agentrun", decoy["metadata"]["name"], "-n", NOT_ENFORCED)


def test_a_run_of_the_same_name_and_another_spec_does_not_spend_a_requests_approvals(
    gate: Gate, people: People
) -> None:
    """mallory creates a run named like a pending request, with another spec, admitted on its
    own approvals. Its use must not list the request's ApprovalDecisions (they approve another
    spec and could not count for it), or, once it is gone, the request's approvals would be
    "already used" and its run never created (class 21, a denial of service)."""
    name = unique("qa-squat")
    people.request(name)
    people.approve(name, "alice")
    [victims] = decisions_of(gate, name)
    decoy = gate.approve(run_manifest(name, task="the decoy task"), "alice", "bob")
    assert create(gate, decoy, user="mallory").returncode == 0
    [run] = runs_named(gate, name)
    recorded = use_of(gate, run)
    (record,), _ = records.parse_annotation(json.dumps([victims["spec"]["record"]]))
    assert view.statement_digest(record) not in recorded["spec"]["statements"]
    assert len(recorded["spec"]["statements"]) == 2  # the decoy's own two
    delete_run(gate, name)
    people.approve(name, "bob")  # the request's quorum: its run is created, once
    wait_phase(gate, name, "Submitted")
    [created] = runs_named(gate, name)
    assert created["spec"]["parameters"]["task"] == "Update onboarding flow"
    delete_run(gate, name)


def test_delete_and_recreate_as_fast_as_possible_admits_nothing_twice(gate: Gate) -> None:
    """Hammer the window between an admission and its use being recorded: after the first
    create, every create of the same records fails (the name is held by the finalizer, then
    the use denies), while the run is deleted meanwhile."""
    name = unique("qa-window")
    approved = gate.approve(run_manifest(name), "alice", "bob")
    assert create(gate, approved).returncode == 0
    [run] = runs_named(gate, name)
    gate.kubectl("admin", "delete", "agentrun", name, "-n", ENFORCED, "--wait=false")
    uids = {run["metadata"]["uid"]}
    outcomes: list[str] = []

    def gone_for_good() -> bool:
        done = create(gate, approved)
        outcomes.append("created" if done.returncode == 0 else done.stderr)
        for current in runs_named(gate, name):
            uids.add(current["metadata"]["uid"])
        return bool(get(gate, USES, run["metadata"]["uid"])) and not runs_named(gate, name)

    eventually("the run deleted and its use recorded", gone_for_good, timeout=90)
    for _ in range(5):
        gone_for_good()
    assert "created" not in outcomes, outcomes
    assert uids == {run["metadata"]["uid"]}
    assert any("already used" in o for o in outcomes), outcomes


def test_two_creates_racing_one_run(gate: Gate) -> None:
    name = unique("qa-race")
    approved = gate.approve(run_manifest(name), "alice", "bob")
    results: list[subprocess.CompletedProcess[str]] = []
    barrier = threading.Barrier(4)

    def racer() -> None:
        barrier.wait()
        results.append(create(gate, approved))

    threads = [threading.Thread(target=racer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(r.returncode for r in results) == [0, 1, 1, 1]
    for lost in (r for r in results if r.returncode != 0):
        # the API server's name lock, or the webhook seeing the winner's use already
        assert "already exists" in lost.stderr or "already used" in lost.stderr, lost.stderr
    assert len(runs_named(gate, name)) == 1
    delete_run(gate, name)


# --- one generateName approval, one run ----------------------------------------------------------


def test_approve_names_a_generate_name_run_and_a_prefix_record_does_not_count(
    gate: Gate,
) -> None:
    prefix = unique("qa-gen")
    path = gate.work / f"{prefix}.yaml"
    path.write_text(run_manifest(prefix, generate=True))
    done = gate.cli(
        "approve",
        str(path),
        "--bundle",
        str(gate.signing_bundle()),
        "--key",
        str(gate.keys / "alice.key"),
        "--approver",
        "alice",
        "--in-place",
    )
    found = re.search(rf"({re.escape(prefix)}-[a-z0-9]{{5}})", done.stderr)
    assert found, done.stderr
    name = found.group(1)
    gate.cli(
        "approve",
        str(path),
        "--bundle",
        str(gate.signing_bundle()),
        "--key",
        str(gate.keys / "bob.key"),
        "--approver",
        "bob",
        "--in-place",
    )
    approved = path.read_text()
    meta = yaml.safe_load(approved)["metadata"]
    assert meta["name"] == name and "generateName" not in meta
    assert create(gate, approved).returncode == 0
    # the same approval cannot start a second run: the name is taken, then used
    second = create(gate, approved)
    assert second.returncode == 1, second.stdout
    assert "already exists" in second.stderr or "already used" in second.stderr, second.stderr
    delete_run(gate, name)
    denied(create(gate, approved), "already used")

    # records made by hand for the prefix (`approve` always names the run now): signed with
    # the approvers' real keys, the finalizer added, the run created with generateName
    signer = Signer(gate)
    manifest = run(prefix, generate=True)
    manifest["metadata"]["annotations"] = {
        records.ANNOTATION: json.dumps([signer.record(manifest, who) for who in ("alice", "bob")])
    }
    for _ in range(2):
        denied(create(gate, yaml.safe_dump(manifest)), f"generateName prefix {ENFORCED}/{prefix}-*")
    others = [r for r in items(gate, "agentruns") if r["metadata"]["name"].startswith(prefix)]
    assert others == []


# --- the finalizer is the webhook's, not anybody's -----------------------------------------------


def test_removing_the_use_finalizer_before_the_use_exists_is_denied(gate: Gate) -> None:
    gate.stop_controllers()  # nobody records the use meanwhile
    try:
        name = unique("qa-final")
        assert create(gate, gate.approve(run_manifest(name), "alice", "bob")).returncode == 0
        [run] = runs_named(gate, name)
        assert get(gate, USES, run["metadata"]["uid"]) is None
        for user in (REQUESTER, "admin"):
            done = gate.kubectl(
                user,
                "patch",
                "agentrun",
                name,
                "-n",
                ENFORCED,
                "--type=json",
                "-p",
                json.dumps([{"op": "remove", "path": "/metadata/finalizers"}]),
            )
            denied(done, "ApprovalUse is not recorded yet")
        # deleting leaves it terminating: the name stays taken
        gate.kubectl(REQUESTER, "delete", "agentrun", name, "-n", ENFORCED, "--wait=false")
        [held] = runs_named(gate, name)
        assert held["metadata"].get("deletionTimestamp")
        assert held["metadata"]["finalizers"] == [view.USE_FINALIZER]
    finally:
        gate.start_controller()
    eventually("the controller releases it", lambda: not runs_named(gate, name))
    assert get(gate, USES, run["metadata"]["uid"]) is not None


def test_a_run_being_deleted_keeps_the_approvals_its_use_records(gate: Gate) -> None:
    """Deleted before its use is recorded (the controller down or lagging), a run whose
    approvals could still be dropped would get a use recorded without them, and release its
    finalizer: the same approvals would then admit the name again. While it is being deleted,
    only its finalizers may go."""
    gate.stop_controllers()  # nobody records the use meanwhile
    try:
        name = unique("qa-dropped")
        manifest = gate.approve(run_manifest(name), "alice", "bob")
        assert create(gate, manifest).returncode == 0
        gate.kubectl(REQUESTER, "delete", "agentrun", name, "-n", ENFORCED, "--wait=false")
        pointer = "/metadata/annotations/" + records.ANNOTATION.replace("/", "~1")
        for patch in (
            ["--type=json", "-p", json.dumps([{"op": "remove", "path": pointer}])],
            ["--type=merge", "-p", json.dumps({"metadata": {"labels": {"moved": "x"}}})],
        ):
            done = gate.kubectl(REQUESTER, "patch", "agentrun", name, "-n", ENFORCED, *patch)
            denied(done, "only finalizer removal is allowed now")
    finally:
        gate.start_controller()
    eventually("the controller releases it", lambda: not runs_named(gate, name))
    denied(create(gate, manifest), f"already used by run {ENFORCED}/{name}")


def test_the_status_subresource_cannot_remove_the_use_finalizer(gate: Gate) -> None:
    """The webhook is not sent agentruns/status and decide() passes it unread: that holds
    only because the API server keeps every metadata field of the stored object on a status
    write. The agents controller (who may write status) tries to drop the finalizer there,
    by a JSON patch and by a full replace of the object; it stays, and the name stays taken."""
    gate.stop_controllers()  # nobody records the use meanwhile
    try:
        name = unique("qa-status")
        assert create(gate, gate.approve(run_manifest(name), "alice", "bob")).returncode == 0
        [run] = runs_named(gate, name)
        status = ("-n", ENFORCED, "--subresource=status")
        patched = gate.kubectl(
            CONTROLLER, "patch", "agentrun", name, *status, "--type=json", "-p",
            json.dumps([{"op": "remove", "path": "/metadata/finalizers"},
                        {"op": "add", "path": "/status", "value": {"phase": "Running"}}]),
        )  # fmt: skip
        assert patched.returncode == 0, patched.stderr
        [held] = runs_named(gate, name)
        assert held["metadata"]["finalizers"] == [view.USE_FINALIZER]
        assert held["status"]["phase"] == "Running"
        held["metadata"]["finalizers"] = []
        held["metadata"]["labels"] = {"smuggled": "by-status"}
        replaced = gate.kubectl(
            CONTROLLER, "replace", "--subresource=status", "-f", "-", manifest=json.dumps(held)
        )
        assert replaced.returncode == 0, replaced.stderr
        [after] = runs_named(gate, name)
        assert after["metadata"]["finalizers"] == [view.USE_FINALIZER]
        assert "smuggled" not in (after["metadata"].get("labels") or {})
        gate.kubectl(REQUESTER, "delete", "agentrun", name, "-n", ENFORCED, "--wait=false")
        [terminating] = runs_named(gate, name)
        assert terminating["metadata"]["finalizers"] == [view.USE_FINALIZER]
    finally:
        gate.start_controller()
    eventually("the controller releases it", lambda: not runs_named(gate, name))
    assert get(gate, USES, run["metadata"]["uid"]) is not None


# --- environments --------------------------------------------------------------------------------


def test_staging_approvals_and_decisions_do_not_count_in_prod(gate: Gate, people: People) -> None:
    name = unique("qa-env")
    approved = gate.approve(run_manifest(name), "alice", "bob")
    people.request(name)
    with gate.enforcing(OTHER_ENV):
        denied(create(gate, approved), f"for {ENV}, this bundle enforces {OTHER_ENV}")
        # the controller, on the prod bundle too, fails the staging request for good
        wait_phase(gate, name, "Failed")
        done = people.decide("approve", "alice", name, check=False)
        assert done.returncode == 1, done.stdout + done.stderr
        assert decisions_of(gate, name) == []
        # and a decision with a staging record, filed by hand, is denied as well
        annotations = yaml.safe_load(approved)["metadata"]["annotations"]
        record = json.loads(annotations[records.ANNOTATION])[0]
        decision = {
            "apiVersion": view.API_VERSION,
            "kind": "ApprovalDecision",
            "metadata": {"generateName": f"{name}-", "namespace": ENFORCED},
            "spec": {
                "requestName": name,
                "decision": "approve",
                "approver": "alice",
                "record": record,
            },
        }
        done = gate.kubectl("alice", "create", "-f", "-", manifest=json.dumps(decision))
        assert done.returncode == 1 and "denied the request" in done.stderr, done.stderr
    assert runs_named(gate, name) == []
    assert not [d for d in items(gate, DECISIONS) if d["spec"]["requestName"] == name]


# --- git-kept runs -------------------------------------------------------------------------------


def test_a_git_kept_run_re_applied_after_delete_is_denied_as_a_replay(gate: Gate) -> None:
    """Argo CD (a gitOpsAppliers identity, a pod-bound token) applies an approved run kept
    in git; the run is deleted (by hand or a TTL); self-heal applies the same file again:
    denied as a replay, with the message Argo CD shows."""
    token = pod_bound_token(
        gate.plane, "argocd", "argocd-application-controller", unique("application-controller")
    )
    gate.plane.grant(
        "e2e-argocd-agentruns",
        subjects=[ARGOCD],
        rules=[
            {
                "apiGroups": ["agents.proompteng.ai"],
                "resources": ["agentruns"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
            }
        ],
    )
    name = unique("qa-git")
    approved = gate.approve(run_manifest(name), "alice", "bob")
    kept = gate.work / f"{name}-git.yaml"
    kept.write_text(approved)

    def argocd_apply() -> subprocess.CompletedProcess[str]:
        return gate.plane.kubectl_with_token(
            token, "apply", "--server-side", "--field-manager=argocd-controller", "-f", str(kept)
        )

    first = argocd_apply()
    assert first.returncode == 0, first.stderr
    [run] = runs_named(gate, name)
    use_of(gate, run)
    delete_run(gate, name)
    healed = argocd_apply()
    denied(healed, "already used", "approve it again")
    assert runs_named(gate, name) == []


# --- availability: one namespace's flood of requests (fourth red-team pass) -----------------


def _request_manifest(name: str, namespace: str, requester: str, label: str) -> dict[str, Any]:
    run_obj: dict[str, Any] = yaml.safe_load(run_manifest(name, namespace))
    del run_obj["metadata"]["namespace"]
    return {
        "apiVersion": f"{view.GROUP}/{view.VERSION}",
        "kind": "ApprovalRequest",
        "metadata": {"name": name, "namespace": namespace, "labels": {"e2e-flood": label}},
        "spec": {
            "requester": requester,
            "environment": ENV,
            "specDigest": spec_digest(run_obj["spec"]),
            "run": run_obj,
        },
    }


def test_a_requester_flooding_the_queue_is_refused_past_the_pending_bound_and_nobody_else(
    gate: Gate,
) -> None:
    """The chart's requester role creates requests without limit; each is reconciled by the
    controller and was held whole by every webhook worker. Past MAX_PENDING_REQUESTS of hers
    pending in her namespace the webhook (its watch-fed count) denies her next one naming the
    bound; another requester's request there is still admitted, and so is her cancel."""
    label = unique("flood")
    pending = sum(
        1
        for r in items(gate, "approvalrequests")
        if view.is_pending(r) and view.requester_of(r) == REQUESTER
    )  # her requests of other tests count too
    flood = [
        _request_manifest(f"{label}-{i}", ENFORCED, REQUESTER, label)
        for i in range(MAX_PENDING_REQUESTS - pending)
    ]
    try:
        made = create(gate, json.dumps({"apiVersion": "v1", "kind": "List", "items": flood}))
        assert made.returncode == 0, made.stderr[-2000:]
        extra = json.dumps(_request_manifest(f"{label}-extra", ENFORCED, REQUESTER, label))

        def refused() -> subprocess.CompletedProcess[str] | None:
            done = create(gate, extra)  # admitted until the view has seen the whole flood
            if done.returncode == 0:
                gate.kubectl("admin", "delete", "approvalrequest", f"{label}-extra", "-n", ENFORCED)
                return None
            return done

        done = eventually("the pending bound", refused)
        assert 'webhook "gates.approvalgate.proompteng.ai" denied' in done.stderr, done.stderr
        assert (
            f"{REQUESTER!r} already has {MAX_PENDING_REQUESTS} pending ApprovalRequests in "
            f"namespace {ENFORCED}" in done.stderr
        ), done.stderr
        assert f"approvalgate cancel {ENFORCED}/NAME" in done.stderr
        colleague = _request_manifest(f"{label}-other", ENFORCED, "admin", label)
        made = create(gate, json.dumps(colleague), user="admin")
        assert made.returncode == 0, made.stderr
        cancel = gate.kubectl(
            REQUESTER, "patch", "approvalrequest", flood[0]["metadata"]["name"], "-n", ENFORCED,
            "--type=merge", "-p", '{"spec": {"cancelled": true}}',
        )  # fmt: skip
        assert cancel.returncode == 0, cancel.stderr
    finally:
        gate.kubectl(
            "admin", "delete", "approvalrequests", "-l", f"e2e-flood={label}", "-n", ENFORCED
        )
