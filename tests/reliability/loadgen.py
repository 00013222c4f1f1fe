"""Building blocks of the reliability tests: the real server process, a traffic mix, a load
generator and a process sampler. Everything talks to 127.0.0.1 only and stops by itself.

- :func:`serve` runs ``approvalgate webhook serve`` as a subprocess over TLS (test CA), with
  an optional RLIMIT_NOFILE for the server, and knows its pids, logs and metrics;
- :func:`traffic_mix` builds the requests of a mixed load (allowed, denied, malformed,
  UPDATEs), each with the exact answer it must get, signed with the corpus keys *now* (the
  subprocess has no test clock);
- :class:`Load` sends them with aiohttp, closed-loop (capacity) or open-loop at a fixed rate
  (latency counted from the scheduled send time, so a stalled server cannot hide behind a
  slow client), bounded in requests and time;
- :class:`Sampler` reads VmRSS and CPU time from /proc every half second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import ssl
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from approvalgate.approvals.admission import request_for_manifest
from approvalgate.approvals.kubeyaml import load_manifests
from tests.integration.harness import (
    V1,
    V1BETA1,
    Client,
    TestPKI,
    cli_command,
    cli_env,
    iter_json_lines,
    review_body,
    wait_until,
)
from tests.support import bundle_signing
from tests.support.corpus import BASE, make_record
from tests.support.ports import free_port

LOOPBACK = "127.0.0.1"
TRUSTED = "system:serviceaccount:agents-system:submission-api"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# --- the server process --------------------------------------------------------------------


@dataclass
class Server:
    """A running ``approvalgate webhook serve`` on 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path
    context: ssl.SSLContext

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}/validate"

    def client(self, timeout: float = 10) -> Client:
        return Client(self.port, self.context, timeout=timeout)

    def logs(self) -> list[dict[str, Any]]:
        return list(iter_json_lines(self.log.read_text(errors="replace")))

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited {self.proc.returncode}: {self.log_tail()}")
        try:
            with self.client(timeout=5) as client:
                return client.get("/readyz").status == 200
        except OSError:
            return False

    def metrics(self) -> dict[str, float]:
        url = f"http://{LOOPBACK}:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def serving_pids(self) -> list[int]:
        """Pids of the processes that logged "serving" (workers), oldest first."""
        return [int(line["pid"]) for line in self.logs() if line.get("msg") == "serving"]

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@contextlib.contextmanager
def serve(
    work: Path,
    pki: TestPKI,
    bundle: Path,
    *extra: str,
    nofile: int | None = None,
    ready_timeout: float = 30,
) -> Iterator[Server]:
    """``approvalgate webhook serve`` with TLS on a free 127.0.0.1 port, killed at the end.

    ``nofile`` sets the server's RLIMIT_NOFILE, soft and hard (so the server cannot raise it).
    """
    port, metrics_port = free_port(), free_port()
    bundle_signing.sign_file(bundle)  # signed and pinned, as the chart deploys it
    command = cli_command(
        "webhook",
        "serve",
        "--bundle",
        str(bundle),
        *bundle_signing.cli_args(work),
        "--tls-cert",
        str(pki.cert),
        "--tls-key",
        str(pki.key),
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        *extra,
    )
    log = work / f"server-{port}.log"

    def limit() -> None:  # runs in the child before exec
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=cli_env(),
            preexec_fn=limit,  # noqa: PLW1509
        )
    server = Server(proc, port, metrics_port, log, pki.client_context())
    try:
        wait_until(server.ready, ready_timeout, "the server to be ready")
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


# --- what the process uses -----------------------------------------------------------------


def rss_kib(pid: int) -> int:
    """Resident set size (VmRSS) of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Sampler:
    """Samples VmRSS (KiB) and CPU seconds of one pid every ``interval`` in a thread."""

    pid: int
    interval: float = 0.5
    samples: list[tuple[float, int, float]] = field(default_factory=list)  # (t, rss, cpu)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, AssertionError):
                self.samples.append((time.monotonic(), rss_kib(self.pid), cpu_seconds(self.pid)))
            self._stop.wait(self.interval)

    def rss_thirds(self, after: float) -> tuple[float, float, float]:
        """Mean RSS (KiB) of the first, middle and last third of the samples taken after
        monotonic time ``after`` (the end of the warm-up)."""
        rss = [r for t, r, _ in self.samples if t >= after]
        assert len(rss) >= 9, f"too few RSS samples: {len(rss)}"
        third = len(rss) // 3
        parts = (rss[:third], rss[third : 2 * third], rss[-third:])
        first, middle, last = (sum(p) / len(p) for p in parts)
        return first, middle, last


# --- the traffic ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One kind of request of the mix and the exact answer it must get."""

    name: str
    body: bytes
    status: int
    allowed: bool | None = None  # for 200s
    reason: str = ""  # auditAnnotations.reason, for 200s
    uid: str = ""
    weight: int = 1

    def check(self, status: int, body: bytes) -> str:
        """ "" if the answer is the expected one, else what is wrong."""
        if status != self.status:
            return f"{self.name}: HTTP {status}, expected {self.status}: {body[:200]!r}"
        if status != 200:
            return "" if b'"allowed"' not in body else f"{self.name}: a {status} with a verdict"
        try:
            review = json.loads(body)
            response = review["response"]
            got = (response["uid"], response["allowed"], response["auditAnnotations"]["reason"])
        except (ValueError, KeyError, TypeError) as exc:
            return f"{self.name}: unreadable review ({exc}): {body[:200]!r}"
        if got != (self.uid, self.allowed, self.reason):
            return f"{self.name}: got {got}, expected {(self.uid, self.allowed, self.reason)}"
        return ""


def base_run() -> dict[str, Any]:
    docs = load_manifests((BASE / "run.yaml").read_text(), "run.yaml")
    obj = docs[0].obj
    assert obj is not None
    copied: dict[str, Any] = json.loads(json.dumps(obj))
    return copied


def approved_run(name: str, now: datetime, approvers: Sequence[str] = ("alice", "bob")) -> Any:
    """The base run named ``name``, approved by ``approvers`` at ``now`` - 1 min (TTL 2 h)."""
    run = base_run()
    run["metadata"]["name"] = name
    issued = (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    envelopes = [
        make_record({"key": who, "issuedAt": issued, "ttl": "2h"}, run, BASE, now)
        for who in approvers
    ]
    run["metadata"]["annotations"] = {"approvals.proompteng.ai/approvals": json.dumps(envelopes)}
    return run


def _request(obj: Any, **options: Any) -> dict[str, Any]:
    options.setdefault("username", "requester")
    options.setdefault("groups", ["agents-users"])
    return dict(request_for_manifest(obj, **options))


def traffic_mix(now: datetime | None = None) -> list[Kind]:
    """Allowed, denied, malformed and UPDATE requests, each with its exact expected answer."""
    now = now or datetime.now(UTC)
    approved = approved_run("soak-approved", now)
    forged = base_run()  # payloads edited after signing (expiry moved to 2099)
    forged["metadata"]["name"] = "soak-forged"
    issued = (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    forged_envelopes = [
        make_record({"key": who, "issuedAt": issued, "tamper": ["flip-payload"]}, forged, BASE, now)
        for who in ("alice", "bob")
    ]
    forged["metadata"]["annotations"] = {_ANN: json.dumps(forged_envelopes)}
    copied = json.loads(json.dumps(approved))
    copied["metadata"]["name"] = "soak-copied"
    unapproved = base_run()
    unapproved["metadata"]["name"] = "soak-unapproved"
    labelled = json.loads(json.dumps(approved))
    labelled["metadata"]["labels"] = {"agents.proompteng.ai/phase": "running"}
    respecced = json.loads(json.dumps(approved))
    respecced["spec"]["parameters"]["task"] = "something else"

    kinds: list[Kind] = []

    def review(name: str, request: dict[str, Any], allowed: bool, reason: str, **kw: Any) -> None:
        version = kw.pop("version", V1)
        kinds.append(
            Kind(name, review_body(request, version), 200, allowed, reason, request["uid"], **kw)
        )

    review("approved-create", _request(approved), True, "approved", weight=3)
    review("approved-create-v1beta1", _request(approved), True, "approved", version=V1BETA1)
    review("unapproved-create", _request(unapproved), False, "missing-approvals", weight=3)
    review("forged-signature", _request(forged), False, "missing-approvals")
    review("copied-approvals", _request(copied), False, "missing-approvals")
    review(
        "update-labels",
        _request(labelled, operation="UPDATE", old=approved),
        True,
        "unchanged-spec",
        weight=2,
    )
    review(
        "update-spec-keeps-annotation",
        _request(respecced, operation="UPDATE", old=approved),
        False,
        "missing-approvals",
        weight=2,
    )
    review("delete", _request(approved, operation="DELETE"), True, "operation-not-gated")
    from_its_pod = _request(unapproved, username=TRUSTED)
    from_its_pod["userInfo"]["extra"] = {
        "authentication.kubernetes.io/pod-name": ["submission-api-0"],
        "authentication.kubernetes.io/pod-uid": ["4f6c2a1e-0b7d-4c1e-9a51-2d3e8f7a6b90"],
    }
    review("trusted-submitter", from_its_pod, True, "trusted-submitter")
    valid = review_body(_request(unapproved)).decode()
    malformed = {
        "malformed-not-json": b'{"apiVersion": "admission.k8s.io/v1", "kind": ',
        "malformed-duplicate-key": valid.replace('"uid": ', '"uid": "x", "uid": ', 1).encode(),
        "malformed-too-deep": b"[" * 5000 + b"]" * 5000,
        "malformed-nan": valid.replace('"dryRun": false', '"dryRun": NaN').encode(),
        "malformed-not-a-review": json.dumps({"apiVersion": V1, "kind": "Pod"}).encode(),
    }
    kinds += [Kind(name, body, 400) for name, body in malformed.items()]
    return kinds


_ANN = "approvals.proompteng.ai/approvals"


def weighted(kinds: Sequence[Kind]) -> list[Kind]:
    return [k for k in kinds for _ in range(k.weight)]


# --- the load ------------------------------------------------------------------------------


@dataclass
class Stats:
    """What a load run saw. ``unexpected`` holds the first 50 wrong answers in full."""

    sent: int = 0
    answered: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    wrong: int = 0
    unexpected: list[str] = field(default_factory=list)
    transport_errors: list[tuple[float, float, str, str]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)  # (sent, answered)
    started: float = 0.0
    elapsed: float = 0.0
    allowed_wrongly: int = 0  # answered allowed where a denial (or a 400) was expected

    def note(self, message: str) -> None:
        self.wrong += 1
        if len(self.unexpected) < 50:
            self.unexpected.append(message)

    @property
    def rate(self) -> float:
        return self.answered / self.elapsed if self.elapsed else 0.0

    def in_flight_at(self, moment: float) -> int:
        """Requests sent before ``moment`` and not answered (or failed) by then."""
        ends = [(s, e) for s, e in self.spans] + [(s, e) for s, e, _, _ in self.transport_errors]
        return sum(1 for s, e in ends if s <= moment < e)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "unexpected": self.wrong,
            "wrongly_admitted": self.allowed_wrongly,
            "transport_errors": len(self.transport_errors),
            "seconds": round(self.elapsed, 2),
            "rate_per_s": round(self.rate, 1),
            "latency_ms": {
                "p50": round(self.percentile(0.5) * 1000, 2),
                "p99": round(self.percentile(0.99) * 1000, 2),
                "max": round(max(self.latencies, default=0) * 1000, 2),
            },
            "by_kind": dict(sorted(self.by_kind.items())),
        }


class Connection:
    """One HTTP/1.1 keep-alive connection over TLS, spoken by hand (cheap on the client side:
    on two cores the load generator must not be what limits the measured capacity)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext) -> Connection:
        reader, writer = await asyncio.open_connection(
            LOOPBACK, port, ssl=context, server_hostname=LOOPBACK
        )
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                self.closed = True
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.closed = True
        self.writer.transport.abort()


def http_request(body: bytes, path: str = "/validate") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


TRANSPORT_ERRORS = (
    TimeoutError,
    OSError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    ValueError,
)


class Load:
    """Sends a mix of :class:`Kind` to the server over keep-alive and fresh TLS connections.

    Every ``fresh_every``-th request goes over a new TLS connection (handshake, accept,
    close), the others over a pool of at most ``connections`` keep-alive connections.
    """

    def __init__(
        self,
        port: int,
        context: ssl.SSLContext,
        kinds: Sequence[Kind],
        *,
        connections: int = 16,
        fresh_every: int = 10,
        timeout: float = 15.0,
    ) -> None:
        self.port = port
        self.context = context
        self.kinds = weighted(kinds)
        self.payloads = [http_request(k.body) for k in self.kinds]
        self.connections = connections
        self.fresh_every = fresh_every
        self.timeout = timeout
        self._idle: list[Connection] = []

    async def _connection(self, fresh: bool) -> Connection:
        while not fresh and self._idle:
            conn = self._idle.pop()
            if not conn.closed and not conn.reader.at_eof():
                return conn
            conn.close()
        return await Connection.open(self.port, self.context)

    async def _one(self, number: int, stats: Stats, scheduled: float) -> None:
        index = number % len(self.kinds)
        kind = self.kinds[index]
        fresh = bool(self.fresh_every) and number % self.fresh_every == self.fresh_every - 1
        stats.sent += 1
        sent = time.monotonic()
        conn: Connection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._connection(fresh)
                status, body = await conn.exchange(self.payloads[index])
        except TRANSPORT_ERRORS as exc:
            if conn is not None:
                conn.close()
            stats.transport_errors.append(
                (sent, time.monotonic(), kind.name, f"{type(exc).__name__}: {exc}")
            )
            return
        if fresh or conn.closed:
            conn.close()
        else:
            self._idle.append(conn)
        done = time.monotonic()
        stats.answered += 1
        stats.by_kind[kind.name] += 1
        stats.latencies.append(done - scheduled)
        stats.spans.append((sent, done))
        problem = kind.check(status, body)
        if problem:
            stats.note(problem)
            if kind.allowed is not True and b'"allowed":true' in body:
                stats.allowed_wrongly += 1

    def _close_all(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle = []

    async def closed_loop(
        self, seconds: float, max_requests: int = 10**7, *, min_requests: int = 0
    ) -> Stats:
        """``connections`` clients sending back to back for ``seconds``: capacity. The first
        ``min_requests`` are sent whatever the time (a count that does not depend on speed)."""
        stats = Stats(started=time.monotonic())
        counter = iter(range(max_requests))
        deadline = stats.started + seconds

        async def client() -> None:
            for number in counter:
                if number >= min_requests and time.monotonic() >= deadline:
                    return
                await self._one(number, stats, time.monotonic())

        try:
            await asyncio.gather(*(client() for _ in range(self.connections)))
        finally:
            self._close_all()
        stats.elapsed = time.monotonic() - stats.started
        return stats

    async def open_loop(
        self,
        rate: float,
        seconds: float,
        *,
        max_requests: int | None = None,
        on_tick: Any = None,
    ) -> Stats:
        """Requests scheduled every 1/``rate`` s for ``seconds`` (at most ``max_requests``);
        at most ``connections`` outstanding, later ones wait (and their wait counts as
        latency). ``on_tick(elapsed)`` is awaited about every second (fault injection)."""
        total = int(rate * seconds) if max_requests is None else max_requests
        stats = Stats(started=time.monotonic())
        gate = asyncio.Semaphore(self.connections)
        tasks: set[asyncio.Task[None]] = set()
        next_tick = 1.0

        async def bounded(number: int, scheduled: float) -> None:
            async with gate:
                await self._one(number, stats, scheduled)

        try:
            for number in range(total):
                scheduled = stats.started + number / rate
                delay = scheduled - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if on_tick is not None and scheduled - stats.started >= next_tick:
                    next_tick += 1.0
                    await on_tick(scheduled - stats.started)
                task = asyncio.create_task(bounded(number, scheduled))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            self._close_all()
        stats.elapsed = time.monotonic() - stats.started
        return stats
