"""Reloads without restart: bundle swaps and certificate rotation, alone and under load.

security.md: "Webhook restart, cert rotation, bundle update under load: no request fails that
would not have failed anyway."
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from approvalgate.approvals.policy import BundleSettings
from tests.integration.harness import (
    Clock,
    ServerThread,
    TestPKI,
    agentrun_request,
    review_body,
    write_atomic,
)
from tests.support.corpus import CORPUS, compile_case_bundle, load_case
from tests.support.projection import KubeVolume


def served_serial(
    port: int, pki: TestPKI, *, sni: str | None = "localhost", tls12: bool = False
) -> int:
    """The serial of the certificate a brand-new TLS connection is given."""
    context = pki.client_context()
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=sni or "127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


# --- certificates -----------------------------------------------------------------------


def test_a_rotated_certificate_is_served_to_new_connections(
    pki: TestPKI, bundle_file: Path
) -> None:
    with ServerThread(pki, bundle_file) as server, server.client() as client:
        first = pki.issued.serial
        assert served_serial(server.port, pki) == first
        assert client.get("/readyz").status == 200  # a keep-alive connection on the first cert
        rotated = pki.rotate()
        server.wait_for(lambda: served_serial(server.port, pki) == rotated.serial)
        for sni, tls12 in (("localhost", False), (None, False), ("localhost", True), (None, True)):
            assert served_serial(server.port, pki, sni=sni, tls12=tls12) == rotated.serial
        assert client.get("/readyz").status == 200  # the open connection kept working
        assert server.running.certificate.failures == 0


def test_a_half_written_pair_keeps_the_previous_certificate(
    pki: TestPKI, bundle_file: Path
) -> None:
    """A new certificate with the old key does not load; the pair loads once the key follows."""
    with ServerThread(pki, bundle_file) as server:
        certificate = server.running.certificate
        old = pki.issued
        new = pki.authority.issue(("127.0.0.1", "localhost"))
        write_atomic(pki.cert, new.cert_pem)
        server.wait_for(lambda: certificate.failures == 1)
        assert served_serial(server.port, pki) == old.serial
        write_atomic(pki.key, new.key_pem)
        server.wait_for(lambda: served_serial(server.port, pki) == new.serial)
        assert certificate.failures == 1
        pki.cert.write_text("not a certificate")
        server.wait_for(lambda: certificate.failures == 2)
        assert served_serial(server.port, pki) == new.serial


def test_an_encrypted_key_is_refused_at_start_without_prompting(pki: TestPKI) -> None:
    from cryptography.hazmat.primitives import serialization

    from approvalgate.webhook.tls import CertificateError, CertificateState

    key = serialization.load_pem_private_key(pki.issued.key_pem, None)
    pki.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(CertificateError, match="the private key is encrypted"):
        CertificateState(pki.cert, pki.key).load()


def test_secret_volume_symlink_swaps_are_noticed(tmp_path: Path, bundle_file: Path) -> None:
    """Secret volumes: files -> ..data/ -> ..<timestamp>/, and ..data swapped atomically."""
    pki = TestPKI.create(tmp_path / "ca")
    mount = tmp_path / "mount"
    volume = KubeVolume(mount)
    volume.publish({"tls.crt": pki.issued.cert_pem, "tls.key": pki.issued.key_pem})
    pki.cert, pki.key = mount / "tls.crt", mount / "tls.key"
    with ServerThread(pki, bundle_file) as server:
        assert served_serial(server.port, pki) == pki.issued.serial
        for _ in range(2):
            issued = pki.authority.issue(("127.0.0.1", "localhost"))
            volume.publish({"tls.crt": issued.cert_pem, "tls.key": issued.key_pem})
            serial: int = issued.serial
            server.wait_for(lambda: served_serial(server.port, pki) == serial)  # noqa: B023
        assert server.running.certificate.failures == 0


# --- bundles ----------------------------------------------------------------------------


def test_configmap_symlink_swaps_are_noticed(
    pki: TestPKI, tmp_path: Path, base_bundle_text: str
) -> None:
    other = compile_case_bundle(
        CORPUS / "_base", BundleSettings(environment="staging", cluster_view="off")
    )
    volume = KubeVolume(tmp_path / "config")
    volume.publish({"bundle.json": base_bundle_text})
    with ServerThread(pki, volume.root / "bundle.json") as server:
        state = server.running.state
        first = state.generation
        volume.publish({"bundle.json": other})
        server.wait_for(lambda: state.generation not in ("", first))
        assert state.bundle is not None and state.bundle.environment == "staging"
        volume.publish({"bundle.json": "{"})  # a broken update keeps the good bundle
        server.wait_for(lambda: state.failures == 1)
        assert state.bundle.environment == "staging"
        volume.publish({"bundle.json": base_bundle_text})
        server.wait_for(lambda: state.generation == first)


# --- both, under load --------------------------------------------------------------------

TOTAL_REQUESTS = 2000
CONNECTIONS = 20


@dataclass
class LoadResult:
    verdicts: list[tuple[str, bool, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    swaps: list[str] = field(default_factory=list)
    last_good: int = 0  # which bundle text was written last (a broken one does not count)


async def _load(
    url: str, context: ssl.SSLContext, bodies: list[tuple[str, bytes]], result: LoadResult
) -> None:
    """CONNECTIONS clients: half keep their connection, half make a new TLS one per request."""
    remaining = iter(range(TOTAL_REQUESTS))

    async def client(session: aiohttp.ClientSession) -> None:
        for number in remaining:
            kind, body = bodies[number % len(bodies)]
            try:
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    data: dict[str, Any] = await resp.json()
                    if resp.status != 200:
                        result.errors.append(f"HTTP {resp.status}")
                        continue
                response = data["response"]
                result.verdicts.append(
                    (kind, response["allowed"], response["auditAnnotations"]["reason"])
                )
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                result.errors.append(f"{type(exc).__name__}: {exc}")

    half = CONNECTIONS // 2
    keepalive = aiohttp.TCPConnector(ssl=context, limit=half)
    fresh = aiohttp.TCPConnector(ssl=context, limit=half, force_close=True)
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(connector=keepalive, timeout=timeout) as kept,
        aiohttp.ClientSession(connector=fresh, timeout=timeout) as new,
    ):
        await asyncio.gather(
            *(client(kept) for _ in range(half)), *(client(new) for _ in range(half))
        )


async def _swap(
    done: asyncio.Event, pki: TestPKI, bundle: Path, texts: list[str], result: LoadResult
) -> None:
    """Replace the bundle and the certificate in turn until the load is over (at least 12 steps)."""
    steps: list[tuple[str, Callable[[], object], int | None]] = [
        ("bundle", lambda: write_atomic(bundle, texts[1]), 1),
        ("cert", lambda: pki.rotate(atomic=True), None),
        ("broken-bundle", lambda: bundle.write_text(texts[0][: len(texts[0]) // 2]), None),
        ("bundle", lambda: write_atomic(bundle, texts[0]), 0),
        ("cert-non-atomic", lambda: pki.rotate(atomic=False), None),
        ("bundle-non-atomic", lambda: bundle.write_text(texts[1]), 1),
    ]
    number = 0
    while not done.is_set() or number < 12:
        name, step, good = steps[number % len(steps)]
        step()
        result.swaps.append(name)
        if good is not None:
            result.last_good = good
        number += 1
        await asyncio.sleep(0.05)


def test_bundle_swaps_and_certificate_rotation_under_load(pki: TestPKI, tmp_path: Path) -> None:
    approved = load_case("environment-records-for-each-environment")  # prod and staging
    texts = [
        compile_case_bundle(approved.folder),
        compile_case_bundle(
            approved.folder, BundleSettings(environment="staging", cluster_view="off")
        ),
    ]
    bundle = tmp_path / "bundle.json"
    bundle.write_text(texts[0])
    bodies = [
        ("approved", review_body(approved.request)),
        ("unapproved", review_body(agentrun_request())),
        ("delete", review_body(agentrun_request(operation="DELETE"))),
    ]
    expected = {
        "approved": (True, "approved"),
        "unapproved": (False, "missing-approvals"),
        "delete": (True, "operation-not-gated"),
    }
    result = LoadResult()
    with ServerThread(pki, bundle, clock=Clock(approved.now), reload_interval=0.02) as server:

        async def scenario() -> float:
            done = asyncio.Event()
            swapper = asyncio.create_task(_swap(done, pki, bundle, texts, result))
            started = time.perf_counter()
            await _load(f"{server.url}/validate", pki.client_context(), bodies, result)
            elapsed = time.perf_counter() - started
            done.set()
            await swapper
            return elapsed

        elapsed = asyncio.run(scenario())
        state, certificate = server.running.state, server.running.certificate
        server.wait_for(lambda: served_serial(server.port, pki) == pki.issued.serial)
        last = ("prod", "staging")[result.last_good]
        server.wait_for(lambda: state.bundle is not None and state.bundle.environment == last)
        assert state.loads >= 4, (state.loads, result.swaps)
        assert certificate.loads >= 3, (certificate.loads, result.swaps)

    assert result.errors == []
    assert len(result.verdicts) == TOTAL_REQUESTS
    wrong = [v for v in result.verdicts if (v[1], v[2]) != expected[v[0]]]
    assert wrong == []
    assert len(result.swaps) >= 12
    print(f"{TOTAL_REQUESTS} requests in {elapsed:.2f} s during {len(result.swaps)} swaps")


@pytest.mark.parametrize("reload_interval", [0.02])
def test_reload_interval_is_the_poll_period(
    pki: TestPKI, bundle_file: Path, reload_interval: float, base_bundle_text: str
) -> None:
    other = compile_case_bundle(
        CORPUS / "_base", BundleSettings(environment="staging", cluster_view="off")
    )
    with ServerThread(pki, bundle_file, reload_interval=reload_interval) as server:
        write_atomic(bundle_file, other)
        started = time.monotonic()
        server.wait_for(lambda: server.running.state.loads == 2)
        assert time.monotonic() - started < 2.0
