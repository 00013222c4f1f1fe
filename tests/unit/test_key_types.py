"""Key files of every type securesystemslib verifies offline: Ed25519, ECDSA P-256 and P-384,
RSA-PSS. Each type's check (built once per key, the admission hot path) must give exactly
securesystemslib's verdict: the same signatures accepted, the same refused."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import CryptoSigner, Signature, SSlibKey

from approvalgate.approvals import keys
from approvalgate.approvals.errors import RecordError

TYPES = [t.cli_name for t in keys.key_types() if t.keytype in ("ed25519", "ecdsa", "rsa")]


def test_the_key_file_types_are_registered_by_default() -> None:
    assert TYPES == ["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa"]
    assert keys.key_type_named("ECDSA P-384") is keys.ECDSA_P384
    assert keys.key_type_named("rsa") is keys.RSA_PSS


@pytest.mark.parametrize("name", TYPES)
def test_each_type_round_trips_and_agrees_with_securesystemslib(name: str) -> None:
    key_type = keys.key_type_named(name)
    signer = key_type.generate()
    public = keys.load_public_key(keys.public_key_pem(signer.public_key))
    assert public == signer.public_key
    assert (public.keytype, public.scheme) == (key_type.keytype, key_type.scheme)
    assert keys.signer_from_pem(signer.private_bytes).public_key == public
    data = b"PAE of a record"
    good = signer.sign(data)
    others = [
        Signature(
            good.keyid, good.signature[:-2] + ("00" if good.signature[-2:] != "00" else "01")
        ),
        signer.sign(b"other data"),
        key_type.generate().sign(data),
        Signature(good.keyid, ""),
    ]
    verifier = keys.SignatureVerifier(0)
    assert verifier.first_signer(data, {good.keyid: good}, [public]) is public
    public.verify_signature(good, data)
    for bad in others:
        assert verifier.first_signer(data, {bad.keyid: bad}, [public]) is None
        with pytest.raises(UnverifiedSignatureError):
            public.verify_signature(bad, data)


def test_a_signature_checks_only_with_its_own_key_whatever_the_key_id_says() -> None:
    p256, p384 = keys.generate("ecdsa-p256"), keys.generate("ecdsa-p384")
    data = b"data"
    signature = p256.sign(data)
    lying = Signature(p384.public_key.keyid, signature.signature)
    verifier = keys.SignatureVerifier(16)
    assert verifier.first_signer(data, {lying.keyid: lying}, [p384.public_key]) is None
    found = verifier.first_signer(data, {lying.keyid: lying}, [p384.public_key, p256.public_key])
    assert found is p256.public_key


def test_an_rsa_key_shorter_than_2048_bits_is_refused_as_a_file_and_as_a_public_key() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    short = CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))
    with pytest.raises(RecordError, match=r"RSA keys need at least 2048 bits, this one has 1024"):
        keys.signer_from_pem(short.private_bytes, "old.key")
    with pytest.raises(ValueError, match=r"RSA keys need at least 2048 bits"):
        keys.load_public_key(keys.public_key_pem(short.public_key))


def test_a_curve_nobody_registered_is_refused_with_the_accepted_list() -> None:
    private = ec.generate_private_key(ec.SECP521R1())
    public = SSlibKey.from_crypto(private.public_key())
    assert keys.refusal(public).startswith("not an Ed25519, ECDSA P-256")
    with pytest.raises(ValueError, match=r"^not an Ed25519, ECDSA P-256, ECDSA P-384, RSA-PSS or"):
        keys.load_public_key(keys.public_key_pem(public))


def test_ed25519_check_agrees_with_openssl_and_is_at_least_as_strict() -> None:
    """The Ed25519 check is libsodium's (faster); on every case below its verdict is
    OpenSSL's through cryptography: honest, tampered, another key's, truncated, padded, and a
    non-canonical S (S + L: the same point equation, refused by both)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from approvalgate.approvals.keys.types import ed25519_verify

    order = 2**252 + 27742317777372353535851937790883648493
    private, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public = private.public_key()
    raw = public.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    data = b'{"subject":"agents/run-1"}'
    good = private.sign(data)
    s = int.from_bytes(good[32:], "little") + order
    cases = {
        "honest": (good, data),
        "tampered data": (good, data + b" "),
        "another key": (other.sign(data), data),
        "truncated": (good[:63], data),
        "padded": (good + b"\0", data),
        "non-canonical S": (good[:32] + s.to_bytes(32, "little"), data),
        "empty": (b"", data),
    }
    check = ed25519_verify(raw)
    for case, (signature, message) in cases.items():
        try:
            public.verify(signature, message)
            openssl = True
        except InvalidSignature:
            openssl = False
        try:
            check(signature, message)
            ours = True
        except InvalidSignature:
            ours = False
        assert ours == openssl, case
        assert ours == (case == "honest"), case
    with pytest.raises(ValueError, match="32 bytes"):
        ed25519_verify(b"short")
