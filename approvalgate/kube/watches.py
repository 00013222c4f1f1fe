"""Watch one resource from a resourceVersion, resuming after every end of a connection.

Each connection is one ``kubernetes.watch.Watch().stream(...)`` with ``timeout_seconds`` (the
server ends the watch then) and ``allowWatchBookmarks``, so the server also sends BOOKMARK
events that move the resourceVersion forward without an object change. When a connection
ends, cleanly or not, the next one starts from the last resourceVersion seen: no event is
lost and none is repeated. Transport and server errors are retried after a bounded backoff.
Only a 410 Gone (the resourceVersion left the server's window, e.g. after an API server
restart) ends :meth:`Watcher.run` with :class:`GoneError`: the caller must list again.

The client's ``Watch`` decodes the stream; its own resume (one retry after a 410 without
``timeout_seconds``) is not used, because every connection here has ``timeout_seconds``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Final

from kubernetes import watch  # type: ignore[import-untyped]
from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped]
from urllib3.exceptions import HTTPError

from approvalgate.kube.backoff import Backoff
from approvalgate.kube.client import Client
from approvalgate.kube.errors import ApiError, GoneError, KubeError, UnreachableError
from approvalgate.kube.resources import Resource, resource_version

log = logging.getLogger("approvalgate.kube.watches")

DEFAULT_TIMEOUT_SECONDS: Final = 60
#: How much longer than the server's ``timeout_seconds`` a read may block before the
#: connection counts as dead (a paused server or a silent network partition).
READ_GRACE_SECONDS: Final = 15.0


@dataclass(frozen=True)
class WatchEvent:
    """ADDED, MODIFIED or DELETED with the object (as the server's JSON), or a BOOKMARK."""

    type: str
    object: dict[str, Any]

    @property
    def resource_version(self) -> str:
        return resource_version(self.object)


class Watcher:
    """Watches ``resource`` (in ``namespace``, or everywhere) until :meth:`stop`."""

    def __init__(
        self,
        client: Client,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
        backoff: Backoff | None = None,
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.timeout_seconds = timeout_seconds
        self.backoff = backoff or Backoff()
        self.connections = 0  # watch requests the server accepted
        self.errors = 0  # connections that ended in an error (other than 410)
        self.last_error: KubeError | None = None  # why the last connection failed, until one opens
        self._what = f"watching {resource.describe(namespace)}"
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None
        self._on_contact: Callable[[], None] = lambda: None

    def run(
        self,
        from_version: str,
        on_event: Callable[[WatchEvent], None],
        on_contact: Callable[[], None] = lambda: None,
    ) -> str:
        """Deliver every change after ``from_version`` to ``on_event`` until :meth:`stop`;
        return the last resourceVersion seen.

        ``on_contact`` is called whenever the server proved alive: a watch accepted, an event
        or bookmark received, a watch ended by the server on time.

        Raises:
            GoneError: ``from_version`` (or a later one) is too old; list again.
        """
        self._on_contact = on_contact
        version = from_version
        while not self._stopping.is_set():
            try:
                with contextlib.closing(self._connection(version)) as events:
                    for event in events:
                        on_contact()
                        version = event.resource_version or version
                        if event.type != "BOOKMARK":
                            on_event(event)
                        if self._stopping.is_set():
                            break
                    else:
                        if not self._stopping.is_set():
                            on_contact()  # the server ended the watch at timeout_seconds
                self.backoff.reset()
            except GoneError:
                raise
            except KubeError as exc:
                if self._stopping.is_set():
                    break
                self.errors += 1
                self.last_error = exc
                delay = self.backoff.delay()
                log.warning(
                    "watch failed, retrying from resourceVersion %s in %.1fs: %s",
                    version,
                    delay,
                    exc.message,
                )
                self._stopping.wait(delay)
        return version

    def stop(self) -> None:
        """Stop :meth:`run` (from any thread), interrupting a read that is blocked."""
        self._stopping.set()
        with self._lock:
            response = self._response
        if response is not None:
            # urllib3 >= 2.3: wakes up a read blocked in another thread; a connection that
            # ended meanwhile (released, so nothing to shut down) raises ValueError
            with contextlib.suppress(ValueError, OSError):
                response.shutdown()

    def stopped(self) -> bool:
        return self._stopping.is_set()

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if :meth:`stop` is called; True when stopped."""
        return self._stopping.wait(seconds)

    # --- one connection -----------------------------------------------------------------

    def _connection(self, version: str) -> Generator[WatchEvent, None, None]:
        stream = watch.Watch().stream(
            self._open,
            resource_version=version,
            timeout_seconds=self.timeout_seconds,
            allow_watch_bookmarks=True,
        )
        try:
            for raw in stream:
                if isinstance(raw, dict) and isinstance(raw.get("raw_object"), dict):
                    yield WatchEvent(str(raw["type"]), raw["raw_object"])
                # else a line that is not JSON (the client yields None for it): skip it
        except KubeError as exc:
            raise self.client.error(self._what, exc) from exc
        except ApiException as exc:  # an ERROR event in the stream, e.g. 410 Gone
            error = ApiError(str(exc.reason or ""), status=exc.status)
            raise self.client.error(self._what, error) from exc
        except (HTTPError, OSError) as exc:
            raise self.client.error(self._what, UnreachableError(str(exc))) from exc
        finally:
            stream.close()
            with self._lock:
                self._response = None

    def _open(
        self,
        *,
        watch: bool,
        resource_version: str,
        timeout_seconds: int,
        allow_watch_bookmarks: bool,
        _preload_content: bool,
    ) -> Any:
        """Open one watch request (called by ``kubernetes.watch.Watch.stream``)."""
        query = [
            ("watch", str(watch).lower()),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", str(allow_watch_bookmarks).lower()),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        if self.label_selector:
            query.append(("labelSelector", self.label_selector))
        if self._stopping.is_set():
            raise UnreachableError("the watch was stopped")
        response = self.client.send(
            "GET",
            self.resource.path(self.namespace),
            query=query,
            read_timeout=timeout_seconds + READ_GRACE_SECONDS,
        )
        with self._lock:
            self._response = response
            if self._stopping.is_set():  # stop() came between the check above and now
                response.shutdown()
        self.connections += 1
        self.last_error = None
        self._on_contact()
        return response
