"""Decide every AgentRun in a manifest exactly as the admission webhook will.

Policies come from YAML (ApprovalPolicy and Approver files or folders, compiled in memory
the way `approvalgate compile` does, for the environment --env names) or from a compiled
bundle.json (its environment). Approval records count only in the environment they were
signed for. The run's namespace counts as enforced. Exit 0 when every run is admitted, 1
when one is denied, with every reason and the command that fixes it; 2 when the command line
is wrong or --cluster cannot be read.

Where the bundle has clusterView: required, the webhook also reads the approvals recorded in
the cluster. --cluster reads them too (once, from the API server); without it, verify decides
on the manifest alone and warns which checks it could not make.

A run whose spec holds characters a screen does not show (tag characters, bidi overrides,
zero-width or control characters: what a reviewer of the file cannot see and the agent
reads) is named on stderr with a warning; the decision does not change.

examples:
  approvalgate verify run.yaml --policies policies/ approvers/ --env prod --user requester
  approvalgate verify run.yaml --bundle rendered/prod/bundle.json --output json
  approvalgate verify run.yaml --bundle bundle.json --pod argocd-application-controller-0 \
      --user system:serviceaccount:argocd:argocd-application-controller
  approvalgate verify new.yaml --old live.yaml --operation UPDATE --bundle bundle.json
  approvalgate verify run.yaml --bundle rendered/prod/bundle.json --cluster --context prod
  approvalgate verify run.yaml --bundle /tmp/bundle.json --bundle-key release.pub

With --bundle, the bundle is used only when its signatures (bundle.sig.json beside it)
verify with the pinned keys, as the webhook does: --bundle-key, or else the bundleSigning
of the approvalgate.yaml of the repository the bundle is in (rendered/ENV/bundle.json). A
refused bundle (unsigned, signatures stripped, signed by another key or over other
content, below the threshold or the minimum revision) is exit 1 with the reason.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from approvalgate.batch import fewer_collections
from approvalgate.commands._args import (
    add_environment,
    add_manifest,
    add_namespace,
    add_now,
    add_policy_source,
)
from approvalgate.commands._bundle_trust import add_bundle_trust
from approvalgate.commands._view import add_cluster, load_view


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_manifest(parser)
    add_policy_source(parser)
    add_bundle_trust(parser)
    add_environment(
        parser,
        "the environment to decide in (required with --policies; with --bundle, the bundle's)",
    )
    parser.add_argument("--user", default="", help="the requester's username (userInfo.username)")
    parser.add_argument("--groups", default="", metavar="G,...", help="the requester's groups")
    parser.add_argument(
        "--pod",
        default="",
        metavar="NAME",
        help="the requester's token is bound to pod NAME (a ServiceAccount running in a pod; "
        "without it a ServiceAccount counts as impersonated or a minted token)",
    )
    parser.add_argument("--operation", choices=("CREATE", "UPDATE"), default="CREATE")
    parser.add_argument(
        "--old",
        metavar="OLD_MANIFEST",
        type=Path,
        help="the stored object(s) for --operation UPDATE, matched by name",
    )
    add_namespace(parser)
    add_now(parser)
    parser.add_argument("--output", choices=("text", "json", "junit"), default="text")
    add_cluster(parser)


@fewer_collections
def run(args: argparse.Namespace) -> int:
    from approvalgate import manifests, reports
    from approvalgate.approvals import hidden_text
    from approvalgate.approvals.decide import decide
    from approvalgate.approvals.errors import UsageError
    from approvalgate.approvals.identity import POD_NAME_EXTRA, POD_UID_EXTRA
    from approvalgate.commands._bundle_trust import decision_bundle

    if args.operation == "UPDATE" and args.old is None:
        raise UsageError("--operation UPDATE needs --old OLD_MANIFEST (the stored object)")
    now = manifests.parse_now(args.now)
    bundle = decision_bundle(args)
    text = manifests.read_manifest(args.manifest)
    runs = manifests.agent_runs(text, str(args.manifest), args.namespace)
    old_runs = {}
    if args.old is not None:
        old_text = manifests.read_manifest(args.old)
        old_runs = {r.ref: r for r in manifests.agent_runs(old_text, str(args.old), args.namespace)}
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    view = load_view(args, (r.namespace for r in runs))  # after every input error
    outcomes = []
    for run_ in runs:
        old = old_runs.get(run_.ref)
        if args.operation == "UPDATE" and old is None:
            raise UsageError(f"--old has no AgentRun {run_.ref}")
        request = manifests.request_for(run_, args.operation, args.user, groups, old)
        if args.pod:
            request["userInfo"]["extra"] = {
                POD_NAME_EXTRA: [args.pod],
                POD_UID_EXTRA: [f"verify --pod {args.pod}"],
            }
        outcomes.append((run_, decide(request, bundle, now, view)))
    for run_ in runs:  # what a reviewer of the file could not see (docs/queue-cli.md)
        for found in hidden_text.scan(f"AgentRun {run_.ref} spec", run_.obj.get("spec")):
            print(
                f"warning: {args.manifest}: {found.describe()}: a screen does not show these "
                "characters, the agent reads them",
                file=sys.stderr,
            )
    print(reports.render(outcomes, args.output, str(args.manifest), bundle.environment), end="")
    return 0 if all(d.allowed for _, d in outcomes) else 1
