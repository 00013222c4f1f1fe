"""What the console's buttons do: approve, reject and withdraw, as the console's user.

A decision runs :func:`approvalgate.commands.approve.file_decision`, the code of
``approvalgate approve|reject|withdraw --request``: the same checks, messages and advice,
the record signed here with the user's signer and filed as an ApprovalDecision created with
the user's credentials.

Before any click, :func:`refusals` says for each button why it would be refused ("" when it
may be used), from the request as the queue shows it (``commands._queue.summary``) and the
user: the same rule as the webhook's "nobody approves their own run"
(``approvals.decide._is_person``: the approver's name, or one of its usernames, is the
requester), the CLI's "a decision would change nothing" for a request that is done, no
signer, and nothing to withdraw. :func:`notes` are the CLI's notes (an approval that may not
count): warnings, not refusals. :func:`decide` checks the same refusals against the request
as the cluster has it now, then files the decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from approvalgate.approvals.errors import ApprovalgateError

if TYPE_CHECKING:
    from approvalgate.commands.approve import FiledDecision
    from approvalgate.console.identity import Me
    from approvalgate.kube.client import Client

DECISIONS: Final = ("approve", "reject", "withdraw")
"""The console's buttons (a bypass is for the CLI: it needs a written break-glass reason)."""
NO_SIGNER: Final = "start the console with --signer and --approver to decide"
NO_SIGNER_ADVICE: Final = (
    "approvalgate console --signer KEY --approver NAME (your key file, HSM or ssh-agent "
    "key, and your name as in your Approver document)"
)
REASON_NEEDED: Final = "reject needs a reason: the requester must learn why"


class Refused(ApprovalgateError):
    """A decision the console will not file, with the HTTP status to answer it with:
    403 (the user may not: their own request, no signer), 409 (the request's state: it is
    done, nothing to withdraw), 400 (the form: a reject without a reason)."""

    def __init__(self, message: str, *, advice: str = "", status: int = 409) -> None:
        super().__init__(message, advice=advice)
        self.status = status


def requested_by(item: Mapping[str, Any], me: Me) -> bool:
    """Whether ``me`` is the requester of request ``item``, as the webhook tells it when it
    judges the run the controller creates for the request: the run's requester and author
    are ``spec.requester``, and an approver who is that person (their name, or one of their
    usernames in the bundle) does not count. The user themselves is the requester too: a
    decision they create must be by an approver known by their username (the webhook
    checks it), so that approver is the requester."""
    requester = str(item.get("requester") or "")
    if not requester:
        return False
    if requester == me.user or (me.approver and requester == me.approver):
        return True
    bundle = me.bundle
    return (
        bundle is not None
        and bool(me.approver)
        and me.approver in bundle.approvers_known_as(requester)
    )


def refusals(item: Mapping[str, Any], me: Me) -> dict[str, str]:
    """For each of approve, reject, withdraw: "" when ``me`` may decide so on request
    ``item`` (a ``_queue.summary``, optionally with ``decisions``: ``_queue.decisions_of``),
    else why not."""
    found: dict[str, str] = {}
    for decision in DECISIONS:
        refused = _refusal(item, me, decision)
        found[decision] = refused.message if refused is not None else ""
    return found


def notes(item: Mapping[str, Any], me: Me) -> list[str]:
    """Warnings about approving request ``item`` that do not stop it (the CLI's notes): an
    approver not among those who may still approve it (status.eligible)."""
    from approvalgate.commands.approve import eligibility_note

    if _refusal(item, me, "approve") is not None:
        return []
    note = eligibility_note(me.approver, _ref(item), list(item.get("eligible") or ()))
    return [note] if note else []


def decide(
    client: Client,
    me: Me,
    namespace: str,
    name: str,
    decision: str,
    reason: str,
    *,
    seen: Seen | None = None,
) -> str:
    """File ``decision`` on ApprovalRequest ``namespace/name`` as ``me``: the first line
    ``approvalgate approve|reject|withdraw --request`` prints on success. Raises
    :class:`Refused` for what :func:`refusals` refuses, else the CLI's errors."""
    filed = decide_filed(client, me, namespace, name, decision, reason, seen=seen)
    return filed.message.splitlines()[0]


@dataclass(frozen=True)
class Seen:
    """The request a page showed when its button was clicked: its uid and spec digest, and
    its pin (``commands._queue.pin``: the request and the content its run references, as
    the page showed them; "" from a form without one, which may reject or withdraw but not
    approve, as the CLI without a terminal needs ``--expect``)."""

    uid: str
    digest: str
    pin: str = ""


def decide_filed(
    client: Client,
    me: Me,
    namespace: str,
    name: str,
    decision: str,
    reason: str,
    *,
    seen: Seen | None = None,
) -> FiledDecision:
    """:func:`decide`, answering everything the CLI knows of the decision filed (its notes
    included). ``seen``: the request the user looked at; a request of that name that is
    not that one (deleted and made again, with another run) is refused, not signed."""
    from approvalgate.commands import _cluster, _queue
    from approvalgate.commands.approve import file_decision

    if decision not in DECISIONS:
        raise Refused(f"decision: {decision!r} is not one of {', '.join(DECISIONS)}", status=400)
    if decision == "reject" and not reason.strip():
        raise Refused(
            REASON_NEEDED,
            advice="write why in the reason field: the requester reads it (approvalgate status)",
            status=400,
        )
    if not me.can_sign:
        raise Refused(NO_SIGNER, advice=NO_SIGNER_ADVICE, status=403)
    request = _cluster.get_request(client, namespace, name)
    item = _queue.summary(request)
    if seen is not None:
        _same_request(item, seen)
        if decision == "approve" and not seen.pin:
            raise Refused(
                f"this page of ApprovalRequest {_ref(item)} carries no pin of what it showed "
                "(it was loaded before an upgrade, or the form was made elsewhere): an "
                "approval signs only what was read; nothing was filed",
                advice="reload the request's page, read it, then approve",
                status=409,
            )
    if decision == "withdraw":
        item["decisions"] = _decisions(client, namespace, name)
    refused = _refusal(item, me, decision)
    if refused is not None:
        raise refused
    assert me.signer is not None  # can_sign
    return file_decision(
        client,
        namespace=namespace,
        name=name,
        decision=decision,
        approver=me.approver,
        signer=me.signer,
        reason=reason,
        bundle=me.bundle,
        bundle_file=me.bundle_path or "--bundle",
        request=request,
        expect=_pinned(seen, decision),
    )


def _pinned(seen: Seen | None, decision: str) -> str | None:
    """The pin an approval's click names, checked by ``file_decision`` against the request
    and its content as read to be signed (content changed since the page showed it is
    refused). A reject or withdrawal takes away: the page's uid and digest name its request,
    and content rewritten since (which its writer may do until a run uses it) must not keep
    an approver from rejecting."""
    if decision != "approve" or seen is None or not seen.pin:
        return None
    return seen.pin


def _same_request(item: Mapping[str, Any], seen: Seen) -> None:
    """Refuse to sign for a request other than the one the page showed: a request of the
    same name made since (the first deleted) names another run, which the user never read."""
    if item.get("uid") == seen.uid and item.get("specDigest") == seen.digest and seen.uid:
        return
    raise Refused(
        f"ApprovalRequest {_ref(item)} is not the request this page showed (uid "
        f"{seen.uid or '?'}): it was deleted and made again, uid {item.get('uid')}, for the "
        "run whose spec digests to "
        f"sha256:{str(item.get('specDigest'))[:12]}; nothing was filed",
        advice="read the request as it is now on its page, then decide again",
        status=409,
    )


def _refusal(item: Mapping[str, Any], me: Me, decision: str) -> Refused | None:
    from approvalgate.commands.approve import not_pending

    ref = _ref(item)
    requester = str(item.get("requester") or "")
    if decision in ("approve", "reject") and requested_by(item, me):
        if decision == "reject":
            return Refused(
                f"you cannot reject your own request: it was requested by {requester}; "
                "cancel it instead",
                advice=f"approvalgate cancel {ref}",
                status=403,
            )
        return Refused(
            f"you cannot approve your own request: it was requested by {requester}",
            advice=f"another approver decides it: approvalgate status {ref} says who may",
            status=403,
        )
    done = not_pending(item)
    if done is not None:
        return Refused(done[0], advice=done[1], status=409)
    elsewhere = _other_environment(item, me)
    if elsewhere is not None:
        return elsewhere
    if not me.can_sign:
        return Refused(NO_SIGNER, advice=NO_SIGNER_ADVICE, status=403)
    if decision == "withdraw" and not _approved(item, me.approver):
        return Refused(
            f"{me.approver} has not approved {ref}: a withdrawal takes back your approvals, "
            "and there is none",
            advice=f"approvalgate status {ref} lists the decisions filed",
            status=409,
        )
    return None


def _other_environment(item: Mapping[str, Any], me: Me) -> Refused | None:
    """The CLI's refusal when the console's ``--bundle`` is not of the request's
    environment (its policies would bound the TTL of the wrong environment)."""
    from pathlib import Path

    from approvalgate.policies import bundle_environment

    environment = str(item.get("environment") or "")
    if me.bundle is None or not environment or environment == me.bundle.environment:
        return None
    try:
        bundle_environment(me.bundle, me.bundle_path or Path("--bundle"), environment)
    except ApprovalgateError as exc:
        return Refused(exc.message, advice=exc.advice, status=409)
    return None


def _approved(item: Mapping[str, Any], approver: str) -> bool:
    """Whether ``approver``'s approval (or bypass) of request ``item`` stands: their last
    approve, bypass or withdraw is not a withdraw (from ``item["decisions"]`` when known,
    else the approvals the controller counted)."""
    decisions = item.get("decisions")
    if isinstance(decisions, list):
        mine = [
            d.get("decision")
            for d in decisions
            if isinstance(d, Mapping)
            and d.get("approver") == approver
            and d.get("decision") in ("approve", "bypass", "withdraw")
        ]
        return bool(mine) and mine[-1] != "withdraw"
    return approver in (item.get("approvedBy") or ())


def _decisions(client: Client, namespace: str, name: str) -> list[dict[str, Any]] | None:
    """The decisions filed about request ``namespace/name``, oldest first; None when we may
    not list them (then the approvals the controller counted tell)."""
    from approvalgate.commands import _cluster, _queue
    from approvalgate.kube.errors import KubeError
    from approvalgate.kube.lists import list_all
    from approvalgate.kube.resources import APPROVAL_DECISIONS

    try:
        found = list_all(client, APPROVAL_DECISIONS, namespace).items
    except KubeError as exc:
        if exc.status != 403:
            raise _cluster.not_served(exc, APPROVAL_DECISIONS.plural) from exc
        return None
    return _queue.decisions_of(found, name, _cluster.CREATED_BY)


def _ref(item: Mapping[str, Any]) -> str:
    return f"{item.get('namespace', '')}/{item.get('name', '')}"
