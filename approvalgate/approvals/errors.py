"""One root exception for the whole product, with location and advice.

Every error a user can act on is an :class:`ApprovalgateError`. The CLI prints
``file:line:col: message`` and the advice, and exits with :attr:`exit_code`.
Anything else that escapes is a bug: the CLI exits 3 and keeps the traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where a problem is: a file, a 1-based line and column, and a JSON path."""

    file: str = ""
    line: int = 0
    column: int = 0
    json_path: str = ""

    def __str__(self) -> str:
        where = self.file or "<input>"
        if self.line:
            where += f":{self.line}:{self.column or 1}"
        if self.json_path:
            where += f": {self.json_path}"
        return where


class ApprovalgateError(Exception):
    """Root of every expected error. ``exit_code`` follows the CLI contract."""

    exit_code = 1

    def __init__(self, message: str, *, location: Location | None = None, advice: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.advice = advice

    def render(self) -> str:
        head = f"{self.location}: {self.message}" if self.location else self.message
        return f"{head}\n  hint: {self.advice}" if self.advice else head


class UsageError(ApprovalgateError):
    """The command line itself is wrong (exit 2)."""

    exit_code = 2


class InputError(ApprovalgateError):
    """A file we were given cannot be read or parsed."""


class ValidationError(ApprovalgateError):
    """One or more documents break their schema or a semantic rule.

    Carries every problem found, so users fix them all in one go.
    """

    def __init__(self, problems: list[ApprovalgateError]) -> None:
        self.problems = problems
        first = problems[0].message if problems else "invalid input"
        super().__init__(first if len(problems) == 1 else f"{len(problems)} problems found")

    def render(self) -> str:
        return "\n".join(p.render() for p in self.problems)


class DigestError(ApprovalgateError):
    """A spec cannot be digested the way the API server will see it."""


class RecordError(ApprovalgateError):
    """An approval record cannot be created (bad key, bad TTL...)."""


class BundleError(ApprovalgateError):
    """A compiled bundle is missing, unreadable or invalid."""


JsonPath = tuple[str | int, ...]


def format_json_path(path: JsonPath) -> str:
    """``("spec", "egress", 0, "ports")`` -> ``$.spec.egress[0].ports``."""
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


@dataclass(frozen=True)
class Finding:
    """One problem found in a document, located by its JSON path inside that document.

    Validators return findings; the layer that knows files (the loader) turns the path
    into ``file:line:col``. ``severity`` is ``error`` or ``warning``.
    """

    path: JsonPath
    message: str
    advice: str = ""
    severity: str = "error"
