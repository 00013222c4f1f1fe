"""Fail when the committed output is stale, missing or orphaned (read-only, for CI).

Renders the repo in memory and compares it with <output>/<env>/ and the configured
targets byte for byte (targets as Helm reads them). Exit 0 when up to date; 1 with a unified
diff of every stale, missing or orphaned file and the command that fixes it. Any other folder
or symlink in the output root (`foreign`: Argo CD's ApplicationSet deploys every folder
there) and compiled output elsewhere in the repo (`left-behind`: a changed `output`) are
findings too: delete them. Sources a reviewer reads otherwise than the compiler are errors
with file:line:col (docs/compiler.md, "Read as a reviewer reads it").

Signatures (bundle.sig.json) are verified, not compared byte for byte (an ECDSA signature
differs each time it is made): where approvalgate.yaml declares bundleSigning.publicKeys,
a bundle signed by fewer of them than bundleSigning.threshold is a finding (exit 1) naming
`approvalgate compile --sign REF`.

example:
  approvalgate check examples/gitops-repo
"""

from __future__ import annotations

import argparse

from approvalgate.batch import fewer_collections
from approvalgate.commands._args import add_repo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_repo(parser)
    parser.add_argument("--quiet", "-q", action="store_true", help="list files, no diffs")


@fewer_collections
def run(args: argparse.Namespace) -> int:
    import sys

    from approvalgate.compiler.pipeline import (
        FOREIGN,
        FOREIGN_ADVICE,
        LEFT_BEHIND,
        LEFT_BEHIND_ADVICE,
        differences,
        plan,
    )

    result = plan(args.repo)
    found = differences(result)
    if not found and not result.unsigned:
        print(f"up to date: {', '.join(sorted(result.environments))}")
        return 0
    for finding in result.unsigned:
        print(f"unsigned: {finding}", file=sys.stderr)
    if not found:
        return 1
    for difference in found:
        print(f"{difference.kind}: {difference.path}", file=sys.stderr)
        if not args.quiet:
            sys.stdout.write(difference.diff)
    if any(d.kind == "foreign" for d in found):
        print(f"\nforeign: {FOREIGN}; {FOREIGN_ADVICE}", file=sys.stderr)
    if any(d.kind == "left-behind" for d in found):
        print(f"\nleft-behind: {LEFT_BEHIND}; {LEFT_BEHIND_ADVICE}", file=sys.stderr)
    if all(d.kind in ("foreign", "left-behind") for d in found):
        return 1
    repo = "" if str(args.repo) == "." else f" {args.repo}"
    print(
        f"\n{len(found)} file(s) out of date; run `approvalgate compile{repo}` and commit "
        "the result",
        file=sys.stderr,
    )
    return 1
