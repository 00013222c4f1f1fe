"""Render a policy repo into <output>/<env>/ for Argo CD to sync.

Per environment: kustomization.yaml, approvalpolicies/, networkpolicies/, agentruns/,
agents-values.yaml (the agents chart's networkPolicy block), approvalgate-values.yaml and
bundle.json (what the webhook enforces), and SHA256SUMS. Output is byte-identical for the
same input; an unchanged environment is not touched; each environment folder is replaced
atomically. Configured targets (values files of other charts) get only our key updated.

examples:
  approvalgate compile                      # every environment of the repo in .
  approvalgate compile examples/gitops-repo --env prod
  approvalgate compile . --out /tmp/preview
"""

from __future__ import annotations

import argparse
from pathlib import Path

from approvalgate.batch import fewer_collections
from approvalgate.commands._args import add_repo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_repo(parser)
    parser.add_argument("--env", metavar="ENV", help="only this environment (default: all)")
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="output root instead of approvalgate.yaml's (DIR/<env>/); a preview: the "
        "repo's target files are not updated",
    )


@fewer_collections
def run(args: argparse.Namespace) -> int:
    import sys

    from approvalgate.compiler.pipeline import apply, plan

    result = plan(args.repo, args.env, args.out)
    for warning in result.repo.warnings:
        print(f"warning: {warning.render()}", file=sys.stderr)
    changed = apply(result)
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print(f"up to date: {', '.join(sorted(result.environments))}")
    return 0
