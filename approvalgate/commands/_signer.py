"""--signer REF and --approver NAME: who signs (approve, reject, withdraw, compile --sign).

REF names where the private key is: a key file path (``approvalgate keygen``), or
``SCHEME:LOCATION`` of a signer kind (approvalgate.signers: PKCS#11 tokens, KMSs, ssh-agent).
``--key`` is the older name of ``--signer`` and stays accepted. ``--public-key FILE`` gives
the signer's public key (the Approver document, or a PEM) to kinds that would otherwise fetch
it from a KMS (so does ``--bundle`` when the approver has one key in it); a key file or a
PKCS#11 token reads its own.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from securesystemslib.signer import Signer, SSlibKey

    from approvalgate.approvals.bundle import Bundle


def signer_help() -> str:
    """One line per signer kind, for --help."""
    from approvalgate import signers
    from approvalgate.approvals import keys

    signers.register_all()
    lines = ["PATH (a key file)"]
    kinds = [k for k in keys.signer_kinds() if k.scheme != "file"]
    lines += [f"{k.scheme}:... ({k.description})" for k in kinds]
    return "; ".join(lines)


def add_signer(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--signer",
        "--key",
        dest="key",
        metavar="REF",
        required=required,
        help="where the approver's private key is: " + signer_help(),
    )
    parser.add_argument(
        "--public-key",
        metavar="FILE",
        type=Path,
        help="the signer's public key: the approver's Approver document (keygen --import "
        "writes it) or a PEM file; a KMS signer (gcpkms:, awskms:, azurekms:, hv:) then "
        "signs without fetching it; other signers check they hold this key",
    )


def load(
    ref: str,
    public_key: Path | None = None,
    *,
    bundle: Bundle | None = None,
    approver: str | None = None,
) -> Signer:
    """The signer ``ref`` names; every problem is an ApprovalgateError the user can act on.

    A kind that can be told its public key (a KMS) gets ``public_key``'s, else the
    approver's key in ``bundle`` when they have exactly one there, else fetches it.
    """
    from approvalgate import manifests, signers
    from approvalgate.approvals import keys

    signers.register_all()
    public = read_public_key(public_key) if public_key is not None else None
    if public is None and bundle is not None and approver is not None:
        kind, _ = keys.signer_kind_of(ref)
        entry = bundle.approvers.get(approver)
        if kind.load_with_key is not None and entry is not None and len(entry.keys) == 1:
            public = entry.keys[0].key
    signer = keys.load_signer(ref, lambda path: manifests.read_key(Path(path)), public)
    if public_key is not None and _says_user_verification(public_key):
        return _requiring_user_verification(signer)
    return user_verification_of(signer, bundle)


def user_verification_of(signer: Signer, bundle: Bundle | None) -> Signer:
    """``signer``, refusing before anything is written a signature without user
    verification when ``bundle`` requires it of the signer's key (an Approver entry of it
    says ``userVerification: required``): such a record would never count."""
    from approvalgate.approvals import keys

    shown = signer.public_key
    if (
        bundle is not None
        and isinstance(shown, keys.SSlibKey)
        and bundle.requires_user_verification(shown)
    ):
        return _requiring_user_verification(signer)
    return signer


def _requiring_user_verification(signer: Signer) -> Signer:
    from approvalgate.approvals import keys

    if isinstance(signer, keys.CheckedSigner):  # what load_signer returns
        return signer.requiring_user_verification()
    return signer


def _says_user_verification(path: Path) -> bool:
    """Whether the Approver document ``path`` (``--public-key``) requires user verification
    of its key; False for a PEM or an OpenSSH line (read_public_key read it already)."""
    from approvalgate import manifests
    from approvalgate.compiler.sources import load_text

    text = manifests.read_key(path).decode("utf-8", errors="replace")
    if "userVerification" not in text:
        return False
    docs = [d.obj for d in load_text(text, str(path)) if isinstance(d.obj, dict)]
    return any(
        isinstance(k, dict) and k.get("userVerification") == "required"
        for d in docs
        if d.get("kind") == "Approver"
        for k in (d.get("spec") or {}).get("keys") or []
    )


def read_public_key(path: Path) -> SSlibKey:
    """The one public key of an Approver document, or of a PEM (or OpenSSH) file."""
    from approvalgate import manifests
    from approvalgate.approvals import keys
    from approvalgate.approvals.errors import InputError
    from approvalgate.compiler.sources import load_text

    text = manifests.read_key(path).decode("utf-8", errors="replace")
    texts = [text]
    if "publicKey" in text:
        docs = [d.obj for d in load_text(text, str(path)) if isinstance(d.obj, dict)]
        approvers = [d for d in docs if d.get("kind") == "Approver"]
        texts = [
            str(k.get("publicKey", ""))
            for d in approvers
            for k in (d.get("spec") or {}).get("keys") or []
            if isinstance(k, dict)
        ]
        if len(texts) != 1:
            raise InputError(
                f"{path}: --public-key needs one key, the file holds {len(texts)}",
                advice="pass a PEM file with the signer's public key",
            )
    try:
        return keys.load_public_key(texts[0])
    except ValueError as exc:
        raise InputError(f"{path}: not a public key: {exc}") from exc
