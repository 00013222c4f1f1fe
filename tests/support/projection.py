"""A folder laid out like a ConfigMap or Secret volume, updated the way the kubelet does it:
every file in a new timestamped folder, then the ``..data`` symlink swapped atomically (all
files change at once)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class KubeVolume:
    """A folder laid out like a ConfigMap/Secret volume, updated the way the kubelet does."""

    root: Path
    versions: int = 0
    current: Path | None = field(default=None)

    def publish(self, files: dict[str, bytes | str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.versions += 1
        version = self.root / f"..2026_11_21_12_00_00.{self.versions:04d}"
        version.mkdir()
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            (version / name).write_bytes(data)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(version.name)
        os.replace(tmp, self.root / "..data")
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        if self.current is not None:
            for child in self.current.iterdir():
                child.unlink()
            self.current.rmdir()
        self.current = version
