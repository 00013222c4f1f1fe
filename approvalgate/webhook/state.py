"""The bundle being enforced: loaded from mounted files, swapped atomically, never lost.

The admission path reads :attr:`BundleState.bundle` once per request: an immutable
:class:`approvals.bundle.Bundle`, replaced by one assignment, so a swap is atomic for every
request. A new
file that cannot be loaded (broken JSON, schema, generation mismatch, unknown approvers,
a half-written file) keeps the last good bundle; it is logged once per distinct content and
counted in ``approvalgate_bundle_reload_failures_total``. No bundle at all means not ready
and every request denied (decide() with ``bundle=None``).

Only a bundle the pinned keys signed is enforced (:mod:`approvals.bundle_source`): the
bundle and its signatures (``bundle.sig.json``) are watched together, and a refused bundle
(unsigned, signatures stripped, signed by another key, below the threshold, signed other
content, a rollback, a revision reused) keeps the last good one, is counted in
``approvalgate_bundle_rejected_total{reason}`` and logged once per distinct content with the
reason and the revision and generation in force. ``--allow-unsigned-bundle`` (development)
logs a WARNING at start and at every load. With ``--bundle-floor`` a signed bundle below the
revision floor the controller keeps in the cluster is refused too (``below-floor``:
approvals.bundle_floor), the floor read once per new content, never per request; such a
refusal is tried again every 10 s (``bundle_floor.read_again``: the floor lowered, the API
server back).

The file is polled (default every 2 s) by a :class:`runtime.filewatch.WatchedFile`: see
there how changes, including Kubernetes' ``..data`` symlink swaps, are noticed, and how a
broken file keeps the last good bundle. Parsing a changed file runs in a thread so that the
event loop keeps answering with the previous bundle meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from approvalgate.approvals.bundle import Bundle
from approvalgate.approvals.bundle_floor import FloorReader, read_again
from approvalgate.approvals.bundle_source import UNSIGNED_WARNING, BundleSource, refusal_reason
from approvalgate.approvals.bundle_trust import SIGNATURES_FILE, BundleTrust
from approvalgate.runtime.filewatch import WatchedFile
from approvalgate.runtime.logs import fields
from approvalgate.webhook.logs import get_logger
from approvalgate.webhook.metrics import Metrics

DEFAULT_RELOAD_INTERVAL = 2.0

log = get_logger("bundle")


class BundleState:
    def __init__(
        self,
        path: Path,
        metrics: Metrics | None = None,
        *,
        trust: BundleTrust,
        signatures: Path | None = None,
        floor: FloorReader | None = None,
    ) -> None:
        self.path = path
        self.signatures = signatures if signatures is not None else path.parent / SIGNATURES_FILE
        self.metrics = metrics
        self.trust = trust
        self.source = BundleSource(trust, lambda: self.file.value, warn=_warn, floor=floor)
        self.file: WatchedFile[Bundle] = WatchedFile(
            path,
            self.source.open,
            log=log,
            what="bundle",
            unloaded="every request is denied",
            context=BundleSource.in_force_fields,
            on_switch=self._switched,
            on_failure=self._failed,
            companions=(self.signatures,),
            failure_fields=BundleSource.failure_fields,
            on_error=self._refused,
            retry=lambda exc, in_force: read_again(refusal_reason(exc), in_force),
        )
        if metrics is not None:
            metrics.bundle_unsigned_allowed.set(0 if trust.signed else 1)
        if not trust.signed:
            _warn(UNSIGNED_WARNING)
        self.listeners: list[Callable[[Bundle], None]] = []
        """Called with each new bundle in force, after it is (e.g. to start the cluster view)."""

    @property
    def bundle(self) -> Bundle | None:
        return self.file.value

    @bundle.setter
    def bundle(self, bundle: Bundle | None) -> None:  # for tests that break the bundle in force
        self.file.value = bundle

    @property
    def generation(self) -> str:
        bundle = self.file.value
        return bundle.generation if bundle is not None else ""

    @property
    def loaded_at(self) -> float | None:
        return self.file.loaded_at

    @property
    def loads(self) -> int:
        return self.file.loads

    @property
    def failures(self) -> int:
        return self.file.failures

    @property
    def refusal(self) -> str:
        """Why the last content read was refused ("" when it is in force)."""
        error = self.file.last_error
        return refusal_reason(error) if error is not None else ""

    def load(self) -> bool:
        """Check the file now and load it if it changed (blocking; for start-up)."""
        return self.file.load()

    async def refresh(self) -> bool:
        """Like :meth:`load`, parsing in a thread; True when a new bundle is in force."""
        return await self.file.refresh()

    async def watch(self, interval: float = DEFAULT_RELOAD_INTERVAL) -> None:
        """Poll forever (until cancelled); an error in one poll never stops the next."""
        await self.file.watch(interval)

    def _failed(self) -> None:
        if self.metrics is not None:
            self.metrics.bundle_reload_failures.inc()

    def _refused(self, exc: Exception) -> None:
        if self.metrics is not None:
            self.metrics.bundle_rejected.labels(refusal_reason(exc)).inc()

    def _switched(self, previous: Bundle | None, bundle: Bundle) -> None:
        previous_generation = previous.generation if previous is not None else ""
        if self.metrics is not None:
            assert self.file.loaded_at is not None
            self.metrics.bundle_switched(
                previous_generation, bundle.generation, self.file.loaded_at
            )
            self.metrics.bundle_revision_set(bundle.revision)
        log.info(
            "bundle loaded",
            extra=fields(
                path=str(self.path),
                generation=bundle.generation,
                revision=bundle.revision,
                previous_generation=previous_generation,
                signed=self.trust.describe(),
                environment=bundle.environment,
                policies=len(bundle.policies),
                approvers=len(bundle.approvers),
            ),
        )
        for listener in self.listeners:
            try:
                listener(bundle)
            except Exception:  # the new bundle is in force whatever a listener does
                log.exception(
                    "a bundle listener failed", extra=fields(generation=bundle.generation)
                )


def _warn(message: str) -> None:
    log.warning(message)
