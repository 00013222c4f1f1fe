"""Leader election on a ``coordination.k8s.io/v1`` Lease, with the official client's elector.

The algorithm is ``kubernetes.leaderelection.LeaderElection``'s (client-go's, ported): a
candidate takes the lock when it is missing, released, or has not changed for
``lease_duration`` seconds as observed locally (no clock comparison between machines); the
leader renews every ``retry_period`` seconds and stops leading when it could not renew for
``renew_deadline`` seconds (shorter than ``lease_duration``, so the old leader has stopped
before anyone else may take over).

What the installed client (35.x) does not give us, and this module adds:

- a **Lease** lock: the client ships only ``ConfigMapLock`` (a ``LeaseLock`` exists upstream
  but in no released version yet); :class:`LeaseLock` implements the same duck-typed lock
  interface (``get``/``create``/``update``, ``name``/``namespace``/``identity``) over our
  :class:`~kube.client.Client` (not the client's global default configuration), with
  optimistic concurrency: an update carries the resourceVersion it read, so two candidates
  cannot both win one round;
- a stoppable loop (:meth:`Elector.stop` wakes every wait), a candidate that becomes one
  again after losing the lease, and :meth:`Elector.release` on shutdown (holder cleared,
  duration 1 s: a follower takes over on its next try instead of waiting out the lease);
- :attr:`Elector.leading`: true only while the last successful renewal is younger than
  ``renew_deadline``, so a leader whose renewals stall stops writing before a new leader
  can exist, even before its renew loop notices.

The elector's own chatter (logger ``leaderelection``, every retry) is left at warning level;
the transitions are logged here.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes.leaderelection import electionconfig  # type: ignore[import-untyped]
from kubernetes.leaderelection.leaderelection import (  # type: ignore[import-untyped]
    LeaderElection,
)
from kubernetes.leaderelection.leaderelectionrecord import (  # type: ignore[import-untyped]
    LeaderElectionRecord,
)

from approvalgate.approvals.errors import UsageError
from approvalgate.kube.client import Client
from approvalgate.kube.errors import KubeError
from approvalgate.kube.resources import LEASES

log = logging.getLogger("approvalgate.kube.leader")
logging.getLogger("leaderelection").setLevel(logging.WARNING)

JITTER_FACTOR: Final = 1.2  # electionconfig.Config's: renew_deadline > 1.2 * retry_period


@dataclass(frozen=True)
class _Failure:
    """What the client's elector expects from a failed ``get``: a ``body`` with the code."""

    body: str
    reason: str


def check_timing(lease_duration: float, renew_deadline: float, retry_period: float) -> None:
    """The client's own rules (it would ``sys.exit`` on a violation), as a usage error."""
    if retry_period < 1:
        raise UsageError("--retry-period must be at least 1 second")
    if renew_deadline <= JITTER_FACTOR * retry_period:
        raise UsageError(
            f"--renew-deadline ({renew_deadline:g}) must be more than {JITTER_FACTOR} x "
            f"--retry-period ({retry_period:g})"
        )
    if lease_duration <= renew_deadline:
        raise UsageError(
            f"--lease-duration ({lease_duration:g}) must be more than --renew-deadline "
            f"({renew_deadline:g})"
        )


def _record_time(text: object) -> str | None:
    """A Lease MicroTime as the elector's record spells it (``str`` of a local naive time)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return str(moment.astimezone().replace(tzinfo=None))


def _micro_time(text: str | None) -> str | None:
    """The elector's record time (local, naive) as a Lease MicroTime (UTC, microseconds)."""
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a naive time is local (the elector's fromtimestamp)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseLock:
    """The lock ``namespace/name`` (a Lease) held by ``identity``, through ``client``."""

    def __init__(self, client: Client, name: str, namespace: str, identity: str) -> None:
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = str(identity)
        self._lease: dict[str, Any] | None = None  # as last read: its resourceVersion
        self._path = LEASES.path(namespace, name)
        self._where = f"lease {namespace}/{name}"

    def get(self, name: str, namespace: str) -> tuple[bool, Any]:
        """``(True, record)`` when the Lease exists (record None if it has no holder yet),
        else ``(False, failure)`` whose body's ``code`` is 404 when it is missing."""
        try:
            lease = self.client.request(f"reading {self._where}", "GET", self._path)
        except KubeError as exc:
            return False, _Failure(json.dumps({"code": exc.status or 0}), exc.message)
        self._lease = lease
        spec = lease.get("spec") or {}
        duration = spec.get("leaseDurationSeconds")
        record = LeaderElectionRecord(
            spec.get("holderIdentity") or None,
            str(duration) if duration else None,
            _record_time(spec.get("acquireTime")),
            _record_time(spec.get("renewTime")),
        )
        return True, record

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        body = {
            "apiVersion": LEASES.api_version,
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": self._spec(election_record),
        }
        try:
            self._lease = self.client.request(
                f"creating {self._where}", "POST", LEASES.path(namespace), body=body
            )
        except KubeError as exc:
            log.debug("lease create failed: %s", exc.message)
            return False
        return True

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        if self._lease is None:
            return False
        body = dict(self._lease)
        body["spec"] = {**(self._lease.get("spec") or {}), **self._spec(updated_record)}
        try:
            self._lease = self.client.request(
                f"updating {self._where}", "PUT", self._path, body=body
            )
        except KubeError as exc:  # 409: somebody else wrote it since our read
            log.debug("lease update failed: %s", exc.message)
            return False
        return True

    def release(self) -> bool:
        """Clear the holder (duration 1 s) if we still hold the Lease; True when done."""
        found, _ = self.get(self.name, self.namespace)
        if not found or self._lease is None:
            return False
        spec = dict(self._lease.get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            return False
        spec.pop("holderIdentity", None)
        now = _micro_time(str(datetime.now(UTC)))
        spec.update(leaseDurationSeconds=1, renewTime=now, acquireTime=now)
        try:
            self.client.request(
                f"releasing {self._where}", "PUT", self._path, body={**self._lease, "spec": spec}
            )
        except KubeError as exc:
            log.warning("could not release the lease: %s", exc.message)
            return False
        return True

    @staticmethod
    def _spec(record: Any) -> dict[str, Any]:
        return {
            "holderIdentity": record.holder_identity,
            "leaseDurationSeconds": int(float(record.lease_duration)),
            "acquireTime": _micro_time(record.acquire_time),
            "renewTime": _micro_time(record.renew_time),
        }


class Elector(LeaderElection):  # type: ignore[misc]
    """Campaign for ``lock`` until :meth:`stop`; ``on_started``/``on_stopped`` run on the
    elector's thread when leadership is gained and lost (keep them short)."""

    def __init__(
        self,
        lock: LeaseLock,
        *,
        lease_duration: float = 15,
        renew_deadline: float = 10,
        retry_period: float = 2,
        on_started: Callable[[], None] = lambda: None,
        on_stopped: Callable[[], None] = lambda: None,
    ) -> None:
        check_timing(lease_duration, renew_deadline, retry_period)
        super().__init__(
            electionconfig.Config(
                lock, lease_duration, renew_deadline, retry_period, on_started, on_stopped
            )
        )
        self.lock = lock
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.transitions = 0  # times this candidate became leader
        self._stopping = threading.Event()
        self._leading = False
        self._renewed_at = 0.0  # monotonic time of the last successful acquire or renew
        self._thread: threading.Thread | None = None

    # --- what the controller asks -------------------------------------------------------

    @property
    def leading(self) -> bool:
        """Leader now: renewed within ``renew_deadline`` seconds, and not stopped."""
        return (
            self._leading
            and not self._stopping.is_set()
            and time.monotonic() - self._renewed_at < self.renew_deadline
        )

    @property
    def identity(self) -> str:
        return self.lock.identity

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="leader election", daemon=True)
        self._thread.start()

    def stop(self, release: bool = True, timeout: float = 10.0) -> None:
        """Stop campaigning; with ``release``, hand the Lease over if we hold it."""
        was_leading = self._leading
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if release and was_leading and self.lock.release():
            log.info("%s released lease %s/%s", self.identity, self.lock.namespace, self.lock.name)

    # --- the client's elector, made stoppable ---------------------------------------------

    def run(self) -> None:
        while not self._stopping.is_set():
            if not self.acquire():
                return
            self._leading = True
            self.transitions += 1
            log.info(
                "%s became leader (lease %s/%s)", self.identity, self.lock.namespace, self.lock.name
            )
            self._call(self.on_started)
            self.renew_loop()
            self._leading = False
            if not self._stopping.is_set():
                log.warning("%s lost the lease; a candidate again", self.identity)
            self._call(self.on_stopped)

    def acquire(self) -> bool:
        while not self._stopping.is_set():
            if self.try_acquire_or_renew():
                return True
            self._stopping.wait(self.retry_period)
        return False

    def renew_loop(self) -> None:
        while not self._stopping.is_set():
            deadline = time.monotonic() + self.renew_deadline
            renewed = False
            while time.monotonic() < deadline and not self._stopping.is_set():
                renewed = self.try_acquire_or_renew()
                if renewed:
                    break
                self._stopping.wait(self.retry_period)
            if not renewed:
                return
            self._stopping.wait(self.retry_period)

    def try_acquire_or_renew(self) -> bool:
        try:
            succeeded = bool(super().try_acquire_or_renew())
        except Exception:  # a malformed Lease must not kill the campaign
            log.exception("%s: leader election round failed", self.identity)
            return False
        if succeeded:
            self._renewed_at = time.monotonic()
        return succeeded

    @staticmethod
    def _call(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            log.exception("leader election callback failed")
