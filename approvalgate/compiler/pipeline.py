"""validate / compile / check: the compiler's entry points over a policy repo."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from approvalgate.approvals.errors import ApprovalgateError
from approvalgate.compiler.output import (
    Difference,
    compare,
    read_tree,
    stale_environment_folders,
    write_environment,
    write_file,
)
from approvalgate.compiler.render import render_environment
from approvalgate.compiler.repo import Repo, load_repo
from approvalgate.compiler.targets import updated_text

VALUES = {
    "agents": ("agents-values.yaml", "networkPolicy"),
    "approvalgate": ("approvalgate-values.yaml", "policyBundle"),
}


@dataclass
class Plan:
    """Everything a compile would write: environment folders and target files."""

    repo: Repo
    root: Path
    out_root: Path
    environments: dict[str, dict[str, str]] = field(default_factory=dict)
    targets: dict[Path, tuple[str, str]] = field(default_factory=dict)  # path -> (old, new)

    @property
    def complete(self) -> bool:
        """All configured environments are planned (so other folders are orphans)."""
        return len(self.environments) == len(self.repo.config.environments)


def plan(root: Path, env_name: str | None = None, out: Path | None = None) -> Plan:
    """Load and validate the repo, render the chosen environments in memory."""
    repo = load_repo(root)
    out_root = out if out is not None else root / repo.config.output
    chosen = [repo.config.environment(env_name)] if env_name else list(repo.config.environments)
    result = Plan(repo, root, out_root)
    for env in chosen:
        files = render_environment(repo, env)
        result.environments[env.name] = files
        # With --out the run is a preview: the repo's own target files stay untouched.
        for target in env.targets if out is None else ():
            path = root / target.file
            if root.resolve() not in path.resolve().parents:
                raise ApprovalgateError(f"target {target.file} of {env.name} is outside the repo")
            rendered, key = VALUES[target.values]
            value = yaml.safe_load(files[rendered])[key]
            result.targets[path] = updated_text(path, target.key, value, target.file)
    return result


def differences(p: Plan) -> list[Difference]:
    """Stale, missing and orphaned output, as unified diffs against the plan."""
    found: list[Difference] = []
    shown_root = _shown(p.out_root, p.root)
    for name, files in sorted(p.environments.items()):
        found += compare(files, read_tree(p.out_root / name), f"{shown_root}/{name}")
    if p.complete:
        for folder in stale_environment_folders(p.out_root, set(p.environments)):
            found += compare({}, read_tree(folder), f"{shown_root}/{folder.name}")
    for path, (old, new) in sorted(p.targets.items()):
        if old != new:
            found += compare({path.name: new}, {path.name: old}, _shown(path.parent, p.root))
    return found


def apply(p: Plan) -> list[str]:
    """Write the plan; return what changed, relative to the repo."""
    changed = []
    shown_root = _shown(p.out_root, p.root)
    for name, files in sorted(p.environments.items()):
        if write_environment(p.out_root / name, files):
            changed.append(f"{shown_root}/{name}/")
    if p.complete:
        for folder in stale_environment_folders(p.out_root, set(p.environments)):
            shutil.rmtree(folder)
            changed.append(f"{shown_root}/{folder.name}/ (removed: no such environment)")
    for path, (old, new) in sorted(p.targets.items()):
        if old != new:
            write_file(path, new)
            changed.append(_shown(path, p.root))
    return changed


def _shown(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
