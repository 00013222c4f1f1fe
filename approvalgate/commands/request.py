"""Ask for approval of the AgentRuns in a manifest: create one ApprovalRequest per run.

The manifest is read exactly as `approvalgate approve` reads it (kubectl's YAML rules,
checked against the AgentRun CRD) and its spec digest computed the same way. A run that has
only metadata.generateName gets its name now (generateName + 5 random characters, printed):
an approval names one run, and the request is named after it. spec.requester is your
username as the API server authenticates you (a SelfSubjectReview); the webhook refuses a
request made in someone else's name.

Approvers then see it in `approvalgate pending` and decide with
`approvalgate approve --request NS/NAME`; once enough have approved, the approvalgate
controller creates the run. Follow it with `approvalgate status NS/NAME`; take it back
with `approvalgate cancel NS/NAME`.

examples:
  approvalgate request run.yaml --env prod --reason "nightly report for finance"
  approvalgate request run.yaml --bundle rendered/prod/bundle.json -n agents -o json
  approvalgate request run.yaml --env prod --dry-run
"""

from __future__ import annotations

import argparse
import json
import sys

from approvalgate.commands._args import add_manifest
from approvalgate.commands._cluster import add_cluster, add_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_manifest(parser)
    parser.add_argument(
        "--reason",
        metavar="TEXT",
        default="",
        help="why the run is needed, shown to approvers (at most 1024 characters)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--env",
        metavar="NAME",
        help="the environment the run is for, as named in approvalgate.yaml",
    )
    source.add_argument(
        "--bundle",
        metavar="FILE",
        help="a compiled bundle.json: the request is for its environment",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        metavar="NS",
        help="namespace of runs that name none (default: the kubeconfig context's, as kubectl)",
    )
    add_cluster(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="let the API server judge the request (RBAC, schema, webhook) without storing it",
    )
    add_output(parser, "text", "json")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from approvalgate import manifests
    from approvalgate.approvals import reasons, records, view
    from approvalgate.approvals.errors import Finding, UsageError
    from approvalgate.commands import _cluster, _queue
    from approvalgate.kube import objects
    from approvalgate.kube.errors import KubeError
    from approvalgate.kube.resources import APPROVAL_REQUESTS
    from approvalgate.policies import bundle_environment, bundle_from_file, required_environment

    if len(args.reason) > _queue.REASON_MAX_CHARS:
        raise UsageError(f"--reason is {len(args.reason)} characters, over 1024")
    if reasons.visible_length(args.reason) != len(args.reason.replace(" ", "")):
        raise UsageError("--reason has invisible characters: approvers must see all of it")
    if args.bundle:
        path = Path(args.bundle)
        environment = bundle_environment(bundle_from_file(path), path, None)
    else:
        environment = required_environment(
            args.env, "request needs --env NAME (or --bundle): the request names its environment"
        )
    text = manifests.read_manifest(args.manifest)
    # the file is checked before any cluster access; the context's namespace is read only
    # when a run names none and -n is not given
    runs = manifests.agent_runs(text, str(args.manifest), args.namespace or "")
    namespace = args.namespace or ""
    if any(not run_.namespace for run_ in runs):
        namespace = _cluster.namespace_of(args, None)
        runs = manifests.agent_runs(text, str(args.manifest), namespace)
    for run_ in runs:
        if args.namespace and run_.namespace != args.namespace:
            raise run_.source.error(
                Finding(
                    ("metadata", "namespace"),
                    f"the run's namespace {run_.namespace} does not match -n {args.namespace}",
                    "drop -n, or fix metadata.namespace",
                )
            )
        annotations = (run_.obj.get("metadata") or {}).get("annotations") or {}
        for key in (view.REQUEST_UID_ANNOTATION, view.REQUEST_ANNOTATION):
            if key in annotations:
                raise run_.source.error(
                    Finding(
                        ("metadata", "annotations", key),
                        f"the run carries annotation {key}: the controller sets it on the run "
                        "it creates, and the webhook refuses a request that carries it",
                        "remove the annotation",
                    )
                )
        if run_.envelopes:
            print(
                f"note: AgentRun {run_.ref}: the approval records it carries are not copied "
                "into the request (approvers decide on the request)",
                file=sys.stderr,
            )
    with _cluster.connect(
        args,
        _cluster.rbac_advice(
            "create", APPROVAL_REQUESTS.plural, namespace, "approvalgate-requester"
        ),
    ) as client:
        requester = _cluster.whoami(client)
        created = []
        for run_ in runs:
            name = run_.name
            if not name:
                name = _queue.fixed_name(run_.generate_name)
                print(
                    f"note: AgentRun {run_.ref} has only generateName: named it {name} "
                    "(an approval names one run)",
                    file=sys.stderr,
                )
            obj = _queue.request_object(
                _without_records(run_.obj, records.ANNOTATION),
                name=name,
                namespace=run_.namespace,
                environment=environment,
                requester=requester,
                digest=run_.digest,
                reason=args.reason,
            )
            try:
                done = objects.create(
                    client, APPROVAL_REQUESTS, obj, run_.namespace, dry_run=args.dry_run
                )
            except KubeError as exc:
                raise _create_error(exc, run_.namespace, name) from exc
            created.append(done)
    if args.output == "json":
        print(json.dumps(created if len(created) != 1 else created[0], indent=2, sort_keys=True))
        return 0
    for done in created:
        item = _queue.summary(done)
        ref = f"{item['namespace']}/{item['name']}"
        verb = "would create" if args.dry_run else "created"
        print(
            f"{verb} ApprovalRequest {ref}: AgentRun spec sha256:{item['specDigest']} for "
            f"environment {item['environment']}, requested by {item['requester']}"
        )
        if not args.dry_run:
            print(
                f"  approvers: approvalgate status {ref} (the run, its content and a pin), "
                f"then approvalgate approve --request {ref} --expect PIN --key KEY "
                "--approver NAME\n"
                f"  follow it: approvalgate status {ref}"
            )
    return 0


def _without_records(obj: dict[str, object], annotation: str) -> dict[str, object]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or annotation not in (meta.get("annotations") or {}):
        return obj
    annotations = {k: v for k, v in meta["annotations"].items() if k != annotation}
    return {**obj, "metadata": {**meta, "annotations": annotations}}


def _create_error(exc: Exception, namespace: str, name: str) -> Exception:
    from approvalgate.approvals.errors import ApprovalgateError
    from approvalgate.commands._cluster import not_served
    from approvalgate.kube.errors import KubeError

    if isinstance(exc, KubeError) and exc.status == 409:
        return ApprovalgateError(
            f"an ApprovalRequest {namespace}/{name} exists already (one request per run name)",
            advice=f"see it with `approvalgate status {namespace}/{name}`, or rename the run "
            "(metadata.generateName gives a new name each time)",
        )
    if isinstance(exc, KubeError):
        return not_served(exc, "approvalrequests")
    return exc
