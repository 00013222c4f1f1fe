"""The webhook's loggers: ``approvalgate.webhook.<part>``, as JSON lines (:mod:`runtime.logs`).

An admission's line carries the object reference: ``uid``, ``namespace``, ``name``, ``user``,
``operation``, ``decision``, ``reason``, ``policies``, ``latency_ms`` (see :mod:`webhook.app`).
Nothing here ever sees key material: bundles hold only public keys, and TLS errors are
logged by path, never by content.
"""

from __future__ import annotations

import logging
from typing import Final, TextIO

from approvalgate.runtime import logs

LOGGER_NAME: Final = "approvalgate.webhook"


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """Send the webhook's, its cluster view's informers' (``approvalgate.kube``) and aiohttp's
    records as JSON lines to ``stream`` (stderr)."""
    logs.configure((LOGGER_NAME, "approvalgate.kube", "aiohttp"), level, stream)
