"""A real webhook on 127.0.0.1 over real TLS, and real HTTPS clients, for integration tests.

:class:`ServerThread` runs the production :class:`webhook.server.Worker` (same start, reload
and drain code as ``approvalgate webhook serve``) in a thread with its own event loop, so a
test can talk to it with a blocking client, its own asyncio loop, or hypothesis.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from approvalgate.approvals.view import ClusterView
from approvalgate.webhook.config import ServeConfig
from approvalgate.webhook.devcert import CertificateAuthority, Issued
from approvalgate.webhook.server import Worker

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
V1: Final = "admission.k8s.io/v1"
V1BETA1: Final = "admission.k8s.io/v1beta1"


@dataclass
class TestPKI:
    """A test CA and the serving pair it issued, written where the server reads them."""

    authority: CertificateAuthority
    folder: Path
    cert: Path
    key: Path
    issued: Issued

    __test__ = False

    @classmethod
    def create(cls, folder: Path) -> TestPKI:
        authority = CertificateAuthority.generate("approvalgate test CA")
        folder.mkdir(parents=True, exist_ok=True)
        issued = authority.issue(("127.0.0.1", "localhost"))
        pki = cls(authority, folder, folder / "tls.crt", folder / "tls.key", issued)
        pki.install(issued)
        return pki

    def rotate(self, *, atomic: bool = True) -> Issued:
        """A new serving pair from the same CA, written over the files."""
        issued = self.authority.issue(("127.0.0.1", "localhost"))
        self.install(issued, atomic=atomic)
        return issued

    def install(self, issued: Issued, *, atomic: bool = True) -> None:
        self.issued = issued
        if atomic:
            write_atomic(self.cert, issued.cert_pem)
            write_atomic(self.key, issued.key_pem)
        else:
            self.cert.write_bytes(issued.cert_pem)
            self.key.write_bytes(issued.key_pem)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.authority.cert_pem.decode("ascii"))


def write_atomic(path: Path, content: bytes | str) -> None:
    data = content.encode() if isinstance(content, str) else content
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class Clock:
    """A settable clock for decide() (the hidden ``clock=`` of create_app)."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


class ServerThread:
    """The production Worker serving on 127.0.0.1 (random port) in a background thread."""

    def __init__(
        self,
        pki: TestPKI,
        bundle: Path,
        *,
        clock: Callable[[], datetime] | None = None,
        view: ClusterView | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("reload_interval", 0.05)
        options.setdefault("metrics_port", 0)
        options.setdefault("grace_period", 5.0)
        # no API server here: a bundle that requires the cluster view is served as
        # `--cluster-view off` (decide() gets view=None); tests of the view pass "auto"
        options.setdefault("cluster_view", "off")
        # tests of other things run unsigned; the bundle-signing tests pass bundle_keys
        if not options.get("bundle_keys"):
            options.setdefault("allow_unsigned_bundle", True)
        self.config = ServeConfig(
            bundle=bundle, tls_cert=pki.cert, tls_key=pki.key, host="127.0.0.1", port=0, **options
        )
        self.pki = pki
        self.clock = clock
        self.view = view  # given to decide() as the cluster view (none is started)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="webhook-server", daemon=True)
        self.worker: Worker | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.worker = Worker(self.config, clock=self.clock, view=self.view)
            self.loop.run_until_complete(self.worker.start())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()

    def __enter__(self) -> ServerThread:
        self.thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        if self.worker is not None:
            self.call(self.worker.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def running(self) -> Worker:
        assert self.worker is not None
        return self.worker

    @property
    def port(self) -> int:
        return self.running.port

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self) -> Client:
        return Client(self.port, self.pki.client_context())

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            time.sleep(0.02)


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def review(self) -> dict[str, Any]:
        assert self.status == 200, (self.status, self.body[:300])
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def response(self) -> dict[str, Any]:
        response: dict[str, Any] = self.review()["response"]
        return response


@dataclass
class Client:
    """A blocking HTTPS client with one keep-alive connection (reopened when closed)."""

    port: int
    context: ssl.SSLContext
    timeout: float = 30.0
    _conn: http.client.HTTPSConnection | None = field(default=None, repr=False)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] = {}
    ) -> Reply:
        for attempt in range(2):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=dict(headers))
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt:
                    raise
                continue
            if resp.will_close:
                self.close()
            return Reply(resp.status, dict(resp.getheaders()), data)
        raise AssertionError("unreachable")

    def post(self, body: bytes | str, headers: Mapping[str, str] | None = None) -> Reply:
        data = body.encode() if isinstance(body, str) else body
        return self.request(
            "POST", "/validate", data, headers or {"Content-Type": "application/json"}
        )

    def review(self, request: Mapping[str, Any], version: str = V1) -> Reply:
        return self.post(review_body(request, version))

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def _connection(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=self.context, timeout=self.timeout
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def review_body(request: Mapping[str, Any], version: str = V1) -> bytes:
    return json.dumps(
        {"apiVersion": version, "kind": "AdmissionReview", "request": request}
    ).encode()


def agentrun_request(
    *,
    name: str = "run-1",
    namespace: str = "agents",
    agent: str = "codex-agent",
    operation: str = "CREATE",
    user: str = "requester",
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A CREATE of an AgentRun as kube-apiserver sends it (no approvals unless given)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "agents.proompteng.ai", "version": "v1alpha1", "kind": "AgentRun"},
        "resource": {
            "group": "agents.proompteng.ai",
            "version": "v1alpha1",
            "resource": "agentruns",
        },
        "operation": operation,
        "namespace": namespace,
        "name": name,
        "userInfo": {"username": user, "groups": ["agents-users"]},
        "object": {
            "apiVersion": "agents.proompteng.ai/v1alpha1",
            "kind": "AgentRun",
            "metadata": metadata,
            "spec": {"agentRef": {"name": agent}, "parameters": {"prompt": "hello"}},
        },
        "dryRun": False,
    }


def cli_command(*args: str) -> list[str]:
    """``approvalgate ARGS`` as a subprocess of this interpreter."""
    return [sys.executable, "-m", "approvalgate", *args]


def cli_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + path if path else "")}


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


def iter_json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if line.startswith("{"):
            yield json.loads(line)
