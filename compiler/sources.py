"""Reading YAML sources defensively and locating problems in them.

Files are read with a size cap and strict UTF-8; folders are walked in sorted order,
never following a symlink out of the folder given; ``*List`` kinds are flattened and empty
documents skipped. Every problem becomes an error carrying ``file:line:col``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from approvals.errors import (
    ApprovalgateError,
    Finding,
    InputError,
    JsonPath,
    Location,
    ValidationError,
)
from approvals.errors import format_json_path as fmt_path
from approvals.kubeyaml import Document, load_manifests

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
    fence = (inside or (root if root.is_dir() else root.parent)).resolve()
    if root.is_file():
        candidates: Iterable[Path] = [root]
    else:
        found = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(Path(folder) / f for f in files if f.endswith(YAML_SUFFIXES))
        candidates = sorted(found)
    out = []
    for path in candidates:
        real = path.resolve()
        if real != fence and fence not in real.parents:
            raise InputError(
                f"{path}: is a symlink leading outside {fence}",
                advice="policy files must live inside the repository",
            )
        out.append(path)
    return out


def load_sources(paths: Sequence[Path], base: Path | None = None) -> list[SourceDocument]:
    """Load every document of every YAML file under ``paths``; raise all errors at once."""

    sources: list[SourceDocument] = []
    errors: list[ApprovalgateError] = []
    for root in paths:
        if not root.exists():
            raise InputError(f"{root}: no such file or folder")
        for path in yaml_files(root, base):
            display = _display(path, base)
            try:
                sources.extend(load_text(read_text(path, display), display))
            except ValidationError as exc:
                errors.extend(exc.problems)
            except ApprovalgateError as exc:
                errors.append(exc)
    if errors:
        raise ValidationError(errors)
    return sources


def load_text(text: str, display: str) -> list[SourceDocument]:

    out: list[SourceDocument] = []
    errors: list[ApprovalgateError] = []
    for document in load_manifests(text, display):
        obj = document.obj
        if obj is None:
            continue
        if not isinstance(obj, dict):
            errors.append(
                InputError(
                    "a document must be a mapping (a Kubernetes object)",
                    location=Location(display, document.start_line, 1),
                )
            )
            continue
        kind = obj.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and isinstance(obj.get("items"), list):
            for item_index, item in enumerate(obj["items"]):
                if isinstance(item, dict):
                    out.append(SourceDocument(display, document, item, item_index))
            continue
        out.append(SourceDocument(display, document, obj))
    if errors:
        raise ValidationError(errors)
    return out


def _display(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            pass
    return str(path)
