"""The admission hot path over real HTTPS (docs/design.md, "Admission hot path").

- the bundle's memo tables are used by the server, and a reload starts empty ones;
- a record tampered after its genuine twin was verified (and cached) is still denied;
- ordinary allows are logged at debug, denials at info; every answer is still counted;
- the cheap nesting bound and the exact scan agree at the limit;
- a body that arrives after its headers (slow path of the body reader) is answered.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from approvalgate.approvals import records
from approvalgate.approvals.policy import BundleSettings
from approvalgate.webhook.strictjson import DEFAULT_MAX_DEPTH, nesting_depth
from tests.integration.harness import (
    ServerThread,
    TestPKI,
    review_body,
    write_atomic,
)
from tests.support.corpus import BASE, compile_case_bundle, load_case
from tests.support.paths import ROOT

APPROVED = "approve-two-distinct"


def _tamper(request: dict[str, Any]) -> dict[str, Any]:
    """The same request with its first record's payload edited (signature kept)."""
    edited = copy.deepcopy(request)
    annotations = edited["object"]["metadata"]["annotations"]
    envelopes = json.loads(annotations[records.ANNOTATION])
    statement = json.loads(base64.b64decode(envelopes[0]["payload"]))
    statement["predicate"]["expiresAt"] = "2099-01-01T00:00:00Z"
    envelopes[0]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    annotations[records.ANNOTATION] = json.dumps(envelopes)
    edited["uid"] = edited["uid"] + "-tampered"
    return edited


def test_cache_is_used_tampering_is_denied_and_a_reload_starts_empty(
    pki: TestPKI, tmp_path: Path
) -> None:
    case = load_case(APPROVED)
    bundle_file = tmp_path / "bundle.json"
    bundle_file.write_text(compile_case_bundle(BASE))
    with (
        ServerThread(pki, bundle_file, clock=lambda: case.now) as server,
        server.client() as client,
    ):
        for _ in range(3):
            assert client.review(case.request).response["allowed"] is True
        first = server.running.state.bundle
        assert first is not None
        info = first.verifier.cache_info()
        assert info["verified_entries"] == 2
        assert info["verified_hits"] >= 4
        tampered = client.review(_tamper(case.request)).response
        assert tampered["allowed"] is False
        assert tampered["auditAnnotations"]["reason"] == "missing-approvals"
        assert "signature does not verify" in tampered["status"]["message"]
        assert first.verifier.cache_info()["verified_entries"] == 2  # failure not stored
        write_atomic(
            bundle_file,
            compile_case_bundle(
                BASE, BundleSettings(environment="prod", clock_skew_seconds=30, cluster_view="off")
            ),
        )
        server.wait_for(lambda: server.running.state.bundle is not first)
        second = server.running.state.bundle
        assert second is not None
        assert second.verifier.cache_info()["verified_entries"] == 0
        assert client.review(case.request).response["allowed"] is True
        assert second.verifier.cache_info()["verified_entries"] == 2


def test_allows_are_logged_at_debug_and_denials_at_info(
    pki: TestPKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    case = load_case(APPROVED)
    bundle_file = tmp_path / "bundle.json"
    bundle_file.write_text(compile_case_bundle(BASE))
    denied = _tamper(case.request)
    caplog.set_level(logging.DEBUG, logger="approvalgate.webhook")
    with ServerThread(pki, bundle_file, clock=lambda: case.now) as server:
        with server.client() as client:
            assert client.review(case.request).response["allowed"] is True
            assert client.review(denied).response["allowed"] is False
        metrics = server.running.metrics
    lines = {
        r.__dict__["approvalgate_fields"]["uid"]: r
        for r in caplog.records
        if r.getMessage() == "admission"
    }
    assert lines[case.request["uid"]].levelno == logging.DEBUG
    assert lines[denied["uid"]].levelno == logging.INFO
    assert lines[denied["uid"]].__dict__["approvalgate_fields"]["decision"] == "deny"
    total = sum(
        sample.value
        for family in metrics.registry.collect()
        if family.name == "approvalgate_admission_requests"
        for sample in family.samples
        if sample.name.endswith("_total")
    )
    assert total == 2


def _nested_review(depth: int) -> bytes:
    """An AdmissionReview body whose deepest nesting is exactly ``depth``."""
    request = copy.deepcopy(load_case(APPROVED).request)
    nested: Any = "leaf"
    for _ in range(depth + 1):
        request["object"]["spec"]["parameters"] = {"deep": nested}
        body = review_body(request)
        if nesting_depth(body) == depth:
            return body
        nested = [nested]
    raise AssertionError(f"no body nests exactly {depth} deep")


def test_the_nesting_limit_is_exact_with_few_brackets(pki: TestPKI, tmp_path: Path) -> None:
    bundle_file = tmp_path / "bundle.json"
    bundle_file.write_text(compile_case_bundle(BASE))
    at_limit, over = _nested_review(DEFAULT_MAX_DEPTH), _nested_review(DEFAULT_MAX_DEPTH + 1)
    assert at_limit.count(b"[") + at_limit.count(b"{") >= DEFAULT_MAX_DEPTH
    with ServerThread(pki, bundle_file) as server, server.client() as client:
        ok = client.post(at_limit)
        assert ok.status == 200
        assert ok.response["allowed"] is False  # spec changed: not approved, but answered
        rejected = client.post(over)
        assert rejected.status == 400
        assert b"nests" in rejected.body


def test_a_body_sent_after_the_headers_is_read(pki: TestPKI, tmp_path: Path) -> None:
    case = load_case(APPROVED)
    bundle_file = tmp_path / "bundle.json"
    bundle_file.write_text(compile_case_bundle(BASE))
    body = review_body(case.request)
    head = (
        f"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with ServerThread(pki, bundle_file, clock=lambda: case.now) as server:
        context = pki.client_context()
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(head)
            time.sleep(0.2)
            tls.sendall(body[:100])
            time.sleep(0.2)
            tls.sendall(body[100:])
            reply = _read_reply(tls)
    assert json.loads(reply)["response"]["allowed"] is True


def _read_reply(tls: ssl.SSLSocket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += tls.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += tls.recv(65536)
    return rest[:length]


def test_the_webhook_benchmark_runs_in_quick_mode(tmp_path: Path) -> None:
    """bench/webhook_bench.py --quick: every row answered correctly (no timing asserted)."""
    out = tmp_path / "rows.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "webhook_bench.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("## Webhook")
    assert "| approvalgate, 1 worker | 2 approvals |" in result.stdout
    assert "Fixed rates" in result.stdout
    rows = json.loads(out.read_text())["rows"]
    assert {r["kind"] for r in rows} == {"bare", "ours"}
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in rows)
