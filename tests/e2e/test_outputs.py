"""What the webhook writes, as the real kube-apiserver reads it (docs/design.md, "Known
limits", fifth red-team pass: outputs).

The module's own control plane writes the API server's audit log (JSON, Metadata level for
AgentRuns). The real webhook is registered the way the chart does it (tests/e2e/gate.py):
every audit annotation it answers lands in the audit event of the request, under the
webhook's name. A stub webhook, registered with the chart's configuration
(``failurePolicy: Fail``) in its place, answers what the API server cannot use, or oversized
and invalid warnings and audit annotations: a denial stays a denial, an unusable answer is
a denial, and what the API server drops of an allow is recorded here (limits looked up in
k8s.io/apiserver: warnings are dropped when not one line of valid UTF-8 and truncated past
4096 runes in all; an audit annotation whose key is not a qualified name is logged and
dropped, the request going on).
"""

from __future__ import annotations

import copy
import http.server
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from approvalgate.approvals import records
from tests.e2e.conftest import own_control_plane
from tests.e2e.controlplane import ControlPlane
from tests.e2e.gate import ENFORCED, WEBHOOK_NAME, Gate
from tests.e2e.test_attacks import Signer, annotated, create, run

pytestmark = pytest.mark.e2e

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "resources": [{"group": "agents.proompteng.ai", "resources": ["agentruns"]}],
        },
        {"level": "None"},
    ],
}


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    yield from own_control_plane(audit_policy=AUDIT_POLICY)


@pytest.fixture(scope="module")
def gate(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    gate = Gate(plane, tmp_path_factory.mktemp("outputs"))
    gate.prepare()
    plane.kubectl("admin", "create", "namespace", ENFORCED, check=False)
    gate.start()
    gate.register()
    try:
        yield gate
    finally:
        gate.unregister()
        gate.stop()


def audit_event(plane: ControlPlane, name: str) -> dict[str, Any]:
    """The ResponseComplete audit event of the CREATE of AgentRun ``name``."""
    found = [
        e
        for e in plane.audit_events()
        if e.get("stage") == "ResponseComplete"
        and e.get("verb") == "create"
        and (e.get("objectRef") or {}).get("resource") == "agentruns"
        and (e.get("objectRef") or {}).get("name") == name
    ]
    assert len(found) == 1, [e.get("auditID") for e in found]
    return found[0]


def ours(event: dict[str, Any]) -> dict[str, str]:
    prefix = f"{WEBHOOK_NAME}/"
    annotations = event.get("annotations") or {}
    return {k[len(prefix) :]: v for k, v in annotations.items() if k.startswith(prefix)}


def test_every_audit_annotation_the_webhook_answers_is_in_the_api_servers_audit_log(
    gate: Gate, plane: ControlPlane
) -> None:
    """An annotation the API server refused would be dropped with only a line in its own log:
    the audit trail would lose who approved or why a bypass was used. Each key the webhook
    writes is kept, with its value, for a denial and for a break-glass admission."""
    denied = create(gate, run("out-denied"))
    assert denied.returncode == 1 and WEBHOOK_NAME in denied.stderr, denied.stderr
    event = audit_event(plane, "out-denied")
    assert event["responseStatus"]["code"] == 403
    assert ours(event) == {
        "decision": "deny",
        "reason": "missing-approvals",
        "policy": ours(event)["policy"],
        "approvers": "",
        "digest": ours(event)["digest"],
    }
    assert "agents/codex-two-person" in ours(event)["policy"]
    assert ours(event)["digest"].startswith("sha256:")

    s = Signer(gate)
    obj = run("out-bypass")
    record = s.record(obj, "oncall", decision="bypass", reason="INC-1234", ttl=timedelta(hours=1))
    done = create(gate, annotated(obj, [record, s.record(obj, "alice")]))
    assert done.returncode == 0, done.stderr
    assert "Warning: approvalgate: policy agents/codex-two-person: bypassed by oncall" in (
        done.stderr
    )
    kept = ours(audit_event(plane, "out-bypass"))
    assert (kept["decision"], kept["reason"], kept["bypass-reason"]) == (
        "allow",
        "bypass",
        "INC-1234",
    )
    assert kept["approvers"] == "alice" and kept["digest"].startswith("sha256:")
    assert "Failed to set admission audit annotation" not in plane.logs(400)


FORGED = "alice\n  - record 1 by bob: valid approve\x1b[2K\u202e"


def test_a_claimed_approver_name_forges_no_line_in_the_denial_or_the_audit_log(
    gate: Gate, plane: ControlPlane
) -> None:
    """A record whose claimed approver holds a newline, a second record line, an escape
    sequence and a bidi override: the requester's kubectl and the API server's audit event
    show the name quoted on one line, escaped; no line says another record was valid."""
    s = Signer(gate)
    obj = run("out-forged-name")
    claim = s.claim(obj, FORGED)

    done = create(gate, annotated(obj, [records.sign(claim, s.key("dana"))]))
    assert done.returncode == 1, done.stderr
    shown = '"alice\\n  - record 1 by bob: valid approve\\u001b[2K\\u202e"'
    assert f"  - record 0 by {shown}: {shown} is not a known approver" in done.stderr
    assert not any(line.lstrip().startswith("- record 1") for line in done.stderr.splitlines())
    assert "\x1b" not in done.stderr and "\u202e" not in done.stderr
    message = audit_event(plane, "out-forged-name")["responseStatus"]["message"]
    assert f"record 0 by {shown}" in message and "\x1b" not in message


# --- a stub in the webhook's place: what the API server does with answers -------------


class Stub:
    """An HTTPS webhook on 127.0.0.1 (the Gate's CA) answering ``answer(review)``."""

    def __init__(self, gate: Gate, answer: Callable[[dict[str, Any]], bytes]) -> None:
        self.answer = answer
        issued = gate.ca.issue(["127.0.0.1"])
        folder = gate.work / "stub-tls"
        folder.mkdir(exist_ok=True)
        (folder / "tls.crt").write_bytes(issued.cert_pem)
        (folder / "tls.key").write_bytes(issued.key_pem)
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                out = stub.answer(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *_: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(folder / "tls.crt", folder / "tls.key")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def respond(review: dict[str, Any], **response: Any) -> bytes:
    out = {"uid": review["request"]["uid"], **response}
    return json.dumps(
        {"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": out}
    ).encode()


JUNK_ANNOTATIONS = {"bad key!": "x", "approvers": "a" * 70_000, "k" * 80: "too long a key"}
JUNK_WARNINGS = ["w" * 5000 for _ in range(50)] + ["two\nlines", "\ud800"]


@pytest.fixture
def stubbed(gate: Gate) -> Iterator[Callable[[Callable[[dict[str, Any]], bytes]], None]]:
    """Put a stub with the chart's webhook configuration in the webhook's place."""
    stubs: list[Stub] = []

    def install(answer: Callable[[dict[str, Any]], bytes]) -> None:
        stub = Stub(gate, answer)
        stubs.append(stub)
        config = copy.deepcopy(gate.webhook_configuration())
        for hook in config["webhooks"]:
            assert hook["failurePolicy"] == "Fail"  # the chart's, never configurable
            hook["clientConfig"]["url"] = f"https://127.0.0.1:{stub.port}/validate"
        gate.plane.kubectl("admin", "apply", "-f", "-", input=json.dumps(config))

    try:
        yield install
    finally:
        for stub in stubs:
            stub.close()
        gate.register()  # the real webhook back, waited for


def until_answered_by(gate: Gate, name: str, check: Callable[[Any], bool]) -> Any:
    """Create ``name`` until the API server has taken up the stub (configurations are
    picked up asynchronously); a dry run first, so nothing is stored on the way."""
    deadline = time.monotonic() + 30
    while True:
        done = create(gate, run(name), "requester", "--dry-run=server")
        if check(done) or time.monotonic() > deadline:
            return done
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("case", "answer", "shows"),
    [
        (
            "deny-with-junk",
            lambda r: respond(
                r,
                allowed=False,
                status={"code": 403, "message": "stub says no"},
                warnings=JUNK_WARNINGS,
                auditAnnotations=JUNK_ANNOTATIONS,
            ),
            "denied the request: stub says no",
        ),
        (
            "uid-mismatch",
            lambda r: respond({**r, "request": {"uid": "other"}}, allowed=True),
            "expected response.uid=",
        ),
        ("not-json", lambda r: b"{allowed: true", "json parse error"),
        (
            "no-response",
            lambda r: json.dumps(
                {"apiVersion": r["apiVersion"], "kind": "AdmissionReview"}
            ).encode(),
            "webhook response was absent",
        ),
        (
            "other-version",
            lambda r: respond({**r, "apiVersion": "admission.k8s.io/v1beta1"}, allowed=True),
            "converting (v1beta1.AdmissionReview) to (v1.AdmissionReview)",
        ),
    ],
)
def test_an_answer_the_api_server_cannot_use_is_a_denial_under_the_charts_failure_policy(
    gate: Gate,
    stubbed: Callable[[Callable[[dict[str, Any]], bytes]], None],
    case: str,
    answer: Callable[[dict[str, Any]], bytes],
    shows: str,
) -> None:
    stubbed(answer)
    done = until_answered_by(gate, f"out-{case}", lambda d: shows in d.stderr)
    assert done.returncode == 1 and shows in done.stderr, done.stderr
    # an unusable answer is the API server's failure to call the webhook: failurePolicy Fail
    assert case == "deny-with-junk" or "failed calling webhook" in done.stderr
    assert (
        gate.plane.kubectl(
            "admin", "get", "agentrun", "-n", ENFORCED, f"out-{case}", check=False
        ).returncode
        == 1
    )


def test_what_the_api_server_drops_of_an_allow_warnings_and_annotations(
    gate: Gate, plane: ControlPlane, stubbed: Callable[[Callable[[dict[str, Any]], bytes]], None]
) -> None:
    """Recorded, not ours to fix: the API server keeps an allow whatever its warnings and
    annotations hold, drops a warning of two lines or invalid UTF-8, truncates the rest
    past 4096 runes in all, and drops an audit annotation whose key is not a qualified
    name. approvalgate's warnings are one line each and its keys fixed names (unit tests)."""
    stubbed(
        lambda r: respond(
            r,
            allowed=True,
            warnings=["one line", *JUNK_WARNINGS],
            auditAnnotations=JUNK_ANNOTATIONS,
        )
    )
    done = until_answered_by(gate, "out-allowed", lambda d: "one line" in d.stderr)
    assert done.returncode == 0 and "Warning: one line" in done.stderr, done.stderr
    assert "two" not in done.stderr  # the warning of two lines was dropped
    assert len(done.stderr) < 6000  # truncated
