"""security.md attacks at the decide() level that a corpus folder cannot express, and the CLI's
reading of the same hostile annotations.

The corpus (tests/corpus/decide/, run by tests/unit/test_decide_corpus.py) holds every attack
that is a request and a bundle; here: no bundle, an empty keyring (15), an exception inside
decide() (16), and `approvalgate verify`/`approve` on the corpus's hostile annotations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from approvalgate.approvals.bundle import load_bundle
from approvalgate.approvals.decide import GENERIC_ERROR, decide
from approvalgate.approvals.policy import bundle_generation
from approvalgate.approvals.records import ANNOTATION, MAX_ANNOTATION_BYTES
from approvalgate.cli import main as cli_main
from tests.support.corpus import CORPUS, KEYS, compile_case_bundle, load_case


def test_no_bundle_denies_every_request() -> None:
    """15: without a bundle even what would pass (DELETE, status) is denied: fail closed."""
    case = load_case("approve-two-distinct")
    for operation in ("CREATE", "UPDATE", "DELETE"):
        request = {**case.request, "operation": operation, "oldObject": case.request["object"]}
        decision = decide(request, None, case.now)
        assert (decision.allowed, decision.reason, decision.code) == (False, "no-bundle", 403)
        assert "no policy bundle" in decision.message


def empty_keyring_bundle(text: str) -> dict[str, Any]:
    """The bundle with every approver's keys removed, its generation recomputed (a hand-made
    bundle the compiler would never write: an Approver needs at least one key)."""
    bundle = json.loads(text)
    for approver in bundle["approvers"]:
        approver["keys"] = []
    bundle["generation"] = bundle_generation(bundle)
    return bundle


def test_an_empty_keyring_denies_even_genuinely_signed_runs() -> None:
    """15: the approvals are real signatures of the approvers' keys, but the bundle trusts no
    key: nothing can count."""
    case = load_case("approve-two-distinct")
    assert decide(case.request, case.bundle, case.now).allowed
    bundle = load_bundle(empty_keyring_bundle(compile_case_bundle(case.folder)))
    decision = decide(case.request, bundle, case.now)
    assert (decision.allowed, decision.reason) == (False, "missing-approvals")
    assert "0 of 2 required approvals" in decision.message


class ExplodingBundle:
    """A bundle whose every attribute raises: an internal error anywhere inside decide()."""

    def __getattr__(self, name: str) -> Any:
        raise KeyError(f"corrupt bundle field {name}")


@pytest.mark.parametrize("case_name", ["approve-two-distinct", "bypass-valid", "trusted-submitter"])
def test_an_exception_inside_decide_denies_with_a_generic_message(case_name: str) -> None:
    """16: runs that would be admitted are denied; the detail is kept for the log only."""
    case = load_case(case_name)
    decision = decide(case.request, ExplodingBundle(), case.now)  # type: ignore[arg-type]
    assert (decision.allowed, decision.reason, decision.message) == (
        False,
        "internal-error",
        GENERIC_ERROR,
    )
    assert "corrupt bundle field" in decision.internal_error
    assert "corrupt" not in decision.message


# --- the CLI on hostile annotations -----------------------------------------------------------

HOSTILE = ["annotation-deeply-nested", "annotation-not-json", "annotation-too-large"]


@pytest.mark.parametrize("case_name", HOSTILE)
@pytest.mark.parametrize("command", ["verify", "approve"])
def test_the_cli_refuses_hostile_annotations_without_crashing(
    case_name: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`approvalgate verify` and `approve` read an existing approvals annotation before doing
    anything: a hostile one is a located error (exit 1), never an internal error (exit 3)."""
    case = load_case(case_name)
    run = tmp_path / "run.yaml"
    run.write_text(case.run_text)
    bundle = tmp_path / "bundle.json"
    bundle.write_text(compile_case_bundle(CORPUS / "_base"))
    args = {
        "verify": [
            *("verify", str(run), "--bundle", str(bundle), "--output", "json"),
            "--allow-unsigned-bundle",  # a test bundle, not signed
        ],
        "approve": [
            *("approve", str(run), "--env", "prod"),
            *("--key", str(KEYS / "alice.key"), "--approver", "alice"),
        ],
    }[command]
    code = cli_main(args)
    out, err = capsys.readouterr()
    if command == "verify":  # the (expected) warning that the test bundle is not signed
        warning, _, err = err.partition("\n")
        assert "signatures not checked (--allow-unsigned-bundle)" in warning
    assert code in (0, 1), err
    assert "internal error" not in err
    if command == "approve":  # never signs onto an annotation the webhook cannot use
        assert code == 1 and "signed" not in err, err
    if command == "verify" and not err:  # a verdict: denied
        assert (code, json.loads(out)[0]["allowed"]) == (1, False)
    elif code == 1:  # refused: located as file:line:col
        assert err.startswith(f"error: {run}:"), err


def test_approve_refuses_to_grow_the_annotation_past_what_the_webhook_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An annotation just under 256 KiB (an array of objects, read as envelopes) gets no
    record that would push it over: exit 1, located, nothing written."""
    case = load_case("approve-two-distinct")
    padding = [{"padding": "x" * 1000}] * 258  # about 261,900 bytes: under, but not by much
    text = json.dumps(padding, separators=(",", ":"))
    assert len(text) < MAX_ANNOTATION_BYTES < len(text) + 1000
    doc = yaml.safe_load(case.run_text)
    doc["metadata"].setdefault("annotations", {})[ANNOTATION] = text
    run = tmp_path / "run.yaml"
    run.write_text(yaml.safe_dump(doc))
    before = run.read_text()
    code = cli_main(
        [
            *("approve", str(run), "--env", "prod", "--key", str(KEYS / "alice.key")),
            *("--approver", "alice", "--in-place"),
        ]
    )
    _, err = capsys.readouterr()
    assert code == 1, err
    assert err.startswith(f"error: {run}:") and "over the 262144 bytes" in err, err
    assert run.read_text() == before
