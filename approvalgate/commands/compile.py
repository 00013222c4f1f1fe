"""Render a policy repo into <output>/<env>/ for Argo CD to sync.

Per environment: kustomization.yaml, approvalpolicies/, networkpolicies/, agentruns/,
agents-values.yaml (the agents chart's networkPolicy block), approvalgate-values.yaml and
bundle.json (what the webhook enforces), and SHA256SUMS. Output is byte-identical for the
same input; an unchanged environment is not touched; each environment folder is replaced
atomically. Configured targets (values files of other charts) get only our key updated.

Signed bundles: bundle.json carries a revision, kept while the content is unchanged and
raised by one when it changes (the webhook never goes back to a lower one). Where
approvalgate.yaml declares bundleSigning.publicKeys, `--sign REF` signs each environment's
bundle with the key REF names (a key file, or SCHEME:LOCATION of a signer kind as for
`approve --signer`) into <env>/bundle.sig.json; repeat it for a threshold of several keys,
or run it once per key holder: signatures that still verify are kept. Without --sign,
signatures that no longer verify over the new bundle are removed (said on stderr) and the
bundle must be signed again: `check` fails until it is.

examples:
  approvalgate compile                      # every environment of the repo in .
  approvalgate compile examples/gitops-repo --env prod
  approvalgate compile . --out /tmp/preview
  approvalgate compile --sign keys/release.key             # sign with a key file
  approvalgate compile --sign keys/release.key --sign keys/ci.key   # threshold 2
  approvalgate compile --sign gcpkms:projects/p/locations/l/keyRings/r/cryptoKeys/k/\
cryptoKeyVersions/1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from approvalgate.batch import fewer_collections
from approvalgate.commands._args import add_repo
from approvalgate.commands._signer import signer_help


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
    parser.add_argument(
        "--sign",
        metavar="REF",
        action="append",
        default=[],
        help="sign every environment's bundle whose approvalgate.yaml bundleSigning.publicKeys "
        "lists this key, into <env>/bundle.sig.json (repeatable: one signature per key). REF: "
        f"{signer_help()}; e.g. --sign keys/release.key",
    )


@fewer_collections
def run(args: argparse.Namespace) -> int:
    import sys

    from approvalgate.commands._signer import load
    from approvalgate.compiler.pipeline import apply, plan

    signers = [(ref, load(ref)) for ref in args.sign]
    result = plan(args.repo, args.env, args.out, signers)
    for warning in result.repo.warnings:
        print(f"warning: {warning.render()}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for finding in result.unsigned:
        print(f"warning: {finding}", file=sys.stderr)
    changed = apply(result)
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print(f"up to date: {', '.join(sorted(result.environments))}")
    return 0
