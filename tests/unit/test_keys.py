"""approvals.keys: one room for key types, signers and signature checks.

- today's types: Ed25519, ECDSA P-256/P-384 and RSA-PSS key files and public keys
  (tests/unit/test_key_types.py checks each against securesystemslib); a type nobody
  registered (ECDSA P-521 here) is refused with the list of accepted ones;
- the registries: one more key type (P-521) or one more signer kind (an in-memory
  signer standing in for an HSM or a KMS) is one registration in a test, and then
  compile, ``approve``, the bundle verifier and ``verify`` take it with no other change;
- nothing outside the room names a key type or checks a signature.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import CryptoSigner, SSlibKey

from approvalgate.approvals import keys, records
from approvalgate.approvals.errors import RecordError
from approvalgate.cli import main
from approvalgate.commands.keygen import approver_document
from tests.support.cli_output import OFFLINE_WARNING
from tests.support.corpus import BASE, KEYS, signer
from tests.support.paths import ROOT

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _generate_p521() -> CryptoSigner:
    private = ec.generate_private_key(ec.SECP521R1())
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))


ECDSA_P521 = keys.KeyType(
    name="ECDSA P-521",
    keytype="ecdsa",
    scheme="ecdsa-sha2-nistp521",
    generate=_generate_p521,
)
ACCEPTED = "Ed25519, ECDSA P-256, ECDSA P-384, RSA-PSS or OpenSSH (ed25519, ecdsa, rsa, sk-*)"


@pytest.fixture
def ecdsa() -> Iterator[keys.KeyType]:
    """ECDSA P-521 accepted for the test (check=None: securesystemslib verifies it)."""
    keys.register_key_type(ECDSA_P521)
    try:
        yield ECDSA_P521
    finally:
        keys.unregister_key_type(ECDSA_P521)


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


# --- today: Ed25519 files and public keys --------------------------------------------------


def test_a_bare_path_and_a_file_uri_name_the_same_key_file() -> None:
    path = str(KEYS / "alice.key")
    expected = signer("alice").public_key
    assert keys.load_signer(path, _read).public_key == expected
    assert keys.load_signer(f"file:{path}", _read).public_key == expected


def test_a_path_with_an_unregistered_scheme_is_a_file_path(tmp_path: Path) -> None:
    odd = tmp_path / "vault:alice.key"
    shutil.copy(KEYS / "alice.key", odd)
    assert keys.load_signer(str(odd), _read).public_key == signer("alice").public_key


def test_the_file_kind_reads_through_the_callers_function() -> None:
    asked: list[str] = []

    def read(path: str) -> bytes:
        asked.append(path)
        return (KEYS / "bob.key").read_bytes()

    assert keys.load_signer("./somewhere/bob.key", read).public_key == signer("bob").public_key
    assert asked == ["./somewhere/bob.key"]


def test_a_key_file_of_another_type_is_refused_as_before() -> None:
    pem = _generate_p521().private_bytes
    with pytest.raises(RecordError) as caught:
        keys.signer_from_pem(pem, "carol.key")
    assert caught.value.render() == (
        f"carol.key is not an {ACCEPTED} key\n  hint: approval keys are {ACCEPTED}"
    )
    with pytest.raises(RecordError, match=r"^x\.key is not an unencrypted PEM private key: "):
        keys.signer_from_pem(b"not a key", "x.key")


def test_a_public_key_of_another_type_is_refused_as_before() -> None:
    pem = keys.public_key_pem(_generate_p521().public_key)
    with pytest.raises(ValueError, match=rf"^not an {re.escape(ACCEPTED)} public key$"):
        keys.load_public_key(pem)
    with pytest.raises(ValueError, match=r"^Could not deserialize key data"):
        keys.load_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


def test_public_keys_round_trip_through_pem_with_the_default_key_id() -> None:
    alice = signer("alice").public_key
    pem = keys.public_key_pem(alice)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert keys.load_public_key(pem) == alice
    assert keys.public_key_pem(keys.load_public_key(pem)) == pem


def test_generate_makes_an_ed25519_key_whose_pem_loads_back() -> None:
    new = keys.generate()
    assert (new.public_key.keytype, new.public_key.scheme) == ("ed25519", "ed25519")
    again = keys.signer_from_pem(new.private_bytes)
    assert again.public_key == new.public_key
    assert new.private_bytes.startswith(b"-----BEGIN PRIVATE KEY-----\n")


def test_the_registries_hold_only_todays_kinds() -> None:
    """The core has the file kind; every other kind comes from approvalgate.signers (which
    the CLI registers before it resolves --signer, so an earlier test may have)."""
    kinds = keys.signer_kinds()
    assert kinds[0] is keys.FILE
    assert all(k.load.__module__.startswith("approvalgate.signers.") for k in kinds[1:])
    assert keys.accepted_names() == ACCEPTED


# --- the annotation size rule --------------------------------------------------------------


def test_the_size_rule_counts_utf8_bytes_against_256_kib() -> None:
    assert records.MAX_ANNOTATION_BYTES == 256 * 1024
    assert records.annotation_overflow("x" * records.MAX_ANNOTATION_BYTES) is None
    assert records.annotation_overflow("x" * (records.MAX_ANNOTATION_BYTES + 1)) == 262145
    assert records.annotation_overflow("é" * (records.MAX_ANNOTATION_BYTES // 2 + 1)) == 262146


# --- the verifier: one path, every key type ------------------------------------------------


def _claim(**changes: Any) -> records.Claim:
    values: dict[str, Any] = {
        "subject": records.subject_name("agents", "run-1"),
        "digest": "ab" * 32,
        "decision": "approve",
        "approver": "carol",
        "reason": "",
        "issued_at": NOW - timedelta(hours=1),
        "expires_at": NOW + timedelta(hours=1),
        "nonce": "n1",
        "environment": "prod",
    }
    values.update(changes)
    return records.Claim(**values)


def _parse(envelope: dict[str, Any]) -> records.ParsedRecord:
    parsed, problems = records.parse_annotation(json.dumps([envelope]))
    assert problems == []
    return parsed[0]


def test_an_ecdsa_signature_is_checked_and_remembered_like_an_ed25519_one(
    ecdsa: keys.KeyType,
) -> None:
    carol = _generate_p521()
    genuine = records.sign(_claim(), carol)
    verifier = records.Verifier()
    for _ in range(2):
        assert verifier.signed_by(_parse(genuine), [signer("alice").public_key, carol.public_key])
    info = verifier.cache_info()
    assert (info["verified_entries"], info["verified_hits"]) == (1, 1)
    tampered = copy.deepcopy(genuine)
    tampered["payload"] = records.sign(_claim(nonce="n2"), carol)["payload"]
    assert verifier.signed_by(_parse(tampered), [carol.public_key]) is None
    assert records.signed_by(_parse(tampered), [carol.public_key]) is None
    assert records.signed_by(_parse(genuine), [carol.public_key]) == carol.public_key


def test_an_ed25519_and_an_ecdsa_key_with_the_same_hint_are_told_apart(
    ecdsa: keys.KeyType,
) -> None:
    carol = _generate_p521()
    envelope = records.sign(_claim(), signer("alice"))
    envelope["signatures"][0]["keyid"] = carol.public_key.keyid
    record = _parse(envelope)
    verifier = records.Verifier()
    assert verifier.signed_by(record, [carol.public_key]) is None
    assert verifier.signed_by(record, [carol.public_key, signer("alice").public_key]) == (
        signer("alice").public_key
    )


# --- a second key type and a second signer kind: one registration each -------------------


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The decision corpus' policies and run, Ed25519 keys, and carol holding an ECDSA key."""
    for name in ("policies.yaml", "run.yaml"):
        shutil.copy(BASE / name, tmp_path / name)
    shutil.copy(KEYS / "alice.key", tmp_path / "alice.key")
    carol = _generate_p521()
    (tmp_path / "carol.key").write_bytes(carol.private_bytes)
    docs = (BASE / "approvers.yaml").read_text().split("\n---\n")
    (index,) = [i for i, doc in enumerate(docs) if "\n  name: carol\n" in doc]
    docs[index] = approver_document(
        "carol", keys.public_key_pem(carol.public_key), ["reviewers"], ["carol"]
    ).rstrip("\n")
    (tmp_path / "approvers.yaml").write_text("\n---\n".join(docs))
    return tmp_path


def _approve(capsys: pytest.CaptureFixture[str], repo: Path, key: str, approver: str) -> str:
    code, _, err = _run(
        capsys,
        *("approve", str(repo / "run.yaml"), "--key", key, "--approver", approver),
        *("--in-place", "--now", "2026-11-21T11:00:00Z", "--env", "prod"),
    )
    assert (code == 0) == (err.startswith("signed ")), err
    return "" if code == 0 else err


def _verify(capsys: pytest.CaptureFixture[str], repo: Path) -> str:
    _, out, err = _run(
        capsys,
        *("verify", str(repo / "run.yaml"), "--policies", str(repo / "policies.yaml")),
        *(str(repo / "approvers.yaml"), "--now", "2026-11-21T12:00:00Z", "--user", "requester"),
        *("--env", "prod"),
    )
    return out + err


def test_without_registration_an_ecdsa_key_is_refused_everywhere(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    err = _approve(capsys, repo, str(repo / "carol.key"), "carol")
    assert err == (
        f"error: {repo}/carol.key is not an {ACCEPTED} key\n  hint: approval keys are {ACCEPTED}\n"
    )
    assert (
        f"spec.keys[0].publicKey: not a usable public key: not an {ACCEPTED} public key"
        in _verify(capsys, repo)
    )


def test_a_second_key_type_is_one_registration(
    capsys: pytest.CaptureFixture[str], repo: Path, ecdsa: keys.KeyType
) -> None:
    assert _approve(capsys, repo, str(repo / "alice.key"), "alice") == ""
    assert _approve(capsys, repo, str(repo / "carol.key"), "carol") == ""
    assert _verify(capsys, repo) == (
        "ADMITTED agents/codex-run-sample in prod (approved; approved by alice, carol)\n"
        + OFFLINE_WARNING
    )


def test_a_second_signer_kind_is_one_registration(
    capsys: pytest.CaptureFixture[str], repo: Path, ecdsa: keys.KeyType
) -> None:
    """An in-memory signer named ``test-kms:carol`` stands in for an HSM or a KMS."""
    held = {"carol": keys.signer_from_pem((repo / "carol.key").read_bytes())}
    (repo / "carol.key").unlink()
    kind = keys.SignerKind("test-kms", "keys held in memory", lambda name, _read: held[name])
    keys.register_signer_kind(kind)
    try:
        assert _approve(capsys, repo, str(repo / "alice.key"), "alice") == ""
        assert _approve(capsys, repo, "test-kms:carol", "carol") == ""
    finally:
        keys.unregister_signer_kind(kind)
    assert _verify(capsys, repo) == (
        "ADMITTED agents/codex-run-sample in prod (approved; approved by alice, carol)\n"
        + OFFLINE_WARNING
    )


# --- nothing outside the room names a key type or checks a signature ----------------------

KEY_NAMES = frozenset(
    {
        "CryptoSigner",
        "Ed25519PrivateKey",
        "Ed25519PublicKey",
        "load_pem_private_key",
        "load_pem_public_key",
        "verify_signature",
        "from_crypto",
    }
)


def test_only_the_keys_room_names_key_types_and_checks_signatures() -> None:
    room = ROOT / "approvalgate" / "approvals" / "keys"
    found = []
    for path in sorted((ROOT / "approvalgate").rglob("*.py")):
        if room in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = (
                node.attr
                if isinstance(node, ast.Attribute)
                else node.id
                if isinstance(node, ast.Name)
                else None
            )
            names = [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else []
            for hit in {name, *names} & KEY_NAMES:
                line = getattr(node, "lineno", 0)
                found.append(f"{path.relative_to(ROOT)}:{line}: {hit}")
    assert found == []
