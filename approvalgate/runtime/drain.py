"""Stopping a serving process cleanly: SIGTERM/SIGINT, work in flight, a vanished supervisor.

:func:`serve` runs one :class:`Service` until the event of :func:`stop_on_signals` is set
(SIGTERM from the kubelet, Ctrl-C, or the supervisor forwarding either), logs ``draining``
and calls :meth:`Service.stop`, whose order is the service's own; the usual one is: stop
taking new work (close the listener, stop the watches), wait for the work in flight
(:meth:`InFlight.drain`, bounded by the grace period), then release what is left
(connections, ports, leases) and return. A service that fails to start is stopped (so
that what it bound is released) and the error goes to the caller. A worker started by a
supervisor also stops when that supervisor is gone (``orphan_check``): a worker nobody
forwards SIGTERM to must not serve on forever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Final, Protocol

from approvalgate.runtime.logs import fields

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
ORPHAN_CHECK: Final = 1.0  # seconds between two looks at the parent process


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class InFlight:
    """Work being done (requests, reconciles), counted so that a drain can wait for it."""

    __slots__ = ("_idle", "active", "draining")

    def __init__(self) -> None:
        self.active = 0
        self.draining = False  # set by drain() (or earlier by the service): stop taking work
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        self.active += 1
        self._idle.clear()

    def end(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Wait until no work is in flight; False when some still is after ``timeout`` s."""
        self.draining = True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


def stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM and SIGINT set, in the running loop (instead of dying)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    return stop


async def serve(
    service: Service,
    stop: asyncio.Event,
    *,
    log: logging.Logger,
    grace_period: float,
    orphan_check: bool = False,
) -> int:
    """Start ``service``, wait for ``stop``, drain (``service.stop()``); 0 on a clean stop.

    ``grace_period`` is what the service's drain allows, logged with ``draining``;
    ``orphan_check``: also stop when the parent process (the supervisor) is gone.
    """
    try:
        await service.start()
    except BaseException:
        await service.stop()
        raise
    watchdog = asyncio.create_task(_orphan_watch(stop, log)) if orphan_check else None
    await stop.wait()
    log.info("draining", extra=fields(grace_period=grace_period))
    if watchdog is not None:
        watchdog.cancel()
    await service.stop()
    return 0


async def _orphan_watch(stop: asyncio.Event, log: logging.Logger) -> None:
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(ORPHAN_CHECK)
    log.warning("supervisor is gone; stopping")
    stop.set()
