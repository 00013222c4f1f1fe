"""The cluster view's index (kube.view.ViewIndex) agrees with StaticView.build at every step.

The index is fed exactly as the informers feed it: a real :class:`kube.store.Store` turns
watch events and re-lists (after 410 Gone) into changes, and the index applies them one at a
time. After every step it must answer like a StaticView built from the store's objects.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785

from approvalgate.approvals import content, parents
from approvalgate.approvals.view import StaticView, Use
from approvalgate.kube.errors import ApiError, UnreachableError
from approvalgate.kube.store import Change, Store
from approvalgate.kube.view import (
    AGENT,
    AGENT_PROVIDER,
    CONTENT_DIGEST,
    CONTENT_KINDS,
    CONTENT_PROVIDER,
    CRDS_MISSING,
    DECISION,
    IMPLEMENTATION_SPEC,
    LAST_APPLIED,
    OBJECT_RESOURCES,
    ORCHESTRATION,
    ORCHESTRATION_RUN,
    PLATFORM_CRDS_MISSING,
    REQUEST,
    RESOURCES,
    SCHEDULE,
    SWARM,
    TRANSFORMS,
    USE,
    KindStatus,
    ViewIndex,
    default_watch_timeout,
    describe_problem,
    parent_summary,
)

_versions = iter(range(1, 10**9))


def meta(namespace: str, name: str, created: str) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "name": name,
        "creationTimestamp": created,
        "resourceVersion": str(next(_versions)),
        "uid": f"uid-{namespace}-{name}",
    }


def decision(
    namespace: str, name: str, request: str, created: str, tag: str = ""
) -> dict[str, Any]:
    return {
        "metadata": meta(namespace, name, created),
        "spec": {
            "requestName": request,
            "decision": "approve",
            "approver": "alice",
            "record": {"payload": f"{namespace}/{name}{tag}", "payloadType": "t", "signatures": []},
        },
    }


def use(
    namespace: str,
    name: str,
    run_uid: str,
    statements: Iterable[str],
    created: str,
    references: Mapping[str, str] | None = None,
    expires: str | None = "2030-01-01T00:00:00Z",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "run": {"name": f"run-{run_uid}", "uid": run_uid},
        "environment": "prod",
        "specDigest": "0" * 64,
        "statements": list(statements),
    }
    if expires is not None:
        spec["expiresAt"] = expires
    if references is not None:
        spec["references"] = dict(references)
    return {"metadata": meta(namespace, name, created), "spec": spec}


API_VERSIONS = {
    SCHEDULE: "schedules.proompteng.ai/v1alpha1",
    ORCHESTRATION_RUN: "orchestration.proompteng.ai/v1alpha1",
    ORCHESTRATION: "orchestration.proompteng.ai/v1alpha1",
    SWARM: "swarm.proompteng.ai/v1alpha1",
    IMPLEMENTATION_SPEC: "agents.proompteng.ai/v1alpha1",
    AGENT: "agents.proompteng.ai/v1alpha1",
    AGENT_PROVIDER: "agents.proompteng.ai/v1alpha1",
}


def platform_object(
    kind: str, namespace: str, name: str, spec: Any = None, **metadata: Any
) -> dict[str, Any]:
    """An object of the agents platform as the API server sends it (managedFields included)."""
    obj: dict[str, Any] = {
        "apiVersion": API_VERSIONS[kind],
        "kind": kind,
        "metadata": {
            **meta(namespace, name, "2026-01-01T00:00:00Z"),
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {}}],
            **metadata,
        },
    }
    if spec is not None:
        obj["spec"] = spec
    return obj


def sha(value: Any) -> str:
    return hashlib.sha256(rfc8785.dumps(value)).hexdigest()


def request(namespace: str, name: str, created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {"metadata": meta(namespace, name, created), "spec": {"requester": "requester"}}


class Fed:
    """A store per kind and the index they feed (the informers' wiring, without threads).

    ``raw`` holds the platform's objects as the server sent them (the stores hold what the
    informers keep of them): the view they should agree with is built from those."""

    def __init__(self) -> None:
        self.index = ViewIndex()
        self.stores = {kind: Store() for kind in RESOURCES}
        self.raw = {kind: Store() for kind in OBJECT_RESOURCES}
        self.handlers: dict[str, Callable[[Change], None]] = {
            REQUEST: self.index.request_changed,
            DECISION: self.index.decision_changed,
            USE: self.index.use_changed,
            **{kind: self.index.object_changed(kind) for kind in OBJECT_RESOURCES},
        }

    def _stored(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        transform = TRANSFORMS.get(kind)  # as the informer applies it
        return obj if transform is None else transform(obj)

    def event(self, kind: str, type_: str, obj: dict[str, Any]) -> None:
        if kind in self.raw:
            self.raw[kind].apply(type_, obj)  # type: ignore[arg-type]
        change = self.stores[kind].apply(type_, self._stored(kind, obj))  # type: ignore[arg-type]
        if change is not None:
            self.handlers[kind](change)

    def relist(self, kind: str, objects: list[dict[str, Any]]) -> None:
        if kind in self.raw:
            self.raw[kind].replace(objects)
        for change in self.stores[kind].replace([self._stored(kind, o) for o in objects]):
            self.handlers[kind](change)

    def expected(self) -> StaticView:
        return StaticView.build(
            requests=list(self.stores[REQUEST].snapshot().values()),
            decisions=list(self.stores[DECISION].snapshot().values()),
            uses=list(self.stores[USE].snapshot().values()),
            objects=[obj for store in self.raw.values() for obj in store.snapshot().values()],
        )

    def assert_agrees(self) -> None:
        view = self.expected()
        keys = set(view.decisions) | {("ns-a", "none")}
        for namespace, name in keys:
            assert list(self.index.records_for(namespace, name)) == list(
                view.records_for(namespace, name)
            ), (namespace, name)
            # with their creation times, as the API server stamped them
            assert list(self.index.decisions_for(namespace, name)) == list(
                view.decisions_for(namespace, name)
            ), (namespace, name)
        assert set(self.index._envelopes) == set(view.decisions)  # no empty leftovers
        assert set(self.index._filed) == set(view.filed)
        for statement in set(view.uses) | {"absent"}:
            ours = sorted(u.name for u in self.index.uses_of(statement))
            assert ours == sorted(u.name for u in view.uses_of(statement)), statement
        assert set(self.index._by_statement) == set(view.uses)
        for namespace in {ns for ns, _ in view.requests} | {"ns-absent"}:
            for requester in ("requester", "other", ""):
                ours_pending = self.index.pending_requests(namespace, requester)
                assert ours_pending == view.pending_requests(namespace, requester)
        assert all(self.index._pending.values())  # no empty leftovers
        for namespace, uid in set(view.runs) | {("ns-a", "absent")}:
            ours_use = self.index.use_of_run(namespace, uid)
            theirs = view.use_of_run(namespace, uid)
            assert (ours_use is None) == (theirs is None)
            if ours_use is not None and theirs is not None:
                assert (ours_use.namespace, ours_use.run_uid) == (theirs.namespace, theirs.run_uid)
        for namespace, name in set(view.requests) | {("ns-a", "absent")}:
            assert self.index.request(namespace, name) is view.request(namespace, name)
        counts = self.index.counts()
        assert counts[REQUEST] == len(self.stores[REQUEST])
        assert counts[USE] == sum(1 for _ in self.stores[USE].snapshot())
        for namespace, key in set(view.bound) | {("ns-a", "Agent/none")}:
            ours = sorted(u.name for u in self.index.content_uses(namespace, key))
            assert ours == sorted(u.name for u in view.content_uses(namespace, key)), key
        assert set(self.index._by_reference) == set(view.bound)  # no empty leftovers
        for kind in OBJECT_RESOURCES:
            stored = self.stores[kind].snapshot()
            for obj in self.raw[kind].snapshot().values():
                namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
                held = self.index.object(kind, namespace, name)
                assert held is stored[f"{namespace}/{name}"]  # the informer's copy, not another
                if kind in CONTENT_KINDS:
                    assert self.index.content(kind, namespace, name) == view.content(
                        kind, namespace, name
                    )
                    if kind == AGENT:
                        assert self.index.provider(namespace, name) == view.provider(
                            namespace, name
                        )
                        assert self.index.prompt_source(namespace, name) == (
                            view.prompt_source(namespace, name)
                        )
                else:
                    assert held == parent_summary(dict(view.object(kind, namespace, name) or {}))
            assert self.index.counts()[kind] == len(stored)
        assert self.index.object(SCHEDULE, "ns-a", "absent") is None
        assert self.index.content(AGENT, "ns-a", "absent") is None


def envelopes_of(index: ViewIndex, namespace: str, name: str) -> list[str]:
    return [str(e["payload"]) for e in index.records_for(namespace, name)]


def test_decisions_come_in_creation_order_whatever_order_they_arrive_in() -> None:
    fed = Fed()
    fed.event(DECISION, "ADDED", decision("ns-a", "run-3", "run", "2026-01-01T00:00:03Z"))
    fed.event(DECISION, "ADDED", decision("ns-a", "run-1", "run", "2026-01-01T00:00:01Z"))
    fed.event(DECISION, "ADDED", decision("ns-a", "run-2b", "run", "2026-01-01T00:00:02Z"))
    fed.event(DECISION, "ADDED", decision("ns-a", "run-2a", "run", "2026-01-01T00:00:02Z"))
    fed.event(DECISION, "ADDED", decision("ns-b", "run-0", "run", "2026-01-01T00:00:00Z"))
    assert envelopes_of(fed.index, "ns-a", "run") == [
        "ns-a/run-1",
        "ns-a/run-2a",  # the same second: by name
        "ns-a/run-2b",
        "ns-a/run-3",
    ]
    assert envelopes_of(fed.index, "ns-b", "run") == ["ns-b/run-0"]
    assert envelopes_of(fed.index, "ns-a", "other") == []
    fed.assert_agrees()


def test_a_deleted_decision_no_longer_counts_and_leaves_nothing_behind() -> None:
    fed = Fed()
    first = decision("ns-a", "d1", "run", "2026-01-01T00:00:01Z")
    second = decision("ns-a", "d2", "run", "2026-01-01T00:00:02Z")
    fed.event(DECISION, "ADDED", first)
    fed.event(DECISION, "ADDED", second)
    fed.event(DECISION, "DELETED", first)
    assert envelopes_of(fed.index, "ns-a", "run") == ["ns-a/d2"]
    fed.event(DECISION, "DELETED", second)
    assert fed.index.records_for("ns-a", "run") == ()
    assert fed.index.counts()[DECISION] == 0
    fed.assert_agrees()


def test_a_modified_decision_replaces_its_envelope_and_may_move() -> None:
    fed = Fed()
    fed.event(DECISION, "ADDED", decision("ns-a", "d1", "run", "2026-01-01T00:00:01Z"))
    fed.event(DECISION, "MODIFIED", decision("ns-a", "d1", "run", "2026-01-01T00:00:01Z", "!"))
    assert envelopes_of(fed.index, "ns-a", "run") == ["ns-a/d1!"]
    # the webhook denies spec changes; the index still follows whatever the server holds
    fed.event(DECISION, "MODIFIED", decision("ns-a", "d1", "elsewhere", "2026-01-01T00:00:01Z"))
    assert envelopes_of(fed.index, "ns-a", "run") == []
    assert envelopes_of(fed.index, "ns-a", "elsewhere") == ["ns-a/d1"]
    # a decision that loses its record is no longer one decide() can read
    broken = decision("ns-a", "d1", "elsewhere", "2026-01-01T00:00:01Z")
    del broken["spec"]["record"]
    fed.event(DECISION, "MODIFIED", broken)
    assert envelopes_of(fed.index, "ns-a", "elsewhere") == []
    fed.assert_agrees()


def test_uses_by_statement_and_by_run() -> None:
    fed = Fed()
    fed.event(USE, "ADDED", use("ns-a", "uid-1", "uid-1", ["s1", "s2"], "2026-01-01T00:00:01Z"))
    fed.event(USE, "ADDED", use("ns-a", "uid-2", "uid-2", ["s2"], "2026-01-01T00:00:02Z"))
    assert [u.run_uid for u in fed.index.uses_of("s1")] == ["uid-1"]
    assert sorted(u.run_uid for u in fed.index.uses_of("s2")) == ["uid-1", "uid-2"]
    found = fed.index.use_of_run("ns-a", "uid-1")
    assert found is not None and found.statements == {"s1", "s2"}
    assert fed.index.use_of_run("ns-b", "uid-1") is None  # namespaced
    fed.assert_agrees()
    fed.event(USE, "DELETED", use("ns-a", "uid-1", "uid-1", ["s1", "s2"], "2026-01-01T00:00:01Z"))
    assert fed.index.uses_of("s1") == ()
    assert [u.run_uid for u in fed.index.uses_of("s2")] == ["uid-2"]
    assert fed.index.use_of_run("ns-a", "uid-1") is None
    fed.assert_agrees()


def test_the_use_named_by_the_run_uid_is_the_runs_use() -> None:
    """A second use naming the same run (not the controller's name) never hides the real one;
    without the real one, the newest (least settled) is the run's."""
    fed = Fed()
    fed.event(USE, "ADDED", use("ns-a", "uid-1", "uid-1", ["s1"], "2026-01-01T00:00:01Z"))
    fed.event(USE, "ADDED", use("ns-a", "stray", "uid-1", ["s9"], "2026-01-01T00:00:05Z"))
    found = fed.index.use_of_run("ns-a", "uid-1")
    assert found is not None and found.name == "uid-1"
    fed.event(USE, "DELETED", use("ns-a", "uid-1", "uid-1", ["s1"], "2026-01-01T00:00:01Z"))
    fed.event(USE, "ADDED", use("ns-a", "stray-2", "uid-1", ["s9"], "2026-01-01T00:00:09Z"))
    found = fed.index.use_of_run("ns-a", "uid-1")
    assert found is not None and found.name == "stray-2"


def test_requests_by_name() -> None:
    fed = Fed()
    made = request("ns-a", "run")
    fed.event(REQUEST, "ADDED", made)
    assert fed.index.request("ns-a", "run") == made  # a summary: all there is of it
    assert fed.index.request("ns-b", "run") is None
    fed.event(REQUEST, "DELETED", made)
    assert fed.index.request("ns-a", "run") is None
    fed.assert_agrees()


def test_parents_and_orchestrations_by_kind_namespace_and_name() -> None:
    """Stored as a summary (parents.summary): what decide() reads, a Schedule's coverage
    computed from the whole object when it arrives; never managedFields, the last-applied
    annotation, other annotations, or the spec's other fields."""
    fed = Fed()
    annotations = {
        "gates.proompteng.ai/run-template": '{"agentRef":{"name":"a"}}',
        "approvals.proompteng.ai/approvals": "[]",
        LAST_APPLIED: '{"a":"copy of the whole object"}',
        "example.com/notes": "n",
    }
    spec = {"cron": "0 1 * * *", "targetRef": {"kind": "AgentRun", "name": "t", "x": 1}}
    nightly = platform_object(SCHEDULE, "ns-a", "nightly", spec, annotations=annotations)
    fed.event(SCHEDULE, "ADDED", nightly)
    found = fed.index.object(SCHEDULE, "ns-a", "nightly")
    assert found is not None
    assert found["spec"] == {"targetRef": {"kind": "AgentRun", "name": "t"}}
    assert found["metadata"]["annotations"] == {"approvals.proompteng.ai/approvals": "[]"}
    assert found[parents.HELD_COVERAGE] == parents.coverage(nightly, None)
    assert isinstance(found[parents.HELD_COVERAGE], parents.Coverage)
    assert "managedFields" not in found["metadata"]
    assert found["metadata"]["uid"] == "uid-ns-a-nightly"
    assert "managedFields" in nightly["metadata"]  # the server's object is not changed
    # kinds and namespaces do not cross
    assert fed.index.object(SWARM, "ns-a", "nightly") is None
    assert fed.index.object(SCHEDULE, "ns-b", "nightly") is None
    assert fed.index.object("AgentRun", "ns-a", "nightly") is None
    for kind in (ORCHESTRATION_RUN, ORCHESTRATION):
        fed.event(kind, "ADDED", platform_object(kind, "ns-a", "nightly", {"kind": kind}))
        stored = fed.index.object(kind, "ns-a", "nightly")
        assert stored is not None and stored["spec"] == {"kind": kind}
    fed.event(SWARM, "ADDED", platform_object(SWARM, "ns-a", "nightly", {"kind": SWARM}))
    assert fed.index.object(SWARM, "ns-a", "nightly") is not None
    fed.event(
        SCHEDULE, "MODIFIED", platform_object(SCHEDULE, "ns-a", "nightly", {"cron": "@daily"})
    )
    changed = fed.index.object(SCHEDULE, "ns-a", "nightly")
    assert changed is not None and changed[parents.HELD_COVERAGE] != found[parents.HELD_COVERAGE]
    fed.assert_agrees()
    fed.event(SCHEDULE, "DELETED", nightly)
    assert fed.index.object(SCHEDULE, "ns-a", "nightly") is None
    assert fed.index.object(SWARM, "ns-a", "nightly") is not None
    assert fed.index.content(SWARM, "ns-a", "nightly") is None  # not content
    fed.assert_agrees()


def test_referenced_content_is_kept_as_the_digest_of_its_spec_only() -> None:
    fed = Fed()
    large = {"text": "x" * 100_000, "summary": "task A", "acceptance": ["a", "b"]}
    fed.event(
        IMPLEMENTATION_SPEC, "ADDED", platform_object(IMPLEMENTATION_SPEC, "ns-a", "a", large)
    )
    assert fed.index.content(IMPLEMENTATION_SPEC, "ns-a", "a") == sha(large)
    stored = fed.index.object(IMPLEMENTATION_SPEC, "ns-a", "a")
    assert stored == {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": IMPLEMENTATION_SPEC,
        "metadata": {
            "name": "a",
            "namespace": "ns-a",
            "uid": "uid-ns-a-a",
            "resourceVersion": stored["metadata"]["resourceVersion"],
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        CONTENT_DIGEST: sha(large),
    }
    # the same name of the other kind, or in another namespace, is another object
    assert fed.index.content(AGENT, "ns-a", "a") is None
    assert fed.index.content(IMPLEMENTATION_SPEC, "ns-b", "a") is None
    # a change of the spec changes the digest; key order does not (RFC 8785)
    edited = {**large, "summary": "task B"}
    fed.event(
        IMPLEMENTATION_SPEC, "MODIFIED", platform_object(IMPLEMENTATION_SPEC, "ns-a", "a", edited)
    )
    assert fed.index.content(IMPLEMENTATION_SPEC, "ns-a", "a") == sha(edited)
    reordered = dict(reversed(list(edited.items())))
    fed.event(
        IMPLEMENTATION_SPEC,
        "MODIFIED",
        platform_object(IMPLEMENTATION_SPEC, "ns-a", "a", reordered),
    )
    assert fed.index.content(IMPLEMENTATION_SPEC, "ns-a", "a") == sha(edited)
    # no spec: the digest of {}; a spec no one can sign exactly: no digest (nothing binds it)
    fed.event(AGENT, "ADDED", platform_object(AGENT, "ns-a", "bare"))
    assert fed.index.content(AGENT, "ns-a", "bare") == sha({})
    huge = platform_object(AGENT, "ns-a", "huge", {"n": 2**60})
    fed.event(AGENT, "ADDED", huge)
    assert fed.index.content(AGENT, "ns-a", "huge") == content.digest(huge)  # matches no binding
    fed.event(IMPLEMENTATION_SPEC, "DELETED", platform_object(IMPLEMENTATION_SPEC, "ns-a", "a"))
    assert fed.index.content(IMPLEMENTATION_SPEC, "ns-a", "a") is None
    assert {IMPLEMENTATION_SPEC, AGENT, AGENT_PROVIDER} == CONTENT_KINDS
    fed.assert_agrees()


def test_an_agent_is_kept_with_the_name_of_its_provider() -> None:
    """A run executes the AgentProvider its Agent names: the view keeps that name beside the
    Agent's digest, and the provider as a digest (decide() binds both)."""
    fed = Fed()
    spec = {"providerRef": {"name": "codex-cli"}, "config": {"x": 1}}
    fed.event(AGENT, "ADDED", platform_object(AGENT, "ns-a", "codex", spec))
    assert fed.index.provider("ns-a", "codex") == "codex-cli"
    held = fed.index.object(AGENT, "ns-a", "codex") or {}
    assert held[CONTENT_PROVIDER] == "codex-cli"
    assert fed.index.content(AGENT, "ns-a", "codex") == sha(spec)
    runner = {"binary": "/usr/local/bin/codex", "env": [{"name": "A", "value": "b"}]}
    fed.event(AGENT_PROVIDER, "ADDED", platform_object(AGENT_PROVIDER, "ns-a", "codex-cli", runner))
    assert fed.index.content(AGENT_PROVIDER, "ns-a", "codex-cli") == sha(runner)
    assert CONTENT_PROVIDER not in (fed.index.object(AGENT_PROVIDER, "ns-a", "codex-cli") or {})
    # moved to another provider; naming none; not held
    fed.event(
        AGENT, "MODIFIED", platform_object(AGENT, "ns-a", "codex", {"providerRef": {"name": "b"}})
    )
    assert fed.index.provider("ns-a", "codex") == "b"
    fed.event(AGENT, "MODIFIED", platform_object(AGENT, "ns-a", "codex", {}))
    assert fed.index.provider("ns-a", "codex") == ""
    assert fed.index.provider("ns-a", "absent") is None
    assert fed.index.provider("ns-b", "codex") is None
    fed.assert_agrees()


def test_an_agent_is_kept_with_the_source_of_its_system_prompt() -> None:
    """An Agent taking its system prompt from a ConfigMap or Secret: the view keeps which
    (decide() admits no run of it: approvals cannot bind that object)."""
    fed = Fed()
    ref = {"kind": "ConfigMap", "name": "prompt", "key": "p.md"}
    spec = {"providerRef": {"name": "codex-cli"}, "defaults": {"systemPromptRef": ref}}
    fed.event(AGENT, "ADDED", platform_object(AGENT, "ns-a", "codex", spec))
    assert fed.index.prompt_source("ns-a", "codex") == "ConfigMap/prompt"
    secret = {**spec, "defaults": {"systemPromptRef": {"name": "s"}}}  # kind left out
    fed.event(AGENT, "MODIFIED", platform_object(AGENT, "ns-a", "codex", secret))
    assert fed.index.prompt_source("ns-a", "codex") == "ConfigMap or Secret/s"
    fed.event(
        AGENT,
        "ADDED",
        platform_object(AGENT, "ns-a", "inline", {"defaults": {"systemPrompt": "x"}}),
    )
    assert fed.index.prompt_source("ns-a", "inline") == ""
    assert fed.index.prompt_source("ns-a", "absent") == ""
    fed.assert_agrees()


def test_content_uses_are_the_uses_binding_the_object_in_its_namespace() -> None:
    """Expired ones too: decide() judges expiry at its own clock (Use.live)."""
    fed = Fed()
    task_a, agent = "ImplementationSpec/task-a", "Agent/codex"
    refs = {task_a: "a" * 64, agent: "b" * 64}
    june = "2026-06-01T00:00:00Z"
    fed.event(USE, "ADDED", use("ns-a", "u1", "u1", ["s1"], "2026-01-01T00:00:01Z", refs))
    fed.event(
        USE,
        "ADDED",
        use("ns-a", "u2", "u2", ["s2"], "2026-01-01T00:00:02Z", {agent: "c" * 64}, june),
    )
    fed.event(USE, "ADDED", use("ns-b", "u3", "u3", ["s3"], "2026-01-01T00:00:03Z", refs))
    fed.event(USE, "ADDED", use("ns-a", "u4", "u4", ["s4"], "2026-01-01T00:00:04Z"))  # none
    fed.event(
        USE,
        "ADDED",
        use("ns-a", "u5", "u5", ["s5"], "2026-01-01T00:00:05Z", {agent: "d" * 64}, None),
    )

    def names(namespace: str, key: str) -> list[str]:
        return sorted(u.name for u in fed.index.content_uses(namespace, key))

    assert names("ns-a", task_a) == ["u1"]
    assert names("ns-a", agent) == ["u1", "u2", "u5"]
    assert names("ns-b", agent) == ["u3"]
    assert names("ns-a", "Agent/other") == []
    [found] = fed.index.content_uses("ns-a", task_a)
    assert found.references == refs
    july = datetime(2026, 7, 1, tzinfo=UTC)
    live = sorted(u.name for u in fed.index.content_uses("ns-a", agent) if u.live(july))
    assert live == ["u1", "u5"]  # u2 expired in June; u5 has no expiry: it lasts
    fed.assert_agrees()
    # a use that changes its references, then goes: nothing left behind
    fed.event(
        USE, "MODIFIED", use("ns-a", "u1", "u1", ["s1"], "2026-01-01T00:00:01Z", {agent: "a" * 64})
    )
    assert names("ns-a", task_a) == []
    fed.assert_agrees()
    for name in ("u1", "u2", "u5"):
        fed.event(USE, "DELETED", use("ns-a", name, name, [], "2026-01-01T00:00:01Z"))
    assert names("ns-a", agent) == []
    fed.assert_agrees()


def test_a_use_reads_its_references_and_ignores_what_is_not_a_string_map() -> None:
    made = use("ns-a", "u1", "u1", ["s1"], "2026-01-01T00:00:01Z", {"Agent/a": "1" * 64})
    made["spec"]["references"]["Agent/b"] = 7
    parsed = Use.of(made)
    assert parsed is not None and parsed.references == {"Agent/a": "1" * 64}
    for odd in (None, ["Agent/a"], "Agent/a"):
        made["spec"]["references"] = odd
        parsed = Use.of(made)
        assert parsed is not None and parsed.references == {}
    hash(parsed)  # still usable in sets


def test_a_relist_after_410_replaces_the_state_through_ordinary_changes() -> None:
    """Objects deleted, added and changed while the watch was gone all show after the list."""
    fed = Fed()
    kept = decision("ns-a", "kept", "run", "2026-01-01T00:00:01Z")
    gone = decision("ns-a", "gone", "run", "2026-01-01T00:00:02Z")
    fed.relist(DECISION, [kept, gone])
    fed.relist(USE, [use("ns-a", "u1", "u1", ["s1"], "2026-01-01T00:00:01Z")])
    fed.relist(REQUEST, [request("ns-a", "run"), request("ns-a", "gone")])
    fed.assert_agrees()
    new = decision("ns-a", "new", "run", "2026-01-01T00:00:00Z")  # older than kept
    fed.relist(DECISION, [kept, new])
    fed.relist(USE, [use("ns-a", "u2", "u2", ["s1", "s2"], "2026-01-01T00:00:03Z")])
    fed.relist(REQUEST, [request("ns-a", "run")])
    assert envelopes_of(fed.index, "ns-a", "run") == ["ns-a/new", "ns-a/kept"]
    assert [u.name for u in fed.index.uses_of("s1")] == ["u2"]
    assert fed.index.use_of_run("ns-a", "u1") is None
    assert fed.index.request("ns-a", "gone") is None
    fed.assert_agrees()


@pytest.mark.parametrize("seed", range(5))
def test_any_sequence_of_changes_and_relists_agrees_with_a_view_built_from_the_store(
    seed: int,
) -> None:
    rng = random.Random(seed)
    fed = Fed()
    namespaces, requests, statements = ["ns-a", "ns-b"], ["r1", "r2", "r3"], ["s1", "s2", "s3"]

    def some_decision(name: str) -> dict[str, Any]:
        created = f"2026-01-01T00:00:{rng.randrange(10):02}Z"
        return decision(rng.choice(namespaces), name, rng.choice(requests), created)

    references = ["ImplementationSpec/a", "ImplementationSpec/b", "Agent/a"]

    def some_use(name: str) -> dict[str, Any]:
        chosen = rng.sample(statements, rng.randrange(0, 3))
        uid = rng.choice(["u1", "u2", name])
        bound = {key: rng.choice("01") * 64 for key in rng.sample(references, rng.randrange(3))}
        return use(
            rng.choice(namespaces),
            name,
            uid,
            chosen,
            f"2026-01-01T00:00:{rng.randrange(10):02}Z",
            bound,
        )

    def some_request() -> dict[str, Any]:
        made = request(rng.choice(namespaces), rng.choice(requests))
        made["spec"]["cancelled"] = rng.random() < 0.2
        made["spec"]["requester"] = rng.choice(["requester", "other"])
        phase = rng.choice([None, "Pending", "Approved", "Submitted", "Expired", "Cancelled"])
        if phase is not None:
            made["status"] = {"phase": phase}
        return made

    def platform(kind: str) -> Callable[[str], dict[str, Any]]:
        def spec() -> dict[str, Any]:
            if kind == AGENT and rng.random() < 0.8:
                return {"providerRef": {"name": f"p{rng.randrange(3)}"}}
            return {"n": rng.randrange(3)}

        return lambda name: platform_object(kind, rng.choice(namespaces), name, spec())

    makers = {
        DECISION: some_decision,
        USE: some_use,
        REQUEST: lambda name: some_request(),
        **{kind: platform(kind) for kind in OBJECT_RESOURCES},
    }
    for _ in range(300):
        kind = rng.choice([DECISION, DECISION, USE, USE, REQUEST, *OBJECT_RESOURCES])
        name = f"o{rng.randrange(8)}"
        roll = rng.random()
        if roll < 0.05:
            fed.relist(kind, [makers[kind](f"o{i}") for i in rng.sample(range(8), 4)])
        elif roll < 0.3:
            existing = list(fed.stores[kind].snapshot().values())
            if existing:
                fed.event(kind, "DELETED", rng.choice(existing))
        else:
            fed.event(kind, "ADDED", makers[kind](name))  # Store makes it MODIFIED if known
        fed.assert_agrees()


def test_ten_thousand_decisions_each_lookup_is_one_dict_get() -> None:
    """10,000 decisions over 2,000 runs in 20 namespaces: every run finds exactly its own, in
    order; a lookup returns the stored tuple itself (nothing is copied or scanned per call)."""
    fed = Fed()
    objects = [
        decision(
            f"ns-{i % 20}",
            f"d{i:05}",
            f"run-{i % 2000:04}",
            f"2026-01-01T{(i // 3600) % 24:02}:{(i // 60) % 60:02}:{i % 60:02}Z",
        )
        for i in range(10_000)
    ]
    random.Random(1).shuffle(objects)
    fed.relist(DECISION, objects)
    assert fed.index.counts()[DECISION] == 10_000
    for run_number in range(2000):
        namespace, name = f"ns-{run_number % 20}", f"run-{run_number:04}"
        found = envelopes_of(fed.index, namespace, name)
        expected = [f"{namespace}/d{i:05}" for i in range(run_number, 10_000, 2000)]
        assert found == expected
        assert fed.index.records_for(namespace, name) is fed.index.records_for(namespace, name)
    fed.assert_agrees()
    # a new decision changes only its own run's tuple
    before = fed.index.records_for("ns-0", "run-0000")
    other = fed.index.records_for("ns-1", "run-0001")
    fed.event(DECISION, "ADDED", decision("ns-0", "late", "run-0000", "2026-01-02T00:00:00Z"))
    assert envelopes_of(fed.index, "ns-0", "run-0000")[-1] == "ns-0/late"
    assert len(before) == 5  # a reader holding the old tuple keeps a consistent answer
    assert fed.index.records_for("ns-1", "run-0001") is other


# --- what the view says when it cannot be relied on ---------------------------------------------


def status(
    kind: str,
    *,
    synced: bool = True,
    since: float = 1.0,
    error: Exception | None = None,
) -> KindStatus:
    return KindStatus(kind, synced, 0, since, error)  # type: ignore[arg-type]


def test_the_problem_names_the_kind_and_why() -> None:
    fine = [status(REQUEST), status(DECISION), status(USE)]
    assert describe_problem(fine, 90) == ""
    missing = ApiError("the API server answered HTTP 404 while listing ...", status=404)
    assert describe_problem(
        [status(REQUEST, synced=False, error=missing), status(DECISION), status(USE)], 90
    ) == (f"{CRDS_MISSING} (the API server does not serve ApprovalRequests)")
    refused = UnreachableError("cannot reach the API server at https://x while listing ...")
    assert describe_problem(
        [status(REQUEST), status(DECISION, synced=False, error=refused), status(USE)], 90
    ) == (
        "the cluster view has not synced ApprovalDecisions yet: cannot reach the API server "
        "at https://x while listing ..."
    )
    assert describe_problem(
        [
            status(REQUEST, synced=False, since=float("inf")),
            status(DECISION),
            status(USE, since=95.4),
        ],
        90,
    ) == (
        "the cluster view has not synced ApprovalRequests yet (listing); "
        "the cluster view lost its watch of ApprovalUses 95 s ago (bound 90 s)"
    )


def test_a_missing_platform_crd_is_named_apart_from_the_queues() -> None:
    """The agents platform's kinds fail closed like the queue's: the view is not usable, and
    the sentence says which CRDs to install."""
    missing = ApiError("the API server answered HTTP 404 while listing ...", status=404)
    synced = [status(kind) for kind in RESOURCES]
    assert describe_problem(synced, 90) == ""
    without_swarms = [
        status(kind, synced=False, error=missing) if kind in (SWARM, AGENT) else status(kind)
        for kind in RESOURCES
    ]
    assert describe_problem(without_swarms, 90) == (
        f"{PLATFORM_CRDS_MISSING} (the API server does not serve Swarms, Agents)"
    )
    both = [status(USE, synced=False, error=missing), *without_swarms[3:]]
    assert describe_problem(both, 90) == (
        f"{CRDS_MISSING} (the API server does not serve ApprovalUses); "
        f"{PLATFORM_CRDS_MISSING} (the API server does not serve Swarms, Agents)"
    )


def test_each_watch_ends_well_within_the_bound() -> None:
    assert default_watch_timeout(90) == 30
    assert default_watch_timeout(600) == 60
    assert default_watch_timeout(2) == 1


def test_a_crd_removed_after_the_sync_is_said_as_such() -> None:
    gone = ApiError("the API server answered HTTP 404 while watching ...", status=404)
    assert (
        describe_problem(
            [status(REQUEST), status(DECISION, since=120, error=gone), status(USE)], 90
        )
        == f"{CRDS_MISSING} (the API server does not serve ApprovalDecisions)"
    )
    # within the bound a failing watch is not (yet) a problem
    assert describe_problem([status(DECISION, since=10, error=gone)], 90) == ""
