"""Validate a policy repo: approvalgate.yaml and every ApprovalPolicy, Approver,
EgressPolicy and AgentRun under its source folders, for every environment.

Every problem is reported at once as file:line:col with its JSON path. Writes nothing.
Exit 0 when valid (warnings are printed), 1 when not.

example:
  approvalgate validate examples/gitops-repo
"""

from __future__ import annotations

import argparse

from approvalgate.batch import fewer_collections
from approvalgate.commands._args import add_repo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_repo(parser)


@fewer_collections
def run(args: argparse.Namespace) -> int:
    import sys

    from approvalgate.compiler.repo import load_repo

    repo = load_repo(args.repo)
    for warning in repo.warnings:
        print(f"warning: {warning.render()}", file=sys.stderr)
    counts: dict[str, int] = {}
    for doc in repo.documents:
        counts[doc.kind] = counts.get(doc.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no documents"
    envs = ", ".join(e.name for e in repo.config.environments)
    print(f"valid: {summary}; environments {envs}")
    return 0
