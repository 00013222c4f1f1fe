"""The real `approvalgate webhook serve` process: SIGTERM drain, --workers, --dev, errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from approvalgate.cli import main as cli_main
from tests.integration.harness import (
    Client,
    TestPKI,
    agentrun_request,
    cli_command,
    cli_env,
    iter_json_lines,
    review_body,
    wait_until,
)
from tests.support import bundle_signing
from tests.support.ports import free_port


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path
    out: Path
    context: ssl.SSLContext

    def client(self) -> Client:
        return Client(self.port, self.context, timeout=10)

    def logs(self) -> list[dict[str, Any]]:
        return list(iter_json_lines(self.log.read_text(errors="replace")))

    def metrics(self) -> dict[str, float]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited {self.proc.returncode}: {self.log.read_text()}")
        try:
            with self.client() as client:
                return client.get("/readyz").status == 200
        except OSError:
            return False


@contextlib.contextmanager
def serve(
    tmp_path: Path, pki: TestPKI | None, bundle: Path, *extra: str, wait: bool = True
) -> Iterator[Served]:
    port, metrics_port = free_port(), free_port()
    tls = ["--tls-cert", str(pki.cert), "--tls-key", str(pki.key)] if pki else []
    bundle_signing.sign_file(bundle)
    command = cli_command(
        "webhook",
        "serve",
        "--bundle",
        str(bundle),
        *bundle_signing.cli_args(tmp_path),
        *tls,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        *extra,
    )
    log, out = tmp_path / f"stderr-{port}.log", tmp_path / f"stdout-{port}.log"
    with log.open("wb") as err_file, out.open("wb") as out_file:
        proc = subprocess.Popen(command, stdout=out_file, stderr=err_file, env=cli_env())
    context = pki.client_context() if pki else ssl.create_default_context()
    served = Served(proc, port, metrics_port, log, out, context)
    try:
        if wait:
            wait_until(served.ready, 30, "the server to be ready")
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


# --- SIGTERM under load -------------------------------------------------------------------


@dataclass
class Load:
    url: str
    context: ssl.SSLContext
    body: bytes
    stop: threading.Event = field(default_factory=threading.Event)
    ok: list[float] = field(default_factory=list)
    wrong: list[Any] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self.context, limit=10)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=20)
        ) as session:
            await asyncio.gather(*(self._client(session) for _ in range(10)))

    async def _client(self, session: aiohttp.ClientSession) -> None:
        while not self.stop.is_set():
            try:
                async with session.post(self.url, data=self.body) as resp:
                    data = await resp.json()
                response = data["response"]
                if (resp.status, response["allowed"]) == (200, False):
                    self.ok.append(time.monotonic())
                else:
                    self.wrong.append((resp.status, response))
            except (aiohttp.ClientError, OSError) as exc:
                self.errors.append((time.monotonic(), f"{type(exc).__name__}: {exc}"))
                await asyncio.sleep(0.01)


def test_sigterm_under_load_finishes_requests_in_flight_and_exits_0(
    tmp_path: Path, pki: TestPKI, bundle_file: Path
) -> None:
    request = agentrun_request()
    body = review_body(request)
    with serve(tmp_path, pki, bundle_file, "--grace-period", "10") as served:
        load = Load(f"https://127.0.0.1:{served.port}/validate", pki.client_context(), body)
        loader = threading.Thread(target=load.run)
        loader.start()
        try:
            # a count reached, however long it takes: 120 s only bounds a hang
            wait_until(lambda: len(load.ok) >= 200, 120, "some load")
            assert served.metrics()["approvalgate_requests_in_flight"] >= 0
            # a request whose body is still arriving when SIGTERM comes: in flight
            sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
            with pki.client_context().wrap_socket(sock, server_hostname="localhost") as slow:
                head = (
                    f"POST /validate HTTP/1.1\r\nHost: localhost\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                )
                slow.sendall(head.encode() + body[:50])
                time.sleep(0.3)
                served.proc.send_signal(signal.SIGTERM)
                sigterm = time.monotonic()
                time.sleep(0.5)
                with pytest.raises(ConnectionRefusedError):  # no new connections while draining
                    socket.create_connection(("127.0.0.1", served.port), timeout=2).close()
                slow.sendall(body[50:])
                reply = _read_response(slow)
            assert served.proc.wait(15) == 0
        finally:
            load.stop.set()
            loader.join(30)
    status, payload = reply
    assert status == 200
    assert payload["response"]["uid"] == request["uid"]
    assert payload["response"]["allowed"] is False
    assert load.wrong == []
    assert [e for e in load.errors if e[0] < sigterm] == []
    assert len([t for t in load.ok if t < sigterm]) >= 200
    messages = [line["msg"] for line in served.logs()]
    assert "draining" in messages
    assert messages[-1] == "stopped"


def _read_response(tls: ssl.SSLSocket) -> tuple[int, dict[str, Any]]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += tls.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = next(
        int(v)
        for k, _, v in (h.partition(": ") for h in lines[1:])
        if k.lower() == "content-length"
    )
    while len(rest) < length:
        rest += tls.recv(65536)
    return int(lines[0].split()[1]), json.loads(rest[:length])


# --- several workers on one port -----------------------------------------------------------


def test_two_workers_share_one_port_and_one_metrics_endpoint(
    tmp_path: Path, pki: TestPKI, bundle_file: Path
) -> None:
    with serve(tmp_path, pki, bundle_file, "--workers", "2") as served:
        wait_until(
            lambda: sum(line["msg"] == "serving" for line in served.logs()) == 2, 20, "2 workers"
        )
        uids = []
        for _ in range(60):  # a new connection each time: the kernel picks a worker
            request = agentrun_request()
            with served.client() as client:
                assert client.review(request).response["allowed"] is False
            uids.append(request["uid"])
        samples = served.metrics()
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(20) == 0
    logs = served.logs()
    pids = {line["pid"] for line in logs if line.get("uid") in uids}
    assert len(pids) == 2
    assert served.proc.pid not in pids
    assert sum(line["msg"] == "stopped" for line in logs) == 2
    total = sum(
        v for k, v in samples.items() if k.startswith("approvalgate_admission_requests_total{")
    )
    assert total == 60
    assert samples["approvalgate_requests_in_flight"] == 0
    assert samples["approvalgate_admission_duration_seconds_count"] == 60
    generation = [k for k in samples if k.startswith("approvalgate_bundle_generation_info{")]
    assert len(generation) == 1
    assert samples[generation[0]] == 1


def test_workers_that_cannot_start_stop_the_supervisor(
    tmp_path: Path, pki: TestPKI, bundle_file: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bundle_signing.sign_file(bundle_file)
        command = cli_command(
            "webhook",
            "serve",
            "--bundle",
            str(bundle_file),
            *bundle_signing.cli_args(tmp_path),
            "--tls-cert",
            str(pki.cert),
            "--tls-key",
            str(pki.key),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--metrics-port",
            "0",
            "--workers",
            "2",
        )
        result = subprocess.run(command, capture_output=True, env=cli_env(), timeout=60)
    assert result.returncode == 1
    assert b"cannot listen on 127.0.0.1:" in result.stderr


# --- --dev and start-up errors ------------------------------------------------------------


def test_dev_mode_prints_a_ca_that_verifies_the_server(tmp_path: Path, bundle_file: Path) -> None:
    with serve(tmp_path, None, bundle_file, "--dev", wait=False) as served:
        wait_until(lambda: b"# curl" in served.out.read_bytes(), 30, "the CA on stdout")
        printed = served.out.read_text()
        pem = printed[printed.index("-----BEGIN") : printed.index("-----END CERTIFICATE-----") + 25]
        assert "# caBundle: LS0t" in printed
        served.context = ssl.create_default_context(cadata=pem)
        wait_until(served.ready, 30, "ready")
        with served.client() as client:
            reply = client.review(agentrun_request())
        response = reply.response
        assert response["status"]["code"] == 403
        assert "approvalgate approve" in response["status"]["message"]
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(15) == 0
    assert "BEGIN PRIVATE KEY" not in served.out.read_text() + served.log.read_text()


def test_start_up_errors_are_one_line_and_exit_1(
    tmp_path: Path, pki: TestPKI, bundle_file: Path
) -> None:
    missing = tmp_path / "missing.crt"
    command = cli_command(
        "webhook",
        "serve",
        "--bundle",
        str(bundle_file),
        *bundle_signing.cli_args(tmp_path),
        "--tls-cert",
        str(missing),
        "--tls-key",
        str(pki.key),
        "--port",
        str(free_port()),
        "--metrics-port",
        "0",
    )
    result = subprocess.run(command, capture_output=True, env=cli_env(), timeout=60, text=True)
    assert result.returncode == 1
    assert f"error: cannot load TLS certificate {missing}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "HTTPS needs --tls-cert FILE and --tls-key FILE"),
        (["--tls-cert", "a.crt"], "HTTPS needs --tls-cert FILE and --tls-key FILE"),
        (["--dev", "--tls-cert", "a", "--tls-key", "b"], "--dev makes its own certificate"),
        (["--dev", "--workers", "2", "--port", "0"], "--workers needs a fixed --port"),
        (
            ["--tls-cert", "a", "--tls-key", "b", "--dev-ca-out", "ca.pem"],
            "--dev-ca-out only goes with --dev",
        ),
        (["--dev"], "no bundle-signing key is pinned"),
        (
            ["--dev", "--allow-unsigned-bundle", "--bundle-key", bundle_signing.public_pem()],
            "unsigned bundles are allowed: choose one",
        ),
        (
            ["--dev", "--bundle-key", bundle_signing.public_pem(), "--bundle-threshold", "2"],
            "threshold 2 needs between 1 and 1",
        ),
        (
            [
                *("--dev", "--bundle-key", bundle_signing.public_pem()),
                *("--bundle-key", bundle_signing.SSHForm(bundle_signing.signer()).line),
                *("--bundle-threshold", "2"),
            ],
            "threshold 2 needs between 1 and 1 (the distinct pinned keys: one key pinned as "
            "PEM and as OpenSSH line is one)",
        ),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert cli_main(["webhook", "serve", "--bundle", "b.json", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["--workers", "0"],
        ["--port", "70000"],
        ["--reload-interval", "0"],
        ["--max-body-bytes", "x"],
        ["--bundle-threshold", "0"],
        ["--bundle-min-revision", "-1"],
    ],
)
def test_bad_option_values_exit_2(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["webhook", "serve", "--bundle", "b.json", "--dev", *args])
    assert exit_info.value.code == 2
