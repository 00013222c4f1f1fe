"""Ports for the tests' listeners, chosen below the kernel's ephemeral range.

A port found free by binding port 0 is one of the ephemeral ports the kernel also hands to
outgoing connections (Linux: ``ip_local_port_range``, 32768-60999 by default). Seconds may
pass between a test choosing it and its server binding it (the e2e gate registers its URL
and compiles its repo first), and any connection opened meanwhile (the API server to etcd,
a client to the API server) may take it: the server then exits with "address already in
use" and every test of the module errors (seen once in CI, on a webhook's port). The kernel
never hands out a port below that range on its own, so only another explicit bind can take
one: a port is drawn at random there and kept only if it binds now, and never given twice by
one process.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path
from typing import Final

LOOPBACK: Final = "127.0.0.1"
LOWEST: Final = 10000
"""Below this, well-known and registered services (and root's habits) live."""
_DEFAULT_EPHEMERAL: Final = (32768, 60999)
_RANGE_FILE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
_given: set[int] = set()
_draw = random.SystemRandom()


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for ephemeral ports (the default where it cannot be read)."""
    try:
        low, high = (int(part) for part in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return low, high


def free_port(host: str = LOOPBACK) -> int:
    """A port of ``host`` that binds now, below the ephemeral range where there is room
    (else one the kernel picks, as before)."""
    low, _ = ephemeral_range()
    if low - LOWEST >= 1000:
        for _ in range(500):
            port = _draw.randrange(LOWEST, low)
            if port in _given:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
            _given.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
    _given.add(port)
    return port
