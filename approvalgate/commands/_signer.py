"""--signer REF and --approver NAME: who signs (approve, reject, withdraw, compile --sign).

REF names where the private key is: a key file path (``approvalgate keygen``), or
``SCHEME:LOCATION`` of a signer kind (approvalgate.signers: PKCS#11 tokens, KMSs, ssh-agent).
``--key`` is the older name of ``--signer`` and stays accepted.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from securesystemslib.signer import Signer


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


def load(ref: str) -> Signer:
    """The signer ``ref`` names; every problem is an ApprovalgateError the user can act on."""
    from approvalgate import manifests, signers
    from approvalgate.approvals import keys

    signers.register_all()
    return keys.load_signer(ref, lambda path: manifests.read_key(Path(path)))
