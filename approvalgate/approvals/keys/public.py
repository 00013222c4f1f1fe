"""Approvers' public keys: read from PEM into securesystemslib ``Key`` objects, and back.

:func:`load_public_key` is the only reader of an Approver document's ``publicKey`` (the
compiler) and of a bundle's (the webhook, ``verify``, ``explain``, the audit); it accepts
the types of :mod:`approvals.keys.types`, as PEM SubjectPublicKeyInfo.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from securesystemslib.signer import SSlibKey

from approvalgate.approvals.keys.types import accepted_names, key_type_of, refusal


def load_public_key(pem: str) -> SSlibKey:
    """Parse a public key in PEM (SubjectPublicKeyInfo). Raises ValueError.

    The key gets securesystemslib's default scheme and key id for its type.
    """
    public = serialization.load_pem_public_key(pem.encode("ascii"))
    try:
        key = SSlibKey.from_crypto(public)
    except ValueError:
        key = None
    if key is None or key_type_of(key) is None:
        raise ValueError(f"not an {accepted_names()} public key")
    if why := refusal(key):
        raise ValueError(why)
    return key


def public_key_pem(key: SSlibKey) -> str:
    """The key as PEM SubjectPublicKeyInfo (the form a bundle carries)."""
    # securesystemslib keeps Ed25519 keys as raw hex and every other type as PEM; it has
    # no public API for the conversion (``SSlibKey._crypto_key`` is private).
    public: PublicKeyTypes
    if key.keytype == "ed25519":
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key.keyval["public"]))
    else:
        public = serialization.load_pem_public_key(key.keyval["public"].encode("ascii"))
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
