"""The tests' own port picker (tests/support/ports.py): a port chosen for a server that binds
it seconds later must not be one the kernel can hand to an outgoing connection meanwhile."""

from __future__ import annotations

import socket

import pytest

from tests.support import ports


def test_ports_are_below_the_ephemeral_range_bind_and_are_never_given_twice() -> None:
    low, high = ports.ephemeral_range()
    assert 0 < low <= high
    given = [ports.free_port() for _ in range(50)]
    assert len(set(given)) == len(given)
    if low - ports.LOWEST >= 1000:
        assert all(ports.LOWEST <= port < low for port in given), given
    for port in given[:5]:
        with socket.socket() as sock:
            sock.bind((ports.LOOPBACK, port))  # still free: nothing else took it


def test_a_port_that_is_taken_is_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """The draw lands on a port something listens on: it is skipped for the next one."""
    busy, free = ports.free_port(), ports.free_port()
    ports._given.difference_update({busy, free})  # drawn again below
    draws = iter([busy, busy, free])

    class Draw:
        def randrange(self, start: int, stop: int) -> int:
            return next(draws)

    monkeypatch.setattr(ports, "_draw", Draw())
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (busy + free + ports.LOWEST, 65535))
    with socket.socket() as taken:
        taken.bind((ports.LOOPBACK, busy))
        taken.listen()
        assert ports.free_port() == free
