"""Writing rendered output atomically, and comparing it with what is committed.

An environment's folder is written as a whole: a temporary sibling folder is filled, then
swapped in by rename, so a failure (read-only or full disk) leaves the previous output
intact. An unchanged environment is not touched at all.
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from approvalgate.approvals.errors import ApprovalgateError
from approvalgate.compiler.render import SUMS_FILE

Files = Mapping[str, str]


@dataclass(frozen=True)
class Difference:
    path: str  # relative to the repo
    kind: str  # "stale" | "missing" | "orphan"
    diff: str


def read_tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative posix path -> text); symlinks are not followed."""
    out: dict[str, str] = {}
    if not folder.is_dir():
        return out
    for dirpath, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            try:
                out[rel] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                out[rel] = "\0<unreadable>"
    return out


def compare(expected: Files, actual: Files, shown_root: str) -> list[Difference]:
    """Differences between the output we would write and what is on disk."""
    found = []
    for rel in sorted(set(expected) | set(actual)):
        shown = f"{shown_root}/{rel}"
        if rel not in actual:
            found.append(Difference(shown, "missing", _diff("", expected[rel], shown)))
        elif rel not in expected:
            found.append(Difference(shown, "orphan", _diff(actual[rel], "", shown)))
        elif actual[rel] != expected[rel]:
            found.append(Difference(shown, "stale", _diff(actual[rel], expected[rel], shown)))
    return found


def _diff(old: str, new: str, shown: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"a/{shown}",
        tofile=f"b/{shown}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def write_environment(folder: Path, files: Files) -> bool:
    """Make ``folder`` hold exactly ``files``; return whether anything changed."""
    if read_tree(folder) == dict(files):
        return False
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=parent))
        try:
            folders: set[Path] = set()
            for rel, text in sorted(files.items()):
                target = staging / rel
                if target.parent not in folders:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    folders.add(target.parent)
                with open(target, "wb") as handle:  # what write_text does on POSIX, cheaper
                    handle.write(text.encode("utf-8"))
            _swap(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise ApprovalgateError(
            f"cannot write {folder}: {exc.strerror or exc}; the previous output is unchanged",
            advice="check that the output folder is writable and the disk is not full",
        ) from exc
    return True


def _swap(staging: Path, folder: Path) -> None:
    if not folder.exists():
        staging.rename(folder)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
    retired.rmdir()
    folder.rename(retired)
    try:
        staging.rename(folder)
    except OSError:
        retired.rename(folder)  # put the previous output back
        raise
    shutil.rmtree(retired, ignore_errors=True)


def stale_environment_folders(out_root: Path, environments: set[str]) -> list[Path]:
    """Folders of environments no longer configured (ours: they hold a SHA256SUMS)."""
    if not out_root.is_dir():
        return []
    return sorted(p for p in out_root.iterdir() if p.name not in environments and _ours(p))


def foreign_entries(out_root: Path, environments: set[str]) -> list[Path]:
    """The other folders of the output root, and symlinks: what compile never wrote.

    Argo CD's ApplicationSet deploys every folder of the output root (its git directory
    generator; hidden ones too), so a hand-made one would be synced beside the compiled
    environments. Plain files there are deployed by nothing, and left alone.
    """
    if not out_root.is_dir():
        return []
    return sorted(
        p
        for p in out_root.iterdir()
        if p.name not in environments and (p.is_dir() or p.is_symlink()) and not _ours(p)
    )


def _ours(entry: Path) -> bool:
    """A real folder (not a symlink) holding a SHA256SUMS: an environment compile wrote."""
    return entry.is_dir() and not entry.is_symlink() and (entry / SUMS_FILE).is_file()


def foreign_files(entry: Path) -> dict[str, str]:
    """What :func:`compare` shows of a foreign entry: its files, or the entry itself."""
    if entry.is_symlink():
        return {entry.name: f"symlink to {os.readlink(entry)}\n"}
    return {f"{entry.name}/{rel}": text for rel, text in read_tree(entry).items()}


def write_file(path: Path, text: str) -> None:
    """Replace one file atomically (temp file in the same folder, then rename)."""
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise ApprovalgateError(
            f"cannot write {path}: {exc.strerror or exc}; the previous file is unchanged",
            advice="check that the folder is writable and the disk is not full",
        ) from exc


GENERATED_MARK = "# Generated by approvalgate"


def outputs_elsewhere(root: Path, out_root: Path) -> list[Path]:
    """Environment folders compile wrote (SHA256SUMS, bundle.json and a kustomization.yaml
    it marked) anywhere in the repo but the output root: left behind when ``output`` was
    changed in approvalgate.yaml, and no longer compared, while Argo CD may still sync them.
    Hidden folders and symlinks are not entered."""
    found: list[Path] = []
    skip = out_root.resolve()
    for dirpath, dirs, names in os.walk(root):
        here = Path(dirpath)
        if here.resolve() == skip:
            dirs.clear()
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if SUMS_FILE in names and "bundle.json" in names and "kustomization.yaml" in names:
            try:
                with open(here / "kustomization.yaml", encoding="utf-8") as handle:
                    marked = handle.readline().startswith(GENERATED_MARK)
            except (OSError, UnicodeDecodeError):
                marked = False
            if marked:
                found.append(here)
                dirs.clear()
    return sorted(found)
