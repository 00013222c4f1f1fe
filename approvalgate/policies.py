"""Policies for the CLI: from YAML files (compiled in memory) or from a compiled bundle.

Both roads end in :func:`approvals.bundle.load_bundle` reading bundle JSON, so
``approvalgate verify --policies`` decides exactly as the webhook does with the compiled
bundle.json.

The environment: a compiled bundle names the one it enforces (approvalgate.yaml's
environment name); policy files name none (they hold for every environment of the repo),
so ``--policies`` needs ``--env NAME``: approval records count only in the environment
they name, and a verdict for no environment in particular would say nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from approvalgate.approvals import records
from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.errors import ApprovalgateError, UsageError, ValidationError
from approvalgate.approvals.policy import BundleSettings, compile_bundle, dump_bundle
from approvalgate.compiler.sources import load_sources, read_text


def bundle_from_paths(paths: Sequence[Path], settings: BundleSettings | None = None) -> Bundle:
    """Compile the ApprovalPolicy and Approver documents under ``paths`` into a bundle."""
    sources = load_sources(paths)
    bundle, problems = compile_bundle([s.obj for s in sources], settings or BundleSettings())
    errors: list[ApprovalgateError] = []
    for problem in problems:
        located = sources[problem.doc].error(problem.finding)
        if problem.finding.severity == "warning":
            print(f"warning: {located.render()}", file=sys.stderr)
        else:
            errors.append(located)
    if errors or bundle is None:
        raise ValidationError(errors)
    return parse_bundle_text(dump_bundle(bundle), "compiled policies")


def bundle_from_file(path: Path) -> Bundle:
    return parse_bundle_text(read_text(path), str(path))


def checked_environment(name: str) -> str:
    """``--env NAME`` as given, if it can be an environment name (else a usage error)."""
    problem = records.environment_problem(name)
    if problem is not None:
        raise UsageError(f"--env: {problem}", advice="use an environment name of approvalgate.yaml")
    return name


def bundle_environment(bundle: Bundle, path: Path, environment: str | None) -> str:
    """The bundle's environment; ``--env``, when also given, must be the same."""
    if environment is not None and checked_environment(environment) != bundle.environment:
        raise UsageError(
            f"--env {environment}: {path} is the bundle of environment {bundle.environment}",
            advice=f"drop --env, or use the bundle of {environment} "
            f"(rendered/{environment}/bundle.json)",
        )
    return bundle.environment


def required_environment(
    environment: str | None,
    why: str = "--policies needs --env NAME: policy files name no environment",
) -> str:
    """``--env NAME`` where nothing else names the environment (else a usage error)."""
    if environment is None:
        raise UsageError(
            f"{why}, and approval records count only in the environment they name",
            advice="add --env with the environment the run is for (as in approvalgate.yaml, "
            "e.g. --env prod), or use --bundle rendered/ENV/bundle.json",
        )
    return checked_environment(environment)


def load_policies(
    paths: Sequence[Path] | None, bundle_path: Path | None, environment: str | None = None
) -> Bundle:
    """The bundle to decide with: a compiled bundle.json, or the policies compiled for
    ``environment`` (required with ``paths``; with a bundle it must be the bundle's)."""
    if bundle_path is not None:
        bundle = bundle_from_file(bundle_path)
        bundle_environment(bundle, bundle_path, environment)
        return bundle
    assert paths
    return bundle_from_paths(paths, BundleSettings(environment=required_environment(environment)))
