"""Withdraw your approval of an ApprovalRequest: file a signed withdraw record.

A withdraw takes back every approve (and bypass) of the same approver issued before it
(before it was filed, where this machine's clock is behind the API server's); the request
goes back to waiting for approvals. It works like
`approvalgate approve --request`. Once the run has been created (phase Submitted) a
withdrawal changes nothing: delete the run instead.

examples:
  approvalgate withdraw --request agents/nightly-report --key bob.key --approver bob \\
      --reason "approved the wrong request"
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from approvalgate.commands.approve import add_request_arguments

    add_request_arguments(parser, "withdraw")


def run(args: argparse.Namespace) -> int:
    from approvalgate.commands.approve import decide_on_request

    return decide_on_request(args, "withdraw")
