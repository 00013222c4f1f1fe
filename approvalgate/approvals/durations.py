"""Durations written like ``30m``, ``1h30m``, ``7d`` (Go-style units, no fractions)."""

from __future__ import annotations

import re
from typing import Final

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:[0-9]+[smhd])+", re.ASCII)
_PART = re.compile(r"([0-9]+)([smhd])", re.ASCII)
MAX_DURATION_SECONDS: Final = 3650 * 86400
"""Ten years: the longest duration read. A lifetime beyond what a date can hold made every
later sum with it (a reject's veto window: its expiry plus the bundle's longest lifetime)
raise, so a policy's ``bypass.maxTTL: 99999999999999d`` turned each verdict on an expired
reject into an internal error."""


def parse_duration(text: str) -> int:
    """Seconds in ``text``; raises ValueError with an example of the expected form.

    The whole text must match: no trailing newline (``$`` would allow one), only ASCII digits
    (Python's ``\\d`` and ``int`` also take other scripts' digits), at most
    :data:`MAX_DURATION_SECONDS`."""
    if not _DURATION.fullmatch(text):
        raise ValueError(f"{text!r} is not a duration like 30m, 1h30m or 7d")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{text!r} is longer than {format_duration(MAX_DURATION_SECONDS)}")
    return seconds


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
