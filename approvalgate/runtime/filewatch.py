"""Mounted files polled for changes and reloaded, the last good content kept when a new one
is broken.

Noticing a change the way Kubernetes makes them: a ConfigMap or Secret volume holds
``..data -> ..2026_11_21_10_00_00.123`` and ``bundle.json -> ..data/bundle.json``; an update
writes a new timestamped folder and swaps the ``..data`` symlink atomically. The file's own
path never changes, but what it resolves to does, so a cheap :func:`stat_mark` (resolved
path, device, inode, size, mtime, ctime) is compared every poll and only a changed mark
makes us read and hash the content (:func:`digest`). A content hash that did not change (a
touch, a re-mount) is not a reload.

:class:`WatchedFile` is one such file parsed into a value: a new content that cannot be
parsed (or a file that is gone) keeps the value in force, is logged once per distinct
content and counted; a file that is back to the content in force is logged, not reloaded.
Parsing a changed file in :meth:`WatchedFile.refresh` runs in a thread so that the event
loop keeps serving with the previous value meanwhile. What the value means, and what its
absence means (``unloaded``), is the owner's: the messages are built from its words.

A value may be made of several files (a bundle and its signatures): ``companions`` are
watched with the main file (a change of any reloads, the content digest covers them all)
and handed to ``parse`` as ``companions=(bytes or None, ...)``, None for one that is absent
(the owner decides what an absent companion means; only the main file missing is "gone").
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from approvalgate.approvals.errors import ApprovalgateError
from approvalgate.runtime.logs import fields

T = TypeVar("T")
StatMark = tuple[str, int, int, int, int, int]


def stat_mark(path: Path) -> StatMark | None:
    """What must change when the file's content can have changed; None when unreadable."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def digest(*contents: bytes) -> str:
    h = hashlib.sha256()
    for content in contents:
        h.update(len(content).to_bytes(8, "big"))
        h.update(content)
    return h.hexdigest()


async def poll(
    interval: float,
    step: Callable[[], object],
    *,
    log: logging.Logger,
    message: str,
    context: Mapping[str, Any],
) -> None:
    """Call ``step`` (awaited if it returns an awaitable) every ``interval`` seconds, forever
    (until cancelled); an error in one step is logged with ``message`` and never stops the
    next."""
    while True:
        await asyncio.sleep(interval)
        try:
            result = step()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception(message, extra=fields(**context))


class WatchedFile(Generic[T]):
    """The file ``path`` parsed by ``parse(content, source)``, reloaded when its content
    changes; :attr:`value` is the last good one (None until one was loaded).

    ``what`` names the value in messages ("bundle"); ``unloaded`` says what having none means
    ("every request is denied"); ``context(value)`` adds the fields naming the value in force
    to every failure line; ``failure_fields(exc)`` adds the fields naming a failure (a
    reason); ``on_switch(previous, value)`` runs after a new value is in force (metrics, the
    "loaded" line: the owner knows what to say about it); ``on_failure()`` after each
    failure counted (a metric), ``on_error(exc)`` after each content that cannot be parsed.
    With ``companions``, ``parse(content, source, companions=(...))``: see the module.
    """

    def __init__(
        self,
        path: Path,
        parse: Callable[..., T],
        *,
        log: logging.Logger,
        what: str,
        unloaded: str,
        context: Callable[[T | None], Mapping[str, Any]] = lambda _: {},
        on_switch: Callable[[T | None, T], None] | None = None,
        on_failure: Callable[[], None] | None = None,
        companions: Sequence[Path] = (),
        failure_fields: Callable[[Exception], Mapping[str, Any]] = lambda _: {},
        on_error: Callable[[Exception], None] | None = None,
        retry: Callable[[Exception, bool], bool] = lambda _exc, _in_force: False,
        retry_interval: float = 10.0,
    ) -> None:
        self.path = path
        self.retry = retry
        """``retry(exc, in_force)``: whether a content refused with ``exc`` is read again
        (every ``retry_interval`` seconds), ``in_force`` telling whether a value is in force:
        a refusal that depends on more than the files (the bundle's revision floor, read
        from the API server) may be lifted without a change of them."""
        self.retry_interval = retry_interval
        self._failed_at = 0.0
        self.companions = tuple(companions)
        self.parse = parse
        self.failure_fields = failure_fields
        self.on_error = on_error
        self.last_error: Exception | None = None
        """What refused the last content read (None once a content is in force again)."""
        self.log = log
        self.context = context
        self.on_switch = on_switch
        self.on_failure = on_failure
        self.value: T | None = None
        self.loaded_at: float | None = None
        self.loads = 0
        self.failures = 0
        self._mark: tuple[StatMark | None, ...] | None = None
        self._digest = ""  # content last read, good or bad
        self._good_digest = ""  # content of the value in force
        self._missing_logged = False
        self._good_again = f"{what} file is good again"
        self._none_yet = f"no {what} loaded: {unloaded} until the file can be read"
        self._gone = f"{what} file is gone or unreadable; keeping the last good {what}"
        self._broken_kept = f"{what} file cannot be loaded; keeping the last good {what}"
        self._broken_none = f"{what} file cannot be loaded; {unloaded}"
        self._poll_failed = f"{what} poll failed"

    def load(self) -> bool:
        """Check the file now and load it if it changed (blocking; for start-up)."""
        changed = self._changed_content()
        if changed is None:
            return False
        try:
            value = self._parse(changed[0])
        except Exception as exc:
            self._failed(exc)
            return False
        self._switch(value, changed[1])
        return True

    async def refresh(self) -> bool:
        """Like :meth:`load`, parsing in a thread; True when a new value is in force."""
        changed = self._changed_content()
        if changed is None:
            return False
        try:
            value = await asyncio.to_thread(self._parse, changed[0])
        except Exception as exc:
            self._failed(exc)
            return False
        self._switch(value, changed[1])
        return True

    async def watch(self, interval: float) -> None:
        """Poll forever (until cancelled); an error in one poll never stops the next."""
        await poll(
            interval,
            self.refresh,
            log=self.log,
            message=self._poll_failed,
            context={"path": str(self.path)},
        )

    def _parse(self, contents: tuple[bytes, tuple[bytes | None, ...]]) -> T:
        if self.companions:
            return self.parse(contents[0], str(self.path), companions=contents[1])
        return self.parse(contents[0], str(self.path))

    def _changed_content(self) -> tuple[tuple[bytes, tuple[bytes | None, ...]], str] | None:
        """The files' contents and digest when they differ from what was last read."""
        if (
            self.last_error is not None
            and self.retry(self.last_error, self.value is not None)
            and time.monotonic() - self._failed_at >= self.retry_interval
        ):
            self._mark = None  # read the same content again
            self._digest = ""
        main = stat_mark(self.path)
        if main is None:
            self._missing()
            return None
        mark = (main, *(stat_mark(path) for path in self.companions))
        if mark == self._mark:
            return None
        try:
            content = self.path.read_bytes()
        except OSError:
            self._missing()
            return None
        companions = tuple(_read_or_none(path) for path in self.companions)
        self._mark = mark
        self._missing_logged = False
        # an absent companion hashes apart from an empty one
        content_digest = digest(
            content, *(b"\x00" + c if c is not None else b"" for c in companions)
        )
        if content_digest == self._digest:
            return None
        self._digest = content_digest
        if content_digest == self._good_digest:  # back to the value in force after a broken file
            self.last_error = None
            self.log.info(self._good_again, extra=fields(path=str(self.path)))
            return None
        return (content, companions), content_digest

    def _missing(self) -> None:
        self._mark = None
        if self._missing_logged:
            return
        self._missing_logged = True
        if self.value is None:
            self.log.error(self._none_yet, extra=fields(path=str(self.path)))
            return
        self._count()
        self.log.error(self._gone, extra=fields(path=str(self.path), **self.context(self.value)))

    def _failed(self, exc: Exception) -> None:
        self.last_error = exc
        self._failed_at = time.monotonic()
        self._count()
        if self.on_error is not None:
            self.on_error(exc)
        error = exc.render() if isinstance(exc, ApprovalgateError) else f"{type(exc).__name__}"
        self.log.error(
            self._broken_kept if self.value is not None else self._broken_none,
            extra=fields(
                path=str(self.path),
                error=error,
                **self.failure_fields(exc),
                **self.context(self.value),
            ),
        )

    def _count(self) -> None:
        self.failures += 1
        if self.on_failure is not None:
            self.on_failure()

    def _switch(self, value: T, content_digest: str) -> None:
        previous = self.value
        self.value = value
        self.last_error = None
        self._good_digest = content_digest
        self.loaded_at = time.time()
        self.loads += 1
        if self.on_switch is not None:
            self.on_switch(previous, value)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
