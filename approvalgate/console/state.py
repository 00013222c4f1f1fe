"""The console's view of the approval queue: ApprovalRequests and ApprovalDecisions, fed by
watches, with what keeps the page from showing all of them.

One :class:`kube.informer.Informer` per kind and watched namespace (or one per kind for all
namespaces), as the controller's caches do, with the console user's own credentials. Every
change of an object bumps :attr:`ConsoleState.version`; so does every change of the
*health*: a namespace whose list or watch fails with anything but a lost connection (403:
no credentials to read it; 404: the CRDs are not installed; 401) is a :class:`Problem` named
by its namespace, and a lost API server is :meth:`ConsoleState.unreachable_since` (the UTC
time the console first saw it fail) until a list or watch works again. A monitor thread
checks the health every ``poll_interval`` seconds (the informers report errors by their
attributes, not by callbacks).

Threads: the informers call the handlers here on their own threads; the monitor runs on
another; readers are aiohttp handlers on the event loop. Writes to the decisions index and
the version happen under one lock; the stores are copy-on-write (a snapshot is one moment).
An SSE handler awaits :meth:`ConsoleState.wait_changed`, which the writers wake with
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from approvalgate.kube.backoff import Backoff
from approvalgate.kube.client import Client
from approvalgate.kube.errors import KubeError, UnreachableError
from approvalgate.kube.informer import Informer, wait_all_synced
from approvalgate.kube.resources import (
    APPROVAL_DECISIONS,
    APPROVAL_REQUESTS,
    Resource,
    object_key,
)
from approvalgate.kube.store import Change
from approvalgate.kube.view import slim
from approvalgate.kube.watches import READ_GRACE_SECONDS

DEFAULT_WATCH_TIMEOUT: Final = 60
DEFAULT_POLL_INTERVAL: Final = 0.5
WATCHED: Final = (APPROVAL_REQUESTS, APPROVAL_DECISIONS)
WHAT: Final[Mapping[Resource, str]] = {
    APPROVAL_REQUESTS: "approval requests",
    APPROVAL_DECISIONS: "approval decisions",
}


@dataclass(frozen=True)
class Problem:
    """Why the console cannot show (part of) a namespace: ``namespace`` is "" for all
    namespaces (-A); ``message`` is one sentence naming the namespace; ``advice`` what to do."""

    namespace: str
    message: str
    advice: str = ""


@dataclass(frozen=True)
class _Health:
    problems: tuple[Problem, ...]
    unreachable: str  # "" when reachable, else the error message


_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[int]"]


class ConsoleState:
    """ApprovalRequests and ApprovalDecisions in ``namespaces`` (empty: all namespaces)."""

    def __init__(
        self,
        client: Client,
        namespaces: Sequence[str] = (),
        *,
        watch_timeout: int = DEFAULT_WATCH_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        backoff: Callable[[], Backoff] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.server: str = client.server
        self.namespaces: tuple[str | None, ...] = tuple(dict.fromkeys(namespaces)) or (None,)
        self.watch_timeout = watch_timeout
        self.poll_interval = poll_interval
        self._clock = clock
        self.informers: dict[Resource, dict[str | None, Informer]] = {
            resource: {
                ns: Informer(
                    client,
                    resource,
                    ns,
                    watch_timeout=watch_timeout,
                    backoff=backoff() if backoff is not None else Backoff(maximum=10.0),
                    transform=slim,
                )
                for ns in self.namespaces
            }
            for resource in WATCHED
        }
        for informer in self.informers[APPROVAL_REQUESTS].values():
            informer.add_handler(self._request_changed)
        for informer in self.informers[APPROVAL_DECISIONS].values():
            informer.add_handler(self._decision_changed)
        self._lock = threading.Lock()
        self._version = 0
        self._waiters: list[_Waiter] = []
        # decisions: request (namespace, name) -> decision objects, oldest first
        self._decisions: dict[tuple[str, str], tuple[dict[str, Any], ...]] = {}
        self._decision_at: dict[str, tuple[str, str]] = {}  # object key -> request key
        self._health = _Health((), "")
        self._unreachable_at: datetime | None = None
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for informer in self._all():
            informer.start()
        self._monitor = threading.Thread(
            target=self._watch_health, name="console state health", daemon=True
        )
        self._monitor.start()

    def stop(self) -> None:
        """Stop the watches and the monitor (a stop wakes each blocked read)."""
        self._stopping.set()
        for informer in self._all():
            # urllib3 may refuse to shut down a connection that is already closing
            with contextlib.suppress(ValueError, OSError):
                informer.stop(timeout=5.0)
        if self._monitor is not None:
            self._monitor.join(5.0)

    def __enter__(self) -> ConsoleState:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Every watch has listed once (True), or ``timeout`` passed (False)."""
        return wait_all_synced(self._all(), timeout)

    # --- reads (any thread) ------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Bumped on every change of an object or of the health (problems, reachability)."""
        return self._version

    @property
    def all_namespaces(self) -> bool:
        return self.namespaces == (None,)

    @property
    def synced(self) -> bool:
        """Every watch has listed once (the page says "loading" until then)."""
        return all(informer.synced for informer in self._all())

    def requests(self) -> list[dict[str, Any]]:
        """Every ApprovalRequest held (any phase), by namespace then name."""
        found: list[dict[str, Any]] = []
        for informer in self.informers[APPROVAL_REQUESTS].values():
            found.extend(informer.snapshot().values())
        found.sort(key=_name_key)
        return found

    def request(self, namespace: str, name: str) -> dict[str, Any] | None:
        by_namespace = self.informers[APPROVAL_REQUESTS]
        informer = by_namespace.get(namespace) or by_namespace.get(None)
        return informer.get(name, namespace) if informer is not None else None

    def decisions(self) -> list[dict[str, Any]]:
        """Every ApprovalDecision held."""
        found: list[dict[str, Any]] = []
        for informer in self.informers[APPROVAL_DECISIONS].values():
            found.extend(informer.snapshot().values())
        return found

    def decisions_for(self, namespace: str, name: str) -> tuple[dict[str, Any], ...]:
        """The ApprovalDecisions about request ``namespace/name``, oldest first (creation
        time, then resourceVersion: etcd's write order, then name)."""
        return self._decisions.get((namespace, name), ())

    def watches(self, namespace: str) -> bool:
        """Whether the console watches ``namespace`` (every namespace with -A)."""
        return self.all_namespaces or namespace in self.namespaces

    def problems(self) -> list[str]:
        """One sentence per namespace and kind the console cannot read, and why (with what
        to do): what the page shows."""
        return [
            f"{p.message} ({p.advice})" if p.advice else p.message for p in self._health.problems
        ]

    def problem_details(self) -> tuple[Problem, ...]:
        return self._health.problems

    def unreachable_since(self) -> str | None:
        """``HH:MM:SS`` (UTC) since when the API server cannot be reached; None when it can."""
        since = self._unreachable_at
        return None if since is None else since.strftime("%H:%M:%S")

    @property
    def unreachable_at(self) -> datetime | None:
        """When the console first saw the API server fail (UTC); None while it works."""
        return self._unreachable_at

    @property
    def unreachable_error(self) -> str:
        """The last connection error while the API server cannot be reached, else ""."""
        return self._health.unreachable

    @property
    def banner(self) -> str:
        """The sentence for the page while the API server cannot be reached, else ""."""
        since = self.unreachable_since()
        if since is None:
            return ""
        return f"the API server at {self.server} cannot be reached since {since}; retrying"

    async def wait_changed(self, after: int, timeout: float | None = None) -> int:
        """The version once it differs from ``after`` (at once if it already does), or the
        current one after ``timeout`` seconds. Call it on the event loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._version != after:
                return self._version
            future: asyncio.Future[int] = loop.create_future()
            waiter = (loop, future)
            self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return self._version
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    # --- writers -----------------------------------------------------------------------------

    def _changed(self) -> None:
        with self._lock:
            self._version += 1
            version = self._version
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, future, version)

    def _request_changed(self, change: Change) -> None:
        self._changed()

    def _decision_changed(self, change: Change) -> None:
        with self._lock:
            old = self._decision_at.pop(change.key, None)
            if old is not None:
                kept = tuple(d for d in self._decisions.get(old, ()) if object_key(d) != change.key)
                self._put(old, kept)
            if change.type != "DELETED":
                request = _request_of(change.object)
                if request is not None:
                    found = [*self._decisions.get(request, ()), change.object]
                    found.sort(key=_decision_order)
                    self._decision_at[change.key] = request
                    self._put(request, tuple(found))
        self._changed()

    def _put(self, key: tuple[str, str], decisions: tuple[dict[str, Any], ...]) -> None:
        if decisions:
            self._decisions[key] = decisions
        else:
            self._decisions.pop(key, None)

    # --- health ------------------------------------------------------------------------------

    def _watch_health(self) -> None:
        while not self._stopping.wait(self.poll_interval):
            self.check_health()

    def check_health(self) -> None:
        """Look at every watch now; bump the version when the problems or the API server's
        reachability changed (the monitor thread calls it every ``poll_interval``)."""
        health = self._current_health()
        if health == self._health:
            return
        if health.unreachable and self._unreachable_at is None:
            self._unreachable_at = self._clock()
        elif not health.unreachable:
            self._unreachable_at = None
        self._health = health
        self._changed()

    def _current_health(self) -> _Health:
        problems: list[Problem] = []
        unreachable = ""
        stale_after = self.watch_timeout + READ_GRACE_SECONDS + 5
        for resource, by_namespace in self.informers.items():
            for namespace, informer in by_namespace.items():
                error = informer.list_error or informer.watcher.last_error
                if isinstance(error, UnreachableError):
                    unreachable = unreachable or error.message
                elif error is not None:  # a 403 after the first list too (RBAC revoked)
                    problems.append(_problem(resource, namespace, error))
                elif informer.synced and informer.seconds_since_contact() > stale_after:
                    seconds = informer.seconds_since_contact()
                    unreachable = unreachable or (
                        f"no answer from the API server at {self.server} for {seconds:.0f} s"
                    )
        return _Health(tuple(problems), unreachable)

    def _all(self) -> Iterator[Informer]:
        for by_namespace in self.informers.values():
            yield from by_namespace.values()


def _problem(resource: Resource, namespace: str | None, error: KubeError) -> Problem:
    what = WHAT.get(resource, resource.plural)
    where = f"in namespace {namespace}" if namespace else "in all namespaces"
    if error.status == 403:
        message = f"no credentials to read {what} {where}: {error.message}"
    elif error.status == 404:
        message = (
            f"cannot read {what} {where}: the API server does not serve them ({error.message})"
        )
    else:
        message = f"cannot read {what} {where}: {error.message}"
    return Problem(namespace or "", message, error.advice)


def _resolve(future: asyncio.Future[int], version: int) -> None:
    if not future.done():
        future.set_result(version)


def _name_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _request_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    spec = obj.get("spec")
    name = spec.get("requestName") if isinstance(spec, Mapping) else None
    namespace, _ = _name_key(obj)
    if not isinstance(name, str) or not name or not namespace:
        return None
    return namespace, name


def _decision_order(obj: Mapping[str, Any]) -> tuple[str, int, str]:
    meta = obj.get("metadata") or {}
    version = str(meta.get("resourceVersion") or "")
    return (
        str(meta.get("creationTimestamp") or ""),
        int(version) if version.isdigit() else 0,
        str(meta.get("name") or ""),
    )
