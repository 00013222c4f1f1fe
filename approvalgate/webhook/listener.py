"""Accepting HTTPS connections into a bounded table; when full, the longest-waiting goes.

Why not aiohttp's own listener (``TCPSite`` → ``loop.create_server``): it accepts without
limit, waits 60 s for a TLS handshake, and aiohttp has no deadline on a request head, so a
client sending one header byte a second holds its connection — a file descriptor, and about
300 KiB (asyncio's 256 KiB TLS read buffer, OpenSSL's state, aiohttp's handler) — for as long
as it likes. Enough such clients (slowloris) exhaust the descriptors or the memory limit and
nobody else is answered. So this module accepts the connections itself:

- **A table of at most ``max_connections`` connections** per worker, counted from accept to
  close (during the TLS handshake too). The limit also stays below the process's descriptor
  limit (``RLIMIT_NOFILE``, whose soft value :func:`raise_fd_limit` lifts to the hard one),
  so ``accept`` does not fail with EMFILE in normal operation.
- **When the table is full, a connection is closed to make room** (reset, no TLS
  close_notify wait). It is one of the client address holding the most connections (the
  newcomer's own if it holds as many), so a flood from some addresses cannot push out
  others' connections. Of that address's connections, the one whose current wait began
  longest ago goes: a wait begins at the handshake, when a request begins and when it has
  been answered (:meth:`Listener.touch`), so idle keep-alive connections and slow heads or
  bodies go first; handshakes only when none is past its handshake. A connection whose wait
  is younger than ``MIN_WAIT`` (a handshake younger than ``MIN_HANDSHAKE``) is not taken: a
  normal client's request arrives within milliseconds. If nothing may go yet, a newcomer
  from the busiest address is refused at once, before any TLS work, and one from another
  address waits in accept (the next stay in the kernel's backlog) until something may go.
  nginx reuses idle keep-alive connections the same way when ``worker_connections`` runs
  out; we also take slow ones.
- **Deadlines**: the TLS handshake must finish within ``handshake_timeout``; after it,
  aiohttp's keep-alive timer (``idle_timeout``, started at the handshake and after each
  response, and not reset by partial data) closes a connection that has not completed a
  request head by then; the request body has the app's read timeout. A closing connection
  waits at most ``SHUTDOWN_TIMEOUT`` for the peer's TLS close_notify.
- ``accept`` failing with EMFILE/ENFILE (descriptors used elsewhere) evicts the oldest
  waiting connection and backs off briefly instead of spinning.

The decision and its reasons are in docs/design.md ("Slow clients and the connection table").
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import resource
import socket
import ssl
from collections.abc import Callable
from typing import Any

from approvalgate.runtime.logs import fields
from approvalgate.webhook.logs import get_logger
from approvalgate.webhook.metrics import Metrics

DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_IDLE_TIMEOUT = 120.0  # above Go clients' 90 s idle timeout: the API server closes first
HANDSHAKE_TIMEOUT = 10.0
# a connection is closed to make room only once its current wait has lasted this long: past
# the handshake, a normal client's request arrives (and is read) within milliseconds
MIN_WAIT = 0.25
# ... and a handshake only once it has lasted this long: a new connection must not evict one
# whose handshake is merely queued behind others on a busy worker
MIN_HANDSHAKE = 1.0
SHUTDOWN_TIMEOUT = 2.0  # asyncio's default of 30 s would hold a slow client's descriptor on
# descriptors kept for files (bundle, certificate, metrics, logs), the loop, and connections
# evicted whose socket is not closed yet: at least this many, and an eighth of the limit
FD_RESERVE = 64
ACCEPT_BACKOFF = 0.05
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

log = get_logger("listener")


def raise_fd_limit() -> int:
    """Lift the soft RLIMIT_NOFILE to the hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connection_limit(requested: int, fd_soft_limit: int) -> int:
    """``requested``, lowered so that the connections leave FD_RESERVE descriptors, or an eighth
    of the limit if more, for everything else."""
    return max(1, min(requested, fd_soft_limit - max(FD_RESERVE, fd_soft_limit // 8)))


class _Peer:
    """The open connections from one client address: in their TLS handshake (oldest first)
    and past it (oldest wait first); dicts keep insertion order."""

    __slots__ = ("address", "handshaking", "waiting")

    def __init__(self, address: str) -> None:
        self.address = address
        self.handshaking: dict[_Slot, None] = {}
        self.waiting: dict[_Slot, None] = {}

    def __len__(self) -> int:
        return len(self.handshaking) + len(self.waiting)


class _Slot:
    """One accepted connection: its handshake task until connected, then its transport."""

    __slots__ = ("peer", "since", "task", "transport")

    def __init__(self, peer: _Peer, accepted: float) -> None:
        self.peer = peer
        self.since = accepted  # accepted; once past the handshake, when its wait began
        self.task: asyncio.Task[None] | None = None
        self.transport: asyncio.Transport | None = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # no TLS shutdown: the peer may be the slow one
        elif self.task is not None:
            self.task.cancel()  # connect_accepted_socket closes the socket when cancelled


class _Tracked(asyncio.Protocol):
    """The aiohttp protocol of one connection, with the listener told when it closes."""

    __slots__ = ("_inner", "_release")

    def __init__(self, inner: asyncio.Protocol, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release = release

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._inner.connection_lost(exc)
        finally:
            self._release()


class Listener:
    """Accept TLS connections for ``protocol_factory`` (an aiohttp ``Server``) on one port."""

    def __init__(
        self,
        protocol_factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        metrics: Metrics | None = None,
    ) -> None:
        self.protocol_factory = protocol_factory
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.metrics = metrics
        self.port = 0
        self.open_connections = 0
        self._peers: dict[str, _Peer] = {}
        self._by_transport: dict[asyncio.Transport, _Slot] = {}
        self._room = asyncio.Event()  # set when a connection closes
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool, backlog: int) -> None:
        """Bind and listen (OSError if the port cannot be had), then accept in a task."""
        family = _family(host, port)
        sock = socket.create_server(
            (host, port), family=family, backlog=backlog, reuse_port=reuse_port
        )
        sock.setblocking(False)
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        self._accepting = asyncio.create_task(self._accept_loop())

    async def stop(self) -> None:
        """Stop accepting and drop connections still in their handshake; connected ones stay
        (the runner's cleanup closes them after the drain)."""
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        handshaking = [
            slot.task for peer in self._peers.values() for slot in peer.handshaking if slot.task
        ]
        for task in handshaking:
            task.cancel()
        await asyncio.gather(*handshaking, return_exceptions=True)

    def touch(self, transport: asyncio.Transport | None) -> None:
        """A request on ``transport`` has begun or been answered: its wait starts again."""
        slot = self._by_transport.get(transport) if transport is not None else None
        if slot is not None:
            waiting = slot.peer.waiting
            if slot in waiting:
                del waiting[slot]
                waiting[slot] = None
                slot.since = asyncio.get_running_loop().time()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        sock = self._sock
        assert sock is not None
        while True:
            try:
                conn, address = await loop.sock_accept(sock)
            except OSError as exc:
                if exc.errno in _OUT_OF_DESCRIPTORS:
                    log.warning(
                        "accept failed; closing the oldest waiting connection",
                        extra=fields(error=exc.strerror, connections=self.open_connections),
                    )
                    peer = self._heaviest()
                    if peer is not None:
                        self._make_room(peer, loop.time(), force=True)
                    await asyncio.sleep(ACCEPT_BACKOFF)
                continue  # ECONNABORTED and the like: that client is gone
            peer = self._peers.get(address[0])
            if peer is None:
                peer = self._peers[address[0]] = _Peer(address[0])
            if not await self._admit(peer, loop):
                conn.close()
                self._count("refused")
                self._drop_if_empty(peer)
                await asyncio.sleep(0)
                continue
            slot = _Slot(peer, loop.time())
            peer.handshaking[slot] = None
            self.open_connections += 1
            slot.task = loop.create_task(self._connect(conn, slot))
            self._gauge()
            # sock_accept does not yield while connections are pending: let the sockets of
            # evicted connections close (and handshakes move) before the next accept
            await asyncio.sleep(0)

    async def _admit(self, peer: _Peer, loop: asyncio.AbstractEventLoop) -> bool:
        """Room for one more connection from ``peer``: now, after evicting one, or after
        waiting (holding this one; the next stay in the kernel's backlog). False: refuse it.

        The connection evicted is one of the address holding the most (the newcomer's own
        address when it holds as many): a flood from some addresses cannot push out the
        connections of others. When that address is the newcomer's and none of its
        connections may go yet, the newcomer is refused at once, before any TLS work.
        """
        while self.open_connections >= self.max_connections:
            heaviest = self._heaviest()
            assert heaviest is not None
            if len(peer) >= len(heaviest):
                heaviest = peer
            now = loop.time()
            if self._make_room(heaviest, now):
                return True
            if heaviest is peer:
                return False
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(self._next_evictable(heaviest, now) - now, 0.001)):
                    await self._room.wait()
        return True

    async def _connect(self, conn: socket.socket, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        inner = self.protocol_factory()
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: _Tracked(inner, lambda: self._forget(slot)),
                conn,
                ssl=self.ssl_context,
                ssl_handshake_timeout=self.handshake_timeout,
                ssl_shutdown_timeout=SHUTDOWN_TIMEOUT,
            )
        except asyncio.CancelledError:
            conn.close()
            self._forget(slot)
            raise
        except Exception as exc:  # handshake failed or timed out, peer reset...
            conn.close()
            self._forget(slot)
            self._count("handshake-failed")
            log.debug("TLS handshake failed", extra=fields(error=repr(exc)))
            return
        finally:
            slot.task = None
        peer = slot.peer
        if slot in peer.handshaking:
            del peer.handshaking[slot]
            peer.waiting[slot] = None
            slot.since = loop.time()
            slot.transport = transport
            self._by_transport[transport] = slot
        else:  # evicted or closed by the peer as the handshake finished
            transport.abort()

    def _heaviest(self) -> _Peer | None:
        return max(self._peers.values(), key=len, default=None)

    def _make_room(self, peer: _Peer, now: float, *, force: bool = False) -> bool:
        """Close ``peer``'s connection past its handshake that has waited longest for a
        request, else its oldest handshake, if that has lasted MIN_WAIT or MIN_HANDSHAKE
        (any age with ``force``); False if none may go yet."""
        for table, reason, least in (
            (peer.waiting, "evicted", MIN_WAIT),
            (peer.handshaking, "evicted-in-handshake", MIN_HANDSHAKE),
        ):
            slot = next(iter(table), None)
            if slot is not None and (force or now - slot.since >= least):
                self._forget(slot)
                slot.close()
                self._count(reason)
                return True
        return False

    @staticmethod
    def _next_evictable(peer: _Peer, now: float) -> float:
        """When one of ``peer``'s connections may be evicted (if none closes before)."""
        times = [next(iter(peer.waiting)).since + MIN_WAIT] if peer.waiting else []
        if peer.handshaking:
            times.append(next(iter(peer.handshaking)).since + MIN_HANDSHAKE)
        return min(times, default=now + ACCEPT_BACKOFF)

    def _forget(self, slot: _Slot) -> None:
        peer = slot.peer
        table = peer.waiting if slot in peer.waiting else peer.handshaking
        if slot in table:  # not forgotten already (evicted, then its connection_lost)
            del table[slot]
            self.open_connections -= 1
            self._room.set()
            self._gauge()
            self._drop_if_empty(peer)
        if slot.transport is not None:
            self._by_transport.pop(slot.transport, None)

    def _drop_if_empty(self, peer: _Peer) -> None:
        if not len(peer) and self._peers.get(peer.address) is peer:
            del self._peers[peer.address]

    def _count(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.connections_dropped.labels(reason).inc()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.connections_open.set(self.open_connections)


def _family(host: str, port: int) -> socket.AddressFamily:
    infos: list[Any] = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    return socket.AddressFamily(infos[0][0])
