"""The console's aiohttp application: the security around every request, and thin handlers.

Security (docs/design.md, "The console (issue 19)"), in the order a request meets it:

1. Host: ``127.0.0.1:PORT`` or ``localhost:PORT``, else 403. A page on another site that
   points a name it controls at 127.0.0.1 (DNS rebinding) sends its own name as Host.
2. The per-launch token: ``?token=T`` (compared in constant time) sets a session cookie
   (HttpOnly, SameSite=Strict, Path=/) and redirects to the same URL without the token, so
   the token leaves the address bar and the history. A wrong token is a 401.
3. The session cookie on every other request (constant-time compare), else the 401 page;
   ``/healthz`` and ``/static/`` need none (they hold no data, and the 401 page uses the
   stylesheet).
4. Every POST: a ``csrf`` form field equal to HMAC(launch secret, session), compared in
   constant time, and an Origin header of this console (:func:`check_csrf`), else 403.

Every response, errors, redirects, static files and the event stream included, carries the
Content-Security-Policy of :data:`CSP` and the headers of :data:`SECURITY_HEADERS`
(``on_response_prepare``: no handler can forget them).

The handlers are thin: the pages are :mod:`console.pages`', the decisions
:mod:`console.actions`'; what reads or writes the cluster runs in a thread
(``asyncio.to_thread``) so the event loop keeps serving the event streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import html
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode

from aiohttp import web

from approvalgate.approvals.errors import ApprovalgateError

if TYPE_CHECKING:
    from approvalgate.console.identity import Me
    from approvalgate.console.state import ConsoleState
    from approvalgate.kube.client import Client

COOKIE_PREFIX: Final = "approvalgate-console"
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer browsers send `Origin: null` with a
    # form's POST (Fetch, "serializing a request origin"), which check_csrf refuses; other
    # sites still get no Referer (and the token has left the address by then anyway)
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
LOOPBACK: Final = "127.0.0.1"
HOSTS: Final = (LOOPBACK, "localhost")
DECISIONS: Final = ("approve", "reject", "withdraw")
PING_SECONDS: Final = 15.0
COALESCE_SECONDS: Final = 0.1
"""After a change, how long the event stream waits for more before it says so: the first
list of 1,000 requests is one event, not 1,000 re-fetches."""
OPEN_PATHS: Final = ("/healthz", "/static/")
STATIC_DIR: Final = Path(__file__).parent / "static"
STATIC_TYPES: Final[Mapping[str, str]] = {
    ".css": "text/css",
    ".js": "text/javascript",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
LOGIN_ADVICE: Final = (
    "open the link `approvalgate console` printed when it started (it carries this launch's "
    "token); a console started again has a new token"
)


@dataclass
class Console:
    """What the handlers share: the state, the cluster client, who we are, the secrets."""

    state: ConsoleState
    client: Client
    me: Me
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    port: int = 0  # set once the listener is bound (port 0 picks one)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    sessions: set[str] = field(default_factory=set)
    flashes: dict[str, str] = field(default_factory=dict)  # session -> message for next page
    streams: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def cookie(self) -> str:
        """The cookie's name: per port, since browsers share cookies across the ports of a
        host, and two approvers on one machine run two consoles."""
        return f"{COOKIE_PREFIX}-{self.port}"

    @property
    def url(self) -> str:
        """The URL to open: with the token (what the command prints)."""
        return f"http://{LOOPBACK}:{self.port}/?token={self.token}"

    def origins(self) -> tuple[str, ...]:
        return tuple(f"http://{host}:{self.port}" for host in HOSTS)

    def new_session(self) -> str:
        session = secrets.token_urlsafe(32)
        self.sessions.add(session)
        return session

    def valid_session(self, value: str | None) -> bool:
        if not value:
            return False
        # constant time per session: no timing tells how much of a guess was right
        found = False
        for session in self.sessions:
            found |= hmac.compare_digest(value.encode(), session.encode())
        return found

    def csrf_token(self, session: str) -> str:
        return hmac.new(self.secret, session.encode(), hashlib.sha256).hexdigest()


CONSOLE: Final = web.AppKey("console", Console)


# --- what templates and handlers use ----------------------------------------------------------


def session_of(request: web.Request) -> str:
    """The request's session (its cookie, which the middleware checked)."""
    return request.cookies.get(request.app[CONSOLE].cookie, "")


def csrf_token(request: web.Request) -> str:
    """The ``csrf`` field every form of this session carries."""
    return request.app[CONSOLE].csrf_token(session_of(request))


def check_csrf(request: web.Request, form: Mapping[str, Any]) -> None:
    """Raise 403 unless ``form``'s ``csrf`` is this session's and Origin is this console's."""
    console = request.app[CONSOLE]
    origin = request.headers.get("Origin", "")
    if origin not in console.origins():
        raise forbidden(
            f"this form was not sent by the console (Origin {origin or 'missing'})",
            "submit the form from the console's own page",
        )
    given = form.get("csrf")
    expected = console.csrf_token(session_of(request))
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise forbidden(
            "this form carries no valid csrf token (a page of an older launch?)",
            "reload the page and submit it again",
        )


# --- the security middleware and headers ------------------------------------------------------


@web.middleware
async def security(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    console = request.app[CONSOLE]
    stranger = other_user(request)
    if stranger is not None:
        raise forbidden(
            f"this connection comes from another user of this machine ({stranger}), not from "
            "the user who started this console: nothing is shown or decided for it",
            "open the console's link in a browser of your own user; each person runs their "
            "own `approvalgate console`",
        )
    host = request.headers.get("Host", "")
    if host not in {f"{name}:{console.port}" for name in HOSTS}:
        raise forbidden(
            f"this console answers only to 127.0.0.1:{console.port}, not to Host {host!r}",
            f"open http://127.0.0.1:{console.port}/ (the link the console printed)",
        )
    if "token" in request.query:
        given = request.query["token"]
        if not hmac.compare_digest(given.encode(), console.token.encode()):
            raise unauthorized("the link's token is not this console's")
        kept = [(k, v) for k, v in request.query.items() if k != "token"]
        # one leading slash, the rest percent-encoded: "//host", "/\\host" or "/<tab>/host"
        # would send the browser to another site (browsers read "\\" as "/", drop tabs)
        path = quote(request.path.lstrip("/\\ \t\r\n"), safe="/-._~!$&'()*+,;=:@")
        location = "/" + path + (f"?{urlencode(kept)}" if kept else "")
        response = web.HTTPSeeOther(location)
        response.set_cookie(
            console.cookie,
            console.new_session(),
            httponly=True,
            samesite="Strict",
            path="/",
        )
        raise response
    if request.path == "/healthz" or request.path.startswith("/static/"):
        return await handler(request)
    session = request.cookies.get(console.cookie)
    if not console.valid_session(session):
        raise unauthorized("this page needs the console's link (with its token) first")
    return await handler(request)


SOCKET_TABLES: Final = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
"""The kernel's tables of TCP sockets (Linux), each with its owner's uid."""
ESTABLISHED: Final = "01"


def other_user(request: web.Request) -> str | None:
    """``uid N`` when the connection of ``request`` does not come from a process of the
    console's own user, else None. The console listens on 127.0.0.1, which every user of
    the machine reaches, and what lets a browser in can leak to them: the token is in the
    link a browser was started with (its command line, which ``ps`` shows every user), and
    browsers send a host's cookies to each of its ports (another user's server on another
    port of 127.0.0.1 receives the session cookie). So each connection must come from a
    socket the console's user owns, as the kernel's socket table says (an ssh tunnel's end
    is the user's sshd process: it passes). Where there is no such table (not Linux) this
    is not checked; a connection the table does not show (closed meanwhile) is refused."""
    import os

    if not SOCKET_TABLES[0].exists():
        return None
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    local = transport.get_extra_info("sockname") if transport is not None else None
    owner = socket_owner(peer, local) if peer and local else None
    if owner is not None and owner == os.geteuid():
        return None
    return f"uid {owner}" if owner is not None else "a socket the kernel does not list"


def socket_owner(peer: Any, local: Any) -> int | None:
    """The uid owning the TCP socket at address ``peer`` connected to ``local`` (both on
    this machine: ``(host, port)``), from the kernel's socket tables; None when neither
    lists such an established connection."""
    import socket
    import struct

    def words(packed: bytes) -> str:  # the table's hex: 32-bit words in host order
        return "".join(
            f"{struct.unpack('=I', packed[i : i + 4])[0]:08X}" for i in range(0, len(packed), 4)
        )

    def forms(address: Any) -> set[str]:
        host, port = str(address[0]), int(address[1])
        found: set[str] = set()
        for family, text in ((socket.AF_INET, host), (socket.AF_INET6, host)):
            for candidate in (text, f"::ffff:{text}") if family == socket.AF_INET6 else (text,):
                try:
                    found.add(f"{words(socket.inet_pton(family, candidate))}:{port:04X}")
                except OSError:
                    continue
        return found

    ours, theirs = forms(peer), forms(local)
    for table in SOCKET_TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 7
                and fields[3] == ESTABLISHED
                and fields[1] in ours
                and fields[2] in theirs
            ):
                return int(fields[7])
    return None


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value


def unauthorized(message: str) -> web.HTTPException:
    return web.HTTPUnauthorized(
        text=error_page("Not signed in", message, LOGIN_ADVICE), content_type="text/html"
    )


def forbidden(message: str, advice: str) -> web.HTTPException:
    return web.HTTPForbidden(
        text=error_page("Forbidden", message, advice), content_type="text/html"
    )


def error_page(title: str, message: str, advice: str = "") -> str:
    """A page of its own (no template): what went wrong and what to do."""
    advice_html = f'<p class="advice">{html.escape(advice)}</p>' if advice else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} · approvalgate console</title>"
        '<link rel="stylesheet" href="/static/console.css"></head>'
        f'<body><main class="error"><h1>{html.escape(title)}</h1>'
        f'<p class="message">{html.escape(message)}</p>{advice_html}</main></body></html>\n'
    )


# --- handlers ---------------------------------------------------------------------------------


def _filters(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in request.query.items() if k != "token"}


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


async def queue_page(request: web.Request) -> web.Response:
    return _queue(request, fragment=False)


async def queue_fragment(request: web.Request) -> web.Response:
    return _queue(request, fragment=True)


def _queue(request: web.Request, *, fragment: bool) -> web.Response:
    from approvalgate.console import pages

    console = request.app[CONSOLE]
    return _html(
        pages.render_queue(
            console.state, _filters(request), console.me, csrf_token(request), fragment
        )
    )


async def request_page(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    flash = console.flashes.pop(session_of(request), "")
    return await _request(request, fragment=False, flash=flash)


async def request_fragment(request: web.Request) -> web.Response:
    # what the page opened on (its fragment URL's query): the fragment's forms keep it
    opened = {key: request.query.get(key, "") for key in ("uid", "digest", "pin")}
    return await _request(request, fragment=True, opened=opened)


async def _request(
    request: web.Request,
    *,
    fragment: bool,
    flash: str = "",
    error: tuple[str, str] | None = None,
    status: int = 200,
    opened: Mapping[str, str] | None = None,
) -> web.Response:
    from approvalgate.console import pages

    console = request.app[CONSOLE]
    namespace = request.match_info["namespace"]
    name = request.match_info["name"]
    try:
        text = await asyncio.to_thread(
            pages.render_request,
            console.state,
            console.client,
            namespace,
            name,
            console.me,
            csrf_token(request),
            fragment,
            flash=flash,
            error=error,
            opened=opened,
        )
    except ApprovalgateError as exc:
        code = getattr(exc, "status", None)
        return _html(
            error_page("Cannot show this request", exc.message, exc.advice),
            status=code if code in (403, 404) else 502,
        )
    return _html(text, status)


async def decide(request: web.Request) -> web.StreamResponse:
    from approvalgate.console import actions

    console = request.app[CONSOLE]
    form = await request.post()
    check_csrf(request, form)
    namespace = request.match_info["namespace"]
    name = request.match_info["name"]
    decision = form.get("decision")
    reason = form.get("reason", "")
    if decision not in DECISIONS or not isinstance(reason, str):
        return _html(
            error_page(
                "Bad request",
                f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}",
                "decide with the buttons of the request page",
            ),
            status=400,
        )
    assert isinstance(decision, str)
    uid, digest, pin = form.get("uid", ""), form.get("digest", ""), form.get("pin", "")
    seen = actions.Seen(
        uid if isinstance(uid, str) else "",
        digest if isinstance(digest, str) else "",
        pin if isinstance(pin, str) else "",
    )
    try:
        message = await asyncio.to_thread(
            functools.partial(actions.decide, seen=seen),
            console.client,
            console.me,
            namespace,
            name,
            decision,
            reason.strip(),
        )
    except ApprovalgateError as exc:
        code = getattr(exc, "status", None)  # actions.Refused says which; a 403 from the API
        status = code if code in (400, 403, 409) else 409
        # the page answering it keeps the clicked form's request, uid, digest and pin: a
        # second click there signs nothing the clicked page did not show
        clicked = {"uid": seen.uid, "digest": seen.digest, "pin": seen.pin}
        return await _request(
            request,
            fragment=False,
            error=(exc.message, exc.advice),
            status=status,
            opened=clicked,
        )
    console.flashes[session_of(request)] = message
    raise web.HTTPSeeOther(f"/requests/{namespace}/{name}")


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``changed`` with the state's version after each change (bursts
    coalesced), a comment every :data:`PING_SECONDS` (proxies and the browser keep it)."""
    console = request.app[CONSOLE]
    state = console.state
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    task = asyncio.current_task()
    if task is not None:
        console.streams.add(task)
    try:
        version = state.version
        await response.write(_event(version))
        while True:
            seen = await state.wait_changed(version, timeout=PING_SECONDS)
            if seen == version:
                await response.write(b": ping\n\n")
                continue
            await asyncio.sleep(COALESCE_SECONDS)
            version = state.version
            await response.write(_event(version))
    except ConnectionResetError:
        pass  # the page went away
    finally:
        if task is not None:
            console.streams.discard(task)
    return response


def _event(version: int) -> bytes:
    return f"event: changed\ndata: {json.dumps({'version': version})}\n\n".encode()


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def static_handler(directory: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Only the files of ``directory`` (no subfolders, no listing), each with its type."""

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        path = directory / name
        kind = STATIC_TYPES.get(path.suffix)
        if "/" in name or name.startswith(".") or kind is None or not path.is_file():
            raise web.HTTPNotFound(
                text=error_page("Not found", f"no asset {name!r}"), content_type="text/html"
            )
        return web.Response(body=path.read_bytes(), content_type=kind)

    return static


async def _stop_streams(app: web.Application) -> None:
    for task in list(app[CONSOLE].streams):
        task.cancel()


def create_app(console: Console, *, static_dir: Path = STATIC_DIR) -> web.Application:
    app = web.Application(middlewares=[security], client_max_size=64 * 1024)
    app[CONSOLE] = console
    app.on_response_prepare.append(add_security_headers)
    app.on_shutdown.append(_stop_streams)
    app.router.add_get("/", queue_page)
    app.router.add_get("/fragment/queue", queue_fragment)
    app.router.add_get("/requests/{namespace}/{name}", request_page)
    app.router.add_get("/fragment/request/{namespace}/{name}", request_fragment)
    app.router.add_post("/requests/{namespace}/{name}/decide", decide)
    app.router.add_get("/events", events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/static/{file}", static_handler(static_dir))
    return app


async def start(console: Console, port: int, *, static_dir: Path = STATIC_DIR) -> web.AppRunner:
    """Listen on 127.0.0.1:``port`` (0: any free port); sets ``console.port``."""
    from approvalgate.runtime.ports import listen

    runner = web.AppRunner(
        create_app(console, static_dir=static_dir),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=2.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, port)
    try:
        await listen(site.start(), LOOPBACK, port, advice="pick another --port (0: any free one)")
    except BaseException:
        await runner.cleanup()
        raise
    with contextlib.suppress(IndexError, TypeError):
        console.port = int(runner.addresses[0][1])
    return runner
