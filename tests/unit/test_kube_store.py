"""approvalgate.kube's pure parts: the copy-on-write store, resource paths, the backoff, and
that its errors load without the kubernetes client."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from approvalgate.kube.backoff import Backoff
from approvalgate.kube.resources import Resource, object_key
from approvalgate.kube.store import Store
from tests.support.paths import ROOT


def obj(name: str, version: str, namespace: str = "ns", **data: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": namespace, "resourceVersion": version}
    return {"metadata": meta, "data": data}


def test_events_change_the_store_once_and_repeats_change_nothing() -> None:
    store = Store()
    added = store.apply("ADDED", obj("a", "1"))
    assert added is not None and (added.type, added.key, added.old) == ("ADDED", "ns/a", None)
    assert store.apply("ADDED", obj("a", "1")) is None  # the same resourceVersion again
    modified = store.apply("MODIFIED", obj("a", "2", x="y"))
    assert modified is not None and modified.type == "MODIFIED"
    assert modified.old == obj("a", "1") and store.get("ns/a") == obj("a", "2", x="y")
    deleted = store.apply("DELETED", obj("a", "3"))
    assert deleted is not None and deleted.type == "DELETED" and store.get("ns/a") is None
    assert store.apply("DELETED", obj("a", "3")) is None and len(store) == 0


def test_a_new_list_replaces_the_state_and_reports_the_difference() -> None:
    store = Store()
    initial = store.replace([obj("b", "1"), obj("a", "1"), obj("c", "1")])
    assert [(c.type, c.key) for c in initial] == [
        ("ADDED", "ns/a"),
        ("ADDED", "ns/b"),
        ("ADDED", "ns/c"),
    ]
    changes = store.replace([obj("a", "1"), obj("b", "5"), obj("d", "6")])
    assert [(c.type, c.key) for c in changes] == [
        ("MODIFIED", "ns/b"),
        ("DELETED", "ns/c"),
        ("ADDED", "ns/d"),
    ]
    assert sorted(store.snapshot()) == ["ns/a", "ns/b", "ns/d"]


def test_a_snapshot_never_changes_and_cannot_be_changed() -> None:
    store = Store()
    store.apply("ADDED", obj("a", "1"))
    before = store.snapshot()
    store.apply("ADDED", obj("b", "2"))
    store.apply("DELETED", obj("a", "3"))
    assert list(before) == ["ns/a"] and list(store.snapshot()) == ["ns/b"]
    with pytest.raises(TypeError):
        before["ns/x"] = {}  # type: ignore[index]


@pytest.mark.parametrize(
    ("resource", "namespace", "name", "path", "described"),
    [
        (
            Resource("", "v1", "configmaps"),
            None,
            None,
            "/api/v1/configmaps",
            "configmaps in all namespaces",
        ),
        (
            Resource("", "v1", "configmaps"),
            "ns",
            "a",
            "/api/v1/namespaces/ns/configmaps/a",
            "configmaps in namespace ns",
        ),
        (
            Resource("agents.proompteng.ai", "v1alpha1", "agentruns"),
            "ns",
            None,
            "/apis/agents.proompteng.ai/v1alpha1/namespaces/ns/agentruns",
            "agentruns.agents.proompteng.ai in namespace ns",
        ),
        (
            Resource(
                "admissionregistration.k8s.io",
                "v1",
                "validatingwebhookconfigurations",
                namespaced=False,
            ),
            "ignored",
            "gate",
            "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/gate",
            "validatingwebhookconfigurations.admissionregistration.k8s.io",
        ),
    ],
)
def test_resource_paths(
    resource: Resource, namespace: str | None, name: str | None, path: str, described: str
) -> None:
    assert resource.path(namespace, name) == path
    assert resource.describe(namespace) == described


def test_keys_and_names() -> None:
    assert object_key(obj("a", "1")) == "ns/a"
    assert object_key({"metadata": {"name": "cluster-wide"}}) == "cluster-wide"
    assert Resource("", "v1", "configmaps").singular_name == "configmap"
    assert Resource("x.io", "v1", "policies", singular="policy").singular_name == "policy"
    assert Resource("x.io", "v1", "widgets").api_version == "x.io/v1"


def test_the_backoff_grows_to_its_bound_and_starts_again_after_a_reset() -> None:
    backoff = Backoff(initial=1, maximum=8, jitter=0.25)
    delays = [backoff.delay() for _ in range(6)]
    bounds = [1, 2, 4, 8, 8, 8]
    assert all(b * 0.75 <= d <= b for d, b in zip(delays, bounds, strict=True))
    backoff.reset()
    assert backoff.delay() <= 1


def test_kube_errors_load_without_the_kubernetes_client() -> None:
    code = (
        "import sys, approvalgate.kube, approvalgate.kube.errors, approvalgate.kube.store; "
        "import approvalgate.kube.resources, approvalgate.kube.backoff; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"
