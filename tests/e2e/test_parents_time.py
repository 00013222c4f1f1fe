"""A parent's veto and withdrawal waited out, on the real kube-apiserver (class 21).

A parent's approvals live up to its policy's ``parents.maxTTL`` (default 720h), a run's up
to ``timeoutSeconds`` or a bypass ``maxTTL``. An expired reject, and a withdrawal, take away
what was issued before them for as long as that can live (``decide.longest_lifetime``): for a
parent's records that must count ``parents.maxTTL``, else a requester waits the run's
lifetime past a reject of a Schedule and its runs are admitted on the approvals vetoed, and
the withdrawal of a Schedule's approval is deleted (by anyone RBAC lets, or by the
controller's collection) while the approval it took back lives, which then counts again.

The module serves a bundle whose policies' ``timeoutSeconds`` and bypass ``maxTTL`` are the
schema's minimum (60 s), ``parents.maxTTL`` the example's (a week, 720h): the run's lifetime
is waited out in about a minute, the parent's approvals live an hour. The webhook (its
watch-fed view), the controller (its collection every second) and the chart's RBAC are the
real ones; the Schedule's runs are created as the platform's schedule runner creates them
(tests/e2e/platform.py).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from approvalgate.approvals import content, parents, records
from approvalgate.approvals.bundle import parse_bundle_text
from approvalgate.approvals.decide import longest_lifetime
from approvalgate.approvals.view import API_VERSION
from tests.e2e.controlplane import ControlPlane
from tests.e2e.gate import Gate, eventually
from tests.e2e.platform import SCHEDULE, Account, Answer, Platform
from tests.e2e.test_parents import (
    NS,
    PERSON,
    World,
    _with_parents,
    admitted,
    chain,
    denied,
    send,
)

from .queue_support import DECISIONS, get, queue_gate

pytestmark = pytest.mark.e2e

SHORTEST = 60  # seconds: the schema's minimum timeoutSeconds, and every bypass maxTTL here
PARENT_TTL = timedelta(hours=1)  # the Schedule's approvals (within parents.maxTTL)
MARGIN = timedelta(seconds=3)
PEOPLE_ROLE = "approvalgate-e2e:parents-time-people"


def _short_lived(repo: Path) -> None:
    """test_parents' bundle (the platform's creators, content bound), every policy's
    timeoutSeconds and bypass maxTTL at the minimum, parents.maxTTL as they are (a week
    and 720h)."""
    _with_parents(repo)
    for path in sorted((repo / "policies").glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        spec = document["spec"]
        spec["timeoutSeconds"] = SHORTEST
        if "bypass" in spec:
            spec["bypass"]["maxTTL"] = f"{SHORTEST}s"
        path.write_text(yaml.safe_dump(document, sort_keys=False))


@pytest.fixture(scope="module")
def gate(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    for module_gate in queue_gate(control_plane, tmp_path_factory.mktemp("parents-time")):
        control_plane.grant(  # the requester writes the parents and the content here
            PEOPLE_ROLE,
            subjects=[PERSON],
            rules=[
                {
                    "apiGroups": ["agents.proompteng.ai"],
                    "resources": ["agents", "agentproviders", "implementationspecs"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                },
                {
                    "apiGroups": ["schedules.proompteng.ai"],
                    "resources": ["schedules"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                },
            ],
            namespace=NS,
        )
        bundle = module_gate.compile_changed("parents-time", _short_lived)
        # the chart's controller collects every 300 s: here every second, so that a
        # decision collectible once the run's lifetime passed is collected within seconds
        module_gate.stop_controllers()
        module_gate.start_controller("", "--gc-interval", "1")
        try:
            with module_gate.serving(bundle):
                yield module_gate
        finally:
            control_plane.kubectl(
                "admin", "delete", "role,rolebinding", PEOPLE_ROLE, "-n", NS, check=False
            )


@pytest.fixture(scope="module")
def run_lifetime(gate: Gate) -> timedelta:
    """What a reject or withdrawal of a Schedule counted for before the fix: the longest
    lifetime of a run's approval in the served bundle (a minute)."""
    bundle = parse_bundle_text(gate.bundle.read_text())
    lifetime = longest_lifetime(bundle, records.subject_name(NS, "any-run"))
    assert lifetime == timedelta(seconds=SHORTEST), lifetime
    return lifetime


@pytest.fixture(scope="module")
def platform(gate: Gate) -> Iterator[Platform]:
    made = Platform(gate.plane, NS)
    try:
        yield made
    finally:
        made.revoke()


@pytest.fixture
def world(gate: Gate, platform: Platform) -> World:
    person = Account(gate.plane, PERSON, gate.plane.tokens[PERSON])
    return World(gate, platform, person, f"t{secrets.token_hex(3)}")


def _schedule_approved_by(world: World, *approvers: str) -> str:
    """A Schedule of an approved run, approved by ``approvers`` for an hour, created and
    reconciled, one run fired from it (admitted); its name."""
    agent, impl = world.agent(), world.implementation()
    # the target run's own approval lives within the minute timeoutSeconds allows
    target = world.target_run("target", world.run_spec(agent, impl), ttl=timedelta(seconds=50))
    schedule = world.schedule("nightly", target)
    view = world.view()
    coverage = parents.coverage(schedule, view)
    assert isinstance(coverage, parents.Coverage), coverage
    bound = content.binding(coverage.references, NS, view)
    envelopes = [
        world.sign(coverage.subject, coverage.digest, bound, approver=a, ttl=PARENT_TTL)
        for a in approvers
    ]
    schedule["metadata"]["annotations"][records.ANNOTATION] = records.dump_annotation(envelopes)
    admitted(send(world.person.create, schedule))
    name: str = schedule["metadata"]["name"]
    world.platform.reconcile_schedule(name)
    admitted(send(world.platform.fire, name))
    return name


def _file(
    world: World, approver: str, request: str, decision: records.Decision, ttl: timedelta
) -> dict[str, Any]:
    """``approver``'s signed ``decision`` filed as an ApprovalDecision by ``approver``: the
    stored object. ``request`` names a Schedule (a withdrawal or reject of it) or, for an
    approval, a run."""
    subject = (
        records.subject_name(NS, request)
        if decision == "approve"
        else parents.subject("Schedule", NS, request)
    )
    digest = "0" * 64
    if decision != "approve":
        schedule = world.admin.get(SCHEDULE, NS, request)
        assert schedule is not None
        coverage = parents.coverage(schedule, world.view())
        assert isinstance(coverage, parents.Coverage), coverage
        digest = coverage.digest
    record = world.sign(subject, digest, {}, approver=approver, ttl=ttl, decision=decision)
    account = Account(world.gate.plane, approver, world.gate.plane.tokens[approver])
    filed = account.call(
        "POST",
        f"/apis/{API_VERSION}/namespaces/{NS}/approvaldecisions",
        {
            "apiVersion": API_VERSION,
            "kind": "ApprovalDecision",
            "metadata": {"generateName": f"{request}-{decision}-", "namespace": NS},
            "spec": {
                "requestName": request,
                "decision": decision,
                "approver": approver,
                "record": record,
            },
        },
    )
    return admitted(filed)


def _said(filed: dict[str, Any]) -> datetime:
    """When a filed withdrawal or reject was said: the later of its issue and its filing
    (decide.said_at), and for a reject the later of that and its expiry."""
    statement = records.parse_envelopes([filed["spec"]["record"]])[0][0].claim
    moment = max(statement.issued_at, records.parse_time(filed["metadata"]["creationTimestamp"]))
    if statement.decision == "reject":
        moment = max(moment, statement.expires_at)
    return moment


def _wait_out(world: World, instant: datetime) -> None:
    """Sleep until ``instant`` plus a margin (a TTL: nothing to wait for but the clock),
    then until the controller's collection has run since: a canary (alice's approval of a
    run nobody requests, expiring then) is collected by it."""
    until = instant + MARGIN
    canary = _file(world, "alice", world.name("canary"), "approve", until - datetime.now(UTC))
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()))
    eventually(
        "the controller's collection ran since (the canary expired then is collected)",
        lambda: get(world.gate, DECISIONS, canary["metadata"]["name"]) is None,
    )


def _kept(world: World, filed: dict[str, Any], words: str) -> None:
    """``filed`` was not collected, and a cluster admin's DELETE of it is denied."""
    name = filed["metadata"]["name"]
    assert get(world.gate, DECISIONS, name) is not None, f"{name} was collected"
    answer: Answer = world.admin.call(
        "DELETE", f"/apis/{API_VERSION}/namespaces/{NS}/approvaldecisions/{name}"
    )
    denied(answer, f"approvalgate denied deleting ApprovalDecision {NS}/{name}", words)


def test_an_expired_reject_of_a_schedule_vetoes_its_runs_while_its_approvals_live(
    world: World, run_lifetime: timedelta
) -> None:
    """alice and dana approved the Schedule for an hour; dana rejects it for ten seconds.
    A run's lifetime (a minute) after her reject expired, the schedule runner's next run
    was admitted on the approvals she vetoed, and the controller collected her reject.
    Both approvals still live: the reject still vetoes, and is kept."""
    name = _schedule_approved_by(world, "alice", "dana")
    reject = _file(world, "dana", name, "reject", timedelta(seconds=15))
    vetoed = (chain(f"Schedule {NS}/{name}"), "rejected by dana")
    denied(send(world.platform.fire, name), *vetoed)
    _wait_out(world, _said(reject) + run_lifetime)
    denied(world.platform.fire(name), *vetoed)
    _kept(world, reject, "counts until")


def test_a_withdrawal_of_a_schedules_approval_is_kept_while_the_approval_lives(
    world: World, run_lifetime: timedelta
) -> None:
    """dana approved the Schedule for an hour, then withdrew her approval. A run's
    lifetime after the withdrawal, the controller collected it (and a cluster admin could
    delete it): her approval counted again and the Schedule's runs were admitted. The
    withdrawal is kept while her approval lives."""
    name = _schedule_approved_by(world, "dana")
    withdrawal = _file(world, "dana", name, "withdraw", timedelta(seconds=15))
    withdrawn = (chain(f"Schedule {NS}/{name}"), "withdr")
    denied(send(world.platform.fire, name), *withdrawn)
    _wait_out(world, _said(withdrawal) + run_lifetime)
    _kept(world, withdrawal, "counts until")
    denied(world.platform.fire(name), *withdrawn)
