"""Strict JSON for request bodies: what Go's encoding/json would send, nothing more.

The API server only sends UTF-8 JSON objects without duplicate keys or non-finite numbers.
Anything else did not come from it and is rejected before decide() sees it:

- invalid UTF-8 (and a byte-order mark),
- nesting deeper than a bound, measured *before* parsing so that a 100,000-deep body
  cannot exhaust the parser's recursion (the scan runs at C speed: strings are cut out
  with one regular expression, brackets kept with ``bytes.translate``),
- duplicate object keys (``object_pairs_hook``): two parsers could read them differently,
- ``NaN``, ``Infinity``, ``-Infinity`` (``parse_constant``): not JSON at all,
- integers too long for ``int()`` (Python's 4,300-digit limit raises ``ValueError``).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any, Final

DEFAULT_MAX_DEPTH: Final = 128

# A JSON string: a quote, then runs of plain characters or escape pairs, then a quote.
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
# opening brackets -> +1, closing -> -1 (0xff read as a signed byte)
_SIGNED: Final = bytes(1 if b in b"[{" else 0xFF if b in b"]}" else 0 for b in range(256))


class StrictJSONError(ValueError):
    """The body is not strict JSON. ``kind`` is a short, bounded label for metrics."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def nesting_depth(data: bytes) -> int:
    """The deepest bracket nesting of ``data``, ignoring brackets inside strings.

    Exact for valid JSON; for invalid JSON a number the parser will then reject anyway.
    """
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    deepest: int = max(accumulate(memoryview(brackets.translate(_SIGNED)).cast("b")))
    return max(deepest, 0)


def loads(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse ``data`` as strict JSON or raise :class:`StrictJSONError`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StrictJSONError(
            "invalid-utf8", f"body is not valid UTF-8 (byte {exc.start})"
        ) from None
    if text.startswith("\ufeff"):
        raise StrictJSONError("invalid-json", "body starts with a byte-order mark")
    # Cheap bound first: nesting can never be deeper than the number of opening brackets
    # (counted in strings too, which only overestimates); the exact scan runs only when
    # that bound is over the limit. ``bytes.count`` runs at memchr speed.
    brackets = data.count(b"{") + data.count(b"[")
    depth = 0 if brackets <= max_depth else nesting_depth(data)
    if depth > max_depth:
        raise StrictJSONError(
            "too-deep", f"body nests {depth} levels deep (at most {max_depth} allowed)"
        )
    try:
        return _DECODER.decode(text)
    except StrictJSONError:
        raise
    except RecursionError:  # belt and braces: the depth scan should make this unreachable
        raise StrictJSONError("too-deep", "body nests too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError, or int() refusing 4,300+ digits
        raise StrictJSONError("invalid-json", f"body is not valid JSON: {exc}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise StrictJSONError("duplicate-key", f"duplicate key {key[:100]!r} in an object")
            seen.add(key)
    return obj


def _no_constant(name: str) -> Any:
    raise StrictJSONError("non-finite-number", f"{name} is not a JSON number")


# one decoder for every request (json.loads with hooks would build a new one each call)
_DECODER: Final = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)
