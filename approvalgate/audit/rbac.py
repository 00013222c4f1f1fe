"""Who can act as a trusted ServiceAccount, and whether the roles requesters hold can switch
the gate off (:func:`audit_holder_roles`): RBAC read from the cluster, as findings.

A ServiceAccount is not a person: whoever may impersonate it, mint a token for it, run a pod
as it or enter one of its pods acts as it. This module takes the policies' trusted
submitters and GitOps appliers (:func:`targets`) and the cluster's Roles, ClusterRoles,
RoleBindings and ClusterRoleBindings, and says which subjects hold such a grant
(:func:`audit_rbac`). It is pure: :mod:`audit.runner` reads the objects.

The rules are matched the way the API server's RBAC authorizer matches them
(``k8s.io/kubernetes/pkg/apis/rbac/v1/evaluation_helpers.go``): ``*`` in verbs, apiGroups
and resources, ``*/subresource``, and ``resourceNames`` (which never match a ``create`` of a
new object, whose request carries no name). What each way needs:

- **impersonate**: ``impersonate`` on ``serviceaccounts`` (core group) named NAME, in NS
  (RoleBinding there) or cluster-wide. The API server checks nothing else when the
  impersonated username is ``system:serviceaccount:NS:NAME``
  (``k8s.io/apiserver/pkg/endpoints/filters/impersonation.go``): ``impersonate`` on
  ``users`` never applies to a ServiceAccount's username. A trusted *group* other than a
  ServiceAccount group is reached by ``impersonate`` on ``groups`` (cluster-wide only:
  groups are not namespaced; the gate counts ``system:serviceaccounts[:NS]`` only for its
  ServiceAccounts, from their pods); a trusted user that is not a ServiceAccount by
  ``impersonate`` on ``users``;
- **mint a token**: ``create`` on ``serviceaccounts/token`` named NAME in NS. A token bound
  to the submitter's own running pod carries the pod extras the webhook requires;
- **run a pod**: ``create`` on ``pods`` in NS (any pod may set ``serviceAccountName``), or
  ``create``/``update``/``patch`` on a workload whose pod template does (deployments,
  replicasets, statefulsets, daemonsets, jobs, cronjobs, replicationcontrollers), or
  ``update``/``patch`` on ``pods`` (a running pod's container images are mutable);
- **enter its pods**: ``create`` or ``get`` on ``pods/exec`` or ``pods/attach``, or
  ``update``/``patch`` on ``pods/ephemeralcontainers``, in NS, or ``get``/``create`` on
  ``nodes/proxy`` (cluster-wide: the kubelet's own exec): the pod's mounted token is
  pod-bound;
- **a mutating webhook**: ``create``/``update``/``patch`` on
  ``mutatingwebhookconfigurations`` (cluster-wide): the API server sends it the account's
  next pod, to which it adds a container ("run pods as it");
- **a node's certificate**: as below for the ``kubernetes.io/kube-apiserver-client-kubelet``
  signer: a node's identity, and the Node authorizer lets a node mint the (pod-bound)
  tokens of the pods bound to it;
- **a client certificate** (a trusted user or group; class 17): ``create`` on
  ``certificatesigningrequests``, ``update`` on ``certificatesigningrequests/approval`` and
  ``approve`` on ``signers`` ``kubernetes.io/kube-apiserver-client`` (or ``kubernetes.io/*``),
  cluster-wide: the signer issues a certificate naming any user and groups but
  ``system:masters`` (refused by the CertificateSubjectRestriction admission plugin). One
  naming a ServiceAccount carries no pod extras: it counts only in chains (below);
- **grant itself these**: ``escalate`` with ``create``/``update``/``patch`` on roles, or
  ``bind`` with ``create``/``update``/``patch`` on rolebindings (RBAC's own escalation
  checks are then skipped), or ``impersonate`` on the group ``system:masters``. Counted
  conservatively: ``resourceNames`` on these are not followed to the roles they name.

A subject's bindings are read together, as the authorizer allows a request that any of them
allows: ``escalate`` from one RoleBinding and ``create`` on roles from another is escalation.
Chains are followed: whoever can act as a subject that can act as the target (impersonate
the user or group, have a certificate issued naming it, or any way above into a
ServiceAccount, where a ``kubernetes.io/service-account-token`` Secret it may create and read
also counts) is listed, until nothing changes. So the Roles and RoleBindings of every
namespace are read.

Aggregated ClusterRoles: the API server creates ``admin``, ``edit`` and ``view`` with an
``aggregationRule`` and no rules; kube-controller-manager's aggregation controller fills the
rules in with those of the ClusterRoles its selectors match. Here a role's rules are its
stored rules together with those its selectors match (followed transitively, as the
controller does over its re-syncs): what the authorizer grants now, and what it grants as
soon as the controller catches up (or, where no controller runs, would grant).

Severity: grants through the API server's own default bindings (label
``kubernetes.io/bootstrapping: rbac-defaults``) to control-plane identities (``system:``
users and groups, ServiceAccounts in ``kube-system``: ``system:masters``, the controllers)
are one note per trusted account; every other subject is a finding. The label is set by
whoever creates the binding: a group every user or ServiceAccount is in
(``system:authenticated``, ``system:unauthenticated``, ``system:serviceaccounts[:NS]``) is
never the control plane.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from approvalgate.approvals import identity
from approvalgate.approvals.bundle import Bundle
from approvalgate.approvals.decide import shown_claim
from approvalgate.audit.findings import Finding

AREA: Final = "rbac"
ALL: Final = "*"
RBAC_GROUP: Final = "rbac.authorization.k8s.io"
BOOTSTRAP_LABEL: Final = "kubernetes.io/bootstrapping"
BOOTSTRAP_VALUE: Final = "rbac-defaults"
SA_GROUP_PREFIX: Final = "system:serviceaccounts:"
ALL_SA_GROUP: Final = "system:serviceaccounts"
#: Workload controllers whose pod template names a ServiceAccount: (apiGroup, resource).
WORKLOADS: Final = (
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("", "replicationcontrollers"),
)
#: The ways, in the order they are shown, with how a finding names them.
WAYS: Final = {
    "impersonate": "impersonate it",
    "token": "mint tokens for it",
    "pods": "run pods as it",
    "enter": "enter its running pods",
    "certificate": "mint a client certificate naming it",
    "node": "mint a node's client certificate (its pods' tokens)",
    "grant": "grant itself these (RBAC escalation)",
    "as": "act as",
}
#: Groups everyone of a kind is in: never the control plane, whatever labels their binding has.
EVERYONE: Final = ("system:authenticated", "system:unauthenticated", ALL_SA_GROUP)
#: The one group a client certificate cannot name (the CertificateSubjectRestriction
#: admission plugin refuses it for the kube-apiserver-client signer).
MASTERS: Final = "system:masters"
CERT_GROUP: Final = "certificates.k8s.io"
CLIENT_SIGNERS: Final = ("kubernetes.io/kube-apiserver-client", "kubernetes.io/*")
KUBELET_SIGNERS: Final = ("kubernetes.io/kube-apiserver-client-kubelet", "kubernetes.io/*")

Rule = Mapping[str, Any]
#: Stands for "some existing object" (or any account of a trusted group): a rule limited by
#: resourceNames still reaches one (see :func:`_any_rule_names`).
_ANY_NAME: Final = "\x00any"


@dataclass(frozen=True)
class Target:
    """A trusted identity: a user (``name`` is its username; a ServiceAccount when
    ``namespace`` is set) or a group (``system:serviceaccounts:NS``: every ServiceAccount of NS,
    ``name`` is "")."""

    username: str
    namespace: str | None
    name: str
    group: bool
    roles: tuple[str, ...]
    policies: tuple[str, ...]

    @property
    def service_account(self) -> bool:
        return self.namespace is not None

    def describe(self) -> str:
        what = " and ".join(self.roles)
        kind = "group" if self.group else "ServiceAccount" if self.service_account else "user"
        return f"{what} {kind} {self.username} (policies {', '.join(self.policies)})"


def targets(bundle: Bundle) -> list[Target]:
    """Every trusted submitter and GitOps applier of the bundle's policies, once each."""
    seen: dict[tuple[str, bool], tuple[set[str], set[str]]] = {}
    for policy in bundle.policies:
        named = [(u, False, "trusted submitter") for u in policy.trusted_users]
        named += [(g, True, "trusted submitter") for g in policy.trusted_groups]
        named += [(u, False, "GitOps applier") for u in policy.gitops_appliers]
        for username, group, role in named:
            roles, policies = seen.setdefault((username, group), (set(), set()))
            roles.add(role)
            policies.add(policy.ref)
    out: list[Target] = []
    for (username, group), (roles, policies) in sorted(seen.items()):
        if group:
            if username == ALL_SA_GROUP:
                namespace: str | None = ALL
            elif username.startswith(SA_GROUP_PREFIX):
                namespace = username.removeprefix(SA_GROUP_PREFIX)
            else:
                namespace = None
            name = ""
        else:
            namespace = identity.service_account_namespace(username)
            name = username.rpartition(":")[2] if namespace is not None else username
        out.append(
            Target(username, namespace, name, group, tuple(sorted(roles)), tuple(sorted(policies)))
        )
    return out


# --- rule matching ------------------------------------------------------------------------


def _strings(rule: Rule, key: str) -> list[str]:
    value = rule.get(key)
    return [str(v) for v in value] if isinstance(value, list) else []


def allows(
    rule: Rule, verb: str, group: str, resource: str, name: str = "", subresource: str = ""
) -> bool:
    """Whether ``rule`` allows ``verb`` on ``resource[/subresource]`` named ``name`` (""
    for a create of a new object) in ``group``, as the RBAC authorizer decides."""
    verbs = _strings(rule, "verbs")
    if ALL not in verbs and verb not in verbs:
        return False
    groups = _strings(rule, "apiGroups")
    if ALL not in groups and group not in groups:
        return False
    combined = f"{resource}/{subresource}" if subresource else resource
    resources = _strings(rule, "resources")
    if not any(
        r in (ALL, combined) or (subresource and r == f"*/{subresource}") for r in resources
    ):
        return False
    names = _strings(rule, "resourceNames")
    return not names or name in names


def _any(rules: Iterable[Rule], *args: str) -> bool:
    return any(allows(rule, *args) for rule in rules)


def _namespaced_ways(
    rules: Sequence[Rule], target: Target, *, rbac_only: bool = False
) -> list[str]:
    """The ways ``rules`` (granted in the target's namespace, or cluster-wide) reach it."""
    if target.namespace is None:
        return []
    ways: list[str] = []
    name = _ANY_NAME if target.group else target.name  # a group: any of NS's accounts
    if _any(rules, "impersonate", "", "serviceaccounts", name):
        ways.append("impersonate")
    if _any(rules, "create", "", "serviceaccounts", name, "token"):
        ways.append("token")
    elif (
        rbac_only
        and _any(rules, "create", "", "secrets")
        and _any(rules, "get", "", "secrets", _ANY_NAME)
    ):
        # a Secret of type kubernetes.io/service-account-token naming the account: the token
        # controller fills in a token (no pod extras: it acts as the account for RBAC only)
        ways.append("token")
    creates = _any(rules, "create", "", "pods") or any(
        _any(rules, "create", group, resource) for group, resource in WORKLOADS
    )
    edits = any(  # an existing workload's pod template: serviceAccountName can be changed;
        # a running pod's container images are mutable: its own token runs other code
        _any(rules, verb, group, resource, _ANY_NAME)
        for group, resource in (*WORKLOADS, ("", "pods"))
        for verb in ("update", "patch")
    )
    if creates or edits:
        ways.append("pods")
    if any(
        _any(rules, verb, "", "pods", _ANY_NAME, sub)
        for verb, sub in (
            ("create", "exec"),
            ("get", "exec"),
            ("create", "attach"),
            ("get", "attach"),
            ("update", "ephemeralcontainers"),
            ("patch", "ephemeralcontainers"),
        )
    ):
        ways.append("enter")
    return ways


def _cluster_ways(rules: Sequence[Rule], target: Target, *, rbac_only: bool = False) -> list[str]:
    """Ways only a ClusterRoleBinding grants (the objects are not namespaced): impersonating
    users and groups, the kubelet's exec through ``nodes/proxy``, a client certificate."""
    ways: list[str] = []
    # The gate counts a ServiceAccount group only for a ServiceAccount of it, from its pod
    # (decide._in_trusted_group): the group impersonated, or named by a certificate, with
    # another username is not trusted. For RBAC (a chain) it is that group.
    borrowed = rbac_only or not (target.group and target.service_account)
    if target.group and borrowed and _any(rules, "impersonate", "", "groups", target.username):
        ways.append("impersonate")
    user = not target.group and not target.service_account
    if user and _any(rules, "impersonate", "", "users", target.username):
        ways.append("impersonate")
    named = _any_rule_names(rules)
    if target.namespace is not None and any(
        _any(named, verb, "", "nodes", _ANY_NAME, "proxy") for verb in ("get", "create")
    ):
        ways.append("enter")  # the kubelet's /exec, /attach, /run on any pod of the node
    person = not target.service_account or rbac_only
    if person and target.username != MASTERS and certifies(rules):
        ways.append("certificate")  # a ServiceAccount's certificate carries no pod extras
    if target.namespace is not None and certifies(rules, KUBELET_SIGNERS):
        ways.append("node")  # the Node authorizer: tokens of the pods bound to the node
    if target.namespace is not None and any(
        _any(named, verb, "admissionregistration.k8s.io", "mutatingwebhookconfigurations", n)
        for verb, n in (("create", ""), ("update", _ANY_NAME), ("patch", _ANY_NAME))
    ):
        ways.append("pods")  # a webhook of one's own adds a container to its next pod
    return ways


def certifies(rules: Sequence[Rule], signers: Sequence[str] = CLIENT_SIGNERS) -> bool:
    """Whether ``rules`` (cluster-wide) let their holder have a client certificate issued by
    one of ``signers``: create a CertificateSigningRequest and approve it
    (kube-controller-manager's signer issues what is approved). The kube-apiserver-client
    signer names any user and groups; the kubelet one a node."""
    named = _any_rule_names(rules)
    return (
        _any(rules, "create", CERT_GROUP, "certificatesigningrequests")
        and any(
            _any(named, verb, CERT_GROUP, "certificatesigningrequests", _ANY_NAME, "approval")
            for verb in ("update", "patch")
        )
        and any(_any(rules, "approve", CERT_GROUP, "signers", s) for s in signers)
    )


def _escalates(rules: Sequence[Rule], cluster: bool) -> bool:
    writes = ("create", "update", "patch")
    kinds = (("roles", "rolebindings"), ("clusterroles", "clusterrolebindings"))
    for roles, bindings in kinds if cluster else kinds[:1]:
        if _any(rules, "escalate", RBAC_GROUP, roles, _ANY_NAME) and any(
            _any(rules, w, RBAC_GROUP, roles, _ANY_NAME) for w in writes
        ):
            return True
        if _any(rules, "bind", RBAC_GROUP, roles, _ANY_NAME) and any(
            _any(rules, w, RBAC_GROUP, bindings, _ANY_NAME) for w in writes
        ):
            return True
    # a RoleBinding may grant bind on ClusterRoles too: it then binds them in its namespace
    if not cluster and _any(rules, "bind", RBAC_GROUP, "clusterroles", _ANY_NAME):
        return any(_any(rules, w, RBAC_GROUP, "rolebindings", _ANY_NAME) for w in writes)
    return cluster and _any(rules, "impersonate", "", "groups", "system:masters")


def _any_rule_names(rules: Sequence[Rule]) -> Sequence[Rule]:
    """``rules`` where a rule limited by resourceNames also matches :data:`_ANY_NAME`."""
    return [
        {**rule, "resourceNames": [*_strings(rule, "resourceNames"), _ANY_NAME]}
        if _strings(rule, "resourceNames")
        else rule
        for rule in rules
    ]


# --- aggregation --------------------------------------------------------------------------


def _selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """A label selector as ``metav1.LabelSelectorAsSelector`` reads it (empty: everything)."""
    if not isinstance(selector, Mapping):
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(str(key)) != str(value):
            return False
    for expression in selector.get("matchExpressions") or []:
        key = str(expression.get("key"))
        values = {str(v) for v in expression.get("values") or []}
        operator = expression.get("operator")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    raw = (obj.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in raw.items()}


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _rules(obj: Mapping[str, Any]) -> list[Rule]:
    return [r for r in obj.get("rules") or [] if isinstance(r, Mapping)]


def effective_cluster_roles(cluster_roles: Sequence[Mapping[str, Any]]) -> dict[str, list[Rule]]:
    """Each ClusterRole's rules: its own, plus those its ``aggregationRule`` selects,
    transitively (the aggregation controller's result once it has caught up)."""
    rules = {_name(r): _rules(r) for r in cluster_roles}
    labels = {_name(r): _labels(r) for r in cluster_roles}
    sources: dict[str, list[str]] = {}
    for role in cluster_roles:
        selectors = ((role.get("aggregationRule") or {}).get("clusterRoleSelectors")) or []
        name = _name(role)
        sources[name] = sorted(
            other
            for other in rules
            if other != name and any(_selector_matches(s, labels[other]) for s in selectors)
        )
    changed = True
    while changed:  # a fixpoint: aggregated roles may select aggregated roles (admin > edit)
        changed = False
        for name, selected in sources.items():
            for other in selected:
                for rule in rules[other]:
                    if rule not in rules[name]:
                        rules[name] = [*rules[name], rule]
                        changed = True
    return rules


# --- the audit ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One binding (or several read together) that gives one subject some ways to act as one
    target; ``via`` names them (for the way ``as``: the subject acted as, and how)."""

    subject: str
    ways: tuple[str, ...]
    via: str
    control_plane: bool


@dataclass(frozen=True)
class _Bound:
    """One binding of a subject: its rules, where they apply ("" cluster-wide)."""

    via: str
    namespace: str
    rules: tuple[Rule, ...]
    control_plane: bool


@dataclass
class _Holder:
    """A subject (``Kind/name``) and every binding it is named in: the authorizer allows a
    request if any of them does, so its powers are read from all of them together."""

    subject: str
    username: str
    bound: list[_Bound]

    @property
    def control_plane(self) -> bool:
        return all(b.control_plane for b in self.bound)

    def shape(self) -> object:
        """What its grants depend on: which rules (one object per role) apply where."""
        return frozenset((b.namespace, id(b.rules)) for b in self.bound)

    def as_target(self) -> Target:
        """The subject as an identity someone else may act as."""
        kind, _, name = self.subject.partition("/")
        if kind == "Group":
            space = (
                ALL
                if name == ALL_SA_GROUP
                else name.removeprefix(SA_GROUP_PREFIX)
                if name.startswith(SA_GROUP_PREFIX)
                else None
            )
            return Target(name, space, "", True, (), ())
        space = identity.service_account_namespace(self.username)
        short = self.username.rpartition(":")[2] if space is not None else self.username
        return Target(self.username, space, short, False, (), ())


def _subject(entry: Mapping[str, Any], namespace: str) -> tuple[str, str] | None:
    """(``Kind/name``, username or group) of a binding's subject; None if it names nothing."""
    kind, name = str(entry.get("kind") or ""), str(entry.get("name") or "")
    if kind == "ServiceAccount":
        ns = str(entry.get("namespace") or namespace)
        if not ns or not name:  # the authorizer never matches it (rule.go appliesToUser)
            return None
        return (f"ServiceAccount/{ns}/{name}", f"{identity.SERVICE_ACCOUNT_PREFIX}{ns}:{name}")
    if kind == "User" and identity.service_account_namespace(name) is not None:
        # the authorizer matches a User subject by username: this is that ServiceAccount
        ns, _, short = name.removeprefix(identity.SERVICE_ACCOUNT_PREFIX).partition(":")
        return (f"ServiceAccount/{ns}/{short}", name)
    if kind in ("User", "Group") and name:
        # RBAC takes any string here: shown as decide() shows a claim, never as raw lines
        return (f"{kind}/{shown_claim(name)}", name)
    return None


def _is_itself(subject: str, username: str, target: Target) -> bool:
    if not target.group:
        return username == target.username
    if subject.startswith("ServiceAccount/"):
        ns = identity.service_account_namespace(username)
        return target.namespace in (ns, ALL)
    return subject.startswith("Group/") and username == target.username


def _everyone(subject: str, username: str) -> bool:
    """A group every user (or every ServiceAccount, of the cluster or of a namespace) is in."""
    group = subject.startswith("Group/")
    return group and (username in EVERYONE or username.startswith(SA_GROUP_PREFIX))


def _control_plane(binding: Mapping[str, Any], subject: str, username: str) -> bool:
    """A default binding (its label, which whoever creates a binding may set) to a
    control-plane identity; never to a group everyone of a kind is in."""
    if _labels(binding).get(BOOTSTRAP_LABEL) != BOOTSTRAP_VALUE:
        return False
    if subject.startswith("ServiceAccount/"):
        return identity.service_account_namespace(username) == "kube-system"
    if _everyone(subject, username) and username != f"{SA_GROUP_PREFIX}kube-system":
        return False
    return username.startswith("system:")


def _holders(
    roles: Sequence[Mapping[str, Any]],
    cluster_roles: Sequence[Mapping[str, Any]],
    role_bindings: Sequence[Mapping[str, Any]],
    cluster_role_bindings: Sequence[Mapping[str, Any]],
) -> dict[str, _Holder]:
    """Every subject named by a binding of some rules, with all its bindings."""
    cluster_rules = effective_cluster_roles(cluster_roles)
    role_rules = {
        (str((r.get("metadata") or {}).get("namespace") or ""), _name(r)): _rules(r) for r in roles
    }
    out: dict[str, _Holder] = {}
    frozen: dict[tuple[str, str, str], tuple[Rule, ...]] = {}
    bindings = [(b, True) for b in cluster_role_bindings] + [(b, False) for b in role_bindings]
    for binding, cluster in bindings:
        meta = binding.get("metadata") or {}
        namespace = "" if cluster else str(meta.get("namespace") or "")
        ref = binding.get("roleRef") or {}
        role_kind, role_name = str(ref.get("kind") or ""), str(ref.get("name") or "")
        if role_kind == "ClusterRole":
            rules = cluster_rules.get(role_name, [])
        elif role_kind == "Role" and not cluster:
            rules = role_rules.get((namespace, role_name), [])
        else:
            continue
        if not rules or (not cluster and not namespace):
            continue
        kind = "ClusterRoleBinding" if cluster else "RoleBinding"
        where = f"{namespace}/{_name(binding)}" if namespace else _name(binding)
        via = f"{kind} {where} -> {role_kind} {role_name}"
        for entry in binding.get("subjects") or []:
            resolved = _subject(entry, namespace) if isinstance(entry, Mapping) else None
            if resolved is None:
                continue
            subject, username = resolved
            holder = out.setdefault(subject, _Holder(subject, username, []))
            cp = _control_plane(binding, subject, username)
            key = (role_kind, "" if role_kind == "ClusterRole" else namespace, role_name)
            shared = frozen.setdefault(key, tuple(rules))  # one object per role: see _acting
            holder.bound.append(_Bound(via, namespace, shared, cp))
    return out


def _ways(holder: _Holder, target: Target, *, rbac_only: bool = False) -> list[Grant]:
    """The ways ``holder`` can act as ``target``: binding by binding, then, for what no one
    binding grants, its bindings that apply in one namespace read together. ``rbac_only``:
    acting as ``target`` only for what RBAC grants it (a certificate naming a
    ServiceAccount then counts: it lacks the pod extras only the webhook asks for)."""
    out: list[Grant] = []
    seen: set[str] = set()
    for bound in holder.bound:
        cluster = [] if bound.namespace else list(bound.rules)
        local = list(bound.rules) if bound.namespace else []
        ways = _binding_ways(target, cluster, local, bound.namespace, rbac_only=rbac_only)
        if ways:
            seen.update(ways)
            out.append(Grant(holder.subject, _ordered(ways), bound.via, bound.control_plane))
    wide = [b for b in holder.bound if not b.namespace]
    spaces = sorted({b.namespace for b in holder.bound if b.namespace}) or [""]
    for space in spaces:
        together = wide + [b for b in holder.bound if space and b.namespace == space]
        if len(together) < 2:
            continue
        cluster = [r for b in wide for r in b.rules]
        local = [r for b in together if b.namespace for r in b.rules]
        ways = _binding_ways(target, cluster, local, space, rbac_only=rbac_only)
        new = [w for w in ways if w not in seen]
        if new:
            seen.update(new)
            via = " together with ".join(b.via for b in together)
            cp = all(b.control_plane for b in together)
            out.append(Grant(holder.subject, _ordered(new), via, cp))
    return out


def _ordered(ways: Iterable[str]) -> tuple[str, ...]:
    return tuple(w for w in WAYS if w in set(ways))


def _acting(holders: Mapping[str, _Holder], target: Target) -> dict[str, list[Grant]]:
    """Every subject that can act as ``target``: directly, or by acting as a subject that
    can (impersonating a user or group, a client certificate naming one, or any way into a
    ServiceAccount: followed until nothing changes)."""
    acting: dict[str, list[Grant]] = {}
    for subject, holder in holders.items():
        if not _is_itself(subject, holder.username, target):
            grants = _ways(holder, target)
            if grants:
                acting[subject] = grants
    as_targets = {subject: holder.as_target() for subject, holder in holders.items()}
    checked: dict[str, set[str]] = {}  # each pair is asked once, whatever the round
    # Subjects bound to the same roles in the same places reach the same subjects: asked
    # once per such set of grants (most subjects reach none; many share view or edit).
    reaches: dict[tuple[object, str], bool] = {}
    changed = True
    while changed:
        changed = False
        known = sorted(acting)
        for subject, holder in sorted(holders.items()):
            if subject in acting or _is_itself(subject, holder.username, target):
                continue
            wide = any(not b.namespace for b in holder.bound)
            spaces = {b.namespace for b in holder.bound}
            done = checked.setdefault(subject, set())
            chained: list[Grant] = []
            for other in known:
                if other == subject or other in done or holders[other].username in EVERYONE[:2]:
                    continue  # every subject is in those groups already: its finding says so
                done.add(other)
                there = as_targets[other].namespace
                if not wide and (there is None or (there != ALL and there not in spaces)):
                    continue  # only RoleBindings elsewhere: nothing of theirs applies to it
                shape = (holder.shape(), other)
                if reaches.get(shape) is False:
                    continue
                grants = _ways(holder, as_targets[other], rbac_only=True)
                reaches[shape] = bool(grants)
                if not grants:
                    continue
                kind, _, name = other.partition("/")
                how = "; ".join(f"{_and([WAYS[w] for w in g.ways])} via {g.via}" for g in grants)
                cp = all(g.control_plane for g in grants) and holders[other].control_plane
                chained.append(Grant(subject, ("as",), f"{kind} {name} ({how})", cp))
            if chained:
                acting[subject] = chained
                changed = True
    return acting


def audit_rbac(
    found: Sequence[Target],
    *,
    roles: Sequence[Mapping[str, Any]],
    cluster_roles: Sequence[Mapping[str, Any]],
    role_bindings: Sequence[Mapping[str, Any]],
    cluster_role_bindings: Sequence[Mapping[str, Any]],
) -> list[Finding]:
    """One finding per subject and trusted identity it can act as; one note per identity for
    the control plane's own grants."""
    holders = _holders(roles, cluster_roles, role_bindings, cluster_role_bindings)
    out: list[Finding] = []
    for target in found:
        out += _findings(target, _acting(holders, target))
    return out


def _binding_ways(
    target: Target,
    cluster: Sequence[Rule],
    local: Sequence[Rule],
    namespace: str,
    *,
    rbac_only: bool = False,
) -> list[str]:
    """The ways rules granted cluster-wide (``cluster``) and by RoleBindings in
    ``namespace`` (``local``), together, give to act as ``target``."""
    ways: list[str] = []
    applies = target.namespace in (namespace, ALL) and bool(namespace)
    scoped = [*cluster, *(local if applies else [])]
    named = _any_rule_names(scoped)
    if scoped:
        ways += _namespaced_ways(named, target, rbac_only=rbac_only)
    if cluster:
        ways += _cluster_ways(cluster, target, rbac_only=rbac_only)
    wide = bool(cluster) and _escalates(_any_rule_names(cluster), True)
    if (wide or (scoped and _escalates(named, False))) and (cluster or applies):
        ways.append("grant")
    return ways


def _findings(target: Target, grants: Mapping[str, Sequence[Grant]]) -> list[Finding]:
    out: list[Finding] = []
    system: list[str] = []
    for subject in sorted(grants):
        found = grants[subject]
        ways = [w for w in WAYS if any(w in g.ways for g in found)]
        if all(g.control_plane for g in found):
            system.append(f"{subject} ({', '.join(ways)})")
            continue
        shown = _shown(found)
        kind, _, name = subject.partition("/")
        out.append(
            Finding(
                AREA,
                "finding",
                subject,
                f"{kind} {name} can act as the {target.describe()}: {shown}",
                _advice(target),
                target.username,
            )
        )
    if system:
        out.append(
            Finding(
                AREA,
                "note",
                target.username,
                f"the control plane can act as the {target.describe()} through the API "
                f"server's default bindings: {'; '.join(system)}",
                "expected: these are Kubernetes' own components and system:masters",
                target.username,
            )
        )
    return out


# --- the roles requesters hold, widened -----------------------------------------------------

#: The built-in roles clusters grant requesters per namespace (``edit``) and namespace
#: admins (``admin``): aggregated, so any ClusterRole carrying their label widens them.
HOLDER_ROLES: Final = ("admin", "edit")
GATES_GROUP: Final = "gates.proompteng.ai"
WRITES: Final = ("update", "patch")

Switch = tuple[str, tuple[str, ...], str, str, str]
"""(what it lets a holder do, verbs, apiGroup, resource, subresource)."""

#: What switches the gate off (or fakes it) for whoever holds the permission (docs/deploy.md
#: section 6). The label switch counts only in label mode.
SWITCHES: Final[tuple[Switch, ...]] = (
    (
        "edit or delete the ValidatingWebhookConfiguration (the gate off)",
        (*WRITES, "delete"),
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "",
    ),
    (
        "edit or delete the ValidatingAdmissionPolicies of the chart's guard (the guard off, "
        "then the webhook configuration free to weaken)",
        (*WRITES, "delete"),
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
        "",
    ),
    (
        "edit or delete the ValidatingAdmissionPolicyBindings of the chart's guard (switched "
        "to Audit, narrowed or deleted: the guard off)",
        (*WRITES, "delete"),
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
        "",
    ),
    (
        "edit or delete the CustomResourceDefinitions of the gated kinds (their versions, "
        "conversion, or every object with them)",
        (*WRITES, "delete"),
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "",
    ),
    (
        "register an APIService for a gated group (an aggregated server then answers for it, "
        "without the webhook)",
        ("create", *WRITES),
        "apiregistration.k8s.io",
        "apiservices",
        "",
    ),
    (
        "write approvalrequests/status (a forged phase or run name, never judged)",
        WRITES,
        GATES_GROUP,
        "approvalrequests",
        "status",
    ),
    (
        "write agentruns/status (a finished run's phase reset: the platform runs it again, "
        "never judged)",
        WRITES,
        "agents.proompteng.ai",
        "agentruns",
        "status",
    ),
)
LABEL_SWITCH: Final[Switch] = (
    "patch its own Namespace (remove the opt-in label: its AgentRuns are no longer sent)",
    WRITES,
    "",
    "namespaces",
    "",
)


def _switches(rules: Sequence[Rule], label_mode: bool) -> list[str]:
    """What of :data:`SWITCHES` ``rules`` grant (any object name)."""
    named = _any_rule_names(rules)
    wanted = (*SWITCHES, LABEL_SWITCH) if label_mode else SWITCHES
    return [
        what
        for what, verbs, group, resource, sub in wanted
        if any(_any(named, verb, group, resource, _ANY_NAME, sub) for verb in verbs)
    ]


def _contributors(cluster_roles: Sequence[Mapping[str, Any]], name: str) -> list[str]:
    """The ClusterRoles whose rules aggregate into ``name`` (transitively), itself first."""
    by_name = {_name(r): r for r in cluster_roles}
    out: list[str] = []
    todo = [name]
    while todo:
        current = todo.pop(0)
        if current in out or current not in by_name:
            continue
        out.append(current)
        selectors = (by_name[current].get("aggregationRule") or {}).get("clusterRoleSelectors")
        for other, role in sorted(by_name.items()):
            if other not in out and any(
                _selector_matches(s, _labels(role)) for s in selectors or []
            ):
                todo.append(other)
    return out


def audit_holder_roles(
    cluster_roles: Sequence[Mapping[str, Any]], *, label_mode: bool
) -> list[Finding]:
    """Findings where the built-in ``edit`` or ``admin`` role (what requesters hold in their
    namespaces) grants a way to switch the gate off: each names the ClusterRole that brings
    the grant (usually one aggregated into it by its label)."""
    out: list[Finding] = []
    for holder in HOLDER_ROLES:
        for source in _contributors(cluster_roles, holder):
            role = next(r for r in cluster_roles if _name(r) == source)
            found = _switches(_rules(role), label_mode)
            if not found:
                continue
            through = "" if source == holder else f" through ClusterRole {source} (aggregated)"
            out.append(
                Finding(
                    AREA,
                    "finding",
                    f"ClusterRole/{holder}",
                    f"the built-in {holder} role{through} lets every holder "
                    f"{'; '.join(found)}: whoever may create AgentRuns can then bypass "
                    "approvalgate",
                    f"remove the aggregation label (rbac.authorization.k8s.io/aggregate-to-"
                    f"{holder}) from ClusterRole {source}, or narrow its rules; grant these "
                    "to cluster admins and Argo CD only (docs/deploy.md, section 6)",
                    source,
                )
            )
    return out


def _holds(rules: Sequence[Rule], switches: Sequence[Switch]) -> list[str]:
    named = _any_rule_names(rules)
    return [
        what
        for what, verbs, group, resource, sub in switches
        if any(_any(named, verb, group, resource, _ANY_NAME, sub) for verb in verbs)
    ]


def _bundle_switch(bundle_configmap: str) -> Switch:
    return (
        f"write or delete the bundle ConfigMap {bundle_configmap} (another bundle, or none)",
        (*WRITES, "delete"),
        "",
        "configmaps",
        "",
    )


def _switches_held(holder: _Holder, label_mode: bool, bundle_configmap: str) -> list[Grant]:
    """What of :data:`SWITCHES` (and the label switch, and the bundle ConfigMap) ``holder``
    holds, binding by binding, then its bindings read together. Cluster-scoped kinds count
    from ClusterRoleBindings only; status writes in any namespace; the bundle ConfigMap in
    its own."""
    cluster_scoped = [s for s in SWITCHES if not s[4]] + ([LABEL_SWITCH] if label_mode else [])
    namespaced = [s for s in SWITCHES if s[4]]
    bundle_ns, _, bundle_name = bundle_configmap.partition("/")

    def held(cluster: Sequence[Rule], local: Sequence[Rule], namespace: str) -> list[str]:
        found = _holds(cluster, cluster_scoped) + _holds([*cluster, *local], namespaced)
        if bundle_configmap and (not namespace or namespace == bundle_ns):
            mine = [*cluster, *local]
            writes = any(
                _any(mine, verb, "", "configmaps", bundle_name) for verb in (*WRITES, "delete")
            )
            if writes or _any(mine, "deletecollection", "", "configmaps"):
                found.append(_bundle_switch(bundle_configmap)[0])
        return found

    return _per_binding(holder, held)


def _per_binding(
    holder: _Holder, held: Callable[[Sequence[Rule], Sequence[Rule], str], list[str]]
) -> list[Grant]:
    """What ``held(cluster rules, local rules, namespace)`` finds ``holder`` holds, binding by
    binding, then, for what no one binding grants, its bindings that apply in one namespace
    read together (as the authorizer reads them)."""
    out: list[Grant] = []
    seen: set[str] = set()
    for bound in holder.bound:
        cluster = [] if bound.namespace else list(bound.rules)
        local = list(bound.rules) if bound.namespace else []
        found = held(cluster, local, bound.namespace)
        if found:
            seen.update(found)
            out.append(Grant(holder.subject, tuple(found), bound.via, bound.control_plane))
    wide = [b for b in holder.bound if not b.namespace]
    for space in sorted({b.namespace for b in holder.bound if b.namespace}) or [""]:
        together = wide + [b for b in holder.bound if space and b.namespace == space]
        if len(together) < 2:
            continue
        cluster = [r for b in wide for r in b.rules]
        local = [r for b in together if b.namespace for r in b.rules]
        new = [w for w in held(cluster, local, space) if w not in seen]
        if new:
            seen.update(new)
            via = " together with ".join(b.via for b in together)
            out.append(
                Grant(holder.subject, tuple(new), via, all(b.control_plane for b in together))
            )
    return out


def audit_switch_holders(
    *,
    roles: Sequence[Mapping[str, Any]],
    cluster_roles: Sequence[Mapping[str, Any]],
    role_bindings: Sequence[Mapping[str, Any]],
    cluster_role_bindings: Sequence[Mapping[str, Any]],
    label_mode: bool,
    bundle_configmap: str = "",
) -> list[Finding]:
    """Every subject that may switch the gate off (:data:`SWITCHES`; in label mode the
    Namespace label; the bundle ConfigMap when named): a note each, since cluster admins,
    Argo CD and the controllers that own a status hold these by design, and a finding for a
    group every user or ServiceAccount is in. The control plane's default bindings are left
    out."""
    return _holder_findings(
        _holders(roles, cluster_roles, role_bindings, cluster_role_bindings),
        lambda holder: _switches_held(holder, label_mode, bundle_configmap),
        "can switch approvalgate off",
        "expected only for cluster administrators, Argo CD and (a status write) the controller "
        "that owns it; otherwise remove the binding(s) named or narrow the role "
        "(docs/deploy.md, section 6)",
        "switch",
    )


def _holder_findings(
    holders: Mapping[str, _Holder],
    grants_of: Callable[[_Holder], list[Grant]],
    says: str,
    advice: str,
    field: str,
) -> list[Finding]:
    """A note per subject holding some of what ``grants_of`` finds (the control plane's own
    default bindings left out), "<Kind> <name> <says>: <ways> via <bindings>"; a finding, with
    other advice, for a group every user or ServiceAccount is in."""
    out: list[Finding] = []
    for subject, holder in sorted(holders.items()):
        grants = [g for g in grants_of(holder) if not g.control_plane]
        if not grants:
            continue
        shown = "; ".join(f"{_and(list(g.ways))} via {g.via}" for g in grants)
        kind, _, name = subject.partition("/")
        everyone = _everyone(subject, holder.username)
        out.append(
            Finding(
                AREA,
                "finding" if everyone else "note",
                subject,
                f"{kind} {name} {says}: {shown}",
                "remove the binding(s) named: every user (or ServiceAccount) is in this group"
                if everyone
                else advice,
                field,
            )
        )
    return out


@dataclass(frozen=True)
class Release:
    """The gate's objects in its release namespace, named as the chart renders them (the
    --webhook-manifest): what whoever may change them changes what the gate runs."""

    namespace: str
    deployments: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    cronjobs: tuple[str, ...] = ()
    configmaps: tuple[str, ...] = ()
    """The ConfigMaps the Deployments and the CronJob mount (the bundle, the audit's)."""


def _named(
    rules: Sequence[Rule], verbs: Sequence[str], group: str, resource: str, names: Sequence[str]
) -> list[str]:
    """Which of ``names`` ``rules`` allow one of ``verbs`` on (resourceNames honoured)."""
    return [n for n in names if any(_any(rules, v, group, resource, n) for v in verbs)]


def _release_held(rules: Sequence[Rule], release: Release) -> list[str]:
    """What ``rules`` (granted in the release namespace, or cluster-wide) let their holder
    change of what the gate runs there. Pods and EndpointSlices have generated names: a rule
    limited by resourceNames still reaches one of them."""
    any_name = _any_rule_names(rules)
    found: list[str] = []
    deployments = _named(
        rules, ("update", "patch", "delete"), "apps", "deployments", release.deployments
    )
    if _any(rules, "deletecollection", "apps", "deployments"):
        deployments = list(release.deployments)
    if deployments:
        found.append(
            f"edit or delete Deployment {', '.join(deployments)} (another image, container, "
            "env or volume: other code judges AgentRuns)"
        )
    services = _named(rules, WRITES, "", "services", release.services)
    if _any(rules, "create", "", "services"):  # deleted, then created again as one likes
        services += _named(rules, ("delete",), "", "services", release.services)
        services = sorted(set(services))
    if services:
        found.append(
            f"edit Service {', '.join(services)} (another selector or port: admission "
            "requests go to other pods)"
        )
    if (
        _any(rules, "create", "", "pods")
        or any(_any(any_name, v, "", "pods", _ANY_NAME) for v in WRITES)
        or any(_any(rules, "create", group, resource) for group, resource in WORKLOADS)
        # the gate's ReplicaSets have generated names; other workloads' template edited to
        # the Service's labels (a Deployment or CronJob of another name is taken to be
        # absent: the namespace holds the gate alone)
        or any(_any(any_name, v, "apps", "replicasets", _ANY_NAME) for v in WRITES)
        or any(
            _any(rules, v, group, resource, _ANY_NAME)
            for group, resource in WORKLOADS
            for v in WRITES
            if resource not in ("deployments", "cronjobs")
        )
    ):
        found.append(
            "create or edit pods there, directly or through a workload (one matching the "
            "webhook Service's selector answers admission requests; a running pod's image "
            "can be swapped)"
        )
    slices = any(
        _any(any_name, v, "discovery.k8s.io", "endpointslices", _ANY_NAME)
        for v in ("create", *WRITES)
    )
    endpoints = _any(rules, "create", "", "endpoints") or bool(
        _named(rules, WRITES, "", "endpoints", release.services)
    )
    if slices or endpoints:
        found.append(
            "write EndpointSlices or Endpoints there (admission requests routed to another address)"
        )
    cronjobs = _named(rules, (*WRITES, "delete"), "batch", "cronjobs", release.cronjobs)
    if cronjobs:
        found.append(
            f"edit or delete CronJob {', '.join(cronjobs)} (the audit runs other code, or "
            "not at all)"
        )
    if any(
        _any(any_name, verb, "", "pods", _ANY_NAME, sub)
        for verb, sub in (
            ("create", "exec"),
            ("get", "exec"),
            ("create", "attach"),
            ("get", "attach"),
            ("update", "ephemeralcontainers"),
            ("patch", "ephemeralcontainers"),
        )
    ):
        found.append(
            "enter the gate's pods (exec, attach or an ephemeral container: a process of "
            "one's own beside the webhook, with its files and token)"
        )
    maps = _named(rules, (*WRITES, "delete"), "", "configmaps", release.configmaps)
    if _any(rules, "deletecollection", "", "configmaps"):
        maps = list(release.configmaps)
    if maps:
        found.append(
            f"write or delete ConfigMap {', '.join(maps)} the gate mounts (another bundle "
            "or expectation, or none)"
        )
    return found


def audit_release_holders(
    *,
    roles: Sequence[Mapping[str, Any]],
    cluster_roles: Sequence[Mapping[str, Any]],
    role_bindings: Sequence[Mapping[str, Any]],
    cluster_role_bindings: Sequence[Mapping[str, Any]],
    release: Release,
) -> list[Finding]:
    """Every subject that may change what the gate runs in its release namespace (by a
    RoleBinding there or a ClusterRoleBinding): its Deployments, its Service, pods and
    EndpointSlices there, its audit CronJob, entering its pods, the ConfigMaps it mounts
    (:func:`_release_held`). A note each (the deployer and cluster admins hold these by
    design), a finding for a group every user or ServiceAccount is in; the control plane's
    default bindings are left out. The workloads area finds such a change afterwards; this
    names who can make it."""

    def held(cluster: Sequence[Rule], local: Sequence[Rule], namespace: str) -> list[str]:
        if namespace and namespace != release.namespace:
            return []
        return _release_held([*cluster, *local], release)

    return _holder_findings(
        _holders(roles, cluster_roles, role_bindings, cluster_role_bindings),
        lambda holder: _per_binding(holder, held),
        f"can change what approvalgate runs in namespace {release.namespace}",
        "expected only for cluster administrators and whoever deploys the chart (Argo CD); "
        "otherwise remove the binding(s) named or narrow the role, and keep "
        f"{release.namespace} for the gate alone (docs/design.md, Known limits)",
        "release",
    )


FLOOR_WRITES: Final = ("update", "patch", "delete", "deletecollection")


def audit_floor_writers(
    namespace: str,
    name: str,
    writer: str,
    *,
    roles: Sequence[Mapping[str, Any]],
    cluster_roles: Sequence[Mapping[str, Any]],
    role_bindings: Sequence[Mapping[str, Any]],
    cluster_role_bindings: Sequence[Mapping[str, Any]],
) -> list[Finding]:
    """One finding per subject that may lower the bundle revision floor, ConfigMap
    ``namespace/name`` (approvals.bundle_floor): ``update``, ``patch`` or ``delete`` of it,
    or ``deletecollection`` of the namespace's ConfigMaps. ``writer`` (the controller's
    username) may ``update`` it, nothing more; the API server's own default bindings to
    control-plane identities are not findings (they can do everything anyway).

    Whoever may act as ``writer`` (impersonate it, mint tokens for it, run pods as it or
    enter its pods, in its namespace, or grant itself these: :func:`audit_rbac`'s ways) can
    lower the floor through its ``update``: one finding per such subject too, and per subject
    that can act as one of those (:func:`audit_rbac`'s chains). ``roles`` and
    ``role_bindings`` are those of every namespace (a chain may pass through any)."""
    sa_namespace = identity.service_account_namespace(writer)
    as_writer = Target(
        writer,
        sa_namespace,
        writer.rpartition(":")[2] if sa_namespace is not None else writer,
        False,
        ("bundle revision floor's writer",),
        (),
    )
    cluster_rules = effective_cluster_roles(cluster_roles)
    role_rules = {
        (str((r.get("metadata") or {}).get("namespace") or ""), _name(r)): _rules(r) for r in roles
    }
    found: dict[str, tuple[list[str], list[str]]] = {}
    bindings = [(b, True) for b in cluster_role_bindings] + [(b, False) for b in role_bindings]
    for binding, cluster in bindings:
        meta = binding.get("metadata") or {}
        where = "" if cluster else str(meta.get("namespace") or "")
        if not cluster and where != namespace:
            continue
        ref = binding.get("roleRef") or {}
        role_kind, role_name = str(ref.get("kind") or ""), str(ref.get("name") or "")
        if role_kind == "ClusterRole":
            rules = cluster_rules.get(role_name, [])
        elif role_kind == "Role" and not cluster:
            rules = role_rules.get((where, role_name), [])
        else:
            continue
        verbs = [
            verb
            for verb in FLOOR_WRITES
            if _any(rules, verb, "", "configmaps", "" if verb == "deletecollection" else name)
        ]
        if not verbs:
            continue
        kind = "ClusterRoleBinding" if cluster else "RoleBinding"
        via = f"{kind} {where + '/' if where else ''}{_name(binding)} -> {role_kind} {role_name}"
        for entry in binding.get("subjects") or []:
            resolved = _subject(entry, where) if isinstance(entry, Mapping) else None
            if resolved is None or _control_plane(binding, *resolved):
                continue
            subject, username = resolved
            extra = [v for v in verbs if v != "update"] if username == writer else verbs
            if not extra:
                continue
            have, vias = found.setdefault(subject, ([], []))
            have += [v for v in extra if v not in have]
            vias.append(via)
    holders = _holders(roles, cluster_roles, role_bindings, cluster_role_bindings)
    acting = {
        subject: grants
        for subject, grants in (_acting(holders, as_writer) if writer else {}).items()
        if not all(g.control_plane for g in grants)
    }
    target = f"ConfigMap/{namespace}/{name}"
    writes = [
        Finding(
            AREA,
            "finding",
            subject,
            f"{subject} may {_and(sorted(verbs, key=FLOOR_WRITES.index))} the bundle revision "
            f"floor {target} ({'; '.join(vias)}): it can lower the floor and so let the "
            "pods enforce an older signed bundle that the compiled values put back",
            "remove the binding(s) named, or narrow the role: only the approvalgate "
            f"controller ({writer}) writes the floor, and only the platform's operators "
            "lower it (docs/deploy.md, the revision floor)",
        )
        for subject, (verbs, vias) in sorted(found.items())
    ]
    acts = [
        Finding(
            AREA,
            "finding",
            subject,
            f"{subject} can act as {writer}, which may update the bundle revision floor "
            f"{target}: "
            + _shown(grants)
            + ": through that update it can lower the floor and so let the pods enforce an "
            "older signed bundle that the compiled values put back",
            "remove the binding(s) named, or narrow the role: nobody but the platform's "
            f"operators should impersonate {writer}, mint its tokens, run or enter pods in "
            f"its namespace ({sa_namespace or 'the cluster'}) or grant themselves RBAC there "
            "(docs/deploy.md, the revision floor)",
        )
        for subject, grants in sorted(acting.items())
    ]
    return sorted(writes + acts, key=lambda f: f.subject)


def _shown(grants: Sequence[Grant]) -> str:
    """The ways and the bindings that give them, one part per binding (or bindings read
    together, or subject acted as)."""
    by_via: dict[str, set[str]] = {}
    for grant in grants:
        by_via.setdefault(grant.via, set()).update(grant.ways)
    return "; ".join(
        f"act as {via}"
        if by_via[via] == {"as"}
        else f"{_and([WAYS[w] for w in WAYS if w in by_via[via]])} via {via}"
        for via in sorted(by_via)
    )


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _advice(target: Target) -> str:
    where = (
        f"namespace {target.namespace}"
        if target.namespace not in (None, ALL)
        else "the cluster"
        if target.namespace == ALL
        else "the cluster (impersonation)"
    )
    return (
        f"remove the binding(s) named, or narrow the role: nobody but those who deploy the "
        f"{' and '.join(target.roles)} should hold these grants in {where} (keep it in a "
        "namespace of its own that requesters cannot edit; the built-in edit and admin roles "
        "grant all of these)"
    )


__all__ = [
    "AREA",
    "Release",
    "Target",
    "allows",
    "audit_floor_writers",
    "audit_holder_roles",
    "audit_rbac",
    "audit_release_holders",
    "audit_switch_holders",
    "effective_cluster_roles",
    "targets",
]
