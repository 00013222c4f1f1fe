"""The bundle being enforced: loaded from a mounted file, swapped atomically, never lost.

The admission path reads :attr:`BundleState.bundle` once per request: an immutable
:class:`approvals.bundle.Bundle`, replaced by one assignment, so a swap is atomic for every
request. A new
file that cannot be loaded (broken JSON, schema, generation mismatch, unknown approvers,
a half-written file) keeps the last good bundle; it is logged once per distinct content and
counted in ``approvalgate_bundle_reload_failures_total``. No bundle at all means not ready
and every request denied (decide() with ``bundle=None``).

The file is polled (default every 2 s) by a :class:`runtime.filewatch.WatchedFile`: see
there how changes, including Kubernetes' ``..data`` symlink swaps, are noticed, and how a
broken file keeps the last good bundle. Parsing a changed file runs in a thread so that the
event loop keeps answering with the previous bundle meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.runtime.filewatch import WatchedFile
from approvalgate.runtime.logs import fields
from approvalgate.webhook.logs import get_logger
from approvalgate.webhook.metrics import Metrics

DEFAULT_RELOAD_INTERVAL = 2.0

log = get_logger("bundle")


class BundleState:
    def __init__(self, path: Path, metrics: Metrics | None = None) -> None:
        self.path = path
        self.metrics = metrics
        self.file = WatchedFile(
            path,
            parse_bundle_text,
            log=log,
            what="bundle",
            unloaded="every request is denied",
            context=_generation_field,
            on_switch=self._switched,
            on_failure=self._failed,
        )
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

    def _switched(self, previous: Bundle | None, bundle: Bundle) -> None:
        previous_generation = previous.generation if previous is not None else ""
        if self.metrics is not None:
            assert self.file.loaded_at is not None
            self.metrics.bundle_switched(
                previous_generation, bundle.generation, self.file.loaded_at
            )
        log.info(
            "bundle loaded",
            extra=fields(
                path=str(self.path),
                generation=bundle.generation,
                previous_generation=previous_generation,
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


def _generation_field(bundle: Bundle | None) -> Mapping[str, Any]:
    """Named in every failure line: the generation still in force ("" for none)."""
    return {"generation": bundle.generation if bundle is not None else ""}
