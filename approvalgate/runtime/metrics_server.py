"""Prometheus metrics on their own plain-HTTP port: ``GET /metrics``.

One process: its metrics live in its own ``CollectorRegistry`` and it serves that registry.
A supervisor and N workers: a scrape must see the sum over all processes, not whichever
worker the kernel picked, so the workers run in prometheus_client's multiprocess mode
(:data:`MULTIPROC_ENV` set by the supervisor before it starts them, each worker writing its
own files there) and only the supervisor serves the port, reading every worker's files with
:func:`multiprocess_registry`. A worker that died is forgotten with
:func:`mark_process_dead` (its live gauges stop counting). What the metrics are, and how
their gauges combine over processes (``multiprocess_mode``), is the caller's business.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, multiprocess
from prometheus_client import generate_latest as _generate_latest

from approvalgate.runtime.ports import listen

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def generate_latest(registry: CollectorRegistry) -> bytes:
    """The text exposition of everything in ``registry``."""
    return _generate_latest(registry)


def multiprocess_registry(path: Path) -> CollectorRegistry:
    """A registry that reads the files every worker writes in ``path``."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    return registry


def mark_process_dead(pid: int, path: Path) -> None:
    """Forget a dead worker's live gauges in multiprocess mode."""
    multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


def metrics_app(registry: CollectorRegistry) -> web.Application:
    """A plain-HTTP app serving ``GET /metrics`` from ``registry``."""

    async def handle(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    return app


class MetricsServer:
    """``GET /metrics`` for ``registry`` on ``host:port`` until :meth:`stop`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.port = 0  # the port bound (``port=0`` at start picks a free one)
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen; a port that cannot be bound raises :class:`runtime.ports.ListenError`."""
        runner = web.AppRunner(metrics_app(self.registry), handle_signals=False, access_log=None)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, host, port)
        await listen(site.start(), host, port)
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
