"""The compiled bundle at run time: validated once, keys parsed once, policies indexed.

:func:`load_bundle` is the only way a bundle reaches :func:`approvals.decide.decide`, for
the webhook and for ``approvalgate verify`` alike.

A loaded bundle also owns the memo tables of the admission hot path (verified signatures,
parsed annotations, spec digests: see :class:`approvals.records.Verifier` and
:meth:`Bundle.spec_digest`). They are pure memoisation, bounded, and go away with the bundle
on a reload, together with the keys they were checked against.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple

from securesystemslib.signer import SSlibKey

from approvalgate.approvals import identity, records, references
from approvalgate.approvals.digest import smaller_than, spec_digest
from approvalgate.approvals.durations import MAX_DURATION_SECONDS, format_duration
from approvalgate.approvals.errors import BundleError, format_json_path
from approvalgate.approvals.keys import ssh
from approvalgate.approvals.keys.public import key_identity, key_material, load_public_key
from approvalgate.approvals.policy import ALL, USER_VERIFICATION, bundle_generation
from approvalgate.approvals.schemas import schema_findings

DIGEST_CACHE_ENTRIES: Final = 256
DIGEST_CACHE_MAX_CHARS: Final = 8 * 1024
"""Spec facts (:class:`SpecFacts`) remembered per bundle, keyed by ``repr`` of specs up to
8 Ki characters (the spec itself is not kept): at most 256 x 32 KiB = 8 MiB of keys even if
every key needed 4 bytes a character, and no more again for the facts (strings taken from
the spec, so no longer than its ``repr``); about 0.6 MiB for ordinary ASCII specs of 2 KiB."""


class SpecFacts(NamedTuple):
    """What decide() reads from a run's spec: pure functions of the spec, memoised together
    (:meth:`Bundle.spec_facts`) so that a spec seen before is not walked again."""

    digest: str
    agent: str
    """``spec.agentRef.name`` ("" when absent or not an object)."""
    implementations: tuple[str, ...]
    """:func:`approvals.references.implementation_specs`."""
    invalid_references: bool
    """:func:`approvals.references.reference_problems` found something (the messages are
    built again when needed: a denial, and they could be long)."""


def spec_facts(spec: object) -> SpecFacts:
    """The :class:`SpecFacts` of ``spec``; raises what :func:`spec_digest` raises, first."""
    digest = spec_digest(spec)
    body = spec if isinstance(spec, dict) else {}
    agent = body.get("agentRef")
    return SpecFacts(
        digest,
        str(agent.get("name", "")) if isinstance(agent, dict) else "",
        references.implementation_specs(body),
        bool(references.reference_problems(spec)),
    )


@dataclass(frozen=True)
class ApproverKey:
    key: SSlibKey
    not_before: datetime | None
    not_after: datetime | None
    material: bytes = b""
    """The key whatever its form (:func:`approvals.keys.public.key_material`): one private
    key signs for its PEM and its OpenSSH line alike."""
    user_verification: bool = False
    """The key's records count only if their signature says the security key verified the
    user (``userVerification: required``; for every entry of the key once loaded,
    :func:`_one_rule_per_key`)."""

    def lacks_user_verification(self, signature: bytes) -> bool:
        """Whether ``signature`` (verified, by this key) fails the key's user verification
        requirement: one flag read, for keys that have it."""
        return self.user_verification and not ssh.user_verified(signature)

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
    service_account_requesters: str = "deny"
    gitops_appliers: frozenset[str] = frozenset()
    parent_creators: tuple[str, ...] = ()
    """Usernames the platform creates runs and Schedules under (``{namespace}`` stands for the
    request's namespace): their objects are judged by derivation from an approved parent."""
    per_run_fields: tuple[str, ...] = ("idempotencyKey",)
    max_runs: int = 0
    parent_max_ttl_seconds: int = 720 * 3600
    timeout_name: str = "timeoutSeconds"
    """What :attr:`timeout_seconds` is called in messages (``parents.maxTTL`` when a parent's
    records are judged: approvals.inherit)."""

    def is_parent_creator(self, username: str, namespace: str) -> bool:
        return any(
            username == creator.replace("{namespace}", namespace)
            for creator in self.parent_creators
        )

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class Bundle:
    environment: str
    generation: str
    exclude_namespaces: frozenset[str]
    """Not enforced, by name: every other namespace is (those created later too)."""
    namespace_selection: str
    """``all``, or ``optInLabel``: the chart then sends only labelled namespaces (the bundle
    cannot see labels, so it enforces whatever reaches it)."""
    enforcement: str
    no_match: str
    clock_skew_seconds: int
    policies: tuple[Policy, ...]
    approvers: Mapping[str, Approver]
    cluster_view: str = "required"
    """``required``: CREATEs judged by records need the cluster view (approvals.view)."""
    use_settle_seconds: int = 30
    referenced_content: str = "bind"
    """``bind`` (where the view is required): records bind referenced content
    (approvals.content)."""
    revision: int = 0
    """Raised by the compiler whenever the content changes: a signed bundle never goes back
    to a lower revision (approvals.bundle_trust)."""
    caches: bool = field(default=True, repr=False, compare=False)
    """False turns the memo tables off (the reference behaviour, for tests and debugging)."""
    _all_namespaces: tuple[Policy, ...] = field(init=False, repr=False, compare=False, default=())
    _by_namespace: Mapping[str, tuple[Policy, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _by_agent: Mapping[tuple[str | None, str], tuple[Policy, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _any_agent: Mapping[str | None, tuple[Policy, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    verifier: records.Verifier = field(
        init=False, repr=False, compare=False, default_factory=records.Verifier
    )
    """Verified signatures and parsed annotations, remembered for this bundle only."""
    _digests: Any = field(init=False, repr=False, compare=False, default=None)
    _known_as: Mapping[str, frozenset[str]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _persons: Mapping[str, str] = field(init=False, repr=False, compare=False, default_factory=dict)
    clock_skew: timedelta = field(init=False, repr=False, compare=False, default=timedelta())

    @property
    def needs_view(self) -> bool:
        return self.cluster_view == "required"

    @property
    def binds_content(self) -> bool:
        return self.needs_view and self.referenced_content == "bind"

    def enforces(self, namespace: str) -> bool:
        return namespace not in self.exclude_namespaces

    def candidate_policies(self, namespace: str, agent: str | None = None) -> tuple[Policy, ...]:
        """The policies that may select a run in ``namespace`` (of ``agent``, when given).

        A superset of the matching policies, in bundle order: the namespace index, narrowed
        by the (namespace, agent) index to the policies naming that agent or no agent.
        """
        if agent is None:
            return self._by_namespace.get(namespace, self._all_namespaces)
        bucket: str | None = namespace if namespace in self._by_namespace else None
        found = self._by_agent.get((bucket, agent))
        return found if found is not None else self._any_agent[bucket]

    def approvers_known_as(self, username: str) -> frozenset[str]:
        """The approvers named ``username`` or listing it among their usernames (indexed),
        compared as persons (:func:`approvals.identity.person_keys`: case, look-alikes,
        invisible characters and an authenticator's prefix do not make another person).
        Used only to refuse approvals, never to admit."""
        if not username:
            return frozenset()
        keys = identity.person_keys(username)
        if len(keys) == 1:
            (key,) = keys
            return self._known_as.get(key, frozenset())
        return frozenset().union(*(self._known_as.get(k, frozenset()) for k in keys))

    def person_of(self, approver: str) -> str:
        """The person ``approver`` is: approvers whose usernames (or names) share one
        (compared as :func:`approvals.identity.person_key`) or who share a key (in any form) are one
        person, named by the first of their names; they count as one vote (the compiler
        refuses such a bundle too)."""
        return self._persons.get(approver, approver)

    def requires_user_verification(self, key: SSlibKey) -> bool:
        """Whether the bundle counts ``key``'s records only with user verification (an entry
        of it, in any form and approver, says ``userVerification: required``): what a
        signer checks before anything is written (``approve --bundle``)."""
        material = key_identity(key)
        return any(
            k.user_verification and k.material == material
            for approver in self.approvers.values()
            for k in approver.keys
        )

    def spec_digest(self, spec: object) -> str:
        """:func:`approvals.digest.spec_digest`, memoised per bundle (raises the same errors)."""
        return self.spec_facts(spec).digest if isinstance(spec, dict) else spec_digest(spec)

    def spec_facts(self, spec: object) -> SpecFacts:
        """:func:`spec_facts`, memoised per bundle (raises the same errors).

        Keyed by ``repr(spec)`` when the spec is an object: for a tree of dicts, lists,
        strings, numbers, booleans and None (what a JSON or YAML loader builds), ``repr``
        tells apart everything the digest and the reference checks tell apart (``1``,
        ``1.0``, ``"1"`` and ``True`` differ; so do a string key and an integer key, and
        every character of a string), and a spec that cannot be digested raises before
        anything is stored. Only successes are stored.
        """
        if not isinstance(spec, dict) or not smaller_than(spec, DIGEST_CACHE_MAX_CHARS):
            return spec_facts(spec)  # repr of a large spec would cost what it sends
        key = repr(spec)
        if len(key) > DIGEST_CACHE_MAX_CHARS:
            return spec_facts(spec)
        facts: SpecFacts = self._digests(records.MemoKey(key, spec))
        return facts

    def __post_init__(self) -> None:
        """Index policies by namespace and by (namespace, agent) once per bundle."""
        wildcard = tuple(p for p in self.policies if ALL in p.namespaces)
        index: dict[str, list[Policy]] = {}
        for policy in self.policies:
            for namespace in policy.namespaces - {ALL}:
                index.setdefault(namespace, [])
        for namespace, bucket in index.items():
            bucket.extend(
                p for p in self.policies if ALL in p.namespaces or namespace in p.namespaces
            )
        by_namespace = {ns: tuple(b) for ns, b in index.items()}
        buckets: dict[str | None, tuple[Policy, ...]] = {None: wildcard}
        buckets.update(by_namespace)
        by_agent: dict[tuple[str | None, str], tuple[Policy, ...]] = {}
        any_agent: dict[str | None, tuple[Policy, ...]] = {}
        for name, policies in buckets.items():
            any_agent[name] = tuple(p for p in policies if not p.agents)
            for agent in {a for p in policies for a in p.agents}:
                by_agent[name, agent] = tuple(
                    p for p in policies if not p.agents or agent in p.agents
                )
        object.__setattr__(self, "_all_namespaces", wildcard)
        object.__setattr__(self, "_by_namespace", by_namespace)
        object.__setattr__(self, "_by_agent", by_agent)
        object.__setattr__(self, "_any_agent", any_agent)
        entries = DIGEST_CACHE_ENTRIES if self.caches else 0
        object.__setattr__(self, "_digests", functools.lru_cache(maxsize=entries)(_digest_of))
        if not self.caches:
            object.__setattr__(self, "verifier", records.Verifier(0))
        known_as: dict[str, set[str]] = {}
        for name, approver in self.approvers.items():
            for username in {approver.name, *approver.usernames}:
                for key in identity.person_keys(username):
                    known_as.setdefault(key, set()).add(name)
        object.__setattr__(self, "_known_as", {u: frozenset(n) for u, n in known_as.items()})
        object.__setattr__(self, "_persons", _persons(self.approvers))
        object.__setattr__(self, "clock_skew", timedelta(seconds=self.clock_skew_seconds))


def _persons(approvers: Mapping[str, Approver]) -> dict[str, str]:
    """Each approver's person (:meth:`Bundle.person_of`): approvers linked by a shared
    username (:func:`approvals.identity.person_key`), transitively, are one."""
    parent = {name: name for name in approvers}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    owner: dict[object, str] = {}
    for name in sorted(approvers):
        # an approver's name is compared as a username too (Bundle.approvers_known_as)
        names = {name, *approvers[name].usernames}
        shared: list[object] = [identity.person_key(u) for u in names]
        # one key is one person too: whoever holds it signs as every approver listing it
        shared += [k.material for k in approvers[name].keys]
        for key in shared:
            if not key:
                continue
            other = owner.setdefault(key, name)
            a, b = root(other), root(name)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return {name: root(name) for name in approvers if root(name) != name}


def _digest_of(keyed: records.MemoKey) -> SpecFacts:
    """The cached function behind :meth:`Bundle.spec_facts`; the entry keeps only the key
    and the facts."""
    facts = spec_facts(keyed.value)
    keyed.value = None
    return facts


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
        approvers = _one_rule_per_key({a["name"]: _approver(a, source) for a in obj["approvers"]})
    except ValueError as exc:
        raise BundleError(f"{source} holds an unreadable key: {exc}") from exc
    policies = tuple(_policy(p) for p in obj["policies"])
    for policy in policies:
        lifetimes = (
            policy.timeout_seconds,
            policy.parent_max_ttl_seconds,
            policy.bypass.max_ttl_seconds if policy.bypass else 0,
        )
        if max(lifetimes) > MAX_DURATION_SECONDS:  # the schema's maximum, where it is older
            raise BundleError(
                f"{source}: policy {policy.ref} gives approvals a lifetime of {max(lifetimes)} "
                f"seconds, beyond {format_duration(MAX_DURATION_SECONDS)}",
                advice="recompile it with `approvalgate compile`",
            )
        missing = policy.approvers | (policy.bypass.approvers if policy.bypass else frozenset())
        missing -= approvers.keys()
        if missing:
            raise BundleError(
                f"{source}: policy {policy.ref} names unknown approvers {sorted(missing)}"
            )
    return Bundle(
        environment=obj["environment"],
        generation=obj["generation"],
        exclude_namespaces=frozenset(obj["excludeNamespaces"]),
        namespace_selection=obj["namespaceSelection"],
        enforcement=obj["enforcement"],
        no_match=obj["noMatch"],
        clock_skew_seconds=obj["clockSkewSeconds"],
        policies=policies,
        approvers=approvers,
        cluster_view=obj.get("clusterView", "required"),
        use_settle_seconds=obj.get("useSettleSeconds", 30),
        referenced_content=obj.get("referencedContent", "bind"),
        revision=obj.get("revision", 0),
    )


def _approver(obj: Mapping[str, Any], source: str) -> Approver:
    keys = []
    for index, key in enumerate(obj["keys"]):
        public = load_public_key(key["publicKey"])
        if USER_VERIFICATION in key:
            keytype = public.keytype
            if not ssh.is_security_key(keytype):
                raise BundleError(
                    f"{source}: keys[{index}] of approver {obj['name']} says userVerification "
                    f"but is a {keytype} key, whose signatures carry no flags (only a security "
                    "key, sk-, can show it verified the user)",
                    advice="recompile it with `approvalgate compile`, which refuses it",
                )
        keys.append(
            ApproverKey(
                key=public,
                not_before=records.parse_time(key["notBefore"]) if "notBefore" in key else None,
                not_after=records.parse_time(key["notAfter"]) if "notAfter" in key else None,
                material=key_material(key["publicKey"]),
                user_verification=key.get(USER_VERIFICATION) == "required",
            )
        )
    return Approver(
        name=obj["name"],
        usernames=frozenset(obj["usernames"]),
        groups=frozenset(obj["groups"]),
        keys=tuple(keys),
    )


def _one_rule_per_key(approvers: dict[str, Approver]) -> dict[str, Approver]:
    """Each key with the strictest rules of all its entries, in every approver and every
    form, once per bundle. A bundle compiled before compile refused one key listed twice (by
    one approver, or by two), or written by hand, must not let an entry without a notAfter
    sign for the key retired in another (fifth red-team pass), nor an entry without
    ``userVerification`` count the key's signatures without the PIN that another requires
    (sixth pass): the window all entries share, and user verification if any requires it
    (a form that cannot show it, PEM or a plain OpenSSH line of the same key, then counts
    nothing: decide() says why)."""
    windows: dict[bytes, tuple[datetime | None, datetime | None]] = {}
    verified: set[bytes] = set()
    for approver in approvers.values():
        for key in approver.keys:
            start, end = windows.get(key.material, (key.not_before, key.not_after))
            if key.not_before is not None and (start is None or key.not_before > start):
                start = key.not_before
            if key.not_after is not None and (end is None or key.not_after < end):
                end = key.not_after
            windows[key.material] = (start, end)
            if key.user_verification:
                verified.add(key.material)
    return {
        name: replace(
            approver,
            keys=tuple(
                replace(
                    k,
                    not_before=windows[k.material][0],
                    not_after=windows[k.material][1],
                    user_verification=k.material in verified,
                )
                for k in approver.keys
            ),
        )
        for name, approver in approvers.items()
    }


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
        service_account_requesters=obj["serviceAccountRequesters"],
        gitops_appliers=frozenset(obj["gitOpsAppliers"]),
        **_parents(obj.get("parents")),
    )


def _parents(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    if obj is None:
        return {}
    return {
        "parent_creators": tuple(obj["creators"]),
        "per_run_fields": tuple(obj["perRunFields"]),
        "max_runs": obj["maxRuns"],
        "parent_max_ttl_seconds": obj["maxTTLSeconds"],
    }
