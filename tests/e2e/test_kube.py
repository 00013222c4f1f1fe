"""approvalgate.kube against a real kube-apiserver: paginated lists, watches that resume, the
re-list after 410 Gone, and the watch-fed cache (synced, changes, staleness).

The module starts its own control plane (no CRDs but one of its own, a few seconds) because
one test stops and restarts the API server, which must not disturb the other modules.
ConfigMaps are the objects: every API server serves them, and kubectl edits them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from approvalgate.kube import discovery, lists, objects
from approvalgate.kube.backoff import Backoff
from approvalgate.kube.client import Client
from approvalgate.kube.errors import ApiError, CredentialsError, GoneError
from approvalgate.kube.informer import Informer
from approvalgate.kube.resources import Resource
from approvalgate.kube.store import Change
from approvalgate.kube.watches import Watcher, WatchEvent

from .conftest import own_control_plane
from .controlplane import ControlPlane

pytestmark = pytest.mark.e2e

CONFIG_MAPS = Resource("", "v1", "configmaps")
WIDGETS = Resource("e2e.approvalgate.dev", "v1", "widgets")
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.e2e.approvalgate.dev"},
    "spec": {
        "group": "e2e.approvalgate.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    yield from own_control_plane(crds=False)


@pytest.fixture
def client(plane: ControlPlane) -> Iterator[Client]:
    with Client.connect(plane.kubeconfig("admin")) as connected:
        yield connected


@pytest.fixture
def ns(plane: ControlPlane) -> str:
    return plane.create_namespace("kube")


def config_map(namespace: str, name: str, **data: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": namespace}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def create(plane: ControlPlane, *docs: dict[str, Any]) -> None:
    items = {"apiVersion": "v1", "kind": "List", "items": list(docs)}
    plane.kubectl("admin", "create", "-f", "-", input=json.dumps(items))


def names_in(plane: ControlPlane, namespace: str) -> set[str]:
    """What kubectl (not our client) says the namespace holds."""
    found = plane.kubectl("admin", "get", "configmaps", "-n", namespace, "-o", "name")
    return {line.removeprefix("configmap/") for line in found.stdout.split()}


def eventually(what: str, condition: Callable[[], bool], timeout: float = 60) -> None:
    """Wait for ``condition`` (a generous deadline: the machine may be busy, nothing here
    measures speed)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.1)


def recorded(informer: Informer) -> list[Change]:
    changes: list[Change] = []
    informer.add_handler(changes.append)
    return changes


def history(changes: list[Change]) -> dict[str, list[str]]:
    """Each object's change types, in order, by name."""
    out: dict[str, list[str]] = {}
    for change in changes:
        out.setdefault(change.key.partition("/")[2], []).append(change.type)
    return out


def stored(informer: Informer) -> set[str]:
    return {key.partition("/")[2] for key in informer.snapshot()}


# --- credentials ----------------------------------------------------------------------------


def test_credentials_come_from_the_arguments_or_from_kubeconfig(
    plane: ControlPlane, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    with Client.connect(plane.kubeconfig("alice"), "e2e") as alice:
        assert discovery.identity(alice) == "alice (groups approvers)"
        assert alice.server == plane.server
    monkeypatch.setenv("KUBECONFIG", str(plane.kubeconfig("bob")))
    with Client.connect() as bob:
        assert discovery.identity(bob) == "bob (groups approvers)"
        with pytest.raises(ApiError) as forbidden:
            lists.list_all(bob, CONFIG_MAPS, "default")
        assert forbidden.value.status == 403
        assert forbidden.value.message.startswith(
            "forbidden while listing configmaps in namespace default: configmaps is forbidden: "
            'User "bob" cannot list resource "configmaps"'
        )
    with Client.connect(as_user="alice") as impersonating:  # bob may not impersonate
        assert discovery.identity(impersonating) == ""
    with pytest.raises(CredentialsError) as wrong:
        Client.connect(plane.kubeconfig("admin"), "no-such-context")
    assert wrong.value.message.startswith("cannot load Kubernetes credentials: ")
    assert "no-such-context" in wrong.value.message
    assert wrong.value.advice.startswith("pass --kubeconfig FILE (and --context NAME)")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(CredentialsError):
        Client.connect()


# --- lists ----------------------------------------------------------------------------------


def test_a_list_pages_through_more_objects_than_the_page_size(
    plane: ControlPlane, client: Client, ns: str
) -> None:
    create(plane, *(config_map(ns, f"cm-{i:02}", i=str(i)) for i in range(25)))
    listing = lists.list_all(client, CONFIG_MAPS, ns, page_size=10)
    assert listing.pages == 3
    names = [item["metadata"]["name"] for item in listing.items]
    assert len(names) == len(set(names)) == 25
    assert set(names) == names_in(plane, ns) == {f"cm-{i:02}" for i in range(25)}
    assert int(listing.resource_version) >= max(
        int(item["metadata"]["resourceVersion"]) for item in listing.items
    )
    # One page when it fits; an empty namespace is an empty list with a resourceVersion.
    assert lists.list_all(client, CONFIG_MAPS, ns, page_size=25).pages == 1
    empty = lists.list_all(client, CONFIG_MAPS, plane.create_namespace("kube-empty"))
    assert (empty.items, empty.pages) == ([], 1) and empty.resource_version


def test_objects_get_and_apply(plane: ControlPlane, client: Client, ns: str) -> None:
    assert objects.get(client, CONFIG_MAPS, "absent", ns) is None
    applied = objects.apply(client, CONFIG_MAPS, config_map(ns, "applied", a="1"), "kube-e2e")
    assert applied["data"] == {"a": "1"}
    got = objects.get(client, CONFIG_MAPS, "applied", ns)
    assert got is not None and got["metadata"]["uid"] == applied["metadata"]["uid"]
    assert [f["manager"] for f in got["metadata"]["managedFields"]] == ["kube-e2e"]


# --- the cache ------------------------------------------------------------------------------


def test_the_cache_syncs_after_the_list_then_follows_every_change(
    plane: ControlPlane, client: Client, ns: str
) -> None:
    create(plane, *(config_map(ns, name) for name in ("a", "b", "c")))
    informer = Informer(client, CONFIG_MAPS, ns, page_size=2)
    changes = recorded(informer)
    assert not informer.synced and informer.last_contact is None
    assert not informer.fresh(3600)
    with informer:
        assert informer.wait_synced(60)
        assert informer.lists == 1 and stored(informer) == {"a", "b", "c"}
        assert informer.fresh(60)
        # kubectl creates, patches and deletes; our own client applies
        plane.kubectl("admin", "create", "configmap", "d", "-n", ns, "--from-literal=k=v")
        plane.kubectl("admin", "patch", "configmap", "a", "-n", ns, "-p", '{"data":{"x":"y"}}')
        plane.kubectl("admin", "delete", "configmap", "b", "-n", ns)
        objects.apply(client, CONFIG_MAPS, config_map(ns, "e", by="client"), "kube-e2e")
        eventually("the cache shows every change", lambda: stored(informer) == {"a", "c", "d", "e"})
        a = informer.get("a", ns)
        assert a is not None and a["data"] == {"x": "y"}
        assert stored(informer) == names_in(plane, ns)
    assert history(changes) == {
        "a": ["ADDED", "MODIFIED"],
        "b": ["ADDED", "DELETED"],
        "c": ["ADDED"],
        "d": ["ADDED"],
        "e": ["ADDED"],
    }
    assert informer.watcher.stopped() and not informer.running  # stop() ended a blocked read


def test_a_snapshot_is_one_moment_and_later_changes_do_not_show_in_it(
    plane: ControlPlane, client: Client, ns: str
) -> None:
    create(plane, config_map(ns, "first"))
    with Informer(client, CONFIG_MAPS, ns) as informer:
        assert informer.wait_synced(60)
        before = informer.snapshot()
        create(plane, config_map(ns, "second"))
        eventually("the second object is cached", lambda: "second" in stored(informer))
        assert {key.partition("/")[2] for key in before} == {"first"}
        with pytest.raises(TypeError):
            before[f"{ns}/x"] = {}  # type: ignore[index]


def test_a_watch_the_server_ends_resumes_without_losing_or_repeating_events(
    plane: ControlPlane, client: Client, ns: str
) -> None:
    """Each watch lasts 1 s (timeoutSeconds), so the changes below span several connections;
    each next one starts from the last resourceVersion seen."""
    with Informer(client, CONFIG_MAPS, ns, watch_timeout=1) as informer:
        changes = recorded(informer)
        assert informer.wait_synced(60)
        made: list[str] = []
        while informer.watcher.connections < 4 or len(made) < 6:
            name = f"cm-{len(made):03}"
            create(plane, config_map(ns, name))
            plane.kubectl("admin", "label", "configmap", name, "-n", ns, "changed=yes")
            made.append(name)
            assert len(made) < 200, "the watch never ended: is timeoutSeconds ignored?"
        eventually("every change is cached", lambda: stored(informer) == set(made))
        eventually(
            "every update arrived",
            lambda: all(
                (informer.get(n, ns) or {}).get("metadata", {}).get("labels") for n in made
            ),
        )
    assert history(changes) == {name: ["ADDED", "MODIFIED"] for name in made}
    assert informer.lists == 1 and informer.expired == 0  # resumed, never listed again
    assert informer.watcher.connections >= 4


def test_a_watch_from_a_resource_version_that_is_too_old_ends_with_410(
    plane: ControlPlane, client: Client, ns: str
) -> None:
    """A new CRD's watch cache starts at the current resourceVersion: an older one is Gone."""
    plane.kubectl("admin", "apply", "-f", "-", input=json.dumps(WIDGET_CRD))
    plane.kubectl(
        "admin", "wait", "--for=condition=Established", "crd/widgets.e2e.approvalgate.dev"
    )
    events: list[WatchEvent] = []
    watcher = Watcher(client, WIDGETS, ns, timeout_seconds=5)
    with pytest.raises(GoneError) as caught:
        watcher.run("1", events.append)
    assert caught.value.status == 410 and events == []
    assert caught.value.message.startswith(
        f"the resource version expired (HTTP 410) while watching widgets.e2e.approvalgate.dev "
        f"in namespace {ns}: "
    )
    assert "too old resource version: 1 (" in caught.value.message
    # From the list's resourceVersion the same watch works.
    listing = lists.list_all(client, WIDGETS, ns)
    plane.kubectl(
        "admin",
        "create",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": WIDGETS.api_version,
                "kind": "Widget",
                "metadata": {"name": "w", "namespace": ns},
            }
        ),
    )

    def stop_after_first(event: WatchEvent) -> None:
        events.append(event)
        watcher.stop()

    watcher.run(listing.resource_version, stop_after_first)
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [("ADDED", "w")]


def test_a_stopped_api_server_makes_the_cache_stale_and_a_restart_makes_it_list_again(
    plane: ControlPlane, client: Client, ns: str
) -> None:
    """Two caches of one namespace. `quick` re-watches every 2 s, so while the server is up
    it has contact at least that often; `slow` keeps one watch open for minutes, so the
    last resourceVersion it saw stays older than writes elsewhere (no bookmark moves it).

    After the restart, the API server's new watch cache begins after those writes: `slow`
    resumes from a resourceVersion it no longer has, gets 410 Gone and lists again.
    """
    create(plane, config_map(ns, "before"))
    quick = Informer(client, CONFIG_MAPS, ns, watch_timeout=2, backoff=Backoff(maximum=2))
    slow = Informer(client, CONFIG_MAPS, ns, watch_timeout=300, backoff=Backoff(maximum=2))
    bound = 10.0
    with quick, slow:
        assert quick.wait_synced(60) and slow.wait_synced(60)
        eventually("quick has contact", lambda: quick.fresh(bound))
        elsewhere = plane.create_namespace("kube-elsewhere")
        create(plane, *(config_map(elsewhere, f"x{i}") for i in range(3)))

        plane.stop_apiserver()
        try:
            eventually(f"quick goes {bound:.0f} s without contact", lambda: not quick.fresh(bound))
            # stale, not empty: the last state is still readable, and still says synced
            assert quick.synced and stored(quick) == {"before"}
            assert slow.synced and stored(slow) == {"before"}
            assert not slow.fresh(bound)
        finally:
            plane.start_apiserver()

        create(plane, config_map(ns, "after"))
        eventually(
            "both caches have the new object", lambda: "after" in stored(quick) & stored(slow)
        )
        eventually("quick is fresh again", lambda: quick.fresh(bound))
        assert slow.expired >= 1 and slow.lists >= 2  # 410 Gone, then a new list
        assert stored(slow) == stored(quick) == names_in(plane, ns) == {"before", "after"}
    assert quick.watcher.errors >= 1  # it noticed the server was gone
