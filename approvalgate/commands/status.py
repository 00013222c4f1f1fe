"""Where an ApprovalRequest stands: its phase and why, who approved, rejected or withdrew,
who may still approve and how many approvals it needs, when it expires, the run created
from it, and every ApprovalDecision filed about it (approver, decision, when, and the user
who created it).

The phase comes from the request's status, which only the approvalgate controller writes:
  New        not evaluated yet (no status: is the controller running?)
  Pending    waiting for approvals            Approved   quorum reached, run being created
  Submitted  the run exists (status.run)      Rejected   a reject vetoed it
  Expired    no quorum in time                Cancelled  the requester cancelled it
  Failed     the run could not be created (the message says why)

Exit 0 while the request can still succeed or has (New, Pending, Approved, Submitted),
1 when it cannot (Rejected, Expired, Cancelled, Failed): scripts can wait on it.

examples:
  approvalgate status agents/nightly-report
  approvalgate status agents/nightly-report -o json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from approvalgate.commands._cluster import add_cluster, add_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "request", metavar="NS/NAME", help="the ApprovalRequest (NAME: in the context's namespace)"
    )
    add_output(parser, "text", "json")
    add_cluster(parser)


def run(args: argparse.Namespace) -> int:
    from approvalgate.approvals.records import now_utc
    from approvalgate.commands import _cluster, _queue
    from approvalgate.kube.errors import KubeError
    from approvalgate.kube.lists import list_all
    from approvalgate.kube.resources import APPROVAL_DECISIONS

    given, name = _cluster.request_ref(args.request, "NS/NAME")
    namespace = _cluster.namespace_of(args, given)
    advice = _cluster.rbac_advice(
        "get on approvalrequests and list on approvaldecisions",
        "approvalrequests",
        namespace,
        "approvalgate-approver (or -requester)",
    )
    with _cluster.connect(args, advice) as client:
        request = _cluster.get_request(client, namespace, name)
        hidden = ""
        try:
            decisions = list_all(client, APPROVAL_DECISIONS, namespace).items
        except KubeError as exc:
            if exc.status != 403:
                raise _cluster.not_served(exc, APPROVAL_DECISIONS.plural) from exc
            decisions, hidden = [], exc.message
    item = _queue.summary(request)
    item["decisions"] = _queue.decisions_of(decisions, name, _cluster.CREATED_BY)
    if hidden:
        item["decisionsHidden"] = hidden
        print(f"warning: decisions not shown: {hidden}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps(item, indent=2, sort_keys=True))
    else:
        print(render(item, now_utc()), end="")
    return 0 if item["phase"] in _queue.OK_PHASES else 1


def render(item: Mapping[str, Any], now: Any) -> str:
    """The text form: one fact per line, then the decisions as a table."""
    from approvalgate.commands._queue import age, phase_text, table

    ref = f"{item['namespace']}/{item['name']}"
    phase = phase_text(item)
    why = f" ({item['statusReason']})" if item["statusReason"] else ""
    lines = [f"ApprovalRequest {ref}: {phase}{why}"]
    if item["message"]:
        lines.append(f"  message:       {item['message']}")
    lines.append(f"  requester:     {item['requester'] or '-'}")
    if item["reason"]:
        lines.append(f"  reason:        {item['reason']}")
    lines.append(f"  environment:   {item['environment'] or '-'}")
    lines.append(f"  spec:          sha256:{item['specDigest']}")
    required = item["required"]
    if required is None:
        lines.append("  approvals:     not evaluated yet")
    else:
        who = ", ".join(item["approvedBy"]) or "nobody yet"
        lines.append(f"  approvals:     {len(item['approvedBy'])} of {required} ({who})")
    if item["rejectedBy"]:
        lines.append(f"  rejected by:   {', '.join(item['rejectedBy'])}")
    if item["withdrawnBy"]:
        lines.append(f"  withdrawn by:  {', '.join(item['withdrawnBy'])}")
    if required is not None and item["phase"] in ("Pending", ""):
        lines.append(f"  may approve:   {', '.join(item['eligible']) or 'nobody (no one left)'}")
    if item["expiresAt"]:
        lines.append(f"  expires:       {item['expiresAt']} ({age(item['expiresAt'], now)})")
    if item["cancelled"]:
        lines.append("  cancelled:     yes (by the requester)")
    run = item["run"]
    if run:
        lines.append(
            f"  run:           AgentRun {item['namespace']}/{run['name']} (uid {run['uid']})"
        )
    else:
        lines.append("  run:           not created")
    decisions = item["decisions"]
    if item.get("decisionsHidden"):
        lines.append("decisions: not shown (you may not list approvaldecisions here)")
    elif decisions:
        lines.append(f"decisions ({len(decisions)}):")
        rows = [
            [
                d["name"],
                d["decision"],
                d["approver"],
                d["created"] or "-",
                d["createdBy"] or "-",
                d["expiresAt"] or "-",
            ]
            for d in decisions
        ]
        header = ["NAME", "DECISION", "APPROVER", "CREATED", "CREATED-BY", "EXPIRES"]
        lines += ["  " + line for line in table(header, rows).splitlines()]
    else:
        lines.append("decisions: none yet")
    hint = _next_step(item)
    if hint:
        lines.append(hint)
    return "\n".join(lines) + "\n"


def _next_step(item: Mapping[str, Any]) -> str:
    ref = f"{item['namespace']}/{item['name']}"
    if not item["phase"] and not item["cancelled"]:
        return (
            "next: the approvalgate controller has not evaluated it yet (is it running?); "
            f"approvers can already decide: approvalgate approve --request {ref}"
        )
    if item["phase"] == "Pending":
        return f"next: approvalgate approve --request {ref} --key KEY --approver NAME"
    if item["phase"] == "Failed":
        return (
            "next: fix what the message says, then request again (docs/queue.md, "
            '"When a request is Failed")'
        )
    return ""
