"""The bundle being enforced: loaded from a mounted file, swapped atomically, never lost.

The admission path reads :attr:`BundleState.bundle` once per request: one attribute read of
an immutable :class:`approvals.bundle.Bundle`, so a swap is atomic for every request. A new
file that cannot be loaded (broken JSON, schema, generation mismatch, unknown approvers,
a half-written file) keeps the last good bundle; it is logged once per distinct content and
counted in ``approvalgate_bundle_reload_failures_total``. No bundle at all means not ready
and every request denied (decide() with ``bundle=None``).

The file is polled (default every 2 s): see :mod:`webhook.files` for how changes, including
Kubernetes' ``..data`` symlink swaps, are noticed. Parsing a changed file runs in a thread so
that the event loop keeps answering with the previous bundle meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.errors import ApprovalgateError
from approvalgate.webhook import files
from approvalgate.webhook.logs import fields, get_logger
from approvalgate.webhook.metrics import Metrics

DEFAULT_RELOAD_INTERVAL = 2.0

log = get_logger("bundle")


class BundleState:
    def __init__(self, path: Path, metrics: Metrics | None = None) -> None:
        self.path = path
        self.metrics = metrics
        self.bundle: Bundle | None = None
        self.loaded_at: float | None = None
        self.loads = 0
        self.failures = 0
        self._mark: files.StatMark | None = None
        self._digest = ""  # content last read, good or bad
        self._good_digest = ""  # content of the bundle in force
        self._missing_logged = False

    @property
    def generation(self) -> str:
        return self.bundle.generation if self.bundle is not None else ""

    def load(self) -> bool:
        """Check the file now and load it if it changed (blocking; for start-up)."""
        changed = self._changed_content()
        if changed is None:
            return False
        try:
            bundle = parse_bundle_text(changed[0], str(self.path))
        except Exception as exc:
            self._failed(exc)
            return False
        self._switch(bundle, changed[1])
        return True

    async def refresh(self) -> bool:
        """Like :meth:`load`, parsing in a thread; True when a new bundle is in force."""
        changed = self._changed_content()
        if changed is None:
            return False
        try:
            bundle = await asyncio.to_thread(parse_bundle_text, changed[0], str(self.path))
        except Exception as exc:
            self._failed(exc)
            return False
        self._switch(bundle, changed[1])
        return True

    async def watch(self, interval: float = DEFAULT_RELOAD_INTERVAL) -> None:
        """Poll forever (until cancelled); an error in one poll never stops the next."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception:
                log.exception("bundle poll failed", extra=fields(path=str(self.path)))

    def _changed_content(self) -> tuple[bytes, str] | None:
        """The file's content and digest when it differs from what was last read."""
        mark = files.stat_mark(self.path)
        if mark is None:
            self._missing()
            return None
        if mark == self._mark:
            return None
        try:
            content = self.path.read_bytes()
        except OSError:
            self._missing()
            return None
        self._mark = mark
        self._missing_logged = False
        digest = files.digest(content)
        if digest == self._digest:
            return None
        self._digest = digest
        if digest == self._good_digest:  # back to the bundle in force after a broken file
            log.info("bundle file is good again", extra=fields(path=str(self.path)))
            return None
        return content, digest

    def _missing(self) -> None:
        self._mark = None
        if self._missing_logged:
            return
        self._missing_logged = True
        if self.bundle is None:
            log.error(
                "no bundle loaded: every request is denied until the file can be read",
                extra=fields(path=str(self.path)),
            )
            return
        self.failures += 1
        if self.metrics is not None:
            self.metrics.bundle_reload_failures.inc()
        log.error(
            "bundle file is gone or unreadable; keeping the last good bundle",
            extra=fields(path=str(self.path), generation=self.generation),
        )

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        if self.metrics is not None:
            self.metrics.bundle_reload_failures.inc()
        error = exc.render() if isinstance(exc, ApprovalgateError) else f"{type(exc).__name__}"
        log.error(
            "bundle file cannot be loaded; keeping the last good bundle"
            if self.bundle is not None
            else "bundle file cannot be loaded; every request is denied",
            extra=fields(path=str(self.path), error=error, generation=self.generation),
        )

    def _switch(self, bundle: Bundle, digest: str) -> None:
        previous = self.generation
        self.bundle = bundle
        self._good_digest = digest
        self.loaded_at = time.time()
        self.loads += 1
        if self.metrics is not None:
            self.metrics.bundle_switched(previous, bundle.generation, self.loaded_at)
        log.info(
            "bundle loaded",
            extra=fields(
                path=str(self.path),
                generation=bundle.generation,
                previous_generation=previous,
                environment=bundle.environment,
                policies=len(bundle.policies),
                approvers=len(bundle.approvers),
            ),
        )
