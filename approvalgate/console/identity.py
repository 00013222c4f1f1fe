"""Who the console acts as: one console process is one user (their kubeconfig credentials,
their signer). Built once at start by ``approvalgate console``; read by every handler."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from securesystemslib.signer import Signer

    from approvalgate.approvals.bundle import Bundle


@dataclass(frozen=True)
class Me:
    """The console's user.

    ``user``: the Kubernetes username the API server authenticates us as (a
    SelfSubjectReview, ``commands._cluster.whoami``); the decisions the console files are
    created as this user. ``groups``: that review's groups (without system:authenticated).
    ``approver``: the ``--approver NAME`` we sign as ("" when the console only shows).
    ``signer_ref``: the ``--signer REF`` ("" when none); ``signer``: it, loaded (None when
    none: the pages say how to start the console to decide). ``public_key``: the
    ``--public-key FILE`` given with it. ``bundle``/``bundle_path``: the ``--bundle FILE``
    (None when not given: the request page says how to see the policies).
    """

    user: str
    approver: str = ""
    signer_ref: str = ""
    signer: Signer | None = None
    public_key: Path | None = None
    bundle: Bundle | None = None
    bundle_path: Path | None = None
    groups: tuple[str, ...] = ()

    @property
    def can_sign(self) -> bool:
        """Whether this console can decide: it has a signer and an approver name."""
        return self.signer is not None and bool(self.approver)
