"""Reject an ApprovalRequest: sign a reject record here and file it as an ApprovalDecision.

Works like `approvalgate approve --request` (the request is read from the cluster, its
digest checked, the record signed for its run and environment). A reason is required: the
requester reads it in `approvalgate status`. Where the matching policies say
rejection: veto, one reject ends the request (phase Rejected).

examples:
  approvalgate reject --request agents/nightly-report --key alice.key --approver alice \\
      --reason "touches the billing tables; split it"
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from approvalgate.commands.approve import add_request_arguments

    add_request_arguments(parser, "reject")


def run(args: argparse.Namespace) -> int:
    from approvalgate.approvals.errors import UsageError
    from approvalgate.commands.approve import decide_on_request

    if not args.reason.strip():
        raise UsageError("reject needs --reason: the requester must learn why")
    return decide_on_request(args, "reject")
