"""What a break-glass reason must say: some visible text, not only invisible characters.

A reason made of spaces, control characters (Cc), format characters (Cf: U+200B ZERO
WIDTH SPACE, U+2060 WORD JOINER, bidi marks), separators, combining marks alone, or the
letters that render blank (U+3164 HANGUL FILLER, U+2800 BRAILLE PATTERN BLANK, ...) shows
nothing in the audit trail. decide() and ``approvalgate approve --bypass`` both ask for at
least :data:`MIN_VISIBLE` visible characters, one of them a (visible) letter or digit, so a reason
like "INC-4711" (8) passes and "fix" or "--------" does not.
"""

from __future__ import annotations

import unicodedata
from typing import Final

MIN_VISIBLE: Final = 8
_INVISIBLE_CATEGORIES: Final = frozenset(
    {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"}
)
_BLANK_LETTERS: Final = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5")
"""Characters of other categories that fonts render as nothing (fillers, blank patterns)."""


def is_visible(char: str) -> bool:
    """Whether the character ``char`` shows as something."""
    return char not in _BLANK_LETTERS and unicodedata.category(char) not in _INVISIBLE_CATEGORIES


def visible_length(text: str) -> int:
    """How many characters of ``text`` show as something."""
    return sum(1 for char in text if is_visible(char))


def reason_problem(reason: str) -> str:
    """Why ``reason`` cannot justify a bypass ("" when it can)."""
    count = visible_length(reason)
    if count >= MIN_VISIBLE:
        # the letter or digit must show too: U+3164 HANGUL FILLER is a letter (Lo) of nothing
        if any(unicodedata.category(char)[0] in "LN" and is_visible(char) for char in reason):
            return ""
        return "a bypass reason needs words: this one has no visible letter or digit"
    if not reason:
        return "a bypass needs a reason"
    what = "only invisible characters" if count == 0 else f"only {count} visible characters"
    return (
        f"a bypass needs a reason of at least {MIN_VISIBLE} visible characters; this one has {what}"
    )
