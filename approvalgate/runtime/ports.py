"""Binding a listening port; a port that cannot be had is an error that says what to do."""

from __future__ import annotations

from collections.abc import Awaitable

from approvalgate.approvals.errors import ApprovalgateError

BIND_ADVICE = "pick another --port/--metrics-port or stop what uses it"


class ListenError(ApprovalgateError):
    """The port cannot be bound."""


async def listen(
    start: Awaitable[None], host: str, port: int, *, advice: str = BIND_ADVICE
) -> None:
    """Await ``start`` (a listener binding ``host:port``); a bind failure is a ListenError."""
    try:
        await start
    except OSError as exc:
        raise ListenError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", advice=advice
        ) from None
