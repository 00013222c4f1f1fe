"""Keys and signers: the one room for key types, signing and signature checks.

- :mod:`~approvals.keys.types`: the accepted key types (today Ed25519), one table;
- :mod:`~approvals.keys.public`: approvers' public keys, PEM <-> securesystemslib ``Key``;
- :mod:`~approvals.keys.signers`: signers (securesystemslib ``Signer``) found by a
  reference's scheme (today key files), and key generation;
- :mod:`~approvals.keys.verifier`: the only code that checks a signature, with the
  verified-signature table a loaded bundle owns.

A new key type is one :func:`register_key_type`; a new way to reach a private key (HSM,
KMS, ssh-agent) is one :func:`register_signer_kind`. Nothing outside this room names a
key type. Pure like the rest of the core: no network or process I/O here.
"""

from __future__ import annotations

from securesystemslib.signer import Signer

from approvalgate.approvals.keys.public import load_public_key, public_key_pem
from approvalgate.approvals.keys.signers import (
    FILE,
    Read,
    SignerKind,
    generate,
    load_signer,
    register_signer_kind,
    signer_from_pem,
    signer_kinds,
    unregister_signer_kind,
)
from approvalgate.approvals.keys.types import (
    ED25519,
    KeyType,
    accepted_names,
    key_type_of,
    register_key_type,
    unregister_key_type,
)
from approvalgate.approvals.keys.verifier import SignatureVerifier

__all__ = [
    "ED25519",
    "FILE",
    "KeyType",
    "Read",
    "SignatureVerifier",
    "Signer",
    "SignerKind",
    "accepted_names",
    "generate",
    "key_type_of",
    "load_public_key",
    "load_signer",
    "public_key_pem",
    "register_key_type",
    "register_signer_kind",
    "signer_from_pem",
    "signer_kinds",
    "unregister_key_type",
    "unregister_signer_kind",
]
