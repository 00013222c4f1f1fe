"""Keys and signers: the one room for key types, signing and signature checks.

- :mod:`~approvals.keys.types`: the accepted key types (Ed25519, ECDSA P-256/P-384,
  RSA-PSS; SSH keys from :mod:`~approvals.keys.ssh`), one table;
- :mod:`~approvals.keys.public`: approvers' public keys, PEM or OpenSSH line <->
  securesystemslib ``Key``;
- :mod:`~approvals.keys.ssh`: SSH keys (OpenSSH lines) and their SSHSIG signatures;
- :mod:`~approvals.keys.signers`: signers (securesystemslib ``Signer``) found by a
  reference's scheme (today key files), and key generation;
- :mod:`~approvals.keys.verifier`: the only code that checks a signature, with the
  verified-signature table a loaded bundle owns.

A new key type is one :func:`register_key_type`; a new way to reach a private key (HSM,
KMS, ssh-agent) is one :func:`register_signer_kind`. Nothing outside this room names a
key type. Pure like the rest of the core: no network or process I/O here.
"""

from __future__ import annotations

from securesystemslib.signer import Signer, SSlibKey

from approvalgate.approvals.keys import ssh
from approvalgate.approvals.keys.public import (
    accepted_forms,
    load_public_key,
    public_key_pem,
    public_key_text,
)
from approvalgate.approvals.keys.signers import (
    FILE,
    CheckedSigner,
    Read,
    SignerKind,
    generate,
    load_signer,
    register_signer_kind,
    signer_from_pem,
    signer_kind_of,
    signer_kinds,
    unregister_signer_kind,
)
from approvalgate.approvals.keys.types import (
    ECDSA_P256,
    ECDSA_P384,
    ED25519,
    RSA_PSS,
    KeyType,
    accepted_names,
    key_type_named,
    key_type_of,
    key_types,
    refusal,
    register_key_type,
    unregister_key_type,
)
from approvalgate.approvals.keys.verifier import SignatureVerifier

__all__ = [
    "ECDSA_P256",
    "ECDSA_P384",
    "ED25519",
    "FILE",
    "RSA_PSS",
    "CheckedSigner",
    "KeyType",
    "Read",
    "SSlibKey",
    "SignatureVerifier",
    "Signer",
    "SignerKind",
    "accepted_forms",
    "accepted_names",
    "generate",
    "key_type_named",
    "key_type_of",
    "key_types",
    "load_public_key",
    "load_signer",
    "public_key_pem",
    "public_key_text",
    "refusal",
    "register_key_type",
    "register_signer_kind",
    "signer_from_pem",
    "signer_kind_of",
    "signer_kinds",
    "ssh",
    "unregister_key_type",
    "unregister_signer_kind",
]
