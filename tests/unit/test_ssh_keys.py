"""SSH keys as approval keys, checked offline against the real ``ssh-keygen``.

- every accepted OpenSSH key type (ssh-ed25519, sk-ssh-ed25519@openssh.com, ecdsa-sha2-nistp256
  and -nistp384, sk-ecdsa-sha2-nistp256@openssh.com, ssh-rsa of 2048 bits or more) is read
  from its ``.pub`` line into the contract's SSlibKey, and back;
- signatures ``ssh-keygen -Y sign -n gates.proompteng.ai`` makes over the DSSE PAE of an
  approval record verify through the one verifier (sha512 and sha256);
- refused, by us and (where OpenSSH has a say) by ``ssh-keygen -Y verify`` alike: a tampered
  payload or signature, another namespace, an embedded key that is not the pinned one, md5
  and sha1 hashes, a security key's signature without user presence, RSA ``ssh-rsa`` (SHA-1)
  signatures; and keys we do not accept (RSA-1024, nistp521, an application not ``ssh:``).

The ssh-agent side (our signatures verified by ``ssh-keygen``) is tests/unit/test_ssh_agent.py.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import Signature, Signer, SSlibKey
from securesystemslib.signer._key import compute_default_keyid

from approvalgate.approvals import keys, records
from approvalgate.approvals.bundle_trust import pae
from approvalgate.approvals.keys import ssh
from approvalgate.approvals.schemas import schema_findings
from tests.support import ssh as tools

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
TYPES = list(tools.KEY_TYPES)
DATA = pae(b'{"what": "the bytes an approval signs"}')


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One private key file per accepted type, and the odd ones the tests refuse."""
    tools.require_tools()
    folder = tmp_path_factory.mktemp("ssh-keys")
    found = {keytype: tools.keygen(folder, f"k{i}", keytype) for i, keytype in enumerate(TYPES)}
    found["other-ed25519"] = tools.keygen(folder, "other", "ssh-ed25519")
    found["no-touch"] = tools.keygen(
        folder, "notouch", "sk-ssh-ed25519@openssh.com", "-O", "no-touch-required"
    )
    found["rsa-1024"] = tools.keygen(folder, "rsa1024", "rsa", "-b", "1024")
    found["nistp521"] = tools.keygen(folder, "p521", "ecdsa", "-b", "521")
    return found


def _line(private: Path) -> str:
    return private.with_suffix(".pub").read_text()


def _key(private: Path) -> SSlibKey:
    return keys.load_public_key(_line(private))


def _check(key: SSlibKey, blob: bytes, data: bytes = DATA) -> None:
    key_type = keys.key_type_of(key)
    assert key_type is not None
    assert key_type.check is not None
    key_type.check(key)(blob, data)


def _signed(private: Path, data: bytes = DATA, **options: str) -> bytes:
    return ssh.dearmor(tools.sign(private, data, **options))


class KeygenSigner(Signer):
    """``ssh-keygen -Y sign`` with a private key file, as a securesystemslib signer."""

    def __init__(self, private: Path, hashalg: str = "") -> None:
        self.private = private
        self.hashalg = hashalg
        self._public = _key(private)

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Any, secrets_handler: Any = None
    ) -> Signer:
        raise NotImplementedError

    @property
    def public_key(self) -> SSlibKey:
        return self._public

    def sign(self, payload: bytes) -> Signature:
        blob = _signed(self.private, payload, hashalg=self.hashalg)
        return Signature(self._public.keyid, blob.hex())


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


def _fields(blob: bytes) -> list[bytes]:
    """The SSHSIG blob's fields after the preamble and version."""
    assert blob[:6] == b"SSHSIG"
    at, fields = 10, []
    while at < len(blob):
        (n,) = struct.unpack(">I", blob[at : at + 4])
        fields.append(blob[at + 4 : at + 4 + n])
        at += 4 + n
    return fields


def _sshsig(public: bytes, namespace: bytes, hash_name: bytes, signature: bytes) -> bytes:
    parts = [public, namespace, b"", hash_name, signature]
    return b"SSHSIG" + struct.pack(">I", 1) + b"".join(ssh._string(p) for p in parts)


def _wrapper(data: bytes, hash_name: str) -> bytes:
    """PROTOCOL.sshsig's signed data, for any hashlib hash (what a forger would try)."""
    digest = hashlib.new(hash_name, data).digest()
    parts = [tools.NAMESPACE.encode(), b"", hash_name.encode(), digest]
    return b"SSHSIG" + b"".join(ssh._string(p) for p in parts)


def _blob_of(line: str) -> bytes:
    return base64.b64decode(line.split()[1])


# --- OpenSSH public key lines -------------------------------------------------------------


@pytest.mark.parametrize("keytype", TYPES)
def test_an_openssh_line_is_the_contracts_sslib_key(made: dict[str, Path], keytype: str) -> None:
    line = _line(made[keytype])
    kind, encoded, comment = line.split()
    key = keys.load_public_key(line)
    assert (key.keytype, key.scheme, key.keyval) == (
        keytype,
        "sshsig",
        {"public": f"{kind} {encoded}"},
    )
    assert comment and comment not in json.dumps(key.to_dict())
    assert key.keyid == compute_default_keyid(keytype, "sshsig", key.keyval)
    assert keys.public_key_pem(key) == keys.public_key_text(key) == f"{kind} {encoded}"
    assert keys.load_public_key(keys.public_key_pem(key)) == key
    assert keys.load_public_key(f"  {kind} {encoded}\n") == key
    key_type = keys.key_type_of(key)
    assert key_type is not None
    assert (key_type.keytype, key_type.scheme, key_type.family) == (keytype, "sshsig", ssh.FAMILY)
    assert keys.refusal(key) == ""


def test_fingerprints_are_the_ones_ssh_keygen_prints(made: dict[str, Path]) -> None:
    for keytype in TYPES:
        printed = tools.run(["ssh-keygen", "-l", "-f", str(made[keytype].with_suffix(".pub"))])
        assert ssh.parse_line(_line(made[keytype])).fingerprint == printed.split()[1].decode()


def test_keys_we_do_not_accept_are_refused_with_the_reason(made: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"^RSA keys need at least 2048 bits, this one has 1024$"):
        keys.load_public_key(_line(made["rsa-1024"]))
    accepted = ", ".join(TYPES)
    with pytest.raises(
        ValueError,
        match=rf"^ecdsa-sha2-nistp521 keys are not accepted \(accepted: {re.escape(accepted)}\)$",
    ):
        keys.load_public_key(_line(made["nistp521"]))
    ed25519 = _line(made["ssh-ed25519"]).split()[1]
    with pytest.raises(ValueError, match=r"^the line says ssh-rsa but the key is ssh-ed25519$"):
        keys.load_public_key(f"ssh-rsa {ed25519}")
    two = _line(made["ssh-ed25519"]) + _line(made["other-ed25519"])
    with pytest.raises(ValueError, match=r"^one OpenSSH public key line is expected, not several"):
        keys.load_public_key(two)
    with pytest.raises(ValueError, match=r"^the ssh-ed25519 key is not valid base64$"):
        keys.load_public_key("ssh-ed25519 AAAA!!")
    with pytest.raises(ValueError, match=r"^the SSH public key is truncated$"):
        keys.load_public_key(f"ssh-ed25519 {ed25519[:40]}")
    # a security key whose FIDO application is not "ssh:..." (ssh-keygen will not make one)
    sk = _blob_of(_line(made["sk-ssh-ed25519@openssh.com"]))
    assert sk.endswith(ssh._string(b"ssh:"))
    odd = sk[: -len(ssh._string(b"ssh:"))] + ssh._string(b"web:")
    with pytest.raises(ValueError, match=r"application 'web:' does not start with 'ssh:'"):
        keys.load_public_key(f"sk-ssh-ed25519@openssh.com {base64.b64encode(odd).decode()}")


def test_the_approver_schema_takes_pem_and_openssh_lines(made: dict[str, Path]) -> None:
    def approver(public: str) -> dict[str, Any]:
        return {
            "apiVersion": "gates.proompteng.ai/v1alpha1",
            "kind": "Approver",
            "metadata": {"name": "carol"},
            "spec": {"usernames": ["carol"], "keys": [{"publicKey": public}]},
        }

    for keytype in TYPES:
        assert schema_findings("approver.schema.json", approver(_line(made[keytype]))) == []
    pem = keys.public_key_pem(keys.generate().public_key)
    assert schema_findings("approver.schema.json", approver(pem)) == []
    (finding,) = schema_findings("approver.schema.json", approver("carol's key"))
    assert finding.path == ("spec", "keys", 0, "publicKey")
    assert finding.message.startswith("publicKey must be a PEM public key (-----BEGIN PUBLIC KEY")
    assert "or an OpenSSH public key line (the .pub file: ssh-ed25519 AAAA..." in finding.message


# --- ssh-keygen's signatures verify here ---------------------------------------------------


@pytest.mark.parametrize("keytype", TYPES)
def test_ssh_keygen_signatures_over_a_records_pae_verify(
    made: dict[str, Path], keytype: str
) -> None:
    carol = KeygenSigner(made[keytype])
    envelope = records.sign(_claim(), carol)
    verifier = records.Verifier()
    alice = keys.load_public_key(_line(made["other-ed25519"]))
    assert verifier.signed_by(_parse(envelope), [alice, carol.public_key]) == carol.public_key
    assert records.signed_by(_parse(envelope), [alice]) is None
    # tampered payload: another claim under carol's signature
    tampered = copy.deepcopy(envelope)
    tampered["payload"] = records.sign(_claim(nonce="n2"), KeygenSigner(made["other-ed25519"]))[
        "payload"
    ]
    assert verifier.signed_by(_parse(tampered), [carol.public_key]) is None
    # tampered signature: the last byte of the SSHSIG blob (inside the signature field)
    blob = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    blob[-1 if not keytype.startswith("sk-") else -6] ^= 0x01
    tampered = copy.deepcopy(envelope)
    tampered["signatures"][0]["sig"] = base64.b64encode(bytes(blob)).decode()
    assert verifier.signed_by(_parse(tampered), [carol.public_key]) is None
    with pytest.raises(ssh.SSHSignatureError, match=r"^the SSH signature does not verify$"):
        _check(carol.public_key, bytes(blob), _pae(envelope))


def _pae(envelope: dict[str, Any]) -> bytes:
    return _parse(envelope).envelope.pae()


@pytest.mark.parametrize(
    "keytype", ["ssh-ed25519", "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-rsa"]
)
def test_sha256_is_accepted_as_well_as_sha512(made: dict[str, Path], keytype: str) -> None:
    key = _key(made[keytype])
    for hashalg in ("sha512", "sha256"):
        blob = _signed(made[keytype], hashalg=hashalg)
        assert _fields(blob)[3] == hashalg.encode()
        _check(key, blob)
    assert _fields(_signed(made[keytype]))[3] == b"sha512"  # ssh-keygen's default


# --- refused by us, and by ssh-keygen -Y verify where it has a say -------------------------


def test_another_namespace_is_refused(made: dict[str, Path]) -> None:
    private = made["ssh-ed25519"]
    armoured = tools.sign(private, DATA, namespace="git")
    with pytest.raises(ssh.SSHSignatureError, match=r"namespace 'git', not gates\.proompteng\.ai$"):
        _check(_key(private), ssh.dearmor(armoured))
    assert tools.verify(private.parent, _line(private), DATA, armoured).returncode != 0


def test_the_embedded_key_must_be_the_pinned_key(made: dict[str, Path]) -> None:
    carol, other = made["ssh-ed25519"], made["other-ed25519"]
    blob = _signed(carol)
    with pytest.raises(ssh.SSHSignatureError, match=r"made by another key than the pinned one"):
        _check(_key(other), blob)
    # carol's signature claiming to be by the pinned key: the pinned key does not verify it
    public, namespace, _, hash_name, signature = _fields(blob)
    assert public == _blob_of(_line(carol))
    swapped = _sshsig(_blob_of(_line(other)), namespace, hash_name, signature)
    with pytest.raises(ssh.SSHSignatureError, match=r"^the SSH signature does not verify$"):
        _check(_key(other), swapped)
    with pytest.raises(ssh.SSHSignatureError, match=r"made by another key than the pinned one"):
        _check(_key(carol), swapped)
    armoured = ssh.armor(swapped)
    assert tools.verify(carol.parent, _line(other), DATA, armoured).returncode != 0


@pytest.mark.parametrize("hash_name", ["md5", "sha1", "sha384"])
def test_hashes_other_than_sha512_and_sha256_are_refused(
    made: dict[str, Path], hash_name: str
) -> None:
    """A genuine Ed25519 signature by the key, over SSHSIG signed data hashed with md5/sha1."""
    private_file = made["ssh-ed25519"]
    private = serialization.load_ssh_private_key(private_file.read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    raw = private.sign(_wrapper(DATA, hash_name))
    signature = ssh._string(b"ssh-ed25519") + ssh._string(raw)
    blob = _sshsig(
        _blob_of(_line(private_file)), tools.NAMESPACE.encode(), hash_name.encode(), signature
    )
    with pytest.raises(
        ssh.SSHSignatureError,
        match=rf"hashes with {hash_name}: only sha512 or sha256 are accepted$",
    ):
        _check(_key(private_file), blob)
    assert (
        tools.verify(private_file.parent, _line(private_file), DATA, ssh.armor(blob)).returncode
        != 0
    )
    # the same signature with the hash relabelled sha512 does not verify either
    relabelled = _sshsig(
        _blob_of(_line(private_file)), tools.NAMESPACE.encode(), b"sha512", signature
    )
    with pytest.raises(ssh.SSHSignatureError, match=r"^the SSH signature does not verify$"):
        _check(_key(private_file), relabelled)


def test_an_rsa_signature_made_with_sha1_is_refused(made: dict[str, Path]) -> None:
    """A genuine ``ssh-rsa`` (PKCS#1 v1.5 SHA-1) signature by the key over the right data."""
    private_file = made["ssh-rsa"]
    private = serialization.load_ssh_private_key(private_file.read_bytes(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    raw = private.sign(_wrapper(DATA, "sha512"), padding.PKCS1v15(), hashes.SHA1())
    signature = ssh._string(b"ssh-rsa") + ssh._string(raw)
    blob = _sshsig(_blob_of(_line(private_file)), tools.NAMESPACE.encode(), b"sha512", signature)
    with pytest.raises(
        ssh.SSHSignatureError, match=r"made with ssh-rsa: only rsa-sha2-512 or rsa-sha2-256"
    ):
        _check(_key(private_file), blob)
    assert (
        tools.verify(private_file.parent, _line(private_file), DATA, ssh.armor(blob)).returncode
        != 0
    )
    # and the genuine rsa-sha2-512 one of ssh-keygen is accepted
    assert _fields(_signed(private_file))[4].startswith(ssh._string(b"rsa-sha2-512"))
    _check(_key(private_file), _signed(private_file))


def test_a_security_key_signature_without_user_presence_is_refused(made: dict[str, Path]) -> None:
    private = made["no-touch"]
    armoured = tools.sign(private, DATA)
    blob = ssh.dearmor(armoured)
    flags = _fields(blob)[4][-5]
    assert flags & ssh.USER_PRESENCE == 0
    with pytest.raises(
        ssh.SSHSignatureError, match=r"signed without user presence \(no touch\): refused$"
    ):
        _check(_key(private), blob)
    # the signature itself is genuine: OpenSSH 9.2's -Y verify accepts it (its allowed_signers
    # has no way to ask for the flag); the gate asks for it always
    relaxed = tools.verify(private.parent, _line(private), DATA, armoured)
    assert relaxed.returncode == 0, relaxed.stderr
    # a touched signature verifies; setting the flag in a captured one breaks the signature
    touched = _signed(made["sk-ssh-ed25519@openssh.com"])
    assert _fields(touched)[4][-5] & ssh.USER_PRESENCE
    forged = bytearray(blob)
    forged[-5] |= ssh.USER_PRESENCE
    with pytest.raises(ssh.SSHSignatureError, match=r"^the SSH signature does not verify$"):
        _check(_key(private), bytes(forged))


def test_malformed_signatures_are_refused_not_crashed(made: dict[str, Path]) -> None:
    key = _key(made["ssh-ed25519"])
    blob = _signed(made["ssh-ed25519"])
    public, namespace, _, hash_name, signature = _fields(blob)
    cases = {
        blob[:-1]: r"^the SSH signature is truncated$",
        blob + b"\0": r"^the SSH signature has 1 extra bytes$",
        b"SSHSIH" + blob[6:]: r"no SSHSIG preamble",
        blob[:6]
        + struct.pack(">I", 2)
        + blob[10:]: r"^SSH signature version 2 \(only 1 is known\)$",
        b"": r"^the SSH signature is truncated$",
        b"SSHSIG"
        + struct.pack(">I", 1)
        + b"".join(
            ssh._string(p) for p in [public, namespace, b"x", hash_name, signature]
        ): r"reserved field is not empty",
        _sshsig(
            public, namespace, hash_name, signature + b"\0"
        ): r"^the signature has 1 extra bytes$",
        _sshsig(public, namespace, hash_name, ssh._string(b"ssh-rsa") + signature[15:]): (
            r"^a ssh-rsa signature for a ssh-ed25519 key$"
        ),
    }
    for bad, message in cases.items():
        with pytest.raises(ssh.SSHSignatureError, match=message):
            _check(key, bad)
    assert records.signed_by(_parse({**_envelope_with(blob[:-1])}), [key]) is None


def _envelope_with(blob: bytes) -> dict[str, Any]:
    envelope = records.sign(_claim(), keys.generate())
    envelope["signatures"][0]["sig"] = base64.b64encode(blob).decode()
    return envelope


@pytest.mark.parametrize(
    "keytype", ["ssh-ed25519", "sk-ecdsa-sha2-nistp256@openssh.com", "ecdsa-sha2-nistp384"]
)
def test_every_one_byte_change_and_every_truncation_is_a_refusal(
    made: dict[str, Path], keytype: str
) -> None:
    """No change to a genuine blob verifies, and none escapes as anything but a refusal."""
    key = _key(made[keytype])
    blob = _signed(made[keytype])
    _check(key, blob)
    for at in range(len(blob)):
        for bad in (blob[:at], blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1 :]):
            with pytest.raises(ssh.SSHSignatureError):
                _check(key, bad)
