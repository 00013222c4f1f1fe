"""Rendered output passes yamllint (docs/yamllint-rendered.yaml) and check-yaml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

RENDERED = ROOT / "examples" / "gitops-repo" / "rendered"
BIN = Path(sys.executable).parent


def _yaml_files() -> list[str]:
    return sorted(str(p) for p in RENDERED.rglob("*.yaml"))


def test_yamllint_with_the_stated_config() -> None:
    config = ROOT / "docs" / "yamllint-rendered.yaml"
    done = subprocess.run(
        [str(BIN / "yamllint"), "--strict", "-c", str(config), *_yaml_files()],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_yaml_allow_multiple_documents() -> None:
    done = subprocess.run(
        [str(BIN / "check-yaml"), "--allow-multiple-documents", *_yaml_files()],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
