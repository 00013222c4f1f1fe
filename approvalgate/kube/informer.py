"""A watch-fed read cache of one resource (an informer): list, then watch, in one thread.

The thread lists every object (paginated), replaces the :class:`Store` with the list, marks
the cache synced, then watches from the list's resourceVersion and applies each event. A
watch that ends is resumed from the last resourceVersion (:class:`Watcher`); a 410 Gone means
the server no longer has the history since then, so the thread lists again and the store
takes the new list as a whole (the difference is delivered as ordinary changes). Failed lists
are retried with a bounded backoff; nothing is ever dropped silently. So is what the client
cannot decode or the transform cannot read (an object nested deeper than Python's JSON decoder
goes, which the API server accepts in fields that keep unknown JSON): the cache says so in
:attr:`Informer.list_error` (or the watcher's ``last_error``), lists again, and recovers once
the object is gone; the thread never ends on it.

Why a thread: the official client is synchronous, and the consumers are an aiohttp process
(the webhook) and a controller. A daemon thread per informer keeps blocking reads off the
event loop without an async client, and reads need no coordination with it: the store is
copy-on-write (see :mod:`kube.store`). Handlers run on the informer's thread after the store
has changed; an asyncio consumer hands work to its loop with ``loop.call_soon_threadsafe``.

Staleness: :attr:`Informer.last_contact` is the monotonic time the server last proved alive
(a list, an accepted watch, an event, a bookmark, a watch the server ended on time). A
healthy watch has contact at least every ``watch_timeout`` seconds (the server ends each watch
then, and sends bookmarks in between), so a consumer that must not act on old data checks
:meth:`Informer.fresh` with a bound comfortably above ``watch_timeout``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from approvalgate.kube.backoff import Backoff
from approvalgate.kube.client import Client
from approvalgate.kube.errors import GoneError, KubeError
from approvalgate.kube.lists import DEFAULT_PAGE_SIZE, list_all
from approvalgate.kube.resources import Resource
from approvalgate.kube.store import Change, Store
from approvalgate.kube.watches import DEFAULT_TIMEOUT_SECONDS, Watcher, WatchEvent

log = logging.getLogger("approvalgate.kube.informer")

Handler = Callable[[Change], None]
Transform = Callable[[dict[str, Any]], dict[str, Any]]
"""What the store keeps of each listed or watched object (e.g. a digest instead of a large
spec); it must not raise, and must keep ``metadata`` name, namespace and resourceVersion."""


class Informer:
    """The objects of ``resource`` (in ``namespace``, or everywhere), kept current by a watch.

    With ``transform``, the store keeps ``transform(obj)`` of each object listed or watched
    (client-go's SetTransform): what a consumer needs, not every large object whole.
    """

    def __init__(
        self,
        client: Client,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        page_size: int = DEFAULT_PAGE_SIZE,
        watch_timeout: int = DEFAULT_TIMEOUT_SECONDS,
        backoff: Backoff | None = None,
        transform: Transform | None = None,
    ) -> None:
        self.client = client
        self.transform = transform
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.page_size = page_size
        self.store = Store()
        self.lists = 0  # complete lists applied: the first, then one after each 410
        self.expired = 0  # watches that ended in 410 Gone
        self.list_error: KubeError | None = None  # why the last list failed; None once one works
        self.backoff = backoff or Backoff()
        self.watcher = Watcher(
            client,
            resource,
            namespace,
            label_selector=label_selector,
            timeout_seconds=watch_timeout,
            backoff=self.backoff,
        )
        self._handlers: tuple[Handler, ...] = ()
        self._synced = threading.Event()
        self._last_contact: float | None = None
        self._thread: threading.Thread | None = None
        self._what = f"informer for {resource.describe(namespace)}"

    # --- lifecycle ----------------------------------------------------------------------

    def add_handler(self, handler: Handler) -> None:
        """Call ``handler`` with every :class:`Change` (on the informer's thread). A handler
        added before :meth:`start` also sees the initial list as ADDED changes."""
        self._handlers = (*self._handlers, handler)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self._what} already started")
        self._thread = threading.Thread(target=self._run, name=self._what, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the watch and wait up to ``timeout`` seconds for the thread to end."""
        self.watcher.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Informer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- reads (any thread) ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        """The informer's thread is alive (started and not yet stopped)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def synced(self) -> bool:
        """True once the first complete list is in the store (and from then on)."""
        return self._synced.is_set()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.store.get(f"{namespace}/{name}" if namespace else name)

    def snapshot(self) -> Mapping[str, dict[str, Any]]:
        """Every object by ``namespace/name``, as of one moment."""
        return self.store.snapshot()

    @property
    def last_contact(self) -> float | None:
        """``time.monotonic()`` when the server last proved alive; None before any contact."""
        return self._last_contact

    def seconds_since_contact(self) -> float:
        """How long the cache has gone without the server (infinite before any contact)."""
        last = self._last_contact
        return float("inf") if last is None else time.monotonic() - last

    def fresh(self, max_age: float) -> bool:
        """Synced, and the server proved alive within ``max_age`` seconds: safe to rely on."""
        return self.synced and self.seconds_since_contact() <= max_age

    # --- the thread -----------------------------------------------------------------------

    def _contact(self) -> None:
        self._last_contact = time.monotonic()

    def _run(self) -> None:
        while not self.watcher.stopped():
            try:
                listing = list_all(
                    self.client,
                    self.resource,
                    self.namespace,
                    page_size=self.page_size,
                    label_selector=self.label_selector,
                )
                items = listing.items
                if self.transform is not None:
                    items = [self.transform(obj) for obj in items]
            except Exception as exc:  # the thread must outlive any one list
                error = exc if isinstance(exc, KubeError) else self._unreadable(exc, "listing")
                self.list_error = error
                if self.watcher.stopped():
                    return
                delay = self.backoff.delay()
                log.warning(
                    "%s: list failed, retrying in %.1fs: %s", self._what, delay, error.message
                )
                self.watcher.sleep(delay)
                continue
            self._contact()
            self.list_error = None
            self.backoff.reset()
            changes = self.store.replace(items)
            self.lists += 1
            self._synced.set()
            self._dispatch(changes)
            try:
                self.watcher.run(listing.resource_version, self._on_event, self._contact)
            except GoneError as exc:
                self.expired += 1
                log.info("%s: %s; listing again", self._what, exc.message)
            except Exception as exc:  # an event that cannot be read or applied
                error = self._unreadable(exc, "watching")
                self.watcher.last_error = error
                delay = self.backoff.delay()
                log.warning(
                    "%s: watch failed, listing again in %.1fs: %s", self._what, delay, error.message
                )
                self.watcher.sleep(delay)

    def _unreadable(self, exc: Exception, doing: str) -> KubeError:
        """An error the client does not turn into a :class:`KubeError` (a response it cannot
        decode, a transform that fails), as one: said, retried, never the thread's end."""
        where = self.resource.describe(self.namespace)
        if isinstance(exc, RecursionError):
            return KubeError(
                f"an object of {where} is nested too deeply to decode while {doing} (more than "
                f"about {sys.getrecursionlimit()} levels)",
                advice="find that object and delete it (or flatten it): until then the cache "
                "cannot read the kind",
            )
        return KubeError(f"{type(exc).__name__} while {doing} {where}: {exc}")

    def _on_event(self, event: WatchEvent) -> None:
        obj = event.object if self.transform is None else self.transform(event.object)
        change = self.store.apply(event.type, obj)
        if change is not None:
            self._dispatch([change])

    def _dispatch(self, changes: list[Change]) -> None:
        for change in changes:
            for handler in self._handlers:
                try:
                    handler(change)
                except Exception:
                    log.exception(
                        "%s: a handler failed on %s %s", self._what, change.type, change.key
                    )


def wait_all_synced(informers: Iterable[Informer], timeout: float | None = None) -> bool:
    """Every informer has listed once (True), or ``timeout`` passed for them all (False)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for informer in informers:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not informer.wait_synced(left):
            return False
    return True
