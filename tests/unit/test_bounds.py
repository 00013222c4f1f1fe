"""Bounds on what one request can make the gate do (docs/design.md, "Known limits", fourth
red-team pass: availability). With ``failurePolicy: Fail`` a webhook made slow, or out of
memory, denies every run in the cluster, so what a requester sends must cost a bounded
amount of work and memory, and past the bound be denied with a reason naming it.

Each test asserts the bound and the outcome (denied, and why), never a duration.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes import client as k8s

from approvalgate.approvals import digest as digest_module
from approvalgate.approvals.bundle import DIGEST_CACHE_MAX_CHARS
from approvalgate.approvals.decide import decide
from approvalgate.approvals.digest import (
    MAX_CANONICAL_BYTES,
    MAX_SPEC_BYTES,
    canonical_json,
    smaller_than,
    spec_digest,
)
from approvalgate.approvals.errors import DigestError
from approvalgate.approvals.gates import ANNOTATIONS_MAX_BYTES, MAX_PENDING_REQUESTS
from approvalgate.approvals.view import TERMINAL_PHASES, USE_FINALIZER, StaticView
from approvalgate.controller import ledger, manager
from approvalgate.controller.config import ControllerConfig
from approvalgate.controller.manager import Controller
from approvalgate.kube.client import Client
from approvalgate.kube.resources import APPROVAL_REQUESTS
from approvalgate.kube.store import Change
from approvalgate.kube.view import REQUEST, TRANSFORMS, ViewIndex, request_summary
from tests.support.corpus import CORPUS, case_names, load_case
from tests.unit.test_gates import (
    BUNDLE,
    NOW,
    NS,
    RUN,
    RUN_NAME,
    approval_request,
    create_request,
    denied,
    judge,
    review,
)

AGENTRUNS = {"group": "agents.proompteng.ai", "version": "v1alpha1", "resource": "agentruns"}


def _run_review(spec: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    run = copy.deepcopy(RUN)
    run["metadata"]["namespace"] = "agents"
    run["spec"] = spec
    request = review("agentruns", operation, run)
    request["resource"] = AGENTRUNS
    request["kind"] = {**AGENTRUNS, "kind": "AgentRun"}
    return request


def _spec_of(size: int, text: str = "a") -> dict[str, Any]:
    """RUN's spec with a task parameter making the canonical JSON about ``size`` bytes."""
    spec = copy.deepcopy(RUN["spec"])
    spec["parameters"]["task"] = ""
    base = len(canonical_json(spec))
    spec["parameters"]["task"] = text * ((size - base) // len(canonical_json(text)[1:-1]))
    return spec


# --- the digest: a run's spec is at most MAX_SPEC_BYTES, and no more is looked at ---------


def test_a_spec_at_the_bound_is_digested_and_one_byte_more_is_refused_naming_it() -> None:
    at = _spec_of(MAX_SPEC_BYTES)
    assert len(canonical_json(at)) == MAX_SPEC_BYTES
    assert spec_digest(at)
    over = copy.deepcopy(at)
    over["parameters"]["task"] += "a"
    with pytest.raises(DigestError) as caught:
        spec_digest(over)
    assert caught.value.message == (
        f"spec is larger than {MAX_SPEC_BYTES} bytes as RFC 8785 canonical JSON, the most "
        "approvalgate digests for a run: keep long text in the ImplementationSpec the run "
        "references (bound by its digest), not in the run's spec"
    )


def test_escapes_count_as_written_so_a_spec_that_grows_when_escaped_is_refused() -> None:
    # each control character is written as six bytes (\\u0001): under the bound as
    # characters, over it as canonical JSON
    spec = {"parameters": {"task": "\u0001" * (MAX_SPEC_BYTES // 3)}}
    with pytest.raises(DigestError, match=f"larger than {MAX_SPEC_BYTES} bytes"):
        spec_digest(spec)


def test_other_documents_are_bounded_at_one_mebibyte() -> None:
    canonical_json({"text": "a" * (MAX_CANONICAL_BYTES - 20)})
    with pytest.raises(DigestError, match=f"larger than {MAX_CANONICAL_BYTES} bytes"):
        canonical_json({"text": "a" * MAX_CANONICAL_BYTES})


def test_the_walk_stops_at_the_bound_whatever_the_spec_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    visited = 0
    check = digest_module._check

    def counting(*args: Any) -> int:
        nonlocal visited
        visited += 1
        return check(*args)

    monkeypatch.setattr(digest_module, "_check", counting)
    monkeypatch.setattr(digest_module.rfc8785, "dumps", _never)
    huge = {"parameters": {f"k{i}": [i] for i in range(1_000_000)}}
    with pytest.raises(DigestError, match="larger than"):
        spec_digest(huge)
    assert visited < MAX_SPEC_BYTES // 4  # a key costs 3 bytes of the bound or more, a value 1


def _never(*_: object) -> bytes:
    raise AssertionError("serialised a spec already known to be over the bound")


def test_the_size_probe_looks_at_no_more_than_its_limit() -> None:
    class Counted(list[Any]):
        reads = 0

        def __iter__(self) -> Any:
            Counted.reads += 1
            return super().__iter__()

    big = Counted(range(10_000))
    assert smaller_than({"a": [1, "xy"]}, 100)
    assert not smaller_than({"a": big}, 100)
    assert Counted.reads == 0  # refused on its length, its items never walked
    assert not smaller_than({"k": "a" * 200}, 100)


def _probe_cost(value: object) -> int:
    """What :func:`smaller_than` counts, written plainly: a node 1, a string or key its
    length, a container its length, recursively."""
    if isinstance(value, str):
        return 1 + len(value)
    if isinstance(value, dict):
        keys = sum(len(k) if isinstance(k, str) else 1 for k in value)
        return 1 + len(value) + keys + sum(_probe_cost(v) for v in value.values())
    if isinstance(value, list | tuple):
        return 1 + len(value) + sum(_probe_cost(v) for v in value)
    return 1


class _Text(str):
    pass


class _Map(dict[str, Any]):
    pass


_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.text(max_size=30), st.text(max_size=10).map(_Text),
)  # fmt: skip
_trees = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=6),
        st.dictionaries(st.text(max_size=8), inner, max_size=4).map(_Map),
    ),
    max_leaves=40,
)


@given(value=_trees, limit=st.integers(min_value=0, max_value=400))
@settings(max_examples=400, deadline=None)
def test_the_size_probe_answers_as_its_plain_definition(value: object, limit: int) -> None:
    """The probe's fast path (exact types told by ``type() is``, plain leaves counted where
    they sit) gives the answer of the plain recursive count, subclasses included."""
    assert smaller_than(value, limit) == (_probe_cost(value) <= limit)


def test_a_large_spec_is_never_kept_or_repr_d_for_the_memo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # repr(spec) is the memo's key: a spec past the memo's size is digested without it
    import builtins

    calls: list[int] = []
    real = builtins.repr

    def counting(value: object) -> str:
        text = real(value)
        calls.append(len(text))
        return text

    bundle = copy.copy(BUNDLE)
    monkeypatch.setattr(builtins, "repr", counting)
    spec = _spec_of(4 * DIGEST_CACHE_MAX_CHARS)
    bundle.spec_digest(spec)
    assert not [n for n in calls if n > DIGEST_CACHE_MAX_CHARS]


# --- decide(): a run or a request past the bound is denied, naming it --------------------


def test_an_agentrun_whose_spec_is_over_the_bound_is_denied_naming_it() -> None:
    spec = _spec_of(MAX_SPEC_BYTES + 1024, "\\")
    denied(
        judge(_run_review(spec)),
        "undigestable-spec",
        f"larger than {MAX_SPEC_BYTES} bytes as RFC 8785 canonical JSON",
        "keep long text in the ImplementationSpec",
    )


def test_an_agentrun_at_the_bound_is_judged_on_its_approvals() -> None:
    decision = judge(_run_review(_spec_of(MAX_SPEC_BYTES)))
    assert (decision.allowed, decision.reason) == (False, "missing-approvals")


def test_a_request_whose_run_is_over_the_bound_is_denied_naming_it() -> None:
    obj = approval_request()
    obj["spec"]["run"]["spec"] = _spec_of(MAX_SPEC_BYTES + 1)
    denied(
        create_request(obj),
        "invalid-request",
        "spec.run.spec cannot be approved",
        f"larger than {MAX_SPEC_BYTES} bytes",
    )


# --- the webhook's view: a request costs it a few KiB, whatever its run ------------------


def _cases_with_requests() -> list[str]:
    named = [n for n in case_names() if "requests:" in (CORPUS / n / "case.yaml").read_text()]
    return [n for n in named if getattr(load_case(n).view, "requests", None)]


def test_the_view_keeps_a_request_without_its_run() -> None:
    obj = approval_request()
    obj["spec"]["run"]["spec"] = _spec_of(MAX_SPEC_BYTES)
    obj["spec"]["run"]["metadata"]["annotations"] = {f"k{i}": "v" * 4000 for i in range(60)}
    obj["status"] = {"phase": "Pending", "message": "m" * 30_000}
    obj["metadata"]["labels"] = {f"example.com/l{i}": "v" * 63 for i in range(2000)}
    obj["metadata"]["annotations"] = {"example.com/a": "a" * 200_000}
    fed = ViewIndex()
    fed.request_changed(Change("ADDED", "agents/x", TRANSFORMS[REQUEST](obj)))
    held = fed.request("agents", RUN_NAME)
    assert held is not None
    assert len(json.dumps(held)) < 4096  # the request sent was over 500 KiB
    assert "run" not in held["spec"]
    for field in ("requester", "environment", "specDigest", "cancelled", "reason"):
        assert held["spec"][field] == obj["spec"][field]  # what decide() reads
    assert held["metadata"]["uid"] == obj["metadata"]["uid"]


@pytest.mark.parametrize("name", _cases_with_requests())
def test_decide_reads_the_same_from_the_summary_as_from_the_whole_request(name: str) -> None:
    case = load_case(name)
    assert isinstance(case.view, StaticView) and case.view.requests
    summarised = dataclasses.replace(
        case.view,
        requests={k: request_summary(dict(v)) for k, v in case.view.requests.items()},
    )
    whole = decide(case.request, case.bundle, case.now, case.view)
    assert decide(case.request, case.bundle, case.now, summarised) == whole
    assert whole.allowed == case.expect["allowed"]


# --- the queue: at most MAX_PENDING_REQUESTS pending per requester and namespace ----------


def _view_with(
    pending: int, namespace: str = NS, requester: str = "requester", **terminal: int
) -> StaticView:
    requests: dict[tuple[str, str], dict[str, Any]] = {}
    for i in range(pending):
        requests[namespace, f"p{i}"] = {"spec": {"requester": requester, "cancelled": False}}
    for phase, count in terminal.items():
        for i in range(count):
            requests[namespace, f"{phase}{i}"] = {
                "spec": {"requester": requester},
                "status": {"phase": phase.capitalize()},
            }
    return StaticView(requests=requests)


def test_a_requester_at_the_pending_bound_gets_no_more_requests_others_do() -> None:
    obj = approval_request()
    full = _view_with(MAX_PENDING_REQUESTS)
    decision = decide(review("approvalrequests", "CREATE", obj), BUNDLE, NOW, full)
    denied(
        decision,
        "too-many-pending-requests",
        f"'requester' already has {MAX_PENDING_REQUESTS} pending ApprovalRequests in namespace "
        f"{NS}",
        f"({MAX_PENDING_REQUESTS})",
        f"approvalgate cancel {NS}/NAME",
    )
    # another requester of the namespace is not affected, nor the requester elsewhere
    for view in (
        _view_with(MAX_PENDING_REQUESTS, requester="mallory"),
        _view_with(MAX_PENDING_REQUESTS, namespace="elsewhere"),
    ):
        allowed = decide(review("approvalrequests", "CREATE", obj), BUNDLE, NOW, view)
        assert (allowed.allowed, allowed.reason) == (True, "request-created")
    # nor by requests the queue is done with, or cancelled ones
    done = _view_with(MAX_PENDING_REQUESTS - 1, submitted=500, expired=500, cancelled=10)
    allowed = decide(review("approvalrequests", "CREATE", obj), BUNDLE, NOW, done)
    assert (allowed.allowed, allowed.reason) == (True, "request-created")
    # cancelling one of the pending is still allowed at the bound (it frees room)
    cancel = copy.deepcopy(obj)
    cancel["spec"]["cancelled"] = True
    update = review("approvalrequests", "UPDATE", cancel, old=obj)
    assert decide(update, BUNDLE, NOW, full).reason == "request-cancelled"


def test_the_watch_fed_count_follows_every_change_in_constant_time() -> None:
    fed = ViewIndex()

    def put(kind: str, name: str, requester: str = "requester", **status: Any) -> None:
        obj: dict[str, Any] = {
            "metadata": {"namespace": NS, "name": name},
            "spec": {"requester": requester, "cancelled": status.pop("cancelled", False)},
        }
        if status:
            obj["status"] = status
        fed.request_changed(Change(kind, f"{NS}/{name}", TRANSFORMS[REQUEST](obj)))

    for i in range(5):
        put("ADDED", f"r{i}")
    put("ADDED", "m0", "mallory")
    assert (fed.pending_requests(NS, "requester"), fed.pending_requests(NS, "mallory")) == (5, 1)
    put("MODIFIED", "r0", phase="Submitted")
    put("MODIFIED", "r1", cancelled=True)
    put("MODIFIED", "r2", phase="Approved")  # still waiting on the controller
    assert fed.pending_requests(NS, "requester") == 3
    put("DELETED", "r3")
    put("DELETED", "r0")  # a done one: no change
    put("DELETED", "m0", "mallory")
    assert fed.pending_requests(NS, "requester") == 2
    assert fed.pending_requests(NS, "mallory") == 0
    assert fed.pending_requests("elsewhere", "requester") == 0
    assert len(fed._pending) == 1  # no empty counters left


def test_a_request_whose_run_has_more_annotations_than_kubernetes_allows_is_denied() -> None:
    obj = approval_request()
    obj["spec"]["run"]["metadata"]["annotations"] = {f"k{i}": "v" * 5000 for i in range(60)}
    denied(
        create_request(obj),
        "invalid-request",
        f"over the {ANNOTATIONS_MAX_BYTES} Kubernetes allows a run's",
    )
    obj["spec"]["run"]["metadata"]["annotations"] = {f"k{i}": "v" * 4000 for i in range(60)}
    assert create_request(obj).allowed


# --- the controller: work per change, and per resync, bounded by what is pending ---------


def _controller(tmp_path: Path) -> Controller:
    """A controller that is never started (no informer runs, no call is made)."""
    api = k8s.ApiClient(k8s.Configuration(host="https://127.0.0.1:1"))
    config = ControllerConfig(bundle=tmp_path / "bundle.json", identity="t", lease_namespace="x")
    return Controller(config, Client(api), bundle=lambda: BUNDLE)


def _stored_request(name: str, phase: str | None = None) -> dict[str, Any]:
    obj = approval_request()
    obj["metadata"] = {"name": name, "namespace": NS, "uid": f"uid-{name}"}
    if phase is not None:
        obj["status"] = {"phase": phase}
    return obj


def test_a_resync_looks_again_at_pending_requests_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests are never deleted: every resync (5 minutes) judged each one again, its run
    # digested, so thousands of decided requests kept the controller from approved ones
    controller = _controller(tmp_path)
    decided = [_stored_request(f"d{i}", "Submitted") for i in range(500)]
    pending = [_stored_request("p1"), _stored_request("p2", "Pending")]
    stores = {APPROVAL_REQUESTS: decided + pending}
    monkeypatch.setattr(controller.caches, "objects", lambda r: stores.get(r, []))
    controller.resync()
    assert len(controller.queue) == 2


def test_a_decided_request_is_not_judged_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller = _controller(tmp_path)
    judged: list[str] = []

    def counting(request: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        judged.append(request["metadata"]["name"])
        raise AssertionError("judged")

    monkeypatch.setattr(manager, "evaluate_request", counting)
    stored = {n: _stored_request(n, p) for n, p in [("done", "Expired"), ("open", "Pending")]}
    monkeypatch.setattr(controller.caches, "get", lambda _r, _ns, name: stored.get(name))
    for phase in TERMINAL_PHASES:
        stored["done"]["status"]["phase"] = phase
        controller.reconcile_request(NS, "done", BUNDLE, StaticView())
    assert judged == []
    with pytest.raises(AssertionError, match="judged"):  # a pending one still is
        controller.reconcile_request(NS, "open", BUNDLE, StaticView())
    assert judged == ["open"]


def test_patching_a_requests_labels_queues_no_reconcile(tmp_path: Path) -> None:
    controller = _controller(tmp_path)
    old = _stored_request("r", "Pending")
    labelled = copy.deepcopy(old)
    labelled["metadata"]["labels"] = {"n": "1"}
    labelled["metadata"]["annotations"] = {"a": "x" * 1000}
    labelled["metadata"]["resourceVersion"] = "2"
    for _ in range(100):
        controller._on_request(Change("MODIFIED", f"{NS}/r", labelled, old))
    assert len(controller.queue) == 0
    cancelled = copy.deepcopy(labelled)
    cancelled["spec"]["cancelled"] = True
    controller._on_request(Change("MODIFIED", f"{NS}/r", cancelled, labelled))
    controller._on_request(Change("ADDED", f"{NS}/s", _stored_request("s")))
    assert len(controller.queue) == 2


def test_a_run_stored_before_the_bound_still_gets_its_use_and_loses_its_finalizer() -> None:
    # admitted by an earlier version: the ledger must still record it (else its finalizer
    # is held for ever), though no new run of that size is admitted
    run = copy.deepcopy(RUN)
    run["metadata"].update(namespace=NS, uid="u-big", finalizers=[USE_FINALIZER])
    run["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    run["spec"] = _spec_of(2 * MAX_SPEC_BYTES)
    plan = ledger.plan_run(run, BUNDLE, None, NOW, StaticView())
    assert plan.create_use is not None
    whole = hashlib.sha256(rfc8785.dumps(run["spec"])).hexdigest()
    assert plan.create_use["spec"]["specDigest"] == whole
    plan.create_use["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    recorded = StaticView.build(uses=[plan.create_use])
    deleting = copy.deepcopy(run)
    deleting["metadata"]["deletionTimestamp"] = "2020-01-01T01:00:00Z"
    released = copy.deepcopy(deleting)
    released["metadata"]["finalizers"] = []
    request = _run_review(released["spec"], "UPDATE")
    request["object"], request["oldObject"] = released, deleting
    assert decide(request, BUNDLE, NOW, recorded).allowed
