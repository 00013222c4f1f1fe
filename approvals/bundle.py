"""The compiled bundle at run time: validated once, keys parsed once, policies indexed.

:func:`load_bundle` is the only way a bundle reaches :func:`approvals.decide.decide`, for
the webhook and for ``approvalgate verify`` alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from securesystemslib.signer import SSlibKey

from approvals import records
from approvals.errors import BundleError, format_json_path
from approvals.policy import ALL, bundle_generation
from approvals.schemas import schema_findings


@dataclass(frozen=True)
class ApproverKey:
    key: SSlibKey
    not_before: datetime | None
    not_after: datetime | None

    def valid_at(self, moment: datetime) -> bool:
        if self.not_before is not None and moment < self.not_before:
            return False
        return self.not_after is None or moment < self.not_after


@dataclass(frozen=True)
class Approver:
    name: str
    usernames: frozenset[str]
    groups: frozenset[str]
    keys: tuple[ApproverKey, ...]


@dataclass(frozen=True)
class Subject:
    kind: str
    name: str
    namespace: str | None


@dataclass(frozen=True)
class Bypass:
    approvers: frozenset[str]
    max_ttl_seconds: int


@dataclass(frozen=True)
class Policy:
    name: str
    namespace: str
    mode: str
    default_decision: str
    namespaces: frozenset[str]
    subjects: tuple[Subject, ...]
    agents: frozenset[str]
    match_labels: Mapping[str, str]
    approvers: frozenset[str]
    approver_refs: tuple[str, ...]
    required_approvals: int
    timeout_seconds: int
    rejection: str
    enforcement: str
    bypass: Bypass | None
    trusted_users: frozenset[str]
    trusted_groups: frozenset[str]

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class Bundle:
    environment: str
    generation: str
    enforced_namespaces: frozenset[str]
    enforcement: str
    no_match: str
    clock_skew_seconds: int
    policies: tuple[Policy, ...]
    approvers: Mapping[str, Approver]
    _all_namespaces: tuple[Policy, ...] = field(init=False, repr=False, compare=False, default=())
    _by_namespace: Mapping[str, tuple[Policy, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def enforces(self, namespace: str) -> bool:
        return ALL in self.enforced_namespaces or namespace in self.enforced_namespaces

    def candidate_policies(self, namespace: str) -> tuple[Policy, ...]:
        return self._by_namespace.get(namespace, self._all_namespaces)

    def __post_init__(self) -> None:
        """Index policies by namespace once per bundle: the admission path only looks up."""
        wildcard = tuple(p for p in self.policies if ALL in p.namespaces)
        index: dict[str, list[Policy]] = {}
        for policy in self.policies:
            for namespace in policy.namespaces - {ALL}:
                index.setdefault(namespace, [])
        for namespace, bucket in index.items():
            bucket.extend(
                p for p in self.policies if ALL in p.namespaces or namespace in p.namespaces
            )
        object.__setattr__(self, "_all_namespaces", wildcard)
        object.__setattr__(self, "_by_namespace", {ns: tuple(b) for ns, b in index.items()})


def parse_bundle_text(text: str | bytes, source: str = "bundle") -> Bundle:
    """Parse and load a bundle file's content; every defect is a :class:`BundleError`."""
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BundleError(
            f"{source} is not valid JSON: {exc}", advice="recompile it with `approvalgate compile`"
        ) from exc
    return load_bundle(obj, source)


def load_bundle(obj: object, source: str = "bundle") -> Bundle:
    findings = schema_findings("bundle.schema.json", obj)
    if findings:
        detail = "; ".join(f"{format_json_path(f.path)}: {f.message}" for f in findings[:5])
        raise BundleError(
            f"{source} does not match the bundle schema: {detail}",
            advice="recompile it with `approvalgate compile`",
        )
    assert isinstance(obj, dict)
    if bundle_generation(obj) != obj["generation"]:
        raise BundleError(
            f"{source} was edited after compilation (generation mismatch)",
            advice="recompile it with `approvalgate compile`",
        )
    try:
        approvers = {a["name"]: _approver(a) for a in obj["approvers"]}
    except ValueError as exc:
        raise BundleError(f"{source} holds an unreadable key: {exc}") from exc
    policies = tuple(_policy(p) for p in obj["policies"])
    for policy in policies:
        missing = policy.approvers | (policy.bypass.approvers if policy.bypass else frozenset())
        missing -= approvers.keys()
        if missing:
            raise BundleError(
                f"{source}: policy {policy.ref} names unknown approvers {sorted(missing)}"
            )
    return Bundle(
        environment=obj["environment"],
        generation=obj["generation"],
        enforced_namespaces=frozenset(obj["enforcedNamespaces"]),
        enforcement=obj["enforcement"],
        no_match=obj["noMatch"],
        clock_skew_seconds=obj["clockSkewSeconds"],
        policies=policies,
        approvers=approvers,
    )


def _approver(obj: Mapping[str, Any]) -> Approver:
    keys = []
    for key in obj["keys"]:
        public = records.load_public_key(key["publicKey"])
        keys.append(
            ApproverKey(
                key=records.sslib_key(public),
                not_before=records.parse_time(key["notBefore"]) if "notBefore" in key else None,
                not_after=records.parse_time(key["notAfter"]) if "notAfter" in key else None,
            )
        )
    return Approver(
        name=obj["name"],
        usernames=frozenset(obj["usernames"]),
        groups=frozenset(obj["groups"]),
        keys=tuple(keys),
    )


def _policy(obj: Mapping[str, Any]) -> Policy:
    bypass = obj["bypass"]
    return Policy(
        name=obj["name"],
        namespace=obj["namespace"],
        mode=obj["mode"],
        default_decision=obj["defaultDecision"],
        namespaces=frozenset(obj["namespaces"]),
        subjects=tuple(Subject(s["kind"], s["name"], s.get("namespace")) for s in obj["subjects"]),
        agents=frozenset(obj["agents"]),
        match_labels=dict(obj["matchLabels"]),
        approvers=frozenset(obj["approvers"]),
        approver_refs=tuple(obj["approverRefs"]),
        required_approvals=obj["requiredApprovals"],
        timeout_seconds=obj["timeoutSeconds"],
        rejection=obj["rejection"],
        enforcement=obj["enforcement"],
        bypass=Bypass(frozenset(bypass["approvers"]), bypass["maxTTLSeconds"]) if bypass else None,
        trusted_users=frozenset(obj["trustedSubmitters"]["users"]),
        trusted_groups=frozenset(obj["trustedSubmitters"]["groups"]),
    )
