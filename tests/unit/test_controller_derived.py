"""The ledger of derived runs, pure: a run a Schedule or an OrchestrationRun created.

Those runs never carry the approval-use finalizer (the platform's controllers do not add
it), yet their use is what ``parents.maxRuns`` counts and what keeps the content their
parent's approval bound unchanged: :func:`controller.ledger.plan_run` records it once,
where the bundle requires the cluster view, in the namespaces the bundle enforces.

The bundle is the decision corpus's ``_base`` compiled for real; nothing is mocked.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from approvalgate.approvals import records, view
from approvalgate.approvals.bundle import parse_bundle_text
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.policy import BundleSettings
from approvalgate.controller import ledger
from approvalgate.controller.caches import CORE, PARENTS, Caches
from approvalgate.kube.errors import KubeError
from approvalgate.kube.resources import SCHEDULES
from tests.support.corpus import BASE, compile_case_bundle

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
    finalizer, no records."""
    run = copy.deepcopy(RUN)
    run["metadata"] = {
        "name": f"{value}-x7k2p",
        "generateName": f"{value}-",
        "namespace": NS,
        "uid": f"uid-{value}-1",
        "creationTimestamp": records.format_time(NOW - timedelta(seconds=5)),
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
    for informer in caches._of(PARENTS):
        informer._synced.set()
        informer._contact()
    assert caches.derivation_problem() == "" and caches.problem() == ""
