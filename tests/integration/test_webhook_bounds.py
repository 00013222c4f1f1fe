"""Bounds on what one admission may cost, over real HTTPS (docs/design.md, "Known limits",
fourth red-team pass: availability). The API server hands the webhook objects of up to
3 MiB; a run's spec is digested only up to ``digest.MAX_SPEC_BYTES``, and past it the run is
denied with a reason naming the bound. Outcomes and bounds are asserted, never durations.
"""

from __future__ import annotations

import copy
from pathlib import Path

from approvalgate.approvals.digest import MAX_SPEC_BYTES
from approvalgate.approvals.gates import MAX_PENDING_REQUESTS
from approvalgate.approvals.view import StaticView
from tests.integration.harness import ServerThread, TestPKI, review_body
from tests.support.corpus import BASE, compile_case_bundle, load_case
from tests.unit.test_gates import NOW, NS, SETTINGS, approval_request, review

APPROVED = "approve-two-distinct"


def test_a_run_whose_spec_is_past_the_bound_is_denied_naming_it(
    pki: TestPKI, tmp_path: Path
) -> None:
    case = load_case(APPROVED)
    bundle_file = tmp_path / "bundle.json"
    bundle_file.write_text(compile_case_bundle(BASE))
    many_keys = copy.deepcopy(case.request)
    many_keys["object"]["spec"]["parameters"] = {f"k{i}": str(i) for i in range(120_000)}
    escaped = copy.deepcopy(case.request)
    escaped["object"]["spec"]["parameters"]["task"] = "\u0001" * (MAX_SPEC_BYTES // 4)
    with (
        ServerThread(pki, bundle_file, clock=lambda: case.now) as server,
        server.client() as client,
    ):
        assert client.review(case.request).response["allowed"] is True
        for request in (many_keys, escaped):
            assert len(review_body(request)) < 3 * 1024 * 1024  # the API server sends it
            response = client.review(request).response
            assert response["allowed"] is False
            assert response["auditAnnotations"]["reason"] == "undigestable-spec"
            message = response["status"]["message"]
            assert f"larger than {MAX_SPEC_BYTES} bytes as RFC 8785 canonical JSON" in message
            assert "keep long text in the ImplementationSpec the run references" in message
        assert client.review(case.request).response["allowed"] is True  # others unaffected


def test_a_requester_at_the_pending_bound_is_refused_more_requests_over_https(
    pki: TestPKI, tmp_path: Path
) -> None:
    """The production worker with a view holding MAX_PENDING_REQUESTS pending requests of the
    requester in her namespace: her next request is denied naming the bound, her request in
    another namespace and another requester's in hers are admitted, and she may still cancel
    one."""
    bundle_file = tmp_path / "bundle.json"
    bundle_file.write_text(compile_case_bundle(BASE, SETTINGS))
    pending = {
        (NS, f"p{i}"): {"spec": {"requester": "requester"}} for i in range(MAX_PENDING_REQUESTS)
    }
    view = StaticView(requests=pending)
    obj = approval_request()
    elsewhere = copy.deepcopy(obj)
    elsewhere["metadata"]["namespace"] = "team-b"
    cancelled = copy.deepcopy(obj)
    cancelled["spec"]["cancelled"] = True
    with (
        ServerThread(pki, bundle_file, clock=lambda: NOW, view=view) as server,
        server.client() as client,
    ):
        refused = client.review(review("approvalrequests", "CREATE", obj)).response
        other = client.review(
            review("approvalrequests", "CREATE", elsewhere, namespace="team-b")
        ).response
        cancel = client.review(review("approvalrequests", "UPDATE", cancelled, old=obj)).response
        colleague = client.review(
            review("approvalrequests", "CREATE", approval_request("alice"), user="alice")
        ).response
    assert refused["allowed"] is False
    assert refused["auditAnnotations"]["reason"] == "too-many-pending-requests"
    assert (
        f"'requester' already has {MAX_PENDING_REQUESTS} pending ApprovalRequests in namespace"
        in refused["status"]["message"]
    )
    assert (other["allowed"], other["auditAnnotations"]["reason"]) == (True, "request-created")
    assert (cancel["allowed"], cancel["auditAnnotations"]["reason"]) == (True, "request-cancelled")
    assert colleague["allowed"] is True, colleague.get("status")
