"""Signed approval records: a DSSE envelope carrying an in-toto Statement v1.

A record says "approver A decided D about the AgentRun named S whose spec digest is H,
in environment E, from issuedAt until expiresAt" (record format v2, predicate type
:data:`PREDICATE_TYPE`). Format v1 (:data:`PREDICATE_TYPE_V1`) named no environment: it is
still parsed, so that decide() can say why such a record no longer counts, but never
signed. The envelope format and the pre-authentication encoding
come from ``securesystemslib``; keys, signers and signature checks from
:mod:`approvals.keys`. This module only fixes *what* is signed and parses untrusted
annotations defensively (bounded sizes, exact shapes).

The key id in a signature is a hint: verification always runs against the keys of the
approver the signed payload names, hinted key first.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from securesystemslib.dsse import Envelope
from securesystemslib.signer import Signature, Signer, SSlibKey

from approvalgate.approvals.keys.verifier import SignatureVerifier

ANNOTATION: Final = "approvals.proompteng.ai/approvals"
AUTHOR_ANNOTATION: Final = "approvals.proompteng.ai/requested-by"
PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
FORMAT_VERSION: Final = 2
PREDICATE_TYPE: Final = "https://approvals.proompteng.ai/approval/v2"
PREDICATE_TYPE_V1: Final = "https://approvals.proompteng.ai/approval/v1"
"""Format v1: no environment in the predicate. Parsed (version 1), never counted."""
_PREDICATE_VERSIONS: Final = {PREDICATE_TYPE: FORMAT_VERSION, PREDICATE_TYPE_V1: 1}
SUBJECT_PREFIX: Final = "agents.proompteng.ai/AgentRun/"

MAX_ANNOTATION_BYTES: Final = 256 * 1024
MAX_RECORDS: Final = 64
MAX_SIGNATURES: Final = 8
MAX_PAYLOAD_BYTES: Final = 8 * 1024

Decision = Literal["approve", "reject", "bypass", "withdraw"]
DECISIONS: Final = ("approve", "reject", "bypass", "withdraw")
"""``withdraw`` takes back every approve and bypass of the same approver issued before it."""

ENVIRONMENT_MAX_CHARS: Final = 63
_ENVIRONMENT_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
"""An environment name as approvalgate.yaml allows it (config.schema.json's propertyNames)."""


def environment_problem(name: str) -> str | None:
    """Why ``name`` cannot be the environment a record names, or None if it can."""
    if not name:
        return "the environment name is empty"
    if len(name) > ENVIRONMENT_MAX_CHARS or not _ENVIRONMENT_NAME.fullmatch(name):
        return (
            f"{name!r} is not an environment name (lower-case letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {ENVIRONMENT_MAX_CHARS})"
        )
    return None


def subject_name(namespace: str, name: str = "", generate_name: str = "") -> str:
    """The in-toto subject naming one run, or (``prefix*``) a ``generateName`` prefix."""
    if name:
        return f"{SUBJECT_PREFIX}{namespace}/{name}"
    return f"{SUBJECT_PREFIX}{namespace}/{generate_name}*"


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, second precision: the only form we sign."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)",
    re.ASCII,
)
"""The times every reader reads alike: RFC 3339's ``date-time`` with an upper-case ``T`` and
``Z`` (Go's ``time.RFC3339`` refuses the lower-case forms), at most nine fractional digits,
an offset of at most 23:59. Python's ``fromisoformat`` reads much more (a space for the
``T``, ``+00:60`` as an hour, ISO week dates, ``20261207T100000Z``, ``+0100``, offsets with
seconds): a signed time only we can read is refused instead of read our way."""


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 time (:data:`_RFC3339`); naive times are refused (a record must say
    its zone), and so is any other spelling: ``ValueError`` saying which form is expected."""
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        if isinstance(text, str) and _RFC3339.fullmatch(text.replace(" ", "T", 1) + "Z"):
            raise ValueError(f"time {text!r} has no zone")
        raise ValueError(f"time {text!r} is not RFC 3339 (write it like 2026-11-21T10:00:00Z)")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:  # a day, hour or second out of range (a leap second :60)
        raise ValueError(f"time {text!r} does not exist: {exc}") from None
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"time {text!r} is out of range") from exc


@dataclass(frozen=True)
class Claim:
    """What an approver signs.

    ``environment`` is the environment (the bundle's ``environment``: the policy repo's
    environment name) the decision holds in; ``version`` is the record format it was read
    in: :data:`FORMAT_VERSION`, or 1 for a parsed v1 record (``environment`` then empty).
    """

    subject: str
    digest: str
    decision: Decision
    approver: str
    reason: str
    issued_at: datetime
    expires_at: datetime
    nonce: str
    environment: str
    version: int = FORMAT_VERSION
    references: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)
    """What the approver saw of the objects the run refers to (``"ImplementationSpec/task-a"``
    -> sha256 of that object's spec, :mod:`approvals.content`); empty when none was bound."""

    @functools.cached_property
    def expires_text(self) -> str:
        """``format_time(expires_at)``, computed once per claim (decide() says it per request)."""
        return format_time(self.expires_at)

    def statement(self) -> dict[str, Any]:
        """The in-toto Statement of this claim, always in the current format (v2)."""
        return {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": self.subject, "digest": {"sha256": self.digest}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "decision": self.decision,
                "approver": self.approver,
                "environment": self.environment,
                "reason": self.reason,
                "issuedAt": format_time(self.issued_at),
                "expiresAt": format_time(self.expires_at),
                "nonce": self.nonce,
                **(
                    {"references": dict(sorted(self.references.items()))} if self.references else {}
                ),
            },
        }


def new_nonce() -> str:
    return secrets.token_hex(16)


# --- signing --------------------------------------------------------------------------


def sign(claim: Claim, signer: Signer) -> dict[str, Any]:
    """Return the DSSE envelope (JSON-ready dict) for ``claim``, signed by ``signer``.

    ``signer`` comes from :mod:`approvals.keys` (``load_signer``, ``signer_from_pem``,
    ``generate``) or is any securesystemslib signer. Only format v2 is signed: a claim
    without a valid environment name is a ``ValueError``.
    """
    problem = environment_problem(claim.environment)
    if problem is not None:
        raise ValueError(f"an approval record must name its environment: {problem}")
    payload = json.dumps(claim.statement(), sort_keys=True, separators=(",", ":")).encode()
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(signer)
    return dict(envelope.to_dict())


def dump_annotation(envelopes: Sequence[dict[str, Any]]) -> str:
    """The annotation value: a compact JSON array of envelopes."""
    return json.dumps(list(envelopes), sort_keys=True, separators=(",", ":"))


def annotation_overflow(value: str) -> int | None:
    """The annotation's size in bytes if it is over :data:`MAX_ANNOTATION_BYTES`, else None.

    The one size rule: :func:`parse_annotation` reads no larger annotation (the webhook's
    verdict names it), and ``approvalgate approve`` refuses to write one. Bytes of UTF-8;
    a lone surrogate counts as its three bytes.
    """
    size = len(value.encode("utf-8", "surrogatepass"))
    return size if size > MAX_ANNOTATION_BYTES else None


# --- parsing untrusted records ----------------------------------------------------------


@dataclass(frozen=True)
class ParsedRecord:
    """One envelope from an annotation, shape-checked but not yet verified."""

    index: int
    envelope: Envelope
    claim: Claim


@dataclass(frozen=True)
class RecordProblem:
    """Why an entry of the annotation cannot count (said to the human)."""

    index: int
    message: str


def parse_annotation(value: str | None) -> tuple[list[ParsedRecord], list[RecordProblem]]:
    """Parse the annotation into records; every defect becomes a problem, never a raise."""
    if value is None:
        return [], [RecordProblem(-1, f"annotation {ANNOTATION} is missing")]
    if annotation_overflow(value) is not None:
        return [], [RecordProblem(-1, f"annotation is larger than {MAX_ANNOTATION_BYTES} bytes")]
    if not value.strip():
        return [], [RecordProblem(-1, "annotation is empty")]
    try:
        entries = _loads(value)
    except DuplicateKeyError as exc:
        return [], [RecordProblem(-1, f"annotation is not valid JSON for approvals: {exc}")]
    except (ValueError, RecursionError):
        return [], [RecordProblem(-1, "annotation is not valid JSON")]
    if not isinstance(entries, list):
        return [], [RecordProblem(-1, "annotation must be a JSON array of DSSE envelopes")]
    if len(entries) > MAX_RECORDS:
        return [], [
            RecordProblem(-1, f"annotation holds {len(entries)} records (max {MAX_RECORDS})")
        ]
    records: list[ParsedRecord] = []
    problems: list[RecordProblem] = []
    for index, entry in enumerate(entries):
        try:
            records.append(_parse_entry(index, entry))
        except _Malformed as exc:
            problems.append(RecordProblem(index, str(exc)))
    return records, problems


def parse_envelopes(
    entries: Sequence[object], start: int = 0
) -> tuple[list[ParsedRecord], list[RecordProblem]]:
    """Parse envelopes that arrive as objects (ApprovalDecisions in the cluster), numbered
    from ``start``; every defect becomes a problem, never a raise. No count limit: only
    approvers can create them (the webhook checks), and a cap would let one approver
    push another's later reject out of the list."""
    records: list[ParsedRecord] = []
    problems: list[RecordProblem] = []
    for index, entry in enumerate(entries, start):
        try:
            records.append(_parse_entry(index, entry))
        except _Malformed as exc:
            problems.append(RecordProblem(index, str(exc)))
    return records, problems


class _Malformed(Exception):
    pass


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class DuplicateKeyError(ValueError):
    """A JSON object holding one key twice: readers differ on which one counts."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The object of ``pairs``, built in C; the keys are looked at one by one only when
    fewer came out than went in (the shape of ``webhook.strictjson``'s hook, which this
    package may not import)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(f"an object holds the key {key!r} twice")
            seen.add(key)
    return obj


_DECODER: Final = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
"""One decoder for every annotation and statement (``json.loads`` with hooks builds one a
call)."""


def _loads(text: str) -> Any:
    """JSON as every reader reads it alike: NaN and infinities refused, and a key given twice
    in one object (Python, Go and JavaScript keep the last, other parsers the first or
    refuse it: what a signer showed and what we count could differ)."""
    return _DECODER.decode(text)


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise _Malformed(f"{what} is not a base64 string")
    # DSSE allows standard or URL-safe base64; both are validated strictly (characters
    # outside the alphabet are an error, never silently dropped).
    padded = value + "=" * (-len(value) % 4)
    for altchars in (None, b"-_"):
        try:
            return base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    raise _Malformed(f"{what} is not valid base64")


def _parse_entry(index: int, entry: object) -> ParsedRecord:
    if not isinstance(entry, dict) or set(entry) != {"payload", "payloadType", "signatures"}:
        raise _Malformed("not a DSSE envelope (payload, payloadType, signatures)")
    if entry["payloadType"] != PAYLOAD_TYPE:
        raise _Malformed(f"payloadType is {entry['payloadType']!r}, expected {PAYLOAD_TYPE!r}")
    payload = _b64(entry["payload"], "payload")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise _Malformed("payload is too large")
    raw_sigs = entry["signatures"]
    if not isinstance(raw_sigs, list) or not raw_sigs:
        raise _Malformed("envelope has no signatures")
    if len(raw_sigs) > MAX_SIGNATURES:
        raise _Malformed(f"envelope has more than {MAX_SIGNATURES} signatures")
    signatures: dict[str, Signature] = {}
    for raw in raw_sigs:
        if not isinstance(raw, dict) or not isinstance(raw.get("sig"), str):
            raise _Malformed("signature entry is not {keyid, sig}")
        keyid = raw.get("keyid", "")
        if not isinstance(keyid, str):
            raise _Malformed("signature keyid is not a string")
        sig = _b64(raw["sig"], "signature")
        if keyid in signatures:
            raise _Malformed("two signatures carry the same key id")
        signatures[keyid] = Signature(keyid, sig.hex())
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures=signatures)
    return ParsedRecord(index, envelope, _parse_statement(payload))


def _parse_statement(payload: bytes) -> Claim:
    try:
        statement = _loads(payload.decode("utf-8"))
    except DuplicateKeyError as exc:
        raise _Malformed(f"payload is not a JSON in-toto statement: {exc}") from exc
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _Malformed("payload is not a JSON in-toto statement") from exc
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise _Malformed(f"payload is not an in-toto Statement ({STATEMENT_TYPE})")
    version = _PREDICATE_VERSIONS.get(str(statement.get("predicateType")))
    if version is None:
        raise _Malformed(f"predicateType is not {PREDICATE_TYPE}")
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise _Malformed("statement must name exactly one subject")
    subject = subjects[0]
    digest = subject.get("digest")
    if not isinstance(digest, dict) or not isinstance(digest.get("sha256"), str):
        raise _Malformed("subject has no sha256 digest")
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        raise _Malformed("statement has no predicate")
    fields = {k: predicate.get(k) for k in ("decision", "approver", "issuedAt", "expiresAt")}
    if not all(isinstance(v, str) for v in fields.values()):
        raise _Malformed("predicate lacks decision, approver, issuedAt or expiresAt")
    decision = predicate["decision"]
    if decision not in DECISIONS:
        raise _Malformed(f"decision {decision!r} is not one of {', '.join(DECISIONS)}")
    reason = predicate.get("reason", "")
    nonce = predicate.get("nonce", "")
    if not isinstance(reason, str) or not isinstance(nonce, str):
        raise _Malformed("predicate reason and nonce must be strings")
    name = subject.get("name")
    if not isinstance(name, str):
        raise _Malformed("subject has no name")
    references = predicate.get("references", {})
    if not isinstance(references, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in references.items()
    ):
        raise _Malformed("predicate references must map object names to sha256 digests")
    environment = ""
    if version == FORMAT_VERSION:  # v1 named none; decide() says why it does not count
        environment = predicate.get("environment", "")
        if not isinstance(environment, str) or not environment:
            raise _Malformed(
                "predicate names no environment (format v2 records must): "
                "re-approve with `approvalgate approve --env ENV`"
            )
        problem = environment_problem(environment)
        if problem is not None:
            raise _Malformed(f"predicate environment: {problem}")
    try:
        issued, expires = parse_time(predicate["issuedAt"]), parse_time(predicate["expiresAt"])
    except (ValueError, OverflowError) as exc:
        raise _Malformed(f"predicate times are not RFC 3339: {exc}") from exc
    return Claim(
        subject=name,
        digest=digest["sha256"].lower(),
        decision=decision,
        approver=predicate["approver"],
        reason=reason,
        issued_at=issued,
        expires_at=expires,
        nonce=nonce,
        environment=environment,
        version=version,
        references=references,
    )


def signed_by(record: ParsedRecord, keys: Iterable[SSlibKey]) -> SSlibKey | None:
    """The first key among ``keys`` that made one of the record's signatures.

    The signature's key id only orders the attempts; it is never trusted by itself. This is
    :meth:`Verifier.signed_by` with its tables off (the same code, nothing remembered).
    """
    return Verifier(0).signed_by(record, keys)


# --- the verifier of one loaded bundle: verification and parsing, memoised -------------

VERIFIED_CACHE_ENTRIES: Final = 1024
"""Signatures remembered as verified, per bundle. One entry holds the PAE (at most
``MAX_PAYLOAD_BYTES`` of payload), the 64-byte signature and the key (64 hex characters
for Ed25519): under 9 MiB
in the worst case, about 0.6 MiB for ordinary ~400-byte statements."""
ANNOTATION_CACHE_ENTRIES: Final = 128
ANNOTATION_CACHE_MAX_CHARS: Final = 8 * 1024
"""Parsed annotations remembered per bundle, and the largest annotation remembered (about ten
records of ~700 characters); a larger one is parsed every time. See docs/design.md
("Admission hot path") for the measured worst case."""


class Verifier:
    """Checks approval records for :func:`approvals.decide.decide`, remembering the work.

    Owned by a loaded :class:`approvals.bundle.Bundle`, so a bundle reload drops every
    entry together with the keys. Two bounded LRU tables, both pure memoisation (the same
    inputs always give the same answer, so a verdict never depends on what is cached):

    - verified signatures (:class:`approvals.keys.SignatureVerifier`, the only code that
      checks a signature), keyed by the exact bytes checked: the signer's public key, the
      signature and the DSSE PAE (payload type and payload, from securesystemslib).
      Only successes are stored, so forged or tampered envelopes are verified again every
      time and cannot evict anything; only a holder of an approver's private key can add
      an entry. A tampered envelope differs in its PAE or signature bytes, so it is a
      different key and a miss.
    - parsed annotations, keyed by the exact annotation text (parsing is a pure function
      of the text; records are immutable). Anyone may fill this table, which only costs a
      re-parse of an evicted annotation, never a verdict.

    ``max_entries=0`` turns both tables off (the reference behaviour).
    """

    def __init__(
        self,
        max_entries: int = VERIFIED_CACHE_ENTRIES,
        *,
        max_annotations: int = ANNOTATION_CACHE_ENTRIES,
        max_annotation_chars: int = ANNOTATION_CACHE_MAX_CHARS,
    ) -> None:
        self.max_entries = max_entries
        self.max_annotations = max_annotations if max_entries else 0
        self.max_annotation_chars = max_annotation_chars
        self._signatures = SignatureVerifier(max_entries)
        self._parse_cached = functools.lru_cache(maxsize=self.max_annotations)(_parse_frozen)
        self._envelopes = functools.lru_cache(maxsize=ENVELOPE_CACHE_ENTRIES)(_parse_one)

    def _envelope_cached(
        self, key: tuple[object, ...], entry: object
    ) -> tuple[ParsedRecord | None, str]:
        result: tuple[ParsedRecord | None, str] = self._envelopes(MemoKey(key, entry))
        return result

    def signed_by(self, record: ParsedRecord, keys: Iterable[SSlibKey]) -> SSlibKey | None:
        """The first key among ``keys`` that made one of the record's signatures (hint first)."""
        envelope = record.envelope
        return self._signatures.first_signer(envelope.pae(), envelope.signatures, keys)

    def signature_by(
        self, record: ParsedRecord, keys: Iterable[SSlibKey]
    ) -> tuple[SSlibKey, bytes] | None:
        """:meth:`signed_by` and the signature that key made (its bytes)."""
        envelope = record.envelope
        return self._signatures.first_signature(envelope.pae(), envelope.signatures, keys)

    def parse_annotation(
        self, value: str | None
    ) -> tuple[tuple[ParsedRecord, ...], tuple[RecordProblem, ...]]:
        """:func:`parse_annotation`, memoised for annotations up to ``max_annotation_chars``."""
        if value is None or len(value) > self.max_annotation_chars or not self.max_annotations:
            return _parse_frozen(value)
        result: tuple[tuple[ParsedRecord, ...], tuple[RecordProblem, ...]]
        result = self._parse_cached(value)
        return result

    def parse_envelopes(
        self, entries: Sequence[object], start: int = 0
    ) -> tuple[list[ParsedRecord], list[RecordProblem]]:
        """:func:`parse_envelopes`, memoised per envelope (the cluster's ApprovalDecisions are
        read on every admission of their run; an envelope is immutable, and the key is its
        exact content, so a hit is the same parse)."""
        if not self.max_annotations:
            return parse_envelopes(entries, start)
        parsed: list[ParsedRecord] = []
        problems: list[RecordProblem] = []
        for index, entry in enumerate(entries, start):
            key = _envelope_memo_key(entry)
            if key is None:
                more, trouble = parse_envelopes([entry], index)
                parsed += more
                problems += trouble
                continue
            record, message = self._envelope_cached(key, entry)
            if record is None:
                problems.append(RecordProblem(index, message))
            else:
                parsed.append(record if index == 0 else dataclasses.replace(record, index=index))
        return parsed, problems

    def cache_info(self) -> dict[str, int]:
        """Hits, misses and sizes of both tables (for tests and benchmarks)."""
        verified = self._signatures.cache_info()
        parsed = self._parse_cached.cache_info()
        return {
            "verified_hits": verified.hits,
            "verified_misses": verified.misses,
            "verified_entries": verified.currsize,
            "verified_max": self.max_entries,
            "annotation_hits": parsed.hits,
            "annotation_misses": parsed.misses,
            "annotation_entries": parsed.currsize,
            "annotation_max": self.max_annotations,
        }


ENVELOPE_CACHE_ENTRIES: Final = 4096
"""Parsed cluster envelopes remembered per bundle (each entry: one record's payload, at most
``MAX_PAYLOAD_BYTES``, and its parse: under 40 MiB in the worst case, ~4 MiB typically)."""


class MemoKey:
    """A value that hashes and compares by its key (for an lru_cache), carrying the value;
    the cached function drops the value once used, so the cache keeps only the key."""

    __slots__ = ("key", "value")

    def __init__(self, key: object, value: object) -> None:
        self.key = key
        self.value = value

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MemoKey) and other.key == self.key


def _envelope_memo_key(entry: object) -> tuple[object, ...] | None:
    """The exact content of a DSSE envelope object, hashable; None for anything else (parsed
    every time: it is a problem anyway)."""
    if not isinstance(entry, dict) or set(entry) != {"payload", "payloadType", "signatures"}:
        return None
    payload, kind, signatures = entry["payload"], entry["payloadType"], entry["signatures"]
    if not isinstance(payload, str) or not isinstance(kind, str):
        return None
    if not isinstance(signatures, list) or not all(
        isinstance(sig, dict)
        and set(sig) <= {"keyid", "sig"}
        and all(isinstance(v, str) for v in sig.values())
        for sig in signatures
    ):
        return None
    return (payload, kind, tuple(tuple(sorted(sig.items())) for sig in signatures))


def _parse_one(keyed: MemoKey) -> tuple[ParsedRecord | None, str]:
    entry = keyed.value
    keyed.value = None  # the cache keeps the key and the parse, not the caller's object
    try:
        return _parse_entry(0, entry), ""
    except _Malformed as exc:
        return None, str(exc)


def _parse_frozen(
    value: str | None,
) -> tuple[tuple[ParsedRecord, ...], tuple[RecordProblem, ...]]:
    parsed, problems = parse_annotation(value)
    return tuple(parsed), tuple(problems)


def now_utc() -> datetime:
    return datetime.now(UTC)
