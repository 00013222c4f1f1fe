"""--bundle-key and friends: opening a bundle.json only when its signatures check out.

``verify``, ``explain`` and ``status`` decide admission from a bundle, so they open it the
way the webhook does (approvals.bundle_trust.open_bundle). The pinned keys come from
``--bundle-key KEY`` (repeatable) or, with neither that nor ``--allow-unsigned-bundle``,
from the ``bundleSigning`` of the approvalgate.yaml found by walking up from the bundle
(the environment is the output folder the bundle sits in: ``rendered/<env>/``). Without
either it is a usage error: "no key configured" never means "not checked".
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from approvalgate.approvals.bundle import Bundle
from approvalgate.approvals.bundle_trust import (
    INVALID,
    SIGNATURES_FILE,
    UNSIGNED,
    BundleRefused,
    BundleTrust,
    open_bundle,
    trust_from_texts,
)
from approvalgate.approvals.errors import BundleError, InputError, UsageError

FLAGS = "--bundle-key KEY (or --allow-unsigned-bundle, development only)"
_KEY_TEXT = re.compile(r"^(-----BEGIN |(ssh|ecdsa-sha2|sk-ssh|sk-ecdsa-sha2|rsa-sha2)-\S+ )")


_SIGN = (
    "do not use this bundle: sign it in its policy repo with a pinned key "
    "(`approvalgate compile --sign REF`, REF a key of bundleSigning.publicKeys) and keep "
    "bundle.sig.json beside it, or pass the keys that sign it (--bundle-key)"
)
_ADVICE = dict.fromkeys(
    (
        "unsigned",
        "signature-stripped",
        "signatures-malformed",
        "signed-other-content",
        "untrusted-key",
        "signature-invalid",
        "below-threshold",
    ),
    _SIGN,
) | {
    "below-min-revision": "an older bundle: use the current one (`git pull`, then "
    "rendered/ENV/bundle.json), or lower --bundle-min-revision if this one is meant",
}


def add_bundle_trust(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "bundle signatures (with --bundle)",
        "A bundle is used only when its signatures (bundle.sig.json beside it) verify with "
        "pinned keys, as the webhook does: --bundle-key, else the bundleSigning of the "
        "approvalgate.yaml above the bundle (rendered/ENV/bundle.json). Refused: exit 1.",
    )
    group.add_argument(
        "--bundle-key",
        metavar="KEY",
        action="append",
        default=[],
        help="a pinned bundle-signing public key: its text (PEM or an OpenSSH line) or a file "
        "holding it (repeatable); e.g. --bundle-key bundle-signing/release.pub",
    )
    group.add_argument(
        "--bundle-threshold",
        metavar="N",
        type=int,
        help="how many distinct pinned keys must have signed (default: 1, or "
        "approvalgate.yaml's bundleSigning.threshold); e.g. --bundle-threshold 2",
    )
    group.add_argument(
        "--bundle-min-revision",
        metavar="N",
        type=int,
        default=0,
        help="refuse a bundle whose revision is below N (an older bundle: a rollback); "
        "e.g. --bundle-min-revision 12",
    )
    group.add_argument(
        "--bundle-environment",
        metavar="ENV",
        default="",
        help="refuse a bundle of another environment, even one a pinned key signed (default "
        "with --bundle-key: any; with the repo's keys: the environment of the bundle's "
        "output folder); e.g. --bundle-environment prod",
    )
    group.add_argument(
        "--bundle-signatures",
        metavar="FILE",
        type=Path,
        help=f"the signatures document (default: {SIGNATURES_FILE} beside the bundle)",
    )
    group.add_argument(
        "--allow-unsigned-bundle",
        action="store_true",
        help="use the bundle without checking signatures: development only, whoever can "
        "edit the bundle changes the rules",
    )


@dataclass(frozen=True)
class Pinned:
    trust: BundleTrust
    source: str
    """Where the trust came from (--bundle-key, approvalgate.yaml:line:col), for messages."""
    environment: str | None = None
    """The environment the bundle's folder belongs to, when the trust came from the repo."""


def trusted_bundle(args: argparse.Namespace) -> Bundle:
    """``args.bundle`` opened against the pinned trust; a refusal is exit 1 with the reason."""
    from approvalgate.compiler.sources import read_text

    path: Path = args.bundle
    text = read_text(path, str(path))
    pinned = pinned_trust(args, path)
    signatures_path = args.bundle_signatures or path.parent / SIGNATURES_FILE
    signatures: str | None = None
    if args.bundle_signatures is not None or signatures_path.is_file():
        signatures = read_text(signatures_path, str(signatures_path))
    if not pinned.trust.signed:
        print(
            f"warning: {path}: signatures not checked ({pinned.source}): whoever can edit the "
            "bundle changes the rules; development only",
            file=sys.stderr,
        )
    try:
        bundle = open_bundle(text.encode("utf-8"), signatures, pinned.trust, source=str(path))
    except BundleRefused as exc:
        if exc.reason == INVALID:  # not about trust: the bundle's own error, as before
            raise
        message = exc.message
        if exc.reason == UNSIGNED:
            message = f"{path} is not signed: there is no {signatures_path}"
        raise BundleRefused(
            exc.reason,
            f"{message} [{exc.reason}] (trust: {pinned.trust.describe()}, from {pinned.source})",
            advice=_ADVICE.get(exc.reason, exc.advice),
        ) from exc
    if pinned.environment is not None and bundle.environment != pinned.environment:
        raise BundleError(
            f"{path} is the bundle of environment {bundle.environment}, in the output folder "
            f"of {pinned.environment}: a bundle moved between environments is not used",
            advice=f"recompile: `approvalgate compile --env {pinned.environment}`",
        )
    return bundle


def pinned_trust(args: argparse.Namespace, path: Path) -> Pinned:
    if args.bundle_threshold is not None and args.bundle_threshold < 1:
        raise UsageError(f"--bundle-threshold {args.bundle_threshold}: at least 1")
    if args.bundle_key or args.allow_unsigned_bundle:
        texts = [(key, _key_text(key)) for key in args.bundle_key]
        trust = trust_from_texts(
            texts,
            threshold=args.bundle_threshold or 1,
            min_revision=args.bundle_min_revision,
            allow_unsigned=args.allow_unsigned_bundle,
            environment=args.bundle_environment,
        )
        source = "--bundle-key" if args.bundle_key else "--allow-unsigned-bundle"
        return Pinned(trust, source)
    return _repo_trust(args, path)


def _key_text(key: str) -> str:
    if _KEY_TEXT.match(key.lstrip()):
        return key
    from approvalgate.compiler.sources import read_text

    try:
        return read_text(Path(key), key)
    except InputError as exc:
        raise UsageError(
            f"--bundle-key {key}: neither a public key's text nor a readable file: {exc.message}",
            advice="pass the .pub file of a bundle-signing key, or its PEM text",
        ) from exc


def _repo_trust(args: argparse.Namespace, path: Path) -> Pinned:
    from approvalgate.compiler.config import CONFIG_FILE, load_config

    root = next(
        (p for p in path.resolve().parents if (p / CONFIG_FILE).is_file()),
        None,
    )
    if root is None:
        raise UsageError(
            f"{path}: no pinned bundle-signing key: the bundle's signatures cannot be checked",
            advice=f"pass {FLAGS}, or keep the bundle in a policy repo whose {CONFIG_FILE} "
            "declares bundleSigning.publicKeys",
        )
    config = load_config(root)
    folder = path.resolve().parent
    output = (root / config.output).resolve()
    env = None
    if folder.parent == output:
        env = next((e for e in config.environments if e.name == folder.name), None)
    shown = root / CONFIG_FILE
    if env is None:
        raise UsageError(
            f"{path} is not in an environment's output folder of {shown} "
            f"({config.output}/ENV/), so its bundleSigning does not say which keys apply",
            advice=f"pass {FLAGS}",
        )
    if env.signing is None:
        raise UsageError(
            f"{shown} declares no bundleSigning for environment {env.name}: the bundle's "
            "signatures cannot be checked",
            advice=f"pass {FLAGS}, or declare bundleSigning.publicKeys in {CONFIG_FILE}",
        )
    trust = env.signing.trust(args.bundle_min_revision, args.bundle_threshold)
    where = env.signing.where
    return Pinned(trust, f"{root / where}" if not Path(where).is_absolute() else where, env.name)


def decision_bundle(args: argparse.Namespace) -> Bundle:
    """The bundle to decide with: ``--bundle`` opened against the pinned trust, or
    ``--policies`` compiled for ``--env`` (the trust flags are then a usage error)."""
    from approvalgate.policies import bundle_environment, load_policies

    if args.bundle is None:
        given = [
            flag
            for flag, value in (
                ("--bundle-key", args.bundle_key),
                ("--bundle-threshold", args.bundle_threshold is not None),
                ("--bundle-min-revision", args.bundle_min_revision),
                ("--bundle-signatures", args.bundle_signatures is not None),
                ("--allow-unsigned-bundle", args.allow_unsigned_bundle),
            )
            if value
        ]
        if given:
            raise UsageError(
                f"{', '.join(given)}: for --bundle FILE only (policies from --policies are "
                "compiled here, not signed)"
            )
        return load_policies(args.policies, None, args.env)
    bundle = trusted_bundle(args)
    bundle_environment(bundle, args.bundle, args.env)
    return bundle
