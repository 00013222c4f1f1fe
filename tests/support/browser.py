"""A real headless browser for tests: Debian's Chromium driven through its own chromedriver
(both installed by tools/system-packages.sh) with selenium's W3C WebDriver client.

    with open_browser(tmp_path / "alice") as browser:   # or the `browsers` fixture
        browser.open(url)
        browser.wait_text("needs me")
        browser.fill("reason", "touches billing")       # a field by id, name or label
        browser.click("Reject")                          # a button or link by its text
        browser.screenshot(ROOT / "docs" / "console-queue.png")

Each browser has a profile of its own (``--user-data-dir`` under the given folder): two
browsers are two people, with their own cookies (cookies are per host, not per port, so two
consoles on 127.0.0.1 in one profile would share them).

No network beyond loopback: ``--host-resolver-rules`` resolves every host name to nothing
except ``localhost`` (an address literal such as 127.0.0.1 needs no resolving),
``--no-proxy-server`` ignores any proxy of the environment, and the background services
(component updates, sync, safe browsing, metrics, first-run fetches) are off. A page that
tries to load anything else gets a network error, which the console's strict CSP forbids
anyway.

A missing Chromium or chromedriver fails the test with the command to run (never a skip).
Nothing here asserts on speed: every wait has a generous deadline.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT = 60.0  # seconds: generous, a deadline for a broken page, never a speed assertion
WINDOW = (1280, 900)
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # the tests run as root (CI's container), where the sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers' /dev/shm is small
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--no-first-run",
    "--no-default-browser-check",
    "--lang=en-US",
)

T = TypeVar("T")


def binaries() -> tuple[Path, Path]:
    """Chromium and its chromedriver; the test fails (with the command to run) without them."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        pytest.fail(
            f"a real browser is required, missing: {', '.join(missing)}; run "
            "`make system-packages` (tools/system-packages.sh installs Debian's chromium and "
            "chromium-driver as root, else prints the apt-get command)",
            pytrace=False,
        )
    return CHROMIUM, CHROMEDRIVER


def _literal(text: str) -> str:
    """``text`` as an XPath 1.0 string literal (concat() when it holds both quote kinds)."""
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    parts = text.split('"')
    return "concat(" + ", '\"', ".join(f'"{part}"' for part in parts) + ")"


class Browser:
    """One headless Chromium (one person) and the few things the tests do with it."""

    def __init__(self, driver: webdriver.Chrome, folder: Path) -> None:
        self.driver = driver
        self.folder = folder

    # --- navigation --------------------------------------------------------------------------

    def open(self, url: str) -> None:
        self.driver.get(url)

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    def text(self) -> str:
        """The page's visible text (what a person reads)."""
        try:
            return str(self.driver.find_element(By.TAG_NAME, "body").text)
        except (NoSuchElementException, StaleElementReferenceException):
            return ""

    def mark(self) -> str:
        """Tag the loaded document (a JS property, gone on any navigation or reload): with
        :meth:`same_document` a test proves that a change arrived without a reload."""
        token = f"mark-{time.monotonic_ns()}"
        self.driver.execute_script("window.__approvalgateTestMark = arguments[0];", token)
        return token

    def same_document(self, token: str) -> bool:
        found = self.driver.execute_script("return window.__approvalgateTestMark || '';")
        return bool(found == token)

    # --- waiting -----------------------------------------------------------------------------

    def until(self, what: str, condition: Callable[[], T | None], timeout: float = WAIT) -> T:
        """``condition()``'s first truthy value, tried until ``timeout``; else an assertion
        error naming ``what`` with the page's URL and text."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = condition()
            except (NoSuchElementException, StaleElementReferenceException):
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not within {timeout:.0f}s: {what}\nat {self.url}, the page reads:\n"
                    f"{self.text()[:4000]}"
                )
            time.sleep(0.1)

    def wait_text(self, text: str, timeout: float = WAIT) -> str:
        """Wait until the page shows ``text``; the page's text."""

        def shown() -> str:
            page = self.text()
            return page if text in page else ""

        return self.until(f"the page shows {text!r}", shown, timeout)

    def wait_no_text(self, text: str, timeout: float = WAIT) -> None:
        self.until(f"the page no longer shows {text!r}", lambda: text not in self.text(), timeout)

    def wait_url(self, predicate: Callable[[str], bool], what: str, timeout: float = WAIT) -> str:
        """Wait until the page's URL satisfies ``predicate``; the URL."""
        return self.until(what, lambda: self.url if predicate(self.url) else "", timeout)

    # --- finding and acting ------------------------------------------------------------------

    def element(self, css: str) -> WebElement:
        """The first visible element matching CSS selector ``css`` (waits for it)."""
        return self.until(f"an element {css!r}", lambda: self._visible(By.CSS_SELECTOR, css))

    def _visible(self, by: str, selector: str) -> WebElement | None:
        for found in self.driver.find_elements(by, selector):
            if found.is_displayed():
                return found
        return None

    def control(self, label: str) -> WebElement:
        """A visible button, submit input or link whose text (or value, aria-label or title)
        is ``label`` (whitespace folded); waits for it."""
        lit = _literal(label)
        xpath = (
            f"//button[normalize-space(.)={lit} or @aria-label={lit} or @title={lit}]"
            f" | //input[(@type='submit' or @type='button') and @value={lit}]"
            f" | //a[normalize-space(.)={lit} or @aria-label={lit} or @title={lit}]"
        )
        return self.until(f"a button or link {label!r}", lambda: self._visible(By.XPATH, xpath))

    def link_containing(self, text: str) -> WebElement:
        """A visible link whose text contains ``text`` (e.g. a request's name in a queue row)."""
        xpath = f"//a[contains(normalize-space(.), {_literal(text)})]"
        return self.until(f"a link containing {text!r}", lambda: self._visible(By.XPATH, xpath))

    def field(self, key: str) -> WebElement:
        """A visible input, textarea or select by id, name or the text of its <label>."""
        lit = _literal(key)
        kinds = "self::input or self::textarea or self::select"
        xpath = (
            f"//*[{kinds}][@id={lit} or @name={lit}]"
            f" | //*[{kinds}][@id=//label[normalize-space(.)={lit}]/@for]"
            f" | //label[normalize-space(.)={lit}]//*[{kinds}]"
        )
        return self.until(f"a field {key!r}", lambda: self._visible(By.XPATH, xpath))

    def click(self, label: str) -> None:
        """Click the button or link ``label`` (see :meth:`control`)."""
        self.control(label).click()

    def fill(self, key: str, value: str) -> None:
        """Type ``value`` into the field ``key`` (see :meth:`field`), replacing its text."""
        element = self.field(key)
        element.clear()
        element.send_keys(value)

    def screenshot(self, path: Path) -> Path:
        """A PNG of the viewport (WINDOW pixels) at ``path`` (overwritten)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.driver.save_screenshot(str(path)):
            raise AssertionError(f"the browser wrote no screenshot to {path}")
        return path

    def evidence(self, name: str) -> str:
        """Save a screenshot and the page's HTML in the browser's folder (for a failure)."""
        try:
            png = self.screenshot(self.folder / f"{name}.png")
            html = self.folder / f"{name}.html"
            html.write_text(str(self.driver.page_source))
        except (WebDriverException, OSError) as error:
            return f"(no evidence saved: {error})"
        return f"screenshot {png}, page {html}"


@contextmanager
def open_browser(folder: Path) -> Iterator[Browser]:
    """A headless Chromium with its profile, downloads and chromedriver log under
    ``folder``; quit afterwards. On an error inside the block its screenshot and HTML are
    saved there and named in a note on the error."""
    chromium, chromedriver = binaries()
    folder.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={folder / 'profile'}")
    service = Service(
        executable_path=str(chromedriver), log_output=str(folder / "chromedriver.log")
    )
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as error:
        log = folder / "chromedriver.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        pytest.fail(f"{chromium} did not start through {chromedriver}: {error.msg}\n{tail}")
    driver.set_page_load_timeout(WAIT)
    # the viewport itself WINDOW pixels (the window's size leaves room for a toolbar even
    # headless): pages lay out, and screenshots are, exactly WINDOW
    width, height = WINDOW
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    browser = Browser(driver, folder)
    try:
        yield browser
    except BaseException as error:
        error.add_note(f"browser evidence in {folder}: {browser.evidence('failure')}")
        raise
    finally:
        driver.quit()
        shutil.rmtree(folder / "profile", ignore_errors=True)


@pytest.fixture
def browsers(tmp_path: Path) -> Iterator[Callable[[str], Browser]]:
    """A factory: ``browsers("alice")`` starts a browser (a person) of its own, under
    ``tmp_path/browser-alice``; all are quit at the end of the test, each after saving its
    last page there (last.png, last.html: what it showed when the test ended or failed)."""
    started: list[Browser] = []
    with ExitStack() as stack:

        def start(person: str) -> Browser:
            browser = stack.enter_context(open_browser(tmp_path / f"browser-{person}"))
            started.append(browser)
            return browser

        try:
            yield start
        finally:
            for browser in started:
                print(f"browser {browser.folder.name}: {browser.evidence('last')}")
