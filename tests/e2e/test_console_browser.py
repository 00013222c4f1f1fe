"""Issue 19, done-when 1 and 2: the console in a real headless browser (Debian's Chromium
through its chromedriver, tests/support/browser.py) against the real API server, webhook and
queue controller.

Each person runs `approvalgate console` as their own process, with their own kubeconfig
(static token, the chart's RBAC) and their own key, and opens the printed URL in a browser
of their own (own profile, own cookies): a requester submits (the CLI), alice and bob each
find the request in their queue ("needs me"), open it and click Approve, and the controller
creates the run; bob rejects another request with a reason, which ends it; dana, an
approver who may also request, sees on her own request that she cannot approve it, before
any click; a request made while alice's queue is open appears there without a reload.

The test takes the screenshots of docs/console-queue.png and docs/console-request.png (README,
"The console"): into docs/ with APPROVALGATE_UPDATE_SCREENSHOTS=1 (as UPDATE_GOLDEN does for
the chart's golden files), else into the test's own folder, so that `make test` leaves the
working tree as it found it (a screenshot is never byte-identical twice).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By

from approvalgate.approvals import records
from tests.e2e.controlplane import ControlPlane
from tests.e2e.gate import CLI, ENFORCED, ENV, Gate, eventually, run_manifest
from tests.support.browser import Browser, browsers
from tests.support.paths import ROOT

from .queue_support import (
    People,
    decisions_of,
    people,
    queue_gate,
    runs_named,
    status,
    unique,
    wait_phase,
)

pytestmark = pytest.mark.e2e
__all__ = ["browsers", "people"]  # the fixtures, imported for pytest

DOCS = ROOT / "docs"


def screenshots(tmp_path: Path) -> Path:
    """Where the screenshots go: docs/ when asked to update them, else the test's folder."""
    return DOCS if os.environ.get("APPROVALGATE_UPDATE_SCREENSHOTS") == "1" else tmp_path


URL = re.compile(r"console: (http://127\.0\.0\.1:(\d+)/\?token=[A-Za-z0-9_-]+)")
START = 90.0  # seconds: generous (its first list of the cluster); never a speed assertion
# the approver who may also request (a RoleBinding below): her console refuses her own
REQUESTING_APPROVER = "dana"


@pytest.fixture(scope="module")
def gate(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    for work in queue_gate(control_plane, tmp_path_factory.mktemp("console-browser")):
        control_plane.kubectl(
            "admin",
            "apply",
            "-f",
            "-",
            input=json.dumps(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {
                        "name": f"approvalgate-e2e:requester:{REQUESTING_APPROVER}",
                        "namespace": ENFORCED,
                    },
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "approvalgate-requester",
                    },
                    "subjects": [
                        {
                            "kind": "User",
                            "apiGroup": "rbac.authorization.k8s.io",
                            "name": REQUESTING_APPROVER,
                        }
                    ],
                }
            ),
        )
        yield work


@dataclass
class Console:
    """One `approvalgate console` process: one person, their kubeconfig and key."""

    gate: Gate
    person: str
    process: subprocess.Popen[str] | None = None
    url: str = ""
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def log_path(self) -> Path:
        return self.gate.work / f"console-{self.person}.log"

    def start(self) -> Console:
        gate = self.gate
        self.process = subprocess.Popen(
            [
                *CLI,
                "console",
                "--no-open",
                "--port",
                "0",
                "--kubeconfig",
                str(gate.plane.kubeconfig(self.person)),
                "--signer",
                str(gate.keys / f"{self.person}.key"),
                "--approver",
                self.person,
                "-n",
                ENFORCED,
                "--bundle",
                str(gate.signing_bundle()),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=gate.work,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        stream = self.process.stdout
        assert stream is not None

        def read() -> None:
            with self.log_path.open("a") as log:
                for line in stream:
                    self.lines.append(line)
                    log.write(line)
                    log.flush()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        self.url = eventually(f"{self.person}'s console prints its URL", self._printed, START)
        return self

    def _printed(self) -> str:
        assert self.process is not None
        for line in self.lines:
            found = URL.search(line)
            if found:
                return found.group(1)
        if self.process.poll() is not None:
            time.sleep(0.2)  # the reader's last lines
            raise AssertionError(
                f"{self.person}'s console exited {self.process.returncode}:\n{self.output()}"
            )
        return ""

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT`` (the console's origin)."""
        return self.url.split("/?", 1)[0]

    def output(self) -> str:
        return "".join(self.lines)[-6000:]

    def stop(self) -> int:
        """Ctrl-C (SIGINT): its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        if self.reader is not None:
            self.reader.join(10)  # its output to the end
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code


@pytest.fixture
def consoles(gate: Gate) -> Iterator[Callable[[str], Console]]:
    """A factory: ``consoles("alice")`` starts alice's console; all are stopped (Ctrl-C, exit
    0) at the end of the test."""
    started: list[Console] = []

    def start(person: str) -> Console:
        console = Console(gate, person)
        started.append(console)
        return console.start()

    yield start
    codes = {c.person: c.stop() for c in started}
    for console in started:
        print(f"--- console of {console.person} (last lines) ---\n{console.output()}")
    assert all(code == 0 for code in codes.values()), codes


def open_console(browser: Browser, console: Console) -> None:
    """Open the printed URL: its token is traded for a session cookie and the browser is
    sent on to the queue, without the token in the address."""
    browser.open(console.url)
    browser.wait_url(lambda url: "token=" not in url, "the token leaves the address")


def open_request(browser: Browser, name: str) -> None:
    """From the queue, the request ``name``'s page (its row's link; found again when a live
    update swapped the table between finding and clicking it)."""

    def clicked() -> bool | None:
        try:
            browser.link_containing(name).click()
        except StaleElementReferenceException:
            return None
        return True

    browser.until(f"{name}'s link is clicked", clicked)
    browser.wait_url(lambda url: url.endswith(f"/requests/{ENFORCED}/{name}"), f"{name}'s page")
    browser.wait_text(name)


def enabled(browser: Browser, label: str, wanted: bool) -> None:
    """Wait until the button ``label`` is enabled (``wanted``) or disabled (a live update may
    swap it while it is looked at)."""

    def seen() -> bool | None:
        try:
            return True if browser.control(label).is_enabled() == wanted else None
        except StaleElementReferenceException:
            return None

    browser.until(f"{label} is {'enabled' if wanted else 'disabled'}", seen)


def decide(browser: Browser, button: str) -> None:
    """Click ``button`` on a request page and wait for the page it answers with: the
    request's page again (the decision filed: a 303 back to it, whose flash message a live
    update may already have replaced), or the page with the refusal, which fails the test."""
    mark = browser.mark()
    browser.click(button)
    browser.until(f"{button} answers with a new page", lambda: not browser.same_document(mark))
    page = browser.wait_text("Where it stands")
    errors = browser.driver.find_elements(By.CSS_SELECTOR, ".error")
    assert not errors, f"{button} was refused: {errors[0].text}\n{page[:3000]}"


def test_two_approvers_approve_in_the_browser_the_run_is_created(
    gate: Gate,
    people: People,
    consoles: Callable[[str], Console],
    browsers: Callable[[str], Browser],
    tmp_path: Path,
) -> None:
    shots = screenshots(tmp_path)
    approved, rejected, live = unique("console-ok"), unique("console-no"), unique("console-live")
    people.request(approved, reason="ship the onboarding fix")
    people.request(rejected, reason="try the billing migration")
    own = unique("console-own")
    people.request(own, user=REQUESTING_APPROVER, reason="dana's own change")

    # alice: her queue shows what needs her; a new request appears without a reload
    alice = browsers("alice")
    open_console(alice, consoles("alice"))
    alice.wait_text(approved)
    alice.wait_text(rejected)
    mark = alice.mark()
    people.request(live, reason="arrives while the page is open")
    alice.wait_text(live)
    assert alice.same_document(mark), "the queue was reloaded to show the new request"
    alice.screenshot(shots / "console-queue.png")

    open_request(alice, approved)
    decide(alice, "Approve")
    eventually("alice's approval is counted", lambda: status(gate, approved).get("approvedBy"))
    assert status(gate, approved)["approvedBy"] == ["alice"]
    assert runs_named(gate, approved) == []

    # bob: the same request, with alice's decision on it; his approval creates the run
    bob = browsers("bob")
    bob_console = consoles("bob")
    open_console(bob, bob_console)
    open_request(bob, approved)
    bob.wait_text("1 of 2 (alice)")  # the controller counted alice's approval
    bob.screenshot(shots / "console-request.png")
    decide(bob, "Approve")
    mark = bob.mark()
    story = wait_phase(gate, approved, "Submitted")
    assert story["approvedBy"] == ["alice", "bob"]
    [run] = runs_named(gate, approved)
    assert story["run"]["uid"] == run["metadata"]["uid"]
    bob.wait_text(f"AgentRun {ENFORCED}/{approved} (uid {run['metadata']['uid']})")
    assert bob.same_document(mark), "the request's page was reloaded to show the run"

    # bob rejects the other request with a reason: it ends
    bob.open(f"{bob_console.base}/")
    open_request(bob, rejected)
    bob.fill("reason", "touches billing")
    decide(bob, "Reject")
    story = wait_phase(gate, rejected, "Rejected")
    assert story["rejectedBy"] == ["bob"]
    bob.wait_text("touches billing")
    assert runs_named(gate, rejected) == []

    # dana sees she cannot approve her own request, before any click
    dana = browsers(REQUESTING_APPROVER)
    dana_console = consoles(REQUESTING_APPROVER)
    open_console(dana, dana_console)
    dana.open(f"{dana_console.base}/?view=mine")
    open_request(dana, own)
    dana.wait_text(
        f"you cannot approve your own request: it was requested by {REQUESTING_APPROVER}"
    )
    assert not dana.control("Approve").is_enabled()
    assert status(gate, own).get("approvedBy", []) == []


def test_a_text_rewritten_while_the_page_is_open_is_never_signed_from_it(
    gate: Gate,
    people: People,
    consoles: Callable[[str], Console],
    browsers: Callable[[str], Browser],
) -> None:
    """Red team (the console, 2026-12-07): alice reads a request's task text; its writer
    rewrites it, then files any request, which wakes every open page. The live update
    swapped in the fragment with forms pinned to the rewritten text, so alice's next click
    approved what she never read. Now the page shows the new text, says it changed since
    she opened it, and offers no button until she reloads (then she approves what it shows)."""
    name, impl = unique("console-swap"), unique("impl-swap")
    task = {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "ImplementationSpec",
        "metadata": {"name": impl, "namespace": ENFORCED},
        "spec": {"text": "Tidy the weekly report."},
    }

    def write(text: str) -> None:
        task["spec"] = {"text": text}
        gate.plane.kubectl("admin", "apply", "-n", ENFORCED, "-f", "-", input=json.dumps(task))

    write("Tidy the weekly report.")
    run = gate.work / f"run-{name}.yaml"
    run.write_text(run_manifest(name).replace("codex-impl-sample", impl))
    people.ok("requester", "request", str(run), "--env", ENV, "--reason", "weekly report")

    alice = browsers("alice")
    console = consoles("alice")
    open_console(alice, console)
    open_request(alice, name)
    alice.wait_text("Tidy the weekly report.")
    enabled(alice, "Approve", True)
    mark = alice.mark()

    write("Tidy the weekly report, then force-push it to main.")
    people.request(unique("console-wake"), reason="any change wakes the open pages")
    alice.wait_text("then force-push it to main")
    assert alice.same_document(mark), "the page was reloaded, not updated"
    alice.wait_text("this request changed since you opened its page")
    for button in ("Approve", "Reject", "Withdraw my earlier decisions"):
        enabled(alice, button, False)
    assert decisions_of(gate, name) == []

    alice.click("Reload")
    alice.wait_url(lambda url: url.endswith(f"/requests/{ENFORCED}/{name}"), "the page again")
    alice.wait_no_text("changed since you opened")
    decide(alice, "Approve")
    [filed] = eventually("alice's approval is filed", lambda: decisions_of(gate, name))
    (record,), _ = records.parse_annotation(json.dumps([filed["spec"]["record"]]))
    assert (record.claim.decision, record.claim.approver) == ("approve", "alice")
