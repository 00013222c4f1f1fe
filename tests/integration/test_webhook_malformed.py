"""security.md 14-16 over real HTTPS: malformed input, missing or broken bundles, internal errors.

Nothing here may ever be answered with an allow, a 5xx, or a dead worker.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from approvalgate.approvals.decide import GENERIC_ERROR
from approvalgate.runtime.metrics_server import generate_latest
from approvalgate.webhook.app import DEFAULT_MAX_BODY_BYTES
from approvalgate.webhook.strictjson import DEFAULT_MAX_DEPTH
from tests.integration.harness import (
    V1,
    V1BETA1,
    Client,
    ServerThread,
    TestPKI,
    agentrun_request,
    review_body,
    write_atomic,
)


@pytest.fixture(scope="module")
def server(
    module_pki: TestPKI, tmp_path_factory: pytest.TempPathFactory, base_bundle_text: str
) -> Iterator[ServerThread]:
    bundle = tmp_path_factory.mktemp("bundle") / "bundle.json"
    bundle.write_text(base_bundle_text)
    with ServerThread(module_pki, bundle, read_timeout=0.5) as running:
        yield running


@pytest.fixture
def client(server: ServerThread) -> Iterator[Client]:
    with server.client() as c:
        yield c


def assert_rejected(reply: Any, status: int = 400, text: str = "") -> None:
    assert reply.status == status, (reply.status, reply.body[:300])
    assert b'"allowed"' not in reply.body
    assert text.encode() in reply.body, reply.body


def assert_alive(client: Client) -> None:
    assert client.get("/healthz").status == 200
    denied = client.review(agentrun_request()).response
    assert denied["allowed"] is False
    assert denied["auditAnnotations"]["reason"] == "missing-approvals"


# --- 14: oversized, nested, invalid UTF-8, duplicate keys, NaN/Infinity --------------------


def test_body_over_the_limit_is_413_with_content_length(client: Client) -> None:
    request = agentrun_request(
        annotations={"approvals.proompteng.ai/approvals": "x" * DEFAULT_MAX_BODY_BYTES}
    )
    assert_rejected(client.post(review_body(request)), 413, "exceeds")
    assert_alive(client)


def test_body_over_the_limit_is_413_when_chunked(server: ServerThread) -> None:
    request = agentrun_request(
        annotations={"approvals.proompteng.ai/approvals": "x" * DEFAULT_MAX_BODY_BYTES}
    )
    body = review_body(request)
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    with server.client() as c:
        conn = c._connection()
        conn.request("POST", "/validate", body=chunks, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 413
        assert b'"allowed"' not in resp.read()


def test_update_with_object_and_old_object_fits_the_default_limit(client: Client) -> None:
    """3 MiB is sized for UPDATE: object and oldObject of 1.4 MB each still get a verdict
    (read whole, not refused as too large; the spec is past the digest's bound,
    ``digest.MAX_SPEC_BYTES``, so the verdict is that denial)."""
    request = agentrun_request(operation="UPDATE")
    big = "y" * 1_400_000
    request["object"]["spec"]["parameters"]["prompt"] = big
    request["oldObject"] = json.loads(json.dumps(request["object"]))
    request["oldObject"]["spec"]["parameters"]["prompt"] = big + "z"
    body = review_body(request)
    assert 2_800_000 < len(body) < DEFAULT_MAX_BODY_BYTES
    response = client.post(body).response
    assert response["allowed"] is False
    assert response["auditAnnotations"]["reason"] == "undigestable-spec"
    assert "larger than 262144 bytes" in response["status"]["message"]


def test_100k_deep_nesting_is_400_and_the_worker_survives(client: Client) -> None:
    for body in (b"[" * 100_000 + b"]" * 100_000, b"{" + b'"a":{' * 100_000, b"[" * 3_000_000):
        assert_rejected(client.post(body), 400, "nests")
    text = review_body(agentrun_request()).decode()
    nested = text.replace('"prompt": "hello"', '"prompt": ' + "[" * 100_000 + "1" + "]" * 100_000)
    assert_rejected(client.post(nested.encode()), 400, "nests")
    assert_alive(client)


def test_depth_counts_structure_not_brackets_inside_strings(client: Client) -> None:
    request = agentrun_request()
    request["object"]["spec"]["parameters"]["prompt"] = "[{" * 5000 + '\\"[' * 100
    response = client.review(request).response
    assert response["auditAnnotations"]["reason"] == "missing-approvals"
    nested: Any = "leaf"
    for _ in range(DEFAULT_MAX_DEPTH - 10):
        nested = {"n": nested}
    request["object"]["spec"]["parameters"] = nested
    assert client.review(request).response["allowed"] is False


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"apiVersion": "admission.k8s.io/v1", "request": {"uid": "\xff\xfe"}}', "UTF-8"),
        (b"\xef\xbb\xbf" + review_body(agentrun_request()), "byte-order mark"),
        (review_body(agentrun_request()).replace(b'"hello"', b'"caf\xc3"'), "UTF-8"),
        ('{"apiVersion": "admission.k8s.io/v1"}'.encode("utf-16"), "UTF-8"),
    ],
    ids=["invalid-bytes", "bom", "truncated-sequence", "utf-16"],
)
def test_invalid_utf8_is_400(client: Client, body: bytes, text: str) -> None:
    assert_rejected(client.post(body), 400, text)


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t.replace(
            '"kind": "AdmissionReview"', '"kind": "AdmissionReview", "kind": "AdmissionReview"'
        ),
        lambda t: t.replace(
            '"operation": "CREATE"', '"operation": "DELETE", "operation": "CREATE"'
        ),
        lambda t: t.replace('"uid": ', '"uid": "other", "uid": ', 1),
        lambda t: t.replace(
            '"username": "requester"', '"username": "alice", "username": "requester"'
        ),
        lambda t: t.replace('"prompt": "hello"', '"prompt": "hello", "prompt": "bye"'),
    ],
    ids=["kind", "operation", "uid", "username", "in-spec"],
)
def test_duplicate_keys_are_400(client: Client, edit: Any) -> None:
    text = edit(review_body(agentrun_request()).decode())
    assert_rejected(client.post(text), 400, "duplicate key")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_400(client: Client, constant: str) -> None:
    text = review_body(agentrun_request()).decode().replace('"hello"', constant)
    assert_rejected(client.post(text), 400, "not a JSON number")


def test_integers_too_long_to_parse_are_400(client: Client) -> None:
    text = review_body(agentrun_request()).decode().replace('"hello"', "9" * 5000)
    assert_rejected(client.post(text), 400, "not valid JSON")


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b'"AdmissionReview"', b"42", b"null", b"true", b"{", b'{"a": 1} x', b"\x00"],
    ids=["empty", "array", "string", "number", "null", "bool", "truncated", "trailing", "nul"],
)
def test_bodies_that_are_not_an_object_are_400(client: Client, body: bytes) -> None:
    assert_rejected(client.post(body), 400)


def _without(path: tuple[str, ...]) -> dict[str, Any]:
    review: dict[str, Any] = {
        "apiVersion": V1,
        "kind": "AdmissionReview",
        "request": agentrun_request(),
    }
    target = review
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return review


@pytest.mark.parametrize(
    ("review", "text"),
    [
        (_without(("request",)), "request is missing"),
        (_without(("request", "uid")), "request.uid"),
        (_without(("request", "operation")), "request.operation"),
        (_without(("request", "resource")), "request.resource"),
        (_without(("request", "resource", "group")), "request.resource.group"),
        (_without(("request", "userInfo")), "request.userInfo"),
        (_without(("apiVersion",)), "apiVersion"),
        (_without(("kind",)), "kind must be AdmissionReview"),
        (
            {
                "apiVersion": "admission.k8s.io/v2",
                "kind": "AdmissionReview",
                "request": agentrun_request(),
            },
            "apiVersion",
        ),
        (
            {
                "apiVersion": V1,
                "kind": "AdmissionReview",
                "request": {**agentrun_request(), "uid": ""},
            },
            "request.uid",
        ),
        (
            {
                "apiVersion": V1,
                "kind": "AdmissionReview",
                "request": {**agentrun_request(), "uid": 7},
            },
            "request.uid",
        ),
        (
            {
                "apiVersion": V1,
                "kind": "AdmissionReview",
                "request": {**agentrun_request(), "operation": "PATCH"},
            },
            "request.operation",
        ),
        (
            {
                "apiVersion": V1,
                "kind": "AdmissionReview",
                "request": {**agentrun_request(), "object": []},
            },
            "request.object",
        ),
        (
            {
                "apiVersion": V1,
                "kind": "AdmissionReview",
                "request": {**agentrun_request(), "userInfo": {"groups": "x"}},
            },
            "groups",
        ),
        (
            {
                "apiVersion": V1,
                "kind": "AdmissionReview",
                "request": {**agentrun_request(), "dryRun": "no"},
            },
            "dryRun",
        ),
        (
            {
                "apiVersion": V1,
                "kind": "AdmissionReview",
                "request": {**agentrun_request(), "namespace": ["agents"]},
            },
            "namespace",
        ),
    ],
    ids=[
        "no-request",
        "no-uid",
        "no-operation",
        "no-resource",
        "no-resource-group",
        "no-userinfo",
        "no-apiversion",
        "no-kind",
        "unknown-version",
        "empty-uid",
        "numeric-uid",
        "unknown-operation",
        "object-not-object",
        "groups-not-list",
        "dryrun-not-bool",
        "namespace-not-string",
    ],
)
def test_reviews_missing_what_decide_needs_are_400(
    client: Client, review: dict[str, Any], text: str
) -> None:
    assert_rejected(client.post(json.dumps(review)), 400, text)


def test_a_body_that_never_finishes_gets_408(server: ServerThread) -> None:
    """The read timeout (0.5 s here) frees the worker from a client that stalls mid-body."""
    body = review_body(agentrun_request())
    with _raw_connection(server) as tls:
        head = f"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        tls.sendall(head.encode() + body[:100])
        started = time.monotonic()
        reply = _read_head(tls)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert 0.4 < time.monotonic() - started < 5


@pytest.mark.parametrize(
    "payload", [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX\r\n0\r\n\r\n"], ids=["size", "framing"]
)
def test_broken_chunked_framing_is_400(server: ServerThread, payload: bytes) -> None:
    with _raw_connection(server) as tls:
        head = b"POST /validate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        tls.sendall(head + payload)
        assert _read_head(tls).split(b" ")[1] == b"400"


def test_a_client_leaving_mid_body_does_not_hurt_the_worker(
    server: ServerThread, client: Client
) -> None:
    body = review_body(agentrun_request())
    with _raw_connection(server) as tls:
        head = f"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        tls.sendall(head.encode() + body[:100])
    time.sleep(0.1)
    assert_alive(client)


def test_malformed_requests_are_counted_by_kind(server: ServerThread, client: Client) -> None:
    before = _sample(server, 'approvalgate_malformed_requests_total{kind="duplicate-key"}')
    client.post(b'{"a": 1, "a": 2}')
    assert (
        _sample(server, 'approvalgate_malformed_requests_total{kind="duplicate-key"}') == before + 1
    )


# --- 15: bundle missing, broken, unreadable: deny, not ready; a broken swap keeps the last good


def test_no_bundle_at_start_means_not_ready_and_every_request_denied(
    pki: TestPKI, tmp_path: Path, base_bundle_text: str
) -> None:
    bundle = tmp_path / "bundle.json"
    with ServerThread(pki, bundle) as server, server.client() as client:
        ready = client.get("/readyz")
        assert ready.status == 503
        assert b"no bundle loaded" in ready.body
        assert client.get("/healthz").status == 200
        for request in (agentrun_request(), agentrun_request(operation="DELETE")):
            response = client.review(request).response
            assert response["allowed"] is False
            assert response["auditAnnotations"]["reason"] == "no-bundle"
            assert "no policy bundle" in response["status"]["message"]
        write_atomic(bundle, base_bundle_text)
        server.wait_for(lambda: client.get("/readyz").status == 200)
        assert client.review(agentrun_request(operation="DELETE")).response["allowed"] is True


@pytest.mark.parametrize(
    "content",
    ["", "{not json", "[]", '{"generation": "x"}', "\xff"],
    ids=["empty", "broken-json", "array", "schema", "not-utf8"],
)
def test_an_unreadable_bundle_at_start_is_not_ready(
    pki: TestPKI, tmp_path: Path, content: str
) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(content.encode("latin-1"))
    with ServerThread(pki, bundle) as server, server.client() as client:
        assert client.get("/readyz").status == 503
        assert client.review(agentrun_request()).response["allowed"] is False
        assert server.running.state.failures == 1


def test_a_broken_bundle_swap_keeps_the_last_good_one(
    pki: TestPKI, bundle_file: Path, base_bundle_text: str
) -> None:
    edited = json.loads(base_bundle_text)
    edited["noMatch"] = "allow"  # hand-edited after compilation: generation no longer matches
    breakages = ["{broken", "", json.dumps(edited), json.dumps({**edited, "policies": "x"})]
    with ServerThread(pki, bundle_file) as server, server.client() as client:
        state = server.running.state
        good = state.generation
        for number, broken in enumerate(breakages, start=1):
            write_atomic(bundle_file, broken)
            server.wait_for(lambda: state.failures == number)  # noqa: B023
            assert state.generation == good
            assert client.get("/readyz").status == 200
            response = client.review(agentrun_request(agent="unmatched-agent")).response
            assert (response["allowed"], response["auditAnnotations"]["reason"]) == (
                False,
                "no-policy",
            )
        bundle_file.unlink()
        server.wait_for(lambda: state.failures == len(breakages) + 1)
        assert client.get("/readyz").status == 200
        assert _sample(server, "approvalgate_bundle_reload_failures_total") == len(breakages) + 1
        assert _sample(server, f'approvalgate_bundle_generation_info{{generation="{good}"}}') == 1
        write_atomic(bundle_file, base_bundle_text)  # the same content again: no reload needed
        time.sleep(0.3)
        assert state.loads == 1


# --- 16: internal exception anywhere: deny with a generic message, the detail in the log ------


@pytest.mark.parametrize("version", [V1, V1BETA1])
def test_an_exception_in_the_handler_denies(
    server: ServerThread,
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    version: str,
) -> None:
    def explode(*_: object) -> None:
        raise RuntimeError("boom: secret detail")

    monkeypatch.setattr("approvalgate.webhook.app.decide", explode)
    request = agentrun_request(operation="DELETE")  # would be allowed
    review = client.review(request, version).review()
    assert review["apiVersion"] == version
    response = review["response"]
    assert response["uid"] == request["uid"]
    assert response["allowed"] is False
    assert response["status"] == {"code": 403, "message": GENERIC_ERROR, "reason": "Forbidden"}
    assert "secret detail" not in json.dumps(review)
    assert any(
        "boom: secret detail" in (r.exc_text or "") or (r.exc_info and "boom" in str(r.exc_info[1]))
        for r in caplog.records
    )


def test_an_exception_while_encoding_the_response_denies(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("approvalgate.webhook.app.build_response", lambda *_: {"bad": object()})
    response = client.review(agentrun_request(operation="DELETE")).response
    assert (response["allowed"], response["status"]["message"]) == (False, GENERIC_ERROR)


class ExplodingBundle:
    """A bundle whose every attribute access raises (an internal error inside decide())."""

    def __getattr__(self, name: str) -> Any:
        raise KeyError(f"corrupt bundle field {name}")


def test_an_exception_inside_decide_denies_and_is_logged(
    pki: TestPKI, bundle_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with ServerThread(pki, bundle_file) as server, server.client() as client:
        server.running.state.bundle = ExplodingBundle()  # type: ignore[assignment]
        response = client.review(agentrun_request()).response
        assert response["allowed"] is False
        assert response["status"]["message"] == GENERIC_ERROR
        assert response["auditAnnotations"] == {"decision": "deny", "reason": "internal-error"}
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "denied" in r.getMessage()]
    assert errors
    assert "corrupt bundle field" in json.dumps(errors[0].__dict__["approvalgate_fields"])


# --- helpers -----------------------------------------------------------------------------


def _sample(server: ServerThread, name: str) -> float:
    text = generate_latest(server.running.metrics.registry).decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class _raw_connection:
    def __init__(self, server: ServerThread) -> None:
        self.server = server

    def __enter__(self) -> ssl.SSLSocket:
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        self.tls = self.server.pki.client_context().wrap_socket(sock, server_hostname="127.0.0.1")
        return self.tls

    def __exit__(self, *_: object) -> None:
        self.tls.close()


def _read_head(tls: ssl.SSLSocket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
