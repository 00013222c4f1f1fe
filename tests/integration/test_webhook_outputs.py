"""What the webhook writes, over real HTTPS (docs/design.md, "Known limits", fifth red-team
pass: outputs): the series a requester's requests make in the metrics it serves, and the
log lines her text reaches."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from approvalgate.approvals import records
from approvalgate.runtime.metrics_server import generate_latest
from approvalgate.webhook.metrics import MAX_POLICY_SETS, OTHER_POLICIES
from tests.integration.harness import ServerThread, TestPKI, agentrun_request, wait_until
from tests.support.corpus import BASE, case_settings, compile_case_bundle, load_case, make_record
from tests.unit.test_outputs import (
    NOW,
    label_combinations,
    labelled_policies_folder,
    run_request,
)

LABELS = 8  # 256 sets of policies a requester may choose, past MAX_POLICY_SETS


def test_a_requester_choosing_label_combinations_cannot_grow_the_series_served(
    pki: TestPKI, tmp_path: Path
) -> None:
    folder = labelled_policies_folder(tmp_path / "policies", LABELS)
    bundle_file = tmp_path / "bundle.json"
    bundle_file.write_text(compile_case_bundle(folder))
    combos = label_combinations(LABELS)
    assert len(combos) > MAX_POLICY_SETS + LABELS
    with ServerThread(pki, bundle_file, clock=lambda: NOW) as server, server.client() as client:
        for index, labels in enumerate(combos):
            response = client.review(run_request(labels, f"run-{index}")).response
            assert response["allowed"] is False  # none carries approvals
        text = generate_latest(server.running.metrics.registry).decode()
    series = [
        line
        for line in text.splitlines()
        if line.startswith("approvalgate_admission_requests_total{")
    ]
    assert len(series) <= MAX_POLICY_SETS + 2, len(series)
    assert any(f'policy="{OTHER_POLICIES}"' in line for line in series)
    assert sum(float(line.rsplit(" ", 1)[1]) for line in series) == len(combos)


def test_a_username_holding_line_breaks_and_bidi_controls_logs_one_readable_line(
    pki: TestPKI, tmp_path: Path
) -> None:
    """The production process, asked directly (anyone who reaches its port can): a denial is
    logged with the request's username and name, text the caller chose. Its line is one JSON
    record whatever they hold, and the characters that break or reorder a line are escapes."""
    from tests.integration.test_webhook_process import serve

    forged = 'mallory\u2028{"level":"info","msg":"admission","decision":"allow"}\u202e\u0085'
    bundle = tmp_path / "bundle.json"
    bundle.write_text(compile_case_bundle(BASE))
    request = agentrun_request(user=forged)
    with serve(tmp_path, pki, bundle) as served, served.client() as client:
        assert client.review(request).response["allowed"] is False
        wait_until(
            lambda: any(r.get("user") == forged for r in served.logs()), 10, "the denial's line"
        )
        raw = served.log.read_text(encoding="utf-8")
    (line,) = [line for line in raw.splitlines() if "mallory" in line]
    record = json.loads(line)
    assert (record["user"], record["decision"]) == (forged, "deny")
    assert "\u2028" not in raw and "\u202e" not in raw and "\u0085" not in raw


def test_a_denial_quoting_claimed_names_stays_small_over_https(
    pki: TestPKI, tmp_path: Path
) -> None:
    """What the API server writes to its audit log for the request: the review's message."""
    case = load_case("approve-two-distinct")
    request = copy.deepcopy(case.request)
    obj = request["object"]
    envelopes = [
        make_record({"key": "carol", "approver": f"{i:03d}" + "x" * 5500}, obj, BASE, case.now)
        for i in range(30)
    ]
    obj["metadata"]["annotations"][records.ANNOTATION] = records.dump_annotation(envelopes)
    bundle_file = tmp_path / "bundle.json"
    bundle_file.write_text(compile_case_bundle(case.folder, case_settings(case.spec)))
    with (
        ServerThread(pki, bundle_file, clock=lambda: case.now) as server,
        server.client() as client,
    ):
        reply = client.review(request)
    message = reply.response["status"]["message"]
    assert message.count("is not a known approver") == 30
    assert len(reply.body) < 30 * 500, len(reply.body)
