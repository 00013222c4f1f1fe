"""The one place signatures are checked: which of some keys made one of some signatures.

:class:`SignatureVerifier` is owned (through :class:`approvals.records.Verifier`) by a
loaded bundle; every verdict that depends on a signature (the webhook, ``verify``,
``explain``, the audit) reaches it through :func:`approvals.decide.decide`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError
from securesystemslib.signer import Signature, SSlibKey

from approvalgate.approvals.keys.types import Check, key_type_of

_Identity = tuple[str, str, str]
"""What a key verifies with: securesystemslib's keytype, scheme and public key value."""


class SignatureVerifier:
    """Checks signatures over exact bytes, remembering the successes (bounded LRU).

    The table is keyed by the exact bytes checked: the key (type, scheme and public key
    value), the signature and the signed data. Only successes are stored: a failure
    raises inside the cached function and ``functools.lru_cache`` never stores a raise,
    so forged or tampered signatures are checked again every time and cannot evict
    anything; only a holder of a private key can add an entry. ``max_entries=0`` turns
    the table off (the same code, every signature checked).

    Each key's check is built once: the key type's own (``cryptography``'s Ed25519 verify
    on a key object) or securesystemslib's ``verify_signature``.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._checks: dict[_Identity, Check] = {}
        self._verify_cached = functools.lru_cache(maxsize=max_entries)(self._verify_or_raise)

    def first_signer(
        self, data: bytes, signatures: Mapping[str, Signature], keys: Iterable[SSlibKey]
    ) -> SSlibKey | None:
        """The first key among ``keys`` that made one of ``signatures`` over ``data``.

        A signature's key id only orders the attempts (hinted key first); it is never
        trusted by itself.
        """
        found = self.first_signature(data, signatures, keys)
        return None if found is None else found[0]

    def first_signature(
        self, data: bytes, signatures: Mapping[str, Signature], keys: Iterable[SSlibKey]
    ) -> tuple[SSlibKey, bytes] | None:
        """:meth:`first_signer` and the signature it made (its bytes: a security key's
        carry flags the caller may require, ``bundle.ApproverKey.lacks_user_verification``)."""
        ordered = sorted(keys, key=lambda k: k.keyid not in signatures)
        for signature in signatures.values():
            try:
                sig = bytes.fromhex(signature.signature)
            except ValueError:
                continue
            for key in ordered:
                if self._verifies(key, sig, data):
                    return key, sig
        return None

    def cache_info(self) -> Any:
        """``functools.lru_cache``'s hits, misses and size of the table."""
        return self._verify_cached.cache_info()

    def _verifies(self, key: SSlibKey, sig: bytes, data: bytes) -> bool:
        identity = (key.keytype, key.scheme, key.keyval["public"])
        try:
            if identity not in self._checks:
                self._checks[identity] = _check_for(key)
            verified: bool = self._verify_cached(identity, sig, data)
        except (InvalidSignature, UnverifiedSignatureError, VerificationError, ValueError):
            return False
        return verified

    def _verify_or_raise(self, identity: _Identity, sig: bytes, data: bytes) -> bool:
        """True, or a raise (which lru_cache does not store): only successes are cached."""
        self._checks[identity](sig, data)
        return True


def _check_for(key: SSlibKey) -> Check:
    key_type = key_type_of(key)
    if key_type is not None and key_type.check is not None:
        return key_type.check(key)

    def check(sig: bytes, data: bytes) -> None:
        key.verify_signature(Signature(key.keyid, sig.hex()), data)

    return check
