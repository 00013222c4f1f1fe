"""Explain how the policies see each AgentRun in a manifest.

For every run: which policies select it, what each requires (approvals, approvers, TTL,
rejection rule, bypass, trusted submitters, ServiceAccount requesters, enforcement), and
each approval record on the run with what became of it.

example:
  approvalgate explain run.yaml --policies policies/ approvers/
"""

from __future__ import annotations

import argparse

from approvalgate.commands._args import add_manifest, add_namespace, add_now, add_policy_source


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_manifest(parser)
    add_policy_source(parser)
    parser.add_argument("--user", default="", help="the requester's username")
    add_namespace(parser)
    add_now(parser, "as of this time")


def run(args: argparse.Namespace) -> int:
    from approvalgate import manifests
    from approvalgate.approvals.bundle import Policy
    from approvalgate.approvals.decide import decide, matching_policies
    from approvalgate.approvals.durations import format_duration
    from approvalgate.policies import load_policies

    bundle = load_policies(args.policies, args.bundle)
    now = manifests.parse_now(args.now)
    text = manifests.read_manifest(args.manifest)
    lines: list[str] = []

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

    for run_ in manifests.agent_runs(text, str(args.manifest), args.namespace):
        request = manifests.request_for(run_, username=args.user)
        lines.append(f"AgentRun {run_.ref}")
        lines.append(f"  subject {run_.subject}")
        lines.append(f"  spec digest sha256:{run_.digest}")
        policies = matching_policies(request, bundle)
        if not policies:
            lines.append(f"  no policy selects it: unmatched runs are {bundle.no_match}ed")
        for policy in policies:
            describe(policy)
        decision = decide(request, bundle, now)
        for result in decision.results:
            lines.append(f"  {result.summary}: {result.outcome}")
            lines.extend(f"    {v.line()}" for v in result.records)
        verdict = "admitted" if decision.allowed else "denied"
        lines.append(f"  => {verdict} ({decision.reason})")
    print("\n".join(lines))
    return 0
