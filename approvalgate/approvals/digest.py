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
from collections.abc import Iterable
from typing import Any, Final, cast

import rfc8785

from approvalgate.approvals.errors import DigestError, JsonPath, Location, format_json_path

MAX_SAFE_INTEGER: Final = 2**53 - 1
"""Largest integer a JSON number (an IEEE 754 double) holds exactly; RFC 8785's limit too."""

QUOTE_ADVICE: Final = "quote the value in the YAML so it stays a string"

MAX_SPEC_BYTES: Final = 256 * 1024
"""The largest run spec (an AgentRun's, an ApprovalRequest's run) approvalgate digests, in
bytes of RFC 8785 canonical JSON: every admission of a run digests its spec in pure Python,
so this bounds the work a requester can make one admission cost (the API server itself
passes the webhook objects of up to 3 MiB). Like :data:`records.MAX_ANNOTATION_BYTES`."""
MAX_CANONICAL_BYTES: Final = 1024 * 1024
"""The largest other document digested (referenced content, a parent's run templates): under
etcd's 1.5 MiB object limit, a third of what the API server hands the webhook."""
STORED_BYTES: Final = 4 * 1024 * 1024
"""More than any object etcd stores (1.5 MiB by default): :func:`stored_spec_digest`."""
SPEC_ADVICE: Final = (
    " for a run: keep long text in the ImplementationSpec the run references (bound by its "
    "digest), not in the run's spec"
)


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


def check_digestable(value: object, path: JsonPath, limit: int) -> None:
    """Raise :class:`DigestError` at the first value RFC 8785 cannot represent exactly, or
    once the walk has seen more than ``limit`` bytes of canonical JSON (then it stops: the
    work is bounded by ``limit``, not by the document)."""
    _check(value, path, limit, limit)


def _check(value: object, path: JsonPath, room: int, limit: int) -> int:
    """:func:`check_digestable` with ``room`` bytes left; returns the room left. What is
    counted is at most what RFC 8785 writes for it (escapes and numbers write more), so
    running out of room means the canonical JSON is over the limit."""
    if value is None or isinstance(value, bool):
        room -= 4
    elif isinstance(value, int | float):
        problem = number_problem(value)
        if problem:
            raise DigestError(problem, location=_where(path), advice=QUOTE_ADVICE)
        room -= 1
    elif isinstance(value, str):
        _check_text(value, path)
        room -= len(value) + 2
    elif isinstance(value, dict):
        room -= 2
        for key, item in value.items():
            if not isinstance(key, str):
                raise DigestError(f"object key {key!r} is not a string", location=_where(path))
            _check_text(key, path)
            room = _check(item, (*path, key), room - len(key) - 3, limit)
    elif isinstance(value, list | tuple):
        room -= 2
        for index, item in enumerate(value):
            room = _check(item, (*path, index), room, limit)
    else:
        raise DigestError(f"{type(value).__name__} is not a JSON value", location=_where(path))
    if room < 0:
        raise _Past(too_large(path[:1], limit).message, location=_where(path[:1]))
    return room


class _Past(DigestError):
    """:func:`too_large`, raised by the walk (:func:`room_left` tells it apart)."""


def room_left(value: object, room: int) -> int:
    """``room`` less the bytes of ``value``'s canonical JSON (as :func:`check_digestable`
    counts them: at most what RFC 8785 writes), or -1 once past: the walk stops there, so
    the work is bounded by ``room``. :class:`DigestError` for a value RFC 8785 cannot
    represent."""
    try:
        return _check(value, (), room, room)
    except _Past:
        return -1


def too_large(path: JsonPath, limit: int) -> DigestError:
    """The refusal of a document over ``limit`` bytes of canonical JSON (named by ``path``)."""
    what = format_json_path(path)[2:] or "the document"
    return DigestError(
        f"{what} is larger than {limit} bytes as RFC 8785 canonical JSON, the most approvalgate "
        f"digests{SPEC_ADVICE if limit == MAX_SPEC_BYTES else ''}",
        location=_where(path),
    )


def canonical_json(
    value: object, path: JsonPath = (), *, limit: int = MAX_CANONICAL_BYTES
) -> bytes:
    """RFC 8785 (JCS) bytes of a JSON-like tree; :class:`DigestError` when impossible, or
    when longer than ``limit`` bytes (the work done is bounded by ``limit`` either way).

    ``path`` is where ``value`` sits in its document, for error messages only.
    """
    check_digestable(value, path, limit)
    data: bytes = rfc8785.dumps(cast(Any, value))
    if len(data) > limit:
        raise too_large(path[:1], limit)
    return data


def spec_digest(spec: object) -> str:
    """Lowercase hex sha256 of the canonical JSON of an object's ``spec`` (a run's: at most
    :data:`MAX_SPEC_BYTES`)."""
    return hashlib.sha256(canonical_json(spec, ("spec",), limit=MAX_SPEC_BYTES)).hexdigest()


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


def stored_spec_digest(spec: object) -> str:
    """:func:`spec_digest` of a spec the API server already stores (the ledger's record of a
    run), past :data:`MAX_SPEC_BYTES` too: a run admitted before the bound still gets its use
    and its finalizer released. Bounded by what etcd stores, off the admission path."""
    return hashlib.sha256(canonical_json(spec, ("spec",), limit=STORED_BYTES)).hexdigest()


def smaller_than(value: object, limit: int) -> bool:
    """Whether ``value``'s strings, keys and nodes add up to less than ``limit`` (a cheap
    size probe, no validation): it looks at no more than ``limit`` of them, so callers may
    ``repr`` or copy ``value`` afterwards knowing that costs O(limit), whatever was sent.

    On every admission (the memo's key is built after it): the common JSON types are told
    by ``type() is`` and a container's plain leaves are counted where they sit, not pushed
    on the stack (the bench's 2-approval spec: 5.0 -> 3.6 µs). Each node costs 1, a string or
    key its length too, a container its length too; the sum does not depend on the order.
    """
    room = limit
    stack = [value]
    while stack:
        item = stack.pop()
        room -= 1
        if type(item) is str or isinstance(item, str):
            room -= len(item)
            children: Iterable[object] = ()
        elif isinstance(item, dict):
            room -= len(item)
            if room < 0:
                return False  # before looking at its items
            for key in item:
                room -= len(key) if isinstance(key, str) else 1
            children = item.values()
        elif isinstance(item, list | tuple):
            room -= len(item)
            if room < 0:
                return False
            children = item
        else:
            children = ()
        for child in children:
            kind = type(child)
            if kind is str:
                room -= 1 + len(cast(str, child))
            elif kind in _LEAVES:
                room -= 1
            else:
                stack.append(child)
        if room < 0:
            return False
    return True


_LEAVES: Final = frozenset({int, float, bool, type(None)})
"""Types :func:`smaller_than` counts where it meets them (a node each): exact types only, so
a subclass goes through the general branch."""
