"""--bundle-key, --bundle-threshold, --bundle-min-revision, --allow-unsigned-bundle and
--bundle-signatures of the long-running processes (webhook, controller) and the audit: which
bundles they enforce. (``verify``, ``explain`` and ``status`` have commands._bundle_trust,
which also finds the keys in the policy repo; a process in a pod has only its arguments.)

The pinned keys come from the command line (the chart renders them into the pod spec), never
from the bundle's own ConfigMap: whoever may edit the bundle cannot change who signs it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrustArgs:
    """What the flags said, the key files already read (``(source, text)`` pairs)."""

    keys: tuple[tuple[str, str], ...]
    threshold: int
    min_revision: int
    allow_unsigned: bool
    environment: str = ""
    floor: str = ""

    def flags(self, signatures: Path | None) -> dict[str, Any]:
        """The fields of a process's :class:`approvals.bundle_trust.TrustFlags`."""
        return {
            "bundle_keys": tuple(text for _, text in self.keys),
            "bundle_threshold": self.threshold,
            "bundle_min_revision": self.min_revision,
            "bundle_environment": self.environment,
            "allow_unsigned_bundle": self.allow_unsigned,
            "bundle_signatures": signatures,
            "bundle_floor": self.floor,
        }


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def add_bundle_trust(
    parser: argparse.ArgumentParser,
    *,
    signatures: bool = True,
    who: str = "the process",
    description: str = "",
    floor: str = "",
) -> None:
    """``floor``: how this process uses --bundle-floor ("": it has no such flag)."""
    group = parser.add_argument_group(
        "bundle signing (which bundles are enforced)",
        description
        or "A bundle is enforced only when at least --bundle-threshold of the pinned keys "
        "signed its exact bytes (bundle.sig.json, written by `approvalgate compile --sign "
        "REF`) and its revision is not below --bundle-min-revision nor below the bundle in "
        f"force; a refused bundle keeps the last good one. Without --bundle-key {who} "
        "refuses to start unless --allow-unsigned-bundle says otherwise.",
    )
    group.add_argument(
        "--bundle-key",
        metavar="KEY",
        action="append",
        default=[],
        help="a pinned bundle-signing public key: its text (PEM, or an OpenSSH public key "
        "line) or a file holding it; repeat for several, e.g. --bundle-key "
        "keys/bundle-signing.pub",
    )
    group.add_argument(
        "--bundle-threshold",
        metavar="N",
        type=_positive_int,
        default=1,
        help="how many distinct pinned keys must sign (default: 1), e.g. --bundle-threshold 2",
    )
    group.add_argument(
        "--bundle-min-revision",
        metavar="N",
        type=_non_negative_int,
        default=0,
        help="refuse bundles of a lower revision, even at start (the chart passes the deployed"
        " revision, so a restart cannot go back; default: 0)",
    )
    group.add_argument(
        "--bundle-environment",
        metavar="ENV",
        default="",
        help="refuse a bundle of another environment, even signed by a pinned key (one key may"
        " sign every environment: dev's bundle must not open in prod; the chart passes the"
        " deployed bundle's environment), e.g. --bundle-environment prod",
    )
    group.add_argument(
        "--allow-unsigned-bundle",
        action="store_true",
        help="DEVELOPMENT ONLY: enforce bundles without checking signatures (logged as a"
        " WARNING at start and at every load; metric approvalgate_bundle_unsigned_allowed 1);"
        " cannot be combined with --bundle-key",
    )
    if floor:
        group.add_argument(
            "--bundle-floor",
            metavar="NAMESPACE/NAME",
            type=_floor_reference,
            default="",
            help="the ConfigMap holding the highest signed bundle revision each environment"
            f" has enforced: {floor}; a signed bundle below it is refused (below-floor), and"
            " so is one whose floor cannot be read (floor-unknown, retried while no bundle is"
            " in force); the chart passes <release namespace>/approvalgate-bundle-floor with"
            " pinned keys, e.g. --bundle-floor approvalgate-system/approvalgate-bundle-floor",
        )
    if signatures:
        group.add_argument(
            "--bundle-signatures",
            metavar="FILE",
            type=Path,
            help="the bundle's signatures (default: bundle.sig.json beside --bundle; watched"
            " with it)",
        )


def _floor_reference(text: str) -> str:
    from approvalgate.approvals.bundle_floor import parse_reference

    if not text:
        return text  # the default: no floor
    try:
        parse_reference(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def key_text(value: str) -> tuple[str, str]:
    """``(source, text)`` of one --bundle-key: the text itself, or the file it names."""
    from approvalgate.commands._bundle_trust import _KEY_TEXT, _key_text

    return ("--bundle-key" if _KEY_TEXT.match(value.lstrip()) else value), _key_text(value)


def trust_args(args: argparse.Namespace) -> TrustArgs:
    """The flags, checked now (exit 2 with advice when nothing is pinned)."""
    from approvalgate.approvals.bundle_trust import trust_from_texts

    keys = tuple(key_text(value) for value in args.bundle_key)
    found = TrustArgs(
        keys,
        args.bundle_threshold,
        args.bundle_min_revision,
        args.allow_unsigned_bundle,
        args.bundle_environment,
        getattr(args, "bundle_floor", ""),
    )
    if found.floor and found.allow_unsigned:
        from approvalgate.approvals.errors import UsageError

        raise UsageError(
            "--bundle-floor guards signed bundles and --allow-unsigned-bundle is set",
            advice="drop --bundle-floor (unsigned bundles compare no revision), or pin keys",
        )
    trust_from_texts(  # raises UsageError: no keys and not unsigned, both, bad threshold
        keys,
        threshold=found.threshold,
        min_revision=found.min_revision,
        allow_unsigned=found.allow_unsigned,
        environment=found.environment,
    )
    return found
