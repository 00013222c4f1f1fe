"""Ed25519 approver keys must be points of the prime-order subgroup, canonically encoded
(fifth red-team pass, keys and signers).

An Ed25519 public key is 32 bytes any of which may be read as a point. Three kinds of
such "keys" are not keys anyone generated:

- a point of small order (eight of them, the identity among them): every signature
  "verifies" for some, under OpenSSL (securesystemslib), ``ssh-keygen -Y verify`` and any
  cofactorless verifier: a requester holding only public keys forges them there;
- a point with a small-order component, A + T: the holder of A's private key signs for
  A + T too (a nonce whose hash is a multiple of 8 cancels T), so one private key is up
  to eight approvers whose keys all look different, and "one key, one approver" (which
  compares key material) could not see it;
- a non-canonical encoding (y >= p): a second spelling of a point.

The gate's libsodium already refused signatures for the first and third; it verified the
second. All three are now refused where a key is read (compile, the bundle, ``--bundle-key``),
for the PEM form and both OpenSSH forms, with advice.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nacl.bindings
import pytest
import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.signer import Key, SecretsHandler, Signature, Signer, SSlibKey

from approvalgate.approvals import keys, records
from approvalgate.approvals.admission import request_for_manifest
from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.decide import Decision, decide
from approvalgate.approvals.digest import spec_digest
from approvalgate.approvals.errors import BundleError
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.policy import (
    BundleSettings,
    bundle_generation,
    compile_bundle,
    dump_bundle,
)
from approvalgate.cli import main
from tests.support import ssh as ssh_tools
from tests.support.corpus import BASE, CORPUS_ENVIRONMENT
from tests.support.paths import ROOT

L = 2**252 + 27742317777372353535851937790883648493
"""The order of Ed25519's prime-order subgroup."""
SMALL_ORDER = (
    "0100000000000000000000000000000000000000000000000000000000000000",  # the identity
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
)
NON_CANONICAL = (
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p + 1
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p
)
EIGHT = bytes.fromhex(SMALL_ORDER[6])
"""A point of order 8."""
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
REFUSED = "is not an Ed25519 public key anyone generated"


class Holder:
    """One Ed25519 private key (its scalar), signing for its public key A or for A + T."""

    def __init__(self) -> None:
        digest = bytearray(hashlib.sha512(os.urandom(32)).digest()[:32])
        digest[0] &= 248
        digest[31] &= 127
        digest[31] |= 64
        self.scalar = int.from_bytes(digest, "little") % L
        self.public = nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(
            self.scalar.to_bytes(32, "little")
        )

    def sign(self, public: bytes, message: bytes) -> bytes:
        """A signature for ``public`` (A or A + T): nonces are drawn until the hash is a
        multiple of 8, which cancels T's part (eight draws on average)."""
        while True:
            nonce = int.from_bytes(os.urandom(64), "little") % L
            r = nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(nonce.to_bytes(32, "little"))
            k = int.from_bytes(hashlib.sha512(r + public + message).digest(), "little") % L
            if k % 8 == 0:
                return r + ((nonce + k * self.scalar) % L).to_bytes(32, "little")


class PointSigner(Signer):
    """A securesystemslib signer for ``public`` made by ``holder``."""

    def __init__(self, holder: Holder, public: bytes) -> None:
        self._holder = holder
        self._raw = public
        self._key = SSlibKey.from_crypto(Ed25519PublicKey.from_public_bytes(public))

    @property
    def public_key(self) -> SSlibKey:
        return self._key

    def sign(self, payload: bytes) -> Signature:
        return Signature(self._key.keyid, self._holder.sign(self._raw, payload).hex())

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Key, secrets_handler: SecretsHandler | None = None
    ) -> PointSigner:
        raise NotImplementedError


def pem(raw: bytes) -> str:
    public = Ed25519PublicKey.from_public_bytes(raw)
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def ssh_line(raw: bytes, keytype: str = "ssh-ed25519") -> str:
    blob = _string(keytype.encode()) + _string(raw)
    if keytype.startswith("sk-"):
        blob += _string(b"ssh:")
    return f"{keytype} {base64.b64encode(blob).decode('ascii')}"


FORMS = {
    "pem": pem,
    "ssh-ed25519": ssh_line,
    "sk-ssh-ed25519": lambda raw: ssh_line(raw, "sk-ssh-ed25519@openssh.com"),
}


def mixed(holder: Holder) -> bytes:
    return bytes(nacl.bindings.crypto_core_ed25519_add(holder.public, EIGHT))


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("kind", ["small-order", "non-canonical", "mixed-order"])
def test_an_ed25519_point_nobody_generated_is_no_public_key(form: str, kind: str) -> None:
    points = {
        "small-order": [bytes.fromhex(p) for p in SMALL_ORDER],
        "non-canonical": [bytes.fromhex(p) for p in NON_CANONICAL],
        "mixed-order": [mixed(Holder()) for _ in range(3)],
    }[kind]
    for raw in points:
        with pytest.raises(ValueError, match=REFUSED):
            keys.load_public_key(FORMS[form](raw))
    honest = Holder().public
    assert keys.load_public_key(FORMS[form](honest)).keyval["public"]


def test_anyone_forges_a_signature_of_a_small_order_key_outside_libsodium(
    tmp_path: Path,
) -> None:
    """Why a small-order key is refused although the gate's libsodium refuses its
    signatures: OpenSSL (securesystemslib) and ``ssh-keygen -Y verify`` accept a signature
    nobody made (R the identity, S zero) over any message, so an approval "verifies"
    wherever it is checked without libsodium."""
    ssh_tools.require_tools()
    identity = bytes.fromhex(SMALL_ORDER[0])
    forged = identity + bytes(32)
    Ed25519PublicKey.from_public_bytes(identity).verify(forged, b"any message")  # no raise
    blob = _string(b"ssh-ed25519") + _string(identity)
    sshsig = keys.ssh.sshsig(blob, _string(b"ssh-ed25519") + _string(forged))
    line = ssh_line(identity)
    checked = ssh_tools.verify(tmp_path, line, b"approve", keys.ssh.armor(sshsig))
    assert checked.returncode == 0, checked.stderr
    assert b"Good" in checked.stdout + checked.stderr
    with pytest.raises(ValueError, match=REFUSED):
        keys.load_public_key(line)


def test_one_private_key_signs_for_its_key_plus_a_small_order_point() -> None:
    """The holder of A signs for A + T, as libsodium (the gate's verifier) checks it."""
    holder = Holder()
    message = b"DSSEv1 28 application/vnd.in-toto+json 2 {}"
    signature = holder.sign(mixed(holder), message)
    nacl.bindings.crypto_sign_open(signature + message, mixed(holder))  # verifies: no raise
    with pytest.raises(InvalidSignature):
        keys.types.ed25519_verify(holder.public)(signature[:-1] + b"\x00", message)


# --- decide(): one private key as two approvers ---------------------------------------------


def _approver(name: str, public_pem: str) -> dict[str, Any]:
    return {
        "apiVersion": "gates.proompteng.ai/v1alpha1",
        "kind": "Approver",
        "metadata": {"name": name},
        "spec": {
            "usernames": [name],
            "groups": ["platform-leads"],
            "keys": [{"publicKey": public_pem}],
        },
    }


def _base(names: set[str]) -> list[dict[str, Any]]:
    return [
        d.obj
        for name in ("policies.yaml", "approvers.yaml")
        for d in load_manifests((BASE / name).read_text(), name)
        if d.obj is not None and d.obj["metadata"]["name"] not in names
    ]


def _record(run: dict[str, Any], who: str, signer: Signer) -> dict[str, Any]:
    meta = run["metadata"]
    claim = records.Claim(
        subject=records.subject_name(meta["namespace"], meta["name"]),
        digest=spec_digest(run["spec"]),
        decision="approve",
        approver=who,
        reason="",
        issued_at=NOW - timedelta(hours=1),
        expires_at=NOW + timedelta(hours=1),
        nonce=f"nonce-{who}",
        environment=CORPUS_ENVIRONMENT,
    )
    return records.sign(claim, signer)


def test_one_private_key_is_never_two_approvers_through_a_small_order_point() -> None:
    """alice holds A; "bob"'s key is A + T (it looks like another key: other bytes, another
    fingerprint, other key material). The base policy wants two platform leads: compile
    refuses bob's key, and a bundle carrying it (compiled before, or by hand) is refused,
    so alice's one key never approves as both."""
    alice = Holder()
    settings = BundleSettings(environment=CORPUS_ENVIRONMENT, cluster_view="off")
    approvers = [_approver("alice", pem(alice.public)), _approver("bob", pem(mixed(alice)))]
    compiled, problems = compile_bundle([*_base({"alice", "bob"}), *approvers], settings)
    assert compiled is None
    assert [p.finding.path for p in problems if REFUSED in p.finding.message] == [
        ("spec", "keys", 0, "publicKey")
    ], problems
    # the same bundle made with an honest key for bob, then bob's key swapped by hand
    approvers[1] = _approver("bob", pem(Holder().public))
    compiled, problems = compile_bundle([*_base({"alice", "bob"}), *approvers], settings)
    assert compiled is not None, problems
    honest = parse_bundle_text(dump_bundle(compiled))
    denied = _judged(honest, alice)  # bob's real key: alice's record for him does not verify
    assert (denied.allowed, denied.reason) == (False, "missing-approvals"), denied.message
    for approver in compiled["approvers"]:
        if approver["name"] == "bob":
            approver["keys"][0]["publicKey"] = pem(mixed(alice))
    compiled["generation"] = bundle_generation(compiled)
    # the code before loaded it and admitted the run: "loaded: allowed=True (approved)"
    outcome = _enforced(dump_bundle(compiled), alice)
    assert outcome.startswith("refused: ") and REFUSED in outcome, outcome


def _enforced(text: str, alice: Holder) -> str:
    """What becomes of a bundle: refused (why), or loaded and the run judged."""
    try:
        bundle = parse_bundle_text(text)
    except BundleError as exc:
        return f"refused: {exc.message}"
    decision = _judged(bundle, alice)
    return f"loaded: allowed={decision.allowed} ({decision.reason})"


def _judged(bundle: Bundle, alice: Holder) -> Decision:
    """The base run carrying approvals signed by alice's one key as alice and as bob."""
    run = dict(load_manifests((BASE / "run.yaml").read_text(), "run.yaml")[0].obj or {})
    envelopes = [
        _record(run, "alice", PointSigner(alice, alice.public)),
        _record(run, "bob", PointSigner(alice, mixed(alice))),
    ]
    run["metadata"]["annotations"] = {records.ANNOTATION: json.dumps(envelopes)}
    request = request_for_manifest(run, username="requester", groups=["agents-users"])
    return decide(request, bundle, NOW)


def test_compile_names_the_file_line_and_column_of_such_a_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "gitops-repo", repo)
    path = repo / "approvers" / "bob.yaml"
    doc = load_manifests(path.read_text(), "bob.yaml")[0].obj
    assert doc is not None
    doc["spec"]["keys"][0]["publicKey"] = ssh_line(mixed(Holder()))
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    code = main(["check", str(repo)])
    _, err = capsys.readouterr()
    assert code == 1, err
    assert "Traceback" not in err
    assert "approvers/bob.yaml:" in err and ":$.spec.keys[0].publicKey" in err.replace(" ", "")
    assert REFUSED in err
    assert "ssh-keygen -t ed25519" in err
