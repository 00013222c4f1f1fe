"""The console's security around every request (approvalgate/console/app.py), through
aiohttp's test client on 127.0.0.1: the per-launch token, the session cookie, the Host check
(DNS rebinding), CSRF with Origin, the headers on every response; and the command's refusal
of any --host but 127.0.0.1.

The state is a real ConsoleState (not started: no API server is needed to test the
gatekeeping). The pages are console/pages.py when it is there, else a placeholder installed
by this file only; a decision is a placeholder here (console/actions.py is tested with the
real API server in tests/e2e)."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import types
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from approvalgate.approvals.errors import ApprovalgateError
from approvalgate.cli import main
from approvalgate.console import app as console_app
from approvalgate.console.identity import Me
from approvalgate.console.state import ConsoleState
from approvalgate.kube.client import Client

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def assert_secured(response: ClientResponse) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status, response.url)


# --- placeholders for the modules other helpers write -------------------------------------


def _placeholder_pages() -> types.ModuleType:
    module = types.ModuleType("approvalgate.console.pages")

    def render_queue(state: Any, filters: Any, me: Any, csrf: str, fragment: bool) -> str:
        return f"<p>queue {dict(filters)} csrf={csrf} fragment={fragment}</p>"

    def render_request(
        state: Any,
        client: Any,
        namespace: str,
        name: str,
        me: Any,
        csrf: str,
        fragment: bool,
        flash: str = "",
        error: tuple[str, str] | None = None,
    ) -> str:
        return f"<p>request {namespace}/{name} flash={flash} error={error}</p>"

    module.render_queue = render_queue  # type: ignore[attr-defined]
    module.render_request = render_request  # type: ignore[attr-defined]
    return module


@pytest.fixture
def decided(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """console.pages (the real one when present), and console.actions.decide recording its
    calls: a reason "refuse" makes it refuse as the CLI would."""
    import approvalgate.console as package

    try:
        importlib.import_module("approvalgate.console.pages")
    except ImportError:
        pages = _placeholder_pages()
        monkeypatch.setitem(sys.modules, "approvalgate.console.pages", pages)
        monkeypatch.setattr(package, "pages", pages, raising=False)
    try:
        actions = importlib.import_module("approvalgate.console.actions")
    except ImportError:
        actions = types.ModuleType("approvalgate.console.actions")
        monkeypatch.setitem(sys.modules, "approvalgate.console.actions", actions)
        monkeypatch.setattr(package, "actions", actions, raising=False)
    calls: list[tuple[Any, ...]] = []

    def decide(
        client: Any,
        me: Me,
        namespace: str,
        name: str,
        decision: str,
        reason: str,
        *,
        seen: Any = None,
    ) -> str:
        calls.append((namespace, name, decision, reason))
        if reason == "refuse":
            raise ApprovalgateError(
                f"you cannot approve your own request: it was requested by {me.user}",
                advice="ask another approver",
            )
        return f"{decision}d {namespace}/{name}"

    monkeypatch.setattr(actions, "decide", decide, raising=False)
    return calls


# --- a console on 127.0.0.1 -----------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    """A client for an API server nobody serves (the state is never started here)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "a"}}],
        "current-context": "c",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    with Client.connect(path) as connected:
        yield connected


@pytest.fixture
def console(client: Client) -> console_app.Console:
    state = ConsoleState(client, ["agents"])
    return console_app.Console(state=state, client=client, me=Me(user="alice", approver="alice"))


Scenario = Callable[[TestClient[Any, Any], console_app.Console], Coroutine[Any, Any, None]]


def serve(console: console_app.Console, scenario: Scenario, static_dir: Path | None = None) -> None:
    async def main() -> None:
        kwargs = {"static_dir": static_dir} if static_dir is not None else {}
        server = TestServer(console_app.create_app(console, **kwargs), host="127.0.0.1")
        async with TestClient(server) as http:
            console.port = server.port or 0
            await scenario(http, console)

    asyncio.run(main())


async def signed_in(http: TestClient[Any, Any], console: console_app.Console) -> str:
    """Open the link with the token; the session it set."""
    response = await http.get(f"/?token={console.token}", allow_redirects=False)
    assert response.status == 303
    cookie = response.cookies[console.cookie]
    return cookie.value


# --- the token and the session ----------------------------------------------------------------


def test_without_the_token_every_page_is_401_and_says_what_to_open(
    console: console_app.Console,
) -> None:
    async def scenario(http: TestClient[Any, Any], console: console_app.Console) -> None:
        for path in ("/", "/requests/agents/x", "/fragment/queue", "/events"):
            response = await http.get(path)
            assert response.status == 401, path
            assert_secured(response)
            text = await response.text()
            assert "open the link `approvalgate console` printed" in text
        response = await http.get("/?token=" + "x" * 43)
        assert response.status == 401
        assert "the link&#x27;s token is not this console&#x27;s" in await response.text()
        assert not http.session.cookie_jar.filter_cookies(http.make_url("/"))

    serve(console, scenario)


def test_the_token_sets_an_httponly_strict_cookie_and_redirects_without_it(
    console: console_app.Console, decided: list[Any]
) -> None:
    async def scenario(http: TestClient[Any, Any], console: console_app.Console) -> None:
        response = await http.get(f"/?view=all&token={console.token}", allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == "/?view=all"
        assert_secured(response)
        header = response.headers["Set-Cookie"]
        assert header.startswith(f"approvalgate-console-{console.port}=")
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
            assert attribute in header
        # a request line of "//evil.example/": the redirect never leaves this site
        reader, writer = await asyncio.open_connection("127.0.0.1", console.port)
        writer.write(
            f"GET //evil.example/?token={console.token} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{console.port}\r\nConnection: close\r\n\r\n".encode()
        )
        raw = (await reader.read()).decode()
        writer.close()
        assert raw.startswith("HTTP/1.1 303"), raw
        assert "\r\nLocation: /evil.example/\r\n" in raw, raw
        page = await http.get("/?view=all")  # the jar sends the cookie
        assert page.status == 200
        assert_secured(page)
        # a cookie that is not a session of this launch
        http.session.cookie_jar.clear()
        http.session.cookie_jar.update_cookies({console.cookie: "forged"}, http.make_url("/"))
        assert (await http.get("/")).status == 401

    serve(console, scenario)


# --- Host (DNS rebinding) ---------------------------------------------------------------------


def test_a_foreign_host_is_403_even_with_the_token_or_a_session(
    console: console_app.Console, decided: list[Any]
) -> None:
    async def scenario(http: TestClient[Any, Any], console: console_app.Console) -> None:
        await signed_in(http, console)
        for host in (
            f"evil.example:{console.port}",
            "127.0.0.1",
            f"127.0.0.1:{console.port + 1}",
            f"[::1]:{console.port}",
        ):
            for path in ("/", f"/?token={console.token}", "/healthz", "/static/console.css"):
                response = await http.get(path, headers={"Host": host}, allow_redirects=False)
                assert response.status == 403, (host, path)
                assert_secured(response)
                assert f"answers only to 127.0.0.1:{console.port}" in await response.text()
        response = await http.get("/", headers={"Host": f"localhost:{console.port}"})
        assert response.status == 200

    serve(console, scenario)


# --- CSRF -----------------------------------------------------------------------------------


def test_a_post_needs_the_session_csrf_and_the_console_origin(
    console: console_app.Console, decided: list[Any]
) -> None:
    async def scenario(http: TestClient[Any, Any], console: console_app.Console) -> None:
        session = await signed_in(http, console)
        csrf = console.csrf_token(session)
        origin = f"http://127.0.0.1:{console.port}"
        url = "/requests/agents/nightly/decide"
        form = {"decision": "approve", "reason": ""}
        refused = [
            ({**form}, {"Origin": origin}, "no valid csrf token"),
            ({**form, "csrf": "0" * 64}, {"Origin": origin}, "no valid csrf token"),
            ({**form, "csrf": console.csrf_token("another")}, {"Origin": origin}, "csrf"),
            ({**form, "csrf": csrf}, {}, "Origin missing"),
            ({**form, "csrf": csrf}, {"Origin": "http://evil.example"}, "evil.example"),
            ({**form, "csrf": csrf}, {"Origin": "null"}, "Origin null"),
        ]
        for data, headers, said in refused:
            response = await http.post(url, data=data, headers=headers, allow_redirects=False)
            assert response.status == 403, (data, headers)
            assert_secured(response)
            assert said in await response.text()
        assert decided == []
        ok = {**form, "csrf": csrf}
        response = await http.post(url, data=ok, headers={"Origin": origin}, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == "/requests/agents/nightly"
        assert decided == [("agents", "nightly", "approve", "")]
        # the flash is shown once, on the next page of this session
        assert console.flashes
        page = await http.get("/requests/agents/nightly")
        assert page.status == 200
        assert "approved agents/nightly" in await page.text()
        assert not console.flashes

    serve(console, scenario)


def test_a_refused_decision_is_the_request_page_with_the_error_and_409(
    console: console_app.Console, decided: list[Any]
) -> None:
    async def scenario(http: TestClient[Any, Any], console: console_app.Console) -> None:
        session = await signed_in(http, console)
        response = await http.post(
            "/requests/agents/nightly/decide",
            data={"decision": "approve", "reason": "refuse", "csrf": console.csrf_token(session)},
            headers={"Origin": f"http://localhost:{console.port}"},
            allow_redirects=False,
        )
        assert response.status == 409
        assert_secured(response)
        assert "you cannot approve your own request" in await response.text()
        bad = await http.post(
            "/requests/agents/nightly/decide",
            data={"decision": "delete", "csrf": console.csrf_token(session)},
            headers={"Origin": f"http://127.0.0.1:{console.port}"},
        )
        assert bad.status == 400
        assert len(decided) == 1

    serve(console, scenario)


# --- headers on every response ----------------------------------------------------------------


def test_a_decision_names_the_request_its_page_showed(
    console: console_app.Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The POST hands the form's uid and spec digest to console.actions (which refuses a
    request made again since under the name); a form without them names none, refused."""
    from approvalgate.console import actions

    named: list[Any] = []

    def decide(*args: Any, seen: Any = None) -> str:
        named.append(seen)
        return "approved"

    monkeypatch.setattr(actions, "decide", decide)

    async def scenario(http: TestClient[Any, Any], console: console_app.Console) -> None:
        session = await signed_in(http, console)
        origin = {"Origin": f"http://127.0.0.1:{console.port}"}
        form = {"decision": "approve", "csrf": console.csrf_token(session)}
        for extra in ({"uid": "uid-1", "digest": "d" * 64}, {}):
            response = await http.post(
                "/requests/agents/nightly/decide",
                data={**form, **extra},
                headers=origin,
                allow_redirects=False,
            )
            assert response.status == 303

    serve(console, scenario)
    assert named == [actions.Seen("uid-1", "d" * 64), actions.Seen("", "")]


def test_every_response_carries_the_csp_and_the_other_headers(
    console: console_app.Console, decided: list[Any], tmp_path: Path
) -> None:
    static = tmp_path / "static"
    static.mkdir()
    (static / "console.css").write_text("body { margin: 0 }\n")
    (static / "console.js").write_text("'use strict';\n")
    (tmp_path / "secret.css").write_text("outside\n")

    async def scenario(http: TestClient[Any, Any], console: console_app.Console) -> None:
        health = await http.get("/healthz")  # no session needed
        assert (health.status, await health.text()) == (200, "ok\n")
        assert_secured(health)
        css = await http.get("/static/console.css")  # nor for assets (the 401 page uses it)
        assert css.status == 200
        assert css.headers["Content-Type"].startswith("text/css")
        assert_secured(css)
        js = await http.get("/static/console.js")
        assert js.headers["Content-Type"].startswith("text/javascript")
        assert_secured(js)
        for path in ("/static/..%2Fsecret.css", "/static/missing.css", "/static/.hidden.css"):
            response = await http.get(path)
            assert response.status == 404, path
            assert_secured(response)
        await signed_in(http, console)
        for path in ("/", "/fragment/queue?view=all", "/requests/agents/x", "/nothing-here"):
            response = await http.get(path)
            assert response.status in (200, 404), path
            assert_secured(response)

    serve(console, scenario, static_dir=static)


def test_the_event_stream_says_each_change_with_the_version(
    console: console_app.Console, decided: list[Any]
) -> None:
    async def scenario(http: TestClient[Any, Any], console: console_app.Console) -> None:
        await signed_in(http, console)
        response = await http.get("/events")
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert_secured(response)
        first = await read_event(response)
        assert first == {"version": console.state.version}
        # a change on another thread (as an informer's) wakes the stream
        await asyncio.to_thread(console.state._changed)
        second = await read_event(response)
        assert second == {"version": first["version"] + 1}
        response.close()

    serve(console, scenario)


async def read_event(response: ClientResponse) -> dict[str, Any]:
    lines: list[str] = []
    async with asyncio.timeout(30):
        while True:
            line = (await response.content.readline()).decode()
            if line == "\n" and lines:
                break
            lines.append(line.rstrip("\n"))
    assert lines[0] == "event: changed", lines
    data: dict[str, Any] = json.loads(lines[1].removeprefix("data: "))
    return data


# --- the command ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "localhost", "::1", "192.168.1.5"])
def test_console_refuses_any_host_but_loopback(
    capsys: pytest.CaptureFixture[str], host: str
) -> None:
    code = main(["console", "--host", host, "--no-open"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(
        f"error: --host {host}: the console listens on 127.0.0.1 only (it acts with your "
        "credentials and signer)"
    )
    assert "ssh -L PORT:127.0.0.1:PORT" in err


def test_console_signer_needs_an_approver(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["console", "--signer", "key.pem", "--no-open"])
    assert code == 2
    assert "--signer needs --approver NAME" in capsys.readouterr().err


def test_console_help_explains(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["console", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for said in ("127.0.0.1 only", "token", "--no-open", "Ctrl-C stops the console (exit 0)"):
        assert said in out
