"""Noticing that mounted files changed, the way Kubernetes changes them.

A ConfigMap or Secret volume holds ``..data -> ..2026_11_21_10_00_00.123`` and
``bundle.json -> ..data/bundle.json``; an update writes a new timestamped folder and swaps
the ``..data`` symlink atomically. The file's own path never changes, but what it resolves
to does, so a cheap :func:`stat_mark` (resolved path, device, inode, size, mtime, ctime) is
compared every poll and only a changed mark makes us read and hash the content. A content
hash that did not change (a touch, a re-mount) is not a reload.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

StatMark = tuple[str, int, int, int, int, int]


def stat_mark(path: Path) -> StatMark | None:
    """What must change when the file's content can have changed; None when unreadable."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def digest(*contents: bytes) -> str:
    h = hashlib.sha256()
    for content in contents:
        h.update(len(content).to_bytes(8, "big"))
        h.update(content)
    return h.hexdigest()
