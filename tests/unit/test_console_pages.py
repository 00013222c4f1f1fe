"""The console's pages (approvalgate/console/pages.py) rendered from an in-memory state.

No cluster: the state is a list of objects, the client answers fixed reads. What a user sees
is checked as text: filters, counts, escaping of hostile strings, refusals shown before a
click, the problems banner, an ImplementationSpec the user may not read said in place.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape
from typing import Any

import pytest

import approvalgate.console
from approvalgate.approvals.bundle import parse_bundle_text
from approvalgate.commands import _queue
from approvalgate.console import pages
from tests.support import console_fakes as fakes
from tests.support.corpus import BASE, compile_case_bundle

HOSTILE = '<script>alert("x")</script>'


@pytest.fixture(autouse=True)
def actions(monkeypatch: pytest.MonkeyPatch) -> None:
    """console-decide's actions.py, faked until it is on this branch."""
    module = fakes.fake_actions()
    monkeypatch.setitem(__import__("sys").modules, "approvalgate.console.actions", module)
    monkeypatch.setattr(approvalgate.console, "actions", module, raising=False)


def text(html: str) -> str:
    """The page's visible text, whitespace folded."""
    no_tags = re.sub(r"<[^>]+>", " ", html)
    return " ".join(unescape(no_tags).split())


def queue_state() -> fakes.FakeState:
    now = fakes.now()
    return fakes.FakeState(
        [
            fakes.make_request("needs-alice-aaaaa", created=now - timedelta(hours=3)),
            fakes.make_request("alices-own-bbbbb", requester="alice", eligible=("bob", "carol")),
            fakes.make_request(
                "other-ns-ccccc",
                namespace="research",
                eligible=("bob",),
                created=now - timedelta(minutes=10),
            ),
            fakes.make_request("done-ddddd", phase="Submitted", approved=("alice", "bob")),
            fakes.make_request("fresh-eeeee", phase="", eligible=()),
        ]
    )


def queue(state: Any, me: Any, **filters: str) -> str:
    return pages.render_queue(state, filters, me, "tok", False, now=fakes.now())


ALICE = fakes.Me(user="alice", approver="alice")


def test_queue_needs_me_is_the_default_for_an_approver() -> None:
    page = queue(queue_state(), ALICE)
    assert "agents/needs-alice-aaaaa" in page
    assert "alices-own-bbbbb" not in page.split("<tbody>")[1]
    assert "research/other-ns-ccccc" not in page
    assert "5 pending" not in text(page)
    assert "4 pending · 1 needs alice · 1 mine" in text(page)


def test_queue_views_mine_all_and_namespace() -> None:
    state = queue_state()
    mine = queue(state, ALICE, view="mine")
    assert "agents/alices-own-bbbbb" in mine and "needs-alice-aaaaa" not in mine.split("<tbody>")[1]
    everything = text(queue(state, ALICE, view="all"))
    for name in ("needs-alice-aaaaa", "alices-own-bbbbb", "other-ns-ccccc", "fresh-eeeee"):
        assert name in everything
    assert "done-ddddd" not in everything  # Submitted: not pending
    assert "New" in everything  # not evaluated yet
    research = text(queue(state, ALICE, view="all", namespace="research"))
    assert "other-ns-ccccc" in research and "needs-alice-aaaaa" not in research


def test_queue_age_filter_and_time_waiting() -> None:
    page = text(queue(queue_state(), ALICE, view="all", age="2h"))
    assert "needs-alice-aaaaa" in page and "3h" in page
    assert "other-ns-ccccc" not in page and "alices-own-bbbbb" not in page
    bad = text(queue(queue_state(), ALICE, view="all", age="soon"))
    assert "age: 'soon' is not a duration like 30m, 1h30m or 7d; showing every age" in bad
    assert "other-ns-ccccc" in bad


def test_queue_without_approver_shows_all_and_says_why() -> None:
    me = fakes.Me(user="dave")
    page = text(queue(queue_state(), me, view="needs-me"))
    assert "needs-me needs an approver name: start the console with --approver NAME" in page
    assert "needs-alice-aaaaa" in page and "other-ns-ccccc" in page


def test_queue_policy_filter_needs_the_bundle() -> None:
    page = text(queue(queue_state(), ALICE, view="all", policy="agents/two-person"))
    assert "start the console with --bundle FILE to filter by policy" in page
    bundle = parse_bundle_text(compile_case_bundle(BASE))
    me = fakes.Me(user="alice", approver="alice", bundle=bundle)
    matched = text(queue(queue_state(), me, view="all", policy="agents/two-person"))
    assert "needs-alice-aaaaa" in matched and "other-ns-ccccc" not in matched
    assert "agents/two-person" in matched  # the Policies column
    none = text(queue(queue_state(), me, view="all", policy="agents/other"))
    assert "No pending request matches these filters." in none


def test_queue_rows_link_to_the_request_page_and_are_keyboard_reachable() -> None:
    page = queue(queue_state(), ALICE)
    assert '<a href="/requests/agents/needs-alice-aaaaa">' in page
    assert '<a class="skip" href="#main">Skip to content</a>' in page
    assert '<main id="main" tabindex="-1">' in page
    assert page.count('<th scope="col">') >= 8
    assert '<label for="f-age">' in page and 'id="f-age"' in page
    assert 'aria-live="polite"' in page
    assert "<script>" not in page and "style=" not in page  # CSP: no inline code or style
    assert '<script src="/static/console.js" defer></script>' in page


def test_queue_fragment_is_the_table_only() -> None:
    fragment = pages.render_queue(queue_state(), {}, ALICE, "tok", True, now=fakes.now())
    assert "<html" not in fragment and "needs-alice-aaaaa" in fragment
    assert "<form" not in fragment


def test_hostile_strings_are_escaped() -> None:
    request = fakes.make_request("evil-fffff", requester=HOSTILE, reason=HOSTILE)
    decision = fakes.make_decision(request, "bob", "reject", reason=HOSTILE, key="bob")
    state = fakes.FakeState([request], [decision], problem_lines=[HOSTILE])
    page = queue(state, ALICE, view="all", namespace=HOSTILE)
    assert HOSTILE not in page
    assert "&lt;script&gt;" in page
    story = pages.render_request(
        state, fakes.FakeClient(), "agents", "evil-fffff", ALICE, "tok", False, now=fakes.now()
    )
    assert HOSTILE not in story and "<script>alert" not in story
    assert (
        story.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") >= 3
    )  # requester, reason x2


def test_a_requester_named_like_another_is_shown_escaped_on_both_pages() -> None:
    """bоb (a Cyrillic o) requested it: the queue and the request's page show the name with
    its escaped form, every character named, so an approver never reads it as bob."""
    lookalike = "b\u043eb@example.com"
    request = fakes.make_request("lookalike-ggggg", requester=lookalike, eligible=("alice",))
    state = fakes.FakeState([request], [])
    said = "b\u043eb@example.com [&#34;b\\u043eb@example.com&#34; (CYRILLIC SMALL LETTER O)]"
    assert said in queue(state, ALICE, view="all")
    story = pages.render_request(
        state, fakes.FakeClient(), "agents", "lookalike-ggggg", ALICE, "tok", False, now=fakes.now()
    )
    assert f"<dt>Requester</dt><dd>{said}</dd>" in story


def test_problems_banner_and_unreachable_api_server() -> None:
    state = queue_state()
    state.problem_lines = ["no credentials to read approval requests in secret-ns: forbidden"]
    state.down_since = "18:59:07"
    page = text(queue(state, ALICE))
    assert "Problems" in page
    assert "the API server cannot be reached since 18:59:07; retrying" in page
    assert "no credentials to read approval requests in secret-ns: forbidden" in page
    assert 'role="alert"' in queue(state, ALICE)
    state.problem_lines, state.down_since = [], None
    assert "Problems" not in text(queue(state, ALICE))


def request_page(state: Any, client: Any, me: Any, name: str, **kw: Any) -> str:
    return pages.render_request(
        state, client, "agents", name, me, "tok-123", False, now=fakes.now(), **kw
    )


def test_request_page_tells_the_story() -> None:
    request = fakes.make_request("story-ggggg", reason="nightly report", approved=("bob",))
    decisions = [
        fakes.make_decision(request, "bob", "approve", reason="looks fine", order=1),
        fakes.make_decision(request, "carol", "approve", order=2),
    ]
    events = [
        {
            "eventTime": "2026-12-06T18:00:01.000000Z",
            "action": "Pending",
            "reason": "WaitingForApprovals",
            "note": "(new) -> Pending: needs 2 approvals",
            "type": "Normal",
        }
    ]
    client = fakes.FakeClient(events=events)
    state = fakes.FakeState([request], decisions)
    html = request_page(state, client, ALICE, "story-ggggg")
    page = text(html)
    assert "ApprovalRequest agents/story-ggggg" in page
    assert "Pending (WaitingForApprovals)" in page
    assert "nightly report" in page
    assert "1 of 2 (bob)" in page
    assert "May still approve alice, bob, carol" in page
    # the run as it will be created, as YAML
    assert "implementationSpecRef:" in page and "task: Update onboarding flow" in page
    # the task text and the Agent, read now
    assert "Summary: Update the onboarding flow" in page
    assert "Change the sign-up form. Run the tests. Open a pull request." in page
    assert "Agent agents/codex-agent" in page and "model: gpt-5-codex" in page
    # decisions: who, reason, counted or why not
    assert "approve bob 2026-12-06T18:30:00Z looks fine yes" in page
    assert "not counted by the controller" in page  # carol: not in status.approvedBy
    # timeline: status times and Events
    assert "requested 2026-12-06T18:00:00Z (1h)" in page
    assert "Pending (WaitingForApprovals): (new) -> Pending: needs 2 approvals" in page
    # the form: csrf, buttons, no bundle -> how to see the policies
    assert '<input type="hidden" name="csrf" value="tok-123">' in html
    assert "start it with --bundle rendered/prod/bundle.json" in page
    assert ('method="get"' not in html) and html.count('method="post"') == 3
    assert '<textarea id="reject-reason" name="reason" rows="3" maxlength="1024" required>' in html


def test_each_button_names_the_request_the_page_shows() -> None:
    """The forms carry the request's uid and spec digest: a click signs for that request,
    never for another made since under the same name (console.actions refuses it)."""
    request = fakes.make_request("shown-jjjjj")
    html = request_page(fakes.FakeState([request]), fakes.FakeClient(), ALICE, "shown-jjjjj")
    uid, digest = request["metadata"]["uid"], request["spec"]["specDigest"]
    assert uid and digest
    assert html.count(f'<input type="hidden" name="uid" value="{uid}">') == 3
    assert html.count(f'<input type="hidden" name="digest" value="{digest}">') == 3
    # and the pin of the request with the content the page shows: content rewritten after
    # the page was read is not signed (file_decision compares the pin, as --expect does)
    pin = _queue.pin(request, [fakes.IMPLEMENTATION_SPEC, fakes.AGENT])
    assert html.count(f'<input type="hidden" name="pin" value="{pin}">') == 3
    changed = {**fakes.IMPLEMENTATION_SPEC, "spec": {"text": "push to main"}}
    assert _queue.pin(request, [changed, fakes.AGENT]) != pin


def test_refusals_are_shown_before_any_click() -> None:
    request = fakes.make_request("own-hhhhh", requester="alice", eligible=("bob", "carol"))
    html = request_page(fakes.FakeState([request]), fakes.FakeClient(), ALICE, "own-hhhhh")
    assert '<button type="submit" class="approve" disabled aria-describedby="why-approve">' in html
    assert "you cannot approve your own request: it was requested by alice" in text(html)
    assert '<button type="submit" class="reject">' in html  # reject is allowed


def test_forbidden_implementation_spec_is_said_in_place() -> None:
    request = fakes.make_request("secret-iiiii")
    client = fakes.FakeClient(errors={"implementationspecs/codex-impl-sample": 403})
    page = text(request_page(fakes.FakeState([request]), client, ALICE, "secret-iiiii"))
    assert "you may not read ImplementationSpec agents/codex-impl-sample (HTTP 403)" in page
    assert "model: gpt-5-codex" in page  # the Agent is still shown


def test_missing_agent_and_forbidden_events() -> None:
    request = fakes.make_request("lonely-jjjjj")
    client = fakes.FakeClient(
        objects={"implementationspecs/codex-impl-sample": fakes.IMPLEMENTATION_SPEC},
        errors={"/events": 403},
    )
    page = text(request_page(fakes.FakeState([request]), client, ALICE, "lonely-jjjjj"))
    assert "Agent agents/codex-agent does not exist (HTTP 404)" in page
    assert "Events not shown: you may not list events in namespace agents (HTTP 403)" in page


def test_unknown_request_says_so() -> None:
    page = text(request_page(fakes.FakeState([]), fakes.FakeClient(), ALICE, "gone"))
    assert "The console does not see an ApprovalRequest agents/gone" in page


def test_policies_with_the_bundle() -> None:
    bundle = parse_bundle_text(compile_case_bundle(BASE))
    me = fakes.Me(user="alice", approver="alice", bundle=bundle)
    request = fakes.make_request("policy-kkkkk")
    page = text(request_page(fakes.FakeState([request]), fakes.FakeClient(), me, "policy-kkkkk"))
    assert "agents/two-person (enforcement" in page
    assert "requires 2 approvals from group:platform-leads, carol, requester" in page
    assert "a reject blocks (veto)" in page and "bypass by oncall" in page


def test_resubmitted_run_shows_the_diff_against_the_last_approved_spec() -> None:
    now = fakes.now()
    before = fakes.make_request(
        "nightly-aaaa1",
        phase="Submitted",
        created=now - timedelta(days=1),
        spec=fakes.run_spec(image="1.4.1"),
    )
    after = fakes.make_request("nightly-bbbb2", spec=fakes.run_spec(image="1.4.2"))
    unrelated = fakes.make_request("weekly-cccc3", phase="Submitted")
    state = fakes.FakeState([before, after, unrelated])
    html = request_page(state, fakes.FakeClient(), ALICE, "nightly-bbbb2")
    page = text(html)
    assert "Changes since the last approved request" in page
    assert "Compared with agents/nightly-aaaa1 (Submitted)" in page
    assert '<span class="d-del">-  image: ghcr.io/proompteng/codex-runner:1.4.1</span>' in html
    assert '<span class="d-add">+  image: ghcr.io/proompteng/codex-runner:1.4.2</span>' in html
    first = text(request_page(state, fakes.FakeClient(), ALICE, "weekly-cccc3"))
    assert "Changes since" not in first


def test_request_flash_and_error_stay_outside_the_live_fragment() -> None:
    """What the last decision did is on the page, outside the part the live update swaps
    (else the next change of the cluster would erase it at once)."""
    request = fakes.make_request("err-lllll")
    state = fakes.FakeState([request])

    def render(fragment: bool) -> str:
        return pages.render_request(
            state,
            fakes.FakeClient(),
            "agents",
            "err-lllll",
            ALICE,
            "tok",
            fragment,
            flash="approved: created ApprovalDecision agents/err-lllll-x1",
            error=("a reject needs a reason", "say why in the reason"),
            now=fakes.now(),
        )

    whole, fragment = render(False), render(True)
    page = text(whole)
    assert "approved: created ApprovalDecision agents/err-lllll-x1" in page
    assert "a reject needs a reason What to do: say why in the reason" in page
    live = whole[whole.index('<div id="fragment"') :]
    assert "approved: created ApprovalDecision" not in live
    assert "<html" not in fragment
    assert "approved: created ApprovalDecision" not in fragment
    assert "a reject needs a reason" not in fragment


def test_assets_ship_in_the_package_and_need_no_inline_code() -> None:
    from importlib.resources import files

    static = files("approvalgate.console").joinpath("static")
    script = static.joinpath("console.js").read_text()
    css = static.joinpath("console.css").read_text()
    assert 'new EventSource("/events"' in script and '"changed"' in script
    assert 'credentials: "same-origin"' in script
    assert "eval(" not in script and "://" not in script  # no CDN, no code from strings
    assert ":focus-visible" in css and "@import" not in css and "url(" not in css
    for name in ("base.html", "queue.html", "_queue.html", "request.html", "_request.html"):
        template = files("approvalgate.console").joinpath("templates", name).read_text()
        assert "<script>" not in template and " style=" not in template
        assert " on" + "click=" not in template


def test_decisions_judged_as_the_webhook_judges_them_with_the_bundle() -> None:
    from approvalgate.approvals.policy import BundleSettings

    settings = BundleSettings(environment="prod", cluster_view="required", referenced_content="off")
    bundle = parse_bundle_text(compile_case_bundle(BASE, settings))
    me = fakes.Me(user="dave", approver="dave", bundle=bundle)
    request = fakes.make_request("judged-mmmmm", approved=("bob",))
    decisions = [
        fakes.make_decision(request, "bob", "approve", reason="fine", order=1),
        fakes.make_decision(request, "stranger", "approve", order=2),
    ]
    state = fakes.FakeState([request], decisions)
    html = request_page(state, fakes.FakeClient(), me, "judged-mmmmm")
    rows = html.split('<table class="decisions">')[1].split("</table>")[0].split("<tr>")[2:]
    assert '<span class="ok">yes</span>' in rows[0]
    assert '<span class="no">no</span>' in rows[1] and "(policy agents/two-person)" in rows[1]
