"""Read Kubernetes manifests exactly as kubectl does, keeping line:column positions.

kubectl splits a file on ``---`` lines (k8s.io/apimachinery YAMLReader), converts each
document with sigs.k8s.io/yaml, which decodes it with go-yaml v2 (YAML 1.1 typing) and
re-encodes it as JSON; the API server then sees JSON numbers as int64 or float64. A spec
signed from a YAML file must be the spec the server sees, so plain scalars are typed here by
go-yaml v2's own rules (``resolve.go``), not by a YAML 1.2 library's:

=======================================================  ====================  ==================
plain (unquoted, untagged) scalar                        becomes               why
=======================================================  ====================  ==================
``y Y yes Yes YES on On ON true True TRUE``              ``true``              YAML 1.1 booleans
``n N no No NO off Off OFF false False FALSE``           ``false``             YAML 1.1 booleans
``~ null Null NULL`` and an empty value                  ``null``              YAML 1.1 null
``0600 0o600`` / ``0x1F`` / ``0b101`` / ``+12``          384 / 31 / 5 / 12     Go ParseInt base 0
``1_000``                                                1000                  ``_`` is dropped
``1e3 2.0 1. 09``                                        1000 2 1 9            float, sent as int
``1.5 .5 1e-3``                                          1.5 0.5 0.001         float
``2024-01-01 2001-12-14t21:59:43.10-05:00``              string                v2 keeps the text
``1:30 190:20:30``                                       string                no base 60
``1e999 0x1FFFFFFFFFFFFFFFFF ._5 0o``                    string                Go cannot parse it
``.inf -.inf .nan`` (every spelling)                     InputError            kubectl fails
a number beyond ±(2^53 - 1)                              DigestError           see below
=======================================================  ====================  ==================

- Integral floats become ints: JSON has one number type, and the server re-encodes float64
  ``2`` as ``2``. Beyond ±(2^53 - 1) kubectl sends an approximation (12345678901234567890
  arrives as 12345678901234567000) and RFC 8785 cannot sign it: :class:`DigestError`, quote it.
- Quoted and block (``|``, ``>``) scalars are strings. ``!!str !!int !!float !!bool !!null``
  are honoured (``!!int "12"`` is 12; ``!!int yes`` is an error, as in kubectl). Every other
  tag (``!!binary``, ``!!timestamp``, ``!local``...) is an :class:`InputError`.
- Keys are strings in JSON; like sigs.k8s.io/yaml, ``1: x`` gives ``"1"``, ``yes: x`` gives
  ``"true"`` (and ``n: x`` gives ``"false"``!), ``1e7: x`` gives ``"1e+07"`` (Go ``%g`` of a
  float32). Null and collection keys fail, as in kubectl.
- Anchors and aliases are expanded, merge keys ``<<`` follow go-yaml v2 (a merge overrides
  keys written before it; earlier mappings in a merged list win). Alias expansion is
  capped (:data:`MAX_ALIAS_NODES` nodes, :data:`MAX_ALIAS_CHARS` characters): no alias bombs.

Stricter than kubectl, on purpose (kubectl silently picks something; we refuse to sign it):
duplicate keys (kubectl keeps the last), content after a ``...`` end marker (kubectl drops it),
tags kubectl decodes in surprising ways. A line starting with ``---`` followed by anything
but a comment is an error in both.

Strict mode (``strict=True``, the policy compiler's sources: approvalgate.yaml, the specs,
the values files it writes into) also refuses what a reviewer reads otherwise than the
compiler, kubectl and Helm do: a plain scalar or key whose YAML 1.1 typing (go-yaml v2's,
above) differs from YAML 1.2's, which people, linters and most libraries read (``0443`` is
291, ``yes`` and ``on`` are true, ``1_000`` is 1000, ``0b1`` is 1, the key ``n`` is
"false"); explicit ``!!int !!float !!bool !!null`` tags; a merge ``<<`` that overrides a key
written before it (go-yaml v2 takes the merged value, the YAML spec the written one) or a
second ``<<`` in one mapping; an anchor defined twice (an alias reads the latest); line
breaks a diff does not show as one (a lone CR, NEL, LS, PS: ``# note\renforcement: warn``
hides a line in a comment); 40 blanks or more inside a line (what follows is off screen);
and characters that show as nothing or reorder the text around
them (:func:`hidden_text.is_hidden`: zero-width, bidi controls, tag characters, a BOM other
than the first character).

Also refused: JSON written with surrogate-pair escapes (``"\\ud83d\\ude00"``), which kubectl
reads with Go's JSON decoder but YAML forbids; write the character itself.

The parser is PyYAML's (libyaml's when available), not ruamel.yaml's YAML 1.2 one: go-yaml v2
is a port of libyaml, so both scan alike (3000 randomly styled documents compared equal with
kubectl 1.34). Only its events are used, with positions; all typing is done here.
"""

from __future__ import annotations

import math
import re
import struct
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import yaml

from approvalgate.approvals.digest import QUOTE_ADVICE, number_problem
from approvalgate.approvals.errors import (
    DigestError,
    InputError,
    JsonPath,
    Location,
    format_json_path,
)
from approvalgate.approvals.hidden_text import is_hidden

Json: TypeAlias = Any
"""dict[str, Json] | list[Json] | str | int | float | bool | None"""

MAX_ALIAS_NODES: Final = 100_000
MAX_ALIAS_CHARS: Final = 10_000_000
MAX_DEPTH: Final = 256

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG: Final = "tag:yaml.org,2002:"
_SCALAR_TAGS: Final = {f"{_TAG}{name}" for name in ("int", "float", "bool", "null")}
_KEYWORDS: Final[dict[str, object]] = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "on", "On", "ON"), True),
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "off", "Off", "OFF"), False),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_MISSING: Final = object()
_NUMBER_START: Final = frozenset(".+-0123456789")  # plain scalars that may not be strings
_GO_INT = re.compile(r"([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)\Z")
_GO_BINARY = re.compile(r"([-+]?)([01]+)\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_DOT_FLOAT = re.compile(r"\.[0-9](_?[0-9])*([eE][-+]?[0-9](_?[0-9])*)?\Z")  # Go: 1_0 ok
_NOT_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_DASHES_LINE = re.compile(r"^---[^\n]*", re.MULTILINE)
_HIDDEN_BREAK = re.compile("\r(?!\n)|[\x85\u2028\u2029]")
"""Line breaks to YAML that git, GitHub and most editors do not show as one."""
_OFF_SCREEN = re.compile(r"(?<=\S)[ \t]{40,}(?=\S)")
"""Enough blanks inside a line to push what follows past the right edge of a diff view."""
_MAYBE_HIDDEN = re.compile("[^\t\n\r\x20-\x7e\xa1-\xac\xae-\u02ff]")
"""Characters :func:`is_hidden` must look at (everything else is visible)."""
_YAML12_INT = re.compile(r"[-+]?[0-9]+\Z")
_YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_YAML12_WORDS: Final[dict[str, object]] = {
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
}


@dataclass(frozen=True)
class Document:
    """One non-empty document of a manifest file.

    ``index`` is the document's position in :func:`split_documents` (empty documents count),
    ``text`` is exactly that chunk (with its ``---`` line), ``start_line`` its first line.
    """

    index: int
    obj: dict[str, Json]
    start_line: int
    text: str
    filename: str = "<input>"
    positions: Mapping[JsonPath, tuple[int, int]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def position(self, path: Sequence[str | int]) -> tuple[int, int]:
        """1-based (line, column) of the key or item at ``path``, or of its nearest ancestor."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(tuple(path[:end]))
            if found:
                return found
        return (self.start_line, 1)

    def location(self, path: Sequence[str | int]) -> Location:
        line, column = self.position(path)
        return Location(self.filename, line, column, format_json_path(tuple(path)))


def split_documents(text: str) -> list[str]:
    """Cut ``text`` where kubectl does; ``"".join(split_documents(text)) == text`` always.

    Every chunk but the first starts with its ``---`` line (a line that starts with ``---``
    followed only by spaces or a comment).
    """
    chunks: list[str] = []
    start = 0
    for match in _DASHES_LINE.finditer(text):
        if match.start() > start and _is_separator(match.group()):
            chunks.append(text[start : match.start()])
            start = match.start()
    if start < len(text):
        chunks.append(text[start:])
    return chunks


def load_manifests(
    text: str | bytes,
    filename: str = "<input>",
    *,
    strict: bool = False,
    json_numbers: bool = True,
) -> list[Document]:
    """Every non-empty document of a manifest file, typed as kubectl sends it.

    Raises :class:`InputError` for what kubectl cannot read (or reads surprisingly) and
    :class:`DigestError` for numbers a spec digest cannot represent, both with file:line:col.
    ``strict``: also refuse what a reviewer reads otherwise (the module's docstring).
    ``json_numbers=False`` (a Helm values file, which is no API object): numbers are kept as
    go-yaml v2 reads them, infinite or beyond JSON's doubles too.
    """
    text = _decode(text, filename)
    if bad := _NOT_PRINTABLE.search(text):
        raise InputError(
            f"character U+{ord(bad.group()):04X} is not allowed in YAML",
            location=_offset_location(text, bad.start(), filename),
        )
    if strict:
        _check_shown_as_read(text, filename)
    for match in _DASHES_LINE.finditer(text):
        if not _is_separator(match.group()):
            raise InputError(
                f"invalid document separator {match.group().strip()!r}",
                location=_offset_location(text, match.start(), filename),
                advice="kubectl allows only spaces and a # comment after ---",
            )
    documents = []
    line = 1
    for index, chunk in enumerate(split_documents(text)):
        document = _load_document(chunk, index, line, filename, strict, json_numbers)
        if document is not None:
            documents.append(document)
        line += chunk.count("\n")
    return documents


def _check_shown_as_read(text: str, filename: str) -> None:
    """Strict mode: no line break a diff hides, no character that shows as nothing."""
    if bad := _HIDDEN_BREAK.search(text):
        raise InputError(
            f"line break U+{ord(bad.group()):04X} that git and GitHub do not show as one: "
            "YAML starts a new line there, so what follows it (in a comment too) is read "
            "as a line of its own",
            location=_offset_location(text, bad.start(), filename),
            advice="use LF (or CRLF) line endings only: `dos2unix` the file",
        )
    if far := _OFF_SCREEN.search(text):
        raise InputError(
            f"{far.end() - far.start()} blanks inside a line push what follows out of a diff "
            "view's sight",
            location=_offset_location(text, far.end(), filename),
            advice="put it on its own line (a list item per line), or remove the blanks",
        )
    start = 1 if text.startswith("\ufeff") else 0  # a leading BOM is read as nothing
    for match in _MAYBE_HIDDEN.finditer(text, start):
        char = match.group()
        if is_hidden(char) or char == "\ufeff":
            raise InputError(
                f"invisible character U+{ord(char):04X} "
                f"{unicodedata.name(char, '(unnamed)')}: a reviewer sees nothing (or text "
                "in another order) where the compiler reads it",
                location=_offset_location(text, match.start(), filename),
                advice="delete it, or write it as an escape in a double-quoted string "
                f'("{_escape(char)}", shown as written) if it is meant',
            )


def _escape(char: str) -> str:
    """A YAML double-quoted escape of ``char``."""
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _yaml12_reading(text: str) -> object:
    """How a YAML 1.2 (core schema) reader types a plain scalar; ``text`` if a string."""
    found = _YAML12_WORDS.get(text, _MISSING)
    if found is not _MISSING:
        return found
    if _YAML12_INT.match(text):
        return int(text, 10)
    if text[:2] in ("0o", "0x"):
        try:
            return int(text[2:], 8 if text[1] == "o" else 16)
        except ValueError:
            return text
    if _YAML12_FLOAT.match(text):
        return float(text)
    return text


def _read_otherwise(text: str, value: object) -> object:
    """The YAML 1.2 reading of a plain scalar where it differs from ``value`` (else
    ``_MISSING``)."""
    other = _yaml12_reading(text)
    if isinstance(value, bool) or isinstance(other, bool) or value is None or other is None:
        same = value is other
    elif isinstance(value, int | float) and isinstance(other, int | float):
        same = value == other
    else:
        same = type(value) is type(other) and value == other
    return _MISSING if same else other


def _read_otherwise_message(text: str, value: object, other: object) -> tuple[str, str]:
    shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else value
    seen = "the text" if isinstance(other, str) else f"{other!r}"
    return (
        f"{text!r} is read as {shown} (YAML 1.1, as the compiler, kubectl and Helm read "
        f"it), while a reviewer and YAML 1.2 read {seen}",
        f'write {shown} if that is meant, or quote it ("{text}") for text',
    )


def _is_separator(line: str) -> bool:
    rest = line[3:].strip()
    return line.startswith("---") and (not rest or rest.startswith("#"))


def _decode(text: str | bytes, filename: str) -> str:
    if isinstance(text, str):
        return text
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError as error:
        good = text[: error.start].decode("utf-8")
        raise InputError(
            f"not valid UTF-8 (byte 0x{text[error.start]:02x})",
            location=_offset_location(good, len(good), filename),
            advice="save the file as UTF-8",
        ) from None


def _offset_location(text: str, offset: int, filename: str) -> Location:
    line = text.count("\n", 0, offset) + 1
    return Location(filename, line, offset - text.rfind("\n", 0, offset))


def _load_document(
    chunk: str,
    index: int,
    first_line: int,
    filename: str,
    strict: bool = False,
    json_numbers: bool = True,
) -> Document | None:
    fast = _load_plain_document(chunk, strict)
    if fast is not None:
        obj = fast[0]
        if obj is None:
            return None
        positions = _LazyPositions(chunk, index, first_line, filename)
        return Document(index, obj, first_line, chunk, filename, positions)
    # the fast path leaves every number a manifest could not hold to the full one
    return _load_full_document(chunk, index, first_line, filename, strict, json_numbers)


class _LazyPositions(Mapping[JsonPath, tuple[int, int]]):
    """The positions of a document loaded by the fast path, found when first asked for
    (to locate a finding): by loading it again the full way, which records them. Most
    documents never need them, and they cost more to record than the objects."""

    def __init__(self, chunk: str, index: int, first_line: int, filename: str) -> None:
        self._args = (chunk, index, first_line, filename)
        self._found: Mapping[JsonPath, tuple[int, int]] | None = None

    def _positions(self) -> Mapping[JsonPath, tuple[int, int]]:
        if self._found is None:
            document = _load_full_document(*self._args)
            self._found = document.positions if document is not None else {}
        return self._found

    def __getitem__(self, path: JsonPath) -> tuple[int, int]:
        return self._positions()[path]

    def __iter__(self) -> Iterator[JsonPath]:
        return iter(self._positions())

    def __len__(self) -> int:
        return len(self._positions())


def _load_full_document(
    chunk: str,
    index: int,
    first_line: int,
    filename: str,
    strict: bool = False,
    json_numbers: bool = True,
) -> Document | None:
    composer = _Composer(filename, first_line - 1, strict)
    parser = _Loader(chunk)
    try:
        # iter(get_event, None) rather than yaml.parse(): no Python generator per event
        roots = composer.documents(iter(parser.get_event, None))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        context = f" ({error.context})" if error.context else ""
        location, advice = Location(filename, first_line), ""
        if mark is not None:
            location = Location(filename, first_line + mark.line, mark.column + 1)
            lines = chunk.split("\n")
            if mark.line < len(lines) and lines[mark.line][mark.column : mark.column + 1] == "\t":
                advice = "indent with spaces: YAML does not allow tabs here"
        if "<document start>" in str(error.problem):
            advice = "start every document with a --- line (kubectl ignores text after '...')"
        message = f"invalid YAML: {error.problem}{context}"
        raise InputError(message, location=location, advice=advice) from None
    except yaml.YAMLError as error:
        raise InputError(
            f"invalid YAML: {error}", location=Location(filename, first_line)
        ) from None
    finally:
        parser.dispose()
    if len(roots) > 1:
        raise InputError(
            "a second YAML document after '...' (kubectl silently ignores it)",
            location=Location(filename, roots[1].line, roots[1].column),
            advice="separate documents with a --- line",
        )
    if not roots:
        return None
    converter = _Converter(filename, strict, json_numbers)
    obj = converter.convert(roots[0], ())
    if obj is None:
        return None
    if not isinstance(obj, dict):
        what = "a list" if isinstance(obj, list) else "a scalar"
        raise InputError(
            f"a manifest document must be a mapping, not {what}",
            location=Location(filename, roots[0].line, roots[0].column),
            advice="kubectl fails on it too",
        )
    converter.positions[()] = (roots[0].line, roots[0].column)
    return Document(index, obj, first_line, chunk, filename, converter.positions)


class _NotPlain(Exception):
    """The document needs the full composer and converter (or fails there)."""


_MAP_START, _MAP_END = yaml.MappingStartEvent, yaml.MappingEndEvent
_SEQ_START, _SEQ_END = yaml.SequenceStartEvent, yaml.SequenceEndEvent
_SCALAR = yaml.ScalarEvent


def _load_plain_document(chunk: str, strict: bool = False) -> tuple[dict[str, Json] | None] | None:
    """The fast path of :func:`_load_document`: ``(object,)``, or None for the full path.

    Most documents are one mapping of plain keys and untagged scalars: no anchor, alias,
    tag, merge key, duplicate key or number kubectl cannot send. For those, objects are
    built straight from the parser's events (no node graph, one pass), with the same
    typing as :class:`_Converter`; positions are left for when a finding needs one. Anything
    else, and every error, returns None: the full path then gives the same result, or the
    error with its location.
    """
    parser = _Loader(chunk)
    try:
        get = parser.get_event
        get()  # StreamStart
        event = get()
        if type(event) is yaml.StreamEndEvent:
            return (None,)
        if type(event) is not yaml.DocumentStartEvent:
            return None
        obj = _plain_node(get(), get, 0, strict)
        get()  # DocumentEnd
        if type(get()) is not yaml.StreamEndEvent:
            return None  # a second document after "...": an error, reported by the full path
    except (_NotPlain, yaml.YAMLError, RecursionError):
        return None
    finally:
        parser.dispose()
    if obj is not None and not isinstance(obj, dict):
        return None  # not a manifest: the full path says so, with the location
    return (obj,)


def _plain_node(event: Any, get: Any, depth: int, strict: bool = False) -> Json:
    kind = type(event)
    if kind is _SCALAR:
        return _plain_scalar(event, strict)
    if kind is yaml.AliasEvent or event.tag is not None or event.anchor or depth >= MAX_DEPTH:
        raise _NotPlain
    if kind is _MAP_START:
        out: dict[str, Json] = {}
        while True:
            key_event = get()
            if type(key_event) is _MAP_END:
                return out
            if type(key_event) is not _SCALAR or key_event.tag is not None or key_event.anchor:
                raise _NotPlain
            key = key_event.value
            if key_event.implicit[0] and not (
                key and key[0] not in _NUMBER_START and key not in _KEYWORDS and key != "<<"
            ):
                raise _NotPlain  # typed keys ("1", "true") and merges: the full path
            if key in out:
                raise _NotPlain  # a duplicate key: an error
            value_event = get()
            if type(value_event) is _SCALAR:  # most values: no call for the recursion
                out[key] = _plain_scalar(value_event, strict)
            else:
                out[key] = _plain_node(value_event, get, depth + 1, strict)
    if kind is _SEQ_START:
        items: list[Json] = []
        while True:
            item_event = get()
            item_kind = type(item_event)
            if item_kind is _SEQ_END:
                return items
            if item_kind is _SCALAR:
                items.append(_plain_scalar(item_event, strict))
            else:
                items.append(_plain_node(item_event, get, depth + 1, strict))
    raise _NotPlain


def _plain_scalar(event: Any, strict: bool = False) -> Json:
    """A scalar typed as :meth:`_Converter.scalar` does (raises _NotPlain where it errs)."""
    if event.tag is not None or event.anchor:
        raise _NotPlain
    text = event.value
    if not event.implicit[0]:  # quoted or block: a string
        return text
    if text and text[0] not in _NUMBER_START and text not in _KEYWORDS:
        return text
    value = _resolve_plain(text)
    if strict and _read_otherwise(text, value) is not _MISSING:
        raise _NotPlain  # an error, with its location, from the full path
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if (isinstance(value, float) and not math.isfinite(value)) or number_problem(value):
        raise _NotPlain  # an error, with its location, from the full path
    return int(value) if isinstance(value, float) and value.is_integer() else value


@dataclass(eq=False, slots=True)
class _Node:
    kind: str  # "scalar", "seq", "map" or "alias"
    line: int
    column: int
    tag: str | None = None
    text: str = ""
    plain: bool = False
    items: list[_Node] = field(default_factory=list)  # map: key, value, key, value...
    size: int = 1  # nodes once aliases are expanded
    chars: int = 0  # scalar characters once aliases are expanded


class _Composer:
    """Builds a node graph from parser events; aliases point at their anchored node."""

    def __init__(self, filename: str, line_offset: int, strict: bool = False) -> None:
        self.filename = filename
        self.line_offset = line_offset
        self.strict = strict
        self.anchors: dict[str, _Node] = {}
        self.open_anchors: set[str] = set()
        self.alias_nodes = 0
        self.alias_chars = 0

    def documents(self, events: Iterator[yaml.Event]) -> list[_Node]:
        roots = []
        for event in events:
            if type(event) is yaml.DocumentStartEvent:
                self.anchors = {}
                roots.append(self.node(next(events), events, 0))
        return roots

    def node(self, event: yaml.Event, events: Iterator[yaml.Event], depth: int) -> _Node:
        # The hot loop of loading a repo: exact type checks (the parsers make exactly these
        # classes), sizes summed as the children come.
        mark = event.start_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        line += self.line_offset
        if depth > MAX_DEPTH:
            raise InputError(
                f"nesting deeper than {MAX_DEPTH} levels", location=Location(self.filename, line)
            )
        kind = type(event)
        if kind is yaml.ScalarEvent:
            tag = event.tag  # type: ignore[attr-defined]
            value = event.value  # type: ignore[attr-defined]
            plain = tag is None and event.implicit[0]  # type: ignore[attr-defined]
            node = _Node("scalar", line, column, tag, value, plain, chars=len(value))
        elif kind is yaml.AliasEvent:
            return self.alias(event.anchor or "", line, column)  # type: ignore[attr-defined]
        else:
            assert isinstance(event, yaml.CollectionStartEvent)
            node = _Node(
                "map" if kind is yaml.MappingStartEvent else "seq", line, column, event.tag
            )
            self.open_anchors.add(event.anchor or "")
            items = node.items
            size, chars = 1, 0
            end_types = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
            for child in events:
                if type(child) in end_types:
                    break
                item = self.node(child, events, depth + 1)
                items.append(item)
                size += item.size
                chars += item.chars
            node.size, node.chars = size, chars
            self.open_anchors.discard(event.anchor or "")
        if event.anchor:  # type: ignore[attr-defined]
            anchor = event.anchor  # type: ignore[attr-defined]
            if self.strict and anchor in self.anchors:
                raise InputError(
                    f"anchor &{anchor} is defined again (first at line "
                    f"{self.anchors[anchor].line}): an alias *{anchor} reads the latest, a "
                    "reviewer may find the first",
                    location=Location(self.filename, line, column),
                    advice="give each anchor its own name",
                )
            self.anchors[anchor] = node
        return node

    def alias(self, anchor: str, line: int, column: int) -> _Node:
        target = self.anchors.get(anchor)
        if target is None:
            state = "is used inside its own value" if anchor in self.open_anchors else "is unknown"
            raise InputError(
                f"alias *{anchor} {state}", location=Location(self.filename, line, column)
            )
        self.alias_nodes += target.size
        self.alias_chars += target.chars
        if self.alias_nodes > MAX_ALIAS_NODES or self.alias_chars > MAX_ALIAS_CHARS:
            raise InputError(
                f"aliases expand to more than {MAX_ALIAS_NODES} nodes or "
                f"{MAX_ALIAS_CHARS} characters (an alias bomb?)",
                location=Location(self.filename, line, column),
            )
        return _Node("alias", line, column, items=[target], size=target.size, chars=target.chars)


class _Converter:
    """Turns a node graph into the JSON tree kubectl sends, recording key positions."""

    def __init__(self, filename: str, strict: bool = False, json_numbers: bool = True) -> None:
        self.filename = filename
        self.strict = strict
        self.json_numbers = json_numbers
        self.positions: dict[JsonPath, tuple[int, int]] = {}

    def convert(self, node: _Node, path: JsonPath) -> Json:
        node = _deref(node)
        if len(path) > MAX_DEPTH:
            raise self.error(node, path, f"nesting deeper than {MAX_DEPTH} levels")
        if node.kind == "scalar":
            if node.tag is None:  # fast path for strings, same answer as self.scalar()
                text = node.text
                if not node.plain:  # quoted or block: a string
                    return text
                if text and text[0] not in _NUMBER_START and text not in _KEYWORDS:
                    return text
            return self.scalar(node, path)
        self.check_tag(node, path)
        if node.kind == "map":
            return self.mapping(node, path)
        items = []
        for index, item in enumerate(node.items):
            self.positions[(*path, index)] = (item.line, item.column)
            items.append(self.convert(item, (*path, index)))
        return items

    def mapping(self, node: _Node, path: JsonPath) -> dict[str, Json]:
        out: dict[str, Json] = {}
        seen: dict[str, _Node] = {}
        merged_at: _Node | None = None
        for key_node, value_node in zip(node.items[0::2], node.items[1::2], strict=True):
            if key_node.kind == "scalar" and key_node.plain and key_node.text == "<<":
                if not self.strict:
                    self.merge(value_node, out, path)
                    continue
                merged: dict[str, Json] = {}
                self.merge(value_node, merged, path)
                self.check_merge(key_node, merged, seen, merged_at, path)
                merged_at = key_node
                out.update(merged)
                continue
            text = key_node.text
            if (  # fast path for string keys, same answer as self.key()
                key_node.kind == "scalar"
                and key_node.tag is None
                and (
                    not key_node.plain
                    or (text and text[0] not in _NUMBER_START and text not in _KEYWORDS)
                )
            ):
                key = text
            else:
                key = self.key(key_node, path)
            if key in seen:
                raise self.error(
                    key_node,
                    (*path, key),
                    f"duplicate key {key!r} (first at line {seen[key].line})",
                    "kubectl would silently keep the last one: remove one of them",
                )
            seen[key] = key_node
            self.positions[(*path, key)] = (key_node.line, key_node.column)
            out[key] = self.convert(value_node, (*path, key))
        return out

    def check_merge(
        self,
        key_node: _Node,
        merged: Mapping[str, Json],
        seen: Mapping[str, _Node],
        merged_at: _Node | None,
        path: JsonPath,
    ) -> None:
        """Strict mode: a merge whose reading depends on the reader is refused."""
        if merged_at is not None:
            raise self.error(
                key_node,
                path,
                f"a second << merge in one mapping (first at line {merged_at.line}): "
                "the YAML spec forbids the duplicate key, go-yaml lets the later one override",
                "merge a list instead: <<: [*a, *b] (the earlier ones win)",
            )
        for name in merged:
            if name in seen:
                raise self.error(
                    key_node,
                    (*path, name),
                    f"this << merge overrides {name!r} written at line {seen[name].line}: "
                    "the compiler, kubectl and Helm (go-yaml) take the merged value, a "
                    "reviewer and the YAML spec the written one",
                    "write the key after the << (both then read it), or drop one",
                )

    def merge(self, value_node: _Node, out: dict[str, Json], path: JsonPath) -> None:
        # go-yaml v2: merged keys are assigned in place, so they override keys written
        # before the `<<`; in a list of mappings the earlier ones win (applied last).
        sources = list(reversed(value_node.items)) if value_node.kind == "seq" else [value_node]
        for source in sources:
            target = _deref(source)
            if target.kind != "map":
                raise self.error(source, path, "a << merge needs a mapping or a list of mappings")
            self.check_tag(target, path)
            out.update(self.mapping(target, path))

    def key(self, key_node: _Node, path: JsonPath) -> str:
        node = _deref(key_node)
        if node.kind != "scalar":
            raise self.error(key_node, path, "a mapping key must be a scalar (kubectl fails too)")
        value = self.resolve(node, path)
        if isinstance(value, str):
            return value
        if self.strict:
            key = self.key_text(key_node, node, path, value)
            if key != node.text:
                raise self.error(
                    key_node,
                    path,
                    f"the key {node.text!r} is read as {key!r} (YAML 1.1, as the compiler, "
                    f"kubectl and Helm read it), while a reviewer reads {node.text!r}",
                    f'quote it: "{node.text}"',
                )
            return key
        return self.key_text(key_node, node, path, value)

    def key_text(self, key_node: _Node, node: _Node, path: JsonPath, value: object) -> str:
        """The JSON key sigs.k8s.io/yaml makes of a typed scalar key."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int) and -(2**63) <= value < 2**63:
            return str(value)
        if isinstance(value, float):
            return _go_float32_text(value)
        raise self.error(
            key_node, path, f"kubectl cannot use {node.text!r} as a key", "quote the key"
        )

    def scalar(self, node: _Node, path: JsonPath) -> Json:
        value = self.resolve(node, path)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value
        if not self.json_numbers:
            return value
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(
                node, path, f"{node.text} is not a JSON number (kubectl fails)", QUOTE_ADVICE
            )
        if problem := number_problem(value):
            raise DigestError(
                problem, location=self.location(node, path), advice=f'quote it: "{node.text}"'
            )
        return int(value) if isinstance(value, float) and value.is_integer() else value

    def resolve(self, node: _Node, path: JsonPath) -> object:
        """The scalar's value as go-yaml v2 types it (may be NaN, infinite or huge)."""
        if node.tag is None:
            if not node.plain:
                return node.text
            value = _resolve_plain(node.text)
            if self.strict and (other := _read_otherwise(node.text, value)) is not _MISSING:
                message, advice = _read_otherwise_message(node.text, value, other)
                raise self.error(node, path, message, advice)
            return value
        if node.tag in ("!", f"{_TAG}str"):
            return node.text
        short = node.tag.replace(_TAG, "!!")
        if self.strict:
            raise self.error(
                node,
                path,
                f"tag {short} on {node.text!r}: the value it gives is not what a reviewer reads",
                "write the value plainly (true, 443), or quote text",
            )
        if node.tag not in _SCALAR_TAGS:
            raise self.error(
                node, path, f"unsupported tag {short}", "remove the tag (quote a string value)"
            )
        value = _resolve_plain(node.text)
        if (short == "!!bool" and isinstance(value, bool)) or (short == "!!null" and value is None):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            if short == "!!float":
                return float(value)
            if short == "!!int" and isinstance(value, int):
                return value
        raise self.error(node, path, f"cannot read {node.text!r} as {short} (kubectl fails too)")

    def check_tag(self, node: _Node, path: JsonPath) -> None:
        expected = f"{_TAG}{'map' if node.kind == 'map' else 'seq'}"
        if node.tag not in (None, "!", expected):
            raise self.error(node, path, f"unsupported tag {node.tag.replace(_TAG, '!!')}")

    def location(self, node: _Node, path: JsonPath) -> Location:
        return Location(self.filename, node.line, node.column, format_json_path(path))

    def error(self, node: _Node, path: JsonPath, message: str, advice: str = "") -> InputError:
        return InputError(message, location=self.location(node, path), advice=advice)


def _deref(node: _Node) -> _Node:
    return node.items[0] if node.kind == "alias" else node


def _resolve_plain(text: str) -> object:
    """go-yaml v2's ``resolve("", text)``, with timestamps left as strings."""
    found = _KEYWORDS.get(text, _MISSING)
    if found is not _MISSING:
        return found
    number: int | float | None = None
    plain = text.replace("_", "")
    if text[0] == ".":  # only ParseFloat is tried
        number = _finite_float(plain) if _DOT_FLOAT.match(text) else None
        return text if number is None else number
    if text[0] not in "+-0123456789":
        return text
    number = _go_int(plain)
    if number is None and _FLOAT.match(plain):
        number = _finite_float(plain)
    if number is None:
        number = _go_binary(plain)
    return text if number is None else number


def _go_int(plain: str) -> int | None:
    """strconv.ParseInt(plain, 0, 64), then ParseUint(plain, 0, 64)."""
    match = _GO_INT.match(plain)
    if not match:
        return None
    sign, digits = match.groups()
    octal = digits[0] == "0" and digits[1:2].isdigit()
    value = int(digits, 8 if octal else 0)
    return _in_go_range(-value if sign == "-" else value, unsigned_ok=not sign)


def _go_binary(plain: str) -> int | None:
    """go-yaml v2's fallback for ``0b``/``-0b`` prefixes that ParseInt rejected."""
    if plain.startswith("0b"):
        digits, unsigned_ok = plain[2:], True
    elif plain.startswith("-0b"):
        digits, unsigned_ok = "-" + plain[3:], False
    else:
        return None
    match = _GO_BINARY.match(digits)
    if not match:
        return None
    value = int(match.group(2), 2)
    return _in_go_range(-value if match.group(1) == "-" else value, unsigned_ok and not match[1])


def _in_go_range(value: int, unsigned_ok: bool) -> int | None:
    if -(2**63) <= value < 2**63 or (unsigned_ok and 0 <= value < 2**64):
        return value
    return None


def _finite_float(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None  # Go's ParseFloat fails on overflow


def _go_float32_text(value: float) -> str:
    """``strconv.FormatFloat(value, 'g', -1, 32)``: how sigs.k8s.io/yaml writes float keys."""
    try:
        single = _to_float32(value)
    except OverflowError:
        single = math.copysign(math.inf, value)
    if math.isnan(single) or math.isinf(single):
        return {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}[str(single)]
    if single == 0:
        return "-0" if math.copysign(1, single) < 0 else "0"
    for precision in range(9):  # shortest digits that read back as the same float32
        mantissa, exponent = f"{abs(single):.{precision}e}".split("e")
        if _to_float32(float(f"{mantissa}e{exponent}")) == abs(single):
            break
    digits, exp = mantissa.replace(".", ""), int(exponent)
    sign = "-" if single < 0 else ""
    if exp < -4 or exp >= 6:
        fraction = f".{digits[1:]}" if len(digits) > 1 else ""
        return f"{sign}{digits[0]}{fraction}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    point = exp + 1
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _to_float32(value: float) -> float:
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result
