"""The compiler's output under real filesystem faults: read-only and full (ENOSPC).

Tests run as root here, so ``chmod`` would not stop a write. Instead each case runs the real
``approvalgate compile`` inside a private mount namespace (``unshare -m``) where the output
folder is a read-only bind mount or a tiny tmpfs (tests/reliability/compiler_faults.py):
real EROFS and ENOSPC from the kernel, nothing monkeypatched. The promise (issue 8,
compiler/output.py): a clear one-line error, exit 1, and the previous output intact, with
no temporary folder left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from approvalgate.compiler.output import read_tree
from tests.integration.harness import cli_env
from tests.support.paths import ROOT
from tests.support.tools import unavailable

EXAMPLE = ROOT / "examples" / "gitops-repo"


# A private mount namespace: as root directly, else inside a user namespace of our own
# (``-r``: we are root there, as unprivileged users may be on most Linux systems).
UNSHARE = ["unshare", *([] if os.geteuid() == 0 else ["-r"]), "-m", "--propagation", "private"]


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run([*UNSHARE, "mount", "-t", "tmpfs", "tmpfs", "/mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(autouse=True)
def _real_filesystems() -> None:
    if not _namespaces_work():
        unavailable(f"needs {' '.join(UNSHARE)} and mount (a private mount namespace)")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A compiled copy of the example repo, then an edit that makes the next compile write."""
    copy = tmp_path / "repo"
    shutil.copytree(EXAMPLE, copy)
    _compile(copy)
    policy = copy / "policies" / "codex-two-person.yaml"
    policy.write_text(policy.read_text().replace("timeoutSeconds: 86400", "timeoutSeconds: 43200"))
    return copy


def _compile(repo: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "approvalgate", "compile", str(repo)],
        capture_output=True,
        text=True,
        env=cli_env(),
    )
    assert done.returncode == 0, done.stderr


def _in_namespace(mode: str, repo: Path) -> dict[str, Any]:
    done = subprocess.run(
        [
            *UNSHARE,
            sys.executable,
            "-m",
            "tests.reliability.compiler_faults",
            mode,
            str(repo),
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=ROOT,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    print(f"\ncompiler-{mode}: {json.dumps({k: v for k, v in result.items() if k != 'stdout'})}")
    return result


def test_read_only_output_folder(repo: Path) -> None:
    before = read_tree(repo / "rendered")
    result = _in_namespace("read-only", repo)
    assert result["exit_code"] == 1
    assert result["stderr"].startswith(f"error: cannot write {repo / 'rendered'}/dev: ")
    assert "Read-only file system; the previous output is unchanged" in result["stderr"]
    assert "Traceback" not in result["stderr"]
    assert result["unchanged"] and result["left_over"] == []
    assert read_tree(repo / "rendered") == before  # and on the real disk, after the namespace
    assert sorted(p.name for p in (repo / "rendered").iterdir()) == ["dev", "prod", "staging"]


def test_full_output_folder_fails_part_way_and_keeps_the_previous_output(repo: Path) -> None:
    result = _in_namespace("full", repo)
    assert result["exit_code"] == 1
    assert "No space left on device; the previous output is unchanged" in result["stderr"]
    assert "Traceback" not in result["stderr"]
    assert result["unchanged"] and result["missing"] == [] and result["left_over"] == []
    assert result["entries_after"] == ["dev", "prod", "staging"]  # no .dev.new-* left behind


def test_full_folder_of_an_in_place_values_target(repo: Path) -> None:
    """The prod target (apps/agents/values-prod.yaml) is rewritten in place through a temporary
    file and a rename: on a full disk the old file stays, and no temporary file is left."""
    target = repo / "apps" / "agents" / "values-prod.yaml"
    text = target.read_text()
    start = text.index("networkPolicy:")
    target.write_text(text[:start] + "networkPolicy: {}\n")  # stale: compile must rewrite it
    result = _in_namespace("full-target", repo)
    assert result["exit_code"] == 1
    assert f"cannot write {target}: No space left on device" in result["stderr"]
    assert "Traceback" not in result["stderr"]
    assert result["unchanged"] and result["missing"] == []
    assert result["entries_after"] == ["values-prod.yaml"], result["entries_after"]
