"""approvals.records: the DSSE envelope, the in-toto Statement inside it, and the parser.

The parser reads untrusted annotations, so every malformed shape must come back as a
:class:`RecordProblem` with a sentence a human can act on, never as an exception.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from approvalgate.approvals import records
from approvalgate.approvals.digest import spec_digest
from approvalgate.approvals.records import Claim, RecordProblem, parse_annotation, sign, signed_by
from tests.support.corpus import KEYS, signer

ISSUED = datetime(2026, 11, 21, 11, 0, 0, tzinfo=UTC)
EXPIRES = ISSUED + timedelta(hours=2)
SPEC: dict[str, Any] = {
    "agentRef": {"name": "codex-agent"},
    "parameters": {"repository": "proompteng/lab", "task": "Update onboarding flow"},
}
DIGEST = spec_digest(SPEC)
SUBJECT = "agents.proompteng.ai/AgentRun/agents/codex-run-sample"


def claim(**changes: Any) -> Claim:
    fields: dict[str, Any] = {
        "subject": SUBJECT,
        "digest": DIGEST,
        "decision": "approve",
        "approver": "alice",
        "reason": "looks good",
        "issued_at": ISSUED,
        "expires_at": EXPIRES,
        "nonce": "0123456789abcdef0123456789abcdef",
        "environment": "prod",
    }
    fields.update(changes)
    return Claim(**fields)


def public(name: str) -> Any:
    return signer(name).public_key


def statement() -> dict[str, Any]:
    return claim().statement()


def envelope_for(content: object, /, **changes: Any) -> dict[str, Any]:
    """An unsigned-but-well-formed envelope around ``content`` (the parser does not verify)."""
    raw = content if isinstance(content, bytes) else json.dumps(content).encode()
    env: dict[str, Any] = {
        "payload": base64.b64encode(raw).decode(),
        "payloadType": records.PAYLOAD_TYPE,
        "signatures": [{"keyid": "k", "sig": base64.b64encode(bytes(64)).decode()}],
    }
    env.update(changes)
    return env


def only_problem(value: str | None) -> RecordProblem:
    parsed, problems = parse_annotation(value)
    assert parsed == []
    assert len(problems) == 1, problems
    return problems[0]


# --- signing and the statement ----------------------------------------------------------


def test_sign_then_parse_round_trips_the_claim() -> None:
    original = claim()
    envelope = sign(original, signer("alice"))
    parsed, problems = parse_annotation(records.dump_annotation([envelope]))
    assert problems == []
    assert [r.index for r in parsed] == [0]
    assert parsed[0].claim == original
    assert signed_by(parsed[0], [public("bob"), public("alice")]) == public("alice")


def test_round_trip_of_several_records_keeps_their_order_and_indexes() -> None:
    claims = [
        claim(approver="alice"),
        claim(approver="bob", decision="reject", reason="no"),
        claim(approver="oncall", decision="bypass", reason="incident 42"),
    ]
    envelopes = [sign(c, signer(c.approver)) for c in claims]
    parsed, problems = parse_annotation(records.dump_annotation(envelopes))
    assert problems == []
    assert [(r.index, r.claim) for r in parsed] == list(enumerate(claims))


def test_times_are_signed_in_utc_with_a_z_at_second_precision() -> None:
    zone = datetime(2026, 11, 21, 13, 0, 0, 999999).astimezone().tzinfo
    local = datetime(2026, 11, 21, 13, 0, 0, 999999, tzinfo=zone)
    assert records.format_time(local) == local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert records.format_time(ISSUED.replace(microsecond=7)) == "2026-11-21T11:00:00Z"


def test_the_statement_has_the_exact_in_toto_shape() -> None:
    envelope = sign(claim(), signer("alice"))
    assert set(envelope) == {"payload", "payloadType", "signatures"}
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    payload = base64.b64decode(envelope["payload"])
    assert json.loads(payload) == {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {
                "name": "agents.proompteng.ai/AgentRun/agents/codex-run-sample",
                "digest": {"sha256": DIGEST},
            }
        ],
        "predicateType": "https://approvals.proompteng.ai/approval/v2",
        "predicate": {
            "decision": "approve",
            "approver": "alice",
            "environment": "prod",
            "reason": "looks good",
            "issuedAt": "2026-11-21T11:00:00Z",
            "expiresAt": "2026-11-21T13:00:00Z",
            "nonce": "0123456789abcdef0123456789abcdef",
        },
    }
    # compact, sorted: the bytes are reproducible
    assert (
        payload == json.dumps(json.loads(payload), sort_keys=True, separators=(",", ":")).encode()
    )


def test_records_are_signed_only_with_an_environment_name() -> None:
    for bad in ("", "Prod", "prod ", "-prod", "p" * 64):
        with pytest.raises(ValueError, match="an approval record must name its environment"):
            sign(claim(environment=bad), signer("alice"))
    assert records.environment_problem("prod-eu-1") is None
    assert records.environment_problem("p" * 63) is None


def test_a_v1_record_is_read_as_version_1_without_an_environment() -> None:
    """Format v1 is parsed, so decide() can say why it no longer counts; never signed."""
    old = statement()
    old["predicateType"] = records.PREDICATE_TYPE_V1
    del old["predicate"]["environment"]
    parsed, problems = parse_annotation(json.dumps([envelope_for(old)]))
    assert problems == []
    assert (parsed[0].claim.version, parsed[0].claim.environment) == (1, "")
    # a v1 statement cannot smuggle an environment in: v1 has none, whatever it says
    old["predicate"]["environment"] = "prod"
    parsed, problems = parse_annotation(json.dumps([envelope_for(old)]))
    assert (parsed[0].claim.version, parsed[0].claim.environment) == (1, "")
    assert records.FORMAT_VERSION == 2 and claim().version == 2


def test_the_digest_is_the_sha256_of_the_rfc8785_spec() -> None:
    canonical = (
        b'{"agentRef":{"name":"codex-agent"},"parameters":'
        b'{"repository":"proompteng/lab","task":"Update onboarding flow"}}'
    )
    assert hashlib.sha256(canonical).hexdigest() == DIGEST


def test_subject_names() -> None:
    assert records.subject_name("agents", "codex-run-sample") == SUBJECT
    assert records.subject_name("agents", generate_name="codex-run-") == (
        "agents.proompteng.ai/AgentRun/agents/codex-run-*"
    )
    # a name wins over a generateName (the API server has already picked one)
    assert records.subject_name("agents", "codex-run-x1", "codex-run-") == (
        "agents.proompteng.ai/AgentRun/agents/codex-run-x1"
    )


def test_a_generatename_statement_names_the_prefix_with_a_star() -> None:
    subject = records.subject_name("agents", generate_name="codex-run-")
    envelope = sign(claim(subject=subject), signer("alice"))
    statement_ = json.loads(base64.b64decode(envelope["payload"]))
    assert statement_["subject"] == [
        {"name": "agents.proompteng.ai/AgentRun/agents/codex-run-*", "digest": {"sha256": DIGEST}}
    ]
    parsed, _ = parse_annotation(records.dump_annotation([envelope]))
    assert parsed[0].claim.subject == subject


def test_the_key_id_is_the_securesystemslib_default_key_id() -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    private = load_pem_private_key((KEYS / "alice.key").read_bytes(), None)
    raw = private.public_key().public_bytes_raw().hex()  # type: ignore[union-attr]
    description = {"keytype": "ed25519", "keyval": {"public": raw}, "scheme": "ed25519"}
    expected = hashlib.sha256(
        json.dumps(description, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert signer("alice").public_key.keyid == expected
    envelope = sign(claim(), signer("alice"))
    assert [s["keyid"] for s in envelope["signatures"]] == [expected]


def test_the_annotation_is_a_compact_json_array() -> None:
    envelope = sign(claim(), signer("alice"))
    text = records.dump_annotation([envelope])
    assert text.startswith('[{"payload":"')
    assert json.loads(text) == [envelope]
    assert " " not in text


# --- signed_by: the key id is a hint only -----------------------------------------------


def _parsed(envelope: dict[str, Any]) -> records.ParsedRecord:
    parsed, problems = parse_annotation(json.dumps([envelope]))
    assert problems == []
    return parsed[0]


def test_signed_by_finds_the_signer_when_the_hint_names_another_key() -> None:
    envelope = sign(claim(approver="bob"), signer("bob"))
    envelope["signatures"][0]["keyid"] = signer("alice").public_key.keyid
    record = _parsed(envelope)
    assert signed_by(record, [public("alice"), public("bob")]) == public("bob")
    assert signed_by(record, [public("bob"), public("alice")]) == public("bob")


def test_signed_by_never_trusts_a_hint_that_names_a_listed_key() -> None:
    envelope = sign(claim(approver="alice"), signer("mallory"))
    envelope["signatures"][0]["keyid"] = signer("alice").public_key.keyid
    assert signed_by(_parsed(envelope), [public("alice"), public("bob")]) is None


@pytest.mark.parametrize("hint", ["", "not-a-key-id", "0" * 64])
def test_signed_by_works_with_a_missing_or_unknown_hint(hint: str) -> None:
    envelope = sign(claim(), signer("alice"))
    envelope["signatures"][0]["keyid"] = hint
    assert signed_by(_parsed(envelope), [public("carol"), public("alice")]) == public("alice")


def test_signed_by_without_the_hint_field_at_all() -> None:
    envelope = sign(claim(), signer("alice"))
    del envelope["signatures"][0]["keyid"]
    assert signed_by(_parsed(envelope), [public("alice")]) == public("alice")


def test_signed_by_returns_none_for_a_key_not_in_the_list() -> None:
    record = _parsed(sign(claim(), signer("stranger")))
    assert signed_by(record, [public("alice"), public("bob"), public("carol")]) is None
    assert signed_by(record, []) is None


def test_signed_by_rejects_an_edited_payload() -> None:
    envelope = sign(claim(), signer("alice"))
    statement_ = json.loads(base64.b64decode(envelope["payload"]))
    statement_["predicate"]["expiresAt"] = "2099-01-01T00:00:00Z"
    envelope["payload"] = base64.b64encode(json.dumps(statement_).encode()).decode()
    assert signed_by(_parsed(envelope), [public("alice")]) is None


def test_signed_by_rejects_a_swapped_payload_type_in_the_pae() -> None:
    """The payload type is part of what is signed (DSSE PAE)."""
    from securesystemslib.dsse import Envelope

    envelope = sign(claim(), signer("alice"))
    record = _parsed(envelope)
    other = Envelope(record.envelope.payload, "application/json", record.envelope.signatures)
    swapped = records.ParsedRecord(0, other, record.claim)
    assert signed_by(swapped, [public("alice")]) is None


def test_signed_by_finds_a_cosigner_among_several_signatures() -> None:
    from securesystemslib.dsse import Envelope

    envelope = Envelope.from_dict(sign(claim(), signer("mallory")))
    bob = signer("bob")
    envelope.sign(bob)
    record = _parsed(envelope.to_dict())
    assert len(record.envelope.signatures) == 2
    assert signed_by(record, [public("bob")]) == public("bob")
    assert signed_by(record, [public("alice")]) is None


# --- base64 forms -------------------------------------------------------------------------


def _reencode(envelope: dict[str, Any], encode: Any, strip: bool) -> dict[str, Any]:
    def again(text: str) -> str:
        out: str = encode(base64.b64decode(text)).decode()
        return out.rstrip("=") if strip else out

    return {
        "payload": again(envelope["payload"]),
        "payloadType": envelope["payloadType"],
        "signatures": [
            {"keyid": s["keyid"], "sig": again(s["sig"])} for s in envelope["signatures"]
        ],
    }


@pytest.mark.parametrize(
    ("encode", "strip"),
    [
        pytest.param(base64.b64encode, False, id="standard"),
        pytest.param(base64.urlsafe_b64encode, False, id="url-safe"),
        pytest.param(base64.urlsafe_b64encode, True, id="url-safe-unpadded"),
    ],
)
def test_standard_and_url_safe_base64_both_parse_and_verify(encode: Any, strip: bool) -> None:
    # this reason makes the standard base64 of the payload hold '+' or '/' (and the
    # signature does too), so the URL-safe form really differs from the standard one
    signed = claim(reason="ok >>> go!")
    envelope = sign(signed, signer("alice"))
    again = _reencode(envelope, encode, strip)
    if encode is base64.urlsafe_b64encode:
        assert set(again["payload"]) & {"-", "_"}
        assert set(again["signatures"][0]["sig"]) & {"-", "_"}
    record = _parsed(again)
    assert record.claim == signed
    assert signed_by(record, [public("alice")]) == public("alice")


def test_upper_case_digest_is_read_as_lower_case() -> None:
    shouting = statement()
    shouting["subject"][0]["digest"]["sha256"] = DIGEST.upper()
    parsed, problems = parse_annotation(json.dumps([envelope_for(shouting)]))
    assert problems == []
    assert parsed[0].claim.digest == DIGEST


def test_reason_and_nonce_are_optional() -> None:
    bare = statement()
    del bare["predicate"]["reason"], bare["predicate"]["nonce"]
    parsed, problems = parse_annotation(json.dumps([envelope_for(bare)]))
    assert problems == []
    assert (parsed[0].claim.reason, parsed[0].claim.nonce) == ("", "")


def test_times_with_an_offset_are_read_in_utc() -> None:
    offset = statement()
    offset["predicate"]["issuedAt"] = "2026-11-21T12:00:00+01:00"
    parsed, problems = parse_annotation(json.dumps([envelope_for(offset)]))
    assert problems == []
    assert parsed[0].claim.issued_at == ISSUED


# --- malformed annotations: one readable problem each -------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(None, "annotation approvals.proompteng.ai/approvals is missing", id="missing"),
        pytest.param("", "annotation is empty", id="empty"),
        pytest.param("  \n\t", "annotation is empty", id="blank"),
        pytest.param("approved by alice", "annotation is not valid JSON", id="not-json"),
        pytest.param("[{]", "annotation is not valid JSON", id="broken-json"),
        pytest.param("[NaN]", "annotation is not valid JSON", id="nan"),
        pytest.param("[Infinity]", "annotation is not valid JSON", id="infinity"),
        pytest.param("[" * 100_000, "annotation is not valid JSON", id="deeply-nested"),
        pytest.param(
            "{}", "annotation must be a JSON array of DSSE envelopes", id="object-not-array"
        ),
        pytest.param(
            '"[]"', "annotation must be a JSON array of DSSE envelopes", id="string-not-array"
        ),
        pytest.param("null", "annotation must be a JSON array of DSSE envelopes", id="null"),
        pytest.param(
            json.dumps([{}] * 65), "annotation holds 65 records (max 64)", id="65-entries"
        ),
        pytest.param(
            json.dumps([0] * 10_000), "annotation holds 10000 records (max 64)", id="10000-entries"
        ),
        pytest.param(
            " " * (256 * 1024 + 1), "annotation is larger than 262144 bytes", id="too-large"
        ),
    ],
)
def test_malformed_annotations(value: str | None, message: str) -> None:
    assert only_problem(value) == RecordProblem(-1, message)


def test_an_annotation_of_exactly_64_entries_is_read() -> None:
    envelope = sign(claim(), signer("alice"))
    parsed, problems = parse_annotation(json.dumps([envelope] * 64))
    assert (len(parsed), problems) == (64, [])


def test_the_size_limit_counts_utf8_bytes_not_characters() -> None:
    exactly = "[" + " " * (256 * 1024 - 2) + "]"
    assert parse_annotation(exactly) == ([], [])
    wide = '["' + "€" * (256 * 1024 // 3 + 1) + '"]'  # fewer characters than the limit
    assert len(wide) < 256 * 1024
    assert only_problem(wide) == RecordProblem(-1, "annotation is larger than 262144 bytes")


def _with_predicate(**changes: Any) -> dict[str, Any]:
    out = statement()
    for key, value in changes.items():
        if value is None:
            del out["predicate"][key]
        else:
            out["predicate"][key] = value
    return out


def _with(**changes: Any) -> dict[str, Any]:
    out = statement()
    for key, value in changes.items():
        if value is None:
            del out[key]
        else:
            out[key] = value
    return out


ENVELOPE_PROBLEMS = [
    pytest.param(
        "not an envelope", "not a DSSE envelope (payload, payloadType, signatures)", id="string"
    ),
    pytest.param([], "not a DSSE envelope (payload, payloadType, signatures)", id="array"),
    pytest.param(
        {"payload": "", "payloadType": records.PAYLOAD_TYPE},
        "not a DSSE envelope (payload, payloadType, signatures)",
        id="missing-signatures",
    ),
    pytest.param(
        {**envelope_for(statement()), "extra": 1},
        "not a DSSE envelope (payload, payloadType, signatures)",
        id="extra-field",
    ),
    pytest.param(
        envelope_for(statement(), payloadType="application/json"),
        "payloadType is 'application/json', expected 'application/vnd.in-toto+json'",
        id="payload-type",
    ),
    pytest.param(
        envelope_for(statement(), payload=42), "payload is not a base64 string", id="payload-int"
    ),
    pytest.param(
        envelope_for(statement(), payload="AAAAA"), "payload is not valid base64", id="payload-b64"
    ),
    pytest.param(
        envelope_for(b"x" * (8 * 1024 + 1)), "payload is too large", id="payload-too-large"
    ),
    pytest.param(
        envelope_for(statement(), signatures=[]), "envelope has no signatures", id="no-signatures"
    ),
    pytest.param(
        envelope_for(statement(), signatures={"keyid": "k", "sig": "AA=="}),
        "envelope has no signatures",
        id="signatures-not-a-list",
    ),
    pytest.param(
        envelope_for(statement(), signatures=[{"keyid": str(i), "sig": "AA=="} for i in range(9)]),
        "envelope has more than 8 signatures",
        id="nine-signatures",
    ),
    pytest.param(
        envelope_for(statement(), signatures=[{"keyid": "k"}]),
        "signature entry is not {keyid, sig}",
        id="signature-without-sig",
    ),
    pytest.param(
        envelope_for(statement(), signatures=["AA=="]),
        "signature entry is not {keyid, sig}",
        id="signature-string",
    ),
    pytest.param(
        envelope_for(statement(), signatures=[{"keyid": 7, "sig": "AA=="}]),
        "signature keyid is not a string",
        id="keyid-int",
    ),
    pytest.param(
        envelope_for(statement(), signatures=[{"keyid": "k", "sig": "AAAAA"}]),
        "signature is not valid base64",
        id="sig-b64",
    ),
    pytest.param(
        envelope_for(statement(), signatures=[{"keyid": "k", "sig": "AA=="}] * 2),
        "two signatures carry the same key id",
        id="duplicate-keyid",
    ),
    pytest.param(
        envelope_for(b"\xff\xfe not utf-8"),
        "payload is not a JSON in-toto statement",
        id="payload-not-utf8",
    ),
    pytest.param(
        envelope_for(b"approve please"),
        "payload is not a JSON in-toto statement",
        id="payload-not-json",
    ),
    pytest.param(
        envelope_for([statement()]),
        "payload is not an in-toto Statement (https://in-toto.io/Statement/v1)",
        id="payload-array",
    ),
    pytest.param(
        envelope_for(_with(_type="https://in-toto.io/Statement/v0.1")),
        "payload is not an in-toto Statement (https://in-toto.io/Statement/v1)",
        id="statement-v0.1",
    ),
    pytest.param(
        envelope_for(_with(predicateType="https://slsa.dev/provenance/v1")),
        "predicateType is not https://approvals.proompteng.ai/approval/v2",
        id="predicate-type",
    ),
    pytest.param(
        envelope_for(_with(predicateType="https://approvals.proompteng.ai/approval/v3")),
        "predicateType is not https://approvals.proompteng.ai/approval/v2",
        id="predicate-type-v3",
    ),
    *(
        pytest.param(
            envelope_for(_with_predicate(environment=value)),
            "predicate names no environment (format v2 records must): "
            "re-approve with `approvalgate approve --env ENV`",
            id=f"environment-{label}",
        )
        for label, value in (("missing", None), ("empty", ""), ("number", 7), ("list", ["prod"]))
    ),
    *(
        pytest.param(
            envelope_for(_with_predicate(environment=value)),
            f"predicate environment: {value!r} is not an environment name (lower-case "
            "letters, digits and '-', starting and ending with a letter or digit, at most 63)",
            id=f"environment-{label}",
        )
        for label, value in (
            ("upper-case", "Prod"),
            ("trailing-space", "prod "),
            ("trailing-dash", "prod-"),
            ("zero-width", "pro\u200bd"),
            ("too-long", "p" * 64),
        )
    ),
    pytest.param(
        envelope_for(_with(subject=None)),
        "statement must name exactly one subject",
        id="no-subject",
    ),
    pytest.param(
        envelope_for(_with(subject=[])),
        "statement must name exactly one subject",
        id="zero-subjects",
    ),
    pytest.param(
        envelope_for(
            _with(
                subject=[
                    {"name": SUBJECT, "digest": {"sha256": DIGEST}},
                    {"name": SUBJECT + "-2", "digest": {"sha256": DIGEST}},
                ]
            )
        ),
        "statement must name exactly one subject",
        id="two-subjects",
    ),
    pytest.param(
        envelope_for(_with(subject=[SUBJECT])),
        "statement must name exactly one subject",
        id="subject-string",
    ),
    pytest.param(
        envelope_for(_with(subject=[{"name": SUBJECT, "digest": {"sha512": DIGEST}}])),
        "subject has no sha256 digest",
        id="no-sha256",
    ),
    pytest.param(
        envelope_for(_with(subject=[{"name": SUBJECT, "digest": {"sha256": 5}}])),
        "subject has no sha256 digest",
        id="digest-int",
    ),
    pytest.param(
        envelope_for(_with(subject=[{"digest": {"sha256": DIGEST}}])),
        "subject has no name",
        id="no-subject-name",
    ),
    pytest.param(
        envelope_for(_with(predicate=None)), "statement has no predicate", id="no-predicate"
    ),
    pytest.param(
        envelope_for(_with(predicate="approve")),
        "statement has no predicate",
        id="predicate-string",
    ),
    *(
        pytest.param(
            envelope_for(_with_predicate(**{field: None})),
            "predicate lacks decision, approver, issuedAt or expiresAt",
            id=f"missing-{field}",
        )
        for field in ("decision", "approver", "issuedAt", "expiresAt")
    ),
    pytest.param(
        envelope_for(_with_predicate(approver=["alice"])),
        "predicate lacks decision, approver, issuedAt or expiresAt",
        id="approver-list",
    ),
    pytest.param(
        envelope_for(_with_predicate(decision="maybe")),
        "decision 'maybe' is not one of approve, reject, bypass, withdraw",
        id="decision-maybe",
    ),
    pytest.param(
        envelope_for(_with_predicate(decision="Approve")),
        "decision 'Approve' is not one of approve, reject, bypass, withdraw",
        id="decision-case",
    ),
    pytest.param(
        envelope_for(_with_predicate(reason=3)),
        "predicate reason and nonce must be strings",
        id="reason-int",
    ),
    pytest.param(
        envelope_for(_with(predicate={})),
        "predicate lacks decision, approver, issuedAt or expiresAt",
        id="empty-predicate",
    ),
    pytest.param(
        envelope_for(_with_predicate(issuedAt="2026-11-21T11:00:00")),
        "predicate times are not RFC 3339: time '2026-11-21T11:00:00' has no zone",
        id="issued-without-zone",
    ),
    pytest.param(
        envelope_for(_with_predicate(expiresAt="2026-11-21 13:00:00")),
        "predicate times are not RFC 3339: time '2026-11-21 13:00:00' has no zone",
        id="expires-without-zone",
    ),
    pytest.param(
        envelope_for(_with_predicate(expiresAt="2026-11-21")),
        "predicate times are not RFC 3339: time '2026-11-21' is not RFC 3339 "
        "(write it like 2026-11-21T10:00:00Z)",
        id="date-only",
    ),
    pytest.param(
        envelope_for(_with_predicate(issuedAt="tomorrow")),
        "predicate times are not RFC 3339: time 'tomorrow' is not RFC 3339 "
        "(write it like 2026-11-21T10:00:00Z)",
        id="not-a-time",
    ),
]


@pytest.mark.parametrize(("entry", "message"), ENVELOPE_PROBLEMS)
def test_malformed_entries(entry: object, message: str) -> None:
    good = sign(claim(), signer("alice"))
    parsed, problems = parse_annotation(json.dumps([good, entry]))
    assert [r.index for r in parsed] == [0], "the good record next to it still parses"
    assert problems == [RecordProblem(1, message)]
    assert not problems[0].message.lstrip().startswith(("{", "["))


@pytest.mark.parametrize(
    "moment",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"],
    ids=["before-year-1-in-utc", "after-year-9999-in-utc"],
)
def test_a_time_out_of_range_in_utc_is_a_problem_not_a_crash(moment: str) -> None:
    """parse_annotation promises "every defect becomes a problem, never a raise"."""
    entry = envelope_for(_with_predicate(issuedAt=moment))
    problem = only_problem(json.dumps([entry]))
    assert problem.index == 0
    assert problem.message.startswith("predicate times are not RFC 3339")


@pytest.mark.parametrize(
    ("field", "message"),
    [("payload", "payload is not valid base64"), ("sig", "signature is not valid base64")],
)
def test_text_in_neither_base64_alphabet_is_not_base64(field: str, message: str) -> None:
    envelope = sign(claim(), signer("alice"))
    if field == "payload":
        envelope["payload"] = "***" + envelope["payload"]
    else:
        envelope["signatures"][0]["sig"] = "@@@" + envelope["signatures"][0]["sig"]
    assert only_problem(json.dumps([envelope])) == RecordProblem(0, message)


# --- values read two ways: times, duplicate keys, encodings of one record (fourth pass) ---


@pytest.mark.parametrize(
    "moment",
    [
        pytest.param("2026-11-21 11:00:00Z", id="space-for-T"),
        pytest.param("2026-11-21t11:00:00z", id="lower-case-t-z"),
        pytest.param("2026-W47-6T11:00:00Z", id="iso-week-date"),
        pytest.param("20261121T110000Z", id="basic-format"),
        pytest.param("2026-11-21T11Z", id="hour-only"),
        pytest.param("2026-11-21T11:00Z", id="no-seconds"),
        pytest.param("2026-11-21T11:00:00+0100", id="offset-without-colon"),
        pytest.param("2026-11-21T12:00:00+01", id="offset-hours-only"),
        pytest.param("2026-11-21T10:00:00+00:60", id="offset-minute-60"),
        pytest.param("2026-11-21T11:00:00+24:00", id="offset-24h"),
        pytest.param("2026-11-21T12:00:30+01:00:30", id="offset-with-seconds"),
        pytest.param("2026-11-21T11:00:00.1234567890Z", id="ten-fraction-digits"),
        pytest.param("2026-11-21T11:00:00,5Z", id="comma-fraction"),
        pytest.param("２０２６-11-21T11:00:00Z", id="fullwidth-digits"),
        pytest.param(" 2026-11-21T11:00:00Z", id="leading-blank"),
        pytest.param("2026-11-21T11:00:00Z\n", id="trailing-newline"),
    ],
)
def test_a_signed_time_only_python_reads_is_refused_not_read_our_way(moment: str) -> None:
    """Python's fromisoformat reads each of these (a moment Go's RFC 3339 parser refuses or
    reads otherwise): signed by an approver, it must not count as the moment we read."""
    entry = sign_statement_of(_with_predicate(issuedAt=moment))
    problem = only_problem(json.dumps([entry]))
    assert problem.message.startswith("predicate times are not RFC 3339: time "), problem


@pytest.mark.parametrize(
    ("moment", "utc"),
    [
        ("2026-11-22T01:00:00+14:00", ISSUED),
        ("2026-11-21T11:00:00-00:00", ISSUED),
        ("2026-11-22T10:59:00+23:59", ISSUED),
        ("2026-11-21T11:00:00.123456789Z", ISSUED + timedelta(microseconds=123456)),
    ],
)
def test_rfc3339_times_every_reader_reads_alike_are_read(moment: str, utc: datetime) -> None:
    parsed, problems = parse_annotation(
        json.dumps([envelope_for(_with_predicate(issuedAt=moment))])
    )
    assert problems == []
    assert parsed[0].claim.issued_at == utc


@pytest.mark.parametrize(
    ("moment", "why"),
    [("2026-12-31T23:59:60Z", "does not exist"), ("0000-01-01T00:00:00Z", "does not exist")],
    ids=["leap-second", "year-0"],
)
def test_a_time_that_does_not_exist_is_a_problem(moment: str, why: str) -> None:
    problem = only_problem(json.dumps([envelope_for(_with_predicate(expiresAt=moment))]))
    assert why in problem.message


def sign_statement_of(content: dict[str, Any]) -> dict[str, Any]:
    from tests.support.corpus import sign_statement

    return sign_statement(content, signer("alice"))


@pytest.mark.parametrize(
    ("field", "first"),
    [("decision", "reject"), ("environment", "staging"), ("approver", "bob")],
)
def test_a_signed_statement_holding_a_key_twice_is_refused(field: str, first: str) -> None:
    """Python, Go and JavaScript keep the last of two equal keys, other parsers the first (or
    refuse): a signed record must say one thing to every reader."""
    text = json.dumps(statement(), sort_keys=True, separators=(",", ":"))
    text = text.replace('"predicate":{', f'"predicate":{{"{field}":"{first}",', 1)
    from securesystemslib.dsse import Envelope

    envelope = Envelope(payload=text.encode(), payload_type=records.PAYLOAD_TYPE, signatures={})
    envelope.sign(signer("alice"))
    problem = only_problem(json.dumps([envelope.to_dict()]))
    assert problem == RecordProblem(
        0, f"payload is not a JSON in-toto statement: an object holds the key {field!r} twice"
    )


def test_an_annotation_holding_a_key_twice_in_an_envelope_is_refused() -> None:
    good = sign(claim(), signer("alice"))
    other = sign(claim(digest="0" * 64), signer("alice"))
    text = json.dumps([good])
    text = text.replace(
        '{"payload": ', '{"payload": ' + json.dumps(other["payload"]) + ', "payload": ', 1
    )
    assert only_problem(text) == RecordProblem(
        -1, "annotation is not valid JSON for approvals: an object holds the key 'payload' twice"
    )


def _high_s(der: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.utils import (
        decode_dss_signature,
        encode_dss_signature,
    )

    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256's n
    r, s = decode_dss_signature(der)
    return encode_dss_signature(r, order - s)


def test_an_ecdsa_signature_made_high_s_is_the_same_record_for_the_ledger() -> None:
    """ECDSA signatures are malleable: (r, n - s) verifies too. The ledger and distinctness
    know a record by its payload bytes (view.statement_digest), never by its signature, so
    the other signature is the same record (already used where the first was)."""
    from securesystemslib.signer import CryptoSigner

    from approvalgate.approvals.view import statement_digest

    ecdsa = CryptoSigner.generate_ecdsa()
    envelope = sign(claim(), ecdsa)
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    other = {**envelope, "signatures": [{**envelope["signatures"][0]}]}
    other["signatures"][0]["sig"] = base64.b64encode(_high_s(sig)).decode()
    assert other != envelope
    first, second = _parsed(envelope), _parsed(other)
    assert signed_by(second, [ecdsa.public_key]) == ecdsa.public_key  # it verifies
    assert statement_digest(first) == statement_digest(second)


def test_an_ed25519_signature_with_s_plus_the_order_does_not_verify() -> None:
    """Ed25519 is not malleable that way: S + L is refused (RFC 8032's check)."""
    envelope = sign(claim(), signer("alice"))
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    order = 2**252 + 27742317777372353535851937790883648493
    s = int.from_bytes(sig[32:], "little") + order
    sig[32:] = s.to_bytes(32, "little")
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    assert signed_by(_parsed(envelope), [public("alice")]) is None


@pytest.mark.parametrize(
    "payload_type",
    [
        "application/vnd.in-toto+JSON",
        "Application/vnd.in-toto+json",
        "application/vnd.in-toto+json; charset=utf-8",
        "application/vnd.in-toto+json ",
        "application/vnd.in-toto.json",
    ],
)
def test_a_payload_type_spelt_otherwise_is_refused_even_validly_signed(payload_type: str) -> None:
    """Media types compare case-insensitively and take parameters elsewhere; here the type is
    part of what is signed (the PAE), so only the exact one is read, and a signature over
    another spelling is refused whatever a looser reader would make of it."""
    from securesystemslib.dsse import Envelope

    payload = json.dumps(statement(), sort_keys=True, separators=(",", ":")).encode()
    envelope = Envelope(payload=payload, payload_type=payload_type, signatures={})
    envelope.sign(signer("alice"))
    problem = only_problem(json.dumps([envelope.to_dict()]))
    assert problem == RecordProblem(
        0, f"payloadType is {payload_type!r}, expected {records.PAYLOAD_TYPE!r}"
    )
