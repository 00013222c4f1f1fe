"""Stored AgentRuns decided again, by the same decide() the webhook calls.

Each run is decided as a CREATE of its current spec at ``now``. Who created it is not
recorded on the object, so the requester is unknown: approvals by that person cannot be
excluded afterwards (the run's recorded author, ``approvals.proompteng.ai/requested-by``, still
is). A run that would be denied now is classified with two more decide() calls:

- decided at its ``creationTimestamp`` it is admitted: its approvals were valid when it was
  created and have expired since (``warn``, rule ``approvals-expired``);
- every failing policy trusts a submitter that would have been admitted, and the run names its
  author as the submission API does: it was admissible only if that submitter created it,
  which the audit cannot confirm (``warn``, rule ``trusted-submitter-unverified``);
- otherwise it got past admission without a decision, or under a looser policy (``fail``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from approvalgate.approvals import parents, records
from approvalgate.approvals.admission import request_for_manifest
from approvalgate.approvals.bundle import Bundle, Policy
from approvalgate.approvals.decide import Decision, PolicyResult, decide
from approvalgate.approvals.identity import POD_NAME_EXTRA, POD_UID_EXTRA
from approvalgate.approvals.view import OFFLINE, ClusterView
from approvalgate.audit.findings import RunResult, RunStatus

REQUESTER_UNKNOWN: Final = "unknown (not recorded on the object)"
AS_FROM_ITS_POD: Final = {POD_NAME_EXTRA: ("(audit)",), POD_UID_EXTRA: ("(audit)",)}
_FAILING: Final = ("deny", "require-approval")


def audit_runs(
    objects: Iterable[Mapping[str, Any]],
    bundle: Bundle,
    now: datetime,
    view: ClusterView = OFFLINE,
) -> list[RunResult]:
    """One result per AgentRun object, sorted by namespace and name. ``view``: what the
    cluster holds (decisions, uses, requests); OFFLINE when it could not be read."""
    results = [audit_run(obj, bundle, now, view) for obj in objects]
    return sorted(results, key=lambda r: (r.namespace, r.name))


def audit_run(
    obj: Mapping[str, Any], bundle: Bundle, now: datetime, view: ClusterView = OFFLINE
) -> RunResult:
    meta: Mapping[str, Any] = obj.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    name = str(meta.get("name") or "")
    annotations = meta.get("annotations") or {}
    author = str(annotations.get(records.AUTHOR_ANNOTATION) or "")
    created = _created(meta)
    request = _request(obj, namespace)
    decision = decide(request, bundle, now, view)
    if not decision.allowed:  # a run the platform made: judged as its approved parent's
        derived = _as_derived(request, namespace, bundle, now, view)
        if derived is not None:
            request, decision = derived
    properties = {
        "requester": REQUESTER_UNKNOWN,
        "author": author or "(none)",
        "reason": decision.reason,
    }
    if decision.chain:
        properties["chain"] = " <- ".join(decision.chain)
    if decision.digest:
        properties["digest"] = f"sha256:{decision.digest}"
    if created is not None:
        properties["created"] = records.format_time(created)
    if decision.approvers:
        properties["approvers"] = ",".join(decision.approvers)

    def result(status: RunStatus, rule: str, message: str, advice: str = "") -> RunResult:
        return RunResult(
            namespace=namespace,
            name=name,
            uid=str(meta.get("uid") or ""),
            api_version=str(obj.get("apiVersion") or ""),
            status=status,
            rule=rule,
            # the policies that block it (all that select it when none does)
            policies=tuple(r.policy for r in _failing(decision)) or decision.policies,
            reason=decision.reason,
            message=message,
            advice=advice,
            properties=properties,
        )

    ref = f"{namespace}/{name}"
    if decision.internal_error:
        return result(
            "error",
            "decide",
            f"AgentRun {ref} could not be evaluated: {decision.internal_error}",
            "this is a bug in approvalgate: report it with the run's spec",
        )
    if decision.allowed:
        return _admitted(decision, ref, result)

    expired = _expired_records(decision)
    if created is not None and decide(request, bundle, created, view).allowed:
        properties["expired"] = "true"
        return result(
            "warn",
            "approvals-expired",
            f"AgentRun {ref} was admissible when it was created ({records.format_time(created)})"
            f", but its approvals have expired since: re-creating this spec now would be denied."
            + _details(decision),
            "nothing to do for this run; a new run of this spec needs new approvals "
            "(`approvalgate approve`)",
        )
    trusted = _trusted_submitter(obj, namespace, decision, bundle, now)
    if trusted and author:
        properties["trustedSubmitter"] = trusted
        return result(
            "warn",
            "trusted-submitter-unverified",
            f"AgentRun {ref} has no approvals that admit it now; it was admissible only if the "
            f"trusted submitter {trusted} created it. It names its author ({author}) as the "
            "submission API does, but who created it is not recorded on the object, so the "
            "audit cannot confirm it." + _details(decision),
            "check the submission API's records for this run; if it did not create it, treat "
            "it as a run that bypassed the gate",
        )
    if expired:
        properties["expired"] = "true"
    when = (
        f"it would have been denied when it was created ({records.format_time(created)}) too"
        if created is not None
        else "its creation time is unknown"
    )
    rule = _rule(decision, expired)
    headline = {
        "approvals-expired": f"its approvals had already expired ({', '.join(expired)})",
        "no-policy": "no ApprovalPolicy selects it and unmatched runs are denied",
        "spec-digest": "its spec cannot be approved",
    }.get(rule, f"it lacks the approvals it needs ({decision.reason})")
    if rule == "recorded-approvals" and decision.reason == "vetoed":
        headline = "an eligible approver rejected it (vetoed)"
    hint = (
        "\nThe requester is not recorded on the object: the run was decided for an unknown "
        "requester" + (f" and its recorded author {author}." if author else ".")
    )
    if trusted:
        hint += (
            f" A trusted submitter ({trusted}) would have been admitted, but the run names no "
            f"author ({records.AUTHOR_ANNOTATION}), which the submission API sets: it was most "
            "likely applied directly."
        )
    return result(
        "fail",
        rule,
        f"AgentRun {ref} would be denied if created now: {headline}; {when}. It got past "
        "admission without a decision (webhook not registered or not called, failurePolicy "
        "Ignore, namespace or object excluded) or under an older, looser policy."
        + _details(decision)
        + hint,
        f"delete it (`kubectl delete agentrun -n {namespace} {name}`), or get its current spec "
        "approved and re-apply it with the records; then check the webhook findings above for "
        "how it got in",
    )


def _admitted(decision: Decision, ref: str, result: Callable[..., RunResult]) -> RunResult:
    out: RunResult
    if decision.reason == "bypass":
        out = result(
            "warn",
            "break-glass-bypass",
            f"AgentRun {ref} is admitted by a break-glass bypass: " + "; ".join(decision.warnings),
            "review the bypass reason; approve the run normally if it keeps running",
        )
    elif decision.warnings or "audit-would-deny" in decision.audit_annotations:
        would = decision.warnings or (
            f"policies {decision.audit_annotations['audit-would-deny']} would deny it",
        )
        out = result(
            "warn",
            "recorded-approvals",
            f"AgentRun {ref} is admitted only because enforcement is below enforce: "
            + "; ".join(would),
            "approve it, or raise the enforcement of the environment or policy to enforce",
        )
    elif decision.reason == "no-policy":
        out = result(
            "pass",
            "no-policy",
            f"AgentRun {ref}: no ApprovalPolicy selects it and the bundle allows unmatched runs",
        )
    else:
        summaries = "; ".join(r.summary for r in decision.results if r.outcome == "allow")
        who = f" by {', '.join(decision.approvers)}" if decision.approvers else ""
        out = result(
            "pass",
            "recorded-approvals",
            f"AgentRun {ref} is approved{who}" + (f" ({summaries})" if summaries else ""),
        )
    return out


def _as_derived(
    request: Mapping[str, Any], namespace: str, bundle: Bundle, now: datetime, view: ClusterView
) -> tuple[dict[str, Any], Decision] | None:
    """The decision on a run that carries a parent's labels, replayed as created by a platform
    creator of the policies (who created it is not recorded on the object). Such a run is
    exactly what its parent's approvers approved (up to the per-run fields), whoever made
    it; None when it does not derive from an approved parent."""
    labels = ((request.get("object") or {}).get("metadata") or {}).get("labels") or {}
    if parents.SCHEDULE_LABEL not in labels and parents.ORCHESTRATION_RUN_LABEL not in labels:
        return None
    creators = sorted(
        {c.replace("{namespace}", namespace) for p in bundle.policies for c in p.parent_creators}
    )
    for creator in creators:
        replayed = {**request, "userInfo": {"username": creator, "groups": []}}
        decision = decide(replayed, bundle, now, view)
        if decision.allowed:
            return replayed, decision
    return None


def _request(obj: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    return dict(request_for_manifest(obj, operation="CREATE", namespace=namespace))


def _created(meta: Mapping[str, Any]) -> datetime | None:
    text = meta.get("creationTimestamp")
    if not isinstance(text, str):
        return None
    try:
        return records.parse_time(text)
    except ValueError:
        return None


def _failing(decision: Decision) -> list[PolicyResult]:
    return [r for r in decision.results if r.outcome in _FAILING]


def _expired_records(decision: Decision) -> list[str]:
    notes = []
    for result in _failing(decision):
        for verdict in result.records:
            if verdict.note.startswith("expired at "):
                who = verdict.approver or f"record {verdict.index}"
                notes.append(f"{who} {verdict.note}")
    return sorted(set(notes))


def _rule(decision: Decision, expired: Sequence[str]) -> str:
    if decision.reason == "no-policy":
        return "no-policy"
    if decision.reason == "undigestable-spec":
        return "spec-digest"
    if expired:
        return "approvals-expired"
    return "recorded-approvals"


def _details(decision: Decision) -> str:
    """The per-policy lines of decide()'s denial (its first line speaks of a request)."""
    lines = decision.message.splitlines()[1:]
    return ("\n" + "\n".join(lines)) if lines else ""


def _trusted_submitter(
    obj: Mapping[str, Any], namespace: str, decision: Decision, bundle: Bundle, now: datetime
) -> str:
    """A trusted submitter of every failing policy that decide() would admit, or ""."""
    by_ref: dict[str, Policy] = {p.ref: p for p in bundle.policies}
    failing = [by_ref.get(r.policy) for r in _failing(decision)]
    if not failing or any(p is None for p in failing):
        return ""
    candidates: list[tuple[str, tuple[str, ...]]] = []
    for policy in failing:
        assert policy is not None
        candidates += [(user, ()) for user in sorted(policy.trusted_users)]
        candidates += [("", (group,)) for group in sorted(policy.trusted_groups)]
    for username, groups in candidates:
        request = request_for_manifest(
            obj, operation="CREATE", username=username, groups=groups, namespace=namespace
        )
        # as it really submits: from its own pod (a pod-bound token, decide() rule 6)
        request["userInfo"]["extra"] = {k: list(v) for k, v in AS_FROM_ITS_POD.items()}
        if decide(request, bundle, now).allowed:
            return username or f"group {groups[0]}"
    return ""
