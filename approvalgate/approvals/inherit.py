"""decide() for what the platform creates and what runs execute (security classes 19, 23).

- :func:`decide_derived`: an AgentRun created by one of a policy's ``parents.creators`` is
  judged as its approved parent (approvals.parents): the parent's records, under the same
  rules as a run's, with the parent's lifetime cap and run count limit; the creator is
  never trusted.
- :func:`decide_parent`: CREATE and UPDATE of a Schedule, OrchestrationRun or Swarm need
  approvals covering the runs it will make (a Swarm's Schedules: derived from the Swarm).
- :func:`decide_content`: a write to an ImplementationSpec, Agent or AgentProvider is
  denied while a recorded use binds that object to other content.

Split from approvals/decide.py (which imports this module lazily, as it does gates.py);
the rules are decide()'s own, numbered in docs/design.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple

from approvalgate.approvals import content, identity, parents, records
from approvalgate.approvals.bundle import Bundle, Policy
from approvalgate.approvals.decide import (
    Decision,
    PolicyResult,
    _allow,
    _by_bundle,
    _Check,
    _check_record,
    _combine,
    _deny,
    _effective,
    _evaluate,
    _excluded,
    _graded,
    _matching,
    _Run,
    _usable,
    bind_content,
    only_finalizers_removed,
)
from approvalgate.approvals.view import ClusterView, statement_digest

CREATOR_OPERATIONS = ("CREATE", "UPDATE")


def _parent_run(
    covered: parents.Coverage,
    obj: Mapping[str, Any],
    bundle: Bundle,
    username: str = "",
    groups: frozenset[str] = frozenset(),
    operation: str = "CREATE",
    pod: str = "",
) -> _Run:
    """The parent, seen as the thing approvers approve: its subject and coverage digest."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    assert isinstance(annotations, dict)
    author = str(annotations.get(records.AUTHOR_ANNOTATION, ""))
    return _Run(
        ref=f"{covered.namespace}/{covered.name}",
        namespace=covered.namespace,
        name=covered.name,
        generate_name="",
        subject=covered.subject,
        digest=covered.digest,
        agent="",
        implementations=(),
        labels={},
        username=username,
        groups=groups,
        # who writes a parent is judged as who creates a run: a ServiceAccount is nobody in
        # particular (serviceAccountRequesters), a trusted one only from its own pod
        service_account=identity.is_service_account(username),
        pod=pod,
        author=author,
        operation=operation,
        excluded=_excluded(bundle, username, author),
        kind=covered.kind,
    )


def _parent_records(
    obj: Mapping[str, Any], covered: parents.Coverage, bundle: Bundle, view: ClusterView | None
) -> tuple[list[records.ParsedRecord], list[records.RecordProblem], dict[bytes, datetime]]:
    """The parent's records: those it carries, then its ApprovalDecisions in the cluster that
    take back (reject, withdraw); and when each statement was first filed in the cluster.

    A parent's approvals (approve, bypass) are only those it carries: they are judged when
    the parent is written, against who writes it (nobody approves their own parent). Its
    runs are judged later, when that person is no longer known, so an approval filed in the
    cluster afterwards (by the parent's own writer, say, once the others' approvals expired)
    would count for its runs unchecked."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    assert isinstance(annotations, dict)
    value = annotations.get(records.ANNOTATION)
    parsed: Sequence[records.ParsedRecord] = ()
    problems: Sequence[records.RecordProblem] = ()
    if isinstance(value, str):
        parsed, problems = bundle.verifier.parse_annotation(value)
    found = list(parsed)
    troubles = list(problems)
    statements: dict[bytes, datetime] = {}
    if view is not None:
        start = 1 + max([r.index for r in parsed] + [p.index for p in problems] + [-1])
        filed = [f for f in view.decisions_for(covered.namespace, covered.name) if f.envelope]
        more, _ = bundle.verifier.parse_envelopes([f.envelope for f in filed], start)
        carried = {r.envelope.payload for r in parsed}
        found.extend(
            r
            for r in more
            if r.claim.subject == covered.subject
            and r.envelope.payload not in carried
            and r.claim.decision in ("reject", "withdraw")
        )
        for record in more:  # when each was said, carried copies too (decide.said_at)
            at, payload = filed[record.index - start].created, record.envelope.payload
            if at is not None and (payload not in statements or at < statements[payload]):
                statements[payload] = at
    if not found and not troubles:
        troubles = [records.RecordProblem(-1, f"annotation {records.ANNOTATION} is missing")]
    return found, troubles, statements


class _ParentRecords(NamedTuple):
    """A parent's records with the checks that do not depend on the policy (made once)."""

    found: list[records.ParsedRecord]
    checks: list[_Check]
    problems: list[records.RecordProblem]
    statements_filed: Mapping[bytes, datetime]


def _parent_checks(
    obj: Mapping[str, Any],
    covered: parents.Coverage,
    prun: _Run,
    bundle: Bundle,
    now: datetime,
    view: ClusterView | None,
) -> _ParentRecords:
    """The parent's records, checked as a run's are, with the content its runs execute
    bound where the bundle binds it."""
    found, problems, statements = _parent_records(obj, covered, bundle, view)
    prun = prun._replace(statements_filed=statements)
    checks: list[_Check] = [_check_record(r, prun, bundle, now, None) for r in found]
    if bundle.binds_content and view is not None:
        checks = bind_content(checks, covered.references, covered.namespace, view)
    if covered.kind == "OrchestrationRun" and view is not None:
        created = _created(obj) or now
        checks = [_used_before(c, covered, created, view) for c in checks]
    return _ParentRecords(found, checks, problems, statements)


def _created(obj: Mapping[str, Any]) -> datetime | None:
    meta = obj.get("metadata")
    value = meta.get("creationTimestamp") if isinstance(meta, Mapping) else None
    try:
        return records.parse_time(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _used_before(
    check: _Check, covered: parents.Coverage, created: datetime, view: ClusterView
) -> _Check:
    """Class 23: an OrchestrationRun runs its steps once, so its approval admits one
    OrchestrationRun. The approval is on the name, not a uid: deleted after its steps ran
    and created again with the same records, it would run them all again. A record that a
    run used before this OrchestrationRun was created (its use recorded earlier; a missing
    creation time is now) approves nothing here."""
    claim = check.record.claim
    if check.problem or claim.decision not in ("approve", "bypass"):
        return check
    for use in view.uses_of(statement_digest(check.record)):
        if use.namespace == covered.namespace and use.created is not None and use.created < created:
            return check._replace(
                problem=(
                    f"already used by run {use.namespace}/{use.run_name} before this "
                    f"{covered.kind} was created: an approval of an {covered.kind} runs its "
                    "steps once; to run them again, approve it again"
                )
            )
    return check


def _judge_parent(
    policy: Policy, prun: _Run, checked: _ParentRecords, bundle: Bundle
) -> PolicyResult:
    """One policy's verdict on a parent's approval: the usual record rules, with the
    parent's lifetime cap instead of timeoutSeconds."""
    capped = replace(
        policy, timeout_seconds=policy.parent_max_ttl_seconds, timeout_name="parents.maxTTL"
    )
    prun = prun._replace(statements_filed=checked.statements_filed)
    return _evaluate(capped, prun, checked.checks, checked.problems, bundle)


def _run_limit(
    result: PolicyResult,
    policy: Policy,
    covered: parents.Coverage,
    found: Sequence[records.ParsedRecord],
    run_uid: str,
    bundle: Bundle,
    view: ClusterView,
) -> PolicyResult:
    """``parents.maxRuns``: the runs recorded as uses of the parent's approvals."""
    if policy.max_runs <= 0 or result.outcome not in ("allow", "warn"):
        return result
    approving = [r for r in found if r.claim.approver in result.approvals]
    runs: set[str] = set()
    for record in approving:
        for use in view.uses_of(statement_digest(record)):
            if use.run_uid != run_uid and use.namespace == covered.namespace:
                runs.add(use.run_uid)
    if len(runs) < policy.max_runs:
        return result
    return _graded(
        policy,
        _effective(policy, bundle.enforcement),
        "parent-run-limit",
        f"policy {policy.ref}: the approval of {covered.kind} {covered.namespace}/"
        f"{covered.name} has admitted {len(runs)} runs, its limit (parents.maxRuns "
        f"{policy.max_runs}); approve it again for more",
    )


def decide_derived(
    request: Mapping[str, Any],
    obj: Mapping[str, Any],
    run: _Run,
    policies: Sequence[Policy],
    checks: Sequence[_Check],
    problems: Sequence[records.RecordProblem],
    bundle: Bundle,
    now: datetime,
    view: ClusterView | None,
) -> Decision:
    """Rule 5b: a run created by a platform creator passes only as its parent's run."""
    usable = _usable(bundle, view)
    results: list[PolicyResult] = []
    chain: tuple[str, ...] = (f"AgentRun {run.ref}",)
    subject, digest = run.subject, run.digest
    # the derivation and the parent's checked records depend on the per-run fields only:
    # made once for the policies that share them
    made: dict[tuple[str, ...], tuple[parents.Derivation, _Run | None, _ParentRecords | None]] = {}
    for policy in policies:
        if not policy.is_parent_creator(run.username, run.namespace):
            results.append(_evaluate(policy, run, checks, problems, bundle))
            continue
        level = _effective(policy, bundle.enforcement)
        if level == "off":
            results.append(
                PolicyResult(policy.ref, "allow", "enforcement-off", f"policy {policy.ref}: off")
            )
            continue
        if usable is None:
            why = (
                "the bundle keeps no cluster view (clusterView: off)"
                if not bundle.needs_view
                else (view.problem if view is not None and view.problem else "no cluster view")
            )
            results.append(
                _graded(
                    policy,
                    level,
                    "cluster-view-unavailable",
                    f"policy {policy.ref}: {run.username} creates runs for the platform; "
                    f"approvalgate judges them by their parent in its cluster view, which is "
                    f"not usable: {why}",
                )
            )
            continue
        if policy.per_run_fields not in made:
            derivation = parents.derive(obj, run.namespace, usable, policy.per_run_fields)
            prun = checked = None
            if not derivation.problem and derivation.coverage and derivation.parent is not None:
                prun = _parent_run(derivation.coverage, derivation.parent, bundle)
                checked = _parent_checks(
                    derivation.parent, derivation.coverage, prun, bundle, now, usable
                )
            made[policy.per_run_fields] = (derivation, prun, checked)
        derivation, prun, checked = made[policy.per_run_fields]
        chain = derivation.chain
        if derivation.coverage is None or prun is None or checked is None:
            results.append(
                _graded(
                    policy,
                    level,
                    "not-derived",
                    f"policy {policy.ref}: {run.username} creates runs for the platform, and "
                    f"this one does not derive from an approved parent: "
                    f"{parents.chain_text(chain, '')}: {derivation.problem}",
                )
            )
            continue
        covered = derivation.coverage
        subject, digest = covered.subject, covered.digest
        result = _judge_parent(policy, prun, checked, bundle)
        result = _run_limit(result, policy, covered, checked.found, run.uid, bundle, usable)
        results.append(replace(result, summary=f"{result.summary} [{parents.chain_text(chain)}]"))
    decision = _combine(results, run._replace(subject=subject, digest=digest), bundle.environment)
    return replace(decision, chain=chain)


# --- parents: CREATE and UPDATE ------------------------------------------------------------


def _same(old: object, new: object) -> bool:
    return parents._same(old, new)


def _unchanged(
    request: Mapping[str, Any], obj: Mapping[str, Any], bundle: Bundle, view: ClusterView | None
) -> bool:
    """An UPDATE that leaves what approvers signed alone (spec, templates, records, owner),
    and the author its runs exclude, and is selected by the same policies (labels can change
    that, as for runs)."""
    old = request.get("oldObject")
    if not isinstance(old, dict):
        return False
    if not _same(old.get("spec"), obj.get("spec")) or _notes(old) != _notes(obj):
        return False
    before, after = parents.coverage(old, view), parents.coverage(obj, view)
    if isinstance(before, str) or isinstance(after, str):
        return False
    return [p.ref for p in _selecting(request, old, before, bundle)] == [
        p.ref for p in _selecting(request, obj, after, bundle)
    ]


def _notes(o: Mapping[str, Any]) -> tuple[object, ...]:
    meta = o.get("metadata") if isinstance(o.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    assert isinstance(annotations, dict)
    # the author too: the parent's runs exclude the approvers known as its author, so
    # removing or changing it is a write judged against its writer
    keys = (
        records.ANNOTATION,
        parents.TEMPLATE_ANNOTATION,
        parents.TEMPLATES_ANNOTATION,
        records.AUTHOR_ANNOTATION,
    )
    return (*(annotations.get(k) for k in keys), meta.get("ownerReferences"))


def _template_run(
    request: Mapping[str, Any], obj: Mapping[str, Any], template: Mapping[str, Any], namespace: str
) -> _Run:
    """A run with the template's spec and the labels the platform gives it (for matching)."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    labels = dict(meta.get("labels") or {}) if isinstance(meta.get("labels"), dict) else {}
    if obj.get("kind") == "Schedule":
        labels[parents.SCHEDULE_LABEL] = str(meta.get("name") or "")
    fake = {"metadata": {"labels": labels}, "spec": dict(template)}
    return _Run.of(request, fake, fake["metadata"], namespace, "")


def _selecting(
    request: Mapping[str, Any], obj: Mapping[str, Any], covered: parents.Coverage, bundle: Bundle
) -> list[Policy]:
    found: dict[str, Policy] = {}
    for template in covered.templates.values():
        for policy in _matching(bundle, _template_run(request, obj, template, covered.namespace)):
            found.setdefault(policy.ref, policy)
    return [found[k] for k in sorted(found)]


def _through_subresource(request: Mapping[str, Any], bundle: Bundle) -> Decision | None:
    """A write through a subresource: ``status`` passes (controllers, never what runs);
    any other (``scale``, should a CRD gain one: it writes into the spec) is denied where
    the namespace is enforced, since what it writes is not the object and cannot be judged
    as one. None: no subresource."""
    sub = request.get("subResource")
    if not sub:
        return None
    if sub == "status":
        return _allow("status-subresource")
    namespace = request.get("namespace")
    if isinstance(namespace, str) and namespace and not bundle.enforces(namespace):
        return _allow("namespace-not-enforced")
    return _deny(
        "subresource-not-judged",
        f"approvalgate denied this write through the {str(sub)[:40]!r} subresource: it "
        "changes the object without the object being judged. Change the object itself "
        "(kubectl apply or edit), so that its approvals are checked",
    )


def decide_parent(
    request: Mapping[str, Any], bundle: Bundle, now: datetime, view: ClusterView | None
) -> Decision:
    """CREATE and UPDATE of a Schedule, OrchestrationRun or Swarm in an enforced namespace."""
    operation = request.get("operation")
    through = _through_subresource(request, bundle)
    if through is not None:
        return through
    obj = request.get("object")
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict):
        return _deny("malformed", "the request carries no object")
    meta: dict[str, Any] = obj.get("metadata", {})
    namespace = request.get("namespace") or meta.get("namespace") or ""
    if not isinstance(namespace, str) or not namespace:
        return _deny("malformed", "the request names no namespace")
    if not bundle.enforces(namespace):
        return _allow("namespace-not-enforced")
    if operation not in CREATOR_OPERATIONS:
        return _deny("malformed", f"unknown operation {operation!r}")
    old = request.get("oldObject")
    if operation == "UPDATE":
        old_meta = old.get("metadata") if isinstance(old, dict) else None
        if isinstance(old_meta, dict) and old_meta.get("deletionTimestamp"):
            # being deleted: only finalizers may go (as for runs)
            if (
                isinstance(old, dict)
                and _same(old.get("spec"), obj.get("spec"))
                and only_finalizers_removed(old_meta, meta)
            ):
                return _allow("deleting-object")
            return _deny(
                "deleting-object",
                "approvalgate denied this update: the object is being deleted, and only "
                "finalizer removal is allowed now",
            )
        if _unchanged(request, obj, bundle, _usable(bundle, view)):
            return _allow("unchanged-spec")
    kind = str(obj.get("kind") or "")
    name = str(meta.get("name") or request.get("name") or "")
    obj = {**obj, "metadata": {**meta, "name": name, "namespace": namespace}}
    user = request.get("userInfo") if isinstance(request.get("userInfo"), dict) else {}
    assert isinstance(user, dict)
    username = str(user.get("username") or "")
    groups = frozenset(str(g) for g in user.get("groups") or ())
    usable = _usable(bundle, view)
    where = f"{kind} {namespace}/{name}"
    verb = "creating" if operation == "CREATE" else "updating"
    if kind == "Schedule" and parents.SWARM_STAGE_LABEL in (meta.get("labels") or {}):
        owned = _swarm_schedule(request, obj, username, namespace, bundle, now, usable, view)
        if owned is not None:
            return owned
    if bundle.needs_view and usable is None and not (view is not None and view.offline):
        # as for a run judged by records: rejections, withdrawals and content are in the view
        problem = view.problem if view is not None and view.problem else "no cluster view"
        return _by_bundle(
            bundle,
            "cluster-view-unavailable",
            f"approvalgate denied {verb} {where}: its approvals are judged with the cluster "
            f"view (rejections and withdrawals, the content they bind), which is not usable: "
            f"{problem}; retry when the webhook is ready",
        )
    covered = parents.coverage(obj, usable)
    if isinstance(covered, str):
        message = f"approvalgate denied {verb} {where}: {covered}"
        if kind == "OrchestrationRun" and usable is None and bundle.needs_view:
            message += f" (the cluster view is not usable: {view.problem if view else 'none'})"
        return _by_bundle(bundle, "parent-not-covered", message)
    if not covered.templates:
        return _allow("parent-makes-no-runs")
    policies = _selecting(request, obj, covered, bundle)
    if not policies:
        if bundle.no_match == "allow":
            return _allow("no-policy", digest=covered.digest, subject=covered.subject)
        return _deny(
            "no-policy",
            f"approvalgate denied {verb} {where}: no ApprovalPolicy selects the runs it "
            f"will create in namespace {namespace!r}, and unmatched runs are denied.",
            digest=covered.digest,
            subject=covered.subject,
        )
    pod = identity.bound_pod(user)
    prun = _parent_run(covered, obj, bundle, username, groups, str(operation), pod)
    checked = _parent_checks(obj, covered, prun, bundle, now, usable)
    own = _writers_own(checked.found, username, bundle)
    if own:
        return _deny(
            "parent-self-approval",
            f"approvalgate denied {verb} {where}: it carries an approval by {own}, who is "
            f"writing it (as {username}). Nobody approves their own parent, and its runs are "
            "judged later, when who wrote it is no longer known: remove that record from "
            f"{records.ANNOTATION}, or have someone else apply it.",
            digest=covered.digest,
            subject=covered.subject,
            chain=(where,),
        )
    results = [
        _service_account_parent(p, prun, bundle) or _judge_parent(p, prun, checked, bundle)
        for p in policies
    ]
    return replace(_combine(results, prun, bundle.environment), chain=(where,))


def _service_account_parent(policy: Policy, prun: _Run, bundle: Bundle) -> PolicyResult | None:
    """``serviceAccountRequesters: extraApproval`` does not extend to parents: the extra
    approval would be asked for only when the parent is written, and its runs are judged
    later, without knowing a ServiceAccount wrote it (once one approval expires, the person
    behind the ServiceAccount would count her own). A GitOps applier is judged as a person;
    a trusted submitter's parent has no records, so its runs are denied anyway."""
    if (
        not prun.service_account
        or policy.service_account_requesters != "extraApproval"
        or prun.username in policy.gitops_appliers
        or prun.username in policy.trusted_users
        or prun.groups & policy.trusted_groups
    ):
        return None
    level = _effective(policy, bundle.enforcement)
    if level == "off":
        return None
    return _graded(
        policy,
        level,
        "service-account-requester",
        f"policy {policy.ref}: the writer {prun.username} is a ServiceAccount: "
        "serviceAccountRequesters: extraApproval does not extend to parents (their runs are "
        "judged later, without knowing a ServiceAccount wrote them, so the extra approval "
        "would not hold). Apply it as yourself, or from a GitOps applier",
    )


def _writers_own(found: Sequence[records.ParsedRecord], username: str, bundle: Bundle) -> str:
    """The approver, known as the parent's writer ``username``, whose approval (approve or
    bypass) the parent carries ("" if none): excluded now, it would count for the parent's
    runs, which are judged without the writer (expired, future or withdrawn records too:
    they may count then, or the others' may stop counting)."""
    mine = bundle.approvers_known_as(username)
    for record in found:
        if record.claim.decision in ("approve", "bypass") and record.claim.approver in mine:
            return record.claim.approver
    return ""


def _swarm_schedule(
    request: Mapping[str, Any],
    obj: Mapping[str, Any],
    username: str,
    namespace: str,
    bundle: Bundle,
    now: datetime,
    usable: ClusterView | None,
    view: ClusterView | None,
) -> Decision | None:
    """A Schedule the swarm controller applies: judged as its Swarm's (None when the user is
    no platform creator of any policy: judged as a person's Schedule)."""
    if not any(p.is_parent_creator(username, namespace) for p in bundle.policies):
        return None
    meta = obj["metadata"]
    where = f"Schedule {namespace}/{meta['name']}"
    verb = "creating" if request.get("operation") == "CREATE" else "updating"
    if usable is None:
        problem = view.problem if view is not None and view.problem else "no usable cluster view"
        return _by_bundle(
            bundle,
            "cluster-view-unavailable",
            f"approvalgate denied {verb} {where}: a Schedule the platform makes is judged by "
            f"its Swarm in the cluster view, which is not usable: {problem}",
        )
    swarm, stage, problem = parents.swarm_of(obj, namespace, usable)
    if swarm is None:
        return _by_bundle(
            bundle,
            "not-derived",
            f"approvalgate denied {verb} {where}: {username} creates Schedules for the "
            f"platform, and this one does not derive from an approved Swarm: "
            f"{problem or 'it has no Swarm owner reference'}",
        )
    covered = parents.coverage(swarm, usable, stored=True)
    chain = (where, f"Swarm {namespace}/{swarm['metadata'].get('name', '')}")
    if isinstance(covered, str):
        return _by_bundle(
            bundle, "parent-not-covered", f"approvalgate denied {verb} {where}: {covered}"
        )
    template = covered.templates.get(stage)
    if template is None:
        return _by_bundle(
            bundle,
            "not-derived",
            f"approvalgate denied {verb} {where}: {chain[1]} has no approved run template "
            f"for stage {stage}",
        )
    fake = {**obj, "metadata": {**meta}}
    policies = [
        p
        for p in _matching(bundle, _template_run(request, fake, template, namespace))
        if p.is_parent_creator(username, namespace)
    ]
    if not policies:
        return _by_bundle(
            bundle,
            "not-derived",
            f"approvalgate denied {verb} {where}: no ApprovalPolicy that selects its runs "
            f"names {username} among parents.creators",
        )
    prun = _parent_run(covered, swarm, bundle)
    checked = _parent_checks(swarm, covered, prun, bundle, now, usable)
    results = [
        replace(r, summary=f"{r.summary} [{parents.chain_text(chain)}]")
        for r in (_judge_parent(p, prun, checked, bundle) for p in policies)
    ]
    # what is admitted or denied is the Schedule (judged on its Swarm's approval)
    shown = prun._replace(kind="Schedule", ref=f"{namespace}/{meta['name']}")
    return replace(_combine(results, shown, bundle.environment), chain=chain)


# --- referenced content: writes while a use binds it ---------------------------------------


def decide_content(
    request: Mapping[str, Any], bundle: Bundle, now: datetime, view: ClusterView | None
) -> Decision:
    """CREATE, UPDATE, DELETE of an ImplementationSpec, Agent or AgentProvider: denied while a
    use binds the object to other content (the runs it admitted read it by name).

    Expired or not: a run outlives its approval (it may wait in the platform's queue, and
    each workflow step, retry and loop iteration reads its ImplementationSpec when it
    starts), and the controller collects a use only once it expired *and* its run is gone
    (controller.ledger.use_expired). A use still in the view is a run that may still read
    the content."""
    through = _through_subresource(request, bundle)
    if through is not None:
        return through
    resource = request.get("resource") or {}
    kind = content.RESOURCES[str(resource.get("resource"))]
    operation = request.get("operation")
    obj = request.get("object") if operation != "DELETE" else request.get("oldObject")
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    name = str((meta or {}).get("name") or request.get("name") or "")
    namespace = str(request.get("namespace") or (meta or {}).get("namespace") or "")
    if not namespace or not name:
        return _deny("malformed", "the request names no namespace or name")
    if not bundle.enforces(namespace) or not bundle.binds_content:
        return _allow("content-not-bound")
    if operation == "UPDATE" and isinstance(obj, dict):
        old = request.get("oldObject")
        if isinstance(old, dict) and _same(old.get("spec"), obj.get("spec")):
            return _allow("unchanged-spec")
    usable = _usable(bundle, view)
    where = f"{kind} {namespace}/{name}"
    if usable is None:
        problem = view.problem if view is not None and view.problem else "no usable cluster view"
        return _deny(
            "cluster-view-unavailable",
            f"approvalgate denied this write to {where}: approved runs may execute it, and "
            f"approvalgate cannot tell now which ones (its cluster view is not usable: {problem})",
        )
    new_digest = content.digest(obj) if operation != "DELETE" and isinstance(obj, dict) else None
    key = content.key(kind, name)
    for use in usable.content_uses(namespace, key):
        bound = use.references.get(key)
        if bound is not None and bound != new_digest:
            until = "the run is deleted"  # and its use collected (expired, run gone)
            if use.expires_at is not None and use.live(now):
                until += f" and its approvals expire at {records.format_time(use.expires_at)}"
            verb = {"CREATE": "creating", "UPDATE": "changing", "DELETE": "deleting"}.get(
                str(operation), "writing"
            )
            return _deny(
                "content-in-use",
                f"approvalgate denied {verb} {where}: run {use.namespace}/{use.run_name} was "
                f"admitted on approvals of its content (sha256:{bound[:12]}) and may still "
                f"execute it, until {until} (ApprovalUse {use.name}). {_instead(kind)}",
            )
    return _allow("content-not-in-use")


def _instead(kind: str) -> str:
    """What to do instead of rewriting content a run may still execute."""
    if kind == content.PROVIDER:
        return (
            "Create a new AgentProvider under another name, and an Agent naming it, and have "
            "new runs approved that name that Agent."
        )
    return f"Create a new {kind} under another name and have new runs approved that name it."


# --- what a use of a derived run records -----------------------------------------------------


def parent_records_used(
    run: Mapping[str, Any], bundle: Bundle, view: ClusterView
) -> list[records.ParsedRecord]:
    """The approvals (approve, bypass) of the parent a run derives from, if it does: what the
    run's ApprovalUse records, so that ``parents.maxRuns`` counts it and the content its
    parent's approval bound stays as approved while it may run.

    The run derives under the ``perRunFields`` of whichever policy admitted it, and the
    controller cannot tell which: it derives under each policy's fields (of the policies
    here that name creators) and records the approvals of every derivation that holds.
    Deriving under the first policy's fields only recorded nothing for a run another
    policy admitted with other fields: ``maxRuns`` never counted it, and the content its
    parent's approval bound was left unguarded (class 23)."""
    meta = run.get("metadata") if isinstance(run.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    assert isinstance(labels, dict)
    if parents.SCHEDULE_LABEL not in labels and parents.ORCHESTRATION_RUN_LABEL not in labels:
        return []
    namespace = str(meta.get("namespace") or "")
    every = dict.fromkeys(
        p.per_run_fields for p in bundle.candidate_policies(namespace) if p.parent_creators
    )
    found: dict[bytes, records.ParsedRecord] = {}
    for fields in every or (parents.DEFAULT_PER_RUN_FIELDS,):
        derivation = parents.derive(run, namespace, view, fields)
        if derivation.problem or derivation.coverage is None or derivation.parent is None:
            continue
        made, _, _ = _parent_records(derivation.parent, derivation.coverage, bundle, view)
        for record in made:
            if record.claim.decision in ("approve", "bypass"):
                found.setdefault(record.envelope.payload, record)
    return list(found.values())


__all__ = ["decide_content", "decide_derived", "decide_parent", "parent_records_used"]
