"""ApprovalPolicy and Approver documents -> the compiled bundle (a plain JSON object).

This is the compile half of the core: it validates documents against their schemas and
the semantic rules, resolves approver names and groups, and produces the bundle that
both ``approvalgate verify`` and the webhook load with :func:`approvals.bundle.load_bundle`.
Problems are returned, located by document index and JSON path, never raised one by one.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from approvalgate.approvals import confusables, identity, records
from approvalgate.approvals.durations import parse_duration
from approvalgate.approvals.errors import Finding, format_json_path
from approvalgate.approvals.keys import ssh
from approvalgate.approvals.keys.public import (
    accepted_forms,
    key_material,
    load_public_key,
    public_key_pem,
)
from approvalgate.approvals.references import name_problem
from approvalgate.approvals.schemas import schema_findings

POLICY_API: Final = "approvals.proompteng.ai/v1alpha1"
GATES_API: Final = "gates.proompteng.ai/v1alpha1"
BUNDLE_KIND: Final = "ApprovalBundle"
ALL: Final = "*"

DEFAULT_REQUIRED_APPROVALS: Final = 1
DEFAULT_TIMEOUT_SECONDS: Final = 86400
DEFAULT_CLOCK_SKEW_SECONDS: Final = 60
DEFAULT_USE_SETTLE_SECONDS: Final = 30
SUBJECT_KINDS: Final = ("Agent", "AgentRun", "ImplementationSpec", "Namespace")
ENFORCEMENT_LEVELS: Final = ("off", "audit", "warn", "enforce")
NAMESPACE_SELECTIONS: Final = ("all", "optInLabel")
"""Which namespaces the webhook is called for: every one but the excluded (default), or
only those labelled :data:`OPT_IN_LABEL` (an explicit, weaker choice: see docs/deploy.md)."""
USER_VERIFICATION: Final = "userVerification"
"""An Approver key's option (``required``, security keys only): a record signed by the key
counts only if its signature's flags carry user verification (the PIN)."""
OPT_IN_LABEL: Final = "approvals.proompteng.ai/enforce"


@dataclass(frozen=True)
class BundleSettings:
    """What the environment adds to the policies (compiler config, or verify's defaults)."""

    environment: str = "default"
    exclude_namespaces: tuple[str, ...] = ()
    """Namespaces not enforced, by name; every other one is, including those created later."""
    namespace_selection: str = "all"
    enforcement: str = "enforce"
    no_match: str = "deny"
    clock_skew_seconds: int = DEFAULT_CLOCK_SKEW_SECONDS
    cluster_view: str = "required"
    """``required``: decide() needs the cluster view (approvals.view); ``off``: records only."""
    use_settle_seconds: int = DEFAULT_USE_SETTLE_SECONDS
    referenced_content: str = "bind"
    """``bind``: records bind the content of the ImplementationSpecs and Agent a run executes."""

    def enforces(self, namespace: str) -> bool:
        return namespace not in self.exclude_namespaces


@dataclass(frozen=True)
class Problem:
    """A finding in document number ``doc`` of the list given to :func:`compile_bundle`."""

    doc: int
    finding: Finding


@dataclass
class _Context:
    problems: list[Problem] = field(default_factory=list)

    def add(self, doc: int, path: tuple[str | int, ...], message: str, advice: str = "") -> None:
        self.problems.append(Problem(doc, Finding(path, message, advice)))

    def warn(self, doc: int, path: tuple[str | int, ...], message: str, advice: str = "") -> None:
        self.problems.append(Problem(doc, Finding(path, message, advice, "warning")))


def is_policy(doc: Mapping[str, Any]) -> bool:
    return doc.get("kind") == "ApprovalPolicy"


def is_approver(doc: Mapping[str, Any]) -> bool:
    return doc.get("kind") == "Approver"


def compile_bundle(
    documents: Sequence[Mapping[str, Any]], settings: BundleSettings
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Validate ``documents`` (ApprovalPolicy and Approver; others are ignored).

    Returns the bundle object, or None when any error was found, and every problem
    (warnings included) so callers can report them all at once.
    """
    ctx = _Context()
    approvers: dict[str, dict[str, Any]] = {}
    approver_docs: dict[str, int] = {}
    for index, doc in enumerate(documents):
        if is_approver(doc):
            entry = _approver(index, doc, ctx)
            if entry is None:
                continue
            if entry["name"] in approvers:
                ctx.add(
                    index,
                    ("metadata", "name"),
                    f"approver {entry['name']!r} is defined twice",
                    f"the first definition is document {approver_docs[entry['name']] + 1}",
                )
                continue
            approvers[entry["name"]] = entry
            approver_docs[entry["name"]] = index
    _check_key_reuse(approvers, approver_docs, ctx)
    _check_username_reuse(approvers, approver_docs, ctx)
    _check_identities(documents, ctx)
    groups: dict[str, list[str]] = {}
    for entry in approvers.values():
        for group in entry["groups"]:
            groups.setdefault(group, []).append(entry["name"])

    policies: list[dict[str, Any]] = []
    seen: dict[tuple[str, str], int] = {}
    tenants = _tenant_namespaces(documents)
    for index, doc in enumerate(documents):
        if not is_policy(doc):
            continue
        policy = _policy(index, doc, approvers, groups, settings, ctx, tenants)
        if policy is None:
            continue
        key = (policy["namespace"], policy["name"])
        if key in seen:
            ctx.add(index, ("metadata", "name"), f"policy {policy['name']!r} is defined twice")
            continue
        seen[key] = index
        policies.append(policy)

    if any(p.finding.severity == "error" for p in ctx.problems):
        return None, ctx.problems
    bundle = {
        "apiVersion": GATES_API,
        "kind": BUNDLE_KIND,
        "environment": settings.environment,
        "excludeNamespaces": sorted(set(settings.exclude_namespaces)),
        "namespaceSelection": settings.namespace_selection,
        "enforcement": settings.enforcement,
        "noMatch": settings.no_match,
        "clockSkewSeconds": settings.clock_skew_seconds,
        "clusterView": settings.cluster_view,
        "useSettleSeconds": settings.use_settle_seconds,
        **({"referencedContent": "off"} if settings.referenced_content == "off" else {}),
        "policies": sorted(policies, key=lambda p: (p["namespace"], p["name"])),
        "approvers": [approvers[name] for name in sorted(approvers)],
    }
    bundle["generation"] = bundle_generation(bundle)
    return bundle, ctx.problems


def bundle_generation(bundle: Mapping[str, Any]) -> str:
    """A content hash naming a bundle: same policies and keys, same generation."""
    body = {k: v for k, v in bundle.items() if k != "generation"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dump_bundle(bundle: Mapping[str, Any]) -> str:
    """The canonical text of a bundle (sorted keys, 2-space indent, final newline)."""
    return json.dumps(bundle, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


# --- Approver ---------------------------------------------------------------------------


USERNAMES_ADVICE: Final = (
    "list under spec.usernames the Kubernetes usernames that are this person: each of them "
    "runs `kubectl auth whoami` with their usual credentials and copies the Username "
    "(OIDC names often carry a prefix or are e-mail addresses, e.g. oidc:alice@example.com)"
)


def _approver(index: int, doc: Mapping[str, Any], ctx: _Context) -> dict[str, Any] | None:
    findings = schema_findings("approver.schema.json", doc)
    spec = doc.get("spec")
    if isinstance(spec, dict) and not spec.get("usernames"):
        # one message with the way out, instead of the schema's "required" or "too short"
        findings = [f for f in findings if not _about_usernames(f)]
        name = (doc.get("metadata") or {}).get("name", "")
        findings.append(
            Finding(
                ("spec", "usernames") if "usernames" in spec else ("spec",),
                f"approver {name!r} lists no usernames: without them the gate cannot tell "
                "when this approver submits (or authored) the run they approve, and would "
                "count their own approval",
                USERNAMES_ADVICE,
            )
        )
    for finding in findings:
        ctx.problems.append(Problem(index, finding))
    if findings:
        return None
    name = doc["metadata"]["name"]
    spec = doc["spec"]
    keys = []
    for k_index, key in enumerate(spec["keys"]):
        path = ("spec", "keys", k_index)
        try:
            public = load_public_key(key["publicKey"])
        except ValueError as exc:
            ctx.add(
                index,
                (*path, "publicKey"),
                f"not a usable public key: {exc}",
                f"publicKey is {accepted_forms()}; `approvalgate keygen NAME` writes an "
                "Approver with a new key, an SSH key's line is its .pub file",
            )
            continue
        entry: dict[str, Any] = {
            "keyid": public.keyid,
            "publicKey": public_key_pem(public),
        }
        window = {}
        for bound in ("notBefore", "notAfter"):
            if bound in key:
                try:
                    window[bound] = records.parse_time(key[bound])
                except ValueError as exc:
                    ctx.add(index, (*path, bound), f"not an RFC 3339 time with a zone: {exc}")
                    continue
                entry[bound] = records.format_time(window[bound])
        if len(window) == 2 and window["notBefore"] >= window["notAfter"]:
            ctx.add(index, (*path, "notAfter"), "notAfter must be later than notBefore")
        if USER_VERIFICATION in key:
            if not ssh.is_security_key(public.keytype):
                ctx.add(
                    index,
                    (*path, USER_VERIFICATION),
                    f"userVerification is for security keys (sk-...): this key is "
                    f"{public.keytype}, whose signatures carry no flags, so nothing could "
                    "show the user was verified",
                    "remove userVerification, or make a security key that asks for its PIN "
                    "(`ssh-keygen -t ed25519-sk -O verify-required`) and put its .pub line "
                    "in publicKey",
                )
            entry[USER_VERIFICATION] = key[USER_VERIFICATION]
        keys.append(entry)
    return {
        "name": name,
        "usernames": sorted(set(spec["usernames"])),
        "groups": sorted(set(spec.get("groups", []))),
        "keys": keys,
    }


def _about_usernames(finding: Finding) -> bool:
    """A schema finding about ``spec.usernames`` itself (missing, empty, wrong type)."""
    return finding.path == ("spec", "usernames") or (
        finding.path == ("spec",) and "'usernames'" in finding.message
    )


def _check_key_reuse(
    approvers: Mapping[str, Mapping[str, Any]], docs: Mapping[str, int], ctx: _Context
) -> None:
    owner: dict[bytes, tuple[str, int]] = {}
    for name in sorted(approvers):
        for k_index, key in enumerate(approvers[name]["keys"]):
            # the key itself, not its id: an id covers the form (PEM or OpenSSH line)
            other, first = owner.setdefault(key_material(key["publicKey"]), (name, k_index))
            if other != name:
                ctx.add(
                    docs[name],
                    ("spec", "keys", k_index, "publicKey"),
                    f"this key already belongs to approver {other!r}",
                    "one key, one approver: two approvers sharing a key count as one person",
                )
            elif first != k_index:
                # one key twice, each with its window: retiring one entry (its notAfter)
                # left the other signing (fifth red-team pass)
                ctx.add(
                    docs[name],
                    ("spec", "keys", k_index, "publicKey"),
                    f"this key is already keys[{first}] of approver {name!r} (in another "
                    "form): list a key once, so that its notBefore and notAfter are its only "
                    "window",
                    "remove this entry; a key's PEM and its OpenSSH line are the same key",
                )


def _check_username_reuse(
    approvers: Mapping[str, Mapping[str, Any]], docs: Mapping[str, int], ctx: _Context
) -> None:
    """A username is one person: two approvers listing it (compared as persons, so
    ``Alice@Example.com`` is ``alice@example.com``) would let that person vote twice."""
    owner: dict[str, tuple[str, str]] = {}
    # an approver's name is compared as one of its usernames too (refusals take it so)
    names = {identity.person_key(name): name for name in approvers}
    for name in sorted(approvers):
        for username in approvers[name]["usernames"]:
            key = identity.person_key(username)
            if not key:
                continue
            other, theirs = owner.setdefault(key, (name, username))
            named = names.get(key, name)
            if other != name:
                message = (
                    f"username {username!r} already belongs to approver {other!r} (as "
                    f"{theirs!r}): whoever logs in as it would approve as both"
                )
            elif named != name:
                message = (
                    f"username {username!r} is the name of approver {named!r}: whoever logs "
                    "in as it would approve as both"
                )
            else:
                continue
            ctx.add(
                docs[name],
                ("spec", "usernames"),
                message,
                "one username, one approver: list each person once, with all their "
                "keys and usernames under one Approver (decide() counts approvers that "
                "share a username, or a username and a name, as one person)",
            )


def _identities(doc: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str, str]]:
    """Every identity ``doc`` writes (a username, a group, an approver's name): its path,
    what it is, and the string as Kubernetes compares it."""
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        return []
    found: list[tuple[tuple[str | int, ...], str, str]] = []

    def each(path: tuple[str | int, ...], what: str, values: object) -> None:
        if isinstance(values, list):
            for i, value in enumerate(values):
                if isinstance(value, str):
                    found.append(((*path, i), what, value))

    if is_approver(doc):
        name = (
            doc.get("metadata", {}).get("name")
            if isinstance(doc.get("metadata"), Mapping)
            else None
        )
        if isinstance(name, str):
            found.append((("metadata", "name"), "approver", name))
        each(("spec", "usernames"), "username", spec.get("usernames"))
        each(("spec", "groups"), "group", spec.get("groups"))
    elif is_policy(doc):
        each(("spec", "approvers"), "approver", spec.get("approvers"))
        bypass = spec.get("bypass")
        if isinstance(bypass, Mapping):
            each(("spec", "bypass", "approvers"), "approver", bypass.get("approvers"))
        trusted = spec.get("trustedSubmitters")
        if isinstance(trusted, Mapping):
            each(("spec", "trustedSubmitters", "users"), "trusted user", trusted.get("users"))
            each(("spec", "trustedSubmitters", "groups"), "trusted group", trusted.get("groups"))
        each(("spec", "gitOpsAppliers"), "GitOps applier", spec.get("gitOpsAppliers"))
        parents = spec.get("parents")
        if isinstance(parents, Mapping):
            each(("spec", "parents", "creators"), "parent creator", parents.get("creators"))
    # a group named as an approver (group:NAME) is compared as the group's name
    return [
        (path, "group", value.removeprefix("group:"))
        if what == "approver" and value.startswith("group:")
        else (path, what, value)
        for path, what, value in found
    ]


IDENTITY_ADVICE: Final = (
    "write the identity exactly as Kubernetes reports it (the user runs `kubectl auth "
    "whoami`; a group is what the identity provider sends), and if it really is another "
    "account, ask its identity provider for a name a reviewer cannot read as another"
)


def _check_identities(documents: Sequence[Mapping[str, Any]], ctx: _Context) -> None:
    """Identities a reviewer reads otherwise than Kubernetes compares them (UTS #39,
    :mod:`approvals.confusables`): a part mixing scripts (``bоb`` with a Cyrillic ``о``),
    a form other than NFC (``josé`` decomposed), one that looks like another identity of
    the bundle written otherwise, and a username shaped like a ServiceAccount's that no
    ServiceAccount can have. Two printable-ASCII identities are never compared: a diff
    shows every ASCII character as itself."""
    seen: dict[str, tuple[int, tuple[str | int, ...], str]] = {}
    what_of: dict[tuple[int, tuple[str | int, ...]], str] = {}
    reported: set[tuple[int, tuple[str | int, ...]]] = set()
    for index, doc in enumerate(documents):
        for path, what, value in _identities(doc):
            what_of[index, path] = what
            if not value:
                continue
            if value != value.strip():
                ctx.add(
                    index,
                    path,
                    f"{what} {value!r} begins or ends with whitespace, which a reviewer "
                    "cannot see: Kubernetes compares it as written, so it is another "
                    f"identity than {value.strip()!r}",
                    f"write it without: {value.strip()!r}",
                )
                continue
            problem = confusables.script_problem(value)
            if problem:
                ctx.add(
                    index,
                    path,
                    f"{what} {value!r} is written in more than one script, which a reviewer "
                    f"cannot see: {problem}; Kubernetes compares it as written, so it is "
                    "another identity than the one it reads as",
                    IDENTITY_ADVICE,
                )
                continue
            if unicodedata.normalize("NFC", value) != value:
                nfc = unicodedata.normalize("NFC", value)
                ctx.add(
                    index,
                    path,
                    f"{what} {value!r} is not in NFC, the composed form identity providers "
                    f"send: {confusables.escaped(value)}; Kubernetes compares it as written, "
                    f"so {nfc!r} ({confusables.escaped(nfc)}), which looks the same, is "
                    "another identity",
                    f"write it composed: {confusables.escaped(nfc)}",
                )
                continue
            if identity.is_service_account(value) and not _service_account_username(value):
                ctx.add(
                    index,
                    path,
                    f"{what} {value!r} is shaped like a ServiceAccount's username but no "
                    "ServiceAccount can have it (namespace and name must be Kubernetes "
                    "names): only a user named like one could",
                    "write system:serviceaccount:NAMESPACE:NAME as `kubectl get sa -n "
                    "NAMESPACE` names it",
                )
                continue
            key = confusables.skeleton(value)
            first = seen.setdefault(key, (index, path, value))
            if first[2] == value or (value.isascii() and first[2].isascii()):
                continue
            # said where the look-alike is: at the identity that is not plain ASCII
            here, there = (index, path, value), first
            if value.isascii():
                here, there = first, (index, path, value)
            if (here[0], here[1]) in reported:
                continue
            reported.add((here[0], here[1]))
            where = f"document {there[0] + 1}, {format_json_path(there[1])}"
            ctx.add(
                here[0],
                here[1],
                f"{what_of[here[0], here[1]]} {here[2]!r} looks like {there[2]!r} ({where}) but "
                f"is another string: {confusables.escaped(here[2])} against "
                f"{confusables.escaped(there[2])}; Kubernetes treats them as two identities, "
                "a reviewer reads one",
                IDENTITY_ADVICE,
            )


_SA_USERNAME: Final = re.compile(
    r"system:serviceaccount:[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
)


def _service_account_username(value: str) -> bool:
    """``value`` is a ServiceAccount's username (``{namespace}``, a creator's placeholder
    for the run's own namespace, stands for a namespace)."""
    return bool(_SA_USERNAME.fullmatch(value.replace("{namespace}", "x")))


# --- ApprovalPolicy ---------------------------------------------------------------------


def _policy(
    index: int,
    doc: Mapping[str, Any],
    approvers: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Sequence[str]],
    settings: BundleSettings,
    ctx: _Context,
    tenants: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    findings = schema_findings("approvalpolicy.schema.json", doc)
    for finding in findings:
        ctx.problems.append(Problem(index, finding))
    if findings:
        return None
    meta, spec = doc["metadata"], doc["spec"]
    errors_before = _error_count(ctx)
    selector = spec.get("selector", {})
    namespaces = selector.get("namespaces") or (
        [meta["namespace"]] if "namespace" in meta else [ALL]
    )

    for s_index, subject in enumerate(spec.get("subjects", [])):
        if subject["kind"] not in SUBJECT_KINDS:
            ctx.warn(
                index,
                ("spec", "subjects", s_index, "kind"),
                f"subject kind {subject['kind']!r} is not visible on an AgentRun: "
                "this subject never matches a run at admission",
                f"approvalgate matches kinds {', '.join(SUBJECT_KINDS)}",
            )
        elif subject["name"] != ALL and (problem := name_problem(subject["name"])):
            ctx.add(
                index,
                ("spec", "subjects", s_index, "name"),
                f"subject name {subject['name']!r} is not a Kubernetes object name "
                f"({problem}): it never matches a run, whose references must be object names",
                "write the name exactly as the object is named (lowercase, no spaces), or '*'",
            )
    for a_index, agent in enumerate(spec.get("selector", {}).get("agents", [])):
        if problem := name_problem(agent):
            ctx.add(
                index,
                ("spec", "selector", "agents", a_index),
                f"agent {agent!r} is not a Kubernetes object name ({problem}): this selector "
                "never matches a run",
                "write the Agent's name exactly as it is named (lowercase, no spaces)",
            )

    approver_names = _resolve(
        index, ("spec", "approvers"), spec.get("approvers", []), approvers, groups, ctx
    )
    if not spec.get("approvers"):  # valid upstream: the submission API decides who approves
        ctx.warn(
            index,
            ("spec",),
            "the policy names no approvers: runs it selects are admitted only through "
            "trustedSubmitters or a bypass",
            "list Approver names or group:NAME under spec.approvers",
        )
    required = spec.get("requiredApprovals", DEFAULT_REQUIRED_APPROVALS)
    if approver_names and required > len(approver_names):
        ctx.add(
            index,
            ("spec", "requiredApprovals"),
            f"requires {required} approvals but only {len(approver_names)} approvers are "
            f"eligible ({', '.join(approver_names)})",
            "add approvers or lower requiredApprovals",
        )

    if (
        spec.get("serviceAccountRequesters") == "extraApproval"
        and approver_names
        and required + 1 > len(approver_names)
    ):
        ctx.warn(
            index,
            ("spec", "serviceAccountRequesters"),
            f"extraApproval asks a ServiceAccount requester for {required + 1} approvals, but "
            f"only {len(approver_names)} approvers are eligible: such runs are never admitted",
            "add approvers, or keep the default serviceAccountRequesters: deny",
        )

    bypass = None
    if "bypass" in spec:
        try:
            max_ttl = parse_duration(spec["bypass"]["maxTTL"])
        except ValueError as exc:
            ctx.add(index, ("spec", "bypass", "maxTTL"), str(exc))
            max_ttl = 0
        bypass = {
            "approvers": _resolve(
                index,
                ("spec", "bypass", "approvers"),
                spec["bypass"]["approvers"],
                approvers,
                groups,
                ctx,
            ),
            "maxTTLSeconds": max_ttl,
        }
    parents = None
    if "parents" in spec:
        raw = spec["parents"]
        try:
            parent_ttl = parse_duration(raw.get("maxTTL", "720h"))
        except ValueError as exc:
            ctx.add(index, ("spec", "parents", "maxTTL"), str(exc))
            parent_ttl = 1
        unbound = sorted(set(raw.get("perRunFields", [])) - {"idempotencyKey"})
        if unbound:
            ctx.warn(
                index,
                ("spec", "parents", "perRunFields"),
                f"spec.{', spec.'.join(unbound)} of a Schedule's runs would not be bound by "
                "its approval (the platform fills in only idempotencyKey on each run): any "
                "value there is admitted",
                "list only the fields the platform fills in: perRunFields: [idempotencyKey]",
            )
        parents = {
            "creators": sorted(set(raw["creators"])),
            "perRunFields": sorted(set(raw.get("perRunFields", ["idempotencyKey"]))),
            "maxRuns": int(raw.get("maxRuns", 0)),
            "maxTTLSeconds": max(parent_ttl, 1),
        }
    if spec.get("mode") == "automatic" and not spec.get("trustedSubmitters"):
        ctx.warn(
            index,
            ("spec", "mode"),
            "mode: automatic approves inside the submission API only; direct submissions "
            "still need approval records, and no trustedSubmitters are set",
            "add spec.trustedSubmitters naming the submission API's service account",
        )
    if spec.get("defaultDecision") == "allow" and spec.get("enforcement", "enforce") == "enforce":
        ctx.warn(
            index,
            ("spec", "defaultDecision"),
            "defaultDecision: allow does not admit runs without approvals at admission",
            "set spec.enforcement: warn to admit them with a warning",
        )
    trusted = spec.get("trustedSubmitters", {})
    _check_service_accounts(index, spec, namespaces, settings, ctx, tenants or {})
    if _error_count(ctx) > errors_before:
        return None
    return {
        "name": meta["name"],
        "namespace": meta.get("namespace", ""),
        "mode": spec.get("mode", "manual"),
        "defaultDecision": spec.get("defaultDecision", "deny"),
        "namespaces": sorted(set(namespaces)),
        "subjects": [
            {k: s[k] for k in ("kind", "name", "namespace") if k in s}
            for s in spec.get("subjects", [])
        ],
        "agents": sorted(set(selector.get("agents", []))),
        "matchLabels": dict(sorted(selector.get("matchLabels", {}).items())),
        "approvers": approver_names,
        "approverRefs": list(spec.get("approvers", [])),
        "requiredApprovals": required,
        "timeoutSeconds": spec.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS),
        "rejection": spec.get("rejection", "veto"),
        "enforcement": spec.get("enforcement", "enforce"),
        "bypass": bypass,
        "trustedSubmitters": {
            "users": sorted(set(trusted.get("users", []))),
            "groups": sorted(set(trusted.get("groups", []))),
        },
        "serviceAccountRequesters": spec.get("serviceAccountRequesters", "deny"),
        "gitOpsAppliers": sorted(set(spec.get("gitOpsAppliers", []))),
        **({"parents": parents} if parents is not None else {}),
    }


def _check_service_accounts(
    index: int,
    spec: Mapping[str, Any],
    namespaces: Sequence[str],
    settings: BundleSettings,
    ctx: _Context,
    tenants: Mapping[str, str],
) -> None:
    """A ServiceAccount the policy names must not live where the policy enforces approvals,
    nor where another policy of the bundle does (requesters create runs there too).

    Whoever may create runs in a namespace can usually act as its ServiceAccounts: the
    built-in ``edit`` role grants ``impersonate`` on them, ``create serviceaccounts/token``
    and creating pods that run as them.
    """

    def enforced(namespace: str) -> bool:
        return (ALL in namespaces or namespace in namespaces) and settings.enforces(namespace)

    def elsewhere(namespace: str) -> str:
        """The policy that names ``namespace`` among those it approves runs in ("" if none,
        or this one approves runs there). A policy of every namespace says nothing about
        where requesters work: only one naming the namespace does."""
        if enforced(namespace) or not settings.enforces(namespace):
            return ""
        return tenants.get(namespace, "")

    trusted = spec.get("trustedSubmitters", {})
    named = [
        (("spec", "trustedSubmitters", "users", i), "trusted submitter", user)
        for i, user in enumerate(trusted.get("users", []))
    ] + [
        (("spec", "gitOpsAppliers", i), "GitOps applier", user)
        for i, user in enumerate(spec.get("gitOpsAppliers", []))
    ]
    for path, what, user in named:
        namespace = identity.service_account_namespace(user)
        if namespace is None:
            continue
        name = user.rpartition(":")[2]
        other = elsewhere(namespace)
        if other:
            ctx.add(
                index,
                path,
                f"{what} {user!r} is a ServiceAccount in namespace {namespace!r}, where "
                f"policy {other} approves runs: anyone who may create runs there can usually "
                "impersonate it, mint a token for it or run a pod as it (the built-in edit "
                "role grants all three), and then act as it here",
                f"move the submitter to a namespace of its own that requesters cannot edit "
                f"(e.g. {namespace}-system) and trust system:serviceaccount:{namespace}-system:"
                f"{name}",
            )
            continue
        if not enforced(namespace):
            continue
        ctx.add(
            index,
            path,
            f"{what} {user!r} is a ServiceAccount in namespace {namespace!r}, where this "
            "policy enforces approvals: anyone who may create runs there can usually "
            "impersonate it, mint a token for it or run a pod as it (the built-in edit role "
            "grants all three)",
            f"move the submitter to a namespace of its own that requesters cannot edit "
            f"(e.g. {namespace}-system) and trust system:serviceaccount:{namespace}-system:{name}",
        )
    for u_index, user in enumerate(trusted.get("users", [])):
        if user == "system:anonymous":
            ctx.add(
                index,
                ("spec", "trustedSubmitters", "users", u_index),
                "trusted submitter 'system:anonymous' is every request without credentials",
                "trust the submitter's own ServiceAccount by name, from a namespace of its own "
                "that requesters cannot edit",
            )
    for g_index, group in enumerate(trusted.get("groups", [])):
        if group in _EVERYONE:
            ctx.add(
                index,
                ("spec", "trustedSubmitters", "groups", g_index),
                f"trusted group {group!r} holds {_EVERYONE[group]}: it would trust everyone "
                "who may create runs, people and ServiceAccounts alike",
                "trust the submitter's own ServiceAccount by name, from a namespace of its own "
                "that requesters cannot edit",
            )
            continue
        if group == "system:serviceaccounts":
            where = "every namespace"
        elif group.startswith("system:serviceaccounts:") and enforced(group.split(":", 2)[2]):
            where = f"namespace {group.split(':', 2)[2]!r}"
        elif group.startswith("system:serviceaccounts:") and elsewhere(group.split(":", 2)[2]):
            namespace = group.split(":", 2)[2]
            ctx.add(
                index,
                ("spec", "trustedSubmitters", "groups", g_index),
                f"trusted group {group!r} holds the ServiceAccounts of namespace "
                f"{namespace!r}, where policy {elsewhere(namespace)} approves runs: anyone "
                "who may create runs there can act as one of them, and then here",
                "trust the submitter's own ServiceAccount by name, from a namespace of its own "
                "that requesters cannot edit",
            )
            continue
        else:
            continue
        ctx.add(
            index,
            ("spec", "trustedSubmitters", "groups", g_index),
            f"trusted group {group!r} holds the ServiceAccounts of {where}, where this policy "
            "enforces approvals: anyone who may create runs there can act as one of them",
            "trust the submitter's own ServiceAccount by name, from a namespace of its own "
            "that requesters cannot edit",
        )


def _tenant_namespaces(documents: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Namespace -> the first policy approving runs there, read from the documents as
    :func:`_policy` scopes them (selector.namespaces, else the policy's own namespace; a
    policy of every namespace names none). Requesters create runs there: they hold ``edit``
    there."""
    found: dict[str, str] = {}
    for doc in documents:
        if not is_policy(doc):
            continue
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
        spec = doc.get("spec") if isinstance(doc.get("spec"), Mapping) else {}
        assert isinstance(meta, Mapping)
        assert isinstance(spec, Mapping)
        selector = spec.get("selector") if isinstance(spec.get("selector"), Mapping) else {}
        assert isinstance(selector, Mapping)
        own = meta.get("namespace")
        scope = selector.get("namespaces") or ([own] if isinstance(own, str) else [ALL])
        ref = f"{own}/{meta.get('name')}" if own else str(meta.get("name"))
        for namespace in scope if isinstance(scope, list) else ():
            if isinstance(namespace, str) and namespace != ALL:
                found.setdefault(namespace, ref)
    return found


_EVERYONE: Final = {
    "system:authenticated": "every authenticated user (and every ServiceAccount)",
    "system:unauthenticated": "every request without credentials",
}
"""Groups the API server gives to everyone (of a kind): never a trusted submitter."""


def _error_count(ctx: _Context) -> int:
    return sum(1 for p in ctx.problems if p.finding.severity == "error")


def _resolve(
    index: int,
    path: tuple[str | int, ...],
    principals: Sequence[str],
    approvers: Mapping[str, Mapping[str, Any]],
    groups: Mapping[str, Sequence[str]],
    ctx: _Context,
) -> list[str]:
    """Approver names for ``principals``: a name, a group name, or ``group:NAME``."""
    names: set[str] = set()
    for p_index, principal in enumerate(principals):
        group = principal.removeprefix("group:")
        if principal.startswith("group:") or (principal not in approvers and group in groups):
            members = groups.get(group)
            if not members:
                ctx.add(
                    index,
                    (*path, p_index),
                    f"no Approver is in group {group!r}",
                    f"add `groups: [{group}]` to an Approver's spec",
                )
                continue
            names.update(members)
        elif principal in approvers:
            names.add(principal)
        else:
            known = ", ".join(sorted(approvers)) or "none"
            ctx.add(
                index,
                (*path, p_index),
                f"{principal!r} is neither an Approver nor a group of approvers",
                f"known approvers: {known}; create one with `approvalgate keygen {principal}`",
            )
    return sorted(names)
