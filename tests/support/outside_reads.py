"""A runtime guard: no test reads a `shared` folder beside the checkout.

Our own machines have a `shared/` folder beside the repository (reference copies, notes);
a user's clone does not. Everything the tests need from other projects is vendored in
third_party/ (tests/support/paths.py). tests/unit/test_third_party.py checks the text of the
repository for such paths; this guard catches the ones built at run time: an audit hook
(PEP 578) on ``open``, ``os.listdir`` and ``os.scandir`` that refuses any path resolving
under ``<an ancestor of the repository>/shared`` (or under ``$APPROVALGATE_SHARED``, the
variable the tests used to read), records it, and makes the session fail (tests/conftest.py).

An audit hook stays for the life of the process; ``install`` adds it once. Subprocesses are
not covered (the static test is).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

EVENTS = frozenset({"open", "os.listdir", "os.scandir"})


class _State:
    """The guard's state: one for the process, as the audit hook is."""

    def __init__(self) -> None:
        self.forbidden: tuple[str, ...] = ()
        self.seen: list[str] = []
        self.installed = False


_STATE = _State()


class OutsideReadError(RuntimeError):
    """A test opened a file outside the repository that a user's clone does not have."""


def forbidden_folders(root: Path) -> tuple[str, ...]:
    """``shared`` beside the repository and beside each of its ancestors, resolved; never
    a folder that contains the repository itself."""
    root = root.resolve()
    candidates = [ancestor / "shared" for ancestor in root.parents]
    legacy = os.environ.get("APPROVALGATE_SHARED")
    if legacy:
        candidates.append(Path(legacy))
    folders = {os.path.realpath(candidate) for candidate in candidates}
    return tuple(sorted(f for f in folders if not root.is_relative_to(f)))


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event not in EVENTS or not args:
        return
    target = args[0]
    if not isinstance(target, str | bytes | os.PathLike):
        return  # a file descriptor, or os.listdir() of the current folder
    text = os.fsdecode(target)
    if "shared" not in text:  # the fast path: almost every open ends here
        return
    resolved = os.path.realpath(text)
    for folder in _STATE.forbidden:
        if resolved == folder or resolved.startswith(folder + os.sep):
            _STATE.seen.append(resolved)
            raise OutsideReadError(
                f"{resolved}: a test read a file outside the repository (under {folder}), "
                "which a user's clone does not have; vendor it under third_party/ with a "
                "PROVENANCE.yaml and reach it through tests/support/paths.py"
            )


def install(root: Path) -> None:
    """Refuse reads under the `shared` folders of ``root`` from now on (idempotent)."""
    _STATE.forbidden = forbidden_folders(root)
    if not _STATE.installed:
        sys.addaudithook(_hook)
        _STATE.installed = True


def seen() -> list[str]:
    """Every refused path so far, in order."""
    return list(_STATE.seen)


def forget(path: str) -> None:
    """Drop ``path`` from the refused reads (a test that triggers the guard on purpose)."""
    while path in _STATE.seen:
        _STATE.seen.remove(path)
