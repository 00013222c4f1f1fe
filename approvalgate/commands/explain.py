"""Explain how the policies see each AgentRun, Schedule, OrchestrationRun and Swarm in a
manifest.

For every run: the environment it is judged in, which policies select it, what each
requires (approvals, approvers, TTL, rejection rule, bypass, trusted submitters,
ServiceAccount requesters, enforcement), and each approval record on the run (the
environment it names) with what became of it.

A run a platform controller creates from a parent (a Schedule's run, an OrchestrationRun's
step; --user is then the controller, one of the policy's parents.creators) is judged by its
parent's approval: explain prints the chain, e.g.
  chain: AgentRun agents/nightly-abc12 <- Schedule agents/nightly <- approval (2 of 2: alice, bob)
and what is missing (the parent, its approval, its run-template annotation, content that
changed since it was approved). The parents, Orchestrations, ImplementationSpecs and Agents
it needs are read from the manifest itself (all documents), from --content files, and with
--cluster from the cluster (the manifest's copies win: explain shows what applying it does).

examples:
  approvalgate explain run.yaml --policies policies/ approvers/ --env prod
  approvalgate explain run.yaml --bundle rendered/prod/bundle.json
  approvalgate explain run.yaml --bundle rendered/prod/bundle.json --cluster
  approvalgate explain schedule.yaml --bundle rendered/prod/bundle.json --cluster
  approvalgate explain derived-run.yaml --bundle rendered/prod/bundle.json --cluster \\
      --user system:serviceaccount:agents:agents-schedule
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from approvalgate.commands._args import (
    add_environment,
    add_manifest,
    add_namespace,
    add_now,
    add_policy_source,
)
from approvalgate.commands._bundle_trust import add_bundle_trust
from approvalgate.commands._view import add_cluster, load_view

if TYPE_CHECKING:
    from approvalgate.approvals.bundle import Bundle
    from approvalgate.approvals.decide import Decision
    from approvalgate.approvals.records import Claim


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_manifest(parser)
    add_policy_source(parser)
    add_bundle_trust(parser)
    add_environment(
        parser,
        "the environment to explain for (required with --policies; with --bundle, the bundle's)",
    )
    parser.add_argument(
        "--user",
        default="",
        help="the requester's username (for a run a Schedule or OrchestrationRun creates: the "
        "controller's, one of the policies' parents.creators)",
    )
    add_namespace(parser)
    add_now(parser, "as of this time")
    parser.add_argument(
        "--content",
        metavar="FILE",
        type=Path,
        nargs="+",
        action="extend",
        help="more objects the decision reads (ImplementationSpecs, Agents, Schedules, "
        "OrchestrationRuns, Orchestrations, Swarms), e.g. the Schedule a derived run names",
    )
    add_cluster(parser, "explain")


def run(args: argparse.Namespace) -> int:
    from approvalgate import manifests
    from approvalgate.approvals import records
    from approvalgate.approvals.bundle import Policy
    from approvalgate.approvals.decide import decide, matching_policies
    from approvalgate.approvals.durations import format_duration
    from approvalgate.approvals.errors import InputError
    from approvalgate.commands import _parents
    from approvalgate.commands._bundle_trust import decision_bundle
    from approvalgate.commands._view import objects_of
    from approvalgate.compiler.sources import load_text

    bundle = decision_bundle(args)
    now = manifests.parse_now(args.now)
    text = manifests.read_manifest(args.manifest)
    display = str(args.manifest)
    lines: list[str] = []
    documents = load_text(text, display)
    has_runs = any(manifests.is_agent_run(d.obj) for d in documents)
    parents = _parents.read(text, display, args.namespace)
    if not has_runs and not parents:
        raise InputError(
            f"{display}: no AgentRun (agents.proompteng.ai), Schedule, OrchestrationRun or "
            "Swarm in this file"
        )
    runs = manifests.agent_runs(text, display, args.namespace) if has_runs else []
    given = objects_of([d.obj for d in documents], args.namespace)
    for path in args.content or []:
        extra = objects_of(
            [d.obj for d in load_text(manifests.read_manifest(path), str(path))], args.namespace
        )
        if not extra:
            raise InputError(
                f"{path}: none of ImplementationSpec, Agent, Schedule, OrchestrationRun, "
                "Orchestration, Swarm in this file"
            )
        given.extend(extra)
    namespaces = [r.namespace for r in runs] + [p.namespace for p in parents]
    # without --cluster, a view of the given objects only where a parent is involved (a
    # platform-made run is judged in a view); ordinary runs keep the offline warning
    involved = parents or any(derived(r.obj) for r in runs)
    view = load_view(args, namespaces, given if args.cluster or involved else ())

    def describe(policy: Policy) -> None:
        lines.append(
            f"  policy {policy.ref} (enforcement {policy.enforcement}, mode {policy.mode})"
        )
        lines.append(
            f"    requires {policy.required_approvals} approval(s) from "
            f"{', '.join(policy.approver_refs)} = {', '.join(sorted(policy.approvers))}"
        )
        lines.append(
            f"    approvals live at most {format_duration(policy.timeout_seconds)}; "
            f"a reject {'blocks (veto)' if policy.rejection == 'veto' else 'is a vote'}"
        )
        if policy.bypass:
            lines.append(
                f"    bypass by {', '.join(sorted(policy.bypass.approvers))}, at most "
                f"{format_duration(policy.bypass.max_ttl_seconds)}, reason required"
            )
        trusted = sorted(policy.trusted_users) + [
            f"group:{g}" for g in sorted(policy.trusted_groups)
        ]
        if trusted:
            lines.append(
                f"    trusted submitters (no records needed, ServiceAccounts from their pods "
                f"only): {', '.join(trusted)}"
            )
        if policy.gitops_appliers:
            appliers = ", ".join(sorted(policy.gitops_appliers))
            lines.append(f"    GitOps appliers (judged by records, from their pods): {appliers}")
        if policy.service_account_requesters == "extraApproval":
            lines.append(
                "    other ServiceAccount requesters: one approval more "
                "(serviceAccountRequesters: extraApproval)"
            )
        else:
            lines.append(
                "    other ServiceAccount requesters: denied (serviceAccountRequesters: deny)"
            )
        if policy.parent_creators:
            limit = format_duration(policy.parent_max_ttl_seconds)
            runs_limit = f", {policy.max_runs} runs" if policy.max_runs else ""
            lines.append(
                f"    parents: runs created by {', '.join(policy.parent_creators)} are judged "
                f"by their parent's approval (at most {limit}{runs_limit}; per-run fields "
                f"{', '.join(policy.per_run_fields) or 'none'})"
            )

    def records_of(obj: dict[str, Any]) -> None:
        annotation = (obj.get("metadata") or {}).get("annotations") or {}
        parsed, problems = bundle.verifier.parse_annotation(annotation.get(records.ANNOTATION))
        found = [(r.index, _record_line(r.claim)) for r in parsed]
        found += [(p.index, p.message) for p in problems if p.index >= 0]
        lines.extend(f"  record {index}: {line}" for index, line in sorted(found))

    def outcome(decision: Decision) -> None:
        for result in decision.results:
            lines.append(f"  {result.summary}: {result.outcome}")
            lines.extend(f"    {v.line()}" for v in result.records)
        lines.extend(chain_lines(decision, bundle, missing=False))  # the results say it
        verdict = "admitted" if decision.allowed else "denied"
        lines.append(f"  => {verdict} ({decision.reason})")

    for run_ in runs:
        request = manifests.request_for(run_, username=args.user)
        lines.append(f"AgentRun {run_.ref}")
        lines.append(f"  subject {run_.subject}")
        lines.append(f"  spec digest sha256:{run_.digest}")
        lines.append(f"  environment {bundle.environment}: records count only if they name it")
        records_of(run_.obj)
        policies = matching_policies(request, bundle)
        if not policies:
            lines.append(f"  no policy selects it: unmatched runs are {bundle.no_match}ed")
        for policy in policies:
            describe(policy)
        outcome(decide(request, bundle, now, view))
    for parent in parents:
        lines.append(parent.what)
        coverage = _parents.coverage_of(parent, view, bundle)
        if isinstance(coverage, str):
            lines.append(f"  coverage: {coverage}")
        else:
            lines.append(f"  subject {coverage.subject}")
            lines.append(f"  coverage sha256:{coverage.digest} ({_templates(coverage)})")
            for key in coverage.references:
                lines.append(f"  references {key}")
        lines.append(f"  environment {bundle.environment}: records count only if they name it")
        records_of(parent.obj)
        policies = list(_parents.policies_of(parent, view, bundle))
        if not policies:
            lines.append("  no policy selects its run templates")
        for policy in policies:
            describe(policy)
        outcome(decide(_parents.request_for(parent, args.user), bundle, now, view))
    print("\n".join(lines))
    return 0


def chain_lines(decision: Decision, bundle: Bundle, missing: bool = True) -> list[str]:
    """``chain: A <- B <- approval (2 of 2: alice, bob)`` for a derived run or a parent, and,
    when it was denied (and ``missing``), what is missing: the denial's message."""
    if not decision.chain:
        return []
    lines = [f"  chain: {' <- '.join([*decision.chain, approval_text(decision, bundle)])}"]
    if missing and not decision.allowed and decision.message:
        first, *rest = decision.message.splitlines()
        lines.append(f"  missing: {first}")
        lines.extend(f"    {line}" for line in rest)
    return lines


def derived(obj: Mapping[str, Any]) -> bool:
    """The run carries a parent's label (a Schedule's or an OrchestrationRun's)."""
    from approvalgate.approvals import parents

    labels = (obj.get("metadata") or {}).get("labels") or {}
    return parents.SCHEDULE_LABEL in labels or parents.ORCHESTRATION_RUN_LABEL in labels


def approval_text(decision: Decision, bundle: Bundle) -> str:
    """The end of a chain: what approved it, e.g. ``approval (2 of 2: alice, bob)``; one part
    per policy when several judged it."""
    policies = {p.ref: p for p in bundle.policies}
    parts: list[tuple[str, str]] = []
    for result in decision.results:
        policy = policies.get(result.policy)
        if result.bypass_reason:
            parts.append((result.policy, f"bypass: {result.bypass_reason}"))
        elif policy is not None:
            who = f": {', '.join(result.approvals)}" if result.approvals else ""
            parts.append(
                (result.policy, f"{len(result.approvals)} of {policy.required_approvals}{who}")
            )
    if not parts:
        return "approval"
    if len(parts) == 1:
        return f"approval ({parts[0][1]})"
    return f"approval ({'; '.join(f'{ref} {text}' for ref, text in parts)})"


def _templates(coverage: Any) -> str:
    count = len(coverage.templates)
    return f"{count} run template{'s' if count != 1 else ''}"


def _record_line(claim: Claim) -> str:
    """One record as signed: who decided what, for which environment, when."""
    from approvalgate.approvals import records
    from approvalgate.approvals.decide import shown_claim

    where = (
        f"for {claim.environment}"
        if claim.version == records.FORMAT_VERSION
        else f"(format v{claim.version}: no environment)"
    )
    return (
        f"{claim.decision} by {shown_claim(claim.approver)} {where}, issued "
        f"{records.format_time(claim.issued_at)}, expires {claim.expires_text}"
    )
