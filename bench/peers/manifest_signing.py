"""Sign an AgentRun the way Kyverno's `validate.manifests` verifies it (issue 18).

Kyverno v1.19.1 hands the admitted object to sigstore/k8s-manifest-sigstore
(`k8smanifest.VerifyResource`, blob mode: no `resourceBundleRef` annotation). What it reads,
in the default annotation domain `cosign.sigstore.dev` (a policy's `annotationDomain`
replaces it):

- `<domain>/message`: base64 of the gzip of the signed YAML (the manifest without the
  signature annotations); the verifier gunzips it and looks in it for the manifest of the
  same kind, name and namespace, then diffs it against the admitted object, ignoring
  server-set fields (uid, creationTimestamp, managedFields, finalizers, status, ...) and the
  signature annotations themselves;
- `<domain>/signature`, `<domain>/signature_1`, `<domain>/signature_2`, ...: one base64
  signature each over the gunzipped message bytes (cosign blob signatures: for an ECDSA
  P-256 key, ASN.1 DER over SHA-256, which is what `cryptography` produces). All share the
  one message (`kubectl sigstore sign --append-signature` writes them this way).

An attestor entry (one public key) is satisfied when ANY signature verifies with its key;
`count: 2` over two entries, one key each, therefore needs one good signature per key.
Without a certificate or bundle annotation the signature is checked offline (cosign's
IgnoreTlog): no Rekor, no network.
"""

from __future__ import annotations

import base64
import copy
import gzip
from collections.abc import Sequence
from typing import Any

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

DOMAIN = "cosign.sigstore.dev"


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key (what `cosign generate-key-pair` makes)."""
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    """The key's public half as a PEM `PUBLIC KEY` block (an attestor's `publicKeys`)."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def message_key(domain: str = DOMAIN) -> str:
    return f"{domain}/message"


def signature_key(index: int, domain: str = DOMAIN) -> str:
    """`<domain>/signature` for the first, `<domain>/signature_<i>` after it."""
    return f"{domain}/signature" if index == 0 else f"{domain}/signature_{index}"


def _unsigned(manifest: dict[str, Any], domain: str) -> dict[str, Any]:
    """The manifest without annotations of `domain` (what the message holds)."""
    clean = copy.deepcopy(manifest)
    metadata = clean.setdefault("metadata", {})
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if not k.startswith(domain)
    }
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    return clean


def sign(
    manifest: dict[str, Any],
    keys: Sequence[ec.EllipticCurvePrivateKey],
    *,
    domain: str = DOMAIN,
) -> dict[str, Any]:
    """A copy of `manifest` carrying the message and one signature per key."""
    signed = _unsigned(manifest, domain)
    raw = yaml.safe_dump(signed, sort_keys=True).encode()
    annotations = dict(signed["metadata"].get("annotations") or {})
    annotations[message_key(domain)] = base64.b64encode(gzip.compress(raw, mtime=0)).decode()
    for index, key in enumerate(keys):
        signature = key.sign(raw, ec.ECDSA(hashes.SHA256()))
        annotations[signature_key(index, domain)] = base64.b64encode(signature).decode()
    signed["metadata"]["annotations"] = annotations
    return signed


def verify(
    manifest: dict[str, Any],
    public_keys: Sequence[ec.EllipticCurvePublicKey],
    *,
    domain: str = DOMAIN,
) -> int:
    """How many of `public_keys` have a signature that verifies over the message (a local
    check of what `sign` wrote; Kyverno also diffs the message against the object)."""
    annotations = manifest.get("metadata", {}).get("annotations") or {}
    raw = gzip.decompress(base64.b64decode(annotations[message_key(domain)]))
    signatures = []
    index = 0
    while signature_key(index, domain) in annotations:
        signatures.append(base64.b64decode(annotations[signature_key(index, domain)]))
        index += 1
    verified = 0
    for public in public_keys:
        for signature in signatures:
            try:
                public.verify(signature, raw, ec.ECDSA(hashes.SHA256()))
            except InvalidSignature:
                continue
            verified += 1
            break
    return verified
