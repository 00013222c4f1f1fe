"""Writing files safely: atomically (temp file then rename), private keys with mode 0600."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from approvalgate.approvals.errors import InputError


def write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` atomically; a failure leaves the old file as it was."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise InputError(
            f"cannot write {path}: {exc.strerror or exc}",
            advice="check the folder exists and is writable",
        ) from exc


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_private(path: Path, data: bytes) -> None:
    write_bytes(path, data, mode=0o600)
