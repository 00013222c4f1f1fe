"""Running the webhook: one worker in-process, or a supervisor and N worker processes.

A :class:`Worker` loads the bundle and the certificate, listens with TLS, polls both files
for changes and drains on stop: the listener closes first; admission requests in flight,
including those whose body is still arriving, are finished for up to the grace period while
every response tells keep-alive clients ``Connection: close``; then aiohttp closes the idle
connections (``AppRunner.cleanup``) and the process exits 0.

``--workers N`` (N > 1): the supervisor (:func:`supervise`) starts N processes
(``python -m approvalgate.webhook.server CONFIG_JSON``: fresh interpreters, nothing forked
from a running event loop); each binds the same port with ``SO_REUSEPORT`` and the kernel
spreads new connections over them. The supervisor serves the metrics port from the workers'
prometheus_client multiprocess files (see :mod:`runtime.metrics_server`), restarts a worker that
dies after it started, gives up when one fails at start-up (port taken, bad certificate),
and forwards SIGTERM/SIGINT to every worker and waits for their drain. Workers whose
supervisor disappears stop by themselves.

Signals, the wait for work in flight, the metrics port and the log lines are
:mod:`runtime`'s (shared with every long-running process); the order of the drain, the
listener and the worker pool are the webhook's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from aiohttp import web

from approvalgate.approvals.bundle_floor import FloorReader
from approvalgate.approvals.errors import ApprovalgateError
from approvalgate.approvals.view import ClusterView
from approvalgate.runtime import drain
from approvalgate.runtime.logs import fields
from approvalgate.runtime.metrics_server import (
    MULTIPROC_ENV,
    MetricsServer,
    mark_process_dead,
    multiprocess_registry,
)
from approvalgate.runtime.ports import listen
from approvalgate.webhook import logs
from approvalgate.webhook.app import ADMISSION, create_app
from approvalgate.webhook.config import ServeConfig
from approvalgate.webhook.listener import (
    HANDSHAKE_TIMEOUT,
    Listener,
    connection_limit,
    raise_fd_limit,
)
from approvalgate.webhook.metrics import Metrics
from approvalgate.webhook.state import BundleState
from approvalgate.webhook.tls import CertificateState
from approvalgate.webhook.view import ViewState

STARTUP_WINDOW = 5.0  # a worker that dies this soon after starting will not do better again
RESTART_DELAY = 1.0
# after a 408/413, how long the rest of an unread body is drained before closing (aiohttp's
# default is 10 s: a stalled client would hold the connection that long)
LINGERING_TIME = 2.0
# after the drain, what aiohttp's own shutdown may still wait for (requests that raced in)
FINAL_WAIT = 2.0

log = logs.get_logger("server")


class Worker:
    """One serving process's webhook: start, serve until asked, drain."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        serve_metrics: bool = True,
        reuse_port: bool = False,
        clock: Callable[[], datetime] | None = None,
        view: ClusterView | None = None,
    ) -> None:
        """``clock`` and ``view`` are for tests only: decide() as of that time, with that
        cluster view (nothing is started for it)."""
        self.config = config
        self.serve_metrics = serve_metrics and config.metrics_port != 0
        self.reuse_port = reuse_port
        self.clock = clock
        self.metrics = Metrics.create()
        self.state = BundleState(
            config.bundle,
            self.metrics,
            trust=config.trust(),
            signatures=config.signatures_path,
            floor=_floor(config),
        )
        self.certificate = CertificateState(config.tls_cert, config.tls_key, self.metrics)
        self.views = ViewState(
            config.cluster_view,
            kubeconfig=config.kubeconfig,
            context=config.context,
            max_age=config.view_max_age,
            metrics=self.metrics,
            fixed=view,
        )
        self.state.listeners.append(self.views.ensure)  # starts it with the first bundle needing it
        self.app = create_app(
            self.state,
            self.certificate,
            self.metrics,
            max_body_bytes=config.max_body_bytes,
            read_timeout=config.read_timeout,
            clock=clock,
            views=self.views,
        )
        self.runner: web.AppRunner | None = None
        self.listener: Listener | None = None
        self.metrics_server: MetricsServer | None = None
        self.port = 0
        self.metrics_port = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Load what we can, listen, start polling. Raises ApprovalgateError on failure."""
        self.state.load()
        self.certificate.load()
        fd_limit = raise_fd_limit()
        max_connections = connection_limit(self.config.max_connections, fd_limit)
        if max_connections < self.config.max_connections:
            log.warning(
                "connection limit lowered to fit the file descriptor limit",
                extra=fields(
                    max_connections=max_connections,
                    requested=self.config.max_connections,
                    nofile=fd_limit,
                ),
            )
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=FINAL_WAIT,
            lingering_time=LINGERING_TIME,
            # closes a connection with no complete request head this long after its
            # handshake or its last response (idle keep-alive and slow heads alike)
            keepalive_timeout=self.config.idle_timeout,
        )
        await runner.setup()
        self.runner = runner
        listener = Listener(
            runner.server,  # type: ignore[arg-type]  # aiohttp's Server makes the protocols
            self.certificate.context,
            max_connections=max_connections,
            handshake_timeout=min(HANDSHAKE_TIMEOUT, self.config.idle_timeout),
            metrics=self.metrics,
        )
        await listen(
            listener.start(
                self.config.host, self.config.port, reuse_port=self.reuse_port, backlog=1024
            ),
            self.config.host,
            self.config.port,
        )
        self.listener = listener
        self.app[ADMISSION].touch = listener.touch
        self.port = listener.port
        if self.serve_metrics:
            self.metrics_server = MetricsServer(self.metrics.registry)
            await self.metrics_server.start(self.config.host, self.config.metrics_port)
            self.metrics_port = self.metrics_server.port
        interval = self.config.reload_interval
        self._tasks = [
            asyncio.create_task(self.state.watch(interval)),
            asyncio.create_task(self.certificate.watch(interval)),
            asyncio.create_task(self.views.watch(lambda: self.state.bundle)),
        ]
        log.info(
            "serving",
            extra=fields(
                host=self.config.host,
                port=self.port,
                metrics_port=self.metrics_port or None,
                bundle=str(self.config.bundle),
                generation=self.state.generation,
                ready=self.state.bundle is not None,
                cluster_view=self.config.cluster_view,
                view_started=self.views.view is not None,
            ),
        )

    async def stop(self) -> None:
        """Stop accepting, finish requests in flight (up to the grace period), release all."""
        admission = self.app[ADMISSION]
        admission.in_flight.draining = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        started = time.perf_counter()
        drained = True
        if self.listener is not None:
            await self.listener.stop()  # no new connections; open ones keep being read
            self.listener = None
        if self.runner is not None:
            drained = await admission.drain(self.config.grace_period)
            await self.runner.cleanup()  # closes idle connections, then waits FINAL_WAIT
            self.runner = None
        if self.metrics_server is not None:
            await self.metrics_server.stop()
            self.metrics_server = None
        await self.views.stop()
        log.info(
            "stopped",
            extra=fields(drain_ms=round((time.perf_counter() - started) * 1000), drained=drained),
        )


async def run_worker(config: ServeConfig, *, supervised: bool = False) -> int:
    """Serve until SIGTERM/SIGINT (or the supervisor's death), then drain; 0 on a clean stop."""
    stop = drain.stop_on_signals()
    worker = Worker(
        config,
        serve_metrics=not supervised,
        reuse_port=config.workers > 1,
    )
    return await drain.serve(
        worker, stop, log=log, grace_period=config.grace_period, orphan_check=supervised
    )


async def supervise(config: ServeConfig) -> int:
    """Start ``config.workers`` worker processes on one port and look after them."""
    stop = drain.stop_on_signals()
    with tempfile.TemporaryDirectory(prefix="approvalgate-metrics-") as multiproc_dir:
        pool = _WorkerPool(config, Path(multiproc_dir))
        metrics_server = None
        try:
            if config.metrics_port:
                metrics_server = MetricsServer(multiprocess_registry(Path(multiproc_dir)))
                await metrics_server.start(config.host, config.metrics_port)
            return await pool.run(stop)
        finally:
            await pool.terminate()
            if metrics_server is not None:
                await metrics_server.stop()


class _WorkerPool:
    def __init__(self, config: ServeConfig, multiproc_dir: Path) -> None:
        self.config = config
        self.multiproc_dir = multiproc_dir
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.started: dict[int, float] = {}
        package_root = str(Path(__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH")
        self.env = {
            **os.environ,
            MULTIPROC_ENV: str(multiproc_dir),
            "PYTHONPATH": package_root + (os.pathsep + path if path else ""),
        }

    async def spawn(self, slot: int) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "approvalgate.webhook.server", self.config.to_json(), env=self.env
        )
        self.procs[slot] = proc
        self.started[slot] = time.monotonic()
        log.info("worker started", extra=fields(worker=slot, worker_pid=proc.pid))

    async def run(self, stop: asyncio.Event) -> int:
        for slot in range(self.config.workers):
            await self.spawn(slot)
        stopping = asyncio.create_task(stop.wait())
        try:
            while True:
                waits = {
                    asyncio.create_task(proc.wait()): slot for slot, proc in self.procs.items()
                }
                done, _ = await asyncio.wait(
                    {stopping, *waits}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in waits:
                    task.cancel()
                if stopping in done:
                    log.info("stopping workers", extra=fields(workers=len(self.procs)))
                    return await self.terminate()
                for task in done:
                    slot = waits[task]
                    if not await self._respawn(slot):
                        await self.terminate()
                        return 1
        finally:
            stopping.cancel()

    async def _respawn(self, slot: int) -> bool:
        proc = self.procs[slot]
        self._mark_dead(proc)
        lived = time.monotonic() - self.started[slot]
        log.error(
            "worker exited",
            extra=fields(worker=slot, worker_pid=proc.pid, code=proc.returncode),
        )
        if lived < STARTUP_WINDOW:
            log.error("worker failed at start-up; giving up", extra=fields(worker=slot))
            return False
        await asyncio.sleep(RESTART_DELAY)
        await self.spawn(slot)
        return True

    async def terminate(self) -> int:
        """SIGTERM every live worker, wait for the drain, kill stragglers; 0 if all exit 0."""
        alive = [p for p in self.procs.values() if p.returncode is None]
        for proc in alive:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = self.config.grace_period + 5.0
        try:
            async with asyncio.timeout(deadline):
                await asyncio.gather(*(p.wait() for p in alive))
        except TimeoutError:
            for proc in alive:
                if proc.returncode is None:
                    log.error("worker did not drain in time; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
        for proc in alive:
            self._mark_dead(proc)
        codes = [p.returncode for p in alive]
        return 0 if all(code == 0 for code in codes) else 1

    def _mark_dead(self, proc: asyncio.subprocess.Process) -> None:
        mark_process_dead(proc.pid, self.multiproc_dir)


def _floor(config: ServeConfig) -> FloorReader | None:
    """The revision floor of --bundle-floor (signed bundles only), None without it."""
    if not config.bundle_floor or config.allow_unsigned_bundle:
        return None
    from approvalgate.kube.floor import connect_floor

    return connect_floor(config.bundle_floor, config.kubeconfig, config.context)


def _worker_main(argv: list[str]) -> int:
    config = ServeConfig.from_json(argv[0])
    logs.configure(config.log_level)
    try:
        return asyncio.run(run_worker(config, supervised=True))
    except ApprovalgateError as exc:
        logs.get_logger("server").error("cannot start", extra=fields(error=exc.render()))
        return 1


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
