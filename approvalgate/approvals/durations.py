"""Durations written like ``30m``, ``1h30m``, ``7d`` (Go-style units, no fractions)."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(?:\d+[smhd])+$")
_PART = re.compile(r"(\d+)([smhd])")


def parse_duration(text: str) -> int:
    """Seconds in ``text``; raises ValueError with an example of the expected form."""
    if not _DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration like 30m, 1h30m or 7d")
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))


def format_duration(seconds: int) -> str:
    """The shortest form of ``seconds``: 90 -> ``1m30s``, 86400 -> ``1d``."""
    if seconds <= 0:
        return "0s"
    out = ""
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if count:
            out += f"{count}{unit}"
    return out
