"""What the webhook writes, over real HTTPS (docs/design.md, "Known limits", fifth red-team
pass: outputs): the series a requester's requests make in the metrics it serves."""

from __future__ import annotations

from pathlib import Path

from approvalgate.runtime.metrics_server import generate_latest
from approvalgate.webhook.metrics import MAX_POLICY_SETS, OTHER_POLICIES
from tests.integration.harness import ServerThread, TestPKI
from tests.support.corpus import compile_case_bundle
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
