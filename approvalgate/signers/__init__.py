"""Signers that reach a private key outside a key file: PKCS#11 tokens and HSMs, cloud KMSs
and Vault, and the user's ssh-agent.

Each module here defines one :class:`approvals.keys.SignerKind` (``SCHEME:LOCATION``) and
imports its library only when a signer is loaded, so the CLI starts as fast without them.
:func:`register_all` registers every kind with the core's registry; the CLI calls it before
it resolves ``--signer REF``. The core never imports this package: it does process and
network I/O (a PKCS#11 module, a socket to the agent, HTTPS to a KMS).
"""

from __future__ import annotations

from collections.abc import Callable

from securesystemslib.signer import SSlibKey

from approvalgate.approvals import keys
from approvalgate.signers import kms, pkcs11, sshagent

_KINDS: list[keys.SignerKind] = [pkcs11.HSM, *kms.KINDS, sshagent.KIND]

Importer = Callable[[str], tuple[SSlibKey, str]]
"""``LOCATION -> (public key, where the private key lives)`` (``keygen --import``)."""

_IMPORTERS: dict[str, Importer] = {
    pkcs11.SCHEME: pkcs11.import_key,
    **{kind.scheme: kms.importer(kind.scheme) for kind in kms.KINDS},
}


def register_all() -> tuple[keys.SignerKind, ...]:
    """Register every signer kind of this package (idempotent); the kinds, file first."""
    for kind in _KINDS:
        keys.register_signer_kind(kind)
    return keys.signer_kinds()


def import_public_key(ref: str, read: keys.Read) -> tuple[SSlibKey, str]:
    """The public key of the signer ``ref`` names, and where its private key lives, for
    ``keygen --import``: read from the token or the KMS, without signing anything."""
    register_all()
    kind, location = keys.signer_kind_of(ref)
    importer = _IMPORTERS.get(kind.scheme)
    if importer is not None:
        return importer(location)
    signer = keys.load_signer(ref, read)
    public = signer.public_key
    if not isinstance(public, SSlibKey):
        raise TypeError(f"{ref}: {type(public).__name__} is not an SSlibKey")
    if kind.scheme == "ssh-agent":
        return public, "in your ssh-agent or on the security key it holds, never exported"
    return public, f"where {ref} names it ({kind.description})"
