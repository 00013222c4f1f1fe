"""What a transition says to the outside: an Event, a SignalDelivery, a chat message.

All pure builders: the controller sends them. Every transition of a request's phase gets a
Kubernetes Event (``events.k8s.io/v1``, ``regarding`` = the request) with the new phase as
``action``, the status reason as ``reason`` and the message as ``note``; optionally a
SignalDelivery of the upstream ``signals.proompteng.ai`` CRD (one per transition, named
from the request's uid and the phase, so a retry cannot deliver it twice); optionally a
Slack-compatible ``{"text": ..., "mrkdwn": false}`` for "needs you", "decided" and
"expiring" (:func:`chat_message`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from approvalgate.approvals import confusables, view
from approvalgate.approvals.hidden_text import one_line
from approvalgate.controller.reconcile import Transition

REPORTING_CONTROLLER: Final = "gates.proompteng.ai/approvalgate-controller"
NOTE_MAX_BYTES: Final = 1024  # events.k8s.io/v1 refuses a longer note
SIGNAL_API_VERSION: Final = "signals.proompteng.ai/v1alpha1"


def micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ref(request: Mapping[str, Any]) -> dict[str, str]:
    meta = request.get("metadata") or {}
    return {
        "apiVersion": view.API_VERSION,
        "kind": view.KINDS[view.REQUESTS],
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
        "uid": str(meta.get("uid") or ""),
    }


def _note(text: str) -> str:
    data = text.encode()
    if len(data) <= NOTE_MAX_BYTES:
        return text
    return data[: NOTE_MAX_BYTES - 3].decode("utf-8", "ignore") + "…"


def event(
    request: Mapping[str, Any], transition: Transition, now: datetime, instance: str
) -> dict[str, Any]:
    """The Event announcing ``transition`` of ``request``."""
    ref = _ref(request)
    old = transition.old or "(new)"
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"generateName": f"{ref['name'][:200]}-", "namespace": ref["namespace"]},
        "eventTime": micro_time(now),
        "reportingController": REPORTING_CONTROLLER,
        "reportingInstance": instance[:128] or "approvalgate-controller",
        "action": transition.new,
        "reason": transition.reason[:128] or transition.new,
        "note": _note(f"{old} -> {transition.new}: {transition.message}"),
        "type": transition.event_type,
        "regarding": ref,
    }


def signal_delivery(
    request: Mapping[str, Any],
    transition: Transition,
    status: Mapping[str, Any],
    signal: str,
) -> dict[str, Any]:
    """A SignalDelivery of signal ``signal`` carrying the transition (upstream CRD)."""
    ref = _ref(request)
    delivery = f"{ref['uid']}.{transition.new.lower()}"
    digest = hashlib.sha256(delivery.encode()).hexdigest()[:10]
    return {
        "apiVersion": SIGNAL_API_VERSION,
        "kind": "SignalDelivery",
        "metadata": {
            "name": f"approval-{ref['name'][:200]}-{transition.new.lower()}-{digest}",
            "namespace": ref["namespace"],
            "labels": {"gates.proompteng.ai/phase": transition.new},
        },
        "spec": {
            "signalRef": {"name": signal},
            "deliveryId": delivery,
            "payload": {
                "request": {"namespace": ref["namespace"], "name": ref["name"], "uid": ref["uid"]},
                "from": transition.old,
                "phase": transition.new,
                "reason": transition.reason,
                "message": transition.message,
                "approvedBy": list(status.get("approvedBy") or []),
                "rejectedBy": list(status.get("rejectedBy") or []),
                "eligible": list(status.get("eligible") or []),
                "run": dict(status.get("run") or {}),
            },
        },
    }


def _who(request: Mapping[str, Any]) -> str:
    meta = request.get("metadata") or {}
    spec = request.get("spec") or {}
    return (
        f"{meta.get('namespace')}/{meta.get('name')} "
        f"(requested by {confusables.shown(str(spec.get('requester') or 'unknown'))})"
    )


def needs_you(request: Mapping[str, Any], status: Mapping[str, Any]) -> ChatMessage:
    eligible = ", ".join(status.get("eligible") or []) or "nobody (no eligible approver left)"
    required = status.get("required") or 0
    approved = len(status.get("approvedBy") or [])
    reason = (request.get("spec") or {}).get("reason") or ""
    name = (request.get("metadata") or {}).get("name")
    namespace = (request.get("metadata") or {}).get("namespace")
    text = (
        f"Approval needed: AgentRun {_who(request)}; {approved}/{required} approvals. "
        f"Who may approve: {eligible}. Read it with `approvalgate status {namespace}/{name}` "
        f"(it prints a pin), then run `approvalgate approve --request {namespace}/{name} "
        "--expect PIN --key KEY`."
    )
    if reason:  # the requester's words: last, quoted, never before the gate's instructions
        text += f' The requester\'s reason: "{reason}"'
    return chat_message(text)


def decided(request: Mapping[str, Any], transition: Transition) -> ChatMessage:
    return chat_message(
        f"AgentRun {_who(request)} is {transition.new} ({transition.reason}): {transition.message}"
    )


def expiring(request: Mapping[str, Any], status: Mapping[str, Any]) -> ChatMessage:
    eligible = ", ".join(status.get("eligible") or []) or "nobody"
    return chat_message(
        f"Expiring soon: the approval request for AgentRun {_who(request)} expires at "
        f"{status.get('expiresAt')}; {len(status.get('approvedBy') or [])}/"
        f"{status.get('required') or 0} approvals. Who may approve: {eligible}."
    )


ChatMessage = dict[str, str | bool]
"""A Slack-compatible incoming-webhook payload."""


def chat_message(text: str) -> ChatMessage:
    """``text`` as one chat message that shows every character as it is stored.

    - ``"mrkdwn": false``: Slack has no escape for its emphasis marks, so a requester's
      reason holding ``*...*``, ``_..._``, ``~...~`` or backquotes would otherwise be shown
      in bold, italics or as code beside the gate's own words; with markup parsing off they
      show as typed. The gate's own texts use no markup (commands are set in backquotes,
      which then read as quotes).
    - :func:`approvals.hidden_text.one_line`: line breaks (``\\n``, U+2028, U+2029),
      bidi controls and other hidden characters are written as ``<U+XXXX>``, as ``status``
      and the console write them, so a reason cannot start a line of its own that reads
      as the gate's ("Approved by alice") or reorder what follows it. The gate's own texts
      hold none, so the whole text goes through it.
    - :func:`slack_text`: ``&``, ``<`` and ``>`` as entities (mentions, links).
    """
    return {"text": slack_text(one_line(text)), "mrkdwn": False}


_SLACK_ESCAPES: Final = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def slack_text(text: str) -> str:
    """``text`` as Slack shows it, and nothing more: ``<...>`` is Slack's control sequence
    (``<!channel>`` notifies everyone, ``<URL|label>`` shows a link under any label,
    ``<@U123>`` mentions), so ``&``, ``<`` and ``>`` are written as the entities Slack's
    message format asks for. The gate's own texts use none; a requester's reason, a name or
    a message quoting either can then only read as text."""
    return text.translate(_SLACK_ESCAPES)
