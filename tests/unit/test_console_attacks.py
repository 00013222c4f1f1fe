"""The console attacked (a fourth red-team pass, docs/design.md "Known limits"): as a
requester who wants the approver to sign something other than what they read, or to act
without meaning to, and as another local user or a web page in the approver's browser.

The pages are the real ones (console/pages.py, console/actions.py) over an in-memory state
and a client answering fixed reads (tests/support/console_fakes.py); the security around
them is the real aiohttp application on 127.0.0.1 (console/app.py), through aiohttp's test
client. The real API server and a real browser: tests/e2e/test_console_browser.py.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable, Coroutine
from html import unescape
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from approvalgate.approvals.hidden_text import is_hidden
from approvalgate.commands import _queue
from approvalgate.console import app as console_app
from approvalgate.console import pages
from tests.support import console_fakes as fakes

NAME = "swap-aaaaa"
SIGNER: Any = object()  # only its presence matters: nothing is signed here
ALICE = fakes.Me(user="alice", approver="alice", signer=SIGNER)


def text(html: str) -> str:
    """The page's visible text, whitespace folded."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def form_values(html: str, field: str) -> list[str]:
    """The values of the hidden ``field`` of every form of ``html``."""
    return re.findall(rf'<input type="hidden" name="{field}" value="([^"]*)">', html)


def approve_enabled(html: str) -> bool:
    return '<button type="submit" class="approve">' in html


Scenario = Callable[[TestClient[Any, Any], console_app.Console], Coroutine[Any, Any, None]]


def serve(console: console_app.Console, scenario: Scenario) -> None:
    async def main() -> None:
        server = TestServer(console_app.create_app(console), host="127.0.0.1")
        async with TestClient(server) as http:
            console.port = server.port or 0
            await scenario(http, console)

    asyncio.run(main())


def fake_console(state: fakes.FakeState, client: fakes.FakeClient) -> console_app.Console:
    return console_app.Console(state=state, client=client, me=ALICE)  # type: ignore[arg-type]


async def sign_in(http: TestClient[Any, Any], console: console_app.Console) -> None:
    response = await http.get(f"/?token={console.token}", allow_redirects=False)
    assert response.status == 303


# --- a live update never changes what a click signs -----------------------------------------


def test_a_live_update_never_changes_what_a_click_on_the_page_signs() -> None:
    """The page's forms carry the pin of what it showed; a live update swapped in the
    server's fragment, forms included, rendered from the request and content as they are
    now. A requester who rewrote the task text (or had the request made again under its
    name) while the approver read it, then touched any request to wake the page, had the
    next click sign what the approver never read: the swap carried the new pin. Now the
    page's script asks for its fragment with what the page opened on, and a fragment of a
    request that is not that one shows it, says so, keeps the forms of what was opened and
    offers no button but a reload."""
    request = fakes.make_request(NAME)
    state = fakes.FakeState([request])
    client = fakes.FakeClient()
    console = fake_console(state, client)
    opened_pin = _queue.pin(request, [fakes.IMPLEMENTATION_SPEC, fakes.AGENT])
    uid, digest = request["metadata"]["uid"], request["spec"]["specDigest"]

    async def scenario(http: TestClient[Any, Any], console: console_app.Console) -> None:
        await sign_in(http, console)
        page = await (await http.get(f"/requests/agents/{NAME}")).text()
        assert form_values(page, "pin") == [opened_pin] * 3 and approve_enabled(page)
        found = re.search(r'data-fragment="([^"]+)"', page)
        assert found, page
        fragment_url = unescape(found.group(1))
        assert dict(parse_qsl(urlsplit(fragment_url).query)) == {
            "uid": uid,
            "digest": digest,
            "pin": opened_pin,
        }

        # nothing changed: the fragment is the page's live part, its buttons as they were
        same = await (await http.get(fragment_url)).text()
        assert form_values(same, "pin") == [opened_pin] * 3 and approve_enabled(same)
        assert "changed since you opened" not in text(same)

        # the task text rewritten while the approver reads: the update shows it, but no
        # click signs it (nor rejects what was not read)
        rewritten = {**fakes.IMPLEMENTATION_SPEC, "spec": {"text": "push to main, skip review"}}
        client.objects["implementationspecs/codex-impl-sample"] = rewritten
        swapped = await (await http.get(fragment_url)).text()
        assert "push to main, skip review" in text(swapped)
        new_pin = _queue.pin(request, [rewritten, fakes.AGENT])
        assert new_pin not in swapped
        assert form_values(swapped, "pin") == [opened_pin] * 3
        assert not approve_enabled(swapped)
        assert swapped.count('type="submit"') == swapped.count("disabled aria-describedby")
        assert "this request changed since you opened its page" in text(swapped)
        assert "reload the page to read it as it is now, then decide" in text(swapped)

        # the request deleted and made again under its name, for another run
        again = fakes.make_request(NAME, uid="uid-made-again", spec=fakes.run_spec("rm -rf /"))
        state.request_objects[:] = [again]
        client.objects["implementationspecs/codex-impl-sample"] = fakes.IMPLEMENTATION_SPEC
        replaced = await (await http.get(fragment_url)).text()
        assert "rm -rf /" in text(replaced)
        assert form_values(replaced, "uid") == [uid] * 3
        assert form_values(replaced, "digest") == [digest] * 3
        assert form_values(replaced, "pin") == [opened_pin] * 3
        assert not approve_enabled(replaced)
        assert "this request changed since you opened its page" in text(replaced)

        # a fragment asked for without what its page opened on (not the page's script)
        # offers no button either
        bare = await (await http.get(f"/fragment/request/agents/{NAME}")).text()
        assert not approve_enabled(bare) and "changed since you opened" in text(bare)

        # a reload reads the request as it is now: its buttons sign that
        fresh = await (await http.get(f"/requests/agents/{NAME}")).text()
        again_pin = _queue.pin(again, [fakes.IMPLEMENTATION_SPEC, fakes.AGENT])
        assert form_values(fresh, "pin") == [again_pin] * 3 and approve_enabled(fresh)

    serve(console, scenario)


def test_a_refused_click_answers_with_a_page_that_signs_nothing_new(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A click from a page whose content was rewritten since is refused ("not as you read
    it"), and the answer is the request's page with the error. That page was rendered from
    the request as it is now, its Approve enabled with the new pin, right where a double
    click's second click, or a second try, lands: the rewritten text signed unread. The
    answer now keeps the forms of what was clicked, says it changed and disables every
    button; a reload reads it anew."""
    from approvalgate.console import actions

    request = fakes.make_request(NAME)
    client = fakes.FakeClient()
    console = fake_console(fakes.FakeState([request]), client)
    opened_pin = _queue.pin(request, [fakes.IMPLEMENTATION_SPEC, fakes.AGENT])

    def refuse(*args: Any, seen: Any = None) -> str:
        raise actions.Refused(f"ApprovalRequest agents/{NAME} is not as you read it", status=409)

    monkeypatch.setattr(actions, "decide", refuse)

    async def scenario(http: TestClient[Any, Any], console: console_app.Console) -> None:
        await sign_in(http, console)
        page = await (await http.get(f"/requests/agents/{NAME}")).text()
        form = {
            name: values[0]
            for name in ("csrf", "uid", "digest", "pin")
            if (values := form_values(page, name))
        }
        rewritten = {**fakes.IMPLEMENTATION_SPEC, "spec": {"text": "push to main, skip review"}}
        client.objects["implementationspecs/codex-impl-sample"] = rewritten
        answer = await http.post(
            f"/requests/agents/{NAME}/decide",
            data={**form, "decision": "approve"},
            headers={"Origin": f"http://127.0.0.1:{console.port}"},
        )
        assert answer.status == 409
        refused = await answer.text()
        assert "is not as you read it" in text(refused)
        assert form_values(refused, "pin") == [opened_pin] * 3
        assert not approve_enabled(refused)
        assert "this request changed since you opened its page" in text(refused)
        fresh = await (await http.get(f"/requests/agents/{NAME}")).text()
        assert approve_enabled(fresh) and opened_pin not in form_values(fresh, "pin")

    serve(console, scenario)


def test_the_page_script_fetches_the_fragment_url_the_server_wrote() -> None:
    """console.js joined the page's own query to the fragment's URL: a crafted link to a
    request's page (``?pin=...``) would have put its values after those the page opened on.
    The server writes the whole URL now, the queue's filters included; the script adds
    nothing."""
    from approvalgate.console.app import STATIC_DIR

    script = (STATIC_DIR / "console.js").read_text()
    assert "location.search" not in script
    state = fakes.FakeState([fakes.make_request(NAME)])
    page = pages.render_queue(state, {"view": "all", "age": "5m", "x": "1"}, ALICE, "t", False)
    assert 'data-fragment="/fragment/queue?view=all&amp;age=5m"' in page


# --- what the requester wrote shows as the CLI shows it -------------------------------------

HIDDEN = {
    "bidi override": "\u202e",
    "zero width space": "\u200b",
    "tag characters": "".join(chr(0xE0000 + ord(c)) for c in "rm -rf"),
    "ANSI escape": "\x1b[8m",
    "line separator": "\u2028",
    "paragraph separator": "\u2029",
    "next line": "\x85",
}


@pytest.mark.parametrize("what", sorted(HIDDEN))
def test_no_field_of_a_page_shows_text_the_approver_cannot_see(what: str) -> None:
    """`approvalgate status` writes what others wrote (reason, message, names, a decision's
    reason, an Event's note) with hidden characters and line breaks as <U+XXXX>; the page
    escaped only the run's YAML and the content, so a reason with a bidi override read in
    another order than stored, a zero-width or tag character or an escape code showed as
    nothing. Now every value a template shows, in text and in attributes, is escaped so,
    on both pages and their fragments."""
    hidden = HIDDEN[what]
    said = f"routine{hidden}fix"
    request = fakes.make_request(NAME, requester=f"mallory{hidden}", reason=said)
    request["status"]["message"] = said
    request["status"]["reason"] = f"Waiting{hidden}"
    decision = fakes.make_decision(request, "bob", "reject", reason=said, key="bob")
    events = [{"eventTime": "2026-12-06T18:00:01Z", "action": said, "reason": said, "note": said}]
    state = fakes.FakeState([request], [decision], problem_lines=[said])
    client = fakes.FakeClient(events=events)
    shown = [
        pages.render_request(state, client, "agents", NAME, ALICE, "t", fragment, now=fakes.now())
        for fragment in (False, True)
    ] + [
        pages.render_queue(state, {"view": "all", "namespace": said}, ALICE, "t", fragment)
        for fragment in (False, True)
    ]
    for page in shown:
        assert not [c for c in page if is_hidden(c) or c in "\u2028\u2029\x85"], what
        assert f"<U+{ord(hidden[0]):04X}>" in unescape(page)


def test_a_page_shows_where_blank_lines_hide_the_rest_of_a_text() -> None:
    """A task text of one line, thousands of blank lines, then what the agent is really
    told: its box showed the first line and a scroll bar (the page's boxes hold 32 lines),
    so the rest read as nothing. `status` prints every line; the page now writes a run of
    blank lines as one line saying how many, in the task text, the YAML of the content and
    of the run, and says how many lines a text has."""
    tail = "then push to main, skip review"
    text_ = "Tidy the report.\n" + "\n" * 3000 + "   \n" * 500 + tail
    spec = {**fakes.IMPLEMENTATION_SPEC, "spec": {"summary": "tidy", "text": text_}}
    agent = {**fakes.AGENT, "spec": {"prompt": "Be brief.\n" + "\n" * 400 + tail}}
    run = fakes.run_spec(task="tidy" + "\n" * 100 + tail)
    request = fakes.make_request(NAME, spec=run)
    client = fakes.FakeClient(
        {"implementationspecs/codex-impl-sample": spec, "agents/codex-agent": agent}
    )
    html = pages.render_request(
        fakes.FakeState([request]), client, "agents", NAME, ALICE, "t", False, now=fakes.now()
    )
    assert "<3500 blank lines>" in unescape(html)
    assert "Tidy the report.\n<3500 blank lines>\n" + tail in unescape(html)
    assert "(3502 lines)" in text(html)
    # in YAML (a quoted text's line breaks are blank lines there): the Agent's and the run's
    assert re.search(r"prompt: 'Be brief\.\n<40\d blank lines>\n +" + tail, unescape(html))
    assert re.search(r"task: 'tidy\n<\d{3} blank lines>\n +" + tail, unescape(html))
    # the longest run of lines that show as nothing, anywhere on the page
    blank = max(len(run) for run in re.findall(r"(?:\n[ \t]*)+", unescape(html)))
    assert blank < 20, blank


FILLERS = {
    "blank lines": "\n" * 3000,
    "lines of no-break spaces": "\u00a0\n" * 3000,
    "lines of ideographic spaces": "\u3000\n" * 3000,
    "one line of spaces": " " * 200_000,
    "one line of no-break spaces": "\u00a0" * 200_000,
    "one line of em spaces and tabs": "\u2003\t" * 100_000,
}


@pytest.mark.parametrize("filler", sorted(FILLERS))
def test_no_blank_space_pushes_the_rest_of_a_text_out_of_its_box(filler: str) -> None:
    """Not only empty lines: lines of other blank characters (a no-break space, an
    ideographic space), and one line of 200,000 spaces, which the box wraps into thousands
    of blank rows, showed as nothing and pushed what followed out of sight. Any run of blank
    characters (outside a short indentation) is shown as one marker saying how many."""
    tail = "then push to main, skip review"
    task = "Tidy the report.\n" + FILLERS[filler] + tail
    spec = {**fakes.IMPLEMENTATION_SPEC, "spec": {"summary": "tidy", "text": task}}
    client = fakes.FakeClient(
        {"implementationspecs/codex-impl-sample": spec, "agents/codex-agent": fakes.AGENT}
    )
    html = unescape(
        pages.render_request(
            fakes.FakeState([fakes.make_request(NAME)]), client, "agents", NAME, ALICE, "t", False
        )
    )
    start = html.index("Tidy the report.")
    between = html[start + len("Tidy the report.") : html.index(tail, start)]
    assert len(between) < 40, (filler, between[:80])
    assert re.fullmatch(r"\n?<\d+ (blank lines|blank characters|spaces)>\n?", between), between[:80]


def test_a_long_line_wraps_in_every_box_of_the_page() -> None:
    """A task of one long word (no space to wrap at) scrolled sideways in its box, what
    came after it off screen; the boxes break anywhere now."""
    from approvalgate.console.app import STATIC_DIR

    css = (STATIC_DIR / "console.css").read_text()
    rule = next(line for line in css.splitlines() if line.startswith("pre {"))
    assert "white-space: pre-wrap" in rule and "overflow-wrap: anywhere" in rule


def test_the_page_shows_the_digest_of_the_run_it_shows_not_the_requesters_word() -> None:
    """`status` shows the digest computed from the run (spec.specDigest is the requester's
    word, which a cluster without the webhook lets her write) and says when they differ,
    and `approve|reject|withdraw` refuse such a request. The page showed the claimed digest,
    the one an approver compares with a pull request's, and offered every button; each
    click was then refused. It now shows the run's digest, the claim beside it, and says
    why before any click."""
    from approvalgate.approvals.digest import spec_digest

    request = fakes.make_request(NAME)
    claimed = "0" * 64
    request["spec"]["specDigest"] = claimed
    html = pages.render_request(
        fakes.FakeState([request]), fakes.FakeClient(), "agents", NAME, ALICE, "t", False
    )
    computed = spec_digest(request["spec"]["run"]["spec"])
    page = text(html)
    assert f"Spec digest sha256:{computed}" in page
    assert f"spec.specDigest {claimed} is not the digest of the run it embeds" in page
    assert not approve_enabled(html)
    assert html.count("disabled aria-describedby") == 3


def test_every_link_and_form_of_the_pages_stays_on_the_console() -> None:
    """Already so, now tested: no requester-controlled value becomes a URL. Every href,
    action and fragment URL of both pages and their fragments is a path of the console
    (one leading slash), whatever the names, reasons and filters hold."""
    hostile = 'javascript:alert(1)//"><a href="//evil.example'
    request = fakes.make_request(NAME, requester=hostile, reason=hostile)
    earlier = fakes.make_request("swap-bbbbb", phase="Approved", spec=fakes.run_spec(hostile))
    decision = fakes.make_decision(request, "bob", "reject", reason=hostile, key="bob")
    state = fakes.FakeState([request, earlier], [decision], problem_lines=[hostile])
    shown = [
        pages.render_request(state, fakes.FakeClient(), "agents", NAME, ALICE, "t", fragment)
        for fragment in (False, True)
    ] + [
        pages.render_queue(state, {"view": "all", "namespace": hostile}, ALICE, "t", fragment)
        for fragment in (False, True)
    ]
    for page in shown:
        urls = re.findall(r'(?:href|action|src|data-fragment)="([^"]*)"', page)
        assert urls
        for url in urls:
            assert url.startswith(("/", "#")) and not url.startswith("//"), url


# --- a form of one request posted for another -----------------------------------------------


def test_a_form_of_one_request_posted_for_another_is_not_signed() -> None:
    """Already refused, now tested: the forms name their request's uid and digest, so a
    form of request A sent to B's URL (a crafted page, a request of the same spec) signs
    nothing, whatever button."""
    from approvalgate.console.actions import Refused, Seen, decide

    shown = fakes.make_request("request-a")
    other = fakes.make_request("request-b")
    client: Any = fakes.FakeClient({"approvalrequests/request-b": other})
    seen = Seen(
        shown["metadata"]["uid"],
        shown["spec"]["specDigest"],
        _queue.pin(shown, [fakes.IMPLEMENTATION_SPEC, fakes.AGENT]),
    )
    for button in ("approve", "reject", "withdraw"):
        with pytest.raises(Refused, match="is not the request this page showed") as caught:
            decide(client, ALICE, "agents", "request-b", button, "x", seen=seen)  # type: ignore[arg-type]
        assert caught.value.status == 409
    assert all(method == "GET" for method, _ in client.calls)


# --- the link with the token ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/%5Cevil.example", "/%5C%5Cevil.example/x", "/%09/evil.example"])
def test_the_link_with_the_token_never_sends_the_browser_elsewhere(path: str) -> None:
    """The token's redirect drops the token and keeps the path. It stripped leading slashes
    only, so a path starting with a backslash or a tab (``/%5Cevil.example``) became a
    Location a browser reads as ``//evil.example``, another site (browsers take a backslash for
    ``/`` and drop tabs). Only with the launch's token, so not a way in; the path is now
    written percent-encoded."""
    console = fake_console(fakes.FakeState([]), fakes.FakeClient())

    async def scenario(http: TestClient[Any, Any], console: console_app.Console) -> None:
        response = await http.get(f"{path}?token={console.token}", allow_redirects=False)
        assert response.status == 303
        location = response.headers["Location"]
        assert location.startswith("/") and location[1:2] not in ("/", "\\"), location
        assert location.isascii() and location.isprintable(), location
        assert "\\" not in location and "\t" not in location, location

    serve(console, scenario)


# --- another local user ----------------------------------------------------------------------


def test_another_local_user_is_refused_whatever_they_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """The console binds 127.0.0.1, which every user of the machine reaches. The token is in
    the link the console printed and opened (a browser's command line, which `ps` shows to
    every user), and the session cookie is sent by the browser to every port of
    127.0.0.1 (cookies ignore ports: another user's server on another port receives it).
    Either let another local user read every request and approve as the approver, whose
    signer is in the console. Now each connection must come from a process of the
    console's own user (the kernel's socket table), else 403 before anything else."""
    request = fakes.make_request(NAME)
    console = fake_console(fakes.FakeState([request]), fakes.FakeClient())
    owners: list[int | None] = []
    real = console_app.socket_owner

    def owner(peer: Any, local: Any) -> int | None:
        found = real(peer, local)
        owners.append(found)
        return found if not stranger else found + 1 if found is not None else None

    stranger = False
    monkeypatch.setattr(console_app, "socket_owner", owner)

    async def scenario(http: TestClient[Any, Any], console: console_app.Console) -> None:
        nonlocal stranger
        await sign_in(http, console)
        session = http.session.cookie_jar.filter_cookies(http.make_url("/"))[console.cookie]
        assert (await http.get(f"/requests/agents/{NAME}")).status == 200
        stranger = True
        csrf = console.csrf_token(session.value)
        tries = [
            http.get(f"/?token={console.token}", allow_redirects=False),
            http.get(f"/requests/agents/{NAME}"),
            http.get(f"/fragment/request/agents/{NAME}"),
            http.get("/events"),
            http.post(
                f"/requests/agents/{NAME}/decide",
                data={"decision": "approve", "csrf": csrf},
                headers={"Origin": f"http://127.0.0.1:{console.port}"},
            ),
        ]
        for attempt in tries:
            response = await attempt
            assert response.status == 403
            said = await response.text()
            assert "another user of this machine" in said
            assert NAME not in said

    serve(console, scenario)
    import os

    assert owners and owners[0] == os.geteuid()


def test_the_owner_of_a_loopback_connection_is_read_from_the_kernel() -> None:
    """socket_owner finds the user of the other end of a real connection to 127.0.0.1 (IPv4
    and an IPv6 socket reaching it as ::ffff:127.0.0.1), and None for a socket that is not
    there (closed: refused)."""
    import os

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(2)
    try:
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::ffff:127.0.0.1")):
            peer = socket.socket(family, socket.SOCK_STREAM)
            peer.connect((host, server.getsockname()[1]))
            accepted, address = server.accept()
            local = accepted.getsockname()
            with peer, accepted:
                assert console_app.socket_owner(address, local) == os.geteuid()
            assert console_app.socket_owner(address, local) is None
    finally:
        server.close()


def test_a_process_of_another_user_is_refused_by_the_listening_console() -> None:
    """The console as it listens (console.app.start on 127.0.0.1), opened with its own link
    by a process of another user (uid 65534, through setpriv: the tests run as root, as on
    the project's machines and CI): 403, and the same link still works for its user."""
    import os
    import subprocess
    import sys
    import urllib.request

    AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    assert os.geteuid() == 0, "this test runs a client as another user: run it as root"
    request = fakes.make_request(NAME)
    console = fake_console(fakes.FakeState([request]), fakes.FakeClient())
    fetch = (
        "import sys, urllib.request, urllib.error\n"
        "opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())\n"
        "try:\n    opener.open(sys.argv[1]); print(200)\n"
        "except urllib.error.HTTPError as e:\n    print(e.code, e.read().decode())\n"
    )

    async def main() -> None:
        runner = await console_app.start(console, 0)
        try:
            other = await asyncio.to_thread(
                subprocess.run,
                [*AS_NOBODY, sys.executable, "-I", "-c", fetch, console.url],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert other.stdout.startswith("403 "), other.stdout + other.stderr
            assert "another user of this machine (uid 65534)" in other.stdout
            assert NAME not in other.stdout
            browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
            mine = await asyncio.to_thread(browser.open, console.url, timeout=30)
            assert mine.status == 200 and NAME in mine.read().decode()
        finally:
            await runner.cleanup()

    asyncio.run(main())
