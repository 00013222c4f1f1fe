"""The chart's RBAC as the real API server's authorizer reads it (`kubectl auth can-i` as
admin, impersonating each identity): the controller and the webhook's view get exactly the
calls they make, people get the queue through the ClusterRoles they are bound to, and only
the controller may write a request's status. The CRDs are installed so that the authorizer
sees real resources (tests/e2e/test_chart_dry_run.py tests their CEL rules)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
import yaml

from tests.chart.support import pinned_binary, render

from .controlplane import ControlPlane

pytestmark = [pytest.mark.e2e, pytest.mark.helm]

RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


@pytest.fixture(scope="module")
def release(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, str]]:
    """(full name, release namespace, a run namespace): the chart's RBAC and CRDs applied."""
    helm = pinned_binary("helm", "helm")
    name = f"rbac-{secrets.token_hex(3)}"
    home = control_plane.create_namespace("gate")
    runs = control_plane.create_namespace("runs")
    objects = render(
        helm, release=name, namespace=home, sets=["controller.namespaces={" + runs + "}"]
    )
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    path = tmp_path_factory.mktemp("rbac") / "crds.yaml"
    path.write_text(yaml.safe_dump_all(crds), encoding="utf-8")
    control_plane.apply_crds([path])
    rbac = [o for o in objects if o["kind"] in RBAC_KINDS]
    control_plane.kubectl(
        "admin",
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac}),
    )
    yield f"{name}-approvalgate", home, runs  # the chart's full name
    cluster = [o for o in rbac if o["kind"].startswith("Cluster")]
    for obj in cluster:
        control_plane.kubectl(
            "admin", "delete", obj["kind"], obj["metadata"]["name"], "--wait=false", check=False
        )
    for ns in (home, runs):
        control_plane.kubectl("admin", "delete", "namespace", ns, "--wait=false", check=False)


def can(plane: ControlPlane, who: str, verb: str, what: str, namespace: str, *extra: str) -> bool:
    done = plane.kubectl(
        "admin", "auth", "can-i", verb, what, "-n", namespace, f"--as={who}", *extra, check=False
    )
    assert "not found" not in done.stdout, done.stdout  # a binding to a role that is missing
    answer = done.stdout.split(" ", 1)[0].strip()
    assert answer in ("yes", "no"), done.stderr
    return answer == "yes"


def account(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


G = "gates.proompteng.ai"
QUEUE = [f"approvalrequests.{G}", f"approvaldecisions.{G}", f"approvaluses.{G}"]
PLATFORM = [  # what runs derive from (parents, orchestrations) and what they reference
    "schedules.schedules.proompteng.ai",
    "orchestrationruns.orchestration.proompteng.ai",
    "orchestrations.orchestration.proompteng.ai",
    "swarms.swarm.proompteng.ai",
    "implementationspecs.agents.proompteng.ai",
    "agents.agents.proompteng.ai",
    "agentproviders.agents.proompteng.ai",  # the runner an Agent names: content too
]


def test_the_controller_may_make_its_calls_only_where_it_watches(
    control_plane: ControlPlane, release: tuple[str, str, str]
) -> None:
    name, home, runs = release
    controller = account(home, f"{name}-controller")
    allowed: list[tuple[str, str, tuple[str, ...]]] = [
        ("watch", f"approvalrequests.{G}", ()),
        ("update", f"approvalrequests.{G}", ("--subresource=status",)),
        ("delete", f"approvaldecisions.{G}", ()),
        ("create", f"approvaluses.{G}", ()),
        ("delete", f"approvaluses.{G}", ()),
        ("create", "agentruns.agents.proompteng.ai", ()),
        ("patch", "agentruns.agents.proompteng.ai", ()),
        ("create", "events.events.k8s.io", ()),
        ("create", "events", ()),
        # the parents of derived runs, read only (their uses list the parent's approvals)
        ("watch", "schedules.schedules.proompteng.ai", ()),
        ("list", "orchestrationruns.orchestration.proompteng.ai", ()),
        ("get", "orchestrations.orchestration.proompteng.ai", ()),
        ("watch", "swarms.swarm.proompteng.ai", ()),
    ]
    for verb, what, extra in allowed:
        assert can(control_plane, controller, verb, what, runs, *extra), (verb, what)
        # controller.namespaces: nothing in another namespace
        assert not can(control_plane, controller, verb, what, "default", *extra), (verb, what)
    denied: list[tuple[str, str, tuple[str, ...]]] = [
        ("update", f"approvalrequests.{G}", ()),  # never the spec
        ("create", f"approvalrequests.{G}", ()),
        ("create", f"approvaldecisions.{G}", ()),  # it cannot approve
        ("update", f"approvaluses.{G}", ()),
        ("delete", "agentruns.agents.proompteng.ai", ()),
        ("get", "secrets", ()),
        ("create", "signaldeliveries.signals.proompteng.ai", ()),  # off by default
        ("create", "schedules.schedules.proompteng.ai", ()),
        ("patch", "orchestrationruns.orchestration.proompteng.ai", ()),
        ("update", "swarms.swarm.proompteng.ai", ()),
        ("get", "implementationspecs.agents.proompteng.ai", ()),  # uses bind from records
        ("get", "agentproviders.agents.proompteng.ai", ()),
    ]
    for verb, what, extra in denied:
        assert not can(control_plane, controller, verb, what, runs, *extra), (verb, what)


def test_the_controller_lease_is_the_named_one(
    control_plane: ControlPlane, release: tuple[str, str, str]
) -> None:
    name, home, runs = release
    controller = account(home, f"{name}-controller")
    lease = f"leases.coordination.k8s.io/{name}-controller"
    assert can(control_plane, controller, "update", lease, home)
    assert can(control_plane, controller, "create", "leases.coordination.k8s.io", home)
    assert not can(control_plane, controller, "update", "leases.coordination.k8s.io/other", home)
    assert not can(control_plane, controller, "update", lease, runs)


def test_the_revision_floor_is_the_controllers_to_raise_and_the_webhooks_to_read(
    control_plane: ControlPlane, release: tuple[str, str, str]
) -> None:
    """Under any release name the floor is ConfigMap approvalgate-bundle-floor (a name the
    values cannot change) in the release namespace: the controller creates it and updates it
    by name, never deletes or patches it; the webhook may only get it."""
    name, home, runs = release
    controller, webhook = account(home, f"{name}-controller"), account(home, name)
    floor = "configmaps/approvalgate-bundle-floor"
    assert can(control_plane, controller, "create", "configmaps", home)
    assert can(control_plane, controller, "update", floor, home)
    for verb in ("patch", "delete"):
        assert not can(control_plane, controller, verb, floor, home), verb
    assert not can(control_plane, controller, "update", f"configmaps/{name}-bundle", home)
    assert not can(control_plane, controller, "create", "configmaps", runs)
    assert can(control_plane, webhook, "get", floor, home)
    for verb in ("update", "patch", "delete", "create"):
        assert not can(control_plane, webhook, verb, floor, home), verb
    assert not can(control_plane, webhook, "get", f"configmaps/{name}-bundle", home)


def test_the_webhook_view_only_reads_the_queue_and_the_platform_objects_everywhere(
    control_plane: ControlPlane, release: tuple[str, str, str]
) -> None:
    name, home, runs = release
    webhook = account(home, name)
    for what in [*QUEUE, *PLATFORM]:
        for ns in (runs, "default"):
            assert can(control_plane, webhook, "watch", what, ns), what
            assert can(control_plane, webhook, "list", what, ns), what
        for verb in ("create", "update", "patch", "delete"):
            assert not can(control_plane, webhook, verb, what, runs), (verb, what)
    for verb, what in (("list", "agentruns.agents.proompteng.ai"), ("get", "secrets")):
        assert not can(control_plane, webhook, verb, what, runs), what


def bind(plane: ControlPlane, namespace: str, role: str, user: str) -> None:
    plane.kubectl(
        "admin",
        "create",
        "rolebinding",
        f"{role}-{user}",
        f"--clusterrole={role}",
        f"--user={user}",
        "-n",
        namespace,
    )


def test_people_get_what_their_role_says(
    control_plane: ControlPlane, release: tuple[str, str, str]
) -> None:
    name, _, runs = release
    bind(control_plane, runs, f"{name}-requester", "rita")
    bind(control_plane, runs, f"{name}-approver", "avery")
    bind(control_plane, runs, f"{name}-queue-admin", "quinn")
    requests, decisions, uses = QUEUE
    expect: dict[str, dict[tuple[str, str], bool]] = {
        "rita": {
            ("create", requests): True,
            ("patch", requests): True,  # cancel (the webhook allows only that)
            ("watch", decisions): True,
            ("create", decisions): False,  # a requester cannot approve
            ("delete", requests): False,
            ("get", uses): False,
        },
        "avery": {
            ("watch", requests): True,
            ("create", decisions): True,
            ("create", requests): False,
            ("update", decisions): False,
            ("delete", decisions): False,
            # what they approve, read-only (issue 16: approve --cluster / --request)
            ("get", "implementationspecs.agents.proompteng.ai"): True,
            ("get", "agentproviders.agents.proompteng.ai"): True,
            ("update", "agentproviders.agents.proompteng.ai"): False,
            ("list", "schedules.schedules.proompteng.ai"): True,
            ("get", "orchestrations.orchestration.proompteng.ai"): True,
            ("update", "implementationspecs.agents.proompteng.ai"): False,
            ("create", "agentruns.agents.proompteng.ai"): False,
        },
        "quinn": {
            ("delete", decisions): True,
            ("delete", uses): True,
            ("deletecollection", requests): True,
        },
    }
    for user, table in expect.items():
        got = {key: can(control_plane, user, *key, runs) for key in table}
        assert got == table, user
        # only the controller writes a request's status
        assert not can(control_plane, user, "update", requests, runs, "--subresource=status")
        assert not can(control_plane, user, "create", requests, "default"), user  # bound per ns


def test_nothing_is_aggregated_into_edit_by_default(
    control_plane: ControlPlane, release: tuple[str, str, str]
) -> None:
    _, _, runs = release
    bind(control_plane, runs, "edit", "eddie")
    for verb, what in (("create", QUEUE[1]), ("create", QUEUE[0]), ("list", QUEUE[2])):
        assert not can(control_plane, "eddie", verb, what, runs), (verb, what)
