"""approvalgate.yaml: environments, their settings, sources, output and targets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securesystemslib.signer import SSlibKey

from approvalgate.approvals.bundle_trust import BundleTrust
from approvalgate.approvals.errors import (
    ApprovalgateError,
    Finding,
    InputError,
    JsonPath,
    ValidationError,
)
from approvalgate.approvals.keys.public import distinct_keys, load_public_key
from approvalgate.approvals.policy import BundleSettings
from approvalgate.approvals.schemas import schema_findings
from approvalgate.compiler.egress import EgressEnv, env_from_mapping
from approvalgate.compiler.sources import SourceDocument, load_text, read_text

CONFIG_FILE = "approvalgate.yaml"
DEFAULT_SOURCES = ("policies", "approvers", "egress", "runs")
DEFAULT_OUTPUT = "rendered"
DEFAULT_NAMESPACE = "agents"
TARGET_KEYS = {"agents": "networkPolicy", "approvalgate": "policyBundle"}


@dataclass(frozen=True)
class Target:
    file: str
    values: str
    key: str


@dataclass(frozen=True)
class BundleSigning:
    """An environment's ``bundleSigning``: the keys its bundle must be signed by.

    ``publicKeys`` (files in the repo) and ``threshold``, or ``allowUnsigned: true`` (the
    development setting: the bundle is not signed and nothing checks it). ``where`` is the
    setting's place in approvalgate.yaml, for messages.
    """

    keys: tuple[SSlibKey, ...] = ()
    files: tuple[str, ...] = ()
    threshold: int = 1
    allow_unsigned: bool = False
    where: str = CONFIG_FILE

    def trust(self, min_revision: int = 0, threshold: int | None = None) -> BundleTrust:
        return BundleTrust(
            self.keys,
            self.threshold if threshold is None else threshold,
            min_revision,
            self.allow_unsigned,
        )


@dataclass(frozen=True)
class Environment:
    name: str
    namespace: str
    bundle: BundleSettings
    egress: EgressEnv
    targets: tuple[Target, ...]
    signing: BundleSigning | None = None
    """None: approvalgate.yaml says nothing about signing this environment's bundle."""


@dataclass(frozen=True)
class RepoConfig:
    root: Path
    source: SourceDocument
    sources: tuple[str, ...]
    output: str
    templates: str | None
    environments: tuple[Environment, ...]

    def environment(self, name: str) -> Environment:
        for env in self.environments:
            if env.name == name:
                return env
        known = ", ".join(e.name for e in self.environments)
        raise ApprovalgateError(
            f"no environment {name!r} in {CONFIG_FILE}", advice=f"environments: {known}"
        )


def load_config(root: Path) -> RepoConfig:
    path = root / CONFIG_FILE
    if not path.is_file():
        raise InputError(
            f"{path}: no {CONFIG_FILE} here",
            advice="run inside a policy repo, or pass its folder as REPO",
        )
    documents = load_text(read_text(path, CONFIG_FILE), CONFIG_FILE, strict=True)
    if len(documents) != 1:
        raise InputError(f"{CONFIG_FILE} must hold exactly one document")
    source = documents[0]
    findings = schema_findings("config.schema.json", source.obj)
    if findings:
        raise ValidationError([source.error(f) for f in findings])
    obj = source.obj
    defaults: Mapping[str, Any] = obj.get("defaults", {})
    environments = []
    errors: list[ApprovalgateError] = [
        source.error(Finding(path, message, advice)) for path, message, advice in _removed(obj)
    ]
    signing: dict[JsonPath, BundleSigning | None] = {}
    for where, raw_signing in _signing_settings(obj):
        try:
            signing[where] = _signing(root, source, where, raw_signing)
        except ValidationError as exc:
            errors.extend(exc.problems)
    for name in sorted(obj["environments"]):
        raw = obj["environments"][name] or {}
        own: JsonPath = ("environments", name, "bundleSigning")
        chosen = signing.get(own, signing.get(("bundleSigning",)))
        try:
            environments.append(_environment(name, defaults, raw, chosen))
        except ApprovalgateError as exc:
            errors.append(source.error(Finding(("environments", name), exc.message, exc.advice)))
    errors += [source.error(f) for f in _templates_findings(root, obj.get("templates"))]
    if errors:
        raise ValidationError(errors)
    return RepoConfig(
        root=root,
        source=source,
        sources=tuple(obj.get("sources", DEFAULT_SOURCES)),
        output=obj.get("output", DEFAULT_OUTPUT),
        templates=obj.get("templates"),
        environments=tuple(environments),
    )


def _templates_findings(root: Path, templates: str | None) -> list[Finding]:
    """The templates folder is the repo's own: inside it, reached through no symlink (its
    templates render the output `check` compares, and a folder elsewhere is no file a
    reviewer of the repo reads)."""
    if templates is None:
        return []
    where: JsonPath = ("templates",)
    folder = root
    for part in Path(templates).parts:
        if part in ("/", "..") or Path(part).is_absolute():
            return [Finding(where, f"templates `{templates}` is outside the repo", _INSIDE)]
        folder = folder / part
        if folder.is_symlink():
            return [Finding(where, f"templates `{templates}` goes through a symlink", _INSIDE)]
    return []


_INSIDE = "give a folder of the repo, relative to approvalgate.yaml, not a symlink"


def _environment(
    name: str,
    defaults: Mapping[str, Any],
    raw: Mapping[str, Any],
    signing: BundleSigning | None = None,
) -> Environment:
    merged = {**defaults, **{k: v for k, v in raw.items() if k not in ("targets", "bundleSigning")}}
    egress = {**defaults.get("egress", {}), **raw.get("egress", {})}
    namespace = merged.get("namespace", DEFAULT_NAMESPACE)
    egress.setdefault("namespace", namespace)
    bundle = BundleSettings(
        environment=name,
        exclude_namespaces=tuple(merged.get("excludeNamespaces", [])),
        namespace_selection=merged.get("namespaceSelection", "all"),
        enforcement=merged.get("enforcement", "enforce"),
        no_match=merged.get("noMatch", "deny"),
        clock_skew_seconds=merged.get("clockSkewSeconds", 60),
        cluster_view=merged.get("clusterView", "required"),
        use_settle_seconds=merged.get("useSettleSeconds", 30),
        referenced_content=merged.get("referencedContent", "bind"),
    )
    try:
        egress_env = env_from_mapping(egress)
    except ValidationError as exc:
        detail = "; ".join(
            f"{p.location.json_path if p.location else ''}: {p.message}" for p in exc.problems
        )
        raise ApprovalgateError(f"egress settings: {detail}", advice="see docs/egress.md") from exc
    targets = tuple(
        Target(t["file"], t["values"], t.get("key", TARGET_KEYS[t["values"]]))
        for t in raw.get("targets", [])
    )
    return Environment(name, namespace, bundle, egress_env, targets, signing)


def _signing_settings(obj: Mapping[str, Any]) -> list[tuple[JsonPath, Mapping[str, Any]]]:
    """Every ``bundleSigning`` block: the top-level one, then each environment's own."""
    found: list[tuple[JsonPath, Mapping[str, Any]]] = []
    if "bundleSigning" in obj:
        found.append((("bundleSigning",), obj["bundleSigning"]))
    for name, raw in sorted(obj["environments"].items()):
        if raw and "bundleSigning" in raw:
            found.append((("environments", name, "bundleSigning"), raw["bundleSigning"]))
    return found


def _signing(
    root: Path, source: SourceDocument, path: JsonPath, raw: Mapping[str, Any]
) -> BundleSigning:
    """One ``bundleSigning`` block, its key files read (schema-valid already)."""
    where = str(source.location(path))
    allow = bool(raw.get("allowUnsigned", False))
    files = tuple(raw.get("publicKeys", ()))
    errors: list[ApprovalgateError] = []
    if allow == bool(files):
        errors.append(
            source.error(
                Finding(
                    path,
                    "bundleSigning needs either publicKeys (the keys that sign the bundle) "
                    "or allowUnsigned: true (development only), not "
                    + ("both" if allow else "neither"),
                    "e.g. bundleSigning: {publicKeys: [bundle-signing/release.pub], threshold: 1}",
                )
            )
        )
    keys: list[SSlibKey] = []
    for index, file in enumerate(files):
        key_path = (*path, "publicKeys", index)
        try:
            keys.append(load_public_key(read_text(root / file, file)))
        except ApprovalgateError as exc:
            errors.append(source.error(Finding(key_path, exc.message, exc.advice)))
        except ValueError as exc:
            errors.append(
                source.error(
                    Finding(
                        key_path,
                        f"{file} is not a bundle-signing public key: {exc}",
                        "point at the .pub file `approvalgate keygen` wrote (PEM or an "
                        "OpenSSH public key line)",
                    )
                )
            )
    distinct = distinct_keys(keys)  # one key as PEM and as OpenSSH line is one
    threshold = int(raw.get("threshold", 1))
    if keys and len(keys) == len(files) and threshold > distinct:
        errors.append(
            source.error(
                Finding(
                    (*path, "threshold"),
                    f"threshold {threshold} is more than the {distinct} distinct public "
                    "key(s) listed: no bundle could ever be trusted",
                    "lower the threshold or list more publicKeys",
                )
            )
        )
    if errors:
        raise ValidationError(errors)
    return BundleSigning(tuple(keys), files, threshold, allow, where)


def _removed(obj: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str, str]]:
    """Settings that no longer exist, located, with the setting that replaced them.

    ``enforcedNamespaces`` listed the only namespaces enforced, so a namespace created later
    (or the webhook's own) admitted unapproved runs. It is an error rather than silently
    read as something else: its meaning was the opposite of the new default.
    """
    found = []
    places = [(("defaults",), obj.get("defaults") or {})] + [
        (("environments", name), raw or {}) for name, raw in sorted(obj["environments"].items())
    ]
    for path, settings in places:
        if "enforcedNamespaces" in settings:
            found.append(
                (
                    (*path, "enforcedNamespaces"),
                    "enforcedNamespaces was removed: every namespace is now enforced, "
                    "including namespaces created later, unless excluded by name",
                    "delete enforcedNamespaces; list the namespaces that must not be enforced "
                    "(if any) under excludeNamespaces (docs/compiler.md)",
                )
            )
    return found
