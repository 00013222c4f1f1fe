"""A work queue of keys, client-go style: deduplicated, delayed adds, per-key backoff.

Watch handlers (on the informers' threads) add keys; workers :meth:`WorkQueue.get` one,
reconcile it from the caches, and :meth:`WorkQueue.done` it. A key is never handed to two
workers at once: added again while being processed, it is queued once more when done. A key
waiting is queued once however often it is added. :meth:`add_after` schedules a look at a
time (an expiry, a use settling); :meth:`retry` backs off per key, :meth:`forget` resets.

Two lanes: keys added by changes (and delayed keys coming due) go before keys added by a
periodic resync (``background=True``), so a resync of a thousand requests never makes a
fresh approval wait behind all of them. A background key added again by a change moves to
the front lane.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Hashable
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

RETRY_INITIAL: Final = 0.5
RETRY_MAXIMUM: Final = 60.0


class WorkQueue(Generic[K]):
    def __init__(
        self, *, retry_initial: float = RETRY_INITIAL, retry_maximum: float = RETRY_MAXIMUM
    ) -> None:
        self.retry_initial = retry_initial
        self.retry_maximum = retry_maximum
        self._cond = threading.Condition()
        self._queue: dict[K, None] = {}  # insertion-ordered set: first in, first out
        self._background: dict[K, None] = {}  # resync keys: served when _queue is empty
        self._processing: set[K] = set()
        self._dirty: set[K] = set()  # added again while being processed
        self._later: list[tuple[float, int, K]] = []
        self._counter = itertools.count()
        self._failures: dict[K, int] = {}
        self._shutdown = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._background)

    def add(self, key: K, *, background: bool = False) -> None:
        with self._cond:
            self._add(key, background)

    def _add(self, key: K, background: bool = False) -> None:
        if self._shutdown:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queue:
            return
        if background:
            if key not in self._background:
                self._background[key] = None
                self._cond.notify()
            return
        self._background.pop(key, None)
        self._queue[key] = None
        self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            heapq.heappush(self._later, (time.monotonic() + delay, next(self._counter), key))
            self._cond.notify()

    def retry(self, key: K) -> float:
        """Queue ``key`` again after its backoff (doubling per failure); the delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = float(min(self.retry_initial * 2.0**failures, self.retry_maximum))
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def get(self, timeout: float | None = None) -> K | None:
        """The next key (now being processed), or None at shutdown or after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._shutdown:
                    return None
                now = time.monotonic()
                while self._later and self._later[0][0] <= now:
                    self._add(heapq.heappop(self._later)[2])
                for lane in (self._queue, self._background):
                    if lane:
                        key = next(iter(lane))
                        del lane[key]
                        self._processing.add(key)
                        return key
                waits = [deadline - now] if deadline is not None else []
                if self._later:
                    waits.append(self._later[0][0] - now)
                if deadline is not None and now >= deadline:
                    return None
                self._cond.wait(min(waits) if waits else None)

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add(key)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
