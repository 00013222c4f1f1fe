"""The bundle a long-running process enforces, opened from its files: shared by the webhook
and the controller (each adds its own metrics and readiness).

:class:`BundleSource` opens the bytes of ``bundle.json`` and of ``bundle.sig.json`` (None
when absent) through :func:`approvals.bundle_trust.open_bundle` against the pinned
:class:`~approvals.bundle_trust.BundleTrust`, with the bundle in force as ``in_force``: a
refused bundle (unsigned, signatures stripped, another key, below the threshold, signed
other content, a rollback, a revision reused, an unreadable bundle) raises
:class:`~approvals.bundle_trust.BundleRefused`, and the caller keeps the bundle in force.
The words of the log lines live here so that both processes say the same.

Unsigned mode (``allow_unsigned``, development) compares no revision with the bundle in
force: whoever can edit the files can write any revision, so the check would protect nothing
and would refuse a developer's swap between two bundles; the pinned minimum still holds.

With a ``floor`` (:mod:`approvals.bundle_floor`: the highest signed revision this environment
has enforced, kept in the cluster by the controller), a signed bundle below it is refused
too (``below-floor``), and one whose floor cannot be read (``floor-unknown``). Pure but for
``floor.read``, which the processes give (one API call per new content, none per admission).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from approvalgate.approvals.bundle import Bundle
from approvalgate.approvals.bundle_floor import FloorReader, check_floor
from approvalgate.approvals.bundle_trust import INVALID, BundleRefused, BundleTrust, open_bundle

UNSIGNED_WARNING: Final = (
    "UNSIGNED bundles are allowed (--allow-unsigned-bundle): whoever can edit the bundle "
    "changes the rules; for development only, pin bundle-signing keys in production"
)


def refusal_reason(exc: BaseException) -> str:
    """The ``reason`` label of a failure to open a bundle (``invalid-bundle`` by default)."""
    return exc.reason if isinstance(exc, BundleRefused) else INVALID


@dataclass
class BundleSource:
    """Opens each new content of the bundle's files against ``trust``.

    ``in_force()`` returns the bundle enforced now (the rollback and reuse checks compare
    with it); ``warn(message)`` is called on every load in unsigned mode (the loud setting).
    """

    trust: BundleTrust
    in_force: Callable[[], Bundle | None]
    warn: Callable[[str], None] = lambda _: None
    floor: FloorReader | None = None
    """The cluster's floor (signed bundles only); None: the pinned minimum alone."""

    def open(
        self, content: bytes, source: str, companions: Sequence[bytes | None] = (None,)
    ) -> Bundle:
        signatures = companions[0] if companions else None
        if not self.trust.signed:
            self.warn(UNSIGNED_WARNING)
            return open_bundle(content, None, self.trust, source=source)
        bundle = open_bundle(
            content, signatures, self.trust, in_force=self.in_force(), source=source
        )
        if self.floor is not None:
            check_floor(bundle, self.floor.read(bundle.environment), source, self.floor.where)
        return bundle

    @staticmethod
    def failure_fields(exc: Exception) -> Mapping[str, Any]:
        return {"reason": refusal_reason(exc)}

    @staticmethod
    def in_force_fields(bundle: Bundle | None) -> Mapping[str, Any]:
        """Named in every failure line: what stays in force ("" and 0 for none)."""
        if bundle is None:
            return {"generation": "", "revision": 0}
        return {"generation": bundle.generation, "revision": bundle.revision}
