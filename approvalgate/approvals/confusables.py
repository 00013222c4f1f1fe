"""Identities a reviewer reads as others: UTS #39 (Unicode Security Mechanisms) for names.

Kubernetes compares usernames and groups as exact strings, and a policy's diff shows them as
glyphs: ``bоb`` with a Cyrillic ``о`` is another user than ``bob`` to the API server and the
same one to whoever reads the pull request. Two checks, from Unicode's own data (version
15.0.0, package data ``schemas/unicode/``, vendored in ``third_party/unicode/``):

- :func:`mixed_scripts`: a part of an identity whose letters come from more than one script
  (UTS #39 section 5.2, "Highly Restrictive": one script, or Latin with Han and Japanese
  kana, Bopomofo or Hangul). Identities are split first where their structure is (an
  authenticator's ``prefix:``, ``#``, ``/``, the ``@`` of an e-mail, the dots of its
  domain), so ``иван@example.com`` (a Cyrillic name at a Latin domain) is fine and ``bоb``
  is not.
- :func:`skeleton`: UTS #39 section 4's skeleton (NFD, every character mapped to its
  prototype by ``confusables.txt``, NFD again); two identities with one skeleton look the
  same.

Read only by the compiler (``validate``, ``compile``, ``check``) and for display: never on
the admission path. The data is parsed once, on first use.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from importlib import resources
from typing import Final

from approvalgate.approvals.schemas import schema_files

UNICODE_VERSION: Final = "15.0.0"
_ANY: Final = frozenset({"Zyyy", "Zinh"})  # Common, Inherited: they go with any script
# UTS #39 5.1: the augmented script sets (Han is also Japanese, Korean, Han with Bopomofo)
_AUGMENTED: Final = {
    "Hani": frozenset({"Hani", "Hanb", "Jpan", "Kore"}),
    "Hira": frozenset({"Hira", "Jpan"}),
    "Kana": frozenset({"Kana", "Jpan"}),
    "Hang": frozenset({"Hang", "Kore"}),
    "Bopo": frozenset({"Bopo", "Hanb"}),
}
# UTS #39 5.2 Highly Restrictive: Latin may join these (after augmentation)
_WITH_LATIN: Final = (frozenset({"Jpan"}), frozenset({"Hanb"}), frozenset({"Kore"}))


def _data(name: str) -> str:
    """A packaged Unicode data file (the source tree's ``schemas/unicode/`` where the
    installed package data predates it)."""
    packaged = schema_files() / "unicode" / name
    if not packaged.is_file():
        packaged = resources.files("schemas") / "unicode" / name
    return packaged.read_text("utf-8")


def _rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        body = line.partition("#")[0].strip()
        if body:
            rows.append([field.strip() for field in body.split(";")])
    return rows


def _range(field: str) -> tuple[int, int]:
    first, _, last = field.partition("..")
    return int(first, 16), int(last or first, 16)


@functools.cache
def _confusables() -> dict[int, str]:
    """``confusables.txt`` as a :meth:`str.translate` table: code point -> prototype."""
    return {
        int(row[0], 16): "".join(chr(int(c, 16)) for c in row[1].split())
        for row in _rows(_data("confusables.txt"))
    }


@functools.cache
def _script_table() -> tuple[list[int], list[int], list[frozenset[str]], dict[int, frozenset[str]]]:
    """Sorted code point ranges with their ``Script`` (short names), and the code points
    whose ``Script_Extensions`` say more (a few thousand)."""
    short = {row[2]: row[1] for row in _rows(_data("PropertyValueAliases.txt")) if row[0] == "sc"}
    ranges = sorted(
        (_range(row[0]), frozenset({short.get(row[1], row[1])}))
        for row in _rows(_data("Scripts.txt"))
    )
    extensions: dict[int, frozenset[str]] = {}
    for row in _rows(_data("ScriptExtensions.txt")):
        first, last = _range(row[0])
        scx = frozenset(row[1].split())
        for cp in range(first, last + 1):
            extensions[cp] = scx
    starts = [r[0][0] for r in ranges]
    ends = [r[0][1] for r in ranges]
    return starts, ends, [r[1] for r in ranges], extensions


def scripts_of(char: str) -> frozenset[str]:
    """The scripts ``char`` is written in (ISO 15924 codes, its Script_Extensions);
    ``Zyyy`` (Common) or ``Zinh`` (Inherited) for characters of any script, ``Zzzz``
    for one Unicode 15.0 does not assign."""
    starts, ends, sets, extensions = _script_table()
    cp = ord(char)
    if cp in extensions:
        return extensions[cp]
    at = bisect.bisect_right(starts, cp) - 1
    if at >= 0 and cp <= ends[at]:
        return sets[at]
    return frozenset({"Zzzz"})


def _augmented(scripts: frozenset[str]) -> frozenset[str]:
    out = set(scripts)
    for script in scripts:
        out |= _AUGMENTED.get(script, frozenset())
    return frozenset(out)


def mixed_scripts(part: str) -> tuple[str, ...]:
    """The scripts of ``part`` if it is not UTS #39 Highly Restrictive (one script, or
    Latin with Han and Japanese kana, Bopomofo or Hangul), else ``()``."""
    sets = [_augmented(s) for c in part if not (s := scripts_of(c)) <= _ANY]
    if not sets:
        return ()
    resolved = frozenset.intersection(*sets)
    if resolved:
        return ()
    for allowed in _WITH_LATIN:
        if all(s & (allowed | {"Latn"}) for s in sets):
            return ()
    found: list[str] = []
    for c in part:
        for script in sorted(scripts_of(c) - _ANY):
            if script not in found:
                found.append(script)
    return tuple(found)


_SEPARATORS: Final = re.compile(r"[:#/]")


def parts(identity: str) -> list[str]:
    """Where ``identity`` has its own structure, its parts: an authenticator's prefix
    (``oidc:``, ``https://issuer#``), the local part of an e-mail, each label of its
    domain. Each part must be written in one script."""
    out: list[str] = []
    for piece in _SEPARATORS.split(identity):
        local, at, domain = piece.rpartition("@")
        if at:
            out.append(local)
            out.extend(domain.split("."))
        else:
            out.append(piece)
    return [p for p in out if p]


def script_problem(identity: str) -> str:
    """Why a reviewer would misread ``identity`` by its scripts, or ""."""
    for part in parts(identity):
        scripts = mixed_scripts(part)
        if scripts:
            names = ", ".join(_script_name(s) for s in scripts)
            return f"{part!r} mixes scripts ({names}): {escaped(part)}"
    return ""


@functools.cache
def _long_names() -> dict[str, str]:
    return {row[1]: row[2] for row in _rows(_data("PropertyValueAliases.txt")) if row[0] == "sc"}


def _script_name(code: str) -> str:
    return _long_names().get(code, code)


def skeleton(text: str) -> str:
    """UTS #39 section 4: the skeleton; two strings with one skeleton are confusable."""
    return unicodedata.normalize(
        "NFD", unicodedata.normalize("NFD", text).translate(_confusables())
    )


def escaped(text: str) -> str:
    """``text`` with every character outside printable ASCII written as ``\\uXXXX`` and
    named: what a reviewer reads to tell ``bоb`` from ``bob``."""
    out, names = [], []
    for c in text:
        if " " <= c <= "~":
            out.append(c)
            continue
        out.append(f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
        name = unicodedata.name(c, f"U+{ord(c):04X}")
        if name not in names:
            names.append(name)
    return '"' + "".join(out) + '"' + (f" ({', '.join(names)})" if names else "")


def shown(identity: str) -> str:
    """``identity`` as an approver reads it in ``status``, ``pending`` and the console:
    itself where it is printable ASCII, else itself followed by its escaped form, so that a
    look-alike of a known name is never read as that name."""
    if all(" " < c <= "~" for c in identity):
        return identity
    return f"{identity} [{escaped(identity)}]"
