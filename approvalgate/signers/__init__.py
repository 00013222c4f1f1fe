"""Signers that reach a private key outside a key file: PKCS#11 tokens and HSMs, cloud KMSs
and Vault, and the user's ssh-agent.

Each module here defines one :class:`approvals.keys.SignerKind` (``SCHEME:LOCATION``) and
imports its library only when a signer is loaded, so the CLI starts as fast without them.
:func:`register_all` registers every kind with the core's registry; the CLI calls it before
it resolves ``--signer REF``. The core never imports this package: it does process and
network I/O (a PKCS#11 module, a socket to the agent, HTTPS to a KMS).
"""

from __future__ import annotations

from approvalgate.approvals import keys
from approvalgate.signers import sshagent

_KINDS: list[keys.SignerKind] = [sshagent.KIND]


def register_all() -> tuple[keys.SignerKind, ...]:
    """Register every signer kind of this package (idempotent); the kinds, file first."""
    for kind in _KINDS:
        keys.register_signer_kind(kind)
    return keys.signer_kinds()
