"""The controller's view kept per change (controller.viewindex) equals the view it used to
build from the stores after every change (``StaticView.build`` over the caches' objects,
in the caches' order), whatever the changes: adds, edits, deletes, objects the view cannot
read, lists again (after a 410 Gone) in another order, several namespaces, and views taken
between a store's write and its handlers (issue 18)."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from approvalgate.approvals.view import StaticView
from approvalgate.controller.caches import PARENTS, Caches
from approvalgate.kube.informer import Informer
from approvalgate.kube.resources import (
    APPROVAL_DECISIONS,
    APPROVAL_REQUESTS,
    APPROVAL_USES,
    ORCHESTRATIONS,
    SCHEDULES,
    Resource,
)
from approvalgate.kube.store import Change

NAMESPACES = ("a", "b")
RESOURCES = (APPROVAL_REQUESTS, APPROVAL_DECISIONS, APPROVAL_USES, SCHEDULES, ORCHESTRATIONS)
NAMES = ("n1", "n2", "n3", "n4")
TIMES = ("2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z")


def old_view(caches: Caches) -> StaticView:
    """What Caches.view() built before the index (problem aside)."""
    built = StaticView.build(
        requests=caches.objects(APPROVAL_REQUESTS),
        decisions=caches.objects(APPROVAL_DECISIONS),
        uses=caches.objects(APPROVAL_USES),
        objects=caches.parents(),
    )
    return dataclasses.replace(built, max_age=caches.max_age)


def make(
    resource: Resource, namespace: str, name: str, variant: int, version: int
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "resourceVersion": str(version),
        "uid": f"uid-{name}",
        "creationTimestamp": TIMES[variant % 2],
    }
    obj: dict[str, Any] = {"metadata": meta}
    if resource == APPROVAL_DECISIONS:
        if variant % 5 != 4:  # else unreadable: no spec
            record = {"payload": f"p{variant}"} if variant % 7 else None
            obj["spec"] = {"requestName": f"r{variant % 2}", "record": record}
    elif resource == APPROVAL_USES:
        if variant % 5 != 4:
            obj["spec"] = {
                "run": {
                    "name": f"run-{variant % 3}",
                    "uid": f"run-uid-{variant % 2}",
                    # some name the request their run came from (two uses may name one)
                    **({"requestUid": f"req-{variant % 3}"} if variant % 3 else {}),
                },
                "statements": [f"s{variant % 3}", f"s{(variant + 1) % 4}"],
                "expiresAt": TIMES[variant % 2],
                "references": {f"Agent/x{variant % 2}": "d" * 64},
            }
    elif resource in PARENTS:
        if variant % 2:  # a watch event names its kind; a list's items may not
            obj["kind"] = {SCHEDULES: "Schedule", ORCHESTRATIONS: "Orchestration"}[resource]
        obj["spec"] = {"v": variant}
    else:
        obj["spec"] = {"v": variant}
    return obj


operations = st.lists(
    st.tuples(
        st.sampled_from(("put", "put", "put", "delete", "relist", "held", "view")),
        st.sampled_from(RESOURCES),
        st.sampled_from(NAMESPACES),
        st.sampled_from(NAMES),
        st.integers(0, 20),
        st.randoms(use_true_random=False),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_the_view_kept_per_change_is_the_view_built_from_the_stores(ops: list[Any]) -> None:
    client: Any = object()  # nothing is started: the stores are written here
    caches = Caches(client, NAMESPACES, max_age=42.0)
    held: dict[int, list[Change]] = {}  # changes in a store whose handlers have not run yet
    informers: dict[int, Informer] = {}

    def flush(informer: Informer) -> None:
        informer._dispatch(held.pop(id(informer), []))

    for version, (op, resource, namespace, name, variant, rand) in enumerate(ops, 1):
        informer = caches.informers[resource][namespace]
        informers[id(informer)] = informer
        flush(informer)  # an informer's handlers run before its next write
        if op in ("put", "held"):
            obj = make(resource, namespace, name, variant, version)
            change = informer.store.apply("ADDED", obj)
            changes = [change] if change is not None else []
            if op == "held":
                held[id(informer)] = changes
            else:
                informer._dispatch(changes)
        elif op == "delete":
            gone = informer.store.get(f"{namespace}/{name}")
            if gone is not None:
                change = informer.store.apply("DELETED", gone)
                informer._dispatch([change] if change is not None else [])
        elif op == "relist":  # a new list (after a 410), in another order, some objects new
            items = [dict(obj) for obj in informer.snapshot().values() if rand.random() < 0.8]
            items.append(make(resource, namespace, name, variant, version))
            rand.shuffle(items)
            changes = informer.store.replace(items)
            informer.lists += 1
            informer._synced.set()
            held[id(informer)] = changes  # the handlers run after the list is in the store
            if rand.random() < 0.5:
                caches.view()  # a view taken in between reads the new list
        if not held or all(not changes for changes in held.values()):
            assert dataclasses.replace(caches.view(), problem="") == old_view(caches)
        else:
            caches.view()  # taken between a write and its handlers: must not break later ones
    for informer in informers.values():
        flush(informer)
    assert dataclasses.replace(caches.view(), problem="") == old_view(caches)


def test_a_view_is_shared_until_something_changes() -> None:
    client: Any = object()
    caches = Caches(client, max_age=42.0)
    uses = caches.informers[APPROVAL_USES][None]
    first = caches.view()
    assert caches.view() is first or caches.view() == first
    assert caches.index.snapshot() is caches.index.snapshot()
    change = uses.store.apply("ADDED", make(APPROVAL_USES, "a", "u", 1, 1))
    assert change is not None
    uses._dispatch([change])
    second = caches.index.snapshot()
    assert second.use_of_run("a", "run-uid-1") is not None
    assert first.use_of_run("a", "run-uid-1") is None  # a snapshot never changes afterwards
    assert second.requests is first.requests  # parts nothing changed are shared, not copied
