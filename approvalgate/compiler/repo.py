"""A policy repository: its config and every spec document, validated all at once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from approvalgate.approvals.digest import spec_digest
from approvalgate.approvals.errors import ApprovalgateError, Finding, ValidationError
from approvalgate.approvals.policy import compile_bundle
from approvalgate.approvals.structural import check_against_crd, load_agentrun_crd
from approvalgate.compiler.config import Environment, RepoConfig, load_config
from approvalgate.compiler.egress import validate_egress
from approvalgate.compiler.egress.validation import check_merged
from approvalgate.compiler.sources import SourceDocument, load_sources

KINDS = ("ApprovalPolicy", "Approver", "EgressPolicy", "AgentRun")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass
class Repo:
    config: RepoConfig
    documents: list[SourceDocument]
    warnings: list[ApprovalgateError] = field(default_factory=list)
    # What load_repo computed while validating, per environment name, so that rendering
    # does not do it again: the compiled bundle, and whether the EgressPolicies passed.
    bundles: dict[str, dict[str, Any]] = field(default_factory=dict)
    egress_valid: set[str] = field(default_factory=set)
    egress_models: list[Any] | None = None  # parse_egress() of the EgressPolicies, once

    def of_kind(self, *kinds: str) -> list[SourceDocument]:
        return [d for d in self.documents if d.kind in kinds]


def load_repo(root: Path) -> Repo:
    """Load approvalgate.yaml and every document of the source folders; validate them
    for every environment. Raises one :class:`ValidationError` holding every error."""
    config = load_config(root)
    folders = [root / s for s in config.sources if (root / s).exists()]
    documents = load_sources(folders, base=root) if folders else []
    repo = Repo(config, documents)
    # A finding is reported once; tagged with its environments unless it holds in all.
    found: dict[str, tuple[ApprovalgateError, str, list[str]]] = {}

    def report(source: SourceDocument, finding: Finding, env: Environment | None) -> None:
        located = source.error(finding)
        entry = found.setdefault(located.render(), (located, finding.severity, []))
        if env is not None:
            entry[2].append(env.name)

    for source in documents:
        for finding in _document_findings(source):
            report(source, finding, None)
    for source, finding in _defined_twice(repo.of_kind("EgressPolicy", "AgentRun")):
        report(source, finding, None)
    policy_docs = repo.of_kind("ApprovalPolicy", "Approver")
    egress_docs = repo.of_kind("EgressPolicy")
    for env in config.environments:
        bundle, problems = compile_bundle([d.obj for d in policy_docs], env.bundle)
        for problem in problems:
            report(policy_docs[problem.doc], problem.finding, env)
        if bundle is not None:
            repo.bundles[env.name] = bundle
        egress_errors = 0
        for source in egress_docs:
            for finding in validate_egress(source.obj, env.egress):
                report(source, finding, env)
                egress_errors += finding.severity == "error"
        if not egress_errors:
            for n, finding in check_merged([s.obj for s in egress_docs], env.egress):
                report(egress_docs[n], finding, env)
                egress_errors += 1
        if not egress_errors:
            repo.egress_valid.add(env.name)
    errors: list[ApprovalgateError] = []
    for located, severity, envs in found.values():
        if envs and len(envs) < len(config.environments):
            located.message = f"[{', '.join(envs)}] {located.message}"
        (repo.warnings if severity == "warning" else errors).append(located)
    if errors:
        raise ValidationError(errors)
    return repo


def _document_findings(source: SourceDocument) -> list[Finding]:
    kind = source.kind
    if kind not in KINDS:
        return [
            Finding(
                ("kind",),
                f"approvalgate does not read kind {kind or '(none)'!r}",
                f"source folders hold {', '.join(KINDS)}; move other files elsewhere",
            )
        ]
    name = source.name
    if not _NAME.match(name) or len(name) > 253:
        return [
            Finding(
                ("metadata", "name"),
                f"name {name!r} is not a Kubernetes object name",
                "lowercase letters, digits, '-' and '.'",
            )
        ]
    namespace = (source.obj.get("metadata") or {}).get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not _NAME.match(namespace)):
        return [Finding(("metadata", "namespace"), f"namespace {namespace!r} is not valid")]
    if kind != "AgentRun":
        return []
    findings = [
        Finding(p.path, p.message) for p in check_against_crd(source.obj, load_agentrun_crd())
    ]
    try:
        spec_digest(source.obj.get("spec"))
    except ApprovalgateError as exc:
        findings.append(Finding(("spec",), exc.message, exc.advice))
    return findings


def _defined_twice(documents: list[SourceDocument]) -> list[tuple[SourceDocument, Finding]]:
    """A second EgressPolicy or AgentRun of one name: rendered to one file, so one of them
    silently gave way (or kustomize failed on the pair), whichever a reviewer read."""
    first: dict[tuple[str, str, str], SourceDocument] = {}
    out = []
    for source in documents:
        namespace = (source.obj.get("metadata") or {}).get("namespace") or ""
        key = (source.kind, str(namespace), source.name)
        if key in first:
            where = first[key].location(("metadata", "name"))
            shown = f"{namespace}/{source.name}" if namespace else source.name
            out.append(
                (
                    source,
                    Finding(
                        ("metadata", "name"),
                        f"{source.kind} {shown} is defined twice (first at {where.file}:"
                        f"{where.line}:{where.column})",
                        "give each its own name, or delete one",
                    ),
                )
            )
        else:
            first[key] = source
    return out
