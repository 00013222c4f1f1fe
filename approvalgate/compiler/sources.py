"""Reading YAML sources defensively and locating problems in them.

Files are read with a size cap and strict UTF-8; folders are walked in sorted order,
never following a symlink out of the folder given; ``*List`` kinds are flattened and empty
documents skipped. Every problem becomes an error carrying ``file:line:col``. Folders are read
strictly (``kubeyaml.load_manifests(strict=True)``): YAML a reviewer reads otherwise than the
compiler (``0443``, ``yes``, a merge overriding a written key, a lone CR, an invisible
character) is an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from approvalgate.approvals.errors import (
    ApprovalgateError,
    Finding,
    InputError,
    JsonPath,
    Location,
    ValidationError,
)
from approvalgate.approvals.errors import format_json_path as fmt_path
from approvalgate.approvals.hidden_text import escaped, is_hidden
from approvalgate.approvals.kubeyaml import Document, load_manifests

MAX_FILE_BYTES = 4 * 1024 * 1024
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class SourceDocument:
    """One Kubernetes-style document and where it came from."""

    display: str
    document: Document
    obj: dict[str, Any]
    item: int | None = None  # position inside a flattened *List

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def name(self) -> str:
        meta = self.obj.get("metadata")
        return str(meta.get("name", "")) if isinstance(meta, dict) else ""

    def location(self, path: JsonPath = ()) -> Location:
        full: JsonPath = ("items", self.item, *path) if self.item is not None else path
        line, column = self._position(full)
        return Location(self.display, line, column, fmt_path(path) if path else "")

    def _position(self, path: JsonPath) -> tuple[int, int]:
        # The deepest part of the path that exists in the source (a missing key points
        # at its parent mapping).
        for end in range(len(path), -1, -1):
            try:
                return self.document.position(path[:end])
            except (KeyError, IndexError, TypeError):
                continue
        return self.document.start_line, 1

    def error(self, finding: Finding) -> ApprovalgateError:
        return located(self, finding)


def located(source: SourceDocument, finding: Finding) -> ApprovalgateError:
    error = ApprovalgateError(
        finding.message, location=source.location(finding.path), advice=finding.advice
    )
    error.severity = finding.severity  # type: ignore[attr-defined]
    return error


def read_text(path: Path, display: str | None = None, limit: int = MAX_FILE_BYTES) -> str:
    """A file's text, refusing large files, non-files and invalid UTF-8 with clear errors."""
    shown = display or str(path)
    try:
        if not path.is_file():
            raise InputError(f"{shown}: not a file")
        size = path.stat().st_size
        if size > limit:
            raise InputError(
                f"{shown}: file is {size} bytes, over the {limit}-byte limit",
                advice="split it, or check it is not generated output",
            )
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{shown}: cannot read: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            "file is not valid UTF-8", location=Location(shown, line, 1), advice="save it as UTF-8"
        ) from exc


def yaml_files(root: Path, inside: Path | None = None) -> list[Path]:
    """YAML files under ``root`` (or ``root`` itself), sorted, never leaving ``inside``."""
    return [path for path, _ in _yaml_files(root, inside)]


def _yaml_files(
    root: Path, inside: Path | None = None, skipped: list[tuple[str, str]] | None = None
) -> list[tuple[Path, Path]]:
    """(path, resolved path) of the YAML files under ``root``, sorted, inside the fence.

    ``skipped`` gets (path, why) of what a reviewer would take for a source but is not read:
    a symlinked or hidden folder holding files, a file named like YAML that is not
    ``*.yaml``/``*.yml`` exactly (``.YAML``, ``.json``, a trailing space or invisible
    character)."""
    fence = (inside or (root if root.is_dir() else root.parent)).resolve()
    if root.is_file():
        candidates: Iterable[tuple[Path, Path | None]] = [(root, None)]
    else:
        # Like os.walk (hidden folders skipped, symlinked folders not entered, unreadable
        # ones ignored), with scandir's entries: a file that is not a symlink lies,
        # resolved, under the resolved root, so it needs no resolve() of its own.
        found: list[tuple[tuple[str, ...], str, bool]] = []
        _walk(os.fspath(root), (), found, skipped)
        found.sort()  # by path components, as sorting the Paths did
        real_root = root.resolve()
        candidates = [
            (root.joinpath(*parts), None if link else real_root.joinpath(*parts))
            for parts, _, link in found
        ]
    out = []
    for path, known in candidates:
        real = known if known is not None else path.resolve()
        if real != fence and fence not in real.parents:
            raise InputError(
                f"{path}: is a symlink leading outside {fence}",
                advice="policy files must live inside the repository",
            )
        out.append((path, real))
    return out


def _walk(
    folder: str,
    parts: tuple[str, ...],
    found: list[tuple[tuple[str, ...], str, bool]],
    skipped: list[tuple[str, str]] | None = None,
) -> None:
    try:
        with os.scandir(folder) as entries:
            listed = list(entries)
    except OSError:
        return
    for entry in listed:
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            if not entry.name.startswith(".") and not entry.is_symlink():
                _walk(entry.path, (*parts, entry.name), found, skipped)
            elif skipped is not None and entry.name not in _IGNORED_FOLDERS:
                why = "a symlinked folder" if entry.is_symlink() else "a hidden folder"
                if _holds_files(entry.path):
                    skipped.append((entry.path, f"{why}: not read"))
        elif entry.name.endswith(YAML_SUFFIXES):
            found.append(((*parts, entry.name), entry.path, entry.is_symlink()))
        elif skipped is not None and _looks_like_a_source(entry.name):
            skipped.append((entry.path, f"named like a YAML file, but not {_READ}: not read"))


_IGNORED_FOLDERS = frozenset({".git"})
_READ = "*.yaml or *.yml"
_LOOKALIKE_SUFFIXES = (".yaml", ".yml", ".json")


def _looks_like_a_source(name: str) -> bool:
    shown = "".join(c for c in name if not is_hidden(c)).strip().lower()
    return shown.endswith(_LOOKALIKE_SUFFIXES) or shown.rstrip(".~").endswith(_LOOKALIKE_SUFFIXES)


def _holds_files(folder: str) -> bool:
    return any(names for _, _, names in os.walk(folder))


def load_sources(paths: Sequence[Path], base: Path | None = None) -> list[SourceDocument]:
    """Load every document of every YAML file under ``paths``; raise all errors at once."""

    sources: list[SourceDocument] = []
    errors: list[ApprovalgateError] = []
    for root in paths:
        if not root.exists():
            raise InputError(f"{root}: no such file or folder")
        real_base = base.resolve() if base is not None else None
        skipped: list[tuple[str, str]] = []
        found = _yaml_files(root, base, skipped)
        for shown, why in sorted(skipped):
            path = Path(shown)
            display = _display(path, path.parent.resolve() / path.name, real_base)
            errors.append(
                InputError(
                    f"{why} (a reviewer takes it for a policy source, the compiler skips it)",
                    location=Location(_quoted(escaped(display))),
                    advice="rename it to *.yaml (or move it into a plain folder) to have it "
                    "compiled, or move it out of the source folders",
                )
            )
        for path, real in found:
            display = _display(path, real, real_base)
            try:
                sources.extend(load_text(read_text(path, display), display, strict=True))
            except ValidationError as exc:
                errors.extend(exc.problems)
            except ApprovalgateError as exc:
                errors.append(exc)
    if errors:
        raise ValidationError(errors)
    return sources


def load_text(text: str, display: str, *, strict: bool = False) -> list[SourceDocument]:
    """The documents of one file. ``strict`` (a policy repo's files, reviewed in pull
    requests before they are compiled): what a reviewer reads otherwise is an error."""
    # load_manifests returns only mappings: it skips empty documents and refuses a list or
    # a scalar with its location, as kubectl does.
    out: list[SourceDocument] = []
    for document in load_manifests(text, display, strict=strict):
        obj = document.obj
        kind = obj.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and isinstance(obj.get("items"), list):
            for item_index, item in enumerate(obj["items"]):
                if isinstance(item, dict):
                    out.append(SourceDocument(display, document, item, item_index))
            continue
        out.append(SourceDocument(display, document, obj))
    return out


def _quoted(shown: str) -> str:
    """A path with leading or trailing spaces, quoted so the spaces show."""
    return repr(shown) if shown != shown.strip() else shown


def _display(path: Path, real: Path, real_base: Path | None) -> str:
    if real_base is not None:
        try:
            return str(real.relative_to(real_base))
        except ValueError:
            pass
    return str(path)
