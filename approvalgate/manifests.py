"""AgentRun manifests on disk, as the CLI's approve, verify and explain read them."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from approvalgate.approvals import records
from approvalgate.approvals.digest import spec_digest
from approvalgate.approvals.errors import (
    ApprovalgateError,
    Finding,
    InputError,
    UsageError,
    ValidationError,
)
from approvalgate.approvals.structural import check_against_crd, load_agentrun_crd
from approvalgate.compiler.sources import SourceDocument, load_text, read_text

if TYPE_CHECKING:
    from approvalgate.approvals.admission import Operation
    from approvalgate.approvals.bundle import Bundle

AGENTRUN_API_GROUP = "agents.proompteng.ai"


@dataclass(frozen=True)
class Run:
    """One AgentRun of a manifest, with what approvals bind to."""

    source: SourceDocument
    namespace: str
    name: str
    generate_name: str
    digest: str
    envelopes: tuple[dict[str, Any], ...]

    @property
    def obj(self) -> dict[str, Any]:
        return self.source.obj

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name or self.generate_name + '*'}"

    @property
    def subject(self) -> str:
        return records.subject_name(self.namespace, self.name, self.generate_name)


def parse_now(text: str | None) -> datetime:
    if not text:
        return records.now_utc()
    try:
        return records.parse_time(text)
    except ValueError as exc:
        raise UsageError(f"--now: {exc}", advice="write it like 2026-11-21T10:00:00Z") from exc


def seconds(count: int) -> timedelta:
    return timedelta(seconds=count)


def read_manifest(path: Path) -> str:
    if str(path) == "-":
        import sys

        return sys.stdin.read()
    return read_text(path)


def read_key(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read key: {exc.strerror or exc}") from exc


def is_agent_run(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == "AgentRun" and str(obj.get("apiVersion", "")).startswith(
        AGENTRUN_API_GROUP + "/"
    )


def agent_runs(text: str, display: str, default_namespace: str) -> list[Run]:
    """Every AgentRun of the manifest, checked against the AgentRun CRD, with its digest."""
    runs: list[Run] = []
    errors: list[ApprovalgateError] = []
    schema = load_agentrun_crd()
    for source in load_text(text, display):
        if not is_agent_run(source.obj):
            continue
        for problem in check_against_crd(source.obj, schema):
            errors.append(source.error(Finding(problem.path, problem.message, _PRUNE_ADVICE)))
        meta = source.obj.get("metadata") or {}
        name, generate = str(meta.get("name") or ""), str(meta.get("generateName") or "")
        if not name and not generate:
            errors.append(
                source.error(Finding(("metadata",), "AgentRun has neither name nor generateName"))
            )
            continue
        try:
            digest = spec_digest(source.obj.get("spec"))
        except ApprovalgateError as exc:
            errors.append(source.error(Finding(("spec",), exc.message, exc.advice)))
            continue
        envelopes = existing_envelopes(source, meta)
        runs.append(
            Run(
                source,
                str(meta.get("namespace") or default_namespace),
                name,
                generate,
                digest,
                envelopes,
            )
        )
    if errors:
        raise ValidationError(errors)
    if not runs:
        raise InputError(f"{display}: no AgentRun (agents.proompteng.ai) in this file")
    return runs


_PRUNE_ADVICE = (
    "the API server would drop or reject this, so an approval of it could never "
    "match: fix the field (see the AgentRun CRD)"
)


def existing_envelopes(source: SourceDocument, meta: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    value = (meta.get("annotations") or {}).get(records.ANNOTATION)
    if value is None:
        return ()
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses
        parsed = None
    if not isinstance(parsed, list) or not all(isinstance(e, dict) for e in parsed):
        raise source.error(
            Finding(
                ("metadata", "annotations", records.ANNOTATION),
                "existing approvals annotation is not a JSON array of envelopes",
                "remove it and approve again",
            )
        )
    return tuple(parsed)


def stamp(
    text: str,
    runs: Sequence[Run],
    annotate: Callable[[Run], str],
    finalizer: Callable[[Run], str] = lambda run: "",
) -> str:
    """``text`` with each run's document re-annotated; all other documents byte for byte.

    A run whose document has only ``generateName`` but which has a ``name`` now (given by
    ``approve``) gets that name written; ``finalizer(run)``, when not empty, is added to its
    ``metadata.finalizers``."""
    from approvalgate.approvals.kubeyaml import split_documents
    from approvalgate.editing import set_annotation  # ruamel.yaml: not on verify's path

    documents = {run.source.document.index: run for run in runs}
    out = []
    for index, chunk in enumerate(split_documents(text)):
        run = documents.get(index)
        if run is None:
            out.append(chunk)
            continue
        named = run.name if run.name and not (run.obj.get("metadata") or {}).get("name") else ""
        out.append(
            set_annotation(
                chunk, records.ANNOTATION, annotate(run), name=named, finalizer=finalizer(run)
            )
        )
    return "".join(out)


def ttl_cap(bundle: Bundle, runs: Sequence[Run], decision: str) -> int | None:
    """The longest TTL every policy of ``bundle`` matching one of ``runs`` allows for
    ``decision``."""
    from approvalgate.approvals.decide import matching_policies

    caps = []
    for run in runs:
        for policy in matching_policies(request_for(run), bundle):
            if decision == "bypass":
                caps.append(policy.bypass.max_ttl_seconds if policy.bypass else 0)
            else:
                caps.append(policy.timeout_seconds)
    return min(caps) if caps else None


def request_for(
    run: Run,
    operation: Operation = "CREATE",
    username: str = "",
    groups: Sequence[str] = (),
    old: Run | None = None,
) -> dict[str, Any]:
    """The AdmissionReview request kube-apiserver would send for this run."""
    from approvalgate.approvals.admission import request_for_manifest

    return dict(
        request_for_manifest(
            run.obj,
            operation=operation,
            username=username,
            groups=groups,
            old=old.obj if old else None,
            namespace=run.namespace,
        )
    )
