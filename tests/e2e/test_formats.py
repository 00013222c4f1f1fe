"""Values read two ways, on a real kube-apiserver with the chart's webhook (fourth red-team pass).

What the API server does to an AgentRun between the client and the webhook, and between the
webhook and a reader: it decodes the body into a map (integers within int64 kept exact,
anything else a float64) and encodes it again, so the webhook sees, and a client reads back,
the API server's spelling of every number, never the requester's. These tests show it for
the numbers RFC 8785 and the platform (JavaScript) read alike or not, and try the record
encodings only Python reads (times, keys given twice) and a used record re-encoded.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from approvalgate.approvals import records
from approvalgate.approvals.digest import spec_digest
from tests.e2e.controlplane import ControlPlane
from tests.e2e.gate import ENFORCED, NOT_ENFORCED, Gate
from tests.e2e.test_attacks import (
    REQUESTER,
    Signer,
    _raw_create,
    _two,
    annotated,
    create,
    denial,
    expected_message,
    run,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gate(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    gate = Gate(control_plane, tmp_path_factory.mktemp("formats"))
    gate.prepare()
    for ns in (ENFORCED, NOT_ENFORCED):
        control_plane.kubectl("admin", "create", "namespace", ns, check=False)
    gate.start()
    gate.register()
    try:
        yield gate
    finally:
        gate.unregister()
        gate.stop()


def _stored(gate: Gate, name: str) -> dict[str, Any]:
    done = gate.kubectl("admin", "get", "agentrun", name, "-n", ENFORCED, "-o", "json")
    assert done.returncode == 0, done.stderr
    stored: dict[str, Any] = json.loads(done.stdout)
    return stored


def _with_config(name: str, spelt: str, s: Signer, value: Any) -> tuple[dict[str, Any], bytes]:
    """A run approved with ``runtime.config.n`` = ``value`` (as Python reads the approved
    file), sent with ``n`` spelt ``spelt`` in the raw body."""
    approved = run(name)
    approved["spec"]["runtime"]["config"]["n"] = value
    text = json.dumps(annotated(approved, _two(s, approved)))
    marker = json.dumps(value)
    assert text.count(f'"n": {marker}') == 1, text
    return approved, text.replace(f'"n": {marker}', f'"n": {spelt}').encode()


@pytest.mark.parametrize(
    ("spelt", "value", "read_back"),
    [
        pytest.param("1.0", 1.0, 1, id="1.0"),
        pytest.param("1e2", 100.0, 100, id="1e2"),
        pytest.param("100", 100, 100, id="100"),
        pytest.param("-0.0", -0.0, 0, id="minus-zero"),  # stored as -0: 0 to RFC 8785
        pytest.param("0.1", 0.1, 0.1, id="0.1"),
        pytest.param("1E-7", 1e-7, 1e-7, id="1E-7"),
        pytest.param("9007199254740991", 2**53 - 1, 2**53 - 1, id="2^53-1"),
        pytest.param("9.007199254740991e15", float(2**53 - 1), 2**53 - 1, id="2^53-1-float"),
    ],
)
def test_a_number_spelt_otherwise_is_admitted_and_stored_as_the_value_approved(
    gate: Gate, spelt: str, value: Any, read_back: Any
) -> None:
    """The approver's digest (RFC 8785: ``1.0``, ``1e2`` and ``100`` are one number, as they
    are to the platform's JSON.parse) is the digest of what the webhook received and of what
    a client reads back: the API server re-encodes the number, the value stays."""
    s = Signer(gate)
    name = f"fmt-number-{spelt.lower().replace('.', '-').replace('+', '')}"
    approved, body = _with_config(name, spelt, s, value)
    done = _raw_create(gate, body)
    assert done.returncode == 0, done.stderr
    stored = _stored(gate, name)
    number = stored["spec"]["runtime"]["config"]["n"]
    assert number == read_back and type(number) is type(read_back), number
    assert spec_digest(stored["spec"]) == spec_digest(approved["spec"])


@pytest.mark.parametrize(
    ("spelt", "received"),
    [
        # within int64 the API server keeps the integer exact: the webhook names it as sent
        pytest.param("9007199254740993", "9007199254740993", id="2^53+1-int64"),
        pytest.param("-9007199254740993", "-9007199254740993", id="-(2^53+1)-int64"),
        # beyond int64 it keeps a float64, spelt as an integer again: the webhook receives
        # the API server's rounding, not the number sent
        pytest.param("18446744073709551617", "18446744073709552000", id="2^64+1-float64"),
        pytest.param("1e300", "1e+300", id="1e300"),
    ],
)
def test_a_number_beyond_2_53_is_denied_as_the_webhook_received_it(
    gate: Gate, spelt: str, received: str
) -> None:
    """JavaScript (the platform) reads every number as a double, so an integer above 2^53
    that the API server keeps exactly runs as another number; the gate refuses what it
    cannot sign exactly, and its message shows what the API server forwarded."""
    s = Signer(gate)
    name = f"fmt-big-{secrets_suffix(spelt)}"
    approved = run(name)
    text = json.dumps(annotated(approved, _two(s, approved)))
    body = text.replace('"ttlSecondsAfterFinished": 600', f'"ttlSecondsAfterFinished": {spelt}')
    done = _raw_create(gate, body.encode())
    assert done.returncode == 1, done.stdout
    assert f"the number {received} is beyond" in done.stderr, done.stderr
    assert "NotFound" in gate.kubectl("admin", "get", "agentrun", name, "-n", ENFORCED).stderr


def secrets_suffix(spelt: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in spelt.lower()).strip("-")[:20]


def _signed(s: Signer, payload: str, who: str) -> dict[str, Any]:
    return s.raw(payload.encode(), records.PAYLOAD_TYPE, s.key(who))


@pytest.mark.parametrize(
    ("attack", "expect"),
    [
        pytest.param("issued-week-date", "is not RFC 3339", id="signed-time-week-date"),
        pytest.param("expires-space", "is not RFC 3339", id="signed-time-space"),
        pytest.param("offset-minute-60", "is not RFC 3339", id="signed-time-offset-minute-60"),
        pytest.param(
            "environment-twice", "holds the key 'environment' twice", id="signed-key-twice"
        ),
    ],
)
def test_a_record_only_python_reads_does_not_count_on_the_api_server(
    gate: Gate, attack: str, expect: str
) -> None:
    """alice signs (with her real key) a statement whose times or keys Python reads one
    way and other readers another or not at all: it is not counted (1 of 2)."""
    s = Signer(gate)
    obj = run(f"fmt-{attack}")
    claim = s.claim(obj, "alice")
    statement = claim.statement()
    predicate = statement["predicate"]
    if attack == "issued-week-date":  # the same moment, written as an ISO week date
        predicate["issuedAt"] = claim.issued_at.strftime("%G-W%V-%uT%H:%M:%SZ")
    elif attack == "expires-space":
        predicate["expiresAt"] = records.format_time(claim.expires_at).replace("T", " ")
    elif attack == "offset-minute-60":  # Python and Go read +00:60 as an hour
        predicate["expiresAt"] = (claim.expires_at + timedelta(hours=1)).strftime(
            "%Y-%m-%dT%H:%M:%S+00:60"
        )
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":"))
    if attack == "environment-twice":
        payload = payload.replace('"predicate":{', '"predicate":{"environment":"dev",', 1)
    envelopes = [_signed(s, payload, "alice"), s.record(obj, "bob")]
    approved = annotated(obj, envelopes)
    done = create(gate, approved)
    assert done.returncode == 1, done.stdout
    assert "1 of 2" in done.stderr and expect in done.stderr, done.stderr
    assert done.stderr.strip() == denial(expected_message(s, approved, REQUESTER))


def _urlsafe_unpadded(text: str) -> str:
    raw = base64.b64decode(text)
    out = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    spare = {1: 0b1111, 2: 0b11}.get(len(raw) % 3, 0)  # set the unused low bits
    if spare:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        out = out[:-1] + alphabet[alphabet.index(out[-1]) | spare]
    return out


def test_a_used_record_re_encoded_is_already_used_after_delete(gate: Gate) -> None:
    """The ledger (the run's ApprovalUse) knows a record by the sha256 of its payload bytes:
    the same records re-encoded (URL-safe base64 without padding, spare bits set) are the
    records it used, so they do not admit the run's name again."""
    s = Signer(gate)
    obj = run("fmt-replay")
    envelopes = _two(s, obj)
    assert create(gate, annotated(obj, envelopes)).returncode == 0
    gone = gate.kubectl(REQUESTER, "delete", "agentrun", "fmt-replay", "-n", ENFORCED)
    assert gone.returncode == 0, gone.stderr  # waits for the controller to release it
    again = [
        {
            **e,
            "payload": _urlsafe_unpadded(e["payload"]),
            "signatures": [
                {**sig, "sig": _urlsafe_unpadded(sig["sig"])} for sig in e["signatures"]
            ],
        }
        for e in envelopes
    ]
    assert again != envelopes
    replayed = annotated(obj, again)
    done = create(gate, replayed)
    assert done.returncode == 1, done.stdout
    assert "already used by run agents/fmt-replay" in done.stderr, done.stderr
    assert done.stderr.strip() == denial(expected_message(s, replayed, REQUESTER))
