"""The key types approvers may hold: one table, read by every other module of the room.

A key type is named by securesystemslib's ``(keytype, scheme)`` pair, the pair
``SSlibKey.from_crypto`` gives a ``cryptography`` key by default. Public keys in Approver
documents, private key files and key generation all accept exactly the types listed here,
so supporting a new type is one :func:`register_key_type` call.

Every type securesystemslib verifies offline with a key file is here: Ed25519, ECDSA P-256
and P-384 (DER signatures, as securesystemslib's signers, its HSM signer and the cloud KMSs
make them), RSA-PSS with SHA-256 (at least 2048 bits; keygen makes 3072). SSH keys are
registered by :mod:`approvals.keys.ssh`. Each type's check is built once per key and gives
exactly securesystemslib's verdict (tests/unit/test_key_types.py compares them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_core_ed25519_is_valid_point
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from securesystemslib.signer import CryptoSigner, SSlibKey

Check = Callable[[bytes, bytes], None]
"""Verifies ``(signature, data)`` against one key; raises on a bad signature."""
_ED25519_SIGNATURE_BYTES: Final = 64
ED25519_PUBLIC_BYTES: Final = 32


@dataclass(frozen=True)
class KeyType:
    """One accepted key type."""

    name: str
    """As messages say it: ``Ed25519``."""
    keytype: str
    """securesystemslib's keytype: ``ed25519``."""
    scheme: str
    """securesystemslib's signing scheme: ``ed25519``."""
    generate: Callable[[], CryptoSigner]
    """A new key pair (``approvalgate keygen``)."""
    check: Callable[[SSlibKey], Check] | None = None
    """A verifier built once per key for the admission hot path; None: securesystemslib's
    ``verify_signature`` (the same answers, more work per signature)."""
    accepts: Callable[[SSlibKey], str] | None = None
    """Why a key of this type is refused ("" when accepted): e.g. an RSA key too short."""
    cli_name: str = ""
    """As ``keygen --type`` names it: ``ed25519``, ``ecdsa-p256``...; "" when keygen does
    not make it (SSH keys: ``ssh-keygen`` does)."""
    family: str = ""
    """How :func:`accepted_names` lists this type together with its like (the SSH types:
    ``OpenSSH (ed25519, ecdsa, rsa, sk-*)``); "" lists it by ``name``."""


def ed25519_verify(public: bytes) -> Check:
    """An Ed25519 check for the 32-byte ``public`` key, built once: libsodium's
    ``crypto_sign_open`` through PyNaCl, which raises InvalidSignature (as cryptography's
    would) for a signature that does not verify.

    Why libsodium and not cryptography's OpenSSL, which also verifies Ed25519: it is about
    1.75x faster here (59 against 103 µs a signature on this machine; two per admission, a
    thousand per `verify` of 500 runs), and at least as strict: it refuses non-canonical
    encodings and small-order points, which OpenSSL accepts, so a signature it admits,
    OpenSSL admits too (tests/unit/test_key_types.py checks the verdicts agree with
    securesystemslib's). The key is still parsed by cryptography first, as before: the same
    errors for a malformed key.
    """
    Ed25519PublicKey.from_public_bytes(public)  # ValueError for a malformed key
    if why := ed25519_refusal(public):
        raise ValueError(why)
    verifier = VerifyKey(public)

    def check(signature: bytes, data: bytes) -> None:
        if len(signature) != _ED25519_SIGNATURE_BYTES:
            raise InvalidSignature("an Ed25519 signature is 64 bytes")
        try:
            verifier.verify(data, signature)
        except BadSignatureError:
            raise InvalidSignature("Ed25519 signature does not verify") from None

    return check


ED25519_ADVICE: Final = (
    "make a new key (`approvalgate keygen`, `ssh-keygen -t ed25519` or `-t ed25519-sk`) "
    "and use its public key"
)


def ed25519_refusal(public: bytes) -> str:
    """Why the 32 bytes ``public`` are no Ed25519 key anyone generated ("" when they are).

    A generated key is a canonically encoded point of the prime-order subgroup (libsodium's
    ``crypto_core_ed25519_is_valid_point``). Refused: a point of small order, for which
    OpenSSL and ``ssh-keygen -Y verify`` accept signatures nobody made; a point with a
    small-order part (A + T), for which the holder of A's private key signs too, so one key
    would be up to eight approvers whose keys look different; a non-canonical encoding (a
    second spelling of a point). Once per key (fifth red-team pass, tests/unit/
    test_ed25519_points.py)."""
    if len(public) == ED25519_PUBLIC_BYTES and crypto_core_ed25519_is_valid_point(public):
        return ""
    return (
        "the key is not an Ed25519 public key anyone generated (a point of small order, "
        "with a small-order part, or not canonically encoded: signatures nobody made verify "
        f"for some, and one private key signs for several); {ED25519_ADVICE}"
    )


def _ed25519_accepts(key: SSlibKey) -> str:
    try:
        public = bytes.fromhex(key.keyval["public"])
    except ValueError:
        return "the Ed25519 key is not hex"
    return ed25519_refusal(public)


def _ed25519_check(key: SSlibKey) -> Check:
    """:func:`ed25519_verify` on the key's public value."""
    return ed25519_verify(bytes.fromhex(key.keyval["public"]))


ED25519: Final = KeyType(
    name="Ed25519",
    keytype="ed25519",
    scheme="ed25519",
    generate=CryptoSigner.generate_ed25519,
    check=_ed25519_check,
    accepts=_ed25519_accepts,
    cli_name="ed25519",
)


def _pem_key(key: SSlibKey) -> object:
    return serialization.load_pem_public_key(key.keyval["public"].encode("ascii"))


def _ecdsa_check(
    curve: type[ec.EllipticCurve], digest: hashes.HashAlgorithm
) -> Callable[[SSlibKey], Check]:
    def build(key: SSlibKey) -> Check:
        public = _pem_key(key)
        if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, curve):
            raise ValueError(f"not a {curve.name} key")
        algorithm = ec.ECDSA(digest)

        def check(sig: bytes, data: bytes) -> None:
            public.verify(sig, data, algorithm)

        return check

    return build


def _ecdsa_accepts(curve: type[ec.EllipticCurve]) -> Callable[[SSlibKey], str]:
    def accepts(key: SSlibKey) -> str:
        public = _pem_key(key)
        if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, curve):
            return f"the key is not on curve {curve.name}"
        return ""

    return accepts


RSA_MIN_BITS: Final = 2048


def _rsa_check(key: SSlibKey) -> Check:
    public = _pem_key(key)
    if not isinstance(public, rsa.RSAPublicKey):
        raise ValueError("not an RSA key")
    # securesystemslib's rsassa-pss-sha256: MGF1(SHA-256), salt length recovered (AUTO)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    digest = hashes.SHA256()

    def check(sig: bytes, data: bytes) -> None:
        public.verify(sig, data, pss, digest)

    return check


def _rsa_accepts(key: SSlibKey) -> str:
    public = _pem_key(key)
    if not isinstance(public, rsa.RSAPublicKey):
        return "the key is not an RSA key"
    if public.key_size < RSA_MIN_BITS:
        return f"RSA keys need at least {RSA_MIN_BITS} bits, this one has {public.key_size}"
    return ""


ECDSA_P256: Final = KeyType(
    name="ECDSA P-256",
    keytype="ecdsa",
    scheme="ecdsa-sha2-nistp256",
    generate=CryptoSigner.generate_ecdsa,
    check=_ecdsa_check(ec.SECP256R1, hashes.SHA256()),
    accepts=_ecdsa_accepts(ec.SECP256R1),
    cli_name="ecdsa-p256",
)


def _generate_p384() -> CryptoSigner:
    private = ec.generate_private_key(ec.SECP384R1())
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))


ECDSA_P384: Final = KeyType(
    name="ECDSA P-384",
    keytype="ecdsa",
    scheme="ecdsa-sha2-nistp384",
    generate=_generate_p384,
    check=_ecdsa_check(ec.SECP384R1, hashes.SHA384()),
    accepts=_ecdsa_accepts(ec.SECP384R1),
    cli_name="ecdsa-p384",
)


def _generate_rsa() -> CryptoSigner:
    private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))


RSA_PSS: Final = KeyType(
    name="RSA-PSS",
    keytype="rsa",
    scheme="rsassa-pss-sha256",
    generate=_generate_rsa,
    check=_rsa_check,
    accepts=_rsa_accepts,
    cli_name="rsa",
)

_TYPES: dict[tuple[str, str], KeyType] = {
    (t.keytype, t.scheme): t for t in (ED25519, ECDSA_P256, ECDSA_P384, RSA_PSS)
}


def register_key_type(key_type: KeyType) -> None:
    """Accept ``key_type`` from now on (public keys, key files, verification)."""
    _TYPES[key_type.keytype, key_type.scheme] = key_type


def unregister_key_type(key_type: KeyType) -> None:
    """Stop accepting ``key_type`` (tests put the table back as they found it)."""
    _TYPES.pop((key_type.keytype, key_type.scheme), None)


def key_type_of(key: SSlibKey) -> KeyType | None:
    """The accepted type of ``key``, or None."""
    return _TYPES.get((key.keytype, key.scheme))


def key_type_named(name: str) -> KeyType:
    """The accepted type called ``name`` or ``cli_name`` (case-insensitive); KeyError if none."""
    for key_type in _TYPES.values():
        if name.lower() in (key_type.name.lower(), key_type.cli_name):
            return key_type
    raise KeyError(name)


def key_types() -> tuple[KeyType, ...]:
    """The accepted types, in registration order."""
    return tuple(_TYPES.values())


def refusal(key: SSlibKey) -> str:
    """Why ``key`` is refused ("" when it is of an accepted type and acceptable)."""
    key_type = key_type_of(key)
    if key_type is None:
        return f"not an {accepted_names()} key"
    return key_type.accepts(key) if key_type.accepts is not None else ""


def accepted_names() -> str:
    """The accepted types for a message: ``Ed25519, ECDSA P-256, ... or RSA-PSS``."""
    names = list(dict.fromkeys(t.family or t.name for t in _TYPES.values()))
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
