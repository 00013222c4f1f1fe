"""The signed bundle, compiler side: its revision and its ``bundle.sig.json``.

Revision: a compiled bundle carries ``"revision": N``. The previous bundle is the one
already in the output folder: its revision is kept when everything but ``generation`` and
``revision`` is the same, else raised by one (1 when there is none), so compiling twice
writes the same bytes and ``check`` agrees with ``compile``. The generation hashes the
revision too: it names the exact bundle.

Signatures (approvals.bundle_trust): ``compile --sign REF`` adds one signature per signer
whose key is among the environment's ``bundleSigning.publicKeys``; without ``--sign`` the
signatures already in the output folder are kept when they still verify over the new bytes
with a listed key, and dropped otherwise (said on stderr). ``check`` therefore never
compares signatures byte for byte (ECDSA signatures differ at each signing): it takes the
verified ones on disk and reports a bundle below the threshold as a finding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from securesystemslib.signer import Signer, SSlibKey

from approvalgate.approvals.bundle_trust import (
    SIGNATURES_FILE,
    BundleRefused,
    dump_signatures,
    pae,
    signatures_document,
    signatures_of,
    signers_of,
)
from approvalgate.approvals.errors import ApprovalgateError
from approvalgate.approvals.policy import bundle_generation
from approvalgate.compiler.config import BundleSigning

BUNDLE_FILE = "bundle.json"


@dataclass(frozen=True)
class Previous:
    """What the output folder holds of an environment's bundle (None: no such file)."""

    bundle: str | None = None
    signatures: str | None = None
    shown: str = ""
    """The folder as users see it (e.g. ``rendered/prod``), for messages."""


def read_previous(folder: Path, shown: str) -> Previous:
    def read(name: str) -> str | None:
        path = folder / name
        try:
            return path.read_text(encoding="utf-8") if path.is_file() else None
        except (OSError, UnicodeDecodeError) as exc:
            raise ApprovalgateError(
                f"{shown}/{name}: cannot read it ({exc}); the revision of the next bundle "
                "depends on it",
                advice=f"restore it (`git checkout -- {shown}/{name}`) and compile again",
            ) from exc

    return Previous(read(BUNDLE_FILE), read(SIGNATURES_FILE), shown)


def previous_revision(previous: Previous) -> tuple[int, dict[str, Any] | None]:
    """The previous bundle's revision (0 for none) and its content without
    ``generation`` and ``revision``."""
    if previous.bundle is None:
        return 0, None
    where = f"{previous.shown}/{BUNDLE_FILE}"
    advice = (
        f"restore it (`git checkout -- {where}`, or take either side of a merge conflict) "
        "and compile again: the new bundle's revision must not go below the deployed one"
    )
    try:
        obj = json.loads(previous.bundle)
    except (ValueError, RecursionError) as exc:
        raise ApprovalgateError(
            f"{where} is not valid JSON ({exc}): its revision cannot be read", advice=advice
        ) from exc
    revision = obj.get("revision", 0) if isinstance(obj, dict) else None
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
        raise ApprovalgateError(
            f"{where} has no readable revision (a non-negative integer)", advice=advice
        )
    assert isinstance(obj, dict)
    return revision, {k: v for k, v in obj.items() if k not in ("generation", "revision")}


def with_revision(bundle: Mapping[str, Any], previous: Previous) -> dict[str, Any]:
    """``bundle`` with its revision and the generation over both."""
    body = {k: v for k, v in bundle.items() if k not in ("generation", "revision")}
    last, last_body = previous_revision(previous)
    revision = last if last >= 1 and last_body == body else last + 1
    out = {**body, "revision": revision}
    out["generation"] = bundle_generation(out)
    return out


@dataclass
class EnvSignatures:
    """What signing one environment's bundle did: the text to write, and what to say."""

    text: str | None = None
    signed_by: list[SSlibKey] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    used: set[int] = field(default_factory=set)
    """Indexes of the --sign signers whose key is listed for this environment."""


def sign_environment(
    bundle_text: str,
    previous: Previous,
    signing: BundleSigning | None,
    signers: Sequence[Signer],
) -> EnvSignatures:
    """The environment's signatures document: new signatures by ``signers`` whose key is
    listed, plus the previous ones that still verify over ``bundle_text``."""
    data = bundle_text.encode("utf-8")
    keys = signing.keys if signing is not None else ()
    where = f"{previous.shown}/{SIGNATURES_FILE}"
    result = EnvSignatures()
    chosen: dict[str, dict[str, str]] = {}  # verified key id -> signature
    dropped, why = 0, ""
    if previous.signatures is not None:
        kept, dropped, why = _still_valid(data, previous.signatures, keys, where)
        for keyid, signature in kept:
            chosen[keyid] = signature
    if keys:
        payload = pae(data)
        for index, signer in enumerate(signers):
            try:
                made = signer.sign(payload)
            except Exception as exc:  # a signer's own failure (token, agent, KMS), told
                raise ApprovalgateError(
                    f"--sign: signing {previous.shown}/{BUNDLE_FILE} failed: {exc}",
                    advice="check that the key is reachable (token inserted, agent running, "
                    "KMS credentials set) and try again",
                ) from exc
            found = signers_of(data, [made], keys)
            if found:
                chosen[found[0].keyid] = {"keyid": made.keyid, "sig": made.signature}
                result.used.add(index)
    if dropped and not result.used:
        result.notes.append(
            f"{where}: {dropped} signature(s) removed: {why}"
            + ("" if chosen else "; the bundle is now unsigned")
        )
    if chosen:
        document = signatures_document(data, list(chosen.values()))
        result.text = dump_signatures(document)
        # counted as the webhook counts them: one key in two forms (PEM, OpenSSH) is one
        result.signed_by = signers_of(data, signatures_of(result.text), keys)
    return result


def _still_valid(
    data: bytes, text: str, keys: Sequence[SSlibKey], where: str
) -> tuple[list[tuple[str, dict[str, str]]], int, str]:
    """The previous signatures that verify over ``data`` with a listed key (by key id),
    how many were dropped, and why."""
    try:
        signatures = signatures_of(text, where)
    except BundleRefused as exc:
        return [], 1, exc.message
    if not keys:
        return (
            [],
            len(signatures),
            "approvalgate.yaml lists no bundleSigning.publicKeys to " + ("verify them with"),
        )
    kept: list[tuple[str, dict[str, str]]] = []
    for signature in signatures:
        found = signers_of(data, [signature], keys)
        if found:
            kept.append((found[0].keyid, {"keyid": signature.keyid, "sig": signature.signature}))
    dropped = len(signatures) - len(kept)
    why = (
        "they do not verify over the new bundle.json with a key of bundleSigning.publicKeys "
        "(the content changed, or the key is no longer listed)"
    )
    return kept, dropped, why


def threshold_finding(
    signing: BundleSigning | None, signed: EnvSignatures, shown: str, repo_arg: str
) -> str | None:
    """Why the environment's bundle is not signed enough, with the command; None if it is."""
    if signing is None or not signing.keys or len(signed.signed_by) >= signing.threshold:
        return None
    count = len(signed.signed_by)
    state = "is not signed" if not count else f"is signed by {count} of its keys"
    return (
        f"{shown}/{BUNDLE_FILE} {state}: bundleSigning ({signing.where}) requires "
        f"{signing.threshold} signature(s) by its publicKeys; run "
        f"`approvalgate compile{repo_arg} --sign REF` with a key listed there and commit "
        f"{shown}/{SIGNATURES_FILE}"
    )
