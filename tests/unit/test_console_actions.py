"""console.actions: which buttons a user may use on a request, before any click, and why not.

The requests are the queue tests' (tests/unit/test_queue.py: the decision corpus's ``_base``
bundle, whose policy names group:platform-leads (alice, bob), carol and requester), given the
status the controller writes for the verdict (controller.reconcile), then summarised as the
queue shows them (commands._queue.summary). Self-approval is checked against the controller:
whoever the console calls the requester is exactly whom the controller leaves out of
status.eligible (the webhook's "nobody approves their own run").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from approvalgate.approvals.bundle import Bundle
from approvalgate.commands import _queue
from approvalgate.console.actions import (
    NO_SIGNER,
    Refused,
    Seen,
    decide,
    notes,
    refusals,
    requested_by,
)
from approvalgate.console.identity import Me
from approvalgate.controller.reconcile import _status
from tests.support.console_fakes import FakeClient
from tests.unit.test_queue import BUNDLE, NAME, NOW, NS, approval_request, decision, evaluate

REF = f"{NS}/{NAME}"
SIGNER: Any = object()  # only its presence matters here: nothing is signed


def item(requester: str = "requester", *decisions: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """The queue's summary of a request by ``requester`` with the controller's status."""
    request = approval_request(requester, **spec)
    verdict = evaluate(request, *decisions)
    request["status"] = _status(request, verdict, NOW, len(decisions))
    return _queue.summary(request)


def me(user: str, approver: str = "", *, bundle: Bundle | None = None, signer: Any = SIGNER) -> Me:
    return Me(user=user, approver=approver, signer=signer if approver else None, bundle=bundle)


def allowed() -> dict[str, str]:
    return {"approve": "", "reject": "", "withdraw": ""}


def test_an_eligible_approver_may_approve_and_reject_not_withdraw() -> None:
    found = refusals(item(), me("alice", "alice"))
    assert found["approve"] == found["reject"] == ""
    assert found["withdraw"] == (
        f"alice has not approved {REF}: a withdrawal takes back your approvals, and there is none"
    )
    assert notes(item(), me("alice", "alice")) == []


def test_self_approval_by_username() -> None:
    """The user the console runs as made the request: whatever approver they sign as, the
    decision is created as them, so the approver is them (the webhook checks it)."""
    mine = item("alice")
    expected = "you cannot approve your own request: it was requested by alice"
    for who in (me("alice", "alice"), me("alice", "bob"), me("alice")):
        found = refusals(mine, who)
        assert found["approve"] == expected
        assert found["reject"] == (
            "you cannot reject your own request: it was requested by alice; cancel it instead"
        )
        assert notes(mine, who) == []


def test_self_approval_by_approver_identity() -> None:
    """The requester is one of the approver's usernames (alice@example.com is alice's): known
    from the bundle; without it, only the approver's name itself is recognised."""
    mine = item("alice@example.com")
    assert "alice" not in mine["eligible"]  # the controller leaves alice out
    found = refusals(mine, me("alice-laptop", "alice", bundle=BUNDLE))
    assert found["approve"] == (
        "you cannot approve your own request: it was requested by alice@example.com"
    )
    assert refusals(item("carol"), me("carol-sso", "carol"))["approve"].startswith(
        "you cannot approve your own request"
    )
    # no bundle: the console cannot know alice@example.com is alice (the controller can:
    # the note says this approval may not count)
    assert refusals(mine, me("alice-laptop", "alice"))["approve"] == ""
    assert notes(mine, me("alice-laptop", "alice")) == [
        f"alice is not among those who may still approve {REF} (bob, carol, requester): "
        "this approval may not count"
    ]


@pytest.mark.parametrize("requester", ["requester", "alice", "alice@example.com", "bob", "dave"])
def test_the_console_and_the_controller_agree_on_who_the_requester_is(requester: str) -> None:
    """Every approver the policy names, as the user of one of their usernames: the console
    refuses exactly those the controller leaves out of status.eligible."""
    summary = item(requester)
    for name in ("alice", "bob", "carol", "requester"):
        for user in sorted(BUNDLE.approvers[name].usernames):
            who = me(user, name, bundle=BUNDLE)
            refused = bool(refusals(summary, who)["approve"])
            assert refused == requested_by(summary, who)
            assert refused == (name not in summary["eligible"]), (requester, name, user)


def test_no_signer_shows_but_cannot_decide() -> None:
    found = refusals(item(), me("alice"))
    assert found == {"approve": NO_SIGNER, "reject": NO_SIGNER, "withdraw": NO_SIGNER}
    assert NO_SIGNER == "start the console with --signer and --approver to decide"
    assert notes(item(), me("alice")) == []
    assert refusals(item(), Me(user="alice", approver="alice"))["approve"] == NO_SIGNER


@pytest.mark.parametrize(
    ("spec", "phase"),
    [({"cancelled": True}, "Cancelled"), ({"environment": "staging"}, "Failed")],
)
def test_a_request_that_is_done_takes_no_decision(spec: dict[str, Any], phase: str) -> None:
    done = item("requester", **spec)
    assert done["phase"] == phase
    message = f"ApprovalRequest {REF} is {phase}: a decision would change nothing"
    assert refusals(done, me("alice", "alice")) == {
        "approve": message,
        "reject": message,
        "withdraw": message,
    }
    assert refusals(done, me("alice")) == dict.fromkeys(allowed(), message)


def test_a_vetoed_request_and_a_cancelled_one_before_the_controller_saw_it() -> None:
    vetoed = item("requester", decision("carol", "reject", reason="no"))
    assert vetoed["phase"] == "Rejected"
    assert refusals(vetoed, me("alice", "alice"))["approve"] == (
        f"ApprovalRequest {REF} is Rejected: a decision would change nothing"
    )
    unseen = _queue.summary(approval_request("requester", cancelled=True))
    assert refusals(unseen, me("alice", "alice"))["approve"] == (
        f"ApprovalRequest {REF} is Cancelled: a decision would change nothing"
    )


def test_withdraw_needs_an_approval_that_stands() -> None:
    approved = item("requester", decision("alice"))
    assert approved["approvedBy"] == ["alice"]
    assert refusals(approved, me("alice", "alice")) == allowed()
    assert refusals(approved, me("bob", "bob"))["withdraw"].startswith("bob has not approved")
    # the decisions filed, when known, tell (an approval not counted yet can be withdrawn)
    filed = {**item(), "decisions": [{"decision": "approve", "approver": "bob"}]}
    assert refusals(filed, me("bob", "bob"))["withdraw"] == ""
    withdrawn = {
        **approved,
        "decisions": [
            {"decision": "approve", "approver": "alice"},
            {"decision": "withdraw", "approver": "alice"},
        ],
    }
    assert refusals(withdrawn, me("alice", "alice"))["withdraw"].startswith(
        "alice has not approved"
    )
    rejected = {**item(), "decisions": [{"decision": "reject", "approver": "bob"}]}
    assert refusals(rejected, me("bob", "bob"))["withdraw"].startswith("bob has not approved")


def test_an_approver_who_may_not_count_gets_a_note_not_a_refusal() -> None:
    approved = item("requester", decision("alice"))
    assert refusals(approved, me("alice", "alice"))["approve"] == ""
    assert notes(approved, me("alice", "alice")) == [
        f"alice is not among those who may still approve {REF} (bob, carol): this approval "
        "may not count"
    ]
    assert notes(item(), me("mallory", "mallory")) == [
        f"mallory is not among those who may still approve {REF} (alice, bob, carol): this "
        "approval may not count"
    ]
    # before the controller evaluated the request nobody is known to be eligible: no note
    fresh = _queue.summary(approval_request("requester"))
    assert notes(fresh, me("mallory", "mallory")) == []


def test_decide_refuses_before_it_reads_the_cluster() -> None:
    """What the form alone decides needs no cluster (the client is never used)."""
    client: Any = None
    with pytest.raises(Refused) as caught:
        decide(client, me("alice", "alice"), NS, NAME, "reject", "  ")
    assert caught.value.message == "reject needs a reason: the requester must learn why"
    assert caught.value.status == 400
    with pytest.raises(Refused) as caught:
        decide(client, me("alice"), NS, NAME, "approve", "")
    assert (caught.value.message, caught.value.status) == (NO_SIGNER, 403)
    assert "--signer" in caught.value.advice
    with pytest.raises(Refused) as caught:
        decide(client, me("alice", "alice"), NS, NAME, "bypass", "INC-1 down")
    assert caught.value.status == 400


def test_a_console_bundle_of_another_environment_refuses_as_the_cli_does() -> None:
    elsewhere = {**item(), "environment": "other"}
    who = Me(
        user="alice",
        approver="alice",
        signer=SIGNER,
        bundle=BUNDLE,
        bundle_path=Path("rendered/prod/bundle.json"),
    )
    message = (
        f"--env other: rendered/prod/bundle.json is the bundle of environment {BUNDLE.environment}"
    )
    assert refusals(elsewhere, who) == dict.fromkeys(("approve", "reject", "withdraw"), message)
    assert refusals(item(), who)["approve"] == refusals(item(), who)["reject"] == ""
    assert refusals(item(), who)["withdraw"].startswith("alice has not approved")


def test_a_request_made_again_since_the_page_showed_it_is_not_signed() -> None:
    """The button signs for the request as the cluster has it at the click. A requester who
    can have hers deleted (an admin, an owner reference) and made again under the same name
    for another run would have the approver sign a run she never read: the page's form
    names the request it showed (uid, spec digest), and another one is refused, unsigned."""
    shown = approval_request("requester")
    shown["metadata"]["uid"] = "uid-shown"
    again = approval_request("requester", reason="the same name, another run")
    again["metadata"]["uid"] = "uid-made-again"
    again["spec"]["run"]["spec"]["parameters"]["task"] = "rm -rf the data"
    again["spec"]["specDigest"] = BUNDLE.spec_digest(again["spec"]["run"]["spec"])
    client: Any = FakeClient({f"approvalrequests/{NAME}": again})
    signer: Any = object()  # never used: nothing is signed
    for seen in (
        Seen("uid-shown", shown["spec"]["specDigest"]),
        Seen("uid-made-again", shown["spec"]["specDigest"]),
        Seen("", ""),
    ):
        for button in ("approve", "reject", "withdraw"):
            with pytest.raises(Refused) as caught:
                decide(
                    client, me("alice", "alice", signer=signer), NS, NAME, button, "x", seen=seen
                )
            assert caught.value.status == 409
            assert "is not the request this page showed" in caught.value.message
            assert "nothing was filed" in caught.value.message
    assert all(method == "GET" for method, _ in client.calls)
