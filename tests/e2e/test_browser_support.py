"""The browser the console's test drives (tests/support/browser.py), tested on its own: a
real headless Chromium against a small aiohttp page served on 127.0.0.1 with the console's
kind of Content-Security-Policy (scripts from 'self' only, no inline), a form, a link and a
live update over server-sent events. No API server needed: this isolates a broken browser
set-up from a broken console."""

from __future__ import annotations

import asyncio
import json
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from selenium.common.exceptions import WebDriverException

from tests.support import browser as browser_support
from tests.support.browser import Browser, browsers, open_browser

__all__ = ["browsers"]  # the fixture, imported for pytest

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>self-test</title>
<script src="/app.js" defer></script></head>
<body><h1>Browser self-test</h1>
<form method="post" action="/echo">
  <label for="reason">Reason</label> <textarea id="reason" name="reason"></textarea>
  <button type="submit">Send it</button>
</form>
<p><a href="/next">Next page</a></p>
<table><tbody id="rows"></tbody></table>
<p style="color: red">inline style is refused</p>
<script>document.title = "inline script ran";</script>
</body></html>
"""
SCRIPT = """
const source = new EventSource("/events");
source.addEventListener("row", (event) => {
  const row = document.createElement("tr");
  const cell = document.createElement("td");
  cell.textContent = JSON.parse(event.data).text;
  row.appendChild(cell);
  document.getElementById("rows").appendChild(row);
});
"""


class Site:
    """The aiohttp page in a thread of its own, on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.listeners: list[asyncio.Queue[str]] = []
        self.port = 0
        self.ready = threading.Event()
        self.stopped = asyncio.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.serve(),))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def serve(self) -> None:
        @web.middleware
        async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
            response = await handler(request)
            response.headers["Content-Security-Policy"] = CSP
            return response

        async def page(_: web.Request) -> web.Response:
            return web.Response(text=PAGE, content_type="text/html")

        async def script(_: web.Request) -> web.Response:
            return web.Response(text=SCRIPT, content_type="text/javascript")

        async def echo(request: web.Request) -> web.Response:
            form = await request.post()
            said = str(form.get("reason", "")).replace("<", "&lt;")
            return web.Response(text=f"<p>You said: {said}</p>", content_type="text/html")

        async def following(_: web.Request) -> web.Response:
            return web.Response(text="<p>The next page</p>", content_type="text/html")

        async def events(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            listener: asyncio.Queue[str] = asyncio.Queue()
            self.listeners.append(listener)
            try:
                while True:
                    data = await listener.get()
                    await response.write(f"event: row\ndata: {data}\n\n".encode())
            finally:
                self.listeners.remove(listener)

        app = web.Application(middlewares=[headers])
        app.add_routes(
            [
                web.get("/", page),
                web.get("/app.js", script),
                web.post("/echo", echo),
                web.get("/next", following),
                web.get("/events", events),
            ]
        )
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self.ready.set()
        await self.stopped.wait()
        await runner.cleanup()

    def push(self, text: str) -> int:
        """Send a row to every open page; how many pages listen."""
        data = json.dumps({"text": text})

        def send() -> None:
            for listener in self.listeners:
                listener.put_nowait(data)

        count = len(self.listeners)
        self.loop.call_soon_threadsafe(send)
        return count

    def start(self) -> Site:
        self.thread.start()
        assert self.ready.wait(30), "the self-test page did not start"
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site().start()
    try:
        yield served
    finally:
        served.stop()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_fill_click_wait_screenshot_and_a_live_update(
    site: Site, browsers: Callable[[str], Browser], tmp_path: Path
) -> None:
    browser = browsers("tester")
    browser.open(site.url)
    browser.wait_text("Browser self-test")
    # the page's CSP holds in this browser: no inline script ran
    assert browser.driver.title == "self-test"

    # a live update arrives without a reload (the document keeps its mark)
    mark = browser.mark()
    browser.until("the page listens for events", lambda: site.push("first live row") > 0)
    browser.wait_text("first live row")
    assert browser.same_document(mark)

    shot = browser.screenshot(tmp_path / "page.png")
    assert png_size(shot) == browser_support.WINDOW

    browser.fill("Reason", 'it "works" <now>')
    browser.click("Send it")
    browser.wait_text('You said: it "works" <now>')
    assert not browser.same_document(mark)

    browser.open(site.url)
    browser.click("Next page")
    browser.wait_text("The next page")
    assert browser.url == f"{site.url}next"


def test_no_network_beyond_loopback(tmp_path: Path) -> None:
    with (
        open_browser(tmp_path / "offline") as browser,
        pytest.raises(WebDriverException, match="ERR_NAME_NOT_RESOLVED"),
    ):
        browser.open("http://example.com/")


def test_a_missing_chromium_fails_with_the_command_to_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    driver = tmp_path / "chromedriver"
    driver.write_text("")
    monkeypatch.setattr(browser_support, "CHROMEDRIVER", driver)
    monkeypatch.setattr(browser_support, "CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(pytest.fail.Exception) as failed:
        browser_support.binaries()
    assert str(failed.value) == (
        f"a real browser is required, missing: {tmp_path / 'no-chromium'}; run `make "
        "system-packages` (tools/system-packages.sh installs Debian's chromium and "
        "chromium-driver as root, else prints the apt-get command)"
    )
