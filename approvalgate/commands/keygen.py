"""Create an approver's signing key and the Approver document holding its public key, or
write the Approver document for a key that already exists elsewhere (--import).

Without --import: writes DIR/NAME.key (PEM, mode 0600: keep it private) and DIR/NAME.yaml
(the Approver document: commit it to the policy repo's approvers/ folder), and prints the
key id and where the private key lives. --type picks the key type (default ed25519).

With --import SOURCE: writes only DIR/NAME.yaml, from the public key of SOURCE: a public key
file (PEM, or an OpenSSH .pub line) or a signer REF, whose public key is read from where the
private key lives (which never leaves it):
  hsm:KEYID?label=TOKEN   a PKCS#11 token or HSM (module from $APPROVALGATE_PKCS11_MODULE;
                          the public key object is read, a PIN is asked only if the token
                          hides it)
  gcpkms:projects/...     Google Cloud KMS, awskms:KEY Amazon KMS, azurekms://VAULT...
  awskms:... azurekms:... Azure Key Vault, hv:NAME HashiCorp Vault transit (each needs the
  hv:...                  service's client library installed and your credentials)

examples:
  approvalgate keygen alice --out ~/.approvalgate --groups platform-leads \\
      --usernames alice@example.com
  approvalgate keygen bob --type ecdsa-p256 --usernames bob@example.com
  approvalgate keygen carol --import 'hsm:2?label=carol-yubikey' --usernames carol@example.com
  approvalgate keygen dave --usernames dave@example.com --import \\
      gcpkms:projects/acme/locations/global/keyRings/ring/cryptoKeys/dave/cryptoKeyVersions/1
  approvalgate keygen erin --import awskms:alias/approvals-erin --usernames erin@example.com
  approvalgate keygen frank --import azurekms://acme.vault.azure.net/keys/frank \\
      --usernames frank@example.com
  approvalgate keygen gina --import hv:gina --usernames gina@example.com
  approvalgate keygen hank --import hank.pub.pem --usernames hank@example.com
  approvalgate keygen ivy --import ~/.ssh/id_ed25519_sk.pub --usernames ivy@example.com
  approvalgate keygen jo --import ~/.ssh/id_ed25519_sk.pub --user-verification \\
      --usernames jo@example.com   # a key made with -O verify-required: the PIN each time

Then approve with the same REF (keygen prints the line):
  approvalgate approve run.yaml --env prod --signer 'hsm:2?label=carol-yubikey' \\
      --approver carol --in-place
A KMS REF may add --public-key dave.yaml (the Approver document) to sign without reading
the public key from the service.

--usernames is required: the Kubernetes usernames that are this person, as
`kubectl auth whoami` shows them (used to refuse approving one's own run).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from securesystemslib.signer import SSlibKey


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
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--type",
        metavar="TYPE",
        choices=_type_names(),
        default="ed25519",
        help=f"the key type to create: {', '.join(_type_names())} (default ed25519; rsa is "
        "RSA-PSS 3072 bits)",
    )
    what.add_argument(
        "--import",
        dest="source",
        metavar="SOURCE",
        help="write only the Approver document, for an existing key: a public key file (PEM "
        "or OpenSSH .pub) or a signer REF (hsm:..., gcpkms:..., awskms:..., azurekms:..., "
        "hv:...) whose public key is read from the token or the service",
    )
    parser.add_argument(
        "--user-verification",
        action="store_true",
        help="with --import of a security key's .pub (sk-...): write userVerification: "
        "required, so that only its signatures made with the PIN count (make the key with "
        "`ssh-keygen -t ed25519-sk -O verify-required`)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing files")


def _type_names() -> list[str]:
    from approvalgate.approvals import keys

    return [t.cli_name for t in keys.key_types() if t.cli_name]


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
    written = (doc_path,) if args.source else (key_path, doc_path)
    for path in written:
        if path.exists() and not args.force:
            raise UsageError(f"{path} exists", advice="pass --force to overwrite it")
    if args.user_verification and not args.source:
        raise UsageError(
            "--user-verification goes with --import of a security key's .pub: keygen makes "
            "no security keys",
            advice="make one with `ssh-keygen -t ed25519-sk -O verify-required`, then "
            f"`approvalgate keygen {args.name} --import KEY.pub --user-verification ...`",
        )
    if args.source:
        public, where, signer_ref = imported(args.source)
        if args.user_verification and not keys.ssh.is_security_key(public.keytype):
            raise UsageError(
                f"--user-verification is for security keys (sk-...): {args.source} is a "
                f"{public.keytype} key, whose signatures carry no flags",
                advice="leave --user-verification out, or import a key made with "
                "`ssh-keygen -t ed25519-sk -O verify-required`",
            )
    else:
        signer = keys.generate(args.type)
        public, where = signer.public_key, f"{key_path} (mode 0600, never commit it)"
        signer_ref = str(key_path)
    out.mkdir(parents=True, exist_ok=True)
    if not args.source:
        write_private(key_path, signer.private_bytes)
    write_text(
        doc_path,
        approver_document(
            args.name,
            keys.public_key_pem(public),
            _split(args.groups),
            usernames,
            user_verification=args.user_verification,
        ),
    )
    key_type = keys.key_type_of(public)
    print(f"key id {public.keyid} ({key_type.name if key_type else public.keytype})")
    print(f"private key: {where}")
    print(f"approver:    {doc_path} (commit it to your policy repo's approvers/ folder)")
    if signer_ref:
        print(f"sign with:   approvalgate approve ... --signer {signer_ref} --approver {args.name}")
    return 0


def imported(source: str) -> tuple[SSlibKey, str, str]:
    """The public key of SOURCE (a public key file or a signer REF), where its private key
    lives, and the --signer REF that signs with it ("" when not known)."""
    from approvalgate import manifests, signers
    from approvalgate.approvals import keys
    from approvalgate.approvals.errors import InputError

    signers.register_all()
    kind, location = keys.signer_kind_of(source)
    if kind != keys.FILE:
        public, where = signers.import_public_key(source, lambda p: manifests.read_key(Path(p)))
        return public, where, source
    path = Path(location)
    text = manifests.read_key(path).decode("utf-8", errors="replace")
    if "PRIVATE KEY-----" in text:
        raise InputError(
            f"{path} is a private key: --import takes a public key",
            advice=f"keygen writes the public key itself when it creates the key; for an "
            f"existing key file, export its public key (e.g. `openssl pkey -in {path} "
            "-pubout`) and import that",
        )
    try:
        public = keys.load_public_key(text)
    except ValueError as exc:
        raise InputError(
            f"{path}: not a public key: {exc}",
            advice="--import takes a PEM public key, an OpenSSH .pub line, or a signer REF "
            "(hsm:..., gcpkms:..., awskms:..., azurekms:..., hv:...)",
        ) from exc
    if public.keytype.startswith(("ssh-", "sk-", "ecdsa-sha2-")):  # an OpenSSH key
        where = "in your ssh-agent or on your security key, never exported: the agent signs"
        return public, where, f"ssh-agent:{location}"
    where = (
        f"wherever the owner of {path} keeps it (approvalgate never sees it): sign with a "
        "--signer REF that reaches it"
    )
    return public, where, ""


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def approver_document(
    name: str,
    public_pem: str,
    groups: list[str],
    usernames: list[str],
    *,
    user_verification: bool = False,
) -> str:
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
    if user_verification:
        lines.append("      userVerification: required")
    return "\n".join(lines) + "\n"
