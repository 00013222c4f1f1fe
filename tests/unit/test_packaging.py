"""`pip install .` (not editable) gives a CLI that finds its schemas, CRDs and templates,
and installs beside the distributions whose names were once our top-level packages."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The PyPI distributions owning the import names approvals and compiler, pinned to their
# latest releases (both install on Python 3.11). PyPI's `audit` cannot be installed by pip
# at all: its only files (0.2-beta-2) are a win32 .exe installer and an .egg, which pip does
# not install. A local wheel named audit stands in for it: what matters is the import name.
PYPI_NEIGHBOURS = ("approvals==0.0.1", "compiler==0.2.0")
AUDIT_STAND_IN = "0+standin"
PIP = (sys.executable, "-m", "pip")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """approvalgate's wheel, built from a copy of the checkout (no tests, no venv)."""
    work = tmp_path_factory.mktemp("pkg")
    source = work / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "*.egg-info", "build", "__pycache__", ".*_cache", "tests"
        ),
    )
    _pip_wheel(source, work / "dist")
    return next((work / "dist").glob("approvalgate-*.whl"))


def _pip_wheel(source: Path, dist: Path) -> None:
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
        check=True,
    )


def _venv_with(target: Path, *requirements: str) -> Path:
    """A fresh venv with ``requirements`` installed by pip (without their dependencies);
    approvalgate's dependencies come from the dev venv."""
    venv.create(target, with_pip=False)
    site = next((target / "lib").glob("python3*/site-packages"))
    # Dependencies only: a bare path entry does not run the dev venv's editable-install hooks.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _pip_install(target, *requirements)
    return target


def _pip_install(target: Path, *requirements: str) -> None:
    subprocess.run(
        [
            *PIP,
            "--python",
            str(target / "bin" / "python"),
            "install",
            "--no-deps",
            "-q",
            *requirements,
        ],
        check=True,
    )


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the built wheel installed."""
    return _venv_with(tmp_path_factory.mktemp("venv") / "venv", str(wheel))


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
    _approve_and_verify(installed, tmp_path)
    # A field the AgentRun CRD (package data) would prune is refused.
    text = (
        (tmp_path / "run.yaml").read_text().replace("  agentRef:", "  agentRefs: {}\n  agentRef:")
    )
    (tmp_path / "bad.yaml").write_text(text)
    done = cli(installed, "verify", "bad.yaml", "--policies", ".", "--env", "prod", cwd=tmp_path)
    assert done.returncode == 1 and "agentRefs" in done.stderr


def _approve_and_verify(venv_dir: Path, folder: Path) -> None:
    """Two approvers sign the corpus run with the CLI, which then admits it."""
    corpus = ROOT / "tests" / "corpus"
    for name in ("policies.yaml", "approvers.yaml", "run.yaml"):
        shutil.copy(corpus / "decide" / "_base" / name, folder / name)
    for who in ("alice", "bob"):
        shutil.copy(corpus / "keys" / f"{who}.key", folder / f"{who}.key")
        done = cli(
            venv_dir,
            "approve",
            "run.yaml",
            "--key",
            f"{who}.key",
            "--approver",
            who,
            "--env",
            "prod",
            "--in-place",
            cwd=folder,
        )
        assert done.returncode == 0, done.stderr
    done = cli(
        venv_dir,
        "verify",
        "run.yaml",
        "--policies",
        "policies.yaml",
        "approvers.yaml",
        "--env",
        "prod",
        "--user",
        "requester",
        cwd=folder,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- installable beside the distributions named approvals, compiler and audit ------------


@pytest.fixture(scope="module")
def audit_stand_in(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of a distribution named ``audit`` with a top-level ``audit`` package."""
    work = tmp_path_factory.mktemp("audit")
    source = work / "src"
    (source / "audit").mkdir(parents=True)
    (source / "audit" / "__init__.py").write_text('def stand_in() -> str:\n    return "audit"\n')
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "audit"\nversion = "{AUDIT_STAND_IN}"\n'
        '[tool.setuptools]\npackages = ["audit"]\n'
    )
    _pip_wheel(source, work / "dist")
    return next((work / "dist").glob("audit-*.whl"))


def _record(site: Path, dist: str) -> dict[str, str]:
    """A distribution's RECORD: installed path (relative to site-packages) -> hash."""
    (info,) = site.glob(f"{dist}-*.dist-info")
    with (info / "RECORD").open(newline="") as handle:
        return {row[0]: row[1] for row in csv.reader(handle)}


def _hash(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


PROBE = """
import asyncio, importlib.metadata as md, importlib.util, json, sys
from pathlib import Path

def origin(name):
    return str(Path(importlib.util.find_spec(name).origin).resolve())

def files(dist):
    return {str(Path(f.locate()).resolve()) for f in md.distribution(dist).files}

owners = {
    "approvalgate": ["approvalgate", "approvalgate.approvals", "approvalgate.compiler",
                     "approvalgate.audit", "approvalgate.webhook", "approvalgate.schemas"],
    "approvals": ["approvals", "approvals.approval"],
    "compiler": ["compiler", "compiler.languages"],
    "audit": ["audit"],
}
import approvals.approval, compiler.languages, audit
import approvalgate.approvals.decide, approvalgate.compiler.render, approvalgate.audit.runner
import approvalgate.webhook.app
try:
    asyncio.run(approvals.approval.approval())
    approvals_says = ""
except Exception as exc:
    approvals_says = str(exc)
print(json.dumps({
    "foreign": {d: [n for n in names if origin(n) not in files(d)] for d, names in owners.items()},
    # a set: the dev venv's editable approvalgate is on the path too (deps.pth), later
    "top_level": {n: sorted(set(md.packages_distributions().get(n, []))) for n in owners},
    "approvals": approvals_says,
    "compiler": [compiler.languages.Python.format(), compiler.languages.Cpp.format()],
    "audit": audit.stand_in(),
}))
"""


@pytest.mark.network
def test_installs_beside_the_approvals_compiler_and_audit_distributions(
    wheel: Path, audit_stand_in: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """Our packages live under approvalgate.: installing the distributions that own the
    names approvals, compiler and audit (after approvalgate) overwrites none of our files,
    and every import name resolves to its own distribution. Needs PyPI: allowed here and in
    CI, so a failed install fails this test (it never skips)."""
    target = _venv_with(tmp_path_factory.mktemp("beside") / "venv", str(wheel))
    site = next((target / "lib").glob("python3*/site-packages"))
    ours = _record(site, "approvalgate")
    _pip_install(target, *PYPI_NEIGHBOURS, str(audit_stand_in))

    assert _record(site, "approvalgate") == ours
    changed = [p for p, h in ours.items() if h and _hash(site / p) != h]
    assert changed == [], "installing the other distributions changed approvalgate's files"
    for dist in ("approvals", "compiler", "audit"):
        assert set(_record(site, dist)) & set(ours) == set(), dist

    probe = subprocess.run(
        [str(target / "bin" / "python"), "-c", PROBE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(probe.stdout)
    assert found["foreign"] == {"approvalgate": [], "approvals": [], "compiler": [], "audit": []}
    assert found["top_level"] == {
        "approvalgate": ["approvalgate"],
        "approvals": ["approvals"],
        "compiler": ["compiler"],
        "audit": ["audit"],
    }
    assert found["approvals"].startswith("Indent API is currently in private beta")
    assert found["compiler"] == ["*.py", "*.cpp"]
    assert found["audit"] == "audit"

    done = cli(target, "--help", cwd=tmp_path)
    assert done.returncode == 0 and "verify" in done.stdout, done.stderr
    _approve_and_verify(target, tmp_path)


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
