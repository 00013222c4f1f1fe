"""Cancel your ApprovalRequest: set spec.cancelled to true (a JSON merge patch).

Only the requester may (the webhook checks it; this command says so first), and only while
no run has been created: cancelling is final, the controller marks the request Cancelled
and creates nothing. Exit 0 when the request is cancelled (or already was), 1 when it is
decided already or you are not its requester.

examples:
  approvalgate cancel agents/nightly-report
"""

from __future__ import annotations

import argparse

from approvalgate.commands._cluster import add_cluster


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "request", metavar="NS/NAME", help="the ApprovalRequest (NAME: in the context's namespace)"
    )
    add_cluster(parser)


def run(args: argparse.Namespace) -> int:
    import sys

    from approvalgate.approvals.errors import ApprovalgateError
    from approvalgate.approvals.queue import TERMINAL
    from approvalgate.commands import _cluster, _queue
    from approvalgate.kube import objects
    from approvalgate.kube.resources import APPROVAL_REQUESTS

    given, name = _cluster.request_ref(args.request, "NS/NAME")
    namespace = _cluster.namespace_of(args, given)
    ref = f"{namespace}/{name}"
    advice = _cluster.rbac_advice(
        "get and patch", APPROVAL_REQUESTS.plural, namespace, "approvalgate-requester"
    )
    with _cluster.connect(args, advice) as client:
        item = _queue.summary(_cluster.get_request(client, namespace, name))
        if item["cancelled"]:
            print(f"ApprovalRequest {ref} is cancelled already", file=sys.stderr)
            return 0
        if item["phase"] in TERMINAL:
            raise ApprovalgateError(
                f"ApprovalRequest {ref} is {item['phase']} already: there is nothing to cancel",
                advice="delete the run if it was created (approvalgate status tells)"
                if item["phase"] == "Submitted"
                else "",
            )
        me = _cluster.whoami(client)
        if me != item["requester"]:
            raise ApprovalgateError(
                f"only the requester ({item['requester']}) may cancel ApprovalRequest {ref}; "
                f"you are {me}",
                advice="an approver who disagrees files a reject: approvalgate reject --request "
                f"{ref} --key KEY --approver NAME --reason TEXT",
            )
        objects.merge_patch(
            client, APPROVAL_REQUESTS, name, namespace, {"spec": {"cancelled": True}}
        )
    print(f"cancelled ApprovalRequest {ref}: no run will be created from it")
    return 0
