"""decide(): the one admission decision shared by the webhook, the CLI and CI.

Pure and total: the same request, bundle and ``now`` always give the same decision, and
any internal error becomes a denial with a generic message (the detail is kept in
:attr:`Decision.internal_error` for the caller to log). The rules are those of
docs/design.md ("decide(): the rules as implemented"), numbered as there (in the order
they apply); each is named where it is applied.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple

from approvalgate.approvals import identity, reasons, records, references
from approvalgate.approvals.admission import AGENTRUNS, AGENTS_GROUP
from approvalgate.approvals.bundle import Approver, ApproverKey, Bundle, Policy
from approvalgate.approvals.errors import DigestError
from approvalgate.approvals.policy import ENFORCEMENT_LEVELS
from approvalgate.approvals.view import ClusterView

Outcome = Literal["allow", "warn", "require-approval", "deny"]
_PRECEDENCE: Final = {"allow": 0, "warn": 1, "require-approval": 2, "deny": 3}
GENERIC_ERROR: Final = "approvalgate could not evaluate this request; it is denied (fail closed)"
_IDENTITY_REASONS: Final = frozenset(
    {"trusted-submitter-unbound", "gitops-applier-unbound", "service-account-requester"}
)
"""Denials that approvals cannot lift: the requester's identity, not the records, is wrong."""


@dataclass(frozen=True)
class RecordVerdict:
    """What became of one record of the annotation under one policy."""

    index: int
    approver: str
    decision: str
    valid: bool
    note: str
    environment: str = ""
    """The environment the record names ("" for a v1 or unreadable record)."""

    def line(self) -> str:
        if self.index < 0:
            return self.note
        who = f" by {self.approver}" if self.approver else ""
        return f"record {self.index}{who}: {self.note}"


@dataclass(frozen=True)
class PolicyResult:
    policy: str
    outcome: Outcome
    reason: str
    summary: str
    approvals: tuple[str, ...] = ()
    records: tuple[RecordVerdict, ...] = ()
    bypass_reason: str = ""
    audit_only: bool = False
    missing: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    code: int
    reason: str
    message: str
    warnings: tuple[str, ...] = ()
    audit_annotations: Mapping[str, str] = field(default_factory=dict)
    policies: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    results: tuple[PolicyResult, ...] = ()
    digest: str = ""
    subject: str = ""
    internal_error: str = ""


def decide(
    request: Mapping[str, Any],
    bundle: Bundle | None,
    now: datetime,
    view: ClusterView | None = None,
) -> Decision:
    """Admit or deny one AdmissionReview request under ``bundle`` at ``now``.

    ``view`` is what the cluster knows (:mod:`approvals.view`): decisions, uses, requests.
    None means no view: where the bundle requires one, what needs it is denied.
    """
    if bundle is None:
        return _deny(
            "no-bundle",
            "approvalgate has no policy bundle loaded; it is denied "
            "(fail closed). Check the webhook's bundle ConfigMap.",
        )
    try:
        return _decide(request, bundle, now)
    except Exception as exc:  # rule: total, fail closed
        return Decision(
            False,
            403,
            "internal-error",
            GENERIC_ERROR,
            audit_annotations={"decision": "deny", "reason": "internal-error"},
            internal_error=f"{type(exc).__name__}: {exc}",
        )


def _allow(reason: str, message: str = "", **extra: Any) -> Decision:
    extra.setdefault("audit_annotations", {"decision": "allow", "reason": reason})
    return Decision(True, 200, reason, message, **extra)


def _deny(reason: str, message: str, **extra: Any) -> Decision:
    extra.setdefault("audit_annotations", {"decision": "deny", "reason": reason})
    return Decision(False, 403, reason, message, **extra)


def _decide(request: Mapping[str, Any], bundle: Bundle, now: datetime) -> Decision:
    operation = request.get("operation")
    # Rule 1: only agentruns are gated; DELETE and CONNECT pass.
    if operation in ("DELETE", "CONNECT"):
        return _allow("operation-not-gated")
    resource = request.get("resource")
    if not isinstance(resource, dict):
        return _deny("malformed", "the request names no resource")
    if resource.get("group") != AGENTS_GROUP or resource.get("resource") != AGENTRUNS:
        return _allow("not-gated")
    if request.get("subResource") == "status":
        return _allow("status-subresource")
    if operation not in ("CREATE", "UPDATE"):
        return _deny("malformed", f"unknown operation {operation!r}")
    obj = request.get("object")
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict):
        return _deny("malformed", "the request carries no AgentRun object")
    metadata: dict[str, Any] = obj.get("metadata", {})
    namespace = request.get("namespace") or metadata.get("namespace") or ""
    if not isinstance(namespace, str) or not namespace:
        return _deny("malformed", "the request names no namespace")
    # Rule 2: namespaces the bundle does not enforce pass without looking.
    if not bundle.enforces(namespace):
        return _allow("namespace-not-enforced")

    # Rule 3, before any digest or policy: controllers must be able to update (and
    # finalize) any stored run, even one whose spec could never be approved.
    if operation == "UPDATE":
        verdict = _update_shortcut(request, obj, bundle, namespace)
        if verdict is not None:
            return verdict
    try:
        digest = bundle.spec_digest(obj.get("spec"))
    except DigestError as exc:
        return _deny(
            "undigestable-spec",
            f"approvalgate denied AgentRun {namespace}/"
            f"{metadata.get('name') or metadata.get('generateName', '')}: its spec "
            f"cannot be approved: {exc.message}",
        )

    run = _Run.of(request, obj, metadata, namespace, digest, bundle)
    # Rule 4: references are judged as the controller reads them, or not at all.
    invalid = references.reference_problems(obj.get("spec"))
    if invalid:
        return _invalid_references(invalid, run, bundle)
    policies = _matching(bundle, run)
    if not policies:  # Rule 4: no silent holes (noMatch, default deny).
        if bundle.no_match == "allow":
            return _allow("no-policy", digest=digest, subject=run.subject)
        return _deny(
            "no-policy",
            f"approvalgate denied AgentRun {run.ref}: no ApprovalPolicy "
            f"selects it in namespace {namespace!r}, and unmatched runs are denied.\n"
            "Add an ApprovalPolicy that selects this run, or submit it through the "
            "platform's submission API.",
            digest=digest,
            subject=run.subject,
        )

    parsed, problems = bundle.verifier.parse_annotation(
        (metadata.get("annotations") or {}).get(records.ANNOTATION)
    )
    checks = [_check_record(r, run, bundle, now) for r in parsed]
    results = [_evaluate(p, run, checks, problems, bundle) for p in policies]
    return _combine(results, run, bundle.environment)


def matching_policies(request: Mapping[str, Any], bundle: Bundle) -> list[Policy]:
    """The policies that select the request's run (what explain and approve --ttl use)."""
    obj = request.get("object") or {}
    metadata = obj.get("metadata") or {}
    namespace = str(request.get("namespace") or metadata.get("namespace") or "")
    run = _Run.of(request, obj, metadata, namespace, "")
    return [p for p in bundle.candidate_policies(namespace) if _matches(p, run)]


def _matching(bundle: Bundle, run: _Run) -> list[Policy]:
    return [p for p in bundle.candidate_policies(run.namespace, run.agent) if _matches(p, run)]


def _invalid_references(problems: Sequence[str], run: _Run, bundle: Bundle) -> Decision:
    """Rule 4: deny (at the environment's enforcement level) what could be read two ways."""
    verb = "creating" if run.operation == "CREATE" else "updating"
    head = (
        f"approvalgate denied {verb} AgentRun {run.ref}: the spec refers to objects by "
        "names that are not valid Kubernetes object names, so the platform and approvalgate "
        "could read them differently:"
    )
    message = "\n".join([head, *(f"- {p}" for p in problems), references.ADVICE])
    extra: dict[str, Any] = {"digest": run.digest, "subject": run.subject}
    if bundle.enforcement == "enforce":
        return _deny("invalid-reference", message, **extra)
    audit = {"decision": "allow", "reason": "invalid-reference", "audit-would-deny": "references"}
    if bundle.enforcement == "warn":
        warning = f"approvalgate (enforcement warn) would deny: {'; '.join(problems)}"
        return _allow("invalid-reference", warnings=(warning,), audit_annotations=audit, **extra)
    return _allow("invalid-reference", audit_annotations=audit, **extra)


class _Run(NamedTuple):
    """The facts about the run that the rules read (a named tuple: built on every request)."""

    ref: str
    namespace: str
    name: str
    generate_name: str
    subject: str
    digest: str
    agent: str
    implementations: tuple[str, ...]
    labels: Mapping[str, str]
    username: str
    groups: frozenset[str]
    service_account: bool
    pod: str
    author: str
    operation: str
    excluded: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        request: Mapping[str, Any],
        obj: Mapping[str, Any],
        metadata: Mapping[str, Any],
        namespace: str,
        digest: str,
        bundle: Bundle | None = None,
    ) -> _Run:
        """The run's facts; with ``bundle``, also which approvers are its requester or author."""
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        user = request.get("userInfo") if isinstance(request.get("userInfo"), dict) else {}
        assert isinstance(user, dict)
        name = str(metadata.get("name") or request.get("name") or "")
        generate = str(metadata.get("generateName") or "")
        annotations = metadata.get("annotations") or {}
        labels = metadata.get("labels") or {}
        username = str(user.get("username") or "")
        author = (
            str(annotations.get(records.AUTHOR_ANNOTATION, ""))
            if isinstance(annotations, dict)
            else ""
        )
        return cls(
            ref=f"{namespace}/{name or generate + '*'}",
            namespace=namespace,
            name=name,
            generate_name=generate,
            subject=records.subject_name(namespace, name, generate),
            digest=digest,
            agent=_ref_name(spec.get("agentRef")),
            implementations=references.implementation_specs(spec),
            labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
            username=username,
            groups=frozenset(str(g) for g in user.get("groups") or ()),
            service_account=identity.is_service_account(username),
            pod=identity.bound_pod(user),
            author=author,
            operation=str(request.get("operation")),
            excluded=_excluded(bundle, username, author) if bundle is not None else frozenset(),
        )

    def bound_by(self, subject: str) -> bool:
        """A record's subject names this run, or (``prefix*``) the run's generateName prefix."""
        if subject.endswith("*"):
            prefix = subject[:-1]
            mine = records.subject_name(self.namespace, generate_name=self.generate_name)[:-1]
            return (
                bool(self.generate_name)
                and prefix == mine
                and (not self.name or self.name.startswith(self.generate_name))
            )
        return bool(self.name) and subject == self.subject


def _excluded(bundle: Bundle, username: str, author: str) -> frozenset[str]:
    """The approvers who are the requester or the author of a run (:func:`_is_person`)."""
    return bundle.approvers_known_as(username) | bundle.approvers_known_as(author)


def _ref_name(ref: object) -> str:
    return str(ref.get("name", "")) if isinstance(ref, dict) else ""


def _same_spec(old: object, new: object, bundle: Bundle) -> bool:
    """Equal as the API server stores them (types matter: 1 is not true, "1" is not 1)."""
    try:
        return bundle.spec_digest(old) == bundle.spec_digest(new)
    except DigestError:  # a spec we cannot digest still compares by its exact JSON
        return json.dumps(old, sort_keys=True) == json.dumps(new, sort_keys=True)


def _update_shortcut(
    request: Mapping[str, Any], obj: Mapping[str, Any], bundle: Bundle, namespace: str
) -> Decision | None:
    old = request.get("oldObject")
    if not isinstance(old, dict):
        return _deny("malformed", "the UPDATE request carries no oldObject")
    old_meta = old.get("metadata") if isinstance(old.get("metadata"), dict) else {}
    new_meta = obj.get("metadata", {})
    assert isinstance(old_meta, dict)
    same_spec = _same_spec(old.get("spec"), obj.get("spec"), bundle)
    if old_meta.get("deletionTimestamp"):
        old_fin, new_fin = (
            set(old_meta.get("finalizers") or ()),
            set(new_meta.get("finalizers") or ()),
        )
        if same_spec and new_fin <= old_fin:
            return _allow("deleting-object")
        return _deny(
            "deleting-object",
            "approvalgate denied this update: the AgentRun is being "
            "deleted, and only finalizer removal is allowed now",
        )
    old_ann = (old_meta.get("annotations") or {}).get(records.ANNOTATION)
    new_ann = (new_meta.get("annotations") or {}).get(records.ANNOTATION)
    if same_spec and old_ann == new_ann and _same_policies(request, old, obj, bundle, namespace):
        return _allow("unchanged-spec")
    return None


def _same_policies(
    request: Mapping[str, Any],
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    bundle: Bundle,
    namespace: str,
) -> bool:
    """Rule 3: the same policies select the run before and after (labels can change that)."""

    def refs(obj: Mapping[str, Any]) -> list[str]:
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        assert isinstance(meta, dict)
        return [p.ref for p in _matching(bundle, _Run.of(request, obj, meta, namespace, ""))]

    return refs(old) == refs(new)


def _matches(policy: Policy, run: _Run) -> bool:
    """Rule 4: namespace (indexed), agents, labels, then any subject."""
    if policy.agents and run.agent not in policy.agents:
        return False
    labels = policy.match_labels
    if labels and any(run.labels.get(k) != v for k, v in labels.items()):
        return False
    if not policy.subjects:
        return True
    return any(_subject_matches(s.kind, s.name, s.namespace, run) for s in policy.subjects)


def _subject_matches(kind: str, name: str, namespace: str | None, run: _Run) -> bool:
    if namespace is not None and namespace != run.namespace:
        return False
    if kind == "Agent":
        value = run.agent
    elif kind == "AgentRun":
        value = run.name
    elif kind == "ImplementationSpec":  # any of them: the top-level one and every step's
        return name == "*" or name in run.implementations
    elif kind == "Namespace":
        value = run.namespace
    else:
        return False
    return name in ("*", value)


class _Check(NamedTuple):
    """Policy-independent facts about one record."""

    record: records.ParsedRecord
    approver: Approver | None
    problem: str


def _check_record(record: records.ParsedRecord, run: _Run, bundle: Bundle, now: datetime) -> _Check:
    """Rule 5, the checks that do not depend on the policy (the rest: :func:`_judge`)."""
    claim = record.claim
    approver = bundle.approvers.get(claim.approver)
    if approver is None:
        return _Check(record, None, f"{claim.approver!r} is not a known approver")
    if not run.bound_by(claim.subject):
        return _Check(
            record,
            approver,
            f"approves another run ({_short_subject(claim.subject)}), not {run.ref}",
        )
    if claim.digest != run.digest:
        return _Check(
            record,
            approver,
            f"approves another spec (sha256:{claim.digest[:12]}), "
            f"this run's spec is sha256:{run.digest[:12]}; re-approve the current spec",
        )
    problem = _environment_problem(claim, bundle.environment)
    if problem:  # Rule 5: an approval counts only in the environment it names
        return _Check(record, approver, problem)
    if claim.issued_at > now + bundle.clock_skew:
        return _Check(
            record, approver, f"issued in the future ({records.format_time(claim.issued_at)})"
        )
    if now >= claim.expires_at:
        return _Check(record, approver, f"expired at {records.format_time(claim.expires_at)}")
    if claim.expires_at <= claim.issued_at:
        return _Check(record, approver, "expires before it was issued")
    keys = [k for k in approver.keys if k.valid_at(claim.issued_at)]
    signer = bundle.verifier.signed_by(record, [k.key for k in keys])
    if signer is None:
        return _Check(
            record,
            approver,
            f"signature does not verify with a key of {approver.name} "
            f"valid at {records.format_time(claim.issued_at)}",
        )
    key = next(k for k in keys if k.key is signer)
    if not key.valid_at(now):  # Rule 5: a key counts only while it is valid, now too
        return _Check(record, approver, _key_not_valid_now(approver, key, now))
    if _is_person(approver, run.username):
        return _Check(
            record,
            approver,
            f"{approver.name} submitted this run (as "
            f"{run.username}): nobody approves their own run",
        )
    if _is_person(approver, run.author):
        return _Check(
            record,
            approver,
            f"{approver.name} is the run's recorded author "
            f"({records.AUTHOR_ANNOTATION}): nobody approves their own run",
        )
    return _Check(record, approver, "")


def _environment_problem(claim: records.Claim, environment: str) -> str:
    """Rule 5: a record counts only in its own environment; v1 records name none."""
    if claim.version != records.FORMAT_VERSION:
        return (
            f"record format v1 ({records.PREDICATE_TYPE_V1}) names no environment, so it "
            f"counts in none; re-approve with `approvalgate approve --env {environment}`"
        )
    if claim.environment != environment:
        return (
            f"{_SIGNED[claim.decision]} for {claim.environment}, this bundle enforces "
            f"{environment}: a record counts only in the environment it names; "
            f"re-approve with `approvalgate approve --env {environment}`"
        )
    return ""


_SIGNED: Final = {
    "approve": "approved",
    "reject": "rejected",
    "bypass": "bypassed",
    "withdraw": "withdrew",
}


def _key_not_valid_now(approver: Approver, key: ApproverKey, now: datetime) -> str:
    if key.not_after is not None and now >= key.not_after:
        state = f"expired (retired) at {records.format_time(key.not_after)}"
    else:
        assert key.not_before is not None
        state = f"not valid before {records.format_time(key.not_before)}"
    return (
        f"signed with a key of {approver.name} that is {state}: a key counts only while it "
        "is valid, at the record's issuedAt and at admission time (removing a key or setting "
        "its notAfter revokes it)"
    )


def _is_person(approver: Approver, username: str) -> bool:
    return bool(username) and (username == approver.name or username in approver.usernames)


def _short_subject(subject: str) -> str:
    return subject.removeprefix(records.SUBJECT_PREFIX)


def _effective(policy: Policy, bundle_level: str) -> str:
    """Rule 7: the environment caps a policy's enforcement (the weaker one wins)."""
    return min(policy.enforcement, bundle_level, key=ENFORCEMENT_LEVELS.index)


def _evaluate(
    policy: Policy,
    run: _Run,
    checks: Sequence[_Check],
    problems: Sequence[records.RecordProblem],
    bundle: Bundle,
) -> PolicyResult:
    level = _effective(policy, bundle.enforcement)
    if level == "off":  # Rule 5: a policy switched off passes
        return PolicyResult(policy.ref, "allow", "enforcement-off", f"policy {policy.ref}: off")
    # Rule 5: trusted submitters (e.g. the submission API) pass without records, audited;
    # a trusted ServiceAccount only from a pod of its own (a pod-bound token).
    if run.username in policy.trusted_users or run.groups & policy.trusted_groups:
        if run.service_account and not run.pod:
            summary = _unbound(policy, run, "a trusted submitter")
            return _graded(policy, level, "trusted-submitter-unbound", summary)
        return PolicyResult(
            policy.ref,
            "allow",
            "trusted-submitter",
            f"policy {policy.ref}: trusted submitter {run.username}",
        )
    # Rule 5: a ServiceAccount requester is nobody in particular: deny, or one more approval.
    required = policy.required_approvals
    if run.username in policy.gitops_appliers:  # judged by records, like a person
        if not run.pod:
            summary = _unbound(policy, run, "a GitOps applier")
            return _graded(policy, level, "gitops-applier-unbound", summary)
    elif run.service_account:
        if policy.service_account_requesters == "deny":
            return _graded(policy, level, "service-account-requester", _sa_denied(policy, run))
        required += 1
    verdicts = [RecordVerdict(p.index, "", "", False, p.message) for p in problems]
    latest: dict[str, tuple[datetime, str, records.ParsedRecord]] = {}
    bypass: records.ParsedRecord | None = None
    for check in checks:
        verdict = _judge(policy, check, run.service_account, run.username in policy.gitops_appliers)
        verdicts.append(verdict)
        claim = check.record.claim
        if not verdict.valid:
            continue
        if claim.decision == "bypass":
            bypass = bypass or check.record
            continue
        # Rule 6: one vote per distinct approver, their latest record counts (reject on ties).
        current = latest.get(claim.approver)
        candidate = (claim.issued_at, claim.decision, check.record)
        if current is None or (candidate[0], candidate[1] == "reject") > (
            current[0],
            current[1] == "reject",
        ):
            latest[claim.approver] = candidate
    approving: list[str] = []
    rejecting: list[str] = []
    for approver, (_, vote, _r) in latest.items():
        if vote == "approve":
            approving.append(approver)
        elif vote == "reject":
            rejecting.append(approver)
    approvals = tuple(sorted(approving))
    rejects = tuple(sorted(rejecting))
    # checks come in record order; only problems (listed first) can be out of order
    ordered = tuple(sorted(verdicts, key=_by_index)) if problems else tuple(verdicts)
    header = (
        f"policy {policy.ref}: {len(approvals)} of {required} required "
        f"approvals (approvers: {', '.join(policy.approver_refs)})"
    )
    if required > policy.required_approvals:
        header += (
            f"; one more than the policy's {policy.required_approvals}: requested by "
            f"ServiceAccount {run.username} (serviceAccountRequesters: extraApproval)"
        )

    # Rule 6: break-glass bypass admits with a warning and an audit trail (never for a
    # ServiceAccount requester other than a GitOps applier: _judge does not count it).
    if bypass is not None:
        reason = bypass.claim.reason
        return PolicyResult(
            policy.ref,
            "warn",
            "bypass",
            f"policy {policy.ref}: bypassed by {bypass.claim.approver}: {reason}",
            approvals,
            ordered,
            bypass_reason=reason,
        )
    # Rule 6: veto, or a vote where approvals must outnumber rejections.
    if rejects and policy.rejection == "veto":
        outcome: Outcome = "deny"
        reason_code, summary = "vetoed", f"{header}; rejected by {', '.join(rejects)}"
    elif len(approvals) >= required and len(approvals) > len(rejects):
        return PolicyResult(policy.ref, "allow", "approved", header, approvals, ordered)
    else:
        outcome, reason_code = "require-approval", "missing-approvals"
        summary = header + (f"; rejected by {', '.join(rejects)}" if rejects else "")
    if level == "warn":
        return PolicyResult(policy.ref, "warn", reason_code, summary, approvals, ordered)
    if level == "audit":
        return PolicyResult(
            policy.ref, "allow", reason_code, summary, approvals, ordered, audit_only=True
        )
    return PolicyResult(
        policy.ref,
        outcome,
        reason_code,
        summary,
        approvals,
        ordered,
        missing=_still_needed(policy, run, approvals, rejects, required),
    )


def _graded(policy: Policy, level: str, reason: str, summary: str) -> PolicyResult:
    """A denial for who the requester is, at the policy's effective enforcement level."""
    if level == "warn":
        return PolicyResult(policy.ref, "warn", reason, summary)
    if level == "audit":
        return PolicyResult(policy.ref, "allow", reason, summary, audit_only=True)
    return PolicyResult(policy.ref, "deny", reason, summary)


def _unbound(policy: Policy, run: _Run, role: str) -> str:
    return (
        f"policy {policy.ref}: {run.username} is {role}, but this request "
        "does not carry a token bound to a pod (it was impersonated with --as, or made with "
        "a token minted without --bound-object-kind Pod): a ServiceAccount the policy "
        "names counts only from a pod running as it"
    )


def _sa_denied(policy: Policy, run: _Run) -> str:
    return (
        f"policy {policy.ref}: the requester {run.username} is a ServiceAccount and not a "
        "trusted submitter; approvalgate cannot tell which person acts through it, so this "
        "policy denies its runs (serviceAccountRequesters: deny). Submit the run as "
        "yourself, or name this ServiceAccount in the policy's gitOpsAppliers"
    )


def _by_index(verdict: RecordVerdict) -> int:
    return verdict.index


def _still_needed(
    policy: Policy, run: _Run, approvals: Sequence[str], rejects: Sequence[str], required: int
) -> str:
    """Who could still approve: eligible, not yet counted, not the requester or author."""
    if rejects and policy.rejection == "veto":
        return f"{', '.join(rejects)} to withdraw the rejection (approve after it), or a new spec"
    count = max(required - len(approvals), len(rejects) + 1 - len(approvals), 1)
    candidates = sorted(
        name
        for name in policy.approvers - set(approvals) - set(rejects)
        if name not in run.excluded
    )
    return f"{count} more approval(s) from {', '.join(candidates) or 'nobody eligible'}"


def _judge(
    policy: Policy, check: _Check, service_account: bool = False, applier: bool = False
) -> RecordVerdict:
    """Rule 5, the checks one policy adds: eligible approver or bypasser, lifetime, reason."""
    claim = check.record.claim
    index, name, decision = check.record.index, claim.approver, claim.decision
    environment = claim.environment

    def bad(note: str) -> RecordVerdict:
        return RecordVerdict(index, name, decision, False, note, environment)

    if check.problem:
        return bad(check.problem)
    lifetime = (claim.expires_at - claim.issued_at).total_seconds()
    if decision == "bypass":
        if service_account and not applier:
            return bad(
                "a bypass does not admit a run requested by a ServiceAccount (the person "
                "acting through it could be the one bypassing)"
            )
        if policy.bypass is None or name not in policy.bypass.approvers:
            return bad(f"{name} may not bypass policy {policy.ref}")
        problem = reasons.reason_problem(claim.reason)
        if problem:
            return bad(problem)
        if lifetime > policy.bypass.max_ttl_seconds:
            return bad(
                f"bypass lasts {int(lifetime)}s, over the policy's cap of "
                f"{policy.bypass.max_ttl_seconds}s"
            )
        return RecordVerdict(
            index, name, decision, True, f"valid bypass for {claim.environment}", environment
        )
    if name not in policy.approvers:
        return bad(f"{name} is not an approver of policy {policy.ref}")
    if lifetime > policy.timeout_seconds:
        return bad(
            f"lasts {int(lifetime)}s, over the policy's timeoutSeconds ({policy.timeout_seconds})"
        )
    return RecordVerdict(
        index,
        name,
        decision,
        True,
        f"valid {decision} for {environment} until {claim.expires_text}",
        environment,
    )


def _combine(results: Sequence[PolicyResult], run: _Run, environment: str) -> Decision:
    """Rules 7 and 8: every policy must pass; deny > require-approval > warn > allow; the
    denial says what to do."""
    worst = results[0] if len(results) == 1 else max(results, key=_precedence)
    approvers = tuple(sorted({a for r in results for a in r.approvals}))
    policies = tuple([r.policy for r in results])
    audit = {
        "decision": "deny" if worst.outcome in ("deny", "require-approval") else "allow",
        "reason": worst.reason,
        "policy": ",".join(policies),
        "approvers": ",".join(approvers),
        "digest": f"sha256:{run.digest}",
    }
    bypassed = [r for r in results if r.reason == "bypass"]
    if bypassed:
        audit["bypass-reason"] = "; ".join(r.bypass_reason for r in bypassed)
    would_deny = [r.policy for r in results if r.audit_only]
    if would_deny:
        audit["audit-would-deny"] = ",".join(would_deny)
    if any(r.reason == "trusted-submitter" for r in results):
        audit["trusted-submitter"] = run.username
    common: dict[str, Any] = {
        "audit_annotations": audit,
        "policies": policies,
        "approvers": approvers,
        "results": tuple(results),
        "digest": run.digest,
        "subject": run.subject,
    }
    if worst.outcome in ("deny", "require-approval"):
        return _deny(worst.reason, _denial_message(results, run, environment), **common)
    warnings = tuple(_warning(r) for r in results if r.outcome == "warn")
    return _allow(
        worst.reason if worst.outcome == "warn" else _allow_reason(results),
        "",
        warnings=warnings,
        **common,
    )


def _precedence(result: PolicyResult) -> int:
    return _PRECEDENCE[result.outcome]


def _allow_reason(results: Sequence[PolicyResult]) -> str:
    reasons = {r.reason for r in results}
    for reason in ("trusted-submitter", "approved"):
        if reason in reasons:
            return reason
    return results[0].reason


def _warning(result: PolicyResult) -> str:
    if result.reason == "bypass":
        return f"approvalgate: {result.summary} (break-glass, audited)"
    return f"approvalgate (enforcement warn) would deny: {result.summary}"


def _denial_message(results: Sequence[PolicyResult], run: _Run, environment: str) -> str:
    """Rule 8: per failing policy, what was found, what became of each record, who could
    still approve, and the command to run."""
    verb = "creating" if run.operation == "CREATE" else "updating"
    lines = [f"approvalgate denied {verb} AgentRun {run.ref}:"]
    for result in results:
        if result.outcome not in ("deny", "require-approval"):
            continue
        lines.append(f"- {result.summary}")
        lines.extend(f"  - {v.line()}" for v in result.records)
        if result.missing:
            lines.append(f"  still needed: {result.missing}")
    if all(
        r.reason in _IDENTITY_REASONS for r in results if r.outcome in ("deny", "require-approval")
    ):
        return "\n".join(lines)
    lines.append(
        f"To approve this exact spec (sha256:{run.digest[:12]}), each approver runs "
        f"`approvalgate approve RUN.yaml --env {environment} --key KEY --approver NAME`; "
        "then apply the approved file."
    )
    return "\n".join(lines)


__all__ = [
    "GENERIC_ERROR",
    "Decision",
    "PolicyResult",
    "RecordVerdict",
    "decide",
    "matching_policies",
]
