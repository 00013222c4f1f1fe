"""Benchmark: the webhook answering a 2-approval AgentRun vs a bare aiohttp TLS server.

Both servers run as separate processes on 127.0.0.1 with the same certificate, and are
driven by the same load generator in the same run: wrk (Debian package ``wrk``; a Lua
script POSTs the AdmissionReview and counts answers that are not an allow) when it is
installed, else a Python asyncio client with N keep-alive connections. The bare server
reads the body and returns a constant AdmissionReview; ours parses, checks two Ed25519
signatures, digests the spec and logs a JSON line per request.

    .venv/bin/python bench/webhook_bench.py                  # wrk if present, 5 s a row
    .venv/bin/python bench/webhook_bench.py --tool python --requests 5000

Prints a markdown table (req/s, p50, p99). Bounded: every row runs --duration (wrk) or
--requests (python), after a 1 s warm-up; 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONSTANT_REVIEW = json.dumps(
    {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "constant", "allowed": True},
    },
    separators=(",", ":"),
).encode()


@dataclass
class Row:
    server: str
    tool: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    bad: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def two_approval_review() -> tuple[bytes, str]:
    """An AgentRun CREATE approved by alice and bob (valid now), and the bundle text."""
    from approvals import records
    from approvals.admission import request_for_manifest
    from approvals.bundle import parse_bundle_text
    from approvals.decide import decide
    from approvals.kubeyaml import load_manifests
    from tests.support.corpus import BASE, compile_case_bundle, make_record

    bundle_text = compile_case_bundle(BASE)
    run = next(d.obj for d in load_manifests((BASE / "run.yaml").read_text(), "run.yaml"))
    assert run is not None
    now = records.now_utc() - timedelta(minutes=5)
    envelopes = [make_record({"key": k, "ttl": "2h"}, run, BASE, now) for k in ("alice", "bob")]
    run["metadata"]["annotations"] = {records.ANNOTATION: json.dumps(envelopes)}
    request = dict(request_for_manifest(run, username="requester", groups=["agents-users"]))
    decision = decide(request, parse_bundle_text(bundle_text), records.now_utc())
    assert decision.allowed, decision.message
    assert decision.reason == "approved", decision.reason
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    return json.dumps(body).encode(), bundle_text


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bare_server(port: int, cert: str, key: str) -> None:
    """The baseline: aiohttp over TLS, read the body, return a constant AdmissionReview."""
    from aiohttp import web

    async def validate(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=CONSTANT_REVIEW, content_type="application/json")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    app = web.Application(client_max_size=3 * 1024 * 1024)
    app.router.add_post("/validate", validate)
    app.router.add_get("/readyz", readyz)
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=context, access_log=None, print=None)


def wait_ready(port: int, context: ssl.SSLContext, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            url = f"https://127.0.0.1:{port}/readyz"
            with urllib.request.urlopen(url, context=context, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:  # URLError is an OSError
            time.sleep(0.1)
    raise SystemExit("server not ready in 30 s")


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"allowed":true', 1, true) then bad = bad + 1 end
end
function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%f %%f\\n", summary.requests, summary.duration,
    b + e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(url: str, body: bytes, connections: int, threads: int, duration: float) -> Row:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % body.decode())
    try:
        base = ["wrk", "-t", str(threads), "-c", str(connections), "-s", script.name]
        subprocess.run([*base, "-d", "1s", url], capture_output=True, check=True, timeout=60)
        out = subprocess.run(
            [*base, "-d", f"{duration:g}s", "--timeout", "5s", url],
            capture_output=True,
            text=True,
            check=True,
            timeout=duration + 60,
        ).stdout
    finally:
        os.unlink(script.name)
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    requests, micros, bad, p50, p99 = line.split()[1:]
    return Row(
        "",
        "wrk",
        connections,
        int(requests),
        int(micros) / 1e6,
        float(p50) / 1000,
        float(p99) / 1000,
        int(bad),
    )


def run_python(url: str, body: bytes, connections: int, total: int, context: ssl.SSLContext) -> Row:
    import aiohttp

    async def main() -> Row:
        latencies: list[float] = []
        bad = 0
        connector = aiohttp.TCPConnector(ssl=context, limit=connections)
        headers = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker(count: int, record: bool) -> None:
                nonlocal bad
                for _ in range(count):
                    started = time.perf_counter()
                    async with session.post(url, data=body, headers=headers) as resp:
                        data: Any = await resp.read()
                    if record:
                        latencies.append(time.perf_counter() - started)
                        if resp.status != 200 or b'"allowed":true' not in data:
                            bad += 1

            warm = max(connections * 5, total // 10)
            await asyncio.gather(*(worker(warm // connections, False) for _ in range(connections)))
            started = time.perf_counter()
            each = total // connections
            await asyncio.gather(*(worker(each, True) for _ in range(connections)))
            seconds = time.perf_counter() - started
        cuts = statistics.quantiles(latencies, n=100)
        return Row(
            "",
            "python",
            connections,
            len(latencies),
            seconds,
            cuts[49] * 1000,
            cuts[98] * 1000,
            bad,
        )

    return asyncio.run(main())


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=REPO
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per row (wrk)")
    parser.add_argument("--requests", type=int, default=5000, help="requests per row (python)")
    parser.add_argument(
        "--bare-server", nargs=3, metavar=("PORT", "CERT", "KEY"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.bare_server:
        bare_server(int(args.bare_server[0]), args.bare_server[1], args.bare_server[2])
        return 0
    tool = args.tool
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"

    from webhook.devcert import CertificateAuthority

    body, bundle_text = two_approval_review()
    authority = CertificateAuthority.generate("bench CA")
    issued = authority.issue(("127.0.0.1", "localhost"))
    client_context = ssl.create_default_context(cadata=authority.cert_pem.decode())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="approvalgate-bench-") as folder:
        cert, key, bundle = Path(folder, "tls.crt"), Path(folder, "tls.key"), Path(folder, "b.json")
        cert.write_bytes(issued.cert_pem)
        key.write_bytes(issued.key_pem)
        bundle.write_text(bundle_text)
        serve = [
            sys.executable,
            "-m",
            "approvalgate",
            "webhook",
            "serve",
            "--bundle",
            str(bundle),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--host",
            "127.0.0.1",
            "--metrics-port",
            "0",
        ]
        servers: list[tuple[str, Callable[[int], list[str]]]] = [
            (
                "bare aiohttp, constant review",
                lambda p: [sys.executable, __file__, "--bare-server", str(p), str(cert), str(key)],
            ),
            ("approvalgate, 1 worker", lambda p: [*serve, "--port", str(p)]),
            (
                "approvalgate, 1 worker, --log-level warning",
                lambda p: [*serve, "--port", str(p), "--log-level", "warning"],
            ),
            ("approvalgate, 2 workers", lambda p: [*serve, "--port", str(p), "--workers", "2"]),
        ]
        for name, command in servers:
            port = free_port()
            proc = start(command(port), env)
            try:
                wait_ready(port, client_context, proc)
                time.sleep(0.5 if "2 workers" not in name else 1.5)
                url = f"https://127.0.0.1:{port}/validate"
                if tool == "wrk":
                    row = run_wrk(url, body, args.connections, args.threads, args.duration)
                else:
                    row = run_python(url, body, args.connections, args.requests, client_context)
            finally:
                stop(proc)
            row.server = name
            rows.append(row)
    print(
        f"\n{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load generator: {tool}, {args.connections} keep-alive connections, "
        f"body {len(body)} bytes (AgentRun CREATE with 2 approvals)\n"
    )
    print("| server | req/s | p50 ms | p99 ms | requests | not allowed / errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.server} | {row.rate:,.0f} | {row.p50_ms:.2f} | {row.p99_ms:.2f} | "
            f"{row.requests:,} | {row.bad} |"
        )
    return 0 if all(r.bad == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
