"""Create an approver's Ed25519 signing key and the Approver document holding its public key.

Writes DIR/NAME.key (PEM, mode 0600: keep it private) and DIR/NAME.yaml (the Approver
document: commit it to the policy repo's approvers/ folder), and prints the key id.

example:
  approvalgate keygen alice --out ~/.approvalgate --groups platform-leads \
      --usernames alice@example.com

--usernames is required: the Kubernetes usernames that are this person, as
`kubectl auth whoami` shows them (used to refuse approving one's own run).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="approver name (lowercase DNS-style)")
    parser.add_argument("--out", metavar="DIR", default=".", help="folder to write to (default .)")
    parser.add_argument(
        "--groups",
        metavar="G,...",
        default="",
        help="comma-separated approver groups for the Approver document",
    )
    parser.add_argument(
        "--usernames",
        metavar="U,...",
        default="",
        help="required: the Kubernetes usernames that are this person (ask them to run "
        "`kubectl auth whoami`); used to refuse self-approval",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing files")


def run(args: argparse.Namespace) -> int:
    import re

    from approvalgate.approvals import keys
    from approvalgate.approvals.errors import UsageError
    from approvalgate.output import write_private, write_text

    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", args.name):
        raise UsageError(
            f"approver name {args.name!r} must be lowercase letters, digits, '-' or '.'"
        )
    usernames = _split(args.usernames)
    if not usernames:
        raise UsageError(
            f"keygen {args.name} needs --usernames U,..: the Kubernetes usernames that are "
            "this person (nothing is guessed from the approver's name)",
            advice="ask them to run `kubectl auth whoami` and pass the Username shown "
            "(e.g. --usernames oidc:alice@example.com)",
        )
    out = Path(args.out)
    key_path, doc_path = out / f"{args.name}.key", out / f"{args.name}.yaml"
    for path in (key_path, doc_path):
        if path.exists() and not args.force:
            raise UsageError(f"{path} exists", advice="pass --force to overwrite it")
    signer = keys.generate()
    public_pem = keys.public_key_pem(signer.public_key)
    out.mkdir(parents=True, exist_ok=True)
    write_private(key_path, signer.private_bytes)
    write_text(
        doc_path,
        approver_document(args.name, public_pem, _split(args.groups), usernames),
    )
    print(f"key id {signer.public_key.keyid}")
    print(f"private key: {key_path} (mode 0600, never commit it)")
    print(f"approver:    {doc_path} (commit it to your policy repo's approvers/ folder)")
    return 0


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def approver_document(name: str, public_pem: str, groups: list[str], usernames: list[str]) -> str:
    lines = [
        "apiVersion: gates.proompteng.ai/v1alpha1",
        "kind: Approver",
        "metadata:",
        f"  name: {name}",
        "spec:",
    ]
    lines += ["  usernames:", *(f"    - {json.dumps(u)}" for u in usernames)]
    if groups:
        lines += ["  groups:", *(f"    - {g}" for g in groups)]
    lines += ["  keys:", "    - publicKey: |"]
    lines += [f"        {line}" for line in public_pem.strip().splitlines()]
    return "\n".join(lines) + "\n"
