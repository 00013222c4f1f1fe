"""security.md attacks over real HTTPS that neither the corpus-over-HTTPS run
(tests/integration/test_webhook_corpus.py) nor the malformed-body tests
(tests/integration/test_webhook_malformed.py) carry: found by the fuzz target, or about the
bundle's trust rather than the request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import (
    Client,
    Clock,
    ServerThread,
    TestPKI,
    agentrun_request,
    review_body,
)
from tests.reliability.test_attacks_decide import empty_keyring_bundle
from tests.support.corpus import compile_case_bundle, load_case


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, base_bundle_text: str) -> Iterator[Client]:
    folder = tmp_path_factory.mktemp("http-attacks")
    pki = TestPKI.create(folder / "tls")
    bundle = folder / "bundle.json"
    bundle.write_text(base_bundle_text)
    with ServerThread(pki, bundle) as server, server.client() as c:
        yield c


@pytest.mark.parametrize(
    "operation",
    [{}, [], {"CREATE": 1}, ["DELETE"], 1, None, True],
    ids=["object", "array", "object-with-key", "array-with-value", "number", "null", "bool"],
)
def test_an_operation_that_is_not_a_string_is_400_not_500(client: Client, operation: Any) -> None:
    """14: never a 500 (which a failurePolicy Ignore would turn into an allow). Found by
    fuzz/fuzz_admission.py: ``request.operation`` an object or array made the handler raise
    TypeError (unhashable, in ``operation not in OPERATIONS``)."""
    request = agentrun_request()
    request["operation"] = operation
    reply = client.post(review_body(request))
    assert reply.status == 400, (reply.status, reply.body[:200])
    assert b"request.operation" in reply.body
    assert b'"allowed"' not in reply.body
    assert client.get("/healthz").status == 200


def test_an_empty_keyring_is_not_ready_and_denies(tmp_path: Path) -> None:
    """15: "Bundle missing, empty keyring, unreadable bundle: deny (fail closed), readiness
    false". A bundle that trusts no key at all (every approver's keys removed, generation
    recomputed) can admit nothing signed, so the pod must not report ready."""
    case = load_case("approve-two-distinct")
    pki = TestPKI.create(tmp_path / "tls")
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(empty_keyring_bundle(compile_case_bundle(case.folder))))
    with ServerThread(pki, bundle, clock=Clock(case.now)) as server, server.client() as c:
        response = c.review(case.request).response
        ready = c.get("/readyz")
    assert (response["allowed"], response["auditAnnotations"]["reason"]) == (
        False,
        "missing-approvals",
    )
    assert ready.status == 503, ready.body
