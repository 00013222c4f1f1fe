"""Who can act as a trusted ServiceAccount (audit.rbac), from hand-built RBAC objects.

The roles are written as clusters hold them: the built-in ``edit`` ClusterRole with its
aggregation rule and no rules of its own (as the API server creates it), the rules in
``system:aggregate-to-edit``; RoleBindings to ClusterRoles; groups and ServiceAccounts as
subjects; wildcards and resourceNames.
"""

from __future__ import annotations

from typing import Any

import pytest

from approvalgate.approvals.bundle import parse_bundle_text
from approvalgate.approvals.policy import BundleSettings
from approvalgate.audit.rbac import (
    Release,
    Target,
    allows,
    audit_holder_roles,
    audit_rbac,
    audit_release_holders,
    audit_switch_holders,
    effective_cluster_roles,
    targets,
)
from tests.support.corpus import BASE, compile_case_bundle

NS, NAME = "agents-system", "submission-api"
SUBMITTER = Target(
    f"system:serviceaccount:{NS}:{NAME}", NS, NAME, False, ("trusted submitter",), ("p",)
)
GROUP = Target(f"system:serviceaccounts:{NS}", NS, "", True, ("trusted submitter",), ("p",))
PERSON = Target("ci-bot", None, "ci-bot", False, ("trusted submitter",), ("p",))
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-edit"

#: The parts of the built-in edit rules that matter here (bootstrappolicy editRules()).
EDIT_RULES = [
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]},
    {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
    {
        "apiGroups": [""],
        "resources": ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"],
        "verbs": ["create", "delete", "deletecollection", "patch", "update"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["deployments", "statefulsets", "replicasets", "daemonsets"],
        "verbs": ["create", "delete", "deletecollection", "patch", "update"],
    },
]
VIEW_RULES = [
    {"apiGroups": [""], "resources": ["pods", "serviceaccounts"], "verbs": ["get", "list"]}
]


def cluster_role(
    name: str,
    rules: list[dict[str, Any]] | None = None,
    *,
    labels: dict[str, str] | None = None,
    selectors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    role: dict[str, Any] = {"metadata": {"name": name, "labels": labels or {}}}
    if rules is not None:
        role["rules"] = rules
    if selectors is not None:
        role["aggregationRule"] = {"clusterRoleSelectors": selectors}
    return role


#: edit and view as the API server bootstraps them; the aggregated rules in their own roles.
BUILT_IN = [
    cluster_role("edit", selectors=[{"matchLabels": {AGGREGATE: "true"}}]),
    cluster_role(
        "view",
        labels={AGGREGATE: "true"},
        selectors=[{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}],
    ),
    cluster_role("system:aggregate-to-edit", EDIT_RULES, labels={AGGREGATE: "true"}),
    cluster_role(
        "system:aggregate-to-view",
        VIEW_RULES,
        labels={"rbac.authorization.k8s.io/aggregate-to-view": "true"},
    ),
]


def user(name: str) -> dict[str, str]:
    return {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def binding(
    name: str,
    role: str,
    *subjects: dict[str, str],
    namespace: str | None = NS,
    role_kind: str = "ClusterRole",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    if namespace:
        meta["namespace"] = namespace
    return {
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": list(subjects),
    }


def audit(
    *found: Target,
    roles: list[dict[str, Any]] | None = None,
    cluster_roles: list[dict[str, Any]] | None = None,
    role_bindings: list[dict[str, Any]] | None = None,
    cluster_role_bindings: list[dict[str, Any]] | None = None,
) -> list[Any]:
    return audit_rbac(
        list(found) or [SUBMITTER],
        roles=roles or [],
        cluster_roles=[*BUILT_IN, *(cluster_roles or [])],
        role_bindings=role_bindings or [],
        cluster_role_bindings=cluster_role_bindings or [],
    )


# --- rule matching --------------------------------------------------------------------------


def test_rules_match_as_the_rbac_authorizer_does() -> None:
    token = {"apiGroups": [""], "resources": ["*/token"], "verbs": ["create"]}
    assert allows(token, "create", "", "serviceaccounts", NAME, "token")
    assert not allows(token, "create", "", "serviceaccounts", NAME)
    everything = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    assert allows(everything, "impersonate", "", "serviceaccounts", NAME)
    named = {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["create"],
        "resourceNames": ["x"],
    }
    assert not allows(named, "create", "", "pods")  # a create carries no name
    assert not allows({**named, "apiGroups": ["apps"]}, "create", "", "pods", "x")


def test_aggregated_roles_get_the_rules_their_selectors_match_transitively() -> None:
    admin = cluster_role(
        "admin",
        selectors=[
            {
                "matchExpressions": [
                    {
                        "key": "rbac.authorization.k8s.io/aggregate-to-admin",
                        "operator": "In",
                        "values": ["true"],
                    }
                ]
            }
        ],
    )
    edit = {**BUILT_IN[0], "metadata": {"name": "edit", "labels": {}}}
    edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] = "true"
    rules = effective_cluster_roles([admin, edit, *BUILT_IN[1:]])
    assert all(r in rules["edit"] for r in EDIT_RULES + VIEW_RULES)  # edit <- view <- to-view
    assert all(r in rules["admin"] for r in EDIT_RULES + VIEW_RULES)  # admin <- edit, 2 steps
    assert rules["view"] == VIEW_RULES


# --- who can act as the submitter -----------------------------------------------------------


def test_edit_bound_where_the_submitter_lives_is_a_finding_naming_every_way() -> None:
    (finding,) = audit(role_bindings=[binding("mallory-edit", "edit", user("mallory"))])
    assert finding.severity == "finding" and finding.area == "rbac"
    assert finding.subject == "User/mallory"
    assert finding.field == SUBMITTER.username
    assert finding.message == (
        "User mallory can act as the trusted submitter ServiceAccount "
        f"system:serviceaccount:{NS}:{NAME} (policies p): impersonate it, mint tokens for it, "
        "run pods as it and enter its running pods via RoleBinding "
        f"{NS}/mallory-edit -> ClusterRole edit"
    )
    assert "namespace agents-system" in finding.advice


def test_view_and_edit_elsewhere_are_not_listed() -> None:
    assert (
        audit(
            role_bindings=[
                binding("viewer", "view", user("victor")),
                binding("elsewhere", "edit", user("requester"), namespace="agents"),
            ]
        )
        == []
    )


def test_resource_names_narrow_impersonation_and_tokens() -> None:
    rules = [
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts"],
            "verbs": ["impersonate"],
            "resourceNames": ["other"],
        },
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts/token"],
            "verbs": ["create"],
            "resourceNames": [NAME],
        },
    ]
    role = {"metadata": {"name": "tokens", "namespace": NS}, "rules": rules}
    (finding,) = audit(
        roles=[role],
        role_bindings=[binding("tokens", "tokens", user("tim"), role_kind="Role")],
    )
    assert "mint tokens for it via RoleBinding agents-system/tokens -> Role tokens" in (
        finding.message
    )
    assert "impersonate" not in finding.message


def test_creating_or_editing_a_workload_runs_pods_as_it() -> None:
    rules = [{"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["create"]}]
    (finding,) = audit(
        cluster_roles=[cluster_role("cron", rules)],
        cluster_role_bindings=[binding("cron", "cron", user("carl"), namespace=None)],
    )
    assert "run pods as it via ClusterRoleBinding cron -> ClusterRole cron" in finding.message
    patch = [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "verbs": ["patch"],
            "resourceNames": ["web"],
        }
    ]
    (finding,) = audit(
        cluster_roles=[cluster_role("patcher", patch)],
        role_bindings=[binding("patcher", "patcher", user("pat"))],
    )
    assert "run pods as it" in finding.message


def test_wildcards_and_escalation() -> None:
    admin = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    (finding,) = audit(
        cluster_roles=[cluster_role("all", admin)],
        cluster_role_bindings=[binding("all", "all", user("root"), namespace=None)],
    )
    assert "impersonate it" in finding.message and "RBAC escalation" in finding.message
    grant = [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "verbs": ["bind"],
        },
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["rolebindings"],
            "verbs": ["create"],
        },
    ]
    (finding,) = audit(
        cluster_roles=[cluster_role("binder", grant)],
        role_bindings=[binding("binder", "binder", user("bea"))],
    )
    assert finding.message.endswith(
        "grant itself these (RBAC escalation) via RoleBinding agents-system/binder -> "
        "ClusterRole binder"
    )


def test_groups_and_service_accounts_as_subjects_and_the_submitter_itself() -> None:
    found = audit(
        role_bindings=[
            binding(
                "team",
                "edit",
                {"kind": "Group", "name": "agents-users"},
                {"kind": "ServiceAccount", "name": "deployer"},  # namespace: the binding's
                {"kind": "ServiceAccount", "name": NAME},  # the submitter itself: not listed
            )
        ]
    )
    assert [f.subject for f in found] == [
        "Group/agents-users",
        f"ServiceAccount/{NS}/deployer",
    ]
    # a ClusterRoleBinding's ServiceAccount without a namespace matches nobody
    nowhere = binding("x", "edit", {"kind": "ServiceAccount", "name": "deployer"}, namespace=None)
    assert audit(cluster_role_bindings=[nowhere]) == []


def test_a_trusted_group_is_reached_through_any_account_of_its_namespace() -> None:
    rules = [
        {
            "apiGroups": [""],
            "resources": ["serviceaccounts"],
            "verbs": ["impersonate"],
            "resourceNames": ["anything"],
        }
    ]
    groups = [
        {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"]},
    ]
    found = audit(
        GROUP,
        cluster_roles=[cluster_role("some", rules), cluster_role("groups", groups)],
        role_bindings=[
            binding("some", "some", user("sam")),
            binding("own", "edit", {"kind": "ServiceAccount", "name": "member"}),
        ],
        cluster_role_bindings=[binding("groups", "groups", user("gil"), namespace=None)],
    )
    assert [f.subject for f in found] == ["User/gil", "User/sam"]  # members are trusted
    assert all(f"group system:serviceaccounts:{NS}" in f.message for f in found)


def test_a_person_trusted_by_name_is_reached_by_impersonating_users() -> None:
    users = [{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"]}]
    found = audit(
        PERSON,
        cluster_roles=[cluster_role("users", users)],
        role_bindings=[binding("edit", "edit", user("ed"))],  # edit: no user impersonation
        cluster_role_bindings=[binding("users", "users", user("uma"), namespace=None)],
    )
    assert [f.subject for f in found] == ["User/uma"]


def test_the_control_planes_default_bindings_are_one_note() -> None:
    defaults = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    admin = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    jobs = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]
    found = audit(
        cluster_roles=[cluster_role("cluster-admin", admin), cluster_role("jobs", jobs)],
        cluster_role_bindings=[
            binding(
                "cluster-admin",
                "cluster-admin",
                {"kind": "Group", "name": "system:masters"},
                namespace=None,
                labels=defaults,
            ),
            binding(
                "jobs",
                "jobs",
                {"kind": "ServiceAccount", "name": "job-controller", "namespace": "kube-system"},
                namespace=None,
                labels=defaults,
            ),
            # the label alone does not make a person part of the control plane
            binding("sneaky", "jobs", user("eve"), namespace=None, labels=defaults),
        ],
    )
    assert [(f.severity, f.subject) for f in found] == [
        ("finding", "User/eve"),
        ("note", SUBMITTER.username),
    ]
    assert found[1].message.endswith(
        "Group/system:masters (impersonate, token, pods, enter, node, grant); "
        "ServiceAccount/kube-system/job-controller (pods)"
    )


# --- the bundle's trusted identities --------------------------------------------------------


def test_targets_are_the_trusted_submitters_and_gitops_appliers() -> None:
    bundle = parse_bundle_text(compile_case_bundle(BASE, BundleSettings(environment="t")))
    (found,) = targets(bundle)  # the corpus's base policy trusts the submission API
    assert (found.username, found.namespace, found.name, found.group) == (
        f"system:serviceaccount:{NS}:{NAME}",
        NS,
        NAME,
        False,
    )
    assert found.roles == ("trusted submitter",) and len(found.policies) == 1


# --- the roles requesters hold, widened (classes 17 and 22) -----------------------------------

REQUESTER_ROLE = cluster_role(  # the chart's, with userRoles.aggregateToEdit
    "approvalgate-requester",
    [{"apiGroups": ["gates.proompteng.ai"], "resources": ["approvalrequests"], "verbs": ["*"]}],
    labels={AGGREGATE: "true"},
)


def test_the_built_in_edit_role_and_the_charts_aggregation_switch_nothing_off() -> None:
    for label_mode in (False, True):
        assert audit_holder_roles([*BUILT_IN, REQUESTER_ROLE], label_mode=label_mode) == []


def test_a_role_aggregated_into_edit_that_lets_requesters_switch_the_gate_off_is_a_finding() -> (
    None
):
    """Someone widens edit (a ClusterRole carrying its aggregation label) with namespace
    patch (label mode: a requester removes her namespace's opt-in label), a wildcard on the
    queue's group (approvalrequests/status, never judged) or a webhook configuration write:
    every requester can then bypass the gate. The audit names the role that brings it."""
    widened = cluster_role(
        "team-extras",
        [
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "patch"]},
            {"apiGroups": ["gates.proompteng.ai"], "resources": ["*"], "verbs": ["update"]},
        ],
        labels={AGGREGATE: "true"},
    )
    (finding,) = audit_holder_roles([*BUILT_IN, widened], label_mode=True)
    assert (finding.severity, finding.subject, finding.field) == (
        "finding",
        "ClusterRole/edit",
        "team-extras",
    )
    assert "through ClusterRole team-extras (aggregated)" in finding.message
    assert "remove the opt-in label" in finding.message
    assert "approvalrequests/status" in finding.message
    assert "aggregate-to-edit) from ClusterRole team-extras" in finding.advice
    (finding,) = audit_holder_roles([*BUILT_IN, widened], label_mode=False)
    assert "opt-in label" not in finding.message  # namespace labels matter only in label mode


def test_agent_run_status_writes_aggregated_into_edit_are_a_finding() -> None:
    """The platform submits a run again whose status says Pending without a runtimeRef, and
    status writes never reach the webhook: a role aggregated into edit that may write
    agentruns/status (named, or through a wildcard on the group) lets every requester run a
    finished run again. Reading it is fine."""
    for rule in (
        {
            "apiGroups": ["agents.proompteng.ai"],
            "resources": ["agentruns/status"],
            "verbs": ["patch"],
        },
        {"apiGroups": ["agents.proompteng.ai"], "resources": ["*"], "verbs": ["update"]},
    ):
        widened = cluster_role("agents-extras", [rule], labels={AGGREGATE: "true"})
        (finding,) = audit_holder_roles([*BUILT_IN, widened], label_mode=False)
        assert "write agentruns/status (a finished run's phase reset" in finding.message
    reader = cluster_role(
        "agents-readers",
        [{"apiGroups": ["agents.proompteng.ai"], "resources": ["*"], "verbs": ["get", "list"]}],
        labels={AGGREGATE: "true"},
    )
    assert audit_holder_roles([*BUILT_IN, reader], label_mode=False) == []


def test_edit_itself_granting_a_webhook_or_crd_write_is_a_finding() -> None:
    edited = cluster_role(
        "edit",
        [
            {
                "apiGroups": ["admissionregistration.k8s.io", "apiextensions.k8s.io"],
                "resources": ["*"],
                "resourceNames": ["approvalgate"],
                "verbs": ["delete"],
            },
            {"apiGroups": ["apiregistration.k8s.io"], "resources": ["apiservices"], "verbs": ["*"]},
        ],
    )
    (finding,) = audit_holder_roles([edited], label_mode=False)
    assert finding.subject == "ClusterRole/edit" and "through" not in finding.message
    for what in ("ValidatingWebhookConfiguration", "CustomResourceDefinitions", "APIService"):
        assert what in finding.message


# --- fifth red-team pass: paths the API server grants that the reader missed ----------------

RBAC = "rbac.authorization.k8s.io"


def role(name: str, rules: list[dict[str, Any]], namespace: str = NS) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "rules": rules}


def rule(group: str, resources: list[str], verbs: list[str], **more: Any) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs, **more}


def test_powers_split_across_bindings_are_read_together_as_the_authorizer_does() -> None:
    """The authorizer allows a request if any of the subject's bindings does: escalate from
    one binding and create on roles from another is escalation, which no one binding shows."""
    found = audit(
        roles=[
            role("escalate", [rule(RBAC, ["roles"], ["escalate"])]),
            role("writes", [rule(RBAC, ["roles", "rolebindings"], ["create"])]),
        ],
        role_bindings=[
            binding("a", "escalate", user("esme"), role_kind="Role"),
            binding("b", "writes", user("esme"), role_kind="Role"),
        ],
    )
    (finding,) = found
    assert finding.subject == "User/esme"
    assert "grant itself these (RBAC escalation) via RoleBinding agents-system/a -> Role " in (
        finding.message
    )
    assert "together with RoleBinding agents-system/b -> Role writes" in finding.message
    # bind on ClusterRoles from a ClusterRoleBinding, create on rolebindings from a RoleBinding
    (finding,) = audit(
        cluster_roles=[
            cluster_role("binds", [rule(RBAC, ["clusterroles"], ["bind"])]),
            cluster_role("rb", [rule(RBAC, ["rolebindings"], ["create"])]),
        ],
        role_bindings=[binding("rb", "rb", user("bo"))],
        cluster_role_bindings=[binding("binds", "binds", user("bo"), namespace=None)],
    )
    assert "RBAC escalation" in finding.message
    # each half alone, for different subjects: nothing
    assert (
        audit(
            roles=[
                role("escalate", [rule(RBAC, ["roles"], ["escalate"])]),
                role("writes", [rule(RBAC, ["roles"], ["create"])]),
            ],
            role_bindings=[
                binding("a", "escalate", user("esme"), role_kind="Role"),
                binding("b", "writes", user("wes"), role_kind="Role"),
            ],
        )
        == []
    )


def test_patching_a_running_pod_swaps_its_image() -> None:
    """A pod's container images are mutable: update or patch on pods runs other code with the
    running pod's (pod-bound) token."""
    (finding,) = audit(
        roles=[role("patch", [rule("", ["pods"], ["patch"], resourceNames=["submitter-0"])])],
        role_bindings=[binding("p", "patch", user("pia"), role_kind="Role")],
    )
    assert "run pods as it via RoleBinding agents-system/p -> Role patch" in finding.message


def test_nodes_proxy_reaches_the_kubelets_exec() -> None:
    """get or create on nodes/proxy reaches the kubelet's API, exec into any pod of the node
    included: cluster-wide only (nodes are not namespaced)."""
    proxy = [rule("", ["nodes/proxy"], ["get"])]
    (finding,) = audit(
        cluster_roles=[cluster_role("proxy", proxy)],
        cluster_role_bindings=[binding("proxy", "proxy", user("nora"), namespace=None)],
    )
    assert "enter its running pods via ClusterRoleBinding proxy -> ClusterRole proxy" in (
        finding.message
    )
    assert (
        audit(
            cluster_roles=[cluster_role("proxy", proxy)],
            role_bindings=[binding("proxy", "proxy", user("nora"))],  # never applies
        )
        == []
    )


CSR = [
    rule("certificates.k8s.io", ["certificatesigningrequests"], ["create"]),
    rule("certificates.k8s.io", ["certificatesigningrequests/approval"], ["update"]),
    rule(
        "certificates.k8s.io",
        ["signers"],
        ["approve"],
        resourceNames=["kubernetes.io/kube-apiserver-client"],
    ),
]


def test_a_client_certificate_borrows_any_identity_but_system_masters() -> None:
    """create and approve a CSR for the kube-apiserver-client signer: a client certificate
    for any user and groups (class 17). A trusted user or group is reached directly, but a
    ServiceAccount group (the gate trusts only its ServiceAccounts, from their pods); a
    ServiceAccount's certificate carries no pod extras, so it is reached through whoever
    holds a way into its namespace."""
    csr = cluster_role("csr", CSR)
    binds = [binding("csr", "csr", user("cera"), namespace=None)]
    bots = Target("platform-bots", None, "", True, ("trusted submitter",), ("p",))
    for target in (PERSON, bots):
        (finding,) = audit(target, cluster_roles=[csr], cluster_role_bindings=binds)
        assert "mint a client certificate naming it via ClusterRoleBinding csr" in (
            finding.message
        ), finding.message
    assert audit(cluster_roles=[csr], cluster_role_bindings=binds) == []
    # a ServiceAccount group named by a certificate with another username: the gate does
    # not trust it (decide._in_trusted_group), nor a ServiceAccount's certificate (no pod)
    assert audit(GROUP, cluster_roles=[csr], cluster_role_bindings=binds) == []
    found = audit(
        cluster_roles=[csr],
        cluster_role_bindings=binds,
        role_bindings=[binding("ops-edit", "edit", {"kind": "Group", "name": "ops"})],
    )
    assert [f.subject for f in found] == ["Group/ops", "User/cera"]
    assert "act as Group ops (mint a client certificate naming it via ClusterRoleBinding" in (
        found[1].message
    )
    # any signer name in kubernetes.io/* approves it too; without approve, nothing
    wide = [*CSR[:2], {**CSR[2], "resourceNames": ["kubernetes.io/*"]}]
    (finding,) = audit(
        PERSON, cluster_roles=[cluster_role("csr", wide)], cluster_role_bindings=binds
    )
    assert "client certificate" in finding.message
    assert (
        audit(PERSON, cluster_roles=[cluster_role("csr", CSR[:2])], cluster_role_bindings=binds)
        == []
    )
    # system:masters is refused by the CertificateSubjectRestriction admission plugin
    masters = binding(
        "masters", "cluster-admin", {"kind": "Group", "name": "system:masters"}, namespace=None
    )
    admin = cluster_role("cluster-admin", [rule("*", ["*"], ["*"])])
    found = audit(cluster_roles=[csr, admin], cluster_role_bindings=[*binds, masters])
    assert [f.subject for f in found] == ["Group/system:masters"]


def test_whoever_may_act_as_a_subject_that_holds_a_way_holds_it() -> None:
    """Impersonating a user or group, or acting as a ServiceAccount elsewhere, that can act
    as the submitter: the chain is followed."""
    imp = [rule("", ["users", "groups"], ["impersonate"], resourceNames=["ed", "ops"])]
    found = audit(
        cluster_roles=[cluster_role("imp", imp)],
        role_bindings=[
            binding("ed", "edit", user("ed")),
            binding("ops", "edit", {"kind": "Group", "name": "ops"}),
            # deployer in another namespace holds edit here; tina may mint its tokens there
            binding("deployer", "edit", {"kind": "ServiceAccount", "name": "d", "namespace": "ci"}),
            binding("tokens", "edit", user("tina"), namespace="ci"),
        ],
        cluster_role_bindings=[binding("imp", "imp", user("ivan"), namespace=None)],
    )
    by = {f.subject: f.message for f in found}
    assert sorted(by) == ["Group/ops", "ServiceAccount/ci/d", "User/ed", "User/ivan", "User/tina"]
    assert (
        "act as Group ops (impersonate it via ClusterRoleBinding imp -> ClusterRole imp)"
        in (by["User/ivan"])
    )
    assert "act as User ed (impersonate it via ClusterRoleBinding imp" in by["User/ivan"]
    assert "act as ServiceAccount ci/d (impersonate it, mint tokens for it" in by["User/tina"]
    # impersonating someone who holds nothing here is nothing
    assert (
        audit(
            cluster_roles=[cluster_role("imp", imp)],
            cluster_role_bindings=[binding("imp", "imp", user("ivan"), namespace=None)],
        )
        == []
    )


def test_everyone_groups_are_never_the_control_plane() -> None:
    """The default-binding label is set by whoever creates the binding: bound to everyone
    (system:authenticated, system:serviceaccounts...) it is a finding, not a note."""
    defaults = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    for group in (
        "system:authenticated",
        "system:unauthenticated",
        "system:serviceaccounts",
        "system:serviceaccounts:ci",
    ):
        found = audit(
            cluster_roles=[cluster_role("all", [rule("*", ["*"], ["*"])])],
            cluster_role_bindings=[
                binding(
                    "all", "all", {"kind": "Group", "name": group}, namespace=None, labels=defaults
                )
            ],
        )
        assert [(f.severity, f.subject) for f in found] == [("finding", f"Group/{group}")]


def test_a_service_account_token_secret_acts_as_an_account_for_rbac() -> None:
    """create and get on secrets in a namespace: a Secret of type
    kubernetes.io/service-account-token names any of its accounts and the token controller
    fills in a token. It carries no pod extras (never the trusted submitter itself) but
    holds the account's RBAC: a chain."""
    secrets = [rule("", ["secrets"], ["create", "get"])]
    found = audit(
        cluster_roles=[cluster_role("secrets", secrets)],
        role_bindings=[
            binding("deployer", "edit", {"kind": "ServiceAccount", "name": "d", "namespace": "ci"}),
            binding("secrets", "secrets", user("sid"), namespace="ci"),
            binding("here", "secrets", user("sal")),  # the submitter's own: no pod extras
        ],
    )
    by = {f.subject: f.message for f in found}
    assert sorted(by) == ["ServiceAccount/ci/d", "User/sid"]
    assert (
        "act as ServiceAccount ci/d (mint tokens for it via RoleBinding ci/secrets"
        in (by["User/sid"])
    )


def switch_holders(
    *,
    roles: list[dict[str, Any]] | None = None,
    cluster_roles: list[dict[str, Any]] | None = None,
    role_bindings: list[dict[str, Any]] | None = None,
    cluster_role_bindings: list[dict[str, Any]] | None = None,
    label_mode: bool = False,
    bundle_configmap: str = "",
) -> dict[str, Any]:
    found = audit_switch_holders(
        roles=roles or [],
        cluster_roles=[*BUILT_IN, *(cluster_roles or [])],
        role_bindings=role_bindings or [],
        cluster_role_bindings=cluster_role_bindings or [],
        label_mode=label_mode,
        bundle_configmap=bundle_configmap,
    )
    return {f.subject: f for f in found}


def test_whoever_may_switch_the_gate_off_is_named_not_only_the_edit_role() -> None:
    """The audit named only edit and admin widened; a ClusterRoleBinding of a role that
    patches the webhook configuration, a RoleBinding writing agentruns/status, the bundle
    ConfigMap's writers and, in label mode, who patches namespaces are named too: a note
    each (cluster admins and the controllers hold these by design), a finding for a group
    everyone is in."""
    vwc = rule("admissionregistration.k8s.io", ["validatingwebhookconfigurations"], ["patch"])
    status = rule("agents.proompteng.ai", ["agentruns/status"], ["update"])
    maps = rule("", ["configmaps"], ["update"], resourceNames=["approvalgate-bundle"])
    spaces = rule("", ["namespaces"], ["patch"])
    found = switch_holders(
        cluster_roles=[
            cluster_role("vwc", [vwc]),
            cluster_role("spaces", [spaces]),
            cluster_role("status", [status]),
        ],
        roles=[role("maps", [maps], namespace="approvalgate-system")],
        role_bindings=[
            binding("status", "status", user("stu"), namespace="agents"),
            binding("maps", "maps", user("max"), namespace="approvalgate-system", role_kind="Role"),
            binding("vwc-here", "vwc", user("rita")),  # a RoleBinding: never a cluster kind
        ],
        cluster_role_bindings=[
            binding("vwc", "vwc", user("mallory"), namespace=None),
            binding("spaces", "spaces", user("nat"), namespace=None),
            binding(
                "all", "status", {"kind": "Group", "name": "system:authenticated"}, namespace=None
            ),
        ],
        bundle_configmap="approvalgate-system/approvalgate-bundle",
    )
    assert sorted(found) == ["Group/system:authenticated", "User/mallory", "User/max", "User/stu"]
    assert found["User/mallory"].severity == "note"
    assert found["User/mallory"].message == (
        "User mallory can switch approvalgate off: edit or delete the "
        "ValidatingWebhookConfiguration (the gate off) via ClusterRoleBinding vwc -> "
        "ClusterRole vwc"
    )
    assert "agentruns/status" in found["User/stu"].message
    assert "bundle ConfigMap approvalgate-system/approvalgate-bundle" in found["User/max"].message
    assert found["Group/system:authenticated"].severity == "finding"
    with_labels = switch_holders(
        cluster_roles=[cluster_role("spaces", [spaces])],
        cluster_role_bindings=[binding("spaces", "spaces", user("nat"), namespace=None)],
        label_mode=True,
    )
    assert "remove the opt-in label" in with_labels["User/nat"].message


@pytest.mark.parametrize(
    ("resource", "what"),
    [
        ("validatingadmissionpolicies", "ValidatingAdmissionPolicies of the chart's guard"),
        ("validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBindings of the chart's"),
    ],
)
@pytest.mark.parametrize("verb", ["patch", "update", "delete", "*"])
def test_whoever_may_edit_the_guard_is_named(resource: str, what: str, verb: str) -> None:
    """The guard (a ValidatingAdmissionPolicy and its binding) holds the webhook configuration
    as the chart renders it; whoever may edit or delete either can take it away first, so
    they are named as whoever may edit the configuration is (seventh pass)."""
    guard = rule("admissionregistration.k8s.io", [resource], [verb])
    found = switch_holders(
        cluster_roles=[cluster_role("guard", [guard])],
        cluster_role_bindings=[binding("guard", "guard", user("gina"), namespace=None)],
    )
    assert found["User/gina"].severity == "note"
    assert what in found["User/gina"].message
    assert "via ClusterRoleBinding guard -> ClusterRole guard" in found["User/gina"].message
    reader = rule("admissionregistration.k8s.io", [resource], ["get", "list", "watch"])
    assert not switch_holders(
        cluster_roles=[cluster_role("guard", [reader])],
        cluster_role_bindings=[binding("guard", "guard", user("gina"), namespace=None)],
    )


def test_whoever_may_act_as_a_namespaces_service_accounts_group_acts_as_its_grants() -> None:
    """A Group system:serviceaccounts:ci bound where the submitter lives is every account of
    ci: whoever may run pods in ci acts as it (a chain, not everyone)."""
    found = audit(
        role_bindings=[
            binding("ci-accounts", "edit", {"kind": "Group", "name": "system:serviceaccounts:ci"}),
            binding("tina", "edit", user("tina"), namespace="ci"),
        ]
    )
    by = {f.subject: f.message for f in found}
    assert sorted(by) == ["Group/system:serviceaccounts:ci", "User/tina"]
    assert (
        "act as Group system:serviceaccounts:ci (impersonate it, mint tokens for it"
        in (by["User/tina"])
    )


def test_a_mutating_webhook_injects_into_the_submitters_pods() -> None:
    """Whoever may create or edit MutatingWebhookConfigurations can have the API server send
    it the submitter's next pod and add a container to it: it runs with its token."""
    mwc = [rule("admissionregistration.k8s.io", ["mutatingwebhookconfigurations"], ["create"])]
    (finding,) = audit(
        cluster_roles=[cluster_role("mwc", mwc)],
        cluster_role_bindings=[binding("mwc", "mwc", user("mia"), namespace=None)],
    )
    assert "run pods as it via ClusterRoleBinding mwc -> ClusterRole mwc" in finding.message


def test_a_nodes_client_certificate_mints_its_pods_tokens() -> None:
    """Approving a CSR for the kube-apiserver-client-kubelet signer gives a node's identity
    (system:node:NAME in system:nodes), and the Node authorizer lets a node mint the tokens
    of the pods bound to it: pod-bound, the submitter's own."""
    kubelet = [
        *CSR[:2],
        {**CSR[2], "resourceNames": ["kubernetes.io/kube-apiserver-client-kubelet"]},
    ]
    (finding,) = audit(
        cluster_roles=[cluster_role("kubelet", kubelet)],
        cluster_role_bindings=[binding("kubelet", "kubelet", user("ken"), namespace=None)],
    )
    assert "mint a node's client certificate (its pods' tokens) via ClusterRoleBinding" in (
        finding.message
    )


def test_a_user_subject_spelling_a_service_accounts_username_is_that_account() -> None:
    """The authorizer matches a User subject by username: one named
    system:serviceaccount:NS:NAME applies to that ServiceAccount, so its grants are read
    together with the account's own."""
    found = audit(
        roles=[
            role("escalate", [rule(RBAC, ["roles"], ["escalate"])]),
            role("writes", [rule(RBAC, ["roles"], ["create"])]),
        ],
        role_bindings=[
            binding("a", "escalate", user("system:serviceaccount:ci:d"), role_kind="Role"),
            binding(
                "b",
                "writes",
                {"kind": "ServiceAccount", "name": "d", "namespace": "ci"},
                role_kind="Role",
            ),
        ],
    )
    (finding,) = found
    assert finding.subject == "ServiceAccount/ci/d"
    assert "RBAC escalation" in finding.message


# --- who may change what the gate runs in its release namespace (seventh pass) -------------

RELEASE = Release(
    "approvalgate-system",
    deployments=("approvalgate", "approvalgate-controller"),
    services=("approvalgate",),
    cronjobs=("approvalgate-audit",),
    configmaps=("approvalgate-audit", "approvalgate-bundle"),
)


def release_holders(
    rules: list[dict[str, Any]],
    *,
    namespace: str | None = "approvalgate-system",
    subject: dict[str, str] | None = None,
    aggregated: bool = False,
) -> dict[str, Any]:
    """``rules`` in one role bound to ``subject`` (user dora) by a RoleBinding in
    ``namespace`` (None: a ClusterRoleBinding); ``aggregated``: the rules come into the bound
    ClusterRole through its aggregation label."""
    if aggregated:
        roles = [
            cluster_role("gate-admin", selectors=[{"matchLabels": {"gate/aggregate": "true"}}]),
            cluster_role("piece", rules, labels={"gate/aggregate": "true"}),
        ]
    else:
        roles = [cluster_role("gate-admin", rules)]

    bound = binding("b", "gate-admin", subject or user("dora"), namespace=namespace)
    found = audit_release_holders(
        roles=[],
        cluster_roles=[*BUILT_IN, *roles],
        role_bindings=[bound] if namespace else [],
        cluster_role_bindings=[] if namespace else [bound],
        release=RELEASE,
    )
    return {f.subject: f for f in found}


@pytest.mark.parametrize(
    ("group", "resource", "verb", "names", "what"),
    [
        ("apps", "deployments", "patch", [], "edit or delete Deployment approvalgate, "),
        ("apps", "deployments", "update", ["approvalgate"], "Deployment approvalgate (another"),
        ("apps", "deployments", "delete", ["approvalgate-controller"], "approvalgate-controller"),
        ("apps", "deployments", "deletecollection", [], "Deployment approvalgate, "),
        ("", "services", "patch", [], "edit Service approvalgate"),
        ("", "services", "update", ["approvalgate"], "edit Service approvalgate"),
        ("", "services", "delete,create", [], "edit Service approvalgate"),
        ("", "pods", "create", [], "create or edit pods there"),
        ("", "pods", "patch", [], "create or edit pods there"),
        ("", "pods", "patch", ["approvalgate-7d9f-abcde"], "create or edit pods there"),
        ("apps", "replicasets", "create", [], "create or edit pods there"),
        ("apps", "replicasets", "patch", ["approvalgate-7d9f"], "create or edit pods there"),
        ("apps", "statefulsets", "update", [], "create or edit pods there"),
        ("batch", "jobs", "patch", [], "create or edit pods there"),
        ("discovery.k8s.io", "endpointslices", "create", [], "write EndpointSlices"),
        ("discovery.k8s.io", "endpointslices", "update", [], "write EndpointSlices"),
        ("discovery.k8s.io", "endpointslices", "patch", ["approvalgate-x1"], "EndpointSlices"),
        ("", "endpoints", "create", [], "write EndpointSlices or Endpoints"),
        ("", "endpoints", "patch", ["approvalgate"], "write EndpointSlices or Endpoints"),
        ("batch", "cronjobs", "patch", [], "edit or delete CronJob approvalgate-audit"),
        ("batch", "cronjobs", "update", ["approvalgate-audit"], "CronJob approvalgate-audit"),
        ("", "pods/exec", "create", [], "enter the gate's pods"),
        ("", "pods/attach", "create", [], "enter the gate's pods"),
        ("", "pods/ephemeralcontainers", "patch", [], "enter the gate's pods"),
        ("", "pods/ephemeralcontainers", "update", [], "enter the gate's pods"),
        ("", "configmaps", "update", [], "ConfigMap approvalgate-audit, approvalgate-bundle"),
        ("", "configmaps", "patch", ["approvalgate-bundle"], "ConfigMap approvalgate-bundle the"),
        ("", "configmaps", "delete", ["approvalgate-audit"], "ConfigMap approvalgate-audit the"),
        ("", "configmaps", "deletecollection", [], "ConfigMap approvalgate-audit, "),
        ("*", "*", "*", [], "edit or delete Deployment"),
    ],
)
def test_whoever_may_change_what_the_gate_runs_is_named(
    group: str, resource: str, verb: str, names: list[str], what: str
) -> None:
    """Each way to change what the gate runs in its release namespace names its holder (a
    note, with the binding), by a RoleBinding there or a ClusterRoleBinding."""
    more = {"resourceNames": names} if names else {}
    granted = [rule(group, [resource], verb.split(","), **more)]
    for namespace in ("approvalgate-system", None):
        found = release_holders(granted, namespace=namespace)
        assert found["User/dora"].severity == "note"
        assert found["User/dora"].field == "release"
        message = found["User/dora"].message
        assert message.startswith(
            "User dora can change what approvalgate runs in namespace approvalgate-system: "
        )
        assert what in message
        kind = "RoleBinding approvalgate-system/b" if namespace else "ClusterRoleBinding b"
        assert message.endswith(f" via {kind} -> ClusterRole gate-admin")


@pytest.mark.parametrize(
    ("group", "resource", "verb", "names"),
    [
        ("apps", "deployments", "patch", ["unrelated"]),
        ("apps", "deployments", "get", []),
        ("apps", "deployments", "create", ["approvalgate"]),  # create has no name: never allowed
        ("", "services", "patch", ["other"]),
        ("", "services", "delete", []),  # fails closed: the gate off, never another gate
        ("", "pods", "delete", []),
        ("", "endpoints", "patch", ["other"]),
        ("batch", "cronjobs", "patch", ["other"]),
        ("", "configmaps", "patch", ["other"]),
        ("", "configmaps", "create", []),
        ("", "pods/log", "get", []),
        ("apps", "deployments/scale", "patch", []),
        ("apps", "statefulsets", "patch", ["another"]),
    ],
)
def test_what_cannot_change_what_the_gate_runs_is_not_named(
    group: str, resource: str, verb: str, names: list[str]
) -> None:
    """resourceNames are honoured: a Role that patches only another Deployment, Service,
    CronJob or ConfigMap is not a holder; reading, or deleting what fails closed, neither."""
    more = {"resourceNames": names} if names else {}
    assert release_holders([rule(group, [resource], [verb], **more)]) == {}


def test_a_role_bound_in_another_namespace_is_not_a_holder() -> None:
    everything = [rule("*", ["*"], ["*"])]
    assert release_holders(everything, namespace="agents") == {}
    assert "User/dora" in release_holders(everything, namespace=None)


def test_aggregated_rules_and_bindings_read_together_name_their_holder() -> None:
    """Rules aggregated into the bound ClusterRole count; so do two bindings, neither enough
    alone, read together (as the authorizer reads them)."""
    found = release_holders([rule("apps", ["deployments"], ["patch"])], aggregated=True)
    assert "Deployment approvalgate" in found["User/dora"].message
    assert audit_release_holders(
        roles=[],
        cluster_roles=[*BUILT_IN, cluster_role("pods", [rule("", ["pods"], ["patch"])])],
        role_bindings=[binding("p", "pods", user("dora"), namespace="approvalgate-system")],
        cluster_role_bindings=[],
        release=RELEASE,
    )
    # the built-in edit role, bound in the release namespace, holds nearly every way
    edit = audit_release_holders(
        roles=[],
        cluster_roles=BUILT_IN,
        role_bindings=[binding("e", "edit", user("ed"), namespace="approvalgate-system")],
        cluster_role_bindings=[],
        release=RELEASE,
    )
    assert "Deployment approvalgate" in edit[0].message
    assert "enter the gate's pods" in edit[0].message


def test_a_group_everyone_is_in_is_a_finding_and_the_control_plane_is_left_out() -> None:
    pods = [rule("", ["pods"], ["create"])]
    for name in ("system:authenticated", "system:serviceaccounts"):
        found = release_holders(pods, subject={"kind": "Group", "name": name})
        assert found[f"Group/{name}"].severity == "finding"
        assert found[f"Group/{name}"].advice.startswith("remove the binding(s) named")
    control = binding(
        "system:controller:x",
        "gate-admin",
        {"kind": "ServiceAccount", "name": "replicaset-controller", "namespace": "kube-system"},
        namespace=None,
        labels={"kubernetes.io/bootstrapping": "rbac-defaults"},
    )
    assert not audit_release_holders(
        roles=[],
        cluster_roles=[*BUILT_IN, cluster_role("gate-admin", pods)],
        role_bindings=[],
        cluster_role_bindings=[control],
        release=RELEASE,
    )
