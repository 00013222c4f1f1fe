"""The connection table and deadlines of webhook/listener.py, on the production Worker over
real TLS: what is closed, when, and whose connection goes when the table is full.

Clients are blocking sockets from two loopback addresses (127.0.0.1 and 127.0.0.2), so that
"the address holding the most connections" is something a test can arrange.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from approvalgate.webhook import listener
from approvalgate.webhook.listener import FD_RESERVE, connection_limit, raise_fd_limit
from tests.integration.harness import ServerThread, TestPKI, agentrun_request, review_body

OTHER = "127.0.0.2"
HEAD = b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
IDLE_TIMEOUT = 1.0
# When a connection is closed by the 1 s idle timeout: not before 0.8 s (a deadline cannot fire
# early, however busy the machine), and before CLOSED_BY, which is generous (a bound on hangs,
# not a speed) yet below listener.HANDSHAKE_TIMEOUT (10 s), the next deadline that could close
# it: so it is the idle timeout that acted.
CLOSED_BY = 8.0
assert CLOSED_BY < listener.HANDSHAKE_TIMEOUT


class Clients:
    """Opens connections to the server and closes them all at the end of the test."""

    def __init__(self, server: ServerThread) -> None:
        self.server = server
        self.context = server.pki.client_context()
        self.sockets: list[socket.socket] = []

    def raw(self, source: str = "127.0.0.1") -> socket.socket:
        sock = socket.create_connection(
            ("127.0.0.1", self.server.port), timeout=5, source_address=(source, 0)
        )
        self.sockets.append(sock)
        return sock

    def tls(self, source: str = "127.0.0.1") -> ssl.SSLSocket:
        sock = self.context.wrap_socket(self.raw(source), server_hostname="127.0.0.1")
        self.sockets.append(sock)
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True if the server closes ``sock`` (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def _post(sock: ssl.SSLSocket) -> int:
    """One admission request on ``sock``; the HTTP status."""
    body = review_body(agentrun_request())
    sock.sendall(
        b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    data = b""
    sock.settimeout(5)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "closed before an answer"
        data += chunk
    return int(data.split(b" ", 2)[1])


def _dropped(server: ServerThread, reason: str) -> float:
    counter = server.running.metrics.connections_dropped.labels(reason)
    return float(counter._value.get())  # the in-process value


@pytest.fixture
def server(
    pki: TestPKI, bundle_file: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerThread]:
    """For the deadline tests: a 1 s idle timeout."""
    monkeypatch.setattr(listener, "MIN_WAIT", 0.3)
    monkeypatch.setattr(listener, "MIN_HANDSHAKE", 0.3)
    with ServerThread(pki, bundle_file, max_connections=4, idle_timeout=IDLE_TIMEOUT) as running:
        yield running


# For the table tests: a table of 4, connections "young" for MIN_WAIT, and an idle timeout
# they never reach. Each step of a test (a TLS handshake, a request) must fit in MIN_WAIT for
# a connection to still count as young; 2 s holds on a busy machine (0.3 s did not always).
TABLE_MIN_WAIT = 2.0
TABLE_IDLE_TIMEOUT = 120.0


@pytest.fixture
def table(
    pki: TestPKI, bundle_file: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerThread]:
    monkeypatch.setattr(listener, "MIN_WAIT", TABLE_MIN_WAIT)
    monkeypatch.setattr(listener, "MIN_HANDSHAKE", TABLE_MIN_WAIT)
    with ServerThread(
        pki, bundle_file, max_connections=4, idle_timeout=TABLE_IDLE_TIMEOUT
    ) as running:
        yield running


@pytest.fixture
def table_clients(table: ServerThread) -> Iterator[Clients]:
    opened = Clients(table)
    yield opened
    opened.close()


@pytest.fixture
def clients(server: ServerThread) -> Iterator[Clients]:
    opened = Clients(server)
    yield opened
    opened.close()


def _open(server: ServerThread) -> int:
    running = server.running.listener
    assert running is not None
    return running.open_connections


def test_a_connection_without_a_handshake_is_closed_after_the_deadline(
    server: ServerThread, clients: Clients
) -> None:
    raw = clients.raw()
    started = time.monotonic()
    assert _closed_within(raw, CLOSED_BY + 1)
    assert 0.8 < time.monotonic() - started < CLOSED_BY  # min(HANDSHAKE_TIMEOUT, idle 1 s)
    server.wait_for(lambda: _dropped(server, "handshake-failed") == 1)


def test_a_request_head_that_never_ends_is_closed_after_the_idle_timeout(
    server: ServerThread, clients: Clients
) -> None:
    slow = clients.tls()
    started = time.monotonic()
    slow.sendall(HEAD)
    deadline = started + CLOSED_BY + 1
    closed = False
    while not closed and time.monotonic() < deadline:
        slow.sendall(b"a")  # more bytes do not restart the deadline
        closed = _closed_within(slow, 0.2)
    assert closed and 0.8 < time.monotonic() - started < CLOSED_BY


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(
    server: ServerThread, clients: Clients
) -> None:
    conn = clients.tls()
    assert _post(conn) == 200
    answered = time.monotonic()
    assert _closed_within(conn, CLOSED_BY + 1)
    assert 0.8 < time.monotonic() - answered < CLOSED_BY


def test_a_full_table_evicts_the_longest_waiting_connection_of_the_busiest_address(
    table: ServerThread, table_clients: Clients
) -> None:
    slow = [table_clients.tls(OTHER) for _ in range(3)]
    keep = table_clients.tls()  # 127.0.0.1 holds one connection and uses it
    assert _post(keep) == 200
    table.wait_for(lambda: _open(table) == 4)
    time.sleep(TABLE_MIN_WAIT + 0.1)  # past MIN_WAIT
    newcomer = table_clients.tls()  # full: one of 127.0.0.2's goes, the oldest
    assert _post(newcomer) == 200
    assert _closed_within(slow[0], CLOSED_BY)
    assert not _closed_within(slow[1], 0.1) and not _closed_within(slow[2], 0.1)
    assert _post(keep) == 200  # the other address's connection was not touched
    table.wait_for(lambda: _dropped(table, "evicted") == 1)


def test_a_newcomer_from_the_busiest_address_is_refused_while_its_connections_are_young(
    table: ServerThread, table_clients: Clients
) -> None:
    held = [table_clients.tls(OTHER) for _ in range(4)]
    table.wait_for(lambda: _open(table) == 4)
    # 127.0.0.2 holds the most, all younger than MIN_WAIT: closed before any TLS
    with pytest.raises((ConnectionResetError, ssl.SSLError, BrokenPipeError)):
        table_clients.tls(OTHER)
    # counted just after the close the client saw, in the server's thread: wait for it
    table.wait_for(lambda: _dropped(table, "refused") == 1)
    time.sleep(TABLE_MIN_WAIT + 0.1)
    again = table_clients.tls(OTHER)  # now its oldest may go
    assert _post(again) == 200
    assert _closed_within(held[0], CLOSED_BY)


def test_a_newcomer_from_another_address_waits_for_room_instead_of_being_refused(
    table: ServerThread, table_clients: Clients
) -> None:
    held = [table_clients.tls(OTHER) for _ in range(4)]
    table.wait_for(lambda: _open(table) == 4)
    started = time.monotonic()
    newcomer = table_clients.tls()  # held in accept until 127.0.0.2's oldest has waited MIN_WAIT
    assert _post(newcomer) == 200
    assert time.monotonic() - started < CLOSED_BY  # it waited, it did not hang
    assert _closed_within(held[0], CLOSED_BY)
    assert _dropped(table, "refused") == 0


def test_an_answered_connection_goes_after_connections_that_waited_longer(
    table: ServerThread, table_clients: Clients
) -> None:
    first = table_clients.tls(OTHER)
    second = table_clients.tls(OTHER)
    third = table_clients.tls(OTHER)
    fourth = table_clients.tls(OTHER)
    time.sleep(TABLE_MIN_WAIT + 0.1)
    assert _post(first) == 200  # its wait starts again: second is now the longest waiting
    newcomer = table_clients.tls()
    assert _post(newcomer) == 200
    assert _closed_within(second, CLOSED_BY)
    assert not _closed_within(first, 0.1)
    assert _post(first) == 200
    del third, fourth


def test_the_connection_limit_fits_the_descriptor_limit() -> None:
    assert connection_limit(256, 1024) == 256
    assert connection_limit(100_000, 1024) == 1024 - 1024 // 8
    assert connection_limit(100_000, 100) == 100 - FD_RESERVE
    assert connection_limit(5, 10) == 1
    assert raise_fd_limit() >= 1024
