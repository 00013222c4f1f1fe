"""Arguments several commands share, defined once so their help reads the same."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_repo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "repo",
        metavar="REPO",
        type=Path,
        nargs="?",
        default=Path("."),
        help="the policy repo (default: .)",
    )


def add_manifest(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "manifest",
        metavar="MANIFEST",
        type=Path,
        help="YAML file with AgentRuns (- for standard input)",
    )


def add_policy_source(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--policies",
        metavar="PATH",
        type=Path,
        nargs="+",
        help="ApprovalPolicy/Approver YAML files or folders",
    )
    source.add_argument("--bundle", metavar="FILE", type=Path, help="a compiled bundle.json")


def add_namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        default="default",
        help="namespace of runs that name none (as kubectl; default: default)",
    )


def add_now(parser: argparse.ArgumentParser, what: str = "decide as of this time") -> None:
    parser.add_argument("--now", metavar="RFC3339", help=f"{what} (default: now)")


def add_environment(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--env", metavar="NAME", help=what)
