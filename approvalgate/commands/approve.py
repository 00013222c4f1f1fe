"""Add a signed approval record to every AgentRun in a manifest.

The record binds the run (namespace/name, or the generateName prefix), the SHA-256
digest of its spec exactly as the API server will see it, and the environment it may run
in (--env, or the environment of --bundle): a record counts only where the webhook
enforces the bundle of that environment. The record goes into the annotation
approvals.proompteng.ai/approvals next to any records already there. Other documents of
the file and all comments and formatting are kept.

Output goes to stdout unless --in-place or -o FILE; what was signed is printed on stderr.

examples:
  approvalgate approve run.yaml --env prod --key alice.key --approver alice --in-place
  approvalgate approve run.yaml --bundle rendered/prod/bundle.json --key bob.key \
      --approver bob --ttl 2h -o approved.yaml
  approvalgate approve run.yaml --env prod --key root.key --approver oncall --bypass \
      --reason "INC-42 checkout down"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from approvalgate.commands._args import add_environment, add_manifest, add_namespace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_manifest(parser)
    add_environment(
        parser,
        "the environment the approval holds in, as named in approvalgate.yaml (required "
        "unless --bundle names it)",
    )
    parser.add_argument(
        "--key",
        metavar="KEYFILE",
        required=True,
        help="the approver's private key (from `approvalgate keygen`)",
    )
    parser.add_argument(
        "--approver",
        metavar="NAME",
        required=True,
        help="the approver's name, as in their Approver document",
    )
    parser.add_argument(
        "--ttl",
        metavar="DURATION",
        help="how long the record is valid, e.g. 30m, 4h, 1d (default: the "
        "matching policies' timeoutSeconds with --policies or --bundle, else 24h)",
    )
    parser.add_argument(
        "--reason",
        metavar="TEXT",
        default="",
        help="why (required with --bypass: at least 8 visible characters)",
    )
    decision = parser.add_mutually_exclusive_group()
    decision.add_argument("--reject", action="store_true", help="record a rejection")
    decision.add_argument(
        "--bypass",
        action="store_true",
        help="record a break-glass bypass (needs --reason, audited)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--in-place", action="store_true", help="rewrite MANIFEST")
    where.add_argument("-o", "--output", metavar="FILE", type=Path, help="write to FILE")
    add_namespace(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--policies",
        metavar="PATH",
        type=Path,
        nargs="+",
        help="policies to bound the TTL by (their timeoutSeconds / bypass maxTTL)",
    )
    source.add_argument(
        "--bundle",
        metavar="FILE",
        type=Path,
        help="a compiled bundle.json: its environment, and its policies bound the TTL",
    )
    parser.add_argument(
        "--now", metavar="RFC3339", help="sign as of this time (testing, backdating)"
    )


def run(args: argparse.Namespace) -> int:
    from approvalgate import manifests
    from approvalgate.approvals import keys, reasons, records
    from approvalgate.approvals.durations import format_duration, parse_duration
    from approvalgate.approvals.errors import Finding, UsageError
    from approvalgate.approvals.policy import BundleSettings
    from approvalgate.output import write_text
    from approvalgate.policies import (
        bundle_environment,
        bundle_from_file,
        bundle_from_paths,
        required_environment,
    )

    decision = "reject" if args.reject else "bypass" if args.bypass else "approve"
    if decision == "bypass" and not args.reason.strip():
        raise UsageError("--bypass needs --reason: a break-glass record must say why")
    if decision == "bypass" and (problem := reasons.reason_problem(args.reason)):
        raise UsageError(
            f"--reason: {problem}; the webhook would not count this bypass. "
            "Say why in words, e.g. --reason 'INC-4711 checkout outage'"
        )
    now = manifests.parse_now(args.now)
    bundle = bundle_from_file(args.bundle) if args.bundle else None
    if bundle is not None:
        environment = bundle_environment(bundle, args.bundle, args.env)
    else:
        environment = required_environment(
            args.env, "approve needs --env NAME: the record must say where it holds"
        )
    signer = keys.load_signer(args.key, lambda path: manifests.read_key(Path(path)))
    text = manifests.read_manifest(args.manifest)
    runs = manifests.agent_runs(text, str(args.manifest), args.namespace)
    if args.policies:
        bundle = bundle_from_paths(args.policies, BundleSettings(environment=environment))
    cap = manifests.ttl_cap(bundle, runs, decision) if bundle is not None else None
    if args.ttl:
        try:
            ttl = parse_duration(args.ttl)
        except ValueError as exc:
            raise UsageError(f"--ttl: {exc}") from exc
        if cap is not None and ttl > cap:
            raise UsageError(
                f"--ttl {args.ttl} is longer than the policies allow ({format_duration(cap)})",
                advice=f"use --ttl {format_duration(cap)}",
            )
    else:
        ttl = cap if cap is not None else 86400

    def sign(run: manifests.Run) -> str:
        claim = records.Claim(
            subject=run.subject,
            digest=run.digest,
            decision=decision,  # type: ignore[arg-type]
            approver=args.approver,
            reason=args.reason,
            issued_at=now,
            expires_at=now + manifests.seconds(ttl),
            nonce=records.new_nonce(),
            environment=environment,
        )
        value = records.dump_annotation([*run.envelopes, records.sign(claim, signer)])
        size = records.annotation_overflow(value)
        if size is not None:
            raise run.source.error(
                Finding(
                    ("metadata", "annotations", records.ANNOTATION),
                    f"with this record the approvals annotation would be {size} bytes, over"
                    f" the {records.MAX_ANNOTATION_BYTES} bytes the webhook reads",
                    "remove expired or superseded records from the annotation first",
                )
            )
        old, _ = records.parse_annotation(records.dump_annotation(run.envelopes))
        for record in old:
            if record.claim.version != records.FORMAT_VERSION:
                print(
                    f"note: AgentRun {run.ref}: record {record.index} by "
                    f"{record.claim.approver} is of format v{record.claim.version} (it names "
                    "no environment) and counts in none; remove it from the annotation",
                    file=sys.stderr,
                )
        print(
            f"signed {decision} of AgentRun {run.ref} spec sha256:{run.digest} for "
            f"environment {environment} as {args.approver}, expires "
            f"{records.format_time(claim.expires_at)}",
            file=sys.stderr,
        )
        return value

    result = manifests.stamp(text, runs, sign)
    if args.in_place:
        write_text(args.manifest, result)
    elif args.output:
        write_text(args.output, result)
    else:
        sys.stdout.write(result)
    return 0
