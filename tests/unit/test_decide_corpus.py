"""The decision corpus through decide(): one folder per case (tests/corpus/decide/)."""

from __future__ import annotations

import pytest

from approvalgate.approvals.decide import decide
from tests.support.corpus import case_names, load_case


@pytest.mark.parametrize("name", case_names())
def test_case(name: str) -> None:
    case = load_case(name)
    decision = decide(case.request, case.bundle, case.now, case.view)
    expect = case.expect
    assert decision.internal_error == ""
    assert (decision.allowed, decision.reason) == (expect["allowed"], expect["reason"]), (
        decision.message
    )
    assert decision.code == (200 if expect["allowed"] else 403)
    if "message" in expect:
        assert decision.message == expect["message"].rstrip("\n")
    for part in expect.get("contains", []):
        assert part in decision.message, decision.message
    if "warnings" in expect:
        assert list(decision.warnings) == expect["warnings"]
    for key, value in expect.get("audit", {}).items():
        assert decision.audit_annotations.get(key) == value


def test_corpus_is_large_enough() -> None:
    assert len(case_names()) >= 60
