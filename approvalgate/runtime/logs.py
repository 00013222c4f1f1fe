"""JSON logs: one object per line, with the fields of the event.

Fields: ``ts`` (RFC 3339, UTC, milliseconds), ``level``, ``msg``, ``logger``, ``pid``, then the
event's own fields (for an object: its reference, e.g. ``namespace`` and ``name``) and
``exc`` with the traceback when there is one. Call sites pass fields with :func:`fields`,
never in the message (no f-strings in log calls). Each process names its own logger trees
(``approvalgate.webhook``, ``aiohttp``...) and sends them here with :func:`configure`.

Values hold text requesters wrote (names, messages quoting their fields), so a line reads
as what it stores: JSON escapes a newline or a quote; characters that a terminal or a log
reader breaks a line at (U+2028, U+2029, NEL), that reorder or hide the text around them
(bidi controls, zero-width, tags) or that UTF-8 cannot encode (a lone surrogate, which lost
the whole record) are written as ``\\uXXXX`` escapes too (:func:`_escape_hiding`). Other
letters stay as they are.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final, TextIO

_FIELDS: Final = "approvalgate_fields"
_HIDING: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Controls (C1: json.dumps escapes C0 only), format, surrogate, private-use, unassigned,
line and paragraph separators."""


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
        return _escape_hiding(json.dumps(out, default=str, ensure_ascii=False))


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _escape_hiding(line: str) -> str:
    """``line`` (JSON, where any character past ASCII is inside a string) with every
    character of :data:`_HIDING` as its JSON escape. An ASCII line is returned as it is."""
    if line.isascii():
        return line
    return "".join(
        _escape(char) if not char.isascii() and unicodedata.category(char) in _HIDING else char
        for char in line
    )


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
