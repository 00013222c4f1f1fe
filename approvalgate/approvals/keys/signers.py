"""Signers: what ``approvalgate approve --key REF`` signs with, found by the REF's scheme.

A signer is securesystemslib's :class:`~securesystemslib.signer.Signer` (``sign(payload)``
and ``public_key``), so any signer securesystemslib has (key files, PKCS#11 HSMs, cloud
KMSs) fits once a kind for it is registered. A *signer kind* turns the part of REF after
``SCHEME:`` into a signer; REF without a registered scheme is a key file path.

The core does no I/O: a kind gets the caller's ``read`` function for files the user named.
Kinds that need network or process I/O (HSM, KMS, ssh-agent) are registered from outside
the core, importing their libraries when they load a signer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Final

from cryptography.hazmat.primitives import serialization
from securesystemslib.signer import (
    CryptoSigner,
    Key,
    SecretsHandler,
    Signature,
    Signer,
    SSlibKey,
)

from approvalgate.approvals.errors import RecordError
from approvalgate.approvals.keys import ssh
from approvalgate.approvals.keys.types import (
    ED25519,
    accepted_names,
    key_type_named,
    key_type_of,
    refusal,
)
from approvalgate.approvals.keys.verifier import SignatureVerifier

Read = Callable[[str], bytes]
"""Reads a file the user named (the caller's I/O and error messages)."""


@dataclass(frozen=True)
class SignerKind:
    """One way to name a signer: ``SCHEME:LOCATION``."""

    scheme: str
    description: str
    load: Callable[[str, Read], Signer]
    """``(LOCATION, read) -> Signer``; raises an ApprovalgateError the user can act on."""
    load_with_key: Callable[[str, Read, SSlibKey], Signer] | None = None
    """``(LOCATION, read, public_key) -> Signer`` for a kind that can be told its public key
    instead of fetching it (a KMS, Vault: ``--public-key FILE``); None: the kind reads the
    key where the private key is (a file, a PKCS#11 token) and the one given must match."""


def signer_from_pem(pem: bytes, source: str = "key") -> CryptoSigner:
    """A signer for an unencrypted PEM (PKCS#8) private key of an accepted type."""
    if pem.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
        raise RecordError(
            f"{source} is an OpenSSH private key: SSH keys sign through the ssh-agent",
            advice=f"add it to your agent (ssh-add {source}) and sign with "
            f"--signer ssh-agent:{source}.pub",
        )
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise RecordError(
            f"{source} is not an unencrypted PEM private key: {exc}",
            advice="create one with `approvalgate keygen NAME`",
        ) from exc
    try:
        public = SSlibKey.from_crypto(private.public_key())
    except ValueError:
        public = None
    names = accepted_names()
    if public is None or key_type_of(public) is None:
        raise RecordError(f"{source} is not an {names} key", advice=f"approval keys are {names}")
    if why := refusal(public):
        raise RecordError(f"{source}: {why}", advice=f"approval keys are {names}")
    return CryptoSigner(private, public)


def _load_file(path: str, read: Read) -> Signer:
    # named as the CLI's Path names it (``./alice.key`` is ``alice.key``); no file access
    return signer_from_pem(read(path), str(PurePath(path)))


FILE: Final = SignerKind(
    scheme="file",
    description="a PEM private key file (`approvalgate keygen`); also a bare path",
    load=_load_file,
)

_KINDS: dict[str, SignerKind] = {FILE.scheme: FILE}


def register_signer_kind(kind: SignerKind) -> None:
    """Resolve ``kind.scheme:...`` to ``kind`` from now on."""
    _KINDS[kind.scheme] = kind


def unregister_signer_kind(kind: SignerKind) -> None:
    """Forget ``kind`` (tests put the registry back as they found it); the file kind stays."""
    if kind.scheme != FILE.scheme:
        _KINDS.pop(kind.scheme, None)


def signer_kinds() -> tuple[SignerKind, ...]:
    """The registered kinds, file first."""
    return tuple(_KINDS.values())


def signer_kind_of(ref: str) -> tuple[SignerKind, str]:
    """The kind ``ref`` names and its LOCATION (a key file path for the file kind)."""
    scheme, colon, location = ref.partition(":")
    kind = _KINDS.get(scheme) if colon else None
    if kind is None:
        return FILE, ref
    return kind, location


def load_signer(ref: str, read: Read, public_key: SSlibKey | None = None) -> Signer:
    """The signer ``ref`` names: ``SCHEME:LOCATION`` of a registered kind, else a key file.

    ``public_key``, when given, is the key the signer must have: a kind with
    ``load_with_key`` signs with it without fetching it; any other kind reads its own and
    it must be this one.
    """
    kind, location = signer_kind_of(ref)
    if public_key is not None and kind.load_with_key is not None:
        return CheckedSigner(kind.load_with_key(location, read, public_key), ref)
    signer = kind.load(location, read)
    if public_key is not None and signer.public_key.keyid != public_key.keyid:
        raise RecordError(
            f"{ref} holds key {signer.public_key.keyid}, not the public key given "
            f"({public_key.keyid})",
            advice="pass the public key of this signer, or leave --public-key out: "
            f"{kind.scheme} signers read their own",
        )
    return CheckedSigner(signer, ref)


class CheckedSigner(Signer):
    """A loaded signer whose every signature is checked with the public key it shows before
    anyone uses it (fifth red-team pass): a PKCS#11 token whose public key object and
    private key share an id but are two pairs, a KMS key version other than the one the
    Approver holds, an agent or a service that misbehaves. Without this the approver was
    told "signed" and the record never counted. The check is :class:`SignatureVerifier`'s,
    the gate's own."""

    def __init__(self, inner: Signer, ref: str, *, user_verification: bool = False) -> None:
        self._inner = inner
        self._ref = ref
        self._verifier = SignatureVerifier(0)
        self._user_verification = user_verification

    def requiring_user_verification(self) -> CheckedSigner:
        """This signer, refusing any signature whose security key flags do not say the
        user was verified (sixth red-team pass): the Approver's key says
        ``userVerification: required``, and a signature without it would never count."""
        return CheckedSigner(self._inner, self._ref, user_verification=True)

    @property
    def public_key(self) -> Key:
        return self._inner.public_key

    def sign(self, payload: bytes) -> Signature:
        signature = self._inner.sign(payload)
        public = self._inner.public_key
        if isinstance(public, SSlibKey) and self._verifier.first_signer(
            payload, {signature.keyid: signature}, [public]
        ):
            if self._user_verification and not ssh.user_verified(
                bytes.fromhex(signature.signature)
            ):
                what = (
                    "the security key signed without user verification (no PIN)"
                    if ssh.is_security_key(public.keytype)
                    else f"its {public.keytype} signatures cannot show user verification"
                )
                raise RecordError(
                    f"{self._ref}: {what}, and the Approver's key says userVerification: "
                    "required: the record would not count",
                    advice="nothing was written. Make a key that asks for its PIN every "
                    "time (`ssh-keygen -t ed25519-sk -O verify-required`), put its .pub line "
                    "in your Approver (with userVerification: required), load it with "
                    "`ssh-add` and sign again",
                )
            return signature
        raise RecordError(
            f"{self._ref}: its signature does not verify with its public key "
            f"{public.keyid[:12]}: it signs with another key than the public key it shows",
            advice="nothing was written. A PKCS#11 token: its public and private key objects "
            "with this id must be one pair (list them: `pkcs11-tool --module MODULE "
            "--list-objects --login`); a KMS: name the key version the Approver's public "
            "key is of",
        )

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Key, secrets_handler: SecretsHandler | None = None
    ) -> CheckedSigner:
        raise NotImplementedError("load it with load_signer")


def generate(type_name: str = ED25519.name) -> CryptoSigner:
    """A new key pair of an accepted type, as a signer (its ``private_bytes`` is the PEM)."""
    return key_type_named(type_name).generate()
