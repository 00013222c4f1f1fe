"""Text an approver cannot see: characters that show as nothing, or reorder what shows.

An approval binds the exact bytes of a run's spec and of the content it references, and an
approver signs what they read. Characters that render as nothing or rearrange the text
around them make the two differ: Unicode tag characters (U+E0000-U+E007F) carry a whole
hidden instruction that a language model reads and a screen never shows ("ASCII
smuggling"), a RIGHT-TO-LEFT OVERRIDE shows a text in another order than it is stored,
variation selectors can encode bytes, and zero-width characters and control characters hide
in plain sight. The agent reads all of them.

``approvalgate approve`` (every mode, and the console) refuses to sign an approval of text
that holds any, unless the approver says they read it (``--accept-hidden-text``), and the
places that show content to approvers print such characters as escapes
(:func:`escaped`). The admission decision itself does not look: what an approval binds is
the approvers' call, and a prompt may legitimately hold a zero-width joiner in an emoji.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from approvalgate.approvals.reasons import BLANK_LETTERS

_HIDDEN_CATEGORIES: Final = frozenset({"Cf", "Cs", "Co", "Cn"})
"""Format (bidi controls, zero-width, tags), surrogate, private-use, unassigned."""
_SHOWN_CONTROLS: Final = frozenset("\t\n\r")
"""The control characters a text editor and a terminal show as what they are."""
_TAGS: Final = range(0xE0000, 0xE0080)
_ASCII_HIDDEN: Final = frozenset(chr(code) for code in [*range(0x20), 0x7F]) - _SHOWN_CONTROLS
_SAMPLE: Final = 60


def is_hidden(char: str) -> bool:
    """Whether ``char`` shows as nothing, or changes how the text around it shows."""
    code = ord(char)
    if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:  # variation selectors
        return code not in (0xFE0E, 0xFE0F)  # text and emoji presentation: what emoji use
    category = unicodedata.category(char)
    if category == "Cc":
        return char not in _SHOWN_CONTROLS
    return category in _HIDDEN_CATEGORIES or char in BLANK_LETTERS


def escaped(text: str) -> str:
    """``text`` with every hidden character written as ``<U+XXXX>``: safe to show."""
    if not any(is_hidden(char) for char in text):
        return text
    return "".join(f"<U+{ord(char):04X}>" if is_hidden(char) else char for char in text)


def one_line(text: str) -> str:
    """``text`` safe to show as one line (a terminal, a log reader, a chat message): hidden
    characters and line breaks written as ``<U+XXXX>``. A reason or message could otherwise
    print lines of its own that read as the tool's: a spec digest, a pin, "approved"."""
    return escaped(text).translate(_LINE_BREAKS)


_LINE_BREAKS: Final = {ord(char): f"<U+{ord(char):04X}>" for char in "\n\r\t\u2028\u2029"}
"""What :func:`escaped` leaves as it is (a text editor shows them) but one line must not
hold: a carriage return sends a terminal's cursor back to overwrite what the line said, and
U+2028/U+2029 break lines in browsers and chat clients."""


@dataclass(frozen=True)
class HiddenText:
    """Hidden characters in one string of an object: where, which, and what they spell."""

    where: str
    """The object and the field: ``AgentRun agents/x spec.parameters.prompt``."""
    first: int
    """The first hidden character's position in the string (1-based)."""
    count: int
    codes: tuple[int, ...]
    """The distinct hidden code points, in order of appearance (at most five)."""
    smuggled: str
    """The ASCII that tag characters spell (U+E0041 is "A"), "" when none do."""
    sample: str
    """The string around the first hidden character, escaped."""

    def describe(self) -> str:
        """One line: where, how many, which, and what tags spell."""
        names = ", ".join(
            dict.fromkeys(
                "tag characters (U+E0000-U+E007F)"
                if code in _TAGS
                else f"U+{code:04X} {unicodedata.name(chr(code), '(unnamed)')}"
                for code in self.codes
            )
        )
        line = (
            f"{self.where}: {self.count} hidden character(s) from position {self.first} "
            f"({names}): {self.sample!r}"
        )
        if self.smuggled:
            line += f"; its tag characters spell {self.smuggled!r}"
        return line


def scan(where: str, value: object) -> list[HiddenText]:
    """The strings (keys too) of the JSON-like ``value`` holding hidden characters;
    ``where`` names the value (``AgentRun agents/x spec``)."""
    return [found for path, text in _strings(where, value) if (found := _of(path, text))]


def _strings(path: str, value: object) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            field = f"{path}.{escaped(str(key))}"
            yield f"{field} (its name)", str(key)
            yield from _strings(field, item)
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        for index, item in enumerate(value):
            yield from _strings(f"{path}[{index}]", item)


def _of(path: str, text: str) -> HiddenText | None:
    if text.isascii() and (text.isprintable() or not _ASCII_HIDDEN.intersection(text)):
        return None  # the common case, without a look at each character
    positions = [index for index, char in enumerate(text) if is_hidden(char)]
    if not positions:
        return None
    codes: list[int] = []
    for index in positions:
        if ord(text[index]) not in codes and len(codes) < 5:
            codes.append(ord(text[index]))
    smuggled = "".join(
        chr(ord(text[i]) - 0xE0000)
        for i in positions
        if ord(text[i]) in _TAGS and 0x20 <= ord(text[i]) - 0xE0000 < 0x7F
    )
    start = max(0, positions[0] - _SAMPLE // 2)
    return HiddenText(
        where=path,
        first=positions[0] + 1,
        count=len(positions),
        codes=tuple(codes),
        smuggled=smuggled[:200],
        sample=escaped(text[start : start + _SAMPLE]),
    )
