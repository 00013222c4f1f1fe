"""Signed bundles: who may change the rules, and that the rules never go back.

A compiled ``bundle.json`` decides who may approve; whoever can edit the ConfigMap holding
it (or the values Argo CD syncs) would otherwise change the rules. So the bundle is signed
and the webhook, the controller and ``verify --bundle`` open it only through
:func:`open_bundle`, against a :class:`BundleTrust` pinned where the bundle's editors cannot
reach (the chart puts it in the pod spec: see docs/signing.md).

The signatures live beside the bundle in ``bundle.sig.json`` (:data:`SIGNATURES_KIND`): DSSE
signatures over the PAE of :data:`PAYLOAD_TYPE` and the exact bytes of ``bundle.json``, made
by any approvalgate signer (key file, PKCS#11, KMS, ssh-agent) and checked by the same
:class:`approvals.keys.SignatureVerifier` as approval records. A bundle is opened only when

- signatures from at least ``threshold`` distinct pinned keys (distinct private keys: one
  key pinned as PEM and as OpenSSH line counts once) verify over its bytes (a
  missing signatures file, an empty list, a signature by another key, one over other bytes:
  each refused with its own reason; a key id is only a hint, never trusted);
- its ``revision`` is at least the pinned ``min_revision`` and at least the revision in
  force (a rollback is refused), and a revision in force is never reused for other content.

Unsigned bundles are opened only with ``allow_unsigned`` and no pinned keys: an explicit
development setting the callers announce loudly. Pinned keys with ``allow_unsigned`` is a
configuration error, so "no key configured" can never mean "signature not checked"
(the trap of OPA's GHSA-g2pf-6v5v-qcc8). Pure: bytes in, a :class:`Bundle` or a
:class:`BundleRefused` out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from securesystemslib.dsse import Envelope
from securesystemslib.signer import Signature, Signer, SSlibKey

from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.errors import BundleError, UsageError
from approvalgate.approvals.keys.public import distinct_keys, key_identity, load_public_key
from approvalgate.approvals.keys.verifier import SignatureVerifier

API_VERSION: Final = "gates.proompteng.ai/v1alpha1"
SIGNATURES_KIND: Final = "BundleSignatures"
PAYLOAD_TYPE: Final = "application/vnd.gates.proompteng.ai.bundle+json"
SIGNATURES_FILE: Final = "bundle.sig.json"
"""The signatures' file name beside ``bundle.json`` (compiler output, ConfigMap key)."""

# Why a bundle is refused: the ``reason`` label of approvalgate_bundle_rejected_total.
UNSIGNED: Final = "unsigned"
STRIPPED: Final = "signature-stripped"
MALFORMED: Final = "signatures-malformed"
OTHER_PAYLOAD: Final = "signed-other-content"
UNTRUSTED: Final = "untrusted-key"
INVALID_SIGNATURE: Final = "signature-invalid"
THRESHOLD: Final = "below-threshold"
BELOW_MINIMUM: Final = "below-min-revision"
ROLLBACK: Final = "rollback"
BELOW_FLOOR: Final = "below-floor"  # approvals.bundle_floor: below the cluster's floor
FLOOR_UNKNOWN: Final = "floor-unknown"  # approvals.bundle_floor: the floor cannot be read
REUSED: Final = "revision-reused"
OTHER_ENVIRONMENT: Final = "other-environment"
INVALID: Final = "invalid-bundle"
REASONS: Final = (
    UNSIGNED,
    STRIPPED,
    MALFORMED,
    OTHER_PAYLOAD,
    UNTRUSTED,
    INVALID_SIGNATURE,
    THRESHOLD,
    BELOW_MINIMUM,
    ROLLBACK,
    BELOW_FLOOR,
    FLOOR_UNKNOWN,
    REUSED,
    OTHER_ENVIRONMENT,
    INVALID,
)


class BundleRefused(BundleError):
    """A bundle that must not be enforced; :attr:`reason` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str, *, advice: str = "") -> None:
        super().__init__(message, advice=advice)
        self.reason = reason


@dataclass(frozen=True)
class BundleTrust:
    """The pinned bundle-signing keys, how many must sign, and the lowest revision."""

    keys: tuple[SSlibKey, ...] = ()
    threshold: int = 1
    min_revision: int = 0
    allow_unsigned: bool = False
    environment: str = ""
    """The environment this process enforces ("" : any). Pinned with the keys: the same key
    may sign every environment's bundle, and dev's signed ``enforcement: warn`` bundle, at
    a higher revision, must not open in prod."""

    def __post_init__(self) -> None:
        if self.keys and self.allow_unsigned:
            raise UsageError(
                "bundle-signing keys are pinned and unsigned bundles are allowed: choose one",
                advice="drop the allow-unsigned setting (it is for development without keys)",
            )
        if not self.keys and not self.allow_unsigned:
            raise UsageError(
                "no bundle-signing key is pinned: a bundle's signature could not be checked",
                advice="pin the public keys that sign bundles (chart: bundleSigning.publicKeys; "
                "CLI: --bundle-key FILE), or, for development only, allow unsigned bundles "
                "(bundleSigning.allowUnsigned / --allow-unsigned-bundle)",
            )
        distinct = distinct_keys(self.keys)
        if self.keys and not 1 <= self.threshold <= distinct:
            raise UsageError(
                f"bundle-signing threshold {self.threshold} needs between 1 and {distinct} "
                "(the distinct pinned keys: one key pinned as PEM and as OpenSSH line is one)",
            )
        if self.min_revision < 0:
            raise UsageError(f"minimum bundle revision {self.min_revision} is negative")

    @property
    def signed(self) -> bool:
        return bool(self.keys)

    def describe(self) -> str:
        if not self.keys:
            return (
                "UNSIGNED bundles allowed (a development setting: whoever can edit the bundle "
                "changes the rules)"
            )
        names = ", ".join(k.keyid[:12] for k in self.keys)
        return f"{self.threshold} of {len(self.keys)} pinned keys ({names})"


def trust_from_texts(
    texts: Iterable[tuple[str, str]],
    *,
    threshold: int = 1,
    min_revision: int = 0,
    allow_unsigned: bool = False,
    environment: str = "",
) -> BundleTrust:
    """A trust from ``(source, public key text)`` pairs (PEM, or what load_public_key reads)."""
    keys = []
    for source, text in texts:
        try:
            keys.append(load_public_key(text))
        except ValueError as exc:
            raise UsageError(f"{source}: not a bundle-signing public key: {exc}") from exc
    return BundleTrust(tuple(keys), threshold, min_revision, allow_unsigned, environment)


@dataclass(frozen=True, kw_only=True)
class TrustFlags:
    """Which bundles a process enforces, as its command line said (the webhook's and the
    controller's same ``--bundle-key``, ``--bundle-threshold``, ``--bundle-min-revision``,
    ``--bundle-environment``, ``--allow-unsigned-bundle`` and ``--bundle-signatures``): the
    pinned keys' texts, how many must sign, the lowest revision, the environment ("": any);
    unsigned bundles only with ``allow_unsigned_bundle``. A base of their configurations."""

    if TYPE_CHECKING:
        bundle: Path  # the subclass's own (positional) field

    bundle_keys: tuple[str, ...] = ()
    bundle_threshold: int = 1
    bundle_min_revision: int = 0
    bundle_environment: str = ""  # "": any environment
    allow_unsigned_bundle: bool = False
    bundle_signatures: Path | None = None  # None: bundle.sig.json beside the bundle
    bundle_floor: str = ""
    """``NAMESPACE/NAME`` of the ConfigMap holding the revision floor (approvals.bundle_floor;
    "": none, the pinned minimum alone)."""

    def trust(self) -> BundleTrust:
        """The pinned trust; UsageError (exit 2) when nothing is pinned nor unsigned allowed."""
        return trust_from_texts(
            (("--bundle-key", text) for text in self.bundle_keys),
            threshold=self.bundle_threshold,
            min_revision=self.bundle_min_revision,
            environment=self.bundle_environment,
            allow_unsigned=self.allow_unsigned_bundle,
        )

    @property
    def signatures_path(self) -> Path:
        """Where the bundle's signatures are read: ``bundle_signatures``, else beside it."""
        if self.bundle_signatures is not None:
            return Path(self.bundle_signatures)
        return Path(self.bundle).parent / SIGNATURES_FILE


def pae(bundle_bytes: bytes) -> bytes:
    """What a bundle signature signs: DSSE's PAE of :data:`PAYLOAD_TYPE` and the bytes."""
    return Envelope(bundle_bytes, PAYLOAD_TYPE, {}).pae()


def sign_bundle(bundle_bytes: bytes, signers: Sequence[Signer]) -> dict[str, Any]:
    """The signatures document for ``bundle_bytes``, one signature per signer."""
    data = pae(bundle_bytes)
    signatures = []
    for signer in signers:
        signature = signer.sign(data)
        signatures.append({"keyid": signature.keyid, "sig": signature.signature})
    return signatures_document(bundle_bytes, signatures)


def signatures_document(
    bundle_bytes: bytes, signatures: Sequence[Mapping[str, str]]
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": SIGNATURES_KIND,
        "payloadType": PAYLOAD_TYPE,
        "payloadSha256": hashlib.sha256(bundle_bytes).hexdigest(),
        "signatures": sorted(
            ({"keyid": s["keyid"], "sig": s["sig"]} for s in signatures),
            key=lambda s: (s["keyid"], s["sig"]),
        ),
    }


def dump_signatures(document: Mapping[str, Any]) -> str:
    """The canonical text of a signatures document (sorted keys, final newline)."""
    return json.dumps(document, sort_keys=True, indent=2) + "\n"


def signatures_of(text: bytes | str | None, source: str = SIGNATURES_FILE) -> list[Signature]:
    """The signatures of a signatures document; a refusal when it is malformed or empty."""
    if text is None or not text.strip():
        raise BundleRefused(
            UNSIGNED,
            f"{source} is missing: the bundle is not signed",
            advice="sign it with `approvalgate compile --sign REF` and deploy bundle.sig.json "
            "with it",
        )
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BundleRefused(MALFORMED, f"{source} is not valid JSON: {exc}") from exc
    ok = (
        isinstance(obj, dict)
        and obj.get("apiVersion") == API_VERSION
        and obj.get("kind") == SIGNATURES_KIND
        and obj.get("payloadType") == PAYLOAD_TYPE
        and isinstance(obj.get("signatures"), list)
        and all(
            isinstance(s, dict)
            and set(s) == {"keyid", "sig"}
            and all(isinstance(v, str) for v in s.values())
            for s in obj["signatures"]
        )
    )
    if not ok:
        raise BundleRefused(
            MALFORMED,
            f"{source} is not a {SIGNATURES_KIND} document of payload type {PAYLOAD_TYPE}",
        )
    if not obj["signatures"]:
        raise BundleRefused(
            STRIPPED, f"{source} holds no signature: the bundle's signatures were stripped"
        )
    return [Signature(s["keyid"], s["sig"]) for s in obj["signatures"]]


def signers_of(
    bundle_bytes: bytes, signatures: Sequence[Signature], keys: Sequence[SSlibKey]
) -> list[SSlibKey]:
    """The distinct keys among ``keys`` that made one of ``signatures`` over the bytes.

    Distinct as private keys (:func:`approvals.keys.public.key_identity`), not key ids: one
    key pinned in two forms (PEM and OpenSSH line) signs for both and is one signer."""
    data = pae(bundle_bytes)
    verifier = SignatureVerifier(0)
    found: dict[bytes, SSlibKey] = {}
    for signature in signatures:
        signer = verifier.first_signer(data, {signature.keyid: signature}, keys)
        if signer is not None:
            found.setdefault(key_identity(signer), signer)
    return list(found.values())


def check_signatures(
    bundle_bytes: bytes, signatures_text: bytes | str | None, trust: BundleTrust, source: str
) -> list[SSlibKey]:
    """The pinned keys that signed; a :class:`BundleRefused` below the threshold."""
    signatures = signatures_of(signatures_text, f"{source} signatures")
    signed = signers_of(bundle_bytes, signatures, trust.keys)
    if len(signed) >= trust.threshold:
        return signed
    pinned = {k.keyid for k in trust.keys}
    document = json.loads(signatures_text or "{}")
    if document.get("payloadSha256") != hashlib.sha256(bundle_bytes).hexdigest():
        reason, why = OTHER_PAYLOAD, "the signatures are for other content than this bundle"
    elif signed:
        reason = THRESHOLD
        why = f"signed by {len(signed)} of the pinned keys, {trust.threshold} required"
    elif not any(s.keyid in pinned for s in signatures):
        reason, why = UNTRUSTED, "signed by keys that are not pinned"
    else:
        reason, why = INVALID_SIGNATURE, "no signature verifies with a pinned key"
    raise BundleRefused(
        reason,
        f"{source} is refused: {why}",
        advice="sign the bundle with the pinned keys (`approvalgate compile --sign REF`); "
        "the bundle in force stays",
    )


def open_bundle(
    bundle_bytes: bytes,
    signatures_text: bytes | str | None,
    trust: BundleTrust,
    *,
    in_force: Bundle | None = None,
    source: str = "bundle",
) -> Bundle:
    """The bundle to enforce, or a :class:`BundleRefused` (the one in force then stays)."""
    if trust.signed:
        check_signatures(bundle_bytes, signatures_text, trust, source)
    try:
        bundle = parse_bundle_text(bundle_bytes, source)
    except BundleError as exc:
        raise BundleRefused(INVALID, exc.message, advice=exc.advice) from exc
    if trust.environment and bundle.environment != trust.environment:
        raise BundleRefused(
            OTHER_ENVIRONMENT,
            f"{source} is the bundle of environment {bundle.environment!r}, this process "
            f"enforces {trust.environment!r}",
            advice="deploy the bundle compiled for this environment; the bundle in force stays",
        )
    check_revision(bundle, trust, in_force, source)
    return bundle


def check_revision(
    bundle: Bundle, trust: BundleTrust, in_force: Bundle | None, source: str
) -> None:
    """Refuse a revision below the pinned minimum, below the one in force, or reused."""
    if bundle.revision < trust.min_revision:
        raise BundleRefused(
            BELOW_MINIMUM,
            f"{source} has revision {bundle.revision}, below the pinned minimum "
            f"{trust.min_revision}: an older bundle (rollback)",
            advice="deploy the current bundle; the bundle in force stays",
        )
    if in_force is None:
        return
    if bundle.revision < in_force.revision:
        raise BundleRefused(
            ROLLBACK,
            f"{source} has revision {bundle.revision}, older than revision "
            f"{in_force.revision} in force (generation {in_force.generation}): a rollback",
            advice="deploy a bundle of a higher revision; the bundle in force stays",
        )
    if bundle.revision == in_force.revision and bundle.generation != in_force.generation:
        raise BundleRefused(
            REUSED,
            f"{source} reuses revision {bundle.revision} for other content (generation "
            f"{bundle.generation}, {in_force.generation} in force)",
            advice="recompile: `approvalgate compile` raises the revision when content changes",
        )
