"""The key types approvers may hold: one table, read by every other module of the room.

A key type is named by securesystemslib's ``(keytype, scheme)`` pair, the pair
``SSlibKey.from_crypto`` gives a ``cryptography`` key by default. Public keys in Approver
documents, private key files and key generation all accept exactly the types listed here,
so supporting a new type (ECDSA, RSA: issue 17) is one :func:`register_key_type` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.signer import CryptoSigner, SSlibKey

Check = Callable[[bytes, bytes], None]
"""Verifies ``(signature, data)`` against one key; raises on a bad signature."""


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


def _ed25519_check(key: SSlibKey) -> Check:
    """``cryptography``'s Ed25519 verify on a key object built once (raises InvalidSignature)."""
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(key.keyval["public"])).verify


ED25519: Final = KeyType(
    name="Ed25519",
    keytype="ed25519",
    scheme="ed25519",
    generate=CryptoSigner.generate_ed25519,
    check=_ed25519_check,
)

_TYPES: dict[tuple[str, str], KeyType] = {(ED25519.keytype, ED25519.scheme): ED25519}


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
    """The accepted type called ``name`` (case-insensitive); KeyError if none."""
    for key_type in _TYPES.values():
        if key_type.name.lower() == name.lower():
            return key_type
    raise KeyError(name)


def accepted_names() -> str:
    """The accepted types for a message: ``Ed25519`` (``Ed25519 or ECDSA P-256``)."""
    return " or ".join(t.name for t in _TYPES.values())
