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

Then the run as the request embeds it and every ImplementationSpec, Agent and AgentProvider
an approval of it binds, whole (every line the requester wrote behind "|"), and a pin: 16
hex digits naming exactly that. `approvalgate approve --request NS/NAME --expect PIN` signs
only the request and content the pin names: a request made again under the name, or content
changed since, is refused, unsigned (-o json: .pin, .shown).

Exit 0 while the request can still succeed or has (New, Pending, Approved, Submitted),
1 when it cannot (Rejected, Expired, Cancelled, Failed): scripts can wait on it.

With KIND/NS/NAME (KIND: agentrun, schedule, orchestrationrun or swarm) it tells where an
object in the cluster stands instead: it is decided as the webhook would (the policies of
--bundle, or --policies with --env; the cluster's approvals, parents and content). A run a
platform controller created from a parent shows its chain, e.g.
  chain:   AgentRun agents/nightly-abc12 <- Schedule agents/nightly <- approval (2 of 2: alice, bob)
and what is missing: the parent, its approval records, its run-template annotation, content
changed since the approval ("ImplementationSpec agents/task-a changed since the approval").
Exit 0 when it would be admitted, 1 when not.

examples:
  approvalgate status agents/nightly-report
  approvalgate status agents/nightly-report -o json
  approvalgate status schedule/agents/nightly --bundle rendered/prod/bundle.json
  approvalgate status agentrun/agents/nightly-abc12 --bundle rendered/prod/bundle.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from approvalgate.commands._bundle_trust import add_bundle_trust
from approvalgate.commands._cluster import add_cluster, add_output

if TYPE_CHECKING:
    from approvalgate.approvals.errors import ApprovalgateError
    from approvalgate.commands.approve import Shown

OBJECT_KINDS = {
    "agentrun": "AgentRun",
    "schedule": "Schedule",
    "orchestrationrun": "OrchestrationRun",
    "swarm": "Swarm",
}
"""KIND of KIND/NS/NAME (also plural, any case) -> the kind."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "request",
        metavar="NS/NAME | KIND/NS/NAME",
        help="the ApprovalRequest (NAME: in the context's namespace); or an AgentRun, "
        "Schedule, OrchestrationRun or Swarm, e.g. schedule/agents/nightly",
    )
    add_output(parser, "text", "json")
    decided = parser.add_argument_group("with KIND/NS/NAME: the policies to decide with")
    source = decided.add_mutually_exclusive_group()
    source.add_argument("--bundle", metavar="FILE", type=Path, help="a compiled bundle.json")
    source.add_argument(
        "--policies",
        metavar="PATH",
        type=Path,
        nargs="+",
        help="ApprovalPolicy/Approver YAML files or folders (with --env)",
    )
    decided.add_argument("--env", metavar="NAME", help="the environment (with --policies)")
    decided.add_argument(
        "--user",
        default=None,
        help="who creates it (default for a run carrying a parent's label: the policies' "
        "first parents.creators; else nobody in particular)",
    )
    decided.add_argument("--now", metavar="RFC3339", help="decide as of this time")
    add_bundle_trust(parser)
    add_cluster(parser)


def run(args: argparse.Namespace) -> int:
    from approvalgate.approvals.records import now_utc
    from approvalgate.commands import _cluster, _queue
    from approvalgate.kube.errors import KubeError
    from approvalgate.kube.lists import list_all
    from approvalgate.kube.resources import APPROVAL_DECISIONS

    kind, _, rest = args.request.partition("/")
    if rest.count("/") == 1 and kind.lower().removesuffix("s") in OBJECT_KINDS:
        return object_status(args, OBJECT_KINDS[kind.lower().removesuffix("s")], rest)
    trust_flags = args.bundle_key or args.allow_unsigned_bundle or args.bundle_signatures
    if args.bundle or args.policies or args.env or args.user is not None or args.now or trust_flags:
        from approvalgate.approvals.errors import UsageError

        raise UsageError(
            "--bundle, --policies, --env, --user and --now are for KIND/NS/NAME",
            advice="e.g. approvalgate status schedule/agents/nightly --bundle bundle.json",
        )
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
        shown = read_shown(client, request, namespace)
        hidden = ""
        try:
            decisions = list_all(client, APPROVAL_DECISIONS, namespace).items
        except KubeError as exc:
            if exc.status != 403:
                raise _cluster.not_served(exc, APPROVAL_DECISIONS.plural) from exc
            decisions, hidden = [], exc.message
    item = _queue.summary(request)
    item["decisions"] = _queue.decisions_of(decisions, name, _cluster.CREATED_BY)
    item["pin"] = shown.pin
    item["shown"] = shown_json(shown)
    if hidden:
        item["decisionsHidden"] = hidden
        print(f"warning: decisions not shown: {hidden}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps(item, indent=2, sort_keys=True))
    else:
        print(render(item, now_utc(), shown), end="")
    return 0 if item["phase"] in _queue.OK_PHASES else 1


def read_shown(client: Any, request: Mapping[str, Any], namespace: str) -> Shown:
    """Request ``request`` with the content its run references, read now, and its pin:
    what ``approve|reject|withdraw --request --expect PIN`` checks it against."""
    from approvalgate.commands import _content, _queue
    from approvalgate.commands.approve import Shown

    run = (request.get("spec") or {}).get("run")
    reading = _content.read_run(
        client, namespace, run.get("spec") if isinstance(run, Mapping) else None
    )
    read = reading.objects
    return Shown(request, read, reading.unread, _queue.pin(request, read), reading.unread_all)


def shown_json(shown: Shown) -> dict[str, Any]:
    """What ``status -o json`` says of the run and its content (``shown``), beside its pin."""
    from approvalgate.approvals.digest import spec_digest

    spec = shown.request.get("spec") or {}
    return {
        "run": spec.get("run"),
        "content": [
            {
                "kind": str(obj.get("kind") or ""),
                "name": str((obj.get("metadata") or {}).get("name") or ""),
                "specDigest": spec_digest(obj.get("spec") or {}),
                "spec": obj.get("spec"),
            }
            for obj in shown.content
        ],
        "contentError": shown.unread.message if shown.unread is not None else "",
        "contentErrors": [error.message for error in _unread(shown)],
    }


def _unread(shown: Shown) -> tuple[ApprovalgateError, ...]:
    """Every error of reading ``shown``'s content (a Shown made without the list: its one)."""
    if shown.unread_all:
        return shown.unread_all
    return (shown.unread,) if shown.unread is not None else ()


def shown_text(shown: Shown) -> str:
    """The run as the request embeds it and the content it references, every line of
    them behind ``|`` (nothing the requester wrote reads as a line of ours), then the pin
    and how to use it. Hidden characters are written as ``<U+XXXX>``; nothing is cut."""
    from approvalgate.approvals.digest import spec_digest
    from approvalgate.approvals.hidden_text import one_line
    from approvalgate.commands._queue import shown_identity

    meta = shown.request.get("metadata") or {}
    spec = shown.request.get("spec") or {}
    ref = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    run = spec.get("run") if isinstance(spec.get("run"), Mapping) else {}
    digest = spec_digest((run or {}).get("spec") or {})
    claimed = one_line(str(spec.get("specDigest") or "(none)"))
    lines = [
        f"ApprovalRequest {one_line(ref)} (uid {one_line(str(meta.get('uid') or '?'))}), "
        f"for environment {one_line(str(spec.get('environment') or '-'))}, requested by "
        f"{shown_identity(str(spec.get('requester') or '-'))}",
        f"  the run an approval signs (spec sha256:{digest}):",
        *quoted(spec.get("run")),
    ]
    if claimed != digest:
        lines.append(
            f"  its spec.specDigest {claimed} is not the digest of this run: approve refuses it"
        )
    for obj in shown.content:
        kind = one_line(str(obj.get("kind") or ""))
        name = one_line(str((obj.get("metadata") or {}).get("name") or ""))
        lines.append(
            f"  it binds {kind} {one_line(str(meta.get('namespace') or ''))}/{name} spec "
            f"sha256:{spec_digest(obj.get('spec') or {})}:"
        )
        lines.extend(quoted(obj.get("spec")))
    hints: list[str] = []
    for error in _unread(shown):
        lines.append(f"  its content could not be read: {one_line(error.message)}")
        if error.advice and one_line(error.advice) not in hints:
            hints.append(one_line(error.advice))
    lines.extend(f"  hint: {hint}" for hint in hints)
    lines.append(f"  pin:           {shown.pin}")
    return "\n".join(lines) + "\n"


def quoted(value: object) -> list[str]:
    """``value`` as YAML (text of several lines as a block, line for line), each line
    behind ``    | ``, hidden characters escaped."""
    import yaml

    from approvalgate.approvals.hidden_text import escaped

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    Dumper.add_representer(str, text)
    dumped = yaml.dump(value, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)
    return [f"    | {escaped(line)}" for line in dumped.splitlines()]


def render(item: Mapping[str, Any], now: Any, shown: Shown | None = None) -> str:
    """The text form: one fact per line, then the decisions as a table, then (``shown``)
    the run and the content an approval signs, and the pin. What others wrote (reasons,
    messages) never reaches the terminal as escape codes, bidi controls or line breaks:
    such characters are written as ``<U+XXXX>``."""
    from approvalgate.commands._queue import age, phase_text, shown_identity, table

    ref = f"{item['namespace']}/{item['name']}"
    phase = phase_text(item)
    why = f" ({item['statusReason']})" if item["statusReason"] else ""
    lines = [f"ApprovalRequest {ref}: {phase}{why}"]
    if item["message"]:
        lines.append(f"  message:       {item['message']}")
    lines.append(
        f"  requester:     {shown_identity(item['requester']) if item['requester'] else '-'}"
    )
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
    text = "\n".join(_one_line(line) for line in lines) + "\n"
    if shown is not None:
        text += shown_text(shown)
    hint = _next_step(item)
    return text + (_one_line(hint) + "\n" if hint else "")


def _one_line(line: str) -> str:
    from approvalgate.approvals.hidden_text import one_line

    return one_line(line)


def _next_step(item: Mapping[str, Any]) -> str:
    ref = f"{item['namespace']}/{item['name']}"
    pin = f" --expect {item['pin']}" if item.get("pin") else ""
    if not item["phase"] and not item["cancelled"]:
        return (
            "next: the approvalgate controller has not evaluated it yet (is it running?); "
            f"approvers can already decide: approvalgate approve --request {ref}{pin}"
        )
    if item["phase"] == "Pending":
        return f"next: approvalgate approve --request {ref}{pin} --key KEY --approver NAME"
    if item["phase"] == "Failed":
        return (
            "next: fix what the message says, then request again (docs/queue.md, "
            '"When a request is Failed")'
        )
    return ""


def object_status(args: argparse.Namespace, kind: str, ref: str) -> int:
    """Where the AgentRun, Schedule, OrchestrationRun or Swarm ``ref`` (NS/NAME) stands:
    decided as the webhook would, with its chain and what is missing."""
    from approvalgate import manifests
    from approvalgate.approvals.decide import decide, matching_policies
    from approvalgate.approvals.errors import ApprovalgateError, UsageError
    from approvalgate.commands import _cluster, _parents, _view
    from approvalgate.commands._bundle_trust import decision_bundle
    from approvalgate.commands.explain import approval_text, chain_lines, derived
    from approvalgate.kube import objects
    from approvalgate.kube.errors import KubeError

    if not args.bundle and not args.policies:
        raise UsageError(
            f"status {kind.lower()}/{ref} decides as the webhook would: it needs the "
            "policies, --bundle FILE (or --policies PATH --env NAME)",
            advice=f"approvalgate status {kind.lower()}/{ref} --bundle rendered/ENV/bundle.json",
        )
    namespace, name = _cluster.request_ref(ref, "KIND/NS/NAME")
    assert namespace is not None  # KIND/NS/NAME names it
    bundle = decision_bundle(args)
    now = manifests.parse_now(args.now)
    resource = _view.resources()[kind]
    advice = f"you need get on {resource.plural}.{resource.group} in namespace {namespace}"
    with _cluster.connect(args, advice) as client:
        try:
            found = objects.get(client, resource, name, namespace)
        except KubeError as exc:
            raise _cluster.platform_not_served(exc, resource.plural, resource.group) from exc
    if found is None:
        raise ApprovalgateError(f"{kind} {namespace}/{name} not found in the cluster")
    found = {**found, "kind": kind}
    text = json.dumps(found, ensure_ascii=False)  # YAML reads no JSON surrogate pair
    cluster = argparse.Namespace(cluster=True, kubeconfig=args.kubeconfig, context=args.context)
    view = _view.load_view(cluster, [namespace])
    if kind == "AgentRun":
        (run_,) = manifests.agent_runs(text, f"AgentRun {namespace}/{name}", namespace)
        user = args.user
        request = manifests.request_for(run_, username=user or "")
        assumed = user is None and derived(found)
        if assumed:
            creators = [c for p in matching_policies(request, bundle) for c in p.parent_creators]
            user = creators[0].replace("{namespace}", namespace) if creators else ""
            request = manifests.request_for(run_, username=user)
        decision = decide(request, bundle, now, view)
    else:
        (parent,) = _parents.read(text, f"{kind} {namespace}/{name}", namespace)
        user, assumed = args.user or "", False
        decision = decide(_parents.request_for(parent, user), bundle, now, view)
    item = {
        "kind": kind,
        "namespace": namespace,
        "name": name,
        "environment": bundle.environment,
        "user": user or "",
        "allowed": decision.allowed,
        "reason": decision.reason,
        "message": decision.message,
        "chain": list(decision.chain),
        "approval": approval_text(decision, bundle) if decision.chain else "",
        "policies": list(decision.policies),
    }
    if args.output == "json":
        print(json.dumps(item, indent=2, sort_keys=True))
    else:
        verdict = "would be admitted" if decision.allowed else "would be denied"
        lines = [
            f"{kind} {namespace}/{name}: {verdict} in {bundle.environment} ({decision.reason})"
        ]
        if user:
            why = " (assumed: its policies' parents.creators; --user says another)"
            lines.append(f"  created by:  {user}{why if assumed else ''}")
        lines.extend(
            line.replace("  chain: ", "  chain:   ", 1) for line in chain_lines(decision, bundle)
        )
        if not decision.chain and not decision.allowed and decision.message:
            first, *rest = decision.message.splitlines()
            lines.append(f"  message: {first}")
            lines.extend(f"    {line}" for line in rest)
        print("\n".join(lines))
    return 0 if decision.allowed else 1
