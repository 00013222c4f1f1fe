"""Validate a policy repo: approvalgate.yaml and every ApprovalPolicy, Approver,
EgressPolicy and AgentRun under its source folders, for every environment.

Every problem is reported at once as file:line:col with its JSON path. Writes nothing.
With a `templates:` folder its egress templates are rendered too (a template may only lay
out what the EgressPolicies declare), as compile and check would.
Exit 0 when valid (warnings are printed), 1 when not.

example:
  approvalgate validate examples/gitops-repo
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from approvalgate.batch import fewer_collections
from approvalgate.commands._args import add_repo

if TYPE_CHECKING:
    from approvalgate.compiler.repo import Repo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_repo(parser)


@fewer_collections
def run(args: argparse.Namespace) -> int:
    import sys

    from approvalgate.compiler.repo import load_repo

    repo = load_repo(args.repo)
    _render_repo_templates(repo)
    for warning in repo.warnings:
        print(f"warning: {warning.render()}", file=sys.stderr)
    counts: dict[str, int] = {}
    for doc in repo.documents:
        counts[doc.kind] = counts.get(doc.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no documents"
    envs = ", ".join(e.name for e in repo.config.environments)
    print(f"valid: {summary}; environments {envs}")
    return 0


def _render_repo_templates(repo: Repo) -> None:
    """A repo template renders only what the policies declare: what compile would refuse,
    validate refuses (raises ValidationError, located at the template)."""
    if not repo.config.templates:
        return
    from approvalgate.compiler.egress import parse_egress, render_validated

    templates = str(repo.config.root / repo.config.templates)
    models = [parse_egress(s.obj) for s in repo.of_kind("EgressPolicy")]
    for env in repo.config.environments:
        if env.name in repo.egress_valid:
            render_validated(models, env.egress, templates)
