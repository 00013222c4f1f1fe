"""The bundle revision floor kept in the cluster (approvals.bundle_floor, kube.floor): an
editor of the compiled values who is not a signer puts back an older signed bundle with its
signatures and its old revision; the pinned minimum (the chart's default: that old revision)
lets it through, the floor the controller recorded does not. The floor only rises, a
floor that cannot be read refuses (fail closed), a process without a bundle reads it again
(an operator lowered it, the API server came back), unsigned mode has none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from approvalgate.approvals import bundle_floor as bf
from approvalgate.approvals import bundle_trust as bt
from approvalgate.approvals.bundle_source import BundleSource
from approvalgate.approvals.policy import bundle_generation, dump_bundle
from approvalgate.kube.errors import ApiError, UnreachableError
from approvalgate.kube.floor import ConfigMapFloor
from approvalgate.webhook.state import BundleState
from tests.support import bundle_signing
from tests.support.floor_server import FloorApiServer, write_kubeconfig
from tests.support.paths import ROOT

EXAMPLE = ROOT / "examples" / "gitops-repo" / "rendered" / "prod" / "bundle.json"
WHERE = "ConfigMap/approvalgate-system/approvalgate-bundle-floor"


def _bundle(revision: int, **changes: Any) -> bytes:
    obj = json.loads(EXAMPLE.read_text())
    obj.update(changes)
    obj["revision"] = revision
    obj["generation"] = bundle_generation(obj)
    return dump_bundle(obj).encode()


def _trust(min_revision: int = 0) -> bt.BundleTrust:
    return bt.BundleTrust(
        (bundle_signing.signer().public_key,), 1, min_revision, environment="prod"
    )


class Floor:
    """A floor read from memory; ``error`` makes every read fail like an unreachable API."""

    where = WHERE

    def __init__(self, revision: int = 0) -> None:
        self.revision = revision
        self.error = False
        self.reads = 0

    def read(self, environment: str) -> int:
        assert environment == "prod"
        self.reads += 1
        if self.error:
            raise bt.BundleRefused(bt.FLOOR_UNKNOWN, "the bundle revision floor cannot be read")
        return self.revision


def _source(floor: Floor | None, min_revision: int = 0) -> BundleSource:
    return BundleSource(_trust(min_revision), lambda: None, floor=floor)


def _open(source: BundleSource, raw: bytes) -> Any:
    return source.open(raw, "bundle.json", (bundle_signing.signatures_text(raw).encode(),))


# --- the pure parts ----------------------------------------------------------------------------


def test_the_floor_of_an_environment_and_its_absence() -> None:
    assert bf.read_floor(None, "prod", WHERE) == 0  # first install: no ConfigMap yet
    assert bf.read_floor({}, "prod", WHERE) == 0
    assert bf.read_floor({"dev": "9"}, "prod", WHERE) == 0  # another environment's floor
    assert bf.read_floor({"prod": "7", "dev": "9"}, "prod", WHERE) == 7
    assert bf.read_floor({"any-environment": "3"}, "", WHERE) == 3


@pytest.mark.parametrize("text", ["", "x", "-1", "07", "1e3", " 7", "7\n", "9" * 19])
def test_a_malformed_floor_refuses_rather_than_reading_as_zero(text: str) -> None:
    with pytest.raises(bt.BundleRefused) as caught:
        bf.read_floor({"prod": text}, "prod", WHERE)
    assert caught.value.reason == bt.FLOOR_UNKNOWN
    assert WHERE in caught.value.message and "'prod'" in caught.value.message


def test_the_floor_only_rises() -> None:
    assert bf.raised(None, "prod", 5) == {"prod": "5"}
    assert bf.raised({"dev": "9"}, "prod", 5) == {"dev": "9", "prod": "5"}
    assert bf.raised({"prod": "5"}, "prod", 7) == {"prod": "7"}
    assert bf.raised({"prod": "7"}, "prod", 5) == {"prod": "7"}  # never lowered
    assert bf.raised({"prod": "7"}, "prod", 7) == {"prod": "7"}
    assert bf.raised({"prod": "junk"}, "prod", 7) == {"prod": "junk"}  # refused, not fixed
    with pytest.raises(ValueError, match="cannot name a ConfigMap key"):
        bf.floor_key("pr/od")


def test_the_operators_command_lowers_exactly_that_entry() -> None:
    command = bf.lower_command(WHERE, "prod", 4)
    assert command == (
        "kubectl -n approvalgate-system patch configmap approvalgate-bundle-floor"
        ' --type merge -p \'{"data":{"prod":"4"}}\''
    )


# --- opening a bundle against the floor ----------------------------------------------------------


def test_an_older_signed_bundle_meeting_the_pinned_minimum_is_refused_below_the_floor() -> None:
    """The attack: the compiled values put back revision 5 with its signatures, and the
    chart's pinned minimum follows them (5). The floor (7, recorded when 7 was in force)
    refuses it, with what to do."""
    old = _bundle(5)
    assert _open(_source(None, min_revision=5), old).revision == 5  # the hole without a floor
    with pytest.raises(bt.BundleRefused) as caught:
        _open(_source(Floor(7), min_revision=5), old)
    refused = caught.value
    assert refused.reason == bt.BELOW_FLOOR
    assert "revision 5, below revision 7" in refused.message
    assert WHERE in refused.message and "rollback" in refused.message
    assert "revision 7 or higher" in refused.advice
    assert bf.lower_command(WHERE, "prod", 5) in refused.advice


def test_at_or_above_the_floor_a_signed_bundle_opens() -> None:
    floor = Floor(7)
    assert _open(_source(floor), _bundle(7)).revision == 7
    assert _open(_source(floor), _bundle(8)).revision == 8
    assert floor.reads == 2  # once per content opened
    assert _open(_source(Floor(0)), _bundle(1)).revision == 1  # first install


def test_a_floor_that_cannot_be_read_refuses() -> None:
    floor = Floor(0)
    floor.error = True
    with pytest.raises(bt.BundleRefused) as caught:
        _open(_source(floor), _bundle(9))
    assert caught.value.reason == bt.FLOOR_UNKNOWN


def test_a_refused_signature_is_refused_before_the_floor_is_read() -> None:
    floor = Floor(0)
    source = _source(floor)
    with pytest.raises(bt.BundleRefused) as caught:
        source.open(_bundle(9), "bundle.json", (None,))
    assert caught.value.reason == bt.UNSIGNED and floor.reads == 0


def test_unsigned_mode_reads_no_floor() -> None:
    floor = Floor(99)
    source = BundleSource(bt.BundleTrust(allow_unsigned=True), lambda: None, floor=floor)
    assert source.open(_bundle(1), "bundle.json", (None,)).revision == 1
    assert floor.reads == 0


# --- a process without a bundle reads the floor again -------------------------------------------


def test_a_webhook_refused_below_the_floor_loads_once_an_operator_lowers_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bundle.json"
    raw = _bundle(5)
    path.write_bytes(raw)
    (tmp_path / "bundle.sig.json").write_text(bundle_signing.signatures_text(raw))
    floor = Floor(7)
    state = BundleState(path, trust=_trust(5), floor=floor)
    state.file.retry_interval = 0.0
    assert not state.load()
    assert state.bundle is None and state.refusal == bt.BELOW_FLOOR
    assert not state.load() and floor.reads == 2  # read again: no bundle in force
    floor.revision = 5  # the operator's deliberate rollback
    assert state.load() and state.bundle is not None and state.bundle.revision == 5
    assert not state.load() and floor.reads == 3  # in force: the same content is not reread


def test_a_refusal_the_floor_cannot_lift_is_not_read_again(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_bytes(_bundle(5))  # unsigned
    floor = Floor(0)
    state = BundleState(path, trust=_trust(), floor=floor)
    state.file.retry_interval = 0.0
    assert not state.load() and state.refusal == bt.UNSIGNED
    failures = state.failures
    assert not state.load() and state.failures == failures


# --- the ConfigMap -----------------------------------------------------------------------------


class FakeClient:
    """The API server's ConfigMaps of one namespace, with resourceVersions and conflicts."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.writes: list[str] = []
        self.conflicts = 0
        self.fail: Exception | None = None

    def request(self, what: str, method: str, path: str, **kw: Any) -> Any:
        if self.fail is not None:
            raise self.fail
        name = path.rsplit("/", 1)[-1]
        if method == "GET":
            obj = self.objects.get(name)
            return json.loads(json.dumps(obj)) if obj is not None else None
        self.writes.append(method)
        body = kw["body"]
        if self.conflicts:
            self.conflicts -= 1
            raise ApiError("conflict", status=409)
        if method == "POST":
            name = body["metadata"]["name"]
            if name in self.objects:
                raise ApiError("exists", status=409)
            body["metadata"]["resourceVersion"] = "1"
        else:
            stored = self.objects[name]["metadata"]["resourceVersion"]
            if body["metadata"]["resourceVersion"] != stored:
                raise ApiError("conflict", status=409)
            body["metadata"]["resourceVersion"] = str(int(stored) + 1)
        self.objects[name] = body
        return body


def _floor(client: FakeClient) -> ConfigMapFloor:
    return ConfigMapFloor(client, "approvalgate-system", "approvalgate-bundle-floor")  # type: ignore[arg-type]


def test_the_controller_creates_then_only_raises_the_configmap() -> None:
    client = FakeClient()
    floor = _floor(client)
    assert floor.where == WHERE
    assert floor.read("prod") == 0
    assert floor.raise_to("prod", 5) == 5
    stored = client.objects["approvalgate-bundle-floor"]
    assert stored["data"] == {"prod": "5"}
    # never Argo CD's tracking label: a prune of the release must not delete the floor
    assert "app.kubernetes.io/instance" not in stored["metadata"]["labels"]
    assert floor.raise_to("prod", 7) == 7 and floor.read("prod") == 7
    assert floor.raise_to("prod", 6) == 7  # a lower revision never lowers it
    assert client.writes == ["POST", "PUT"]


def test_a_raise_that_conflicts_reads_again_and_never_lowers() -> None:
    client = FakeClient()
    floor = _floor(client)
    floor.raise_to("prod", 5)
    client.conflicts = 2
    assert floor.raise_to("prod", 6) == 6
    client.conflicts = 99
    with pytest.raises(Exception, match="kept changing"):
        floor.raise_to("prod", 8)
    assert floor.read("prod") == 6


def test_an_unreachable_api_server_is_floor_unknown() -> None:
    client = FakeClient()
    client.fail = UnreachableError("cannot reach the API server")
    with pytest.raises(bt.BundleRefused) as caught:
        _floor(client).read("prod")
    assert caught.value.reason == bt.FLOOR_UNKNOWN
    assert "cannot be read" in caught.value.message


def test_the_reference_of_the_flag() -> None:
    assert bf.parse_reference("ns/name") == ("ns", "name")
    for bad in ("name", "/name", "ns/", "a/b/c"):
        with pytest.raises(ValueError, match="NAMESPACE/NAME"):
            bf.parse_reference(bad)


# --- the audit: who may lower the floor ----------------------------------------------------------

CONTROLLER = "system:serviceaccount:approvalgate-system:approvalgate-controller"


def _role(name: str, *rules: dict[str, Any], namespace: str = "") -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"metadata": meta, "rules": list(rules)}


def _binding(name: str, role: str, kind: str, subject: dict[str, Any], ns: str = "") -> Any:
    meta = {"name": name, **({"namespace": ns} if ns else {})}
    return {"metadata": meta, "roleRef": {"kind": kind, "name": role}, "subjects": [subject]}


def test_the_audit_reports_who_may_lower_the_floor_but_not_its_writer() -> None:
    from approvalgate.audit.rbac import audit_floor_writers

    ns = "approvalgate-system"
    chart = _role(  # the chart's controller Role: create, and get/update by name
        "approvalgate-controller-lease",
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["approvalgate-bundle-floor"],
            "verbs": ["get", "update"],
        },
        namespace=ns,
    )
    other = _role(  # the bundle's editor, by name: not the floor
        "bundle-editor",
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["approvalgate-bundle"],
            "verbs": ["update", "patch"],
        },
        namespace=ns,
    )
    wide = _role("cm-admin", {"apiGroups": [""], "resources": ["*"], "verbs": ["*"]})
    controller_sa = {"kind": "ServiceAccount", "name": "approvalgate-controller", "namespace": ns}
    findings = audit_floor_writers(
        ns,
        "approvalgate-bundle-floor",
        CONTROLLER,
        roles=[chart, other],
        cluster_roles=[wide],
        role_bindings=[
            _binding("ctl", "approvalgate-controller-lease", "Role", controller_sa, ns),
            _binding("ed", "bundle-editor", "Role", {"kind": "User", "name": "mallory"}, ns),
            _binding("ns-admin", "cm-admin", "ClusterRole", {"kind": "User", "name": "eve"}, ns),
            _binding(  # elsewhere: not the floor's namespace
                "far", "cm-admin", "ClusterRole", {"kind": "User", "name": "far"}, "default"
            ),
            # the controller bound to more than it needs: its delete is a finding
            _binding("ctl-wide", "cm-admin", "ClusterRole", controller_sa, ns),
        ],
        cluster_role_bindings=[
            _binding("argo", "cm-admin", "ClusterRole", {"kind": "Group", "name": "argo"}),
        ],
    )
    by_subject = {f.subject: f for f in findings if "can act as" not in f.message}
    assert sorted(by_subject) == [
        "Group/argo",
        f"ServiceAccount/{ns}/approvalgate-controller",
        "User/eve",
    ]
    # `*` on everything also runs pods as the controller: that too, never for itself
    acting = sorted(f.subject for f in findings if "can act as" in f.message)
    assert acting == ["Group/argo", "User/eve"]
    assert (
        "may patch, delete and deletecollection"
        in by_subject[f"ServiceAccount/{ns}/approvalgate-controller"].message
    )  # update is its own
    eve = by_subject["User/eve"]
    assert eve.severity == "finding" and "update, patch, delete and deletecollection" in eve.message
    assert "RoleBinding approvalgate-system/ns-admin -> ClusterRole cm-admin" in eve.message
    assert "ConfigMap/approvalgate-system/approvalgate-bundle-floor" in eve.message


def test_an_unreadable_floor_is_read_again_even_with_a_bundle_in_force(tmp_path: Path) -> None:
    """A new bundle arriving while the API server is away must not be missed: once it is
    back, the same content is opened again, without a change of the files."""
    path = tmp_path / "bundle.json"

    def deploy(revision: int) -> None:
        raw = _bundle(revision)
        path.write_bytes(raw)
        (tmp_path / "bundle.sig.json").write_text(bundle_signing.signatures_text(raw))

    deploy(5)
    floor = Floor(0)
    state = BundleState(path, trust=_trust(), floor=floor)
    state.file.retry_interval = 0.0
    assert state.load()
    floor.error = True
    deploy(6)
    assert not state.load() and state.refusal == bt.FLOOR_UNKNOWN
    assert state.bundle is not None and state.bundle.revision == 5  # the last good one stays
    floor.error = False
    assert state.load() and state.bundle.revision == 6


def test_below_the_floor_with_a_bundle_in_force_is_not_read_again() -> None:
    assert bf.read_again(bt.FLOOR_UNKNOWN, in_force=True)
    assert bf.read_again(bt.FLOOR_UNKNOWN, in_force=False)
    assert bf.read_again(bt.BELOW_FLOOR, in_force=False)
    assert not bf.read_again(bt.BELOW_FLOOR, in_force=True)
    assert not bf.read_again(bt.ROLLBACK, in_force=False)


def test_the_controller_raises_the_floor_to_the_revision_in_force_and_retries(
    tmp_path: Path,
) -> None:
    import asyncio

    from approvalgate.controller.config import ControllerConfig
    from approvalgate.controller.service import ControllerService

    path = tmp_path / "bundle.json"
    raw = _bundle(7)
    path.write_bytes(raw)
    (tmp_path / "bundle.sig.json").write_text(bundle_signing.signatures_text(raw))
    client = FakeClient()
    config = ControllerConfig(
        bundle=path,
        identity="ctrl",
        lease_namespace="approvalgate-system",
        bundle_keys=(bundle_signing.public_pem(),),
        bundle_environment="prod",
        bundle_floor="approvalgate-system/approvalgate-bundle-floor",
    )
    service = ControllerService(config, client)  # type: ignore[arg-type]
    assert service.bundle_file.load()
    client.fail = UnreachableError("cannot reach the API server")
    asyncio.run(service.raise_floor())  # logged, retried on the next tick
    assert service.floor_recorded == 0 and not client.objects
    client.fail = None
    asyncio.run(service.raise_floor())
    assert client.objects["approvalgate-bundle-floor"]["data"] == {"prod": "7"}
    assert service.floor_recorded == 7
    assert service.metrics.bundle_floor._value.get() == 7
    asyncio.run(service.raise_floor())  # nothing new in force: nothing written
    assert client.writes == ["POST"]


# --- a floor whose credentials were not there at start ------------------------------------------


def test_a_floor_whose_credentials_fail_at_start_connects_on_a_later_read(tmp_path: Path) -> None:
    """The pod started before its credentials could be loaded (a token not yet mounted, an
    exec plugin that could not reach its issuer): every read refuses (fail closed), and a
    later read (the state's retry) connects, so the pod becomes ready without a restart."""
    from approvalgate.kube.floor import connect_floor

    api = FloorApiServer({"prod": "7"})
    try:
        kubeconfig = tmp_path / "kubeconfig"  # not there yet
        floor = connect_floor("approvalgate-system/approvalgate-bundle-floor", kubeconfig)
        assert floor.where == WHERE
        for _ in range(2):  # refused each time, never a traceback
            with pytest.raises(bt.BundleRefused) as caught:
                floor.read("prod")
            assert caught.value.reason == bt.FLOOR_UNKNOWN
            assert "cannot load Kubernetes credentials" in caught.value.message
        assert api.gets == 0
        write_kubeconfig(kubeconfig, api.url)
        assert floor.read("prod") == 7
        api.data["prod"] = "8"
        assert floor.read("prod") == 8 and api.gets == 2  # connected once, read each time
    finally:
        api.close()


def test_a_webhook_started_without_credentials_loads_its_bundle_once_they_come(
    tmp_path: Path,
) -> None:
    """The webhook's own path: BundleState with the floor the server makes (server._floor)
    retries the refused content, and the retry reaches the API server once it can."""
    from approvalgate.webhook.config import ServeConfig
    from approvalgate.webhook.server import _floor

    api = FloorApiServer({"prod": "7"})
    try:
        path = tmp_path / "bundle.json"
        raw = _bundle(7)
        path.write_bytes(raw)
        (tmp_path / "bundle.sig.json").write_text(bundle_signing.signatures_text(raw))
        kubeconfig = tmp_path / "kubeconfig"
        config = ServeConfig(
            bundle=path,
            tls_cert=tmp_path / "tls.crt",
            tls_key=tmp_path / "tls.key",
            kubeconfig=kubeconfig,
            bundle_floor="approvalgate-system/approvalgate-bundle-floor",
        )
        floor = _floor(config)
        assert floor is not None
        state = BundleState(path, trust=_trust(), floor=floor)
        state.file.retry_interval = 0.0
        assert not state.load() and state.refusal == bt.FLOOR_UNKNOWN
        write_kubeconfig(kubeconfig, api.url)
        assert state.load() and state.bundle is not None and state.bundle.revision == 7
    finally:
        api.close()


def test_the_audit_reports_who_may_act_as_the_floors_writer() -> None:
    """The controller's ServiceAccount may update the floor: whoever may impersonate it,
    mint a token for it, run a pod as it or enter its pods (or grant itself these) in its
    namespace can lower the floor through that update, as the audit of trusted
    ServiceAccounts already reports for them."""
    from approvalgate.audit.rbac import audit_floor_writers

    ns = "approvalgate-system"
    writer_rules = _role(
        "approvalgate-controller-lease",
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["approvalgate-bundle-floor"],
            "verbs": ["get", "update"],
        },
        namespace=ns,
    )
    impersonate = _role(
        "impersonate-controller",
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts"],
            "resourceNames": ["approvalgate-controller"],
            "verbs": ["impersonate"],
        },
    )
    token = _role(
        "token",
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
        namespace=ns,
    )
    pods = _role("pods", {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]})
    enter = _role("enter", {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]})
    escalate = _role(
        "escalate",
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["*"]},
    )
    other_sa = _role(  # another ServiceAccount's token: not the controller
        "other-token",
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts/token"],
            "resourceNames": ["someone-else"],
            "verbs": ["create"],
        },
        namespace=ns,
    )
    controller_sa = {"kind": "ServiceAccount", "name": "approvalgate-controller", "namespace": ns}

    def user(name: str) -> dict[str, str]:
        return {"kind": "User", "name": name}

    findings = audit_floor_writers(
        ns,
        "approvalgate-bundle-floor",
        CONTROLLER,
        roles=[writer_rules, token, other_sa],
        cluster_roles=[impersonate, pods, enter, escalate],
        role_bindings=[
            _binding("ctl", "approvalgate-controller-lease", "Role", controller_sa, ns),
            # the controller entering its own pods is itself: never a finding
            _binding("ctl-exec", "enter", "ClusterRole", controller_sa, ns),
            _binding("tok", "token", "Role", user("minter"), ns),
            _binding("run", "pods", "ClusterRole", user("runner"), ns),
            _binding("ex", "enter", "ClusterRole", user("execer"), ns),
            _binding("esc", "escalate", "ClusterRole", user("escalator"), ns),
            _binding("other", "other-token", "Role", user("bystander"), ns),
            # pods elsewhere run as that namespace's accounts, not the controller's
            _binding("far", "pods", "ClusterRole", user("far"), "default"),
        ],
        cluster_role_bindings=[
            _binding("imp", "impersonate-controller", "ClusterRole", user("impersonator")),
        ],
    )
    by_subject = {f.subject: f.message for f in findings}
    assert sorted(by_subject) == [
        "User/escalator",
        "User/execer",
        "User/impersonator",
        "User/minter",
        "User/runner",
    ]
    assert "impersonate it via ClusterRoleBinding imp" in by_subject["User/impersonator"]
    assert "mint tokens for it via RoleBinding approvalgate-system/tok" in by_subject["User/minter"]
    assert "run pods as it" in by_subject["User/runner"]
    assert "enter its running pods" in by_subject["User/execer"]
    assert "grant itself these" in by_subject["User/escalator"]
    for message in by_subject.values():
        assert f"can act as {CONTROLLER}" in message
        assert "ConfigMap/approvalgate-system/approvalgate-bundle-floor" in message
        assert "lower the floor" in message


def test_the_floor_audit_follows_chains_and_never_files_everyone_as_the_control_plane() -> None:
    """Fifth red-team pass: whoever may impersonate a user who may act as the writer lowers
    the floor too; a write of the floor bound to system:authenticated under the default
    bindings' label (anyone creating a binding may set it) is a finding, not skipped."""
    from approvalgate.audit.rbac import audit_floor_writers

    ns = "approvalgate-system"
    pods = _role("pods", {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]})
    impersonate = _role(
        "impersonate-ed",
        {
            "apiGroups": [""],
            "resources": ["users"],
            "resourceNames": ["ed"],
            "verbs": ["impersonate"],
        },
    )
    writes = _role(
        "floor-writes", {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch"]}
    )
    everyone = _binding(
        "everyone", "floor-writes", "ClusterRole", {"kind": "Group", "name": "system:authenticated"}
    )
    everyone["metadata"]["labels"] = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    findings = audit_floor_writers(
        ns,
        "approvalgate-bundle-floor",
        CONTROLLER,
        roles=[],
        cluster_roles=[pods, impersonate, writes],
        role_bindings=[_binding("run", "pods", "ClusterRole", {"kind": "User", "name": "ed"}, ns)],
        cluster_role_bindings=[
            _binding("imp", "impersonate-ed", "ClusterRole", {"kind": "User", "name": "ivan"}),
            everyone,
        ],
    )
    by_subject = {f.subject: f.message for f in findings}
    assert sorted(by_subject) == ["Group/system:authenticated", "User/ed", "User/ivan"]
    assert "act as User ed (impersonate it via ClusterRoleBinding imp" in by_subject["User/ivan"]
    assert "may patch the bundle revision floor" in by_subject["Group/system:authenticated"]
