"""validate / compile / check: the compiler's entry points over a policy repo."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from securesystemslib.signer import Signer

from approvalgate.approvals.errors import ApprovalgateError, UsageError
from approvalgate.compiler.config import Environment
from approvalgate.compiler.output import (
    Difference,
    compare,
    foreign_entries,
    foreign_files,
    outputs_elsewhere,
    read_tree,
    stale_environment_folders,
    write_environment,
    write_file,
)
from approvalgate.compiler.render import compiled_bundle, render_environment
from approvalgate.compiler.repo import Repo, load_repo
from approvalgate.compiler.signing import (
    BUNDLE_FILE,
    read_previous,
    sign_environment,
    threshold_finding,
)
from approvalgate.compiler.targets import updated_text

FOREIGN = (
    "not an environment of approvalgate.yaml, nor one compile wrote (no SHA256SUMS), "
    "yet Argo CD's ApplicationSet deploys every folder of the output root"
)
FOREIGN_ADVICE = (
    "delete it (or move it out of the output folder): the output root holds only what "
    "`approvalgate compile` writes, one folder per environment; nothing was written"
)

LEFT_BEHIND = (
    "compiled output outside the output folder of approvalgate.yaml (left when `output` "
    "changed?): check no longer compares it, and Argo CD may still sync it"
)
LEFT_BEHIND_ADVICE = "delete it (and point Argo CD at the new output folder); nothing was written"

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
    notes: list[str] = field(default_factory=list)
    """What compile says on stderr: signatures dropped because they no longer verify."""
    unsigned: list[str] = field(default_factory=list)
    """Bundles signed by fewer keys than bundleSigning requires, with the command: check's
    findings, compile's warnings."""

    @property
    def complete(self) -> bool:
        """All configured environments are planned (so other folders are orphans)."""
        return len(self.environments) == len(self.repo.config.environments)


def plan(
    root: Path,
    env_name: str | None = None,
    out: Path | None = None,
    signers: Sequence[tuple[str, Signer]] = (),
) -> Plan:
    """Load and validate the repo, render the chosen environments in memory.

    ``signers`` (``--sign REF``, as (REF, signer)) sign each environment whose
    bundleSigning lists their key; one listed nowhere is a usage error.
    """
    repo = load_repo(root)
    out_root = out if out is not None else root / repo.config.output
    chosen = [repo.config.environment(env_name)] if env_name else list(repo.config.environments)
    result = Plan(repo, root, out_root)
    repo_arg = "" if str(root) == "." else f" {root}"
    used: set[int] = set()
    for env in chosen:
        folder = out_root / env.name
        if out is not None and not (folder / BUNDLE_FILE).exists():
            # a preview into a new folder: the revision follows the repo's own output
            folder = root / repo.config.output / env.name
        previous = read_previous(folder, f"{_shown(folder.parent, root)}/{env.name}")
        compiled = compiled_bundle(repo, env, previous)
        signed = sign_environment(compiled[1], previous, env.signing, [s for _, s in signers])
        files = render_environment(repo, env, compiled, signed.text)
        result.environments[env.name] = files
        result.notes += signed.notes
        used |= signed.used
        finding = threshold_finding(
            env.signing, signed, f"{_shown(out_root, root)}/{env.name}", repo_arg
        )
        if finding:
            result.unsigned.append(finding)
        # With --out the run is a preview: the repo's own target files stay untouched.
        for target in env.targets if out is None else ():
            path = root / target.file
            if root.resolve() not in path.resolve().parents:
                raise ApprovalgateError(f"target {target.file} of {env.name} is outside the repo")
            rendered, key = VALUES[target.values]
            value = yaml.safe_load(files[rendered])[key]
            result.targets[path] = updated_text(path, target.key, value, target.file)
    _check_signers(signers, used, chosen)
    return result


def _check_signers(
    signers: Sequence[tuple[str, Signer]], used: set[int], chosen: Sequence[Environment]
) -> None:
    """Every --sign key must be listed in a compiled environment's bundleSigning."""
    declared = [e for e in chosen if e.signing is not None and e.signing.keys]
    for index, (ref, signer) in enumerate(signers):
        if index in used:
            continue
        names = ", ".join(e.name for e in chosen)
        if not declared:
            raise UsageError(
                f"--sign {ref}: no environment compiled ({names}) declares "
                "bundleSigning.publicKeys in approvalgate.yaml, so no key may sign its bundle",
                advice="add `bundleSigning: {publicKeys: [bundle-signing/release.pub]}` "
                "(the signer's public key file) to approvalgate.yaml",
            )
        places = "; ".join(f"{e.name}: {e.signing.where}" for e in declared if e.signing)
        raise UsageError(
            f"--sign {ref}: its key (keyid {signer.public_key.keyid[:12]}) is not among "
            f"the bundleSigning.publicKeys of any environment compiled ({places})",
            advice="sign with a listed key, or add this key's public key file to "
            "bundleSigning.publicKeys in approvalgate.yaml",
        )


def differences(p: Plan) -> list[Difference]:
    """Stale, missing and orphaned output, as unified diffs against the plan."""
    found: list[Difference] = []
    shown_root = _shown(p.out_root, p.root)
    for name, files in sorted(p.environments.items()):
        found += compare(files, read_tree(p.out_root / name), f"{shown_root}/{name}")
    if p.complete:
        for folder in stale_environment_folders(p.out_root, set(p.environments)):
            found += compare({}, read_tree(folder), f"{shown_root}/{folder.name}")
        for entry in foreign_entries(p.out_root, set(p.environments)):
            files = foreign_files(entry)
            shown = [Difference(f"{shown_root}/{entry.name}", "foreign", "")]
            found += [
                Difference(d.path, "foreign", d.diff) for d in compare({}, files, shown_root)
            ] or shown
    for folder in _left_behind(p):
        found.append(Difference(_shown(folder, p.root), "left-behind", ""))
    for path, (old, new) in sorted(p.targets.items()):
        if old != new:
            found += compare({path.name: new}, {path.name: old}, _shown(path.parent, p.root))
    return found


def _left_behind(p: Plan) -> list[Path]:
    """Compiled output outside the configured output root (only when that root is the
    repo's own: a preview with --out says nothing about the repo)."""
    if p.out_root != p.root / p.repo.config.output:
        return []
    return outputs_elsewhere(p.root, p.out_root)


def apply(p: Plan) -> list[str]:
    """Write the plan; return what changed, relative to the repo."""
    changed = []
    shown_root = _shown(p.out_root, p.root)
    if p.complete and (foreign := foreign_entries(p.out_root, set(p.environments))):
        raise ApprovalgateError(
            "; ".join(f"{shown_root}/{e.name}: {FOREIGN}" for e in foreign),
            advice=FOREIGN_ADVICE,
        )
    if left := _left_behind(p):
        raise ApprovalgateError(
            "; ".join(f"{_shown(folder, p.root)}: {LEFT_BEHIND}" for folder in left),
            advice=LEFT_BEHIND_ADVICE,
        )
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
