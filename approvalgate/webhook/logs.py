"""JSON logs: one object per line, with the object reference of each admission.

Fields: ``ts`` (RFC 3339, UTC, milliseconds), ``level``, ``msg``, ``logger``, ``pid``, then the
event's own fields (for an admission: ``uid``, ``namespace``, ``name``, ``user``,
``operation``, ``decision``, ``reason``, ``policies``, ``latency_ms``) and ``exc`` with the
traceback when there is one. Call sites pass fields with :func:`fields`, never in the
message (no f-strings in log calls). Nothing here ever sees key material: bundles hold only
public keys, and TLS errors are logged by path, never by content.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, Final, TextIO

LOGGER_NAME: Final = "approvalgate.webhook"
_FIELDS: Final = "approvalgate_fields"


def get_logger(name: str = "") -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a log call: ``log.info("admission", extra=fields(uid=...))``."""
    return {_FIELDS: values}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        out: dict[str, Any] = {
            "ts": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "logger": record.name,
            "pid": record.process if record.process is not None else os.getpid(),
        }
        extra = getattr(record, _FIELDS, None)
        if isinstance(extra, dict):
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """Send the webhook's and aiohttp's records as JSON lines to ``stream`` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in (LOGGER_NAME, "aiohttp"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
