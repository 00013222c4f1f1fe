"""decide(): the one admission decision shared by the webhook, the CLI and CI.

Pure and total: the same request, bundle and ``now`` always give the same decision, and
any internal error becomes a denial with a generic message (the detail is kept in
:attr:`Decision.internal_error` for the caller to log). The rules are those of
docs/design.md ("decide(): the rules as implemented"), numbered as there (in the order
they apply); each is named where it is applied.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple

from approvalgate.approvals import content, identity, parents, reasons, records, references
from approvalgate.approvals.admission import AGENTRUNS, AGENTS_GROUP
from approvalgate.approvals.bundle import Approver, ApproverKey, Bundle, Policy, SpecFacts
from approvalgate.approvals.errors import DigestError
from approvalgate.approvals.keys import ssh
from approvalgate.approvals.policy import ENFORCEMENT_LEVELS
from approvalgate.approvals.view import (
    CONTENT_CHECK,
    OFFLINE_CHECKS,
    REQUEST_UID_ANNOTATION,
    USE_FINALIZER,
    ClusterView,
    Use,
    api_time,
    statement_digest,
)
from approvalgate.approvals.view import GROUP as GATES_GROUP

Outcome = Literal["allow", "warn", "require-approval", "deny"]
_PRECEDENCE: Final = {"allow": 0, "warn": 1, "require-approval": 2, "deny": 3}
ALL_SERVICE_ACCOUNTS: Final = "system:serviceaccounts"
SERVICE_ACCOUNTS_OF: Final = "system:serviceaccounts:"
GENERIC_ERROR: Final = "approvalgate could not evaluate this request; it is denied (fail closed)"
_IDENTITY_REASONS: Final = frozenset(
    {
        "trusted-submitter-unbound",
        "gitops-applier-unbound",
        "service-account-requester",
        "cluster-view-unavailable",
        "missing-use-finalizer",
        "spec-changed-after-admission",
        "template-after-admission",
        "request-mismatch",
        "not-derived",
    }
)
"""Denials that approvals cannot lift: the requester's identity (or the cluster view, or the
run's shape), not the records, is wrong."""


_PLAIN_CLAIM: Final = re.compile(r"[A-Za-z0-9][-A-Za-z0-9._/*:@]{0,252}")
SHOWN_CLAIM_CHARS: Final = 80


def shown_claim(text: str) -> str:
    """A value a record claims (its approver, subject or digest), as a message may quote it
    before, or without, any signature vouching for it: a name as Kubernetes writes one as
    it is; anything else (a newline and "record 1 by bob: valid approve", an escape
    sequence, a bidi override, a look-alike letter, a space) as a JSON string of at most
    SHOWN_CLAIM_CHARS characters: one line, every character past printable ASCII escaped."""
    if _PLAIN_CLAIM.fullmatch(text):
        return text
    cut = text if len(text) <= SHOWN_CLAIM_CHARS else text[:SHOWN_CLAIM_CHARS] + "..."
    return json.dumps(cut)


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
    cluster: bool = False
    """The record came from an ApprovalDecision in the cluster, not from the annotation."""

    def line(self) -> str:
        if self.index < 0:
            return self.note
        who = f" by {shown_claim(self.approver)}" if self.approver else ""
        what = "cluster record" if self.cluster else "record"
        return f"{what} {self.index}{who}: {self.note}"


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
    rejects: tuple[str, ...] = ()
    withdrawn: tuple[str, ...] = ()


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
    chain: tuple[str, ...] = ()
    """For a run the platform created, or a parent: the run first, then its parents
    (``AgentRun ns/x``, ``Schedule ns/s``, ...): what explain and status show."""


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
        return _decide(request, bundle, now, view)
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


def _decide(
    request: Mapping[str, Any], bundle: Bundle, now: datetime, view: ClusterView | None
) -> Decision:
    operation = request.get("operation")
    resource = request.get("resource")
    group = resource.get("group") if isinstance(resource, dict) else None
    plural = resource.get("resource") if isinstance(resource, dict) else None
    is_content = group == content.GROUP and plural in content.RESOURCES
    # Rule 1: agentruns, parents, referenced content and the queue's kinds are gated;
    # DELETE and CONNECT pass, but for the queue's kinds and referenced content.
    if operation in ("DELETE", "CONNECT") and not (group == GATES_GROUP or is_content):
        return _allow("operation-not-gated")
    if not isinstance(resource, dict):
        return _deny("malformed", "the request names no resource")
    if group == GATES_GROUP:
        from approvalgate.approvals import gates  # the queue's kinds: approvals/gates.py

        return gates.decide_gates(request, bundle, now, view)
    if (group, plural) in parents.BY_RESOURCE or is_content:
        from approvalgate.approvals import inherit  # parents and content: approvals/inherit.py

        if is_content:
            return inherit.decide_content(request, bundle, now, view)
        return inherit.decide_parent(request, bundle, now, view)
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
        verdict = _use_released(request, obj, bundle, namespace, now, view)
        if verdict is None:
            verdict = _update_shortcut(request, obj, bundle, namespace)
        if verdict is not None:
            return verdict
    try:
        facts = bundle.spec_facts(obj.get("spec"))
    except DigestError as exc:
        return _deny(
            "undigestable-spec",
            f"approvalgate denied AgentRun {namespace}/"
            f"{metadata.get('name') or metadata.get('generateName', '')}: its spec "
            f"cannot be approved: {exc.message}",
        )
    digest = facts.digest

    run = _Run.of(request, obj, metadata, namespace, digest, bundle, facts)
    usable = _usable(bundle, view)
    if bundle.needs_view:
        run = _with_view(run, obj, metadata, bundle, view, usable)
        if operation == "UPDATE" and not (view is not None and view.offline):
            # One approval, one run: a run's ApprovalUse records its approvals once (it never
            # changes), from the approvals it carries and the cluster's, issued by its
            # creation (:func:`_one_use_problem`). Approvals of another spec given by an
            # UPDATE would admit this run unrecorded, and then a new run of the same name
            # after its deletion (a replay).
            old = request.get("oldObject")
            old_spec = old.get("spec") if isinstance(old, dict) else None
            run = run._replace(
                spec_changed=not _same_spec(old_spec, obj.get("spec"), bundle),
                made_template=_made_template(request, obj),
            )
        if operation == "CREATE":
            forged = _forged_parent_labels(run, metadata, bundle)
            if forged is not None:
                return forged
    # Rule 4: references are judged as the controller reads them, or not at all.
    if facts.invalid_references:
        invalid = references.reference_problems(obj.get("spec"))
        return _invalid_references(invalid, run, bundle)
    policies = _matching(bundle, run)
    if operation == "CREATE" and policies and run.request_created is not None:
        late = _after_request_expired(run, metadata, policies, digest)
        if late is not None:
            return late
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
    carried = 1 + max([r.index for r in parsed] + [p.index for p in problems] + [-1])
    if usable is not None:
        parsed, problems, filed, statements = _with_cluster_records(
            parsed, problems, run, usable, bundle
        )
        run = run._replace(
            cluster_from=carried,
            recorded_by=_recorded_by(metadata, bundle),
            created=_creation(metadata),
            filed=filed,
            statements_filed=statements,
        )
    checks = [_check_record(r, run, bundle, now, usable) for r in parsed]
    if bundle.binds_content and usable is not None:  # Rule 5: what the run executes, bound
        checks = bind_content(checks, content.refs(obj.get("spec")), namespace, usable)
    derived = [p for p in policies if p.is_parent_creator(run.username, namespace)]
    if derived and operation == "CREATE":  # Rule 5b: made by the platform from a parent
        from approvalgate.approvals import inherit

        return inherit.decide_derived(
            request, obj, run, policies, checks, problems, bundle, now, view
        )
    results = [_evaluate(p, run, checks, problems, bundle) for p in policies]
    if len(parsed) + len(problems) > carried:  # say which records came from the cluster
        results = [_from_cluster(r, carried) for r in results]
    decision = _combine(results, run, bundle.environment)
    if bundle.needs_view and view is not None and view.offline:
        skipped = (*OFFLINE_CHECKS, *((CONTENT_CHECK,) if bundle.binds_content else ()))
        note = "approvalgate could not check offline (pass --cluster): " + "; ".join(skipped)
        return replace(decision, warnings=(*decision.warnings, note))
    return decision


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
    uid: str = ""
    courier: str = ""
    """Who created a run on behalf of an ApprovalRequest (the run is judged as the request's
    requester asked for it: see :func:`_with_view`)."""
    view_problem: str = ""
    """Why the cluster view cannot be relied on, when the bundle requires it."""
    finalizer_missing: bool = False
    spec_changed: bool = False
    """An UPDATE giving an admitted run another spec, where the bundle requires the view
    (the approvals of the new spec could not be recorded as used: see :func:`_with_view`)."""
    made_template: bool = False
    """An UPDATE making an admitted live run a template, where the bundle requires the view
    (:func:`_made_template`)."""
    request_problem: str = ""
    cluster_from: int = sys.maxsize
    """The index of the first record that comes from the cluster (an ApprovalDecision)."""
    recorded_by: datetime | None = None
    """Approvals issued after this (the run's creation plus the clock skew), carried or the
    cluster's, do not count for it: its ApprovalUse records only those issued by then
    (:func:`_used_records`)."""
    created: datetime | None = None
    """The run's ``metadata.creationTimestamp`` (the API server's): an ApprovalDecision the
    API server created after it does not count for the run (:func:`_filed_late`)."""
    filed: tuple[datetime | None, ...] = ()
    """When each cluster record was filed (its ApprovalDecision's creationTimestamp), from
    :attr:`cluster_from` on, in record order."""
    request_created: datetime | None = None
    """When the ApprovalRequest the run was made from was created (the API server's clock;
    None for a run not made from one): :func:`_after_request_expired`."""
    statements_filed: Mapping[bytes, datetime] = MappingProxyType({})
    """When each signed statement (DSSE payload) of the cluster's records was first filed,
    whether or not the run also carries it (:func:`said_at`)."""
    kind: str = "AgentRun"
    """What is judged: an AgentRun, or a parent (Schedule, OrchestrationRun, Swarm)."""

    @classmethod
    def of(
        cls,
        request: Mapping[str, Any],
        obj: Mapping[str, Any],
        metadata: Mapping[str, Any],
        namespace: str,
        digest: str,
        bundle: Bundle | None = None,
        facts: SpecFacts | None = None,
    ) -> _Run:
        """The run's facts; with ``bundle``, also which approvers are its requester or author.
        ``facts``: the spec's, when already known (:meth:`Bundle.spec_facts`)."""
        if facts is None:
            spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
            assert isinstance(spec, dict)
            agent = _ref_name(spec.get("agentRef"))
            implementations = references.implementation_specs(spec)
        else:
            agent, implementations = facts.agent, facts.implementations
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
            agent=agent,
            implementations=implementations,
            labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
            username=username,
            groups=frozenset(str(g) for g in user.get("groups") or ()),
            service_account=identity.is_service_account(username),
            pod=identity.bound_pod(user),
            author=author,
            operation=str(request.get("operation")),
            excluded=_excluded(bundle, username, author) if bundle is not None else frozenset(),
            uid=str(metadata.get("uid") or ""),
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


def _forged_parent_labels(
    run: _Run, metadata: Mapping[str, Any], bundle: Bundle
) -> Decision | None:
    """Rule 5b, who may name a parent: a run carrying the labels of a parent
    (:data:`parents.DERIVATION_LABELS`) has its parent's approvals recorded by its
    ApprovalUse (the ledger cannot tell who created a run), spending the parent's
    ``maxRuns``. So only the platform's creators (``parents.creators`` of a policy that may
    select runs in the namespace) create such runs, judged by derivation; anyone else's is
    denied at the environment's enforcement level (``parent-label-forged``)."""
    labels = metadata.get("labels")
    if not isinstance(labels, dict):
        return None
    named = [k for k in parents.DERIVATION_LABELS if k in labels]
    if not named:
        return None
    candidates = bundle.candidate_policies(run.namespace)
    if any(p.is_parent_creator(run.username, run.namespace) for p in candidates):
        return None
    creators = sorted(
        {c.replace("{namespace}", run.namespace) for p in candidates for c in p.parent_creators}
    )
    who = (
        f"only the platform's creators ({', '.join(creators)}: parents.creators of the "
        f"policies for namespace {run.namespace}) create such runs"
        if creators
        else f"no policy for namespace {run.namespace} names parents.creators"
    )
    requester = shown_claim(run.username) if run.username else "an unknown user"
    message = (
        f"approvalgate denied creating AgentRun {run.ref}: it carries the label "
        f"{', '.join(named)}, which names the parent a run the platform made derives from; "
        f"its ApprovalUse would record that parent's approvals and spend its maxRuns, and "
        f"{who}, not {requester}. Remove the label (a run of your own is judged on its own "
        "approvals), or let the parent make the run."
    )
    return _by_bundle(bundle, "parent-label-forged", message)


def _by_bundle(bundle: Bundle, reason: str, message: str) -> Decision:
    """A denial at the environment's enforcement level (no policy was found to grade it)."""
    if bundle.enforcement == "enforce":
        return _deny(reason, message)
    audit = {"decision": "allow", "reason": reason, "audit-would-deny": "parents"}
    if bundle.enforcement == "warn":
        return _allow(
            reason,
            warnings=(f"approvalgate (enforcement warn) would deny: {message}",),
            audit_annotations=audit,
        )
    return _allow(reason, audit_annotations=audit)


def _usable(bundle: Bundle, view: ClusterView | None) -> ClusterView | None:
    """The view decide() may consult: required by the bundle, present, and reliable."""
    if not bundle.needs_view or view is None or view.offline or view.problem:
        return None
    return view


def _with_view(
    run: _Run,
    obj: Mapping[str, Any],
    metadata: Mapping[str, Any],
    bundle: Bundle,
    view: ClusterView | None,
    usable: ClusterView | None,
) -> _Run:
    """What the view adds to a run where the bundle requires it: why the view is not
    usable, the use finalizer, and (courier rule) who really requested it."""
    offline = view is not None and view.offline
    problem = ""
    if not offline and usable is None:
        problem = view.problem if view is not None else "this process has no cluster view"
    finalizers = metadata.get("finalizers")
    missing = not (isinstance(finalizers, list) and USE_FINALIZER in finalizers)
    run = run._replace(view_problem=problem, finalizer_missing=missing)
    annotations = metadata.get("annotations")
    request_uid = annotations.get(REQUEST_UID_ANNOTATION) if isinstance(annotations, dict) else None
    if request_uid is None or offline:
        return run
    if usable is None:
        return run  # denied for the view's problem before the request matters
    request = usable.request(run.namespace, run.name)
    requester, why = _courier_request(request, request_uid, run, bundle)
    if why:
        return run._replace(request_problem=why)
    assert request is not None
    request_meta = request.get("metadata")
    return run._replace(
        request_created=(
            api_time(request_meta.get("creationTimestamp"))
            if isinstance(request_meta, Mapping)
            else None
        ),
        username=requester,
        groups=frozenset(),
        service_account=identity.is_service_account(requester),
        pod="",
        courier=run.username,
        excluded=run.excluded
        | _excluded(bundle, requester, run.author)
        | bundle.approvers_known_as(run.username),
    )


def _after_request_expired(
    run: _Run, metadata: Mapping[str, Any], policies: Sequence[Policy], digest: str
) -> Decision | None:
    """A run made from an ApprovalRequest, created (the API server's clock) once the request
    had expired: its creation plus the smallest timeoutSeconds of the run's policies, as the
    controller counts it (:func:`approvals.queue.evaluate_request`). The controller checks
    that with its own clock, allowed to be ``clockSkewSeconds`` off; here both times are the
    API server's, so a controller clock further behind cannot create the run of a request
    that timed out. None when in time (or either time is unknown)."""
    created = _creation(metadata)
    if created is None or run.request_created is None:
        return None
    shortest = min(policies, key=lambda p: p.timeout_seconds)
    expired = moment_after(run.request_created, timedelta(seconds=shortest.timeout_seconds))
    if created < expired:
        return None
    return _deny(
        "request-expired",
        f"approvalgate denied AgentRun {run.ref}: its ApprovalRequest expired at "
        f"{records.format_time(expired)} (filed at {records.format_time(run.request_created)}, "
        f"timeoutSeconds {shortest.timeout_seconds} of policy {shortest.ref}), before the run "
        f"was created at {records.format_time(created)} (both the API server's times).\n"
        "File a new request for the run (`approvalgate request RUN.yaml`); a controller "
        "creating runs of expired requests has a clock behind the API server's: sync it (NTP).",
        digest=digest,
        subject=run.subject,
    )


def _courier_request(
    request: Mapping[str, Any] | None, uid: object, run: _Run, bundle: Bundle
) -> tuple[str, str]:
    """The requester of the ApprovalRequest a run says it comes from, or why it does not."""
    where = f"ApprovalRequest {run.namespace}/{run.name}"
    if request is None:
        return "", f"names {REQUEST_UID_ANNOTATION} {uid!s}, but there is no {where}"
    meta = request.get("metadata") if isinstance(request.get("metadata"), dict) else {}
    spec = request.get("spec") if isinstance(request.get("spec"), dict) else {}
    assert isinstance(meta, dict)
    assert isinstance(spec, dict)
    if meta.get("uid") != uid:
        return "", f"names {REQUEST_UID_ANNOTATION} {uid!s}, but {where} has uid {meta.get('uid')}"
    if spec.get("environment") != bundle.environment:
        return "", f"{where} is for environment {spec.get('environment')!r}"
    if spec.get("specDigest") != run.digest:
        return "", f"{where} approves another spec than this run's (sha256:{run.digest[:12]})"
    if spec.get("cancelled") is True:
        return "", f"{where} was cancelled by its requester"
    requester = spec.get("requester")
    if not isinstance(requester, str) or not requester:
        return "", f"{where} names no requester"
    return requester, ""


def _with_cluster_records(
    parsed: Sequence[records.ParsedRecord],
    problems: Sequence[records.RecordProblem],
    run: _Run,
    view: ClusterView,
    bundle: Bundle,
) -> tuple[
    tuple[records.ParsedRecord, ...],
    tuple[records.RecordProblem, ...],
    tuple[datetime | None, ...],
    dict[bytes, datetime],
]:
    """The run's records plus the ApprovalDecisions recorded for it in the cluster (a reject
    or withdrawal counts whether or not the run carries it); the same envelope once; when
    each cluster record was filed (numbered from the first index after the carried); and
    when each signed statement (DSSE payload) was first filed, whether or not the run also
    carries it (:func:`said_at`).

    Only an identical envelope (payload *and* signatures) is left out as carried: a carried
    copy of a cluster record's payload with a signature nobody made would otherwise hide
    the genuine reject or withdrawal (and then fail verification itself)."""
    carried = {_envelope_key(r) for r in parsed}
    start = 1 + max([r.index for r in parsed] + [p.index for p in problems] + [-1])
    entries = [f for f in view.decisions_for(run.namespace, run.name) if f.envelope]
    if not entries or not run.name:
        return tuple(parsed), tuple(problems), (), {}
    more, more_problems = bundle.verifier.parse_envelopes([f.envelope for f in entries], start)
    cluster = [r for r in more if _envelope_key(r) not in carried]
    statements: dict[bytes, datetime] = {}  # carried copies too: a requested run carries all
    for record in more:
        at, payload = entries[record.index - start].created, record.envelope.payload
        if at is not None and (payload not in statements or at < statements[payload]):
            statements[payload] = at
    filed = tuple(f.created for f in entries)
    return (*parsed, *cluster), (*problems, *more_problems), filed, statements


def _from_cluster(result: PolicyResult, first: int) -> PolicyResult:
    """``result`` with its records numbered ``first`` and up marked as the cluster's."""
    marked = tuple(replace(v, cluster=True) if v.index >= first else v for v in result.records)
    return replace(result, records=marked)


def _envelope_key(record: records.ParsedRecord) -> tuple[bytes, frozenset[tuple[str, str]]]:
    """What makes two envelopes the same one: the payload and every signature."""
    signatures = record.envelope.signatures.values()
    return record.envelope.payload, frozenset((s.keyid, s.signature) for s in signatures)


def _use_released(
    request: Mapping[str, Any],
    obj: Mapping[str, Any],
    bundle: Bundle,
    namespace: str,
    now: datetime,
    view: ClusterView | None,
) -> Decision | None:
    """The use finalizer leaves a run only once its ApprovalUse is recorded and settled:
    until then the run's name cannot be taken again (one approval, one run)."""
    if not bundle.needs_view:
        return None
    old = request.get("oldObject")
    if not isinstance(old, dict) or not isinstance(old.get("metadata"), dict):
        return None
    old_meta: dict[str, Any] = old["metadata"]
    new_meta = obj.get("metadata") or {}
    before, after = old_meta.get("finalizers") or [], new_meta.get("finalizers") or []
    if USE_FINALIZER not in before or USE_FINALIZER in after:
        return None
    ref = f"{namespace}/{old_meta.get('name', '')}"
    if view is not None and view.offline:
        return None
    usable = _usable(bundle, view)
    if usable is None:
        problem = view.problem if view is not None else "this process has no cluster view"
        return _deny(
            "cluster-view-unavailable",
            f"approvalgate denied removing {USE_FINALIZER} from AgentRun {ref}: it must see "
            f"the run's ApprovalUse first, and its cluster view is not usable: {problem}",
        )
    use = usable.use_of_run(namespace, str(old_meta.get("uid") or ""))
    if use is None:
        return _deny(
            "use-not-recorded",
            f"approvalgate denied removing {USE_FINALIZER} from AgentRun {ref}: its "
            "ApprovalUse is not recorded yet (the ledger that makes an approval admit one "
            "run). The approvalgate controller records it and then removes the finalizer "
            "itself; check that the controller is running (docs/queue.md).",
        )
    uncovered = _uncovered(old, namespace, use, bundle, now, usable)
    if uncovered:
        return _deny(
            "use-incomplete",
            f"approvalgate denied removing {USE_FINALIZER} from AgentRun {ref}: its "
            f"ApprovalUse {use.name} does not record {uncovered}. A use lists every approval "
            "that could count for the run (issued by its creation) and lasts as long as the "
            "latest (else the approval could admit the name again); the approvalgate "
            "controller writes them: delete this one once it expires, and let the controller "
            "record the use.",
        )
    settle = max(float(bundle.use_settle_seconds), usable.max_age)
    settled = (use.created or now) + timedelta(seconds=settle)
    if now < settled:
        wait = (settled - now).total_seconds()
        return _deny(
            "use-settling",
            f"approvalgate denied removing {USE_FINALIZER} from AgentRun {ref}: its "
            f"ApprovalUse {use.name} is {settle - wait:.1f}s old; it must be {settle:g}s old "
            "(useSettleSeconds, at least the view's --view-max-age: every usable webhook "
            f"view has heard from the API server since it was written). Retry in {wait:.1f}s.",
        )
    return None


def _uncovered(
    old: Mapping[str, Any],
    namespace: str,
    use: Use,
    bundle: Bundle,
    now: datetime,
    view: ClusterView,
) -> str:
    """The first approval of the run that its use does not record (by statement, and until
    the approval expires), or "". Only approvals that could still count are asked for:
    the run's own issued by its creation (:func:`_used_records`), not yet expired, from the
    run's annotation or from the cluster's ApprovalDecisions for it (those admit a run too).
    Else an ApprovalUse made by hand (empty, or expiring early, then deleted) would release
    the finalizer without the ledger knowing the approvals were used."""
    used, carried = _used_records(old, namespace, bundle, view)
    for record in used:
        claim = record.claim
        if now >= claim.expires_at:
            continue
        where = "cluster record" if record.index >= carried else "record"
        what = f"{where} {record.index} ({claim.decision} by {claim.approver})"
        if statement_digest(record) not in use.statements:
            return what
        if use.expires_at is None or use.expires_at < claim.expires_at:
            return f"{what} until it expires at {records.format_time(claim.expires_at)}"
    return ""


def _creation(meta: Mapping[str, Any]) -> datetime | None:
    return api_time(meta.get("creationTimestamp"))


def _filed_late(filed: datetime | None, created: datetime | None) -> bool:
    """An ApprovalDecision filed after the run was created (both times the API server's, to
    the second): it counts for no admission of that run, and its ApprovalUse (written once,
    soon after the creation) need not record it. So the release of the run's finalizer asks
    the use for none of them, and the next run of the name is the decision's first. A time
    that is missing counts as in time (it is then asked for: fail closed)."""
    return filed is not None and created is not None and filed > created


def _filed_at(record: records.ParsedRecord, run: _Run) -> datetime | None:
    """When the API server created the ApprovalDecision holding ``record`` (None for a record
    the run carries, or a decision without a creation time)."""
    at = record.index - run.cluster_from
    return run.filed[at] if 0 <= at < len(run.filed) else None


def said_at(issued: datetime, filed: datetime | None) -> datetime:
    """When a withdrawal or reject was said: its ``issuedAt`` (the signer's clock), or the
    moment its ApprovalDecision was filed (the API server's clock) where that is later. A
    signer's clock running behind must not date a withdrawal or reject before the records
    it takes back or away (it was certainly said by its filing). Only ever later than the
    signer's own time, so it only takes back or away more approvals (fail closed)."""
    return issued if filed is None or filed <= issued else filed


def _recorded_by(meta: Mapping[str, Any], bundle: Bundle) -> datetime | None:
    """The last moment an approval, carried or the cluster's, may be issued and count for
    the run of ``meta``: its creation plus the clock skew (None when the object has no
    creationTimestamp yet). Its ApprovalUse records the approvals issued by then, and
    admissions count no others, so that every approval that admitted a run is recorded as
    used by it (one added to its annotation by a later UPDATE included)."""
    created = _creation(meta)
    return created + bundle.clock_skew if created is not None else None


def _used_records(
    run: Mapping[str, Any], namespace: str, bundle: Bundle, view: ClusterView
) -> tuple[list[records.ParsedRecord], int]:
    """The records a run may have used: the approvals it carries issued by the time it was
    created (:func:`_recorded_by`: one added by a later UPDATE and issued since counted for
    none of its admissions), then the cluster's approvals of its spec for its name filed
    and issued by then (:func:`_filed_late`, :func:`_recorded_by`; later ones, and those of
    another spec, the approvals of a request of the same name, were not used by it); and
    how many records it carries (they come first). Only its own
    (:func:`_own_approval`): a copy of another run's approval, carried by a run admitted on
    its own approvals or where nothing is enforced, must not be recorded as used by it (the
    other run's approval would admit nothing: a denial of service through the ledger)."""
    meta = run.get("metadata") if isinstance(run.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    annotations = meta.get("annotations")
    value = annotations.get(records.ANNOTATION) if isinstance(annotations, dict) else None
    parsed: tuple[records.ParsedRecord, ...] = ()
    if isinstance(value, str):
        parsed, _ = bundle.verifier.parse_annotation(value)
    name = str(meta.get("name") or "")
    entries = list(view.decisions_for(namespace, name))
    cluster, _ = bundle.verifier.parse_envelopes([f.envelope for f in entries], len(parsed))
    latest = _recorded_by(meta, bundle)
    created = _creation(meta)
    subject = records.subject_name(namespace, name)
    own = [
        r
        for r in parsed
        if (latest is None or r.claim.issued_at <= latest) and _own_approval(r, subject, bundle)
    ]
    digest = _digest_or_none(run.get("spec"), bundle)
    chosen = [
        r
        for r in cluster
        if (latest is None or r.claim.issued_at <= latest)
        and not _filed_late(entries[r.index - len(parsed)].created, created)
        and r.claim.digest == digest
        and _own_approval(r, subject, bundle)
    ]
    return [*own, *chosen], len(parsed)


def _digest_or_none(spec: object, bundle: Bundle) -> str | None:
    try:
        return bundle.spec_digest(spec)
    except DigestError:
        return None


def _own_approval(record: records.ParsedRecord, subject: str, bundle: Bundle) -> bool:
    """``record`` is an approval of the run ``subject``: an approve or bypass naming it and
    this environment, signed by a key of the approver it names valid when it was issued
    (whatever spec it approves: a run carrying stale approvals of an earlier spec of its
    file has them recorded too, which only makes them count less; of the cluster's, only
    those of the run's spec are its: :func:`_used_records`). What a run's use records, and
    what the release of its finalizer asks the use for."""
    claim = record.claim
    if (
        claim.decision not in ("approve", "bypass")
        or claim.subject != subject
        or claim.version != records.FORMAT_VERSION
        or claim.environment != bundle.environment
    ):
        return False
    approver = bundle.approvers.get(claim.approver)
    return approver is not None and _unsigned(record, approver, bundle) is None


def used_statements(
    run: Mapping[str, Any], bundle: Bundle, view: ClusterView
) -> tuple[list[str], datetime | None]:
    """What an ApprovalUse of ``run`` must record: the statement of every approval of its own
    the run carries and of every cluster approval (approve, bypass) for it filed and issued
    by the time it was created (it may have counted), and the latest of their expiries."""
    chosen = _all_used(run, bundle, view)
    statements = sorted({statement_digest(r) for r in chosen})
    latest = max((r.claim.expires_at for r in chosen), default=None)
    return statements, latest


def used_references(run: Mapping[str, Any], bundle: Bundle, view: ClusterView) -> dict[str, str]:
    """What an ApprovalUse of ``run`` records in ``spec.references``: for each object the run
    executes, the content the used records bound (the first that binds it). While the use
    lasts, a write giving that object other content is denied (approvals.inherit).

    The run's spec names its Agent and ImplementationSpecs; the AgentProvider it executes is
    the one the Agent names, which the approver followed and bound beside the Agent: the
    record that binds the Agent gives the AgentProviders it bound too (the controller's view
    need not hold the Agent)."""
    chosen = _all_used(run, bundle, view)
    bound: dict[str, str] = {}
    for ref in content.refs(run.get("spec")):
        for record in chosen:
            if ref in record.claim.references:
                bound[ref] = record.claim.references[ref]
                if content.split(ref)[0] == content.AGENT:
                    bound.update(_providers_bound(record.claim.references, bound))
                break
    return bound


def _providers_bound(references: Mapping[str, str], already: Mapping[str, str]) -> dict[str, str]:
    """The AgentProviders a record binds, less those already recorded (the first wins)."""
    return {
        ref: digest
        for ref, digest in references.items()
        if content.split(ref)[0] == content.PROVIDER and ref not in already
    }


def _all_used(
    run: Mapping[str, Any], bundle: Bundle, view: ClusterView
) -> list[records.ParsedRecord]:
    """The records a run may have used: its own (:func:`_used_records`), then, for a run the
    platform made, the approvals of the parent it derives from."""
    from approvalgate.approvals import inherit

    meta = run.get("metadata") if isinstance(run.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    chosen, _ = _used_records(run, str(meta.get("namespace") or ""), bundle, view)
    return [*chosen, *inherit.parent_records_used(run, bundle, view)]


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
        if same_spec and only_finalizers_removed(old_meta, new_meta):
            return _allow("deleting-object")
        return _deny(
            "deleting-object",
            "approvalgate denied this update: the AgentRun is being "
            "deleted, and only finalizer removal is allowed now",
        )
    if bundle.needs_view and _parent_labels(old_meta) != _parent_labels(new_meta):
        return _deny(
            "parent-labels-changed",
            f"approvalgate denied updating AgentRun {namespace}/{old_meta.get('name', '')}: "
            f"labels {', '.join(parents.DERIVATION_LABELS)} name the parent a run the "
            "platform made derives from, which its ApprovalUse records (the parent's maxRuns, "
            "the content its approval binds); they never change. Leave them as they were.",
        )
    old_ann = (old_meta.get("annotations") or {}).get(records.ANNOTATION)
    new_ann = (new_meta.get("annotations") or {}).get(records.ANNOTATION)
    if (
        same_spec
        and old_ann == new_ann
        and not _made_live(old_meta, new_meta)
        and not (bundle.needs_view and _made_template(request, obj))
        and _same_policies(request, old, obj, bundle, namespace)
    ):
        return _allow("unchanged-spec")
    return None


LEDGER_METADATA: Final = ("annotations", "labels", "ownerReferences")
"""What of an object's metadata its ApprovalUse is recorded from: the approvals it carries,
and (labels, owners) the parent a platform-made run derives from."""


def _parent_labels(meta: Mapping[str, Any]) -> tuple[object, ...]:
    labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    assert isinstance(labels, dict)
    return tuple(labels.get(k) for k in parents.DERIVATION_LABELS)


def only_finalizers_removed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """The UPDATE of an object being deleted only removes finalizers (the spec is compared
    apart). Everything else the ledger reads stays: an object being deleted whose approvals
    (or labels) could still be rewritten would have its ApprovalUse recorded, and its use
    finalizer released, on approvals other than those that admitted it, which would then
    admit its name again (a replay)."""
    before, after = set(old.get("finalizers") or ()), set(new.get("finalizers") or ())
    return after <= before and all(old.get(k) == new.get(k) for k in LEDGER_METADATA)


UPSTREAM_TEMPLATE_ANNOTATION: Final = "agents.proompteng.ai/template"
"""Upstream ``isAgentRunTemplate``: a run annotated ``"true"`` is a Schedule's template and
is never submitted; without it the platform runs it."""


def _is_template(meta: Mapping[str, Any]) -> bool:
    """Upstream ``isAgentRunTemplate``: ``asString`` (trimmed as JavaScript trims) is "true"."""
    return parents.as_string(_template_value(meta)) == "true"


def _template_value(meta: Mapping[str, Any]) -> object:
    annotations = meta.get("annotations")
    return annotations.get(UPSTREAM_TEMPLATE_ANNOTATION) if isinstance(annotations, dict) else None


def _made_live(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """An UPDATE that may turn a template into a run the platform starts: any change of the
    template annotation that does not leave a template. Such a run is a run starting now: it
    gets the full decision on its records as they stand (expired, withdrawn, vetoed since),
    not the unchanged-spec shortcut of a metadata change (class 19). Any change, not only
    "true" to absent: whether the old value was a template is the platform's reading, which
    a look-alike spelling (a leading U+FEFF, say) could make the gate's differ from."""
    return _template_value(old) != _template_value(new) and not _is_template(new)


def _made_template(request: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
    """An UPDATE making a live run a template. The platform then cancels its runtime and
    rewrites its status to phase ``Template`` (dropping ``runtimeRef``), so removing the
    annotation again submits it again: a run executed twice on one approval (class 21)."""
    old = request.get("oldObject")
    old_meta = old.get("metadata") if isinstance(old, dict) else None
    new_meta = obj.get("metadata")
    if not isinstance(old_meta, dict) or not isinstance(new_meta, dict):
        return False
    return not _is_template(old_meta) and _is_template(new_meta)


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
    holds_until: datetime | None = None
    """For a reject that has expired: when it stops counting (:func:`_rejection`)."""


def _check_record(
    record: records.ParsedRecord,
    run: _Run,
    bundle: Bundle,
    now: datetime,
    view: ClusterView | None = None,
) -> _Check:
    """Rule 5, the checks that do not depend on the policy (the rest: :func:`_judge`)."""
    claim = record.claim
    approver = bundle.approvers.get(claim.approver)
    if approver is None:
        return _Check(record, None, f"{shown_claim(claim.approver)} is not a known approver")
    if not run.bound_by(claim.subject):
        return _Check(
            record,
            approver,
            f"approves another run ({shown_claim(_short_subject(claim.subject))}), not {run.ref}",
        )
    if claim.digest != run.digest:
        return _Check(
            record,
            approver,
            f"approves another spec (sha256:{shown_claim(claim.digest[:12])}), "
            f"this run's spec is sha256:{run.digest[:12]}; re-approve the current spec",
        )
    problem = _environment_problem(claim, bundle.environment)
    if problem:  # Rule 5: an approval counts only in the environment it names
        return _Check(record, approver, problem)
    if claim.decision == "withdraw":  # it can only take back: valid once signed
        return _withdrawal(record, approver, bundle)
    if claim.decision == "reject":  # it can only take away: valid once signed
        return _rejection(record, approver, run, bundle, now)
    if claim.issued_at > now + bundle.clock_skew:
        return _Check(
            record, approver, f"issued in the future ({records.format_time(claim.issued_at)})"
        )
    if now >= claim.expires_at:
        return _Check(record, approver, f"expired at {records.format_time(claim.expires_at)}")
    if claim.expires_at <= claim.issued_at:
        return _Check(record, approver, "expires before it was issued")
    keys = [k for k in approver.keys if k.valid_at(claim.issued_at)]
    found = bundle.verifier.signature_by(record, [k.key for k in keys])
    if found is None:
        return _Check(
            record,
            approver,
            f"signature does not verify with a key of {approver.name} "
            f"valid at {records.format_time(claim.issued_at)}",
        )
    key = next(k for k in keys if k.key is found[0])
    if key.lacks_user_verification(found[1]):  # one flag, for keys that require it
        return _Check(record, approver, _without_user_verification(approver, key))
    if not key.valid_at(now):  # Rule 5: a key counts only while it is valid, now too
        return _Check(record, approver, _key_not_valid_now(approver, key, now))
    own = _own_run(bundle, approver, run)
    if own:
        return _Check(record, approver, own)
    if bundle.needs_view and claim.decision in ("approve", "bypass"):
        return _Check(record, approver, _one_use_problem(record, run, bundle, view))
    return _Check(record, approver, "")


def _withdrawal(record: records.ParsedRecord, approver: Approver, bundle: Bundle) -> _Check:
    """A withdrawal counts once its signature verifies with a key valid when it was issued:
    expired or not, it only takes back (an expired withdrawal must not revive an approval)."""
    return _unsigned(record, approver, bundle) or _Check(record, approver, "")


def _unsigned(record: records.ParsedRecord, approver: Approver, bundle: Bundle) -> _Check | None:
    """The check of a record that only takes back or away (a withdrawal, a reject) whose
    signature does not verify with a key of ``approver`` valid when it was issued; None when
    it does (such a record counts whatever its dates: :func:`_withdrawal`, :func:`_rejection`)."""
    claim = record.claim
    keys = [k for k in approver.keys if k.valid_at(claim.issued_at)]
    found = bundle.verifier.signature_by(record, [k.key for k in keys])
    if found is not None:
        key = next(k for k in keys if k.key is found[0])
        # a withdrawal takes back the approver's rejects too (it can lift a veto): it needs
        # the PIN a key requires; a reject only takes away, and counts without it
        if claim.decision == "withdraw" and key.lacks_user_verification(found[1]):
            return _Check(record, approver, _without_user_verification(approver, key))
        return None
    return _Check(
        record,
        approver,
        f"signature does not verify with a key of {approver.name} "
        f"valid at {records.format_time(claim.issued_at)}",
    )


def _own_run(bundle: Bundle, approver: Approver, run: _Run) -> str:
    """Why ``approver`` decides nothing about ``run`` (its requester, author or courier)."""
    if _is_person(bundle, approver, run.username):
        return (
            f"{approver.name} submitted this run (as {run.username}): nobody approves their own run"
        )
    if _is_person(bundle, approver, run.author):
        return (
            f"{approver.name} is the run's recorded author ({records.AUTHOR_ANNOTATION}): "
            "nobody approves their own run"
        )
    if _is_person(bundle, approver, run.courier):
        return (
            f"{approver.name} created this run for its requester (as {run.courier}): nobody "
            "approves a run they submit"
        )
    return ""


def _rejection(
    record: records.ParsedRecord, approver: Approver, run: _Run, bundle: Bundle, now: datetime
) -> _Check:
    """A reject counts once its signature verifies with a key valid when it was issued,
    whatever its dates and lifetime: it can only take away, so nothing that would make an
    approval not count (a lifetime over the policy's timeout, a key retired since, a clock
    ahead) may make a reject not count. Expired, it still counts for the longest lifetime
    of an approval in the bundle (:func:`longest_lifetime`): until every approval issued
    before it expired has expired too, so a requester cannot wait a veto out and apply the
    run with approvals given before it (class 21). Its ApprovalDecision may be deleted only
    then (approvals.gates)."""
    unsigned = _unsigned(record, approver, bundle)
    if unsigned is not None:
        return unsigned
    claim = record.claim
    until = None
    if now >= claim.expires_at or claim.expires_at <= claim.issued_at:
        until = reject_holds_until(claim, run.statements_filed.get(record.envelope.payload), bundle)
        if now >= until:
            return _Check(
                record,
                approver,
                f"expired at {claim.expires_text}, and so has every approval issued before it",
            )
    return _Check(record, approver, _own_run(bundle, approver, run), until)


def reject_holds_until(claim: records.Claim, filed: datetime | None, bundle: Bundle) -> datetime:
    """Until when an expired reject still counts: the longest lifetime of an approval after
    the later of its expiry and when it was said (:func:`said_at`): every approval issued
    before it has expired by then, also where it was signed to expire before it was issued
    or filed."""
    return moment_after(
        max(claim.expires_at, said_at(claim.issued_at, filed)),
        longest_lifetime(bundle, claim.subject),
    )


def moment_after(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, or the last representable moment (a record may be dated up to
    the year 9999: counting past it must not raise)."""
    try:
        return moment + delta
    except OverflowError:
        return datetime.max.replace(tzinfo=moment.tzinfo)


def longest_lifetime(bundle: Bundle, subject: str = "") -> timedelta:
    """The longest an approval or bypass of ``subject`` lives in ``bundle``: how long after a
    reject or a withdrawal anything it takes away may still count. A run's: its policies'
    timeoutSeconds and bypass maxTTL; a parent's (or, fail closed, an unnamed subject's)
    also their ``parents.maxTTL``, which caps a parent's approvals instead of timeoutSeconds
    (default 720h: a veto of a Schedule held only a day past its expiry while the approvals
    it vetoed lived a month)."""
    lifetimes = [p.timeout_seconds for p in bundle.policies]
    lifetimes += [p.bypass.max_ttl_seconds for p in bundle.policies if p.bypass is not None]
    if not subject.startswith(records.SUBJECT_PREFIX):
        lifetimes += [p.parent_max_ttl_seconds for p in bundle.policies]
    return timedelta(seconds=max(lifetimes, default=0))


def bind_content(
    checks: Sequence[_Check], wanted: Sequence[str], namespace: str, view: ClusterView
) -> list[_Check]:
    """Rule 5 where the bundle binds referenced content: an approval (or bypass) counts only
    if it binds the current content of every object the run executes (approvals.content)."""
    if not wanted:
        return list(checks)
    bound: list[_Check] = []
    for check in checks:
        claim = check.record.claim
        if check.problem or claim.decision not in ("approve", "bypass"):
            bound.append(check)
            continue
        found = content.problems(claim.references, wanted, namespace, view)
        bound.append(check._replace(problem="; ".join(found)) if found else check)
    return bound


def _one_use_problem(
    record: records.ParsedRecord, run: _Run, bundle: Bundle, view: ClusterView | None
) -> str:
    """Rule 5 where the bundle requires the view: an approval names one run and admits it
    once (class 21: replay after delete, many runs from one generateName approval)."""
    claim = record.claim
    if claim.subject.endswith("*"):
        return (
            f"names the generateName prefix {shown_claim(_short_subject(claim.subject))}; in "
            "environment "
            f"{bundle.environment} an approval names one run: approve a manifest with "
            "metadata.name (`approvalgate approve` and `approvalgate request` set one)"
        )
    late = run.recorded_by
    if late is not None and claim.issued_at > late:  # carried or filed alike
        return (
            f"issued after the run was created (at {records.format_time(claim.issued_at)}, "
            f"later than {records.format_time(late)}, its creation plus the clock skew): its "
            "ApprovalUse records only the approvals issued by its creation, so this one "
            "would admit it unrecorded and then admit another run of this name. It counts "
            "for a new run: delete this one and create it again (or use another name)"
        )
    filed = _filed_at(record, run)
    if filed is not None and run.created is not None and _filed_late(filed, run.created):
        return (
            f"filed after the run was created (its ApprovalDecision at "
            f"{records.format_time(filed)}, the run at {records.format_time(run.created)}): "
            "its ApprovalUse records only the approvals filed by its creation, so this one "
            "would admit it unrecorded and then admit another run of this name. It counts "
            "for a new run: delete this one and create it again (or use another name)"
        )
    if view is None:
        return ""
    statement = statement_digest(record)
    if run.operation == "UPDATE" and run.uid and not (run.spec_changed or run.made_template):
        # Its use is written once, from the run as the controller first saw it: an approval
        # put on the run since, that it does not record, would admit it unrecorded. (An
        # UPDATE giving it another spec, or making it a template, is held back anyway, and
        # says so: :func:`_held_back`.)
        recorded = view.use_of_run(run.namespace, run.uid)
        if recorded is not None and statement not in recorded.statements:
            return (
                f"not recorded by the run's ApprovalUse {recorded.name}, written once when "
                "the run was created: an approval put on a run since would admit it "
                "unrecorded, and then admit another run of this name. It counts for a new "
                "run: delete this one and create it again (or use another name)"
            )
    for use in view.uses_of(statement):
        # A record names a run of one namespace, and the controller records its use there:
        # a use elsewhere is not one (it could only mark another namespace's approval used).
        if use.namespace != run.namespace:
            continue
        if use.run_uid != run.uid or not run.uid:
            return (
                f"already used by run {use.namespace}/{use.run_name} (uid {use.run_uid}): an "
                "approval admits one run; to run it again, approve it again"
            )
    return ""


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


def _without_user_verification(approver: Approver, key: ApproverKey) -> str:
    """Why a record signed by ``key`` without user verification does not count."""
    try:
        shown = f"{key.key.keytype} {ssh.parse_key(key.key).fingerprint}"
    except ssh.SSHSignatureError:  # a PEM entry of a key another entry requires it of
        shown = f"key {key.key.keyid[:12]}"
    if not ssh.is_security_key(key.key.keytype):
        return (
            f"signed with {approver.name}'s {shown} in a form that cannot show user "
            "verification: the key is listed as a security key with userVerification: "
            "required, so only that key's signatures made with its PIN count; sign again "
            "with the security key"
        )
    return (
        f"signed with {approver.name}'s security key {shown} without user verification "
        "(no PIN): its Approver entry says userVerification: required; sign again with a "
        "key that asks for its PIN (`ssh-keygen -t ed25519-sk -O verify-required`, put its "
        ".pub line in the Approver)"
    )


def _is_person(bundle: Bundle, approver: Approver, username: str) -> bool:
    """``username`` is ``approver`` (the name or one of its usernames, compared as persons:
    :meth:`Bundle.approvers_known_as`); only ever a reason to refuse an approval."""
    return approver.name in bundle.approvers_known_as(username)


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
    trusted = run.username in policy.trusted_users or _in_trusted_group(policy, run)
    if trusted and not run.courier:  # a request's requester is never a trusted submitter
        if run.service_account and not run.pod:
            summary = _unbound(policy, run, "a trusted submitter")
            return _graded(policy, level, "trusted-submitter-unbound", summary)
        return PolicyResult(
            policy.ref,
            "allow",
            "trusted-submitter",
            f"policy {policy.ref}: trusted submitter {run.username}",
        )
    # Where the view is required, who requested a run made from an ApprovalRequest is known
    # only from the view: an unusable view or a mismatching request is the reason, before
    # the creating user's own identity (a courier's, not the requester's) is judged.
    if run.view_problem or run.request_problem:
        shape = _view_shape_problem(policy, run)
        assert shape is not None
        return _graded(policy, level, *shape)
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
    shape = _view_shape_problem(policy, run)
    if shape is not None:
        return _graded(policy, level, *shape)
    verdicts = [RecordVerdict(p.index, "", "", False, p.message) for p in problems]
    judged = [
        (check, _judge(policy, check, run.service_account, run.username in policy.gitops_appliers))
        for check in checks
    ]
    # An approver's records are ordered by when they were said: issuedAt, or for a
    # withdrawal or reject filed in the cluster its filing where later (said_at). A
    # withdrawal takes back the approvals (bypasses) issued by when it was said, and the
    # rejects said by when it was issued: each reading only ever keeps more away.
    withdrawals: dict[str, tuple[datetime, datetime]] = {}
    for check, verdict in judged:
        claim = check.record.claim
        if verdict.valid and claim.decision == "withdraw":
            said = said_at(claim.issued_at, run.statements_filed.get(check.record.envelope.payload))
            issued, latest_said = withdrawals.get(claim.approver, (claim.issued_at, said))
            withdrawals[claim.approver] = (max(issued, claim.issued_at), max(latest_said, said))
    latest: dict[str, tuple[datetime, str, records.ParsedRecord]] = {}
    bypass: records.ParsedRecord | None = None
    for check, judgement in judged:
        claim = check.record.claim
        taken_back = withdrawals.get(claim.approver)
        verdict = judgement
        when = claim.issued_at
        if claim.decision == "reject":
            when = said_at(claim.issued_at, run.statements_filed.get(check.record.envelope.payload))
        if (
            verdict.valid
            and claim.decision != "withdraw"
            and taken_back is not None
            and when <= (taken_back[0] if claim.decision == "reject" else taken_back[1])
        ):
            at = taken_back[0] if claim.decision == "reject" else taken_back[1]
            verdict = replace(
                judgement,
                valid=False,
                note=f"withdrawn by {claim.approver} at {records.format_time(at)}",
            )
        verdicts.append(verdict)
        if not verdict.valid or claim.decision == "withdraw":
            continue
        if claim.decision == "bypass":
            bypass = bypass or check.record
            continue
        # Rule 6: one vote per distinct person, their latest record counts (reject on ties);
        # approvers who share a username are one person (Bundle.person_of).
        person = bundle.person_of(claim.approver)
        current = latest.get(person)
        candidate = (when, claim.decision, check.record)
        if current is None or (candidate[0], candidate[1] == "reject") > (
            current[0],
            current[1] == "reject",
        ):
            latest[person] = candidate
    approving: list[str] = []
    rejecting: list[str] = []
    for _, vote, voted in latest.values():
        if vote == "approve":
            approving.append(voted.claim.approver)
        elif vote == "reject":
            rejecting.append(voted.claim.approver)
    approvals = tuple(sorted(approving))
    rejects = tuple(sorted(rejecting))
    withdrawn = tuple(sorted(withdrawals))
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
        held = _held_back(run, policy)
        if held is not None:
            return _graded(policy, level, *held)
        reason = bypass.claim.reason
        return PolicyResult(
            policy.ref,
            "warn",
            "bypass",
            f"policy {policy.ref}: bypassed by {bypass.claim.approver}: {reason}",
            approvals,
            ordered,
            bypass_reason=reason,
            rejects=rejects,
            withdrawn=withdrawn,
        )
    # Rule 6: veto, or a vote where approvals must outnumber rejections.
    if rejects and policy.rejection == "veto":
        outcome: Outcome = "deny"
        reason_code, summary = "vetoed", f"{header}; rejected by {', '.join(rejects)}"
    elif len(approvals) >= required and len(approvals) > len(rejects):
        held = _held_back(run, policy)
        if held is not None:
            return _graded(policy, level, *held)
        return PolicyResult(
            policy.ref,
            "allow",
            "approved",
            header,
            approvals,
            ordered,
            rejects=rejects,
            withdrawn=withdrawn,
        )
    else:
        outcome, reason_code = "require-approval", "missing-approvals"
        summary = header + (f"; rejected by {', '.join(rejects)}" if rejects else "")
    if level == "warn":
        return PolicyResult(
            policy.ref,
            "warn",
            reason_code,
            summary,
            approvals,
            ordered,
            rejects=rejects,
            withdrawn=withdrawn,
        )
    if level == "audit":
        return PolicyResult(
            policy.ref,
            "allow",
            reason_code,
            summary,
            approvals,
            ordered,
            audit_only=True,
            rejects=rejects,
            withdrawn=withdrawn,
        )
    return PolicyResult(
        policy.ref,
        outcome,
        reason_code,
        summary,
        approvals,
        ordered,
        missing=_still_needed(policy, run, approvals, rejects, required, bundle),
        rejects=rejects,
        withdrawn=withdrawn,
    )


def _view_shape_problem(policy: Policy, run: _Run) -> tuple[str, str] | None:
    """Where the bundle requires the view, a run judged by records needs a usable view, a
    consistent ApprovalRequest when it names one, and the use finalizer."""
    if run.view_problem:
        return (
            "cluster-view-unavailable",
            f"policy {policy.ref}: approvalgate cannot judge this run by its records now: "
            f"its cluster view of decisions and uses is not usable ({run.view_problem}); "
            "retry when the webhook is ready",
        )
    if run.request_problem:
        return (
            "request-mismatch",
            f"policy {policy.ref}: the run says it comes from an ApprovalRequest, but "
            f"{run.request_problem}",
        )
    return None


def _held_back(run: _Run, policy: Policy) -> tuple[str, str] | None:
    """Why records that would admit the run cannot (the reason and what to say), or None:
    checked after the records, so an unapproved change says what approvals it lacks."""
    if run.finalizer_missing:
        return "missing-use-finalizer", _finalizer_missing(policy)
    if run.spec_changed:
        return "spec-changed-after-admission", _spec_changed(policy)
    if run.made_template:
        return "template-after-admission", _template_after_admission(policy)
    return None


def _template_after_admission(policy: Policy) -> str:
    """Said when an UPDATE would make an admitted live run a template (:func:`_made_template`)."""
    return (
        f"policy {policy.ref}: where an approval admits one run, an admitted run cannot be "
        f"made a template ({UPSTREAM_TEMPLATE_ANNOTATION}): the platform drops a template's "
        "runtime and starts it again once the annotation is removed, a second execution of "
        "one approval. Create the template as a new run, annotated from the start"
    )


def _spec_changed(policy: Policy) -> str:
    """Said when records would admit an UPDATE that gives a run another spec, where an
    approval admits one run (checked after the records, like the finalizer)."""
    return (
        f"policy {policy.ref}: where an approval admits one run, an admitted run keeps its "
        "spec: the approvals of another spec could not be recorded as used by it (its "
        "ApprovalUse records what it was admitted with, once). Create a new run for the new "
        "spec (another name, or delete this one first)"
    )


def _finalizer_missing(policy: Policy) -> str:
    """Said when records would admit a run that lacks the use finalizer (checked after the
    records, so that an unapproved run is told what it lacks first)."""
    return (
        f"policy {policy.ref}: a run admitted on approvals must carry the finalizer "
        f"{USE_FINALIZER} (it keeps the name taken until the approval's use is recorded, "
        "so the approval admits one run); `approvalgate approve` adds it, or add it to "
        "metadata.finalizers"
    )


def _graded(policy: Policy, level: str, reason: str, summary: str) -> PolicyResult:
    """A denial for who the requester is, at the policy's effective enforcement level."""
    if level == "warn":
        return PolicyResult(policy.ref, "warn", reason, summary)
    if level == "audit":
        return PolicyResult(policy.ref, "allow", reason, summary, audit_only=True)
    return PolicyResult(policy.ref, "deny", reason, summary)


def _in_trusted_group(policy: Policy, run: _Run) -> bool:
    """Whether the request carries a trusted group. A ServiceAccount group
    (``system:serviceaccounts`` or ``system:serviceaccounts:NS``) counts only for a
    ServiceAccount (of NS): any other username carries it only by impersonating the group or
    by a client certificate naming it (class 17), and would pass without a pod."""
    for group in run.groups & policy.trusted_groups:
        if group == ALL_SERVICE_ACCOUNTS:
            if run.service_account:
                return True
        elif group.startswith(SERVICE_ACCOUNTS_OF):
            if identity.service_account_namespace(run.username) == group.removeprefix(
                SERVICE_ACCOUNTS_OF
            ):
                return True
        else:
            return True
    return False


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
    policy: Policy,
    run: _Run,
    approvals: Sequence[str],
    rejects: Sequence[str],
    required: int,
    bundle: Bundle,
) -> str:
    """Who could still approve: eligible, not yet counted, not the requester or author."""
    if rejects and policy.rejection == "veto":
        return f"{', '.join(rejects)} to withdraw the rejection (approve after it), or a new spec"
    count = max(required - len(approvals), len(rejects) + 1 - len(approvals), 1)
    decided = {bundle.person_of(name) for name in (*approvals, *rejects)}
    candidates = sorted(
        name
        for name in policy.approvers
        if name not in run.excluded and bundle.person_of(name) not in decided
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
    if decision == "withdraw":
        bypassers = policy.bypass.approvers if policy.bypass is not None else frozenset()
        if name not in policy.approvers | bypassers:
            return bad(f"{name} is not an approver of policy {policy.ref}")
        return RecordVerdict(
            index, name, decision, True, f"withdraws {name}'s earlier records", environment
        )
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
    if decision == "reject":  # it can only take away: any lifetime counts (_rejection)
        until = (
            f"until {claim.expires_text}"
            if check.holds_until is None
            else f"expired at {claim.expires_text}; it counts until "
            f"{records.format_time(check.holds_until)}, when every approval issued before it "
            "has expired"
        )
        return RecordVerdict(
            index, name, decision, True, f"valid reject for {environment} {until}", environment
        )
    if lifetime > policy.timeout_seconds:
        return bad(
            f"lasts {int(lifetime)}s, over the policy's {policy.timeout_name} "
            f"({policy.timeout_seconds})"
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
    lines = [f"approvalgate denied {verb} {run.kind} {run.ref}:"]
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
    if parents.is_parent_subject(run.subject) and run.subject.split("/")[1] != run.kind:
        lines.append(
            f"The platform created this {run.kind}: it is admitted on its parent's approval "
            "(the chain above). Each approver approves the parent: `approvalgate approve "
            f"PARENT.yaml --env {environment} --key KEY --approver NAME` with --target or "
            "--cluster (docs/parents.md); then apply the approved parent."
        )
        return "\n".join(lines)
    if run.kind != "AgentRun":
        lines.append(
            f"To approve what this {run.kind} will run (coverage sha256:{run.digest[:12]}), "
            f"each approver runs `approvalgate approve {run.kind.upper()}.yaml --env "
            f"{environment} --key KEY --approver NAME` (with --target or --cluster: "
            "docs/parents.md); then apply the approved file."
        )
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
