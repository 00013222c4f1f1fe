"""Policies for the CLI: from YAML files (compiled in memory) or from a compiled bundle.

Both roads end in :func:`approvals.bundle.load_bundle` reading bundle JSON, so
``approvalgate verify --policies`` decides exactly as the webhook does with the compiled
bundle.json.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.errors import ApprovalgateError, ValidationError
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


def load_policies(paths: Sequence[Path] | None, bundle_path: Path | None) -> Bundle:
    if bundle_path is not None:
        return bundle_from_file(bundle_path)
    assert paths
    return bundle_from_paths(paths)
