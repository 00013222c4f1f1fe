"""JSON logs: one object per line, with the fields of the event.

Fields: ``ts`` (RFC 3339, UTC, milliseconds), ``level``, ``msg``, ``logger``, ``pid``, then the
event's own fields (for an object: its reference, e.g. ``namespace`` and ``name``) and
``exc`` with the traceback when there is one. Call sites pass fields with :func:`fields`,
never in the message (no f-strings in log calls). Each process names its own logger trees
(``approvalgate.webhook``, ``aiohttp``...) and sends them here with :func:`configure`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final, TextIO

_FIELDS: Final = "approvalgate_fields"


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


def configure(names: Iterable[str], level: str = "info", stream: TextIO | None = None) -> None:
    """Send the records of the loggers ``names`` (and their children) as JSON lines to
    ``stream`` (stderr), at ``level`` and above, and nowhere else."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in names:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
