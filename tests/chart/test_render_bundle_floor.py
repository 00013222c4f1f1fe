"""The bundle revision floor in the chart (docs/design.md, "The revision floor"): both pods
get ``--bundle-floor <release namespace>/approvalgate-bundle-floor`` when signed bundles are
enforced (a name no value changes; extra arguments may not override it); the webhook may
only get that ConfigMap by name, the controller may create it and get/update it by name
(never delete, patch, list or watch); the chart never renders the ConfigMap itself (the
compiled values must not write it); and the webhook mounts its token and reaches the API
server even without its cluster view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from approvalgate.cli import build_parser
from approvalgate.commands._runtime_trust import trust_args
from tests.chart.support import (
    NAMESPACE,
    HelmError,
    by_kind,
    component,
    example_values,
    one,
    render,
)
from tests.chart.support import webhook_part as webhook_objects

pytestmark = pytest.mark.helm

FLOOR = "approvalgate-bundle-floor"


def args_of(objects: list[dict[str, Any]], part: str) -> list[str]:
    found = webhook_objects(objects) if part == "webhook" else component(objects, part)
    args: list[str] = one(found, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def floor_rules(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rules on ConfigMaps of every Role and ClusterRole, by the role's name."""
    found: dict[str, list[dict[str, Any]]] = {}
    for role in by_kind(objects, "Role") + by_kind(objects, "ClusterRole"):
        rules = [r for r in role.get("rules") or [] if "configmaps" in r.get("resources", [])]
        if rules:
            found[role["metadata"]["name"]] = rules
    return found


@pytest.mark.parametrize("part", ["webhook", "controller"])
def test_both_pods_read_the_floor_the_controller_keeps(helm: Path, part: str) -> None:
    args = args_of(render(helm, example_values("prod")), part)
    assert args[args.index("--bundle-floor") + 1] == f"{NAMESPACE}/{FLOOR}"
    assert trust_args(build_parser().parse_args(args)).floor == f"{NAMESPACE}/{FLOOR}"


def test_only_the_controller_writes_the_floor_and_only_by_name(helm: Path) -> None:
    objects = render(helm, example_values("prod"))
    assert not [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == FLOOR]
    rules = floor_rules(objects)
    assert rules == {
        "approvalgate-webhook-floor": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [FLOOR],
                "verbs": ["get"],
            }
        ],
        "approvalgate-controller-floor": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [FLOOR],
                "verbs": ["get", "update"],
            },
        ],
    }
    for role in ("approvalgate-webhook-floor", "approvalgate-controller-floor"):
        assert (
            one([r for r in by_kind(objects, "Role") if r["metadata"]["name"] == role], "Role")[
                "metadata"
            ]["namespace"]
            == NAMESPACE
        )
    for name, account in (
        ("approvalgate-webhook-floor", "approvalgate"),
        ("approvalgate-controller-floor", "approvalgate-controller"),
    ):
        (binding,) = [b for b in by_kind(objects, "RoleBinding") if b["metadata"]["name"] == name]
        assert binding["roleRef"]["name"] == name
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]


def test_without_the_controller_the_webhook_still_reads_the_floor(helm: Path) -> None:
    """The compiled values may switch the controller off: a floor it recorded stays in
    force (the ConfigMap is not the chart's, so it stays too); nothing raises it then."""
    objects = render(helm, example_values("prod"), sets=["controller.enabled=false"])
    args = args_of(objects, "webhook")
    assert args[args.index("--bundle-floor") + 1] == f"{NAMESPACE}/{FLOOR}"
    assert list(floor_rules(objects)) == ["approvalgate-webhook-floor"]


def test_no_floor_without_signatures(helm: Path) -> None:
    objects = render(
        helm, sets=["bundleSigning.publicKeys=null", "bundleSigning.allowUnsigned=true"]
    )
    assert "--bundle-floor" not in args_of(objects, "webhook")
    assert "--bundle-floor" not in args_of(objects, "controller")
    assert not floor_rules(objects)


def test_the_floors_name_is_never_the_values(helm: Path) -> None:
    """fullnameOverride renames every object of the release, but not the floor: pointed at
    a fresh, empty floor the pods would take an older bundle back."""
    objects = render(helm, example_values("prod"), sets=["fullnameOverride=gate"])
    for part in ("webhook", "controller"):
        args = args_of(objects, part)
        assert args[args.index("--bundle-floor") + 1] == f"{NAMESPACE}/{FLOOR}"
    for rules in floor_rules(objects).values():
        assert [r.get("resourceNames") for r in rules if "get" in r["verbs"]] == [[FLOOR]]


@pytest.mark.parametrize(
    "arg",
    [
        "--bundle-floor=",
        "--bundle-min-revision=0",
        "--bundle-key=evil.pub",
        "--allow-unsigned-bundle",
    ],
)
def test_extra_arguments_cannot_change_which_bundles_are_enforced(helm: Path, arg: str) -> None:
    """controller.extraArgs come with the compiled values: appended last, they would win."""
    with pytest.raises(HelmError, match=r"controller\.extraArgs holds"):
        render(helm, example_values("prod"), sets=[f"controller.extraArgs={{{arg}}}"])


def test_the_webhook_reads_the_floor_without_its_cluster_view(helm: Path) -> None:
    objects = render(helm, example_values("prod"), sets=["webhook.clusterView=false"])
    webhook = webhook_objects(objects)
    spec = one(webhook, "Deployment")["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is True
    args = spec["containers"][0]["args"]
    assert args[args.index("--cluster-view") + 1] == "off" and "--bundle-floor" in args
    egress = one(webhook, "NetworkPolicy")["spec"]["egress"]
    assert any(443 in [p["port"] for p in rule.get("ports", [])] for rule in egress), egress
    assert not [
        r for r in by_kind(objects, "ClusterRole") if r["metadata"]["name"].endswith("-view")
    ]
    without = render(
        helm,
        sets=[
            "webhook.clusterView=false",
            "bundleSigning.publicKeys=null",
            "bundleSigning.allowUnsigned=true",
        ],
    )
    assert (
        one(webhook_objects(without), "Deployment")["spec"]["template"]["spec"][
            "automountServiceAccountToken"
        ]
        is False
    )


def test_the_audit_may_read_the_floor_by_name_and_nothing_else_there(helm: Path) -> None:
    """The audit CronJob compares the mounted bundle with the floor: its ServiceAccount may
    get that ConfigMap by name in the release namespace, never write it."""
    objects = render(helm, example_values("prod"), sets=["audit.enabled=true"])
    assert floor_rules(objects)["approvalgate-audit-floor"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [FLOOR], "verbs": ["get"]}
    ]
    (role,) = [
        r for r in by_kind(objects, "Role") if r["metadata"]["name"] == "approvalgate-audit-floor"
    ]
    assert role["metadata"]["namespace"] == NAMESPACE
    (binding,) = [
        b
        for b in by_kind(objects, "RoleBinding")
        if b["metadata"]["name"] == "approvalgate-audit-floor"
    ]
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "approvalgate-audit-floor",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "approvalgate-audit", "namespace": NAMESPACE}
    ]
    # no audit, or no floor: no such Role
    assert "approvalgate-audit-floor" not in floor_rules(render(helm, example_values("prod")))
    unsigned = render(
        helm,
        sets=[
            "audit.enabled=true",
            "bundleSigning.publicKeys=null",
            "bundleSigning.allowUnsigned=true",
        ],
    )
    assert "approvalgate-audit-floor" not in floor_rules(unsigned)


#: what controller.extraArgs may hold: tuning that only delays or logs, nothing the chart
#: renders itself (argparse takes the last value) and nothing that chooses what the controller
#: trusts, where it connects, what it watches or where it sends what it knows
TUNING = [
    "--log-level=debug",
    "--resync-seconds=120",
    "--resync=120",
    "--gc-interval=600",
    "--gc-max-deletes=10",
    "--no-gc",
    "--notify-expiring-before=7200",
    "--grace-period=20",
    "--lease-duration=30",
    "--renew-deadline=20",
    "--retry-period=4",
]


@pytest.mark.parametrize(
    "args",
    [
        # a prefix argparse reads as the option itself (allow_abbrev), past a guard by name
        ["--allow"],
        ["--allow-unsig"],
        ["--bundle-thr=0"],
        # options the chart renders, which the last value overrides
        ["--bundle=/etc/hostname"],
        ["--bundle", "/etc/hostname"],
        ["--namespace=kube-public"],
        ["--lease-namespace=kube-public"],
        ["--lease-name=other"],
        ["--identity=one-for-every-replica"],
        ["--health-port=0"],
        ["--metrics-port=0"],
        ["--signal-deliveries"],
        # where it connects, what it sends where, and its safety bounds
        ["--kubeconfig=/etc/hostname"],
        ["--context=other"],
        ["--host=127.0.0.1"],
        ["--notify-url=https://hooks.example/collect"],
        ["--notify-url-file=/etc/hostname"],
        ["--view-max-age=86400"],
        ["--reload-interval=86400"],
        ["--signal-name=other"],
        # a value that is an option, and a short option
        ["--log-level", "--allow"],
        ["-h"],
    ],
    ids=" ".join,
)
def test_extra_arguments_may_only_tune_the_controller(helm: Path, args: list[str]) -> None:
    """controller.extraArgs come with the compiled values (the policy repo's file) and are
    appended last: the earlier guard refused `--bundle-*` and `--allow-unsigned` by name, but
    argparse takes any unambiguous prefix of an option (`--allow` is
    `--allow-unsigned-bundle`, which with pinned keys stops the controller, and with it the
    revision floor), and the last value of an option the chart set. Now only the listed
    tuning options pass, by their whole name."""
    listed = "{" + ",".join(a.replace(",", "\\,") for a in args) + "}"
    try:
        objects = render(helm, example_values("prod"), sets=[f"controller.extraArgs={listed}"])
    except HelmError as exc:
        message = exc.stderr
    else:
        container = one(
            [o for o in objects if o["metadata"]["name"].endswith("-controller")], "Deployment"
        )["spec"]["template"]["spec"]["containers"][0]
        try:
            parsed = vars(build_parser().parse_args(container["args"]))
        except SystemExit:
            parsed = {}
        pytest.fail(f"rendered; the controller reads it as {parsed}")
    assert "controller.extraArgs holds" in message


@pytest.mark.parametrize("arg", TUNING)
def test_tuning_arguments_pass_and_change_nothing_the_chart_set(helm: Path, arg: str) -> None:
    def controller_args(objects: list[dict[str, Any]]) -> list[str]:
        deployment = one(
            [o for o in objects if o["metadata"]["name"].endswith("-controller")], "Deployment"
        )
        return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])

    plain = vars(build_parser().parse_args(controller_args(render(helm, example_values("prod")))))
    tuned = vars(
        build_parser().parse_args(
            controller_args(
                render(helm, example_values("prod"), sets=[f"controller.extraArgs={{{arg}}}"])
            )
        )
    )
    changed = {k for k in plain if plain[k] != tuned[k]}
    assert len(changed) == 1, changed
    assert not changed & {"bundle", "bundle_key", "allow_unsigned_bundle", "namespace", "identity"}
