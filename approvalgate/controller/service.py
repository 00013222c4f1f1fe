"""The controller process: the bundle file, /healthz and /readyz, /metrics, and the drain.

``/healthz`` answers 200 while the process serves (the kubelet restarts it otherwise);
``/readyz`` answers 200 once a bundle is in force and every watch cache has listed and is in
contact with the API server (503 with the reason otherwise). Both replicas are ready: only
one leads, the other is warm for when the Lease changes hands. The bundle is a mounted file
reloaded like the webhook's (:mod:`runtime.filewatch`), opened like the webhook's
(:mod:`approvals.bundle_source`: only a bundle the pinned keys signed, never an older
revision; a refused one keeps the last good one); a new bundle in force queues every
request again. With ``--bundle-floor`` the controller also keeps the revision floor
(:mod:`approvals.bundle_floor`): each signed bundle put in force raises this environment's
floor to its revision (any replica: a raise never lowers it, so no leadership is needed),
retried every reload interval until the API server takes it; a bundle below the floor is
refused like the webhook's. SIGTERM: the worker finishes its reconcile
(``--grace-period``), the Lease is released, the watches stop, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from aiohttp import web

from approvalgate.approvals.bundle import Bundle
from approvalgate.approvals.bundle_floor import parse_reference, read_again
from approvalgate.approvals.bundle_source import UNSIGNED_WARNING, BundleSource, refusal_reason
from approvalgate.approvals.bundle_trust import BundleRefused
from approvalgate.controller.config import ControllerConfig
from approvalgate.controller.manager import Controller
from approvalgate.controller.metrics import Metrics
from approvalgate.kube.client import Client
from approvalgate.kube.errors import KubeError
from approvalgate.kube.floor import ConfigMapFloor
from approvalgate.runtime import drain
from approvalgate.runtime.filewatch import WatchedFile
from approvalgate.runtime.logs import fields
from approvalgate.runtime.metrics_server import MetricsServer
from approvalgate.runtime.ports import listen

log = logging.getLogger("approvalgate.controller")


class ControllerService:
    def __init__(self, config: ControllerConfig, client: Client) -> None:
        self.config = config
        self.metrics = Metrics.create()
        trust = config.trust()
        self.floor: ConfigMapFloor | None = None
        if config.bundle_floor and trust.signed:
            self.floor = ConfigMapFloor(client, *parse_reference(config.bundle_floor))
        self.floor_recorded = 0  # the revision this process last raised the floor to
        self._floor_error = ""
        self.source = BundleSource(
            trust, lambda: self.bundle_file.value, warn=log.warning, floor=self.floor
        )
        self.bundle_file: WatchedFile[Bundle] = WatchedFile(
            Path(config.bundle),
            self.source.open,
            log=log,
            what="bundle",
            unloaded="no request is reconciled",
            context=BundleSource.in_force_fields,
            on_switch=self._switched,
            on_failure=self.metrics.bundle_reload_failures.inc,
            companions=(config.signatures_path,),
            failure_fields=BundleSource.failure_fields,
            on_error=lambda exc: self.metrics.bundle_rejected.labels(refusal_reason(exc)).inc(),
            retry=lambda exc, in_force: read_again(refusal_reason(exc), in_force),
        )
        self.metrics.bundle_unsigned_allowed.set(0 if trust.signed else 1)
        if not trust.signed:
            log.warning(UNSIGNED_WARNING)
        self.controller = Controller(
            config, client, bundle=lambda: self.bundle_file.value, metrics=self.metrics
        )
        self.metrics_server: MetricsServer | None = None
        self.health_port = 0
        self._health: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.bundle_file.load()
        if self.config.metrics_port != 0:
            self.metrics_server = MetricsServer(self.metrics.registry)
            await self.metrics_server.start(self.config.host, self.config.metrics_port)
        if self.config.health_port != 0:
            runner = web.AppRunner(self._health_app(), handle_signals=False, access_log=None)
            await runner.setup()
            self._health = runner
            site = web.TCPSite(runner, self.config.host, self.config.health_port)
            await listen(site.start(), self.config.host, self.config.health_port)
            self.health_port = int(runner.addresses[0][1])
        self.controller.start()
        self._tasks.append(asyncio.create_task(self.bundle_file.watch(self.config.reload_interval)))
        if self.floor is not None:
            self._tasks.append(asyncio.create_task(self._keep_floor()))
        log.info(
            "controller started",
            extra=fields(
                identity=self.config.identity,
                lease=f"{self.config.lease_namespace}/{self.config.lease_name}",
                namespaces=list(self.config.namespaces) or "all",
                metrics_port=self.metrics_server.port if self.metrics_server else 0,
                health_port=self.health_port,
            ),
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await asyncio.to_thread(self.controller.stop, self.config.grace_period)
        if self._health is not None:
            await self._health.cleanup()
            self._health = None
        if self.metrics_server is not None:
            await self.metrics_server.stop()
            self.metrics_server = None
        log.info("controller stopped", extra=fields(identity=self.config.identity))

    def _switched(self, previous: Bundle | None, bundle: Bundle) -> None:
        self.metrics.bundle_loaded.set(1)
        self.metrics.bundle_revision.set(bundle.revision)
        log.info(
            "bundle loaded",
            extra=fields(
                path=str(self.config.bundle),
                generation=bundle.generation,
                revision=bundle.revision,
                previous_generation=previous.generation if previous is not None else "",
                environment=bundle.environment,
                cluster_view=bundle.cluster_view,
            ),
        )
        self.controller.resync()

    async def _keep_floor(self) -> None:
        """Raise the floor to each signed revision in force, retrying until it is taken."""
        while True:
            try:
                await self.raise_floor()
            except Exception:  # never stop keeping the floor
                log.exception("raising the bundle revision floor failed")
            await asyncio.sleep(self.config.reload_interval)

    async def raise_floor(self) -> None:
        """One try: the floor raised to the revision in force when this process has not yet."""
        bundle = self.bundle_file.value
        if self.floor is None or bundle is None or bundle.revision <= self.floor_recorded:
            return
        try:
            floor = await asyncio.to_thread(
                self.floor.raise_to, bundle.environment, bundle.revision
            )
        except (KubeError, BundleRefused) as exc:  # refused: its entry is malformed
            if exc.message != self._floor_error:
                self._floor_error = exc.message
                log.error(
                    "cannot raise the bundle revision floor; retrying",
                    extra=fields(
                        floor=self.floor.where,
                        revision=bundle.revision,
                        error=exc.message,
                        advice=exc.advice or "check the controller's RBAC on that ConfigMap",
                    ),
                )
            return
        self._floor_error = ""
        self.floor_recorded = bundle.revision
        self.metrics.bundle_floor.set(floor)
        log.info(
            "bundle revision floor recorded",
            extra=fields(
                floor=self.floor.where,
                environment=bundle.environment,
                revision=bundle.revision,
                recorded=floor,
            ),
        )

    def _health_app(self) -> web.Application:
        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok\n")

        async def readyz(_: web.Request) -> web.Response:
            if self.bundle_file.value is None:
                error = self.bundle_file.last_error
                refused = f" (refused: {refusal_reason(error)})" if error is not None else ""
                return web.Response(status=503, text=f"no bundle loaded{refused}\n")
            problem = self.controller.caches.problem()
            if problem:
                return web.Response(status=503, text=f"{problem}\n")
            leader = "leader" if self.controller.leading else "follower"
            return web.Response(text=f"ok ({leader})\n")

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        return app


async def run(config: ControllerConfig, client: Client) -> int:
    stop = drain.stop_on_signals()
    service = ControllerService(config, client)
    return await drain.serve(service, stop, log=log, grace_period=config.grace_period)
