"""The spec digest: sha256 of the RFC 8785 canonical JSON of an AgentRun's ``spec``.

The webhook digests the spec exactly as the API server hands it over (decoded JSON); the
CLI digests the spec of a YAML file read the way kubectl reads it (:mod:`approvals.kubeyaml`).
Both reach the same bytes because canonical JSON ignores key order and formatting.

RFC 8785 serializes numbers as IEEE 754 doubles, so it can only represent integers exactly
within ±(2^53 - 1). Beyond that the platform (JavaScript) runs an approximation, even where
the API server keeps the integer exact (within int64; beyond it the API server keeps a double
too: 18446744073709551617 reaches the webhook as 18446744073709552000,
tests/e2e/test_formats.py), so such numbers are refused with a
:class:`DigestError` that names the JSON path, instead of signing something nobody can
reproduce. NaN and infinities are not JSON at all and are refused too.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Final, cast

import rfc8785

from approvalgate.approvals.errors import DigestError, JsonPath, Location, format_json_path

MAX_SAFE_INTEGER: Final = 2**53 - 1
"""Largest integer a JSON number (an IEEE 754 double) holds exactly; RFC 8785's limit too."""

QUOTE_ADVICE: Final = "quote the value in the YAML so it stays a string"


def number_problem(value: int | float) -> str | None:
    """Why ``value`` cannot be part of a digested spec, or None when it can."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a JSON number (NaN and infinities cannot be sent or signed)"
    if abs(value) > MAX_SAFE_INTEGER:
        return (
            f"the number {value} is beyond ±(2^53 - 1) = ±{MAX_SAFE_INTEGER}: the platform "
            "(JavaScript) reads JSON numbers as doubles, so it would run an approximation, and "
            "RFC 8785 cannot sign it exactly"
        )
    return None


def check_digestable(value: object, path: JsonPath = ()) -> None:
    """Raise :class:`DigestError` at the first value RFC 8785 cannot represent exactly."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int | float):
        problem = number_problem(value)
        if problem:
            raise DigestError(problem, location=_where(path), advice=QUOTE_ADVICE)
    elif isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise DigestError(f"object key {key!r} is not a string", location=_where(path))
            _check_text(key, path)
            check_digestable(item, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_digestable(item, (*path, index))
    else:
        raise DigestError(f"{type(value).__name__} is not a JSON value", location=_where(path))


def canonical_json(value: object, path: JsonPath = ()) -> bytes:
    """RFC 8785 (JCS) bytes of a JSON-like tree; :class:`DigestError` when impossible.

    ``path`` is where ``value`` sits in its document, for error messages only.
    """
    check_digestable(value, path)
    data: bytes = rfc8785.dumps(cast(Any, value))
    return data


def spec_digest(spec: object) -> str:
    """Lowercase hex sha256 of the canonical JSON of an object's ``spec``."""
    return hashlib.sha256(canonical_json(spec, ("spec",))).hexdigest()


def _check_text(text: str, path: JsonPath) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise DigestError(
            f"string contains a lone surrogate at index {error.start}", location=_where(path)
        ) from None


def _where(path: JsonPath) -> Location:
    return Location(json_path=format_json_path(path))
