"""Explain how the policies see each AgentRun in a manifest.

For every run: the environment it is judged in, which policies select it, what each
requires (approvals, approvers, TTL, rejection rule, bypass, trusted submitters,
ServiceAccount requesters, enforcement), and each approval record on the run (the
environment it names) with what became of it.

examples:
  approvalgate explain run.yaml --policies policies/ approvers/ --env prod
  approvalgate explain run.yaml --bundle rendered/prod/bundle.json
  approvalgate explain run.yaml --bundle rendered/prod/bundle.json --cluster
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from approvalgate.commands._args import (
    add_environment,
    add_manifest,
    add_namespace,
    add_now,
    add_policy_source,
)
from approvalgate.commands._view import add_cluster, load_view

if TYPE_CHECKING:
    from approvalgate.approvals.records import Claim


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_manifest(parser)
    add_policy_source(parser)
    add_environment(
        parser,
        "the environment to explain for (required with --policies; with --bundle, the bundle's)",
    )
    parser.add_argument("--user", default="", help="the requester's username")
    add_namespace(parser)
    add_now(parser, "as of this time")
    add_cluster(parser, "explain")


def run(args: argparse.Namespace) -> int:
    from approvalgate import manifests
    from approvalgate.approvals import records
    from approvalgate.approvals.bundle import Policy
    from approvalgate.approvals.decide import decide, matching_policies
    from approvalgate.approvals.durations import format_duration
    from approvalgate.policies import load_policies

    bundle = load_policies(args.policies, args.bundle, args.env)
    now = manifests.parse_now(args.now)
    text = manifests.read_manifest(args.manifest)
    lines: list[str] = []
    runs = manifests.agent_runs(text, str(args.manifest), args.namespace)
    view = load_view(args, (r.namespace for r in runs))

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

    for run_ in runs:
        request = manifests.request_for(run_, username=args.user)
        lines.append(f"AgentRun {run_.ref}")
        lines.append(f"  subject {run_.subject}")
        lines.append(f"  spec digest sha256:{run_.digest}")
        lines.append(f"  environment {bundle.environment}: records count only if they name it")
        annotation = (run_.obj.get("metadata") or {}).get("annotations") or {}
        parsed, problems = bundle.verifier.parse_annotation(annotation.get(records.ANNOTATION))
        found = [(r.index, _record_line(r.claim)) for r in parsed]
        found += [(p.index, p.message) for p in problems if p.index >= 0]
        lines.extend(f"  record {index}: {line}" for index, line in sorted(found))
        policies = matching_policies(request, bundle)
        if not policies:
            lines.append(f"  no policy selects it: unmatched runs are {bundle.no_match}ed")
        for policy in policies:
            describe(policy)
        decision = decide(request, bundle, now, view)
        for result in decision.results:
            lines.append(f"  {result.summary}: {result.outcome}")
            lines.extend(f"    {v.line()}" for v in result.records)
        verdict = "admitted" if decision.allowed else "denied"
        lines.append(f"  => {verdict} ({decision.reason})")
    print("\n".join(lines))
    return 0


def _record_line(claim: Claim) -> str:
    """One record as signed: who decided what, for which environment, when."""
    from approvalgate.approvals import records

    where = (
        f"for {claim.environment}"
        if claim.version == records.FORMAT_VERSION
        else f"(format v{claim.version}: no environment)"
    )
    return (
        f"{claim.decision} by {claim.approver} {where}, issued "
        f"{records.format_time(claim.issued_at)}, expires {claim.expires_text}"
    )
