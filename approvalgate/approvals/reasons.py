"""What a break-glass reason must say: some visible text, not only invisible characters.

A reason made of spaces, control characters (Cc), format characters (Cf: U+200B ZERO
WIDTH SPACE, U+2060 WORD JOINER, bidi marks), separators, combining marks alone, or the
letters that render blank (U+3164 HANGUL FILLER, U+2800 BRAILLE PATTERN BLANK, ...) shows
nothing in the audit trail. decide() and ``approvalgate approve --bypass`` both ask for at
least :data:`MIN_VISIBLE` visible characters, one of them a (visible) letter or digit, so a reason
like "INC-4711" (8) passes and "fix" or "--------" does not.

A reason must also read as it was written: control characters (a newline forging a second
line in a log or a terminal, an escape sequence), format characters (bidi overrides and
isolates that show "INC-4711 fixed" for text stored in another order, zero-width joiners),
private-use, unassigned and surrogate code points are refused anywhere in it, even beside
enough visible text.
"""

from __future__ import annotations

import unicodedata
from typing import Final

MIN_VISIBLE: Final = 8
_INVISIBLE_CATEGORIES: Final = frozenset(
    {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"}
)
_HIDING_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
"""Categories that change how the rest of a text shows, or show as nothing known."""
_UNNAMED: Final = {
    "Cc": "a control character",
    "Cf": "a format character",
    "Cs": "a surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
}
BLANK_LETTERS: Final = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5")
"""Characters of other categories that fonts render as nothing (fillers, blank patterns)."""


def is_visible(char: str) -> bool:
    """Whether the character ``char`` shows as something."""
    return char not in BLANK_LETTERS and unicodedata.category(char) not in _INVISIBLE_CATEGORIES


def visible_length(text: str) -> int:
    """How many characters of ``text`` show as something."""
    return sum(1 for char in text if is_visible(char))


def hiding_character(text: str) -> tuple[int, str] | None:
    """The first character of ``text`` that hides or reorders what shows, with its index."""
    for index, char in enumerate(text):
        if unicodedata.category(char) in _HIDING_CATEGORIES:
            return index, char
    return None


def reason_problem(reason: str) -> str:
    """Why ``reason`` cannot justify a bypass ("" when it can)."""
    count = visible_length(reason)
    if count >= MIN_VISIBLE:
        # the letter or digit must show too: U+3164 HANGUL FILLER is a letter (Lo) of nothing
        if not any(unicodedata.category(char)[0] in "LN" and is_visible(char) for char in reason):
            return "a bypass reason needs words: this one has no visible letter or digit"
        hidden = hiding_character(reason)
        if hidden is None:
            return ""
        index, char = hidden
        name = unicodedata.name(char, "") or _UNNAMED[unicodedata.category(char)]
        return (
            f"a bypass reason must read as written: character {index + 1} is "
            f"U+{ord(char):04X} ({name}), which hides or reorders text; write the reason "
            "without it"
        )
    if not reason:
        return "a bypass needs a reason"
    what = "only invisible characters" if count == 0 else f"only {count} visible characters"
    return (
        f"a bypass needs a reason of at least {MIN_VISIBLE} visible characters; this one has {what}"
    )
