"""The rules for the approval queue's own kinds (``gates.proompteng.ai``), part of decide().

- **ApprovalRequest**: created by its requester only (``spec.requester`` is the authenticated
  user), for this bundle's environment, naming the run it carries (metadata.name is the
  run's name), with the digest of exactly that spec. Its spec never changes afterwards,
  except that the requester may cancel it. Status is the controller's (the status
  subresource, allowed here; RBAC decides who may write it).
- **ApprovalDecision**: one signed record, verified against the bundle when it is created,
  and created by the approver it names (the user is one of that approver's usernames).
  Append-only: its spec never changes, and it is deleted only once its record has expired.
- **ApprovalUse**: the consumption ledger. Anyone allowed by RBAC may create one (a use can
  only make approvals count less, and keep the content it binds unchanged until it
  expires); its ``spec.references`` must be well formed; its spec never changes, and it is
  deleted only after the records it lists have expired.

The namespace controller (deleting a namespace) may delete decisions and uses at any time:
otherwise a namespace could not be deleted before its records expire.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from approvalgate.approvals import content, parents, reasons, records, references
from approvalgate.approvals.admission import AGENTS_GROUP
from approvalgate.approvals.bundle import Bundle
from approvalgate.approvals.decide import (
    Decision,
    _allow,
    _deny,
    longest_lifetime,
    moment_after,
    reject_holds_until,
    said_at,
)
from approvalgate.approvals.errors import DigestError
from approvalgate.approvals.view import (
    DECISIONS,
    KINDS,
    REQUEST_ANNOTATION,
    REQUEST_UID_ANNOTATION,
    REQUESTS,
    USES,
    ClusterView,
    api_time,
)

NAMESPACE_CONTROLLER: Final = frozenset(
    {"system:serviceaccount:kube-system:namespace-controller", "system:kube-controller-manager"}
)
"""Who deletes everything in a namespace being deleted (kube-controller-manager)."""
REASON_MAX_CHARS: Final = 1024
ANNOTATIONS_MAX_BYTES: Final = 256 * 1024
"""Kubernetes' own bound on an object's annotations (keys and values, in bytes), which the
run a request carries must keep to be created."""
MAX_PENDING_REQUESTS: Final = 256
"""Pending ApprovalRequests one requester may hold in one namespace
(:func:`approvals.view.is_pending`): the controller reconciles each on every decision and
timer, approvers page through them, and every webhook worker holds them; a requester filing
thousands would slow the queue for everyone. Counted by the view in O(1) per admission; past
it her next CREATE there is denied, naming the bound: nobody else's."""
MAX_USE_REFERENCES: Final = 256
_REFERENCE_KEY: Final = re.compile(
    f"({'|'.join(content.KINDS)})/"
    r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
CREATED_BY_ANNOTATION: Final = "gates.proompteng.ai/created-by"
"""Who created an ApprovalDecision (the API server records no creator): optional, and when
present it must be the creating user, and it never changes."""


def decide_gates(
    request: Mapping[str, Any], bundle: Bundle, now: datetime, view: ClusterView | None
) -> Decision:
    """decide() for ApprovalRequests, ApprovalDecisions and ApprovalUses."""
    resource = request.get("resource") or {}
    plural = resource.get("resource")
    operation = request.get("operation")
    if operation == "CONNECT":
        return _allow("operation-not-gated")
    if request.get("subResource") == "status":
        return _allow("status-subresource")  # RBAC: only the controller writes status
    namespace = str(request.get("namespace") or "")
    if not namespace:
        return _deny("malformed", f"the request names no namespace for {plural}")
    obj = request.get("oldObject") if operation == "DELETE" else request.get("object")
    if not isinstance(obj, dict):
        return _deny("malformed", f"the {operation} request of {plural} carries no object")
    user = request.get("userInfo") if isinstance(request.get("userInfo"), dict) else {}
    assert isinstance(user, dict)
    username = str(user.get("username") or "")
    owned = _owned(request, obj, namespace, str(plural))
    if owned is not None:
        return owned
    if plural == REQUESTS:
        return _request(request, obj, namespace, username, bundle, view)
    if plural == DECISIONS:
        return _decision(request, obj, namespace, username, bundle, now)
    if plural == USES:
        return _use(request, obj, username, now)
    return _allow("not-gated")


def _owned(
    request: Mapping[str, Any], obj: Mapping[str, Any], namespace: str, plural: str
) -> Decision | None:
    """The queue's objects are never owned: an owner reference (to an object that does not
    exist, or one about to go) has the garbage collector delete the object for whoever wrote
    it. A requester allowed to update requests, not to delete them, would delete others'
    requests that way, or her own to file another of the same name and spec under the
    approvals given. Denied when written (CREATE, or an UPDATE that changes them)."""
    if request.get("operation") not in ("CREATE", "UPDATE"):
        return None
    meta = _mapping(obj.get("metadata"))
    owners = meta.get("ownerReferences")
    before = _mapping(_mapping(request.get("oldObject")).get("metadata")).get("ownerReferences")
    if not owners or (request.get("operation") == "UPDATE" and _same(owners, before)):
        return None
    kind = KINDS.get(plural, plural)
    return _deny(
        "owned-queue-object",
        f"approvalgate denied writing {kind} {namespace}/{meta.get('name') or ''}: it names "
        "metadata.ownerReferences, and the queue's objects are never owned (the garbage "
        "collector would delete it on your behalf; deleting them is the queue admins'): "
        "remove metadata.ownerReferences",
    )


# --- ApprovalRequest ---------------------------------------------------------------------


def _request(
    request: Mapping[str, Any],
    obj: Mapping[str, Any],
    namespace: str,
    username: str,
    bundle: Bundle,
    view: ClusterView | None = None,
) -> Decision:
    operation = request.get("operation")
    meta = _mapping(obj.get("metadata"))
    spec = _mapping(obj.get("spec"))
    ref = f"ApprovalRequest {namespace}/{meta.get('name', '')}"
    if operation == "DELETE":
        return _allow("request-deleted")  # decisions and uses stay: nothing is forgotten
    if operation == "UPDATE":
        old = _mapping(_mapping(request.get("oldObject")).get("spec"))
        if _same(_uncancelled(spec), _uncancelled(old)) and bool(spec.get("cancelled")) == bool(
            old.get("cancelled")
        ):
            return _allow("unchanged-spec")  # absent and false are the same (not cancelled)
        if not _same(_uncancelled(spec), _uncancelled(old)):
            return _deny(
                "request-immutable",
                f"approvalgate denied updating {ref}: its spec is immutable (approvers "
                "approve exactly what it holds); create a new request for a new run",
            )
        if old.get("cancelled") is True or spec.get("cancelled") is not True:
            return _deny(
                "request-immutable",
                f"approvalgate denied updating {ref}: a request can only be cancelled "
                "(spec.cancelled false -> true), never un-cancelled",
            )
        if username != old.get("requester"):
            return _deny(
                "not-requester",
                f"approvalgate denied cancelling {ref}: only its requester "
                f"{old.get('requester')!r} may cancel it (you are {username!r}); an admin "
                "deletes it instead",
            )
        return _allow("request-cancelled")
    if view is not None and not view.offline and not view.problem:
        pending = view.pending_requests(namespace, username)
        if pending >= MAX_PENDING_REQUESTS:
            return _deny(
                "too-many-pending-requests",
                f"approvalgate denied creating {ref}: {username!r} already has {pending} "
                f"pending ApprovalRequests in namespace {namespace}, the most the approval "
                f"queue takes from one requester there ({MAX_PENDING_REQUESTS}): cancel those "
                f"no longer needed (`approvalgate cancel {namespace}/NAME`), or wait until "
                "approvers decide or they expire",
            )
    problem = request_problem(meta, spec, namespace, username, bundle)
    if problem:
        return _deny("invalid-request", f"approvalgate denied creating {ref}: {problem}")
    return _allow("request-created")


def request_problem(
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    namespace: str,
    username: str,
    bundle: Bundle,
) -> str:
    requester = spec.get("requester")
    if requester != username:
        return (
            f"spec.requester is {requester!r}, but the request is created by {username!r}: a "
            "request is made by its requester (a service making it for someone else "
            "impersonates them)"
        )
    if spec.get("environment") != bundle.environment:
        return (
            f"spec.environment is {spec.get('environment')!r}, this cluster enforces "
            f"{bundle.environment!r}"
        )
    if spec.get("cancelled") not in (None, False):
        return "a request cannot be created cancelled"
    reason = spec.get("reason", "")
    if not isinstance(reason, str) or len(reason) > REASON_MAX_CHARS:
        return f"spec.reason must be text of at most {REASON_MAX_CHARS} characters"
    if reason and reasons.visible_length(reason) == 0:
        return "spec.reason is only invisible characters"
    if reason and (hidden := reasons.hiding_character(reason)) is not None:
        # approvers read it in a terminal (`pending`, `status`) and in the console: an
        # escape sequence or a bidi override would make it show otherwise than stored
        return (
            f"spec.reason must read as written: character {hidden[0] + 1} is "
            f"U+{ord(hidden[1]):04X}, a control or format character"
        )
    run = _mapping(spec.get("run"))
    run_meta = _mapping(run.get("metadata"))
    if run.get("kind") != "AgentRun" or not str(run.get("apiVersion", "")).startswith(
        f"{AGENTS_GROUP}/"
    ):
        return f"spec.run must be an AgentRun of {AGENTS_GROUP}"
    if run_meta.get("generateName"):
        return "spec.run names a generateName: a request names its run (metadata.name)"
    if run_meta.get("name") != meta.get("name"):
        return (
            f"spec.run.metadata.name is {run_meta.get('name')!r}: it must equal the request's "
            f"name {meta.get('name')!r} (one request per run name)"
        )
    if run_meta.get("namespace") not in (None, namespace):
        return f"spec.run.metadata.namespace must be {namespace!r} (the request's namespace)"
    annotations = _mapping(run_meta.get("annotations"))
    for key in (records.ANNOTATION, REQUEST_UID_ANNOTATION, REQUEST_ANNOTATION):
        if key in annotations:
            return f"spec.run carries annotation {key}: the controller sets it"
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES:
        return (
            f"spec.run's annotations are {size} bytes, over the {ANNOTATIONS_MAX_BYTES} "
            "Kubernetes allows a run's (the controller could never create it): keep them small"
        )
    try:
        digest = bundle.spec_digest(run.get("spec"))
    except DigestError as exc:
        return f"spec.run.spec cannot be approved: {exc.message}"
    if spec.get("specDigest") != digest:
        return (
            f"spec.specDigest is {str(spec.get('specDigest'))[:12]!r}..., the run's spec "
            f"digests to sha256:{digest[:12]}: use `approvalgate request RUN.yaml`"
        )
    invalid = references.reference_problems(run.get("spec"))
    if invalid:
        return "spec.run.spec refers to objects by invalid names: " + "; ".join(invalid)
    return ""


# --- ApprovalDecision --------------------------------------------------------------------


def _decision(
    request: Mapping[str, Any],
    obj: Mapping[str, Any],
    namespace: str,
    username: str,
    bundle: Bundle,
    now: datetime,
) -> Decision:
    operation = request.get("operation")
    meta = _mapping(obj.get("metadata"))
    spec = _mapping(obj.get("spec"))
    ref = f"ApprovalDecision {namespace}/{meta.get('name') or meta.get('generateName', '')}"
    creator = _mapping(meta.get("annotations")).get(CREATED_BY_ANNOTATION)
    if operation == "UPDATE":
        old = _mapping(request.get("oldObject"))
        before = _mapping(_mapping(old.get("metadata")).get("annotations"))
        if creator != before.get(CREATED_BY_ANNOTATION):
            return _deny(
                "decision-immutable",
                f"approvalgate denied updating {ref}: {CREATED_BY_ANNOTATION} records who "
                "created the decision and never changes",
            )
        if _same(spec, _mapping(old.get("spec"))):
            return _allow("unchanged-spec")
        return _deny(
            "decision-immutable",
            f"approvalgate denied updating {ref}: decisions are append-only; to change your "
            "mind, create a new one (`approvalgate withdraw` or `approvalgate approve`)",
        )
    if operation == "DELETE":
        filed = api_time(meta.get("creationTimestamp"))
        return _delete_after_expiry(ref, username, _expiry_of_decision(spec, bundle, filed), now)
    if creator is not None and creator != username:
        return _deny(
            "invalid-decision",
            f"approvalgate denied creating {ref}: {CREATED_BY_ANNOTATION} says {creator!r}, "
            f"but the decision is created by {username!r}",
        )
    problem = _decision_problem(spec, namespace, username, bundle, now)
    if problem:
        return _deny("invalid-decision", f"approvalgate denied creating {ref}: {problem}")
    return _allow("decision-recorded")


def _decision_problem(
    spec: Mapping[str, Any],
    namespace: str,
    username: str,
    bundle: Bundle,
    now: datetime,
) -> str:
    name = spec.get("requestName")
    if not isinstance(name, str) or not name:
        return "spec.requestName is missing"
    parsed, problems = records.parse_envelopes([spec.get("record")])
    if problems or not parsed:
        return f"spec.record is not an approval record: {problems[0].message}"
    record = parsed[0]
    claim = record.claim
    if spec.get("decision") != claim.decision or spec.get("approver") != claim.approver:
        return (
            f"spec says {spec.get('approver')!r} decided {spec.get('decision')!r}, the signed "
            f"record says {claim.approver!r} decided {claim.decision!r}"
        )
    subject = records.subject_name(namespace, name)
    # a decision about a run (request) of that name, or about a parent of that name (a
    # Schedule's approver withdraws here: docs/parents.md)
    allowed = {subject, *(parents.subject(kind, namespace, name) for kind in parents.KINDS)}
    if claim.subject not in allowed:
        return f"the record is for {claim.subject!r}, this decision is for {subject!r}"
    if claim.subject != subject and claim.decision in ("approve", "bypass"):
        return (
            f"a parent's approval counts only carried on the parent (annotation "
            f"{records.ANNOTATION}), where it is judged against who writes it: its runs are "
            "judged later, without knowing who wrote it. In the cluster a parent takes "
            "rejects and withdrawals only"
        )
    if claim.version != records.FORMAT_VERSION or claim.environment != bundle.environment:
        return (
            f"the record is for environment {claim.environment or '(none: format v1)'!r}, "
            f"this cluster enforces {bundle.environment!r}"
        )
    approver = bundle.approvers.get(claim.approver)
    if approver is None:
        return f"{claim.approver!r} is not an approver in this cluster's bundle"
    if username not in approver.usernames:
        return (
            f"it is created by {username!r}, who is not approver {approver.name} (their "
            f"usernames: {', '.join(sorted(approver.usernames))}): a decision is created by "
            "the approver who signed it"
        )
    here = f"it is {records.format_time(now)} by the webhook's clock"
    if claim.issued_at > now + bundle.clock_skew:
        return (
            f"the record is issued in the future ({records.format_time(claim.issued_at)}; "
            f"{here}, {bundle.clock_skew_seconds}s of clock skew allowed): sync the signing "
            "machine's clock (NTP) and sign again"
        )
    if claim.decision != "withdraw" and now >= claim.expires_at:
        return (
            f"the record expired at {records.format_time(claim.expires_at)} ({here}): sign "
            "again, after syncing the signing machine's clock if it is behind"
        )
    keys = [k for k in approver.keys if k.valid_at(claim.issued_at) and k.valid_at(now)]
    if bundle.verifier.signed_by(record, [k.key for k in keys]) is None:
        return (
            f"the signature does not verify with a key of {approver.name} valid at "
            f"{records.format_time(claim.issued_at)} and now"
        )
    if claim.decision == "bypass":
        problem = reasons.reason_problem(claim.reason)
        if problem:
            return problem
    return ""


def _expiry_of_decision(
    spec: Mapping[str, Any], bundle: Bundle, filed: datetime | None
) -> datetime | None:
    return decision_expiry(spec.get("record"), bundle, filed)


def decision_expiry(
    record: object, bundle: Bundle, filed: datetime | None = None
) -> datetime | None:
    """When the ApprovalDecision holding ``record``, created (by the API server's clock) at
    ``filed``, stops mattering (it may be deleted then), or None when it is not a record
    (nothing can count it)."""
    parsed, _ = records.parse_envelopes([record])
    if not parsed:
        return None  # not a record: nothing can count it
    claim = parsed[0].claim
    if claim.decision not in ("withdraw", "reject"):
        return claim.expires_at
    # A withdrawal counts expired or not, and what it takes back was issued before it and
    # lives at most the longest timeoutSeconds (bypass maxTTL) of the bundle's policies:
    # deleting it before then would revive an approval, whatever expiry it was signed with
    # (`approvalgate withdraw` signs it to expire after that anyway). A reject, once expired,
    # still counts as long again (decide._rejection): the approvals issued before it expired
    # live at most that long after.
    # Both count from when they were said, their filing where the signer's clock was behind
    # (decide.said_at), and a reject from its expiry where later.
    if claim.decision == "reject":
        return max(claim.expires_at, reject_holds_until(claim, filed, bundle))
    since = said_at(claim.issued_at, filed)
    return max(claim.expires_at, moment_after(since, longest_lifetime(bundle, claim.subject)))


# --- ApprovalUse -------------------------------------------------------------------------


def _use(
    request: Mapping[str, Any], obj: Mapping[str, Any], username: str, now: datetime
) -> Decision:
    operation = request.get("operation")
    meta = _mapping(obj.get("metadata"))
    spec = _mapping(obj.get("spec"))
    ref = f"ApprovalUse {meta.get('namespace', '')}/{meta.get('name', '')}"
    if operation == "UPDATE":
        if _same(spec, _mapping(_mapping(request.get("oldObject")).get("spec"))):
            return _allow("unchanged-spec")
        return _deny("use-immutable", f"approvalgate denied updating {ref}: uses are a ledger")
    if operation == "DELETE":
        expires = spec.get("expiresAt")
        try:
            moment = records.parse_time(expires) if isinstance(expires, str) else None
        except ValueError:
            moment = None
        return _delete_after_expiry(ref, username, moment, now)
    run = _mapping(spec.get("run"))
    if not run.get("uid") or meta.get("name") != run.get("uid"):
        return _deny(
            "invalid-use",
            f"approvalgate denied creating {ref}: an ApprovalUse is named by its run's uid "
            "(spec.run.uid); the approvalgate controller writes them",
        )
    problem = use_references_problem(spec.get("references"))
    if problem:
        return _deny("invalid-use", f"approvalgate denied creating {ref}: {problem}")
    return _allow("use-recorded")


def use_references_problem(value: object) -> str:
    """Why ``spec.references`` of an ApprovalUse is malformed ("" when absent or well formed):
    at most :data:`MAX_USE_REFERENCES` entries, each ``ImplementationSpec/<name>``,
    ``Agent/<name>`` or ``AgentProvider/<name>`` (a Kubernetes object name) -> a lowercase
    hex sha256."""
    if value is None:
        return ""
    if not isinstance(value, dict):
        return 'spec.references must be an object ("Kind/name" -> sha256)'
    if len(value) > MAX_USE_REFERENCES:
        return f"spec.references has {len(value)} entries, at most {MAX_USE_REFERENCES}"
    for key, digest in sorted(value.items(), key=lambda item: str(item[0])):
        if not isinstance(key, str) or not _REFERENCE_KEY.fullmatch(key):
            return (
                f"spec.references key {key!r} is not ImplementationSpec/<name>, "
                "Agent/<name> or AgentProvider/<name> (a Kubernetes object name)"
            )
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            return f"spec.references[{key!r}] is not a lowercase hex sha256"
    return ""


def _delete_after_expiry(
    ref: str, username: str, expires: datetime | None, now: datetime
) -> Decision:
    if username in NAMESPACE_CONTROLLER:
        return _allow("namespace-deleted")
    if expires is None or now >= expires:
        return _allow("expired-deleted")
    return _deny(
        "append-only",
        f"approvalgate denied deleting {ref}: it counts until "
        f"{records.format_time(expires)} (the cluster's record of approvals is append-only; "
        "the controller removes it after that)",
    )


def _uncancelled(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "cancelled"}


def _same(a: object, b: object) -> bool:
    """Equal as JSON (Python's == says 1 == True == 1.0; a stored spec does not)."""
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(
        b, sort_keys=True, default=repr
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}
