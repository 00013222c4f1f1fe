"""`pip install .` (not editable) gives a CLI that finds its schemas, CRDs and templates."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the built wheel installed; dependencies come from the dev venv."""
    work = tmp_path_factory.mktemp("pkg")
    source = work / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "*.egg-info", "build", "__pycache__", ".*_cache", "tests"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(work / "dist"),
            str(source),
        ],
        check=True,
    )
    wheel = next((work / "dist").glob("approvalgate-*.whl"))
    target = work / "venv"
    venv.create(target, with_pip=False)
    site = next((target / "lib").glob("python3*/site-packages"))
    # Dependencies only: a bare path entry does not run the dev venv's editable-install hooks.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(target / "bin" / "python"),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        check=True,
    )
    return target


def cli(venv_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv_dir / "bin" / "approvalgate"), *args], cwd=cwd, capture_output=True, text=True
    )


def test_installed_cli_runs_outside_the_repo(installed: Path, tmp_path: Path) -> None:
    probe = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import approvalgate.approvals as a; print(a.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(installed) in probe.stdout  # the wheel, not the checkout
    corpus = ROOT / "tests" / "corpus"
    for name in ("policies.yaml", "approvers.yaml", "run.yaml"):
        shutil.copy(corpus / "decide" / "_base" / name, tmp_path / name)
    shutil.copy(corpus / "keys" / "alice.key", tmp_path / "alice.key")
    shutil.copy(corpus / "keys" / "bob.key", tmp_path / "bob.key")
    for who in ("alice", "bob"):
        done = cli(
            installed,
            "approve",
            "run.yaml",
            "--key",
            f"{who}.key",
            "--approver",
            who,
            "--in-place",
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
    done = cli(
        installed,
        "verify",
        "run.yaml",
        "--policies",
        "policies.yaml",
        "approvers.yaml",
        "--user",
        "requester",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # A field the AgentRun CRD (package data) would prune is refused.
    text = (
        (tmp_path / "run.yaml").read_text().replace("  agentRef:", "  agentRefs: {}\n  agentRef:")
    )
    (tmp_path / "bad.yaml").write_text(text)
    done = cli(installed, "verify", "bad.yaml", "--policies", ".", cwd=tmp_path)
    assert done.returncode == 1 and "agentRefs" in done.stderr


def test_every_package_is_listed_in_pyproject() -> None:
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "approvalgate").rglob("__init__.py")
    }
    assert found - listed == set(), "add these packages to [tool.setuptools] packages"
