"""Audit a live cluster: runs that slipped past admission, and a gate that was weakened.

Admission only sees new requests. The audit reads what is stored, with the official
Kubernetes client (paginated lists, no watch), and compares it with git:

- every AgentRun in the enforced namespaces, decided by the same decide() as the webhook, as
  a CREATE of its current spec. Who created a run is not recorded on it, so runs are decided
  for an unknown requester; the recorded author annotation is used where present;
- the live ValidatingWebhookConfiguration against what the chart renders (--webhook-manifest,
  or the chart's defaults): drift that weakens the gate is a finding, harmless drift a note;
- the live ApprovalPolicy CRs against the compiled ones: missing, extra, changed;
- with --bundle-key (the keys the chart pins), the bundle's signatures: a bundle they refuse
  (unsigned, stripped, another key, below the threshold, other content, an older revision),
  in the --bundle file or the --bundle-configmap, is a finding with the reason.

Exit 1 on any finding or failing run, 0 otherwise (notes and warnings do not fail).
--write-reports server-side applies one PolicyReport (wgpolicyk8s.io/v1alpha2) per
namespace, named approvalgate-audit, with one result per AgentRun.

examples:
  approvalgate audit --repo . --env prod
  approvalgate audit --bundle rendered/prod/bundle.json --bundle-key bundle-signing/release.pub \\
      --bundle-configmap approvalgate-system/approvalgate-bundle
  approvalgate audit --bundle rendered/prod/bundle.json --context prod --write-reports
  helm template approvalgate charts/approvalgate -n approvalgate-system \\
      -f rendered/prod/approvalgate-values.yaml > expected.yaml
  approvalgate audit --repo . --env prod --webhook-manifest expected.yaml --output junit
"""

from __future__ import annotations

import argparse
from pathlib import Path

from approvalgate.commands._runtime_trust import add_bundle_trust


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument(
        "--kubeconfig",
        metavar="FILE",
        type=Path,
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the pod's service "
        "account in a cluster)",
    )
    cluster.add_argument("--context", metavar="NAME", help="kubeconfig context")
    cluster.add_argument(
        "--as",
        dest="as_user",
        metavar="USER",
        help="impersonate this user, e.g. system:serviceaccount:NS:NAME (needs the "
        "impersonate permission)",
    )
    cluster.add_argument(
        "--as-group", metavar="GROUP", action="append", default=[], help="impersonate a group"
    )
    cluster.add_argument(
        "--page-size", metavar="N", type=_positive, default=500, help="list page size (500)"
    )

    source = parser.add_argument_group("what git says (one of)")
    source.add_argument(
        "--bundle",
        metavar="FILE",
        type=Path,
        help="a compiled bundle.json (the ApprovalPolicies beside it, in "
        "approvalpolicies/, are compared when present)",
    )
    source.add_argument(
        "--repo", metavar="DIR", type=Path, help="a policy repo, compiled in memory"
    )
    source.add_argument("--env", metavar="ENV", help="the environment of --repo")

    scope = parser.add_argument_group("what to audit")
    scope.add_argument(
        "--namespace",
        metavar="NS",
        nargs="+",
        action="extend",
        default=[],
        help="only these namespaces (default: every namespace the environment enforces)",
    )
    scope.add_argument(
        "--webhook-manifest",
        metavar="FILE",
        type=Path,
        help="the chart's ValidatingWebhookConfiguration as rendered for this environment "
        "(`helm template` output; - for stdin); default: the chart's default values",
    )
    scope.add_argument(
        "--webhook-name",
        metavar="NAME",
        default="approvalgate",
        help="name of the live ValidatingWebhookConfiguration without --webhook-manifest "
        "(the release's full name; default approvalgate)",
    )
    scope.add_argument(
        "--bundle-configmap",
        metavar="NS/NAME",
        help="also check that the webhook's bundle ConfigMap holds this bundle, e.g. "
        "approvalgate-system/approvalgate-bundle",
    )
    scope.add_argument(
        "--expect-generation",
        metavar="GEN",
        help="fail unless the bundle has this generation (the CronJob passes the one the "
        "chart was rendered with)",
    )
    scope.add_argument("--now", metavar="RFC3339", help="decide as of this time (default: now)")
    add_bundle_trust(
        parser,
        signatures=False,
        description="With the keys the chart pins (bundleSigning.publicKeys), a bundle they "
        "refuse is a finding, with the reason: the --bundle file (its bundle.sig.json beside "
        "it; the chart's CronJob mounts the bundle ConfigMap there) and the "
        "--bundle-configmap's bundle.json and bundle.sig.json. Without keys the signatures "
        "are not checked (a note says so).",
        floor="the audit reports every subject that may update, patch or delete it (and so"
        " lower it), except that --bundle-floor-writer may update it",
    )
    parser.add_argument(
        "--bundle-floor-writer",
        metavar="USER",
        default="",
        help="the one identity that writes the --bundle-floor (default: the chart's"
        " controller, system:serviceaccount:NAMESPACE:approvalgate-controller), e.g."
        " system:serviceaccount:approvalgate-system:approvalgate-controller",
    )

    output = parser.add_argument_group("output")
    output.add_argument("--output", choices=("text", "json", "junit"), default="text")
    output.add_argument(
        "--write-reports",
        action="store_true",
        help="server-side apply one PolicyReport per namespace (field manager approvalgate-audit)",
    )
    output.add_argument(
        "--report-name",
        metavar="NAME",
        default="approvalgate-audit",
        help="name of the PolicyReports (default approvalgate-audit)",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from approvalgate.approvals.bundle_trust import trust_from_texts
    from approvalgate.approvals.errors import UsageError
    from approvalgate.audit import reports
    from approvalgate.audit.runner import Options, load_expectations, run_audit
    from approvalgate.commands._runtime_trust import trust_args
    from approvalgate.manifests import parse_now

    if args.bundle is not None and (args.repo is not None or args.env):
        raise UsageError("give either --bundle FILE or --repo DIR --env ENV, not both")
    if args.bundle is None and (args.repo is None or not args.env):
        raise UsageError(
            "say what git holds: --bundle FILE, or --repo DIR --env ENV",
            advice="e.g. approvalgate audit --repo . --env prod",
        )
    if args.bundle_configmap is not None and args.bundle_configmap.count("/") != 1:
        raise UsageError("--bundle-configmap takes NAMESPACE/NAME")
    if args.bundle_floor_writer and not args.bundle_floor:
        raise UsageError(
            "--bundle-floor-writer goes with --bundle-floor: it names who may raise the floor"
            " whose writers are audited",
            advice="add --bundle-floor NAMESPACE/NAME (the chart's: <release namespace>/"
            "approvalgate-bundle-floor), or drop --bundle-floor-writer",
        )
    trust = None
    if args.bundle_key or args.allow_unsigned_bundle:
        found = trust_args(args)
        trust = trust_from_texts(
            found.keys,
            threshold=found.threshold,
            min_revision=found.min_revision,
            allow_unsigned=found.allow_unsigned,
            environment=found.environment,
        )
    options = Options(
        trust=trust,
        now=parse_now(args.now),
        bundle=args.bundle,
        repo=args.repo,
        env=args.env,
        namespaces=tuple(args.namespace),
        webhook_manifest=args.webhook_manifest,
        webhook_name=args.webhook_name,
        bundle_configmap=args.bundle_configmap,
        bundle_floor=args.bundle_floor,
        floor_writer=args.bundle_floor_writer
        or f"system:serviceaccount:{args.bundle_floor.partition('/')[0]}:approvalgate-controller",
        expect_generation=args.expect_generation,
        write_reports=args.write_reports,
        report_name=args.report_name,
    )
    expectations = load_expectations(options, _compile_env)  # input errors before any network call

    from approvalgate.audit.cluster import Cluster

    with Cluster(
        args.kubeconfig,
        args.context,
        as_user=args.as_user,
        as_groups=args.as_group,
        page_size=args.page_size,
    ) as cluster:
        result = run_audit(cluster, options, expectations)
    print(reports.render(result, args.output), end="")
    return result.exit_code


def _compile_env(repo: Path, env: str) -> dict[str, str]:
    """One environment of a policy repo compiled in memory (nothing written)."""
    from approvalgate.compiler.pipeline import plan

    return dict(plan(repo, env).environments[env])
