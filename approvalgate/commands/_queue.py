"""The approval queue's objects as the CLI writes and shows them (no I/O here).

- :func:`request_object` / :func:`decision_object`: the ApprovalRequest a requester creates
  and the ApprovalDecision an approver creates (shapes: docs/queue.md, the chart's CRDs);
- :func:`summary`: what ``pending`` and ``status`` say about a request, read from its status
  (written by the controller only) with its spec;
- :func:`table`: aligned columns, as kubectl prints them;
- :func:`pin`: a short digest of a request as shown (its uid, spec and the content its run
  references), which ``approve|reject|withdraw --request --expect`` (and the console's
  buttons) check before signing.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from approvalgate.approvals import records, view
from approvalgate.approvals.hidden_text import one_line

NAME_SUFFIX_ALPHABET: Final = string.ascii_lowercase + string.digits
NAME_SUFFIX_LENGTH: Final = 5
MAX_GENERATED_PREFIX: Final = 63 - NAME_SUFFIX_LENGTH  # as the API server truncates
REASON_MAX_CHARS: Final = 1024
PIN_CHARS: Final = 16
"""Hex digits of a pin: 64 bits, so that nobody finds a second request (or content) with
the pin an approver was shown, even offline where the request could be updated in place."""
OK_PHASES: Final = frozenset({"", "Pending", "Approved", "Submitted"})
"""``status`` exits 0 in these phases ("" = not evaluated yet), 1 in the others."""


def fixed_name(generate_name: str) -> str:
    """``generateName`` + 5 random ``[a-z0-9]``, the prefix cut as the API server cuts it."""
    suffix = "".join(secrets.choice(NAME_SUFFIX_ALPHABET) for _ in range(NAME_SUFFIX_LENGTH))
    return generate_name[:MAX_GENERATED_PREFIX] + suffix


def request_object(
    run: Mapping[str, Any],
    *,
    name: str,
    namespace: str,
    environment: str,
    requester: str,
    digest: str,
    reason: str,
) -> dict[str, Any]:
    """The ApprovalRequest for AgentRun ``run`` (named ``name``), minus its namespace."""
    meta = run.get("metadata") or {}
    run_meta: dict[str, Any] = {"name": name}
    for field in ("labels", "annotations"):
        value = meta.get(field)
        if isinstance(value, Mapping) and value:
            run_meta[field] = dict(value)
    spec: dict[str, Any] = {
        "requester": requester,
        "environment": environment,
        "specDigest": digest,
        "cancelled": False,
        "run": {
            "apiVersion": run.get("apiVersion"),
            "kind": run.get("kind"),
            "metadata": run_meta,
            "spec": run.get("spec"),
        },
    }
    if reason:
        spec["reason"] = reason
    return {
        "apiVersion": view.API_VERSION,
        "kind": view.KINDS[view.REQUESTS],
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def decision_object(
    *,
    request: str,
    namespace: str,
    decision: str,
    approver: str,
    envelope: Mapping[str, Any],
    created_by: str,
    created_by_annotation: str,
) -> dict[str, Any]:
    """The ApprovalDecision carrying one signed record about request ``namespace/request``."""
    return {
        "apiVersion": view.API_VERSION,
        "kind": view.KINDS[view.DECISIONS],
        "metadata": {
            "generateName": f"{request[: MAX_GENERATED_PREFIX - 1]}-",
            "namespace": namespace,
            "annotations": {created_by_annotation: created_by},
        },
        "spec": {
            "requestName": request,
            "decision": decision,
            "approver": approver,
            "record": dict(envelope),
        },
    }


# --- reading a request ------------------------------------------------------------------


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def summary(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What the CLI shows of an ApprovalRequest (JSON-ready, stable keys)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    run = status.get("run") if isinstance(status.get("run"), Mapping) else None
    required = status.get("required")
    return {
        "namespace": _text(meta.get("namespace")),
        "name": _text(meta.get("name")),
        "uid": _text(meta.get("uid")),
        "created": _text(meta.get("creationTimestamp")),
        "requester": _text(spec.get("requester")),
        "environment": _text(spec.get("environment")),
        "reason": _text(spec.get("reason")),
        "specDigest": _text(spec.get("specDigest")),
        "cancelled": spec.get("cancelled") is True,
        "phase": _text(status.get("phase")),
        "statusReason": _text(status.get("reason")),
        "message": _text(status.get("message")),
        "required": required if isinstance(required, int) else None,
        "approvedBy": _strings(status.get("approvedBy")),
        "rejectedBy": _strings(status.get("rejectedBy")),
        "withdrawnBy": _strings(status.get("withdrawnBy")),
        "eligible": _strings(status.get("eligible")),
        "expiresAt": _text(status.get("expiresAt")),
        "decidedAt": _text(status.get("decidedAt")),
        "submittedAt": _text(status.get("submittedAt")),
        "run": {"name": _text(run.get("name")), "uid": _text(run.get("uid"))} if run else None,
    }


def is_pending(item: Mapping[str, Any]) -> bool:
    """Waiting for approvers: phase Pending, or not evaluated yet (no status), not cancelled."""
    return item["phase"] in ("", "Pending") and not item["cancelled"]


def decision_summary(obj: Mapping[str, Any], created_by_annotation: str) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    annotations = meta.get("annotations") or {}
    expires = ""
    envelope = spec.get("record")
    if isinstance(envelope, Mapping):
        parsed, _ = records.parse_annotation(json.dumps([envelope]))
        if parsed:
            expires = parsed[0].claim.expires_text
    version = _text(meta.get("resourceVersion"))
    return {
        "name": _text(meta.get("name")),
        "order": int(version) if version.isdigit() else 0,
        "decision": _text(spec.get("decision")),
        "approver": _text(spec.get("approver")),
        "created": _text(meta.get("creationTimestamp")),
        "createdBy": _text(annotations.get(created_by_annotation)),
        "expiresAt": expires,
    }


def decisions_of(
    objects: Iterable[Mapping[str, Any]], request: str, created_by_annotation: str
) -> list[dict[str, Any]]:
    """The decisions about ``request`` (same namespace), oldest first: by creation time (in
    seconds), then by resourceVersion, which etcd hands out in write order (the objects are
    never updated), then by name."""
    mine = [o for o in objects if (o.get("spec") or {}).get("requestName") == request]
    found = [decision_summary(o, created_by_annotation) for o in mine]
    found.sort(key=lambda d: (d["created"], d["order"], d["name"]))
    for item in found:
        del item["order"]
    return found


# --- what an approver read ---------------------------------------------------------------


def pin(request: Mapping[str, Any], objects: Iterable[Mapping[str, Any]]) -> str:
    """The pin of ApprovalRequest ``request`` as shown with the content ``objects`` (the
    ImplementationSpecs, Agents and AgentProviders read for it): the first
    :data:`PIN_CHARS` hex digits of the sha256 of its namespace, name, uid, spec (but for
    ``cancelled``, the one field that changes) and the digest of every object its run
    references, as an approval would bind them (absent ones left out). Another request made
    under the name, or a request or content changed since, has another pin."""
    from approvalgate.approvals import content
    from approvalgate.approvals.errors import ApprovalgateError
    from approvalgate.approvals.view import StaticView

    meta = request.get("metadata") or {}
    spec = {k: v for k, v in (request.get("spec") or {}).items() if k != "cancelled"}
    run = spec.get("run") if isinstance(spec.get("run"), Mapping) else {}
    namespace = _text(meta.get("namespace"))
    try:
        refs = content.refs((run or {}).get("spec"))
    except ApprovalgateError:  # names the platform would not read: nothing to bind
        refs = ()
    bound = content.binding(refs, namespace, StaticView.build(objects=objects))
    body = {
        "namespace": namespace,
        "name": _text(meta.get("name")),
        "uid": _text(meta.get("uid")),
        "spec": spec,
        "content": dict(sorted(bound.items())),
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:PIN_CHARS]


def shown_identity(username: str) -> str:
    """A username as approvers read it (``status``, ``pending``, the console): itself, and
    where it is not printable ASCII its escaped form too, every character named
    (:func:`approvals.confusables.shown`), so ``bоb`` with a Cyrillic ``о`` never reads as
    ``bob``."""
    from approvalgate.approvals.confusables import shown

    return one_line(shown(username))


# --- showing ----------------------------------------------------------------------------


def age(timestamp: str, now: datetime) -> str:
    """``3d4h``, ``5m``, ``12s`` since ``timestamp`` (or until it: ``in 2h``); ``-`` if none."""
    if not timestamp:
        return "-"
    try:
        moment = records.parse_time(timestamp)
    except ValueError:
        return "?"
    seconds = int((now - moment).total_seconds())
    text = _span(abs(seconds))
    return text if seconds >= 0 else f"in {text}"


def _span(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def approvals_text(item: Mapping[str, Any]) -> str:
    """``1/2`` (approvals counted / required); ``-`` before the controller evaluated it."""
    if item["required"] is None:
        return "-"
    return f"{len(item['approvedBy'])}/{item['required']}"


def phase_text(item: Mapping[str, Any]) -> str:
    if item["phase"]:
        return str(item["phase"])
    return "Cancelled?" if item["cancelled"] else "New"


def pending_row(item: Mapping[str, Any], now: datetime, all_namespaces: bool) -> list[str]:
    row = [item["namespace"]] if all_namespaces else []
    row += [
        item["name"],
        shown_identity(item["requester"]) if item["requester"] else "-",
        item["environment"] or "-",
        phase_text(item),
        approvals_text(item),
        ",".join(item["eligible"]) or "-",
        age(item["expiresAt"], now) if item["expiresAt"] else "-",
        age(item["created"], now),
    ]
    return row


PENDING_HEADER: Final = (
    "NAME",
    "REQUESTER",
    "ENVIRONMENT",
    "PHASE",
    "APPROVED",
    "MAY-APPROVE",
    "EXPIRES",
    "AGE",
)


def pending_header(all_namespaces: bool) -> list[str]:
    return (["NAMESPACE"] if all_namespaces else []) + list(PENDING_HEADER)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart (kubectl's layout); a
    character that would hide or reorder text on a terminal, or break the line, is written
    as ``<U+XXXX>``."""
    header = [one_line(c) for c in header]
    rows = [[one_line(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in (header, *rows)
    ]
    return "\n".join(lines) + "\n"
