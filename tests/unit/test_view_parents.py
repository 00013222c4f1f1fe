"""What the cluster view keeps of the platform's parents, and what a parent can make the gate
spend (docs/design.md, "Known limits", fifth red-team pass: the view's parents).

The webhook's view holds every Schedule, OrchestrationRun, Orchestration and Swarm of every
namespace in each worker process, and whoever may create those kinds (the platform's roles,
``edit``) chooses their size; with ``failurePolicy: Fail`` a worker out of memory denies
every run in the cluster. The view now keeps a bounded summary of each
(:func:`approvals.parents.summary`), computed when the watch event arrives, from which
decide() gives every verdict it gave from the whole object; past a bound, what depends on
the parent is denied naming the bound.

Each test asserts the bound and the outcome, never a duration.
"""

from __future__ import annotations

import copy
import json
import tracemalloc
from collections.abc import Mapping
from typing import Any

import pytest

from approvalgate.approvals import parents, records
from approvalgate.approvals.digest import MAX_SPEC_BYTES
from approvalgate.approvals.view import StaticView
from approvalgate.controller import caches
from approvalgate.kube.store import Change
from approvalgate.kube.view import (
    ORCHESTRATION,
    ORCHESTRATION_RUN,
    SCHEDULE,
    SWARM,
    TRANSFORMS,
    ViewIndex,
)
from tests.unit.test_parents_decide import (
    BASE_OBJECTS,
    CONTROLLER,
    NS,
    ORUN,
    _approve,
    _approved_schedule,
    _schedule_run,
    _step_run,
    _swarm,
    _view,
    judge,
    review,
    summarised,
)

SUMMARY_BYTES = 4096
"""What a parent's summary costs besides its approval records and run templates: its
identity, its author and its targets (the test's statement of the bound)."""


def _held(kind: str, obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """What the webhook's view holds of ``obj`` once its watch event arrived."""
    index = ViewIndex()
    index.object_changed(kind)(
        Change("ADDED", f"{NS}/x", TRANSFORMS[kind](copy.deepcopy(dict(obj))))
    )
    meta = obj["metadata"]
    held = index.object(kind, meta["namespace"], meta["name"])
    assert held is not None
    return held


def _size_less_records(held: Mapping[str, Any]) -> int:
    """JSON bytes of a summary, less its approval records and its run templates (bounded on
    their own: records.MAX_ANNOTATION_BYTES, parents.MAX_TEMPLATES_BYTES)."""
    meta = dict(held["metadata"])
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k != records.ANNOTATION
    }
    meta["annotations"] = annotations
    shown = {k: v for k, v in held.items() if k not in ("metadata", parents.HELD_COVERAGE)}
    return len(json.dumps({**shown, "metadata": meta}, default=str))


def _bloated(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` grown to about 1 MiB where decide() reads nothing: labels, annotations,
    managed fields and a status the platform writes (a Schedule's or Swarm's spec too)."""
    grown = copy.deepcopy(dict(obj))
    meta = grown["metadata"]
    meta.setdefault("labels", {}).update({f"example.com/l{i}": "v" * 60 for i in range(2000)})
    meta.setdefault("annotations", {})["example.com/notes"] = "n" * 250_000
    meta["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:x": "y" * 100_000}}]
    grown["status"] = {"conditions": [{"message": "m" * 1000} for _ in range(500)]}
    return grown


def _json_size(obj: object) -> int:
    return len(json.dumps(obj))


# --- the summary: bounded, and what decide() reads ---------------------------------------


def test_the_view_keeps_a_schedule_of_a_mebibyte_as_a_summary_of_a_few_kib() -> None:
    schedule, _, whole_view = _approved_schedule()
    grown = _bloated(schedule)
    grown["spec"]["description"] = "d" * 200_000  # the CRD keeps unknown fields
    assert _json_size(grown) > 1_000_000
    held = _held(SCHEDULE, grown)
    assert _size_less_records(held) < SUMMARY_BYTES
    covered = held[parents.HELD_COVERAGE]
    assert covered == parents.coverage(grown, None)  # computed once, at the watch event
    assert parents.coverage(held, whole_view, stored=True) is covered  # no work on admission


@pytest.mark.parametrize("kind", [SWARM, ORCHESTRATION_RUN, ORCHESTRATION])
def test_the_view_keeps_the_other_parents_without_what_decide_never_reads(kind: str) -> None:
    obj = {
        SWARM: _swarm(),
        ORCHESTRATION_RUN: copy.deepcopy(ORUN),
        ORCHESTRATION: next(o for o in BASE_OBJECTS if o["kind"] == "Orchestration"),
    }[kind]
    grown = _bloated(obj)
    assert _json_size(grown) > 1_000_000
    held = _held(kind, grown)
    assert _size_less_records(held) < SUMMARY_BYTES
    assert "status" not in held and "managedFields" not in held["metadata"]


def test_the_controller_keeps_the_same_summaries() -> None:
    """Its watches of the parents hold what the webhook's view holds (caches.TRANSFORMS)."""
    for resource, kind in caches.PARENT_KINDS.items():
        assert caches.TRANSFORMS[resource] is TRANSFORMS[kind]


# --- past a bound: fail closed, the bound named ------------------------------------------


def test_a_run_template_over_the_bound_fails_closed_naming_it() -> None:
    """A template past what a run may be (MAX_SPEC_BYTES): no run could ever match it, and
    holding it would cost every worker its size."""
    schedule, _, _ = _approved_schedule()
    template = json.loads(schedule["metadata"]["annotations"][parents.TEMPLATE_ANNOTATION])
    template["parameters"] = {"prompt": "p" * (MAX_SPEC_BYTES + 1)}
    schedule["metadata"]["annotations"][parents.TEMPLATE_ANNOTATION] = json.dumps(template)
    covered = parents.coverage(schedule, None)
    assert isinstance(covered, str)
    assert f"larger than {parents.MAX_TEMPLATES_BYTES} bytes" in covered
    held = _held(SCHEDULE, schedule)
    assert len(json.dumps(held, default=str)) < 2 * SUMMARY_BYTES
    view = summarised(_view(*BASE_OBJECTS, schedule))
    decision = judge(review("CREATE", _schedule_run(schedule), user=CONTROLLER), view)
    assert not decision.allowed
    assert f"larger than {parents.MAX_TEMPLATES_BYTES} bytes" in decision.message


def test_an_orchestration_run_cannot_multiply_its_parameters_by_the_steps() -> None:
    """Every AgentRun step's template carries the OrchestrationRun's parameters: 10,000 of
    them (100 KiB) and 400 steps made 80 MiB and 0.8 s of work in one coverage, on the
    admission of the OrchestrationRun and on each of its runs, and the memo kept it."""
    steps = [
        {
            "name": f"s{i}",
            "kind": "AgentRun",
            "agentRef": {"name": "a"},
            "implementationSpecRef": "i",
        }
        for i in range(400)
    ]
    orchestration = {
        "apiVersion": "orchestration.proompteng.ai/v1alpha1",
        "kind": "Orchestration",
        "metadata": {"name": "wide", "namespace": NS, "uid": "uid-wide", "resourceVersion": "1"},
        "spec": {"steps": steps},
    }
    orun = {
        "apiVersion": "orchestration.proompteng.ai/v1alpha1",
        "kind": "OrchestrationRun",
        "metadata": {"name": "wide-1", "namespace": NS, "uid": "uid-w1", "resourceVersion": "2"},
        "spec": {
            "orchestrationRef": {"name": "wide"},
            "parameters": {f"k{i}": "v" for i in range(10_000)},
        },
    }
    view = StaticView.build(objects=[orchestration])
    tracemalloc.start()
    try:
        covered = parents.coverage(orun, view)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(covered, str), "the templates were built whole"
    assert f"larger than {parents.MAX_TEMPLATES_BYTES} bytes" in covered
    assert peak < 8 * 1024 * 1024, peak
    decision = judge(review("CREATE", orun), view)
    assert not decision.allowed
    assert decision.reason == "parent-not-covered"
    assert f"larger than {parents.MAX_TEMPLATES_BYTES} bytes" in decision.message


def test_a_parent_past_what_the_view_holds_is_a_stub_that_denies_its_runs() -> None:
    """An OrchestrationRun whose spec is past MAX_HELD_BYTES (a field no step run carries,
    which its coverage digests): admitted from the whole object; the view keeps its identity
    and why, and its step runs are denied naming the bound."""
    orun = copy.deepcopy(ORUN)
    orun["spec"]["notes"] = "n" * (parents.MAX_HELD_BYTES + 1)
    _approve(orun, _view(*BASE_OBJECTS))
    held = _held(ORCHESTRATION_RUN, orun)
    assert len(json.dumps(held, default=str)) < SUMMARY_BYTES
    assert f"larger than {parents.MAX_HELD_BYTES}" in held[parents.HELD_PROBLEM]
    create = review("CREATE", _step_run(orun), user=CONTROLLER)
    assert judge(create, _view(*BASE_OBJECTS, orun), compare=False).allowed
    decision = judge(create, summarised(_view(*BASE_OBJECTS, orun)))
    assert not decision.allowed
    assert decision.reason == "not-derived"
    assert f"larger than {parents.MAX_HELD_BYTES} bytes" in decision.message


def test_a_swarm_past_what_the_view_holds_denies_its_schedules() -> None:
    """A Swarm whose target's name alone is past MAX_HELD_BYTES (unit level: the CRD and the
    API server bound names): admitted from the whole object, denied from the summary."""
    swarm = _swarm()
    swarm["spec"]["execution"]["implement"]["targetRef"]["name"] = "t" * (
        parents.MAX_HELD_BYTES + 1
    )
    _approve(swarm, _view(*BASE_OBJECTS))
    schedule = parents.swarm_schedule(swarm, "implement")
    assert schedule is not None
    create = review("CREATE", schedule, user=CONTROLLER)
    assert judge(create, _view(*BASE_OBJECTS, swarm), compare=False).allowed
    decision = judge(create, summarised(_view(*BASE_OBJECTS, swarm)))
    assert not decision.allowed
    assert f"larger than {parents.MAX_HELD_BYTES} bytes" in decision.message


def test_the_coverage_memo_is_bounded_by_the_bytes_of_its_templates() -> None:
    parents._memo.clear()
    parents._memo_bytes[0] = 0
    orun = copy.deepcopy(ORUN)
    orun["spec"]["parameters"]["prompt"] = "p" * 100_000
    orchestration = next(o for o in BASE_OBJECTS if o["kind"] == "Orchestration")
    orchestration = {
        **orchestration,
        "metadata": {**orchestration["metadata"], "resourceVersion": "1"},
    }
    view = StaticView.build(objects=[orchestration])
    for i in range(parents.MAX_MEMO_BYTES // 100_000 + 50):
        stored = {**orun, "metadata": {**orun["metadata"], "uid": f"u{i}", "resourceVersion": "1"}}
        assert isinstance(parents.coverage(stored, view, stored=True), parents.Coverage)
    assert 0 < parents._memo_bytes[0] <= parents.MAX_MEMO_BYTES
    assert parents._memo_bytes[0] == sum(c.size for c in parents._memo.values())


def test_a_parents_coverage_is_computed_once_per_content_not_per_watch_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A label patched in a loop is a watch event each: the summary would digest the spec
    again in every worker (up to 1 MiB, ~150 ms) for each. Keyed by the API server's
    generation and the template annotation's hash, it is computed once per content."""
    schedule, _, _ = _approved_schedule()
    schedule["metadata"].update(uid="uid-patched", generation=3)
    made: list[str] = []
    compute = parents._coverage

    def counted(obj: Mapping[str, Any], view: Any) -> Any:
        made.append(str(obj["metadata"].get("labels")))
        return compute(obj, view)

    monkeypatch.setattr(parents, "_coverage", counted)
    first = None
    for i in range(5):
        patched = copy.deepcopy(schedule)
        patched["metadata"]["labels"] = {"patch": str(i)}
        patched["metadata"]["resourceVersion"] = str(100 + i)
        held = parents.summary(patched)
        first = first or held[parents.HELD_COVERAGE]
        assert held[parents.HELD_COVERAGE] == first
    assert len(made) == 1
    # another spec (a new generation) or another template annotation: computed again
    changed = copy.deepcopy(schedule)
    changed["metadata"]["generation"] = 4
    changed["spec"]["cron"] = "0 4 * * *"
    assert parents.summary(changed)[parents.HELD_COVERAGE] == compute(changed, None)
    retemplated = copy.deepcopy(schedule)
    annotations = retemplated["metadata"]["annotations"]
    annotations[parents.TEMPLATE_ANNOTATION] = annotations[parents.TEMPLATE_ANNOTATION] + " "
    assert parents.summary(retemplated)[parents.HELD_COVERAGE] == compute(retemplated, None)
    assert len(made) == 3


def test_an_orchestration_runs_coverage_is_not_computed_again_for_a_label_patch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its memo was keyed by both resourceVersions: a label patched in a loop on the
    Orchestration made each step run's admission digest both specs again (up to 1 MiB)."""
    orchestration = copy.deepcopy(next(o for o in BASE_OBJECTS if o["kind"] == "Orchestration"))
    orun = copy.deepcopy(ORUN)
    orchestration["metadata"].update(uid="uid-o-gen", generation=2)
    orun["metadata"].update(uid="uid-r-gen", generation=1, resourceVersion="9")
    made: list[int] = []
    compute = parents._coverage

    def counted(obj: Mapping[str, Any], view: Any) -> Any:
        made.append(1)
        return compute(obj, view)

    monkeypatch.setattr(parents, "_coverage", counted)
    covered = []
    for i in range(5):
        orchestration["metadata"]["labels"] = {"patch": str(i)}
        orchestration["metadata"]["resourceVersion"] = str(10 + i)
        view = summarised(StaticView.build(objects=[orchestration, orun]))
        covered.append(parents.coverage(parents.summary(orun), view, stored=True))
    assert len(made) == 1 and all(c == covered[0] for c in covered)
    orchestration["metadata"]["generation"] = 3
    orchestration["spec"]["steps"][0]["with"]["task"] = "something else"
    view = summarised(StaticView.build(objects=[orchestration, orun]))
    again = parents.coverage(parents.summary(orun), view, stored=True)
    assert len(made) == 2 and isinstance(again, parents.Coverage) and again != covered[0]


@pytest.mark.parametrize("kind", [SCHEDULE, SWARM])
def test_a_listed_parent_without_its_kind_is_summarised_as_its_kind(kind: str) -> None:
    """A list's items may omit ``kind``, which the summary is made by: the informer's
    transform is its resource's (else the Schedule was kept as no parent, its spec whole,
    and its runs denied as "not a parent kind")."""
    obj = _approved_schedule()[0] if kind == SCHEDULE else _swarm()
    listed = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
    held = TRANSFORMS[kind](copy.deepcopy(listed))
    assert held["kind"] == kind
    assert held[parents.HELD_COVERAGE] == parents.coverage(obj, None)
