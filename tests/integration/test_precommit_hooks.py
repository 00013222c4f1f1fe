"""The hooks of .pre-commit-hooks.yaml in a real `pre-commit` run on a temporary git repo.

`pre-commit try-repo` installs this checkout (uncommitted changes included) into its own
virtualenv, as users' pre-commit does from a tag, and runs the hook from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

EXAMPLE = ROOT / "examples" / "gitops-repo"
PRE_COMMIT = Path(sys.executable).parent / "pre-commit"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def hook(repo: Path, hook_id: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    return subprocess.run(
        [str(PRE_COMMIT), "try-repo", str(ROOT), hook_id, "--all-files", "--color", "never"],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.fixture(scope="module")
def policy_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("hooks") / "policies"
    shutil.copytree(EXAMPLE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "add", ".")
    git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "init")
    return repo


def test_check_hook_passes_then_fails_on_a_stale_spec_and_compile_hook_fixes_it(
    policy_repo: Path,
) -> None:
    done = hook(policy_repo, "approvalgate-check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "approvalgate check" in done.stdout and "Passed" in done.stdout

    policy = policy_repo / "policies" / "codex-two-person.yaml"
    policy.write_text(policy.read_text().replace("maxTTL: 2h", "maxTTL: 1h"))
    done = hook(policy_repo, "approvalgate-check")
    assert done.returncode == 1
    assert "Failed" in done.stdout
    assert "stale: rendered/prod/bundle.json" in done.stdout
    assert "run `approvalgate compile` and commit the result" in done.stdout

    done = hook(policy_repo, "approvalgate-compile")
    assert done.returncode == 1  # pre-commit fails a hook that modified files
    assert "files were modified by this hook" in done.stdout
    assert (
        '"maxTTLSeconds": 3600' in (policy_repo / "rendered" / "prod" / "bundle.json").read_text()
    )
    # the example's bundles are signed: compile dropped the signatures over the old bundles,
    # and check fails until they are signed again (typically in CI, with a KMS key)
    done = hook(policy_repo, "approvalgate-check")
    assert done.returncode == 1
    assert "unsigned: rendered/prod/bundle.json is not signed" in done.stdout
    assert "approvalgate compile --sign REF" in done.stdout
    key = ROOT / "examples" / "keys" / "release-bundle-signing.key"  # example only
    cli = Path(sys.executable).parent / "approvalgate"
    subprocess.run([str(cli), "compile", "--sign", str(key)], cwd=policy_repo, check=True)
    assert hook(policy_repo, "approvalgate-check").returncode == 0
    assert hook(policy_repo, "approvalgate-compile").returncode == 0  # keeps the signatures
