"""Run inside a private mount namespace (``unshare -m``): real read-only and full filesystems
under ``approvalgate compile``. Prints one JSON object with what happened.

    unshare -m --propagation private python -m tests.reliability.compiler_faults MODE REPO

MODE:
- ``read-only``: the output root (REPO/rendered) is bind-mounted read-only;
- ``full``: the output root is a 256 KiB tmpfs holding the previous output, filled up to the
  last 16 KiB, so the compile fails part-way through writing an environment;
- ``full-target``: the folder of the in-place values target (REPO/apps/agents) is a tmpfs
  holding the previous file, filled completely.

The mounts exist only in this process's namespace and vanish with it; the repo itself is a
copy the test made. The compile runs in a subprocess (the real CLI, exit code and stderr).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from approvalgate.compiler.output import read_tree


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def fill(folder: Path, leave: int) -> None:
    """Write zeros into ``folder`` until the filesystem is full, then free ``leave`` bytes."""
    filler = folder / ".filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    if leave:
        size = filler.stat().st_size
        os.truncate(filler, max(0, size - leave))


def main(mode: str, repo: Path) -> dict[str, object]:
    out = repo / "rendered"
    if mode == "read-only":
        target = out
        mount("--bind", str(out), str(out))
        mount("-o", "remount,ro,bind", str(out))
    elif mode in ("full", "full-target"):
        target = out if mode == "full" else repo / "apps" / "agents"
        saved = target.with_name(target.name + ".saved")
        shutil.copytree(target, saved, symlinks=True)
        mount("-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(target))
        shutil.copytree(saved, target, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(saved)
        fill(target, leave=16 * 1024 if mode == "full" else 0)
    else:
        raise SystemExit(f"unknown mode {mode}")
    before = {k: v for k, v in read_tree(target).items() if k != ".filler"}
    args = [sys.executable, "-m", "approvalgate", "compile", str(repo)]
    if mode == "full-target":
        args += ["--env", "prod"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    after = {k: v for k, v in read_tree(target).items() if k != ".filler"}
    return {
        "mode": mode,
        "target": str(target),
        "exit_code": done.returncode,
        "stdout": done.stdout,
        "stderr": done.stderr,
        "files_before": len(before),
        "unchanged": before == after,
        "left_over": sorted(set(after) - set(before)),
        "missing": sorted(set(before) - set(after)),
        "changed": sorted(k for k in before if k in after and before[k] != after[k]),
        "entries_after": sorted(p.name for p in target.iterdir() if p.name != ".filler"),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], Path(sys.argv[2]))))
