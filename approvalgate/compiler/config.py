"""approvalgate.yaml: environments, their settings, sources, output and targets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from approvalgate.approvals.errors import ApprovalgateError, Finding, InputError, ValidationError
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
class Environment:
    name: str
    namespace: str
    bundle: BundleSettings
    egress: EgressEnv
    targets: tuple[Target, ...]


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
    documents = load_text(read_text(path, CONFIG_FILE), CONFIG_FILE)
    if len(documents) != 1:
        raise InputError(f"{CONFIG_FILE} must hold exactly one document")
    source = documents[0]
    findings = schema_findings("config.schema.json", source.obj)
    if findings:
        raise ValidationError([source.error(f) for f in findings])
    obj = source.obj
    defaults: Mapping[str, Any] = obj.get("defaults", {})
    environments = []
    errors: list[ApprovalgateError] = []
    for name in sorted(obj["environments"]):
        raw = obj["environments"][name] or {}
        try:
            environments.append(_environment(name, defaults, raw))
        except ApprovalgateError as exc:
            errors.append(source.error(Finding(("environments", name), exc.message, exc.advice)))
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


def _environment(name: str, defaults: Mapping[str, Any], raw: Mapping[str, Any]) -> Environment:
    merged = {**defaults, **{k: v for k, v in raw.items() if k != "targets"}}
    egress = {**defaults.get("egress", {}), **raw.get("egress", {})}
    namespace = merged.get("namespace", DEFAULT_NAMESPACE)
    egress.setdefault("namespace", namespace)
    bundle = BundleSettings(
        environment=name,
        enforced_namespaces=tuple(merged.get("enforcedNamespaces", [namespace])),
        enforcement=merged.get("enforcement", "enforce"),
        no_match=merged.get("noMatch", "deny"),
        clock_skew_seconds=merged.get("clockSkewSeconds", 60),
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
    return Environment(name, namespace, bundle, egress_env, targets)
