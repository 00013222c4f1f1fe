"""The ledger of derived runs, pure: a run a Schedule or an OrchestrationRun created.

Those runs never carry the approval-use finalizer (the platform's controllers do not add
it), yet their use is what ``parents.maxRuns`` counts and what keeps the content their
parent's approval bound unchanged: :func:`controller.ledger.plan_run` records it once,
where the bundle requires the cluster view, in the namespaces the bundle enforces.

The bundle is the decision corpus's ``_base`` compiled for real; nothing is mocked.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import json
from datetime import timedelta
from typing import Any

import pytest

from approvalgate.approvals import content, parents, records, view
from approvalgate.approvals.bundle import parse_bundle_text
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.policy import BundleSettings
from approvalgate.controller import ledger
from approvalgate.controller.caches import CORE, PARENT_KINDS, PARENTS, Caches
from approvalgate.kube.errors import KubeError
from approvalgate.kube.resources import SCHEDULES
from tests.support.corpus import BASE, compile_case_bundle, signer

ENV = "prod"
NOW = records.parse_time("2026-11-21T12:00:00Z")
BUNDLE = parse_bundle_text(compile_case_bundle(BASE, BundleSettings(environment=ENV)))
BUNDLE_OFF = parse_bundle_text(
    compile_case_bundle(BASE, BundleSettings(environment=ENV, cluster_view="off"))
)
RUN: dict[str, Any] = dict(load_manifests((BASE / "run.yaml").read_text())[0].obj)
NS = RUN["metadata"]["namespace"]
EXCLUDING = parse_bundle_text(
    compile_case_bundle(BASE, BundleSettings(environment=ENV, exclude_namespaces=(NS,)))
)
SCHEDULE = "schedules.proompteng.ai/schedule"
ORCHESTRATION_RUN = "agents.proompteng.ai/orchestration-run"


def derived(label: str = SCHEDULE, value: str = "nightly", **meta: Any) -> dict[str, Any]:
    """A run as a parent's controller creates it: a generated name, the parent's label, no
    finalizer, no records; created an hour ago (its parent, absent here, would be in sight
    by now)."""
    run = copy.deepcopy(RUN)
    run["metadata"] = {
        "name": f"{value}-x7k2p",
        "generateName": f"{value}-",
        "namespace": NS,
        "uid": f"uid-{value}-1",
        "creationTimestamp": records.format_time(NOW - timedelta(hours=1)),
        "labels": {label: value, "agents.proompteng.ai/delivery-id": "d-1"},
        **meta,
    }
    return run


def recorded(run: dict[str, Any]) -> view.Use:
    obj = ledger.use_object(run, BUNDLE, NOW)
    obj["metadata"]["creationTimestamp"] = records.format_time(NOW)
    use = view.Use.of(obj)
    assert use is not None
    return use


@pytest.mark.parametrize("label", [SCHEDULE, ORCHESTRATION_RUN])
def test_a_derived_run_without_the_finalizer_gets_its_use_named_by_its_uid(label: str) -> None:
    run = derived(label)
    assert ledger.is_derived(run) and not ledger.holds_finalizer(run)
    plan = ledger.plan_run(run, BUNDLE, None, NOW)
    assert plan.remove_finalizer is None and plan.requeue_after is None
    use = plan.create_use
    assert use is not None
    meta = run["metadata"]
    assert use["metadata"]["name"] == meta["uid"]
    assert use["metadata"]["namespace"] == NS
    assert use["spec"]["run"] == {"name": meta["name"], "uid": meta["uid"]}
    assert use["spec"]["environment"] == ENV
    assert use["spec"]["specDigest"] == BUNDLE.spec_digest(run["spec"])
    assert isinstance(use["spec"]["statements"], list)
    assert isinstance(use["spec"]["references"], dict)
    assert records.parse_time(use["spec"]["expiresAt"]) >= NOW


def test_a_young_run_whose_parents_approvals_are_not_in_sight_waits_for_the_settle_time() -> None:
    """The runs' watch may be ahead of the parents' (an OrchestrationRun's steps are created
    the moment it is): a use is written once, so a young run without its parent's approvals
    in view is looked at again, and recorded empty only once it is older than
    useSettleSeconds (or the view's bound, if longer); until then it is looked at every
    couple of seconds."""
    young = derived(creationTimestamp=records.format_time(NOW - timedelta(seconds=5)))
    plan = ledger.plan_run(young, BUNDLE, None, NOW)
    assert plan.create_use is None
    assert plan.requeue_after == ledger.DERIVED_POLL_SECONDS
    last = NOW + timedelta(seconds=BUNDLE.use_settle_seconds - 6)
    assert ledger.plan_run(young, BUNDLE, None, last).requeue_after == pytest.approx(1.2)
    later = NOW + timedelta(seconds=BUNDLE.use_settle_seconds)
    slow = dataclasses.replace(view.StaticView.build(), max_age=90.0)
    assert ledger.plan_run(young, BUNDLE, None, later, slow).create_use is None
    settled = ledger.plan_run(young, BUNDLE, None, later)
    assert settled.create_use is not None and settled.create_use["spec"]["statements"] == []
    # with its parent's approvals in sight, a young run is recorded at once
    _, run, cluster, _ = approved_schedule()
    run["metadata"]["creationTimestamp"] = records.format_time(NOW)
    recorded_now = ledger.plan_run(run, BUNDLE, None, NOW, cluster)
    assert recorded_now.create_use is not None and recorded_now.create_use["spec"]["statements"]


def test_a_derived_run_is_recorded_once_and_even_while_it_is_deleted() -> None:
    """Nothing waits on it (no finalizer): once recorded there is nothing to do; a run
    already being deleted used its parent's approval all the same."""
    run = derived()
    assert ledger.plan_run(run, BUNDLE, recorded(run), NOW) == ledger.RunPlan()
    deleting = derived(deletionTimestamp=records.format_time(NOW))
    plan = ledger.plan_run(deleting, BUNDLE, None, NOW)
    assert plan.create_use is not None and plan.remove_finalizer is None


def test_no_derived_use_without_the_view_outside_enforced_namespaces_or_without_a_label() -> None:
    run = derived()
    assert ledger.plan_run(run, BUNDLE_OFF, None, NOW) == ledger.RunPlan()
    assert not ledger.records_derived_use(run, EXCLUDING)
    assert ledger.plan_run(run, EXCLUDING, None, NOW) == ledger.RunPlan()
    for labels in ({}, {SCHEDULE: ""}, {"team": "lab"}):
        plain = derived()
        plain["metadata"]["labels"] = labels
        assert not ledger.is_derived(plain)
        assert ledger.plan_run(plain, BUNDLE, None, NOW) == ledger.RunPlan()
    nameless = derived()
    del nameless["metadata"]["uid"]
    assert ledger.plan_run(nameless, BUNDLE, None, NOW) == ledger.RunPlan()


def test_a_derived_run_holding_the_finalizer_follows_the_finalizer_path() -> None:
    """Whoever added the finalizer: it is released like any other, once the use settled."""
    run = derived(finalizers=[view.USE_FINALIZER], deletionTimestamp=records.format_time(NOW))
    assert ledger.plan_run(run, BUNDLE, None, NOW).create_use is not None
    young = ledger.plan_run(run, BUNDLE, recorded(run), NOW)
    assert young.remove_finalizer is None and young.requeue_after is not None
    use = recorded(run)
    settled = view.Use(**{**use.__dict__, "created": NOW - timedelta(minutes=5)})
    assert ledger.plan_run(run, BUNDLE, settled, NOW).remove_finalizer is not None


def test_the_use_reads_back_with_its_references_and_is_collected_once_expired_and_gone() -> None:
    run = derived()
    obj = ledger.use_object(run, BUNDLE, NOW)
    obj["spec"]["references"] = {"ImplementationSpec/codex-impl-sample": "ab" * 32}
    use = view.Use.of(obj)
    assert use is not None
    assert dict(use.references) == {"ImplementationSpec/codex-impl-sample": "ab" * 32}
    legacy = copy.deepcopy(obj)
    del legacy["spec"]["references"]  # recorded before references were bound
    old = view.Use.of(legacy)
    assert old is not None and dict(old.references) == {}
    later = NOW + timedelta(days=400)
    assert not ledger.use_expired(obj, later, frozenset({run["metadata"]["uid"]}))
    assert ledger.use_expired(obj, later, frozenset())


# --- the caches: parents never hold the queue up -------------------------------------------


def test_the_parents_watches_hold_up_derived_uses_only() -> None:
    """A cluster without the Schedule CRD (or without the RBAC to read it) still has its
    requests reconciled and is ready; only the uses of derived runs wait, and say why."""
    client: Any = object()  # nothing is started: no request is ever made
    caches = Caches(client, max_age=90.0)
    for informer in caches._of(CORE):
        informer._synced.set()
        informer._contact()
    assert caches.synced and caches.problem() == ""
    assert "has not listed yet" in caches.derivation_problem()
    schedules = caches.informers[SCHEDULES][None]
    schedules.list_error = KubeError("schedules.schedules.proompteng.ai is forbidden", status=403)
    assert caches.derivation_problem() == (
        "the watch of schedules.schedules.proompteng.ai in all namespaces cannot list: "
        "schedules.schedules.proompteng.ai is forbidden"
    )
    before = caches.view()
    assert before.object("Schedule", NS, "nightly") is None
    # the first list is in the store and the informer synced before its handlers run: a
    # view taken in between must not be the one built before the list
    schedules.store.replace(
        [{"kind": "Schedule", "metadata": {"name": "nightly", "namespace": NS}, "spec": {}}]
    )
    for informer in caches._of(PARENTS):
        informer._synced.set()
        informer._contact()
    assert caches.derivation_problem() == "" and caches.problem() == ""
    assert caches.view().object("Schedule", NS, "nightly") is not None


def test_the_controller_watches_every_kind_a_derivation_reads_and_names_them() -> None:
    assert set(PARENT_KINDS) == set(PARENTS)
    assert set(PARENT_KINDS.values()) == set(view.VIEWED_KINDS)


# --- what the use of a derived run records (the core's derivation, for real) ---------------


def approved_schedule(
    *, decided: tuple[str, ...] = ("alice", "bob"), bind: bool = True
) -> tuple[dict[str, Any], dict[str, Any], view.StaticView, list[dict[str, Any]]]:
    """A Schedule ``nightly`` whose target is the corpus run, approved by ``decided`` (their
    records on it, binding its content when ``bind``), with the Agent and ImplementationSpec
    in the view; and the run the platform made from it (delivery id filled in)."""
    target = copy.deepcopy(RUN)
    schedule: dict[str, Any] = {
        "apiVersion": "schedules.proompteng.ai/v1alpha1",
        "kind": "Schedule",
        "metadata": {
            "name": "nightly",
            "namespace": NS,
            "annotations": {
                parents.TEMPLATE_ANNOTATION: json.dumps(parents.schedule_template(target["spec"]))
            },
        },
        "spec": {
            "cron": "0 3 * * *",
            "targetRef": {"kind": "AgentRun", "name": "codex-run-sample"},
        },
    }
    agent = {
        "kind": "Agent",
        "metadata": {"name": "codex-agent", "namespace": NS},
        "spec": {"x": 1},
    }
    impl = {
        "kind": "ImplementationSpec",
        "metadata": {"name": "codex-impl-sample", "namespace": NS},
        "spec": {"text": "do it"},
    }
    bare = view.StaticView.build(objects=[schedule, agent, impl])
    covered = parents.coverage(schedule, bare)
    assert isinstance(covered, parents.Coverage), covered
    binding = content.binding(covered.references, NS, bare) if bind else {}
    envelopes = [
        records.sign(
            records.Claim(
                subject=covered.subject,
                digest=covered.digest,
                decision="approve",
                approver=name,
                reason="",
                issued_at=NOW - timedelta(hours=1),
                expires_at=NOW + timedelta(hours=hours),
                nonce=f"nonce-{name}",
                environment=ENV,
                references=binding,
            ),
            signer(name),
        )
        for hours, name in enumerate(decided, start=2)
    ]
    schedule["metadata"]["annotations"][records.ANNOTATION] = records.dump_annotation(envelopes)
    cluster = view.StaticView.build(objects=[schedule, agent, impl])
    manifest = parents.schedule_run_manifest(schedule, target)
    run = json.loads(json.dumps(manifest).replace(parents.DELIVERY_PLACEHOLDER, "delivery-1"))
    run["metadata"].update(name="nightly-x7k2p", uid="uid-nightly-1")
    return schedule, run, cluster, envelopes


def statement(envelope: dict[str, Any]) -> str:
    return hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()


def test_the_use_of_a_schedules_run_lists_the_schedules_approvals_and_the_content_they_bound() -> (
    None
):
    _, run, cluster, envelopes = approved_schedule()
    plan = ledger.plan_run(run, BUNDLE, None, NOW, cluster)
    assert plan.create_use is not None
    spec = plan.create_use["spec"]
    assert spec["statements"] == sorted(statement(e) for e in envelopes)
    assert spec["references"] == {
        "Agent/codex-agent": content.digest({"spec": {"x": 1}}),
        "ImplementationSpec/codex-impl-sample": content.digest({"spec": {"text": "do it"}}),
    }
    # it lasts as long as the latest of those approvals (bob's: 3 h)
    assert spec["expiresAt"] == records.format_time(NOW + timedelta(hours=3))
    # and read back, the view counts it as a use of each and as binding that content
    obj = {**plan.create_use, "metadata": {**plan.create_use["metadata"], "creationTimestamp": "x"}}
    after = view.StaticView.build(uses=[obj])
    assert all(after.uses_of(statement(e)) for e in envelopes)
    assert after.content_uses(NS, "ImplementationSpec/codex-impl-sample")


def test_a_run_whose_parent_is_missing_or_changed_records_no_statement() -> None:
    """The use is still recorded (the controller cannot tell who made the run), listing
    nothing: it counts nothing and binds nothing."""
    _, run, cluster, _ = approved_schedule()
    empty = ledger.plan_run(run, BUNDLE, None, NOW, view.StaticView.build())
    assert empty.create_use is not None
    assert empty.create_use["spec"]["statements"] == []
    assert empty.create_use["spec"]["references"] == {}
    changed = copy.deepcopy(run)
    changed["spec"]["parameters"]["task"] = "something else"
    other = ledger.plan_run(changed, BUNDLE, None, NOW, cluster)
    assert other.create_use is not None and other.create_use["spec"]["statements"] == []


def test_records_that_bind_nothing_record_no_references() -> None:
    _, run, cluster, envelopes = approved_schedule(bind=False)
    plan = ledger.plan_run(run, BUNDLE, None, NOW, cluster)
    assert plan.create_use is not None
    assert plan.create_use["spec"]["statements"] == sorted(statement(e) for e in envelopes)
    assert plan.create_use["spec"]["references"] == {}


# --- the finalizer path records references too ---------------------------------------------


def test_the_use_of_a_run_judged_by_its_records_lists_the_content_they_bound() -> None:
    """A person's run, approved by two records that bind its Agent and ImplementationSpec:
    its use (finalizer path) records them, each bound object once."""
    run = copy.deepcopy(RUN)
    run["metadata"].update(
        uid="uid-person-1",
        finalizers=[view.USE_FINALIZER],
        creationTimestamp=records.format_time(NOW),
    )
    binding = {
        "Agent/codex-agent": "ab" * 32,
        "ImplementationSpec/codex-impl-sample": "cd" * 32,
    }
    envelopes = [
        records.sign(
            records.Claim(
                subject=records.subject_name(NS, run["metadata"]["name"]),
                digest=BUNDLE.spec_digest(run["spec"]),
                decision="approve",
                approver=name,
                reason="",
                issued_at=NOW - timedelta(hours=1),
                expires_at=NOW + timedelta(hours=2),
                nonce=f"nonce-{name}",
                environment=ENV,
                references=references,
            ),
            signer(name),
        )
        for name, references in (("alice", binding), ("bob", {"Agent/codex-agent": "ab" * 32}))
    ]
    run["metadata"]["annotations"] = {records.ANNOTATION: records.dump_annotation(envelopes)}
    plan = ledger.plan_run(run, BUNDLE, None, NOW)
    assert plan.create_use is not None
    assert plan.create_use["spec"]["statements"] == sorted(statement(e) for e in envelopes)
    assert plan.create_use["spec"]["references"] == binding
