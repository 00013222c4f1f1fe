"""The admission hot path's memo tables never change a verdict (docs/design.md,
"Admission hot path").

- the whole decision corpus gets the same decisions with the caches on (cold, then warm)
  and off (``Bundle(caches=False)``: every signature verified by securesystemslib's path);
- a cached signature is never accepted for different bytes: a tampered payload, a tampered
  signature or a key-id hint naming another key all miss and fail, even right after the
  genuine envelope was verified and cached;
- the tables are bounded, failures are never stored and cannot evict good entries;
- the spec-digest memo tells apart what the digest tells apart (and refuses what it refuses).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from approvalgate.approvals import records
from approvalgate.approvals.bundle import DIGEST_CACHE_MAX_CHARS, Bundle
from approvalgate.approvals.decide import Decision, decide
from approvalgate.approvals.digest import spec_digest
from approvalgate.approvals.errors import DigestError
from tests.support.corpus import case_names, load_case, signer

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _verdict(decision: Decision) -> tuple[Any, ...]:
    """Everything a caller can see of a decision."""
    return (
        decision.allowed,
        decision.code,
        decision.reason,
        decision.message,
        decision.warnings,
        dict(decision.audit_annotations),
        decision.policies,
        decision.approvers,
        decision.results,
        decision.digest,
        decision.subject,
        decision.internal_error,
    )


# --- 1. the corpus: same verdicts with and without the caches ------------------------------


@pytest.mark.parametrize("name", case_names())
def test_corpus_verdicts_are_the_same_with_and_without_caches(name: str) -> None:
    case = load_case(name)
    cached = case.bundle
    uncached = dataclasses.replace(case.bundle, caches=False)
    reference = _verdict(decide(case.request, uncached, case.now, case.view))
    assert _verdict(decide(case.request, cached, case.now, case.view)) == reference  # cold
    assert _verdict(decide(case.request, cached, case.now, case.view)) == reference  # warm
    assert uncached.verifier.cache_info()["verified_entries"] == 0


def test_one_warm_bundle_across_the_whole_corpus_changes_nothing() -> None:
    """Entries left by one case never leak into another case's verdict."""
    shared: dict[str, Bundle] = {}
    for name in case_names():
        case = load_case(name)
        # the same bundle object for every case compiled from the same policies
        bundle = shared.setdefault(case.bundle.generation, case.bundle)
        reference = _verdict(
            decide(case.request, dataclasses.replace(bundle, caches=False), case.now, case.view)
        )
        assert _verdict(decide(case.request, bundle, case.now, case.view)) == reference, name


def test_the_caches_are_used_on_a_repeated_request() -> None:
    case = load_case("approve-two-distinct")
    bundle = dataclasses.replace(case.bundle)  # fresh tables
    decide(case.request, bundle, case.now)
    first = bundle.verifier.cache_info()
    decide(case.request, bundle, case.now)
    second = bundle.verifier.cache_info()
    assert first["verified_entries"] == 2
    assert second["verified_hits"] == first["verified_hits"] + 2
    assert second["annotation_hits"] == first["annotation_hits"] + 1


def test_a_reloaded_bundle_starts_with_empty_tables() -> None:
    case = load_case("approve-two-distinct")
    decide(case.request, case.bundle, case.now)
    assert case.bundle.verifier.cache_info()["verified_entries"] > 0
    reloaded = dataclasses.replace(case.bundle)
    assert reloaded.verifier is not case.bundle.verifier
    assert reloaded.verifier.cache_info()["verified_entries"] == 0


# --- 2. tampering is never accepted from the cache ----------------------------------------


def _claim(**changes: Any) -> records.Claim:
    values: dict[str, Any] = {
        "subject": records.subject_name("agents", "run-1"),
        "digest": "ab" * 32,
        "decision": "approve",
        "approver": "alice",
        "reason": "",
        "issued_at": NOW - timedelta(hours=1),
        "expires_at": NOW + timedelta(hours=1),
        "nonce": "n1",
        "environment": "prod",
    }
    values.update(changes)
    return records.Claim(**values)


def _key(name: str) -> Any:
    return signer(name).public_key


def _parse(envelope: dict[str, Any]) -> records.ParsedRecord:
    parsed, problems = records.parse_annotation(json.dumps([envelope]))
    assert problems == [], problems
    return parsed[0]


def _edit_payload(envelope: dict[str, Any], **predicate: str) -> dict[str, Any]:
    edited = copy.deepcopy(envelope)
    statement = json.loads(base64.b64decode(edited["payload"]))
    statement["predicate"].update(predicate)
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    edited["payload"] = base64.b64encode(payload).decode()
    return edited


def test_a_tampered_payload_with_the_same_key_id_is_not_accepted_from_the_cache() -> None:
    verifier = records.Verifier()
    genuine = records.sign(_claim(), signer("alice"))
    assert verifier.signed_by(_parse(genuine), [_key("alice")]) == _key("alice")
    assert verifier.signed_by(_parse(genuine), [_key("alice")]) == _key("alice")  # from cache
    tampered = _edit_payload(genuine, expiresAt="2099-01-01T00:00:00Z")
    assert tampered["signatures"] == genuine["signatures"]  # same key id, same signature
    assert verifier.signed_by(_parse(tampered), [_key("alice")]) is None
    assert records.signed_by(_parse(tampered), [_key("alice")]) is None


def test_a_tampered_signature_is_not_accepted_from_the_cache() -> None:
    verifier = records.Verifier()
    genuine = records.sign(_claim(), signer("alice"))
    assert verifier.signed_by(_parse(genuine), [_key("alice")]) is not None
    tampered = copy.deepcopy(genuine)
    raw = bytearray(base64.b64decode(tampered["signatures"][0]["sig"]))
    raw[10] ^= 1
    tampered["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    assert verifier.signed_by(_parse(tampered), [_key("alice")]) is None


def test_a_signature_cached_for_one_key_does_not_verify_for_another() -> None:
    verifier = records.Verifier()
    genuine = records.sign(_claim(), signer("alice"))
    assert verifier.signed_by(_parse(genuine), [_key("alice")]) == _key("alice")
    # the hint names alice's key, but only bob's key is a candidate (another approver)
    assert verifier.signed_by(_parse(genuine), [_key("bob")]) is None
    hinted_bob = copy.deepcopy(genuine)
    hinted_bob["signatures"][0]["keyid"] = _key("bob").keyid
    assert verifier.signed_by(_parse(hinted_bob), [_key("bob")]) is None
    assert verifier.signed_by(_parse(hinted_bob), [_key("bob"), _key("alice")]) == _key("alice")


def test_tampered_record_is_denied_by_decide_after_the_genuine_one_was_cached() -> None:
    case = load_case("approve-two-distinct")
    bundle = dataclasses.replace(case.bundle)
    assert decide(case.request, bundle, case.now).allowed
    request = copy.deepcopy(case.request)
    annotations = request["object"]["metadata"]["annotations"]
    envelopes = json.loads(annotations[records.ANNOTATION])
    envelopes[0] = _edit_payload(envelopes[0], reason="edited after signing")
    annotations[records.ANNOTATION] = json.dumps(envelopes)
    decision = decide(request, bundle, case.now)
    reference = decide(request, dataclasses.replace(bundle, caches=False), case.now)
    assert not decision.allowed
    assert _verdict(decision) == _verdict(reference)
    assert "signature does not verify" in decision.message


# --- 3. bounds ----------------------------------------------------------------------------


def _signed(index: int, key: str = "alice") -> records.ParsedRecord:
    return _parse(records.sign(_claim(nonce=f"n{index}"), signer(key)))


def test_the_verified_table_is_bounded() -> None:
    verifier = records.Verifier(4)
    for index in range(10):
        assert verifier.signed_by(_signed(index), [_key("alice")]) is not None
    info = verifier.cache_info()
    assert info["verified_entries"] == 4
    assert info["verified_max"] == 4
    assert info["verified_misses"] == 10


def test_failures_are_not_stored_and_do_not_evict_good_entries() -> None:
    verifier = records.Verifier(2)
    good = _signed(0)
    assert verifier.signed_by(good, [_key("alice")]) is not None
    for index in range(20):  # signed by mallory, checked against alice: all fail
        assert verifier.signed_by(_signed(index, "mallory"), [_key("alice")]) is None
    info = verifier.cache_info()
    assert info["verified_entries"] == 1
    assert verifier.signed_by(good, [_key("alice")]) is not None
    assert verifier.cache_info()["verified_hits"] == info["verified_hits"] + 1


def test_the_annotation_table_is_bounded_and_skips_large_annotations() -> None:
    verifier = records.Verifier(max_annotations=3, max_annotation_chars=2000)
    envelope = records.sign(_claim(), signer("alice"))
    for index in range(8):
        value = records.dump_annotation([_edit_payload(envelope, nonce=f"x{index}")])
        assert len(value) < 2000
        parsed, problems = verifier.parse_annotation(value)
        assert (list(parsed), list(problems)) == records.parse_annotation(value)
    assert verifier.cache_info()["annotation_entries"] == 3
    large = records.dump_annotation([envelope] * 6)
    assert len(large) > 2000
    before = verifier.cache_info()
    parsed, problems = verifier.parse_annotation(large)
    assert (list(parsed), list(problems)) == records.parse_annotation(large)
    after = verifier.cache_info()
    assert (after["annotation_hits"], after["annotation_misses"]) == (
        before["annotation_hits"],
        before["annotation_misses"],
    )


def test_a_verifier_with_no_entries_caches_nothing() -> None:
    verifier = records.Verifier(0)
    record = _signed(1)
    for _ in range(3):
        assert verifier.signed_by(record, [_key("alice")]) == _key("alice")
        verifier.parse_annotation("[]")
    info = verifier.cache_info()
    assert info["verified_entries"] == 0
    assert info["annotation_entries"] == 0


def test_the_verifier_agrees_with_signed_by_on_hint_cases() -> None:
    """The same answers as the reference :func:`records.signed_by` (test_records.py)."""
    envelope = records.sign(_claim(), signer("alice"))
    cases = [
        [_key("alice")],
        [_key("bob"), _key("alice")],
        [_key("bob")],
        [],
    ]
    verifier = records.Verifier()
    for keys in cases:
        for hint in (_key("alice").keyid, _key("bob").keyid, "", "unknown"):
            hinted = copy.deepcopy(envelope)
            hinted["signatures"][0]["keyid"] = hint
            record = _parse(hinted)
            expected = records.signed_by(record, keys)
            assert verifier.signed_by(record, keys) == expected
            assert verifier.signed_by(record, keys) == expected  # warm


# --- 4. the spec-digest memo ----------------------------------------------------------------


@pytest.fixture
def bundle() -> Bundle:
    return dataclasses.replace(load_case("approve-two-distinct").bundle)


@pytest.mark.parametrize(
    "spec",
    [
        {"a": 1},
        {"a": 1.0},
        {"a": "1"},
        {"a": True},
        {"a": None},
        {"a": [1, 2]},
        {"b": 1, "a": 2},
        {"a": 2, "b": 1},
        {"nested": {"x": [{"y": "z"}]}},
        {"unicode": "é\u2028"},
    ],
)
def test_the_digest_memo_gives_the_digest(bundle: Bundle, spec: dict[str, Any]) -> None:
    assert bundle.spec_digest(spec) == spec_digest(spec)
    assert bundle.spec_digest(copy.deepcopy(spec)) == spec_digest(spec)  # warm


def test_the_digest_memo_refuses_what_the_digest_refuses(bundle: Bundle) -> None:
    assert bundle.spec_digest({"1": "a"}) == spec_digest({"1": "a"})
    with pytest.raises(DigestError):
        bundle.spec_digest({1: "a"})  # an integer key is not JSON, even after "1" was stored
    with pytest.raises(DigestError):
        bundle.spec_digest({"n": 2**60})
    with pytest.raises(DigestError):
        bundle.spec_digest({"n": 2**60})  # a failure is not stored


def test_the_digest_memo_skips_huge_specs(bundle: Bundle) -> None:
    spec = {"blob": "x" * (DIGEST_CACHE_MAX_CHARS + 1)}
    assert bundle.spec_digest(spec) == spec_digest(spec)
    assert bundle._digests.cache_info().currsize == 0


def test_the_digest_memo_handles_non_objects(bundle: Bundle) -> None:
    for spec in (None, [], "text", 3):
        try:
            expected: str | type[DigestError] = spec_digest(spec)
        except DigestError:
            expected = DigestError
        if expected is DigestError:
            with pytest.raises(DigestError):
                bundle.spec_digest(spec)
        else:
            assert bundle.spec_digest(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        {"agentRef": {"name": "codex"}, "implementationSpecRef": {"name": "task-a"}},
        {"agentRef": {"name": "codex "}},  # a trailing space: an invalid reference
        {"agentRef": {"name": "Codex"}},
        {"agentRef": "codex"},
        {"agentRef": {"name": 1}},
        {"agentRef": {"name": True}},
        {"workflow": {"steps": [{"implementationSpecRef": {"name": "a"}}, {"x": 1}]}},
        {"workflow": {"steps": [{"implementationSpecRef": {"name": "a\u00a0"}}]}},
        {"secrets": ["ok", "NOT-OK"]},
        {},
    ],
)
def test_the_spec_facts_memo_gives_the_facts(bundle: Bundle, spec: dict[str, Any]) -> None:
    """Cold and warm (a copy: a hit by repr), the memo gives what the spec gives."""
    from approvalgate.approvals import references
    from approvalgate.approvals.bundle import spec_facts

    expected = spec_facts(spec)
    assert expected.digest == spec_digest(spec)
    assert expected.implementations == references.implementation_specs(spec)
    assert expected.invalid_references == bool(references.reference_problems(spec))
    assert bundle.spec_facts(spec) == expected
    assert bundle.spec_facts(copy.deepcopy(spec)) == expected  # warm


def test_an_invalid_reference_is_denied_from_a_warm_memo() -> None:
    """The second request with the same spec is a hit: it is denied with the same message."""
    case = load_case("approve-two-distinct")
    bundle = dataclasses.replace(case.bundle)
    request = copy.deepcopy(case.request)
    request["object"]["spec"]["agentRef"] = {"name": "codex\u00a0"}
    cold = decide(request, bundle, case.now, case.view)
    warm = decide(copy.deepcopy(request), bundle, case.now, case.view)
    reference = decide(request, dataclasses.replace(bundle, caches=False), case.now, case.view)
    assert not cold.allowed
    assert cold.reason == "invalid-reference"
    assert cold == warm == reference
