"""Parents in a manifest (Schedule, OrchestrationRun, Swarm) as `approve` signs them.

A parent's runs are not approved one by one: the parent is approved for what its runs will
be, its **coverage** (:func:`approvals.parents.coverage`). For a Schedule that is the run
template (the target's spec as the schedule controller copies it, per-run fields removed),
written on the Schedule as ``gates.proompteng.ai/run-template``; for a Swarm one template
per enabled stage (``gates.proompteng.ai/run-templates``); for an OrchestrationRun the
Orchestration's AgentRun steps. The target (or the Orchestration) comes from a file
(``--target``, ``--orchestration``) or from the cluster (``--cluster``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from approvalgate.approvals.errors import ApprovalgateError, Finding, InputError, UsageError
from approvalgate.approvals.parents import SWARM_STAGES

if TYPE_CHECKING:
    from approvalgate.approvals.bundle import Bundle, Policy
    from approvalgate.approvals.parents import Coverage
    from approvalgate.compiler.sources import SourceDocument
    from approvalgate.kube.client import Client
    from approvalgate.kube.resources import Resource

STAGES = SWARM_STAGES
"""The Swarm stages that may run a target (execution.<stage>)."""


@dataclass(frozen=True)
class Parent:
    """One Schedule, OrchestrationRun or Swarm of a manifest."""

    source: SourceDocument
    kind: str
    namespace: str
    name: str
    envelopes: tuple[dict[str, Any], ...]

    @property
    def obj(self) -> dict[str, Any]:
        return self.source.obj

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def what(self) -> str:
        return f"{self.kind} {self.ref}"


def is_parent(obj: Mapping[str, Any]) -> bool:
    from approvalgate.approvals import parents

    kind = str(obj.get("kind") or "")
    group = str(obj.get("apiVersion") or "").partition("/")[0]
    return kind in parents.KINDS and parents.KINDS[kind].group == group


def read(text: str, display: str, default_namespace: str) -> list[Parent]:
    """Every parent of the manifest (none is no error: the file may hold only runs)."""
    from approvalgate import manifests
    from approvalgate.compiler.sources import load_text

    found: list[Parent] = []
    for source in load_text(text, display):
        if not is_parent(source.obj):
            continue
        meta = source.obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        if not name:
            raise source.error(
                Finding(
                    ("metadata",),
                    f"{source.kind} has no metadata.name: its approval names it",
                    "give it a name (generateName is not approvable for a parent)",
                )
            )
        found.append(
            Parent(
                source,
                source.kind,
                str(meta.get("namespace") or default_namespace),
                name,
                manifests.existing_envelopes(source, meta),
            )
        )
    return found


# --- where targets and Orchestrations come from -------------------------------------------


@dataclass
class Sources:
    """The objects a parent's coverage is computed from: ``--target`` and ``--orchestration``
    files, or the cluster (``client``, with ``--cluster``)."""

    targets: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(stage or "", object) from --target [STAGE=]FILE."""
    orchestrations: list[dict[str, Any]] = field(default_factory=list)
    client: Client | None = None
    used: set[int] = field(default_factory=set)
    """Which of ``targets`` a parent took."""
    given: int = 0
    """How many of ``targets`` came from --target files (the manifest's own follow)."""

    def unused(self) -> list[str]:
        """The --target objects no parent took (a misspelt name, a stray file)."""
        return [
            f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')}"
            for index, (_, obj) in enumerate(self.targets[: self.given])
            if index not in self.used
        ]

    @classmethod
    def of(
        cls,
        targets: Sequence[str],
        orchestrations: Sequence[Path],
        client: Client | None,
    ) -> Sources:
        from approvalgate import manifests
        from approvalgate.compiler.sources import load_text

        found: list[tuple[str, dict[str, Any]]] = []
        for text in targets:
            stage, path = split_target(text)
            objs = [
                s.obj
                for s in load_text(manifests.read_manifest(path), str(path))
                if s.kind in ("AgentRun", "OrchestrationRun")
            ]
            if not objs:
                raise InputError(
                    f"{path}: no AgentRun or OrchestrationRun in this file",
                    advice="--target takes the manifest of the object the Schedule's "
                    "spec.targetRef names",
                )
            found.extend((stage, obj) for obj in objs)
        orchs: list[dict[str, Any]] = []
        for path in orchestrations:
            objs = [
                s.obj
                for s in load_text(manifests.read_manifest(path), str(path))
                if s.kind == "Orchestration"
            ]
            if not objs:
                raise InputError(f"{path}: no Orchestration in this file")
            orchs.extend(objs)
        return cls(found, orchs, client, given=len(found))

    def add_manifest(self, objs: Iterable[Mapping[str, Any]], namespace: str) -> None:
        """The manifest's own AgentRuns, OrchestrationRuns and Orchestrations: a Schedule
        and its target may come in one file (files given with --target come first)."""
        for obj in objs:
            meta = {**(obj.get("metadata") or {})}
            meta["namespace"] = meta.get("namespace") or namespace
            placed = {**obj, "metadata": meta}
            if obj.get("kind") in ("AgentRun", "OrchestrationRun"):
                self.targets.append(("", placed))
            elif obj.get("kind") == "Orchestration":
                self.orchestrations.append(placed)

    def target(self, parent: Parent, ref: Mapping[str, Any], stage: str = "") -> dict[str, Any]:
        """The object ``ref`` (a targetRef) names, for ``parent`` (and its Swarm ``stage``)."""
        kind = str(ref.get("kind") or "")
        name = str(ref.get("name") or "")
        namespace = str(ref.get("namespace") or parent.namespace)
        where = f"{parent.what}" + (f" stage {stage}" if stage else "")
        if kind not in ("AgentRun", "OrchestrationRun") or not name:
            raise ApprovalgateError(
                f"{where}: targetRef {json.dumps(dict(ref), sort_keys=True)} names no AgentRun "
                "or OrchestrationRun: there is no run template to approve"
            )
        for index, (given_stage, obj) in enumerate(self.targets):
            if given_stage and stage and given_stage != stage:
                continue
            meta = obj.get("metadata") or {}
            if (
                obj.get("kind") == kind
                and meta.get("name") == name
                and str(meta.get("namespace") or namespace) == namespace
            ):
                self.used.add(index)
                return obj
        if self.client is not None:
            return _get(self.client, _target_resource(kind), namespace, name, f"{kind} target")
        option = f"--target {stage}=FILE" if stage else "--target FILE"
        raise UsageError(
            f"{where}: its target {kind} {namespace}/{name} is not in the manifest or the "
            "--target files",
            advice=f"give its manifest with {option}, or read it from the cluster with --cluster",
        )

    def orchestration(self, parent: Parent) -> dict[str, Any]:
        from approvalgate.approvals import parents

        name = str(((parent.obj.get("spec") or {}).get("orchestrationRef") or {}).get("name") or "")
        if not name:
            raise ApprovalgateError(f"{parent.what}: spec.orchestrationRef.name is missing")
        for obj in self.orchestrations:
            meta = obj.get("metadata") or {}
            if meta.get("name") == name and str(meta.get("namespace") or parent.namespace) == (
                parent.namespace
            ):
                return {**obj, "metadata": {**meta, "namespace": parent.namespace}}
        if self.client is not None:
            resource = _target_resource(parents.ORCHESTRATION.kind)
            return _get(self.client, resource, parent.namespace, name, "Orchestration")
        raise UsageError(
            f"{parent.what}: its Orchestration {parent.namespace}/{name} is not in the "
            "manifest or the --orchestration files",
            advice="give its manifest with --orchestration FILE, or read it from the cluster "
            "with --cluster",
        )


def split_target(text: str) -> tuple[str, Path]:
    """``STAGE=FILE`` or ``FILE`` of ``--target``."""
    stage, equals, path = text.partition("=")
    if equals and stage in STAGES:
        return stage, Path(path)
    if equals and "/" not in stage and "." not in stage:
        raise UsageError(
            f"--target {text}: {stage!r} is not a Swarm stage ({', '.join(STAGES)})",
            advice="write --target implement=run.yaml, or --target run.yaml for a Schedule",
        )
    return "", Path(text)


def _target_resource(kind: str) -> Resource:
    from approvalgate.commands._view import resources

    return resources()[kind]


def _get(
    client: Client, resource: Resource, namespace: str, name: str, what: str
) -> dict[str, Any]:
    from approvalgate.commands._cluster import platform_not_served
    from approvalgate.kube import objects
    from approvalgate.kube.errors import KubeError

    try:
        found = objects.get(client, resource, name, namespace)
    except KubeError as exc:
        raise platform_not_served(exc, resource.plural, resource.group) from exc
    if found is None:
        raise ApprovalgateError(
            f"{what} {namespace}/{name} not found in the cluster",
            advice="apply it first, or give its manifest (--target / --orchestration) "
            "instead of --cluster",
        )
    return found


# --- what a parent's approval covers ------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """A parent ready to sign: its object as it will be applied (template annotations set),
    the annotations to write, its coverage and the policies that select its templates."""

    parent: Parent
    obj: dict[str, Any]
    annotations: dict[str, str]
    coverage: Coverage
    policies: tuple[Policy, ...]
    targets: tuple[str, ...]
    """What the templates were made from, e.g. ``AgentRun agents/nightly-target``."""
    stale: bool
    """The manifest carried other templates: its records are for them."""


def as_run(parent_obj: Mapping[str, Any], namespace: str, spec: object) -> dict[str, Any]:
    """A run of ``spec`` with the labels the platform gives the parent's runs (a Schedule's
    also carry its name): how the webhook matches policies to a template."""
    from approvalgate.approvals import parents

    meta = parent_obj.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    if parent_obj.get("kind") == "Schedule":
        labels[parents.SCHEDULE_LABEL] = str(meta.get("name") or "")
    return {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "AgentRun",
        "metadata": {"name": str(meta.get("name") or ""), "namespace": namespace, "labels": labels},
        "spec": spec,
    }


def policies_for(
    bundle: Bundle | None, parent_obj: Mapping[str, Any], namespace: str, specs: Iterable[object]
) -> tuple[Policy, ...]:
    """The policies of ``bundle`` that select any of ``specs`` run under the parent."""
    if bundle is None:
        return ()
    from approvalgate.approvals.admission import request_for_manifest
    from approvalgate.approvals.decide import matching_policies

    found: dict[str, Policy] = {}
    for spec in specs:
        request = request_for_manifest(as_run(parent_obj, namespace, spec), namespace=namespace)
        for policy in matching_policies(request, bundle):
            found.setdefault(policy.ref, policy)
    return tuple(found.values())


def per_run_fields(policies: Sequence[Policy]) -> tuple[str, ...]:
    """The per-run fields of the matching policies (all of them), else the default."""
    from approvalgate.approvals import parents

    if not policies:
        return tuple(parents.DEFAULT_PER_RUN_FIELDS)
    return tuple(sorted({f for p in policies for f in p.per_run_fields}))


def prepare(
    parent: Parent, sources: Sources, bundle: Bundle | None, objects: Sequence[Mapping[str, Any]]
) -> Prepared:
    """Compute the parent's templates and coverage (``objects``: content and the like for the
    view the coverage is computed with)."""
    from approvalgate.approvals import parents
    from approvalgate.approvals.digest import canonical_json
    from approvalgate.approvals.view import StaticView

    spec = parent.obj.get("spec") or {}
    annotations: dict[str, str] = {}
    extra: list[Mapping[str, Any]] = []
    targets: list[str] = []
    old = (parent.obj.get("metadata") or {}).get("annotations") or {}
    if parent.kind == "Schedule":
        ref = spec.get("targetRef") or {}
        target = sources.target(parent, ref)
        targets.append(_what(target, parent.namespace))
        first = parents.schedule_template(target.get("spec") or {})
        policies = policies_for(bundle, parent.obj, parent.namespace, [first])
        template = parents.schedule_template(target.get("spec") or {}, per_run_fields(policies))
        annotations[parents.TEMPLATE_ANNOTATION] = canonical_json(template).decode()
    elif parent.kind == "Swarm":
        execution = spec.get("execution") or {}
        stages = [
            s
            for s in STAGES
            if isinstance(execution.get(s), Mapping)
            and execution[s].get("enabled")
            and execution[s].get("targetRef")
        ]
        unused = sorted({stage for stage, _ in sources.targets if stage} - set(stages))
        if unused:
            raise UsageError(
                f"{parent.what}: --target {unused[0]}=FILE: stage {unused[0]} is not enabled "
                f"with a targetRef (enabled: {', '.join(stages) or 'none'})"
            )
        found = {s: sources.target(parent, execution[s]["targetRef"], s) for s in stages}
        targets.extend(f"{s}: {_what(t, parent.namespace)}" for s, t in found.items())
        firsts = [parents.schedule_template(t.get("spec") or {}) for t in found.values()]
        policies = policies_for(bundle, parent.obj, parent.namespace, firsts)
        fields = per_run_fields(policies)
        templates = {
            s: parents.schedule_template(t.get("spec") or {}, fields) for s, t in found.items()
        }
        annotations[parents.TEMPLATES_ANNOTATION] = canonical_json(templates).decode()
    else:
        orchestration = sources.orchestration(parent)
        extra.append(orchestration)
        targets.append(_what(orchestration, parent.namespace))
        policies = ()
    meta = dict(parent.obj.get("metadata") or {})
    meta["namespace"] = parent.namespace
    meta["annotations"] = {**old, **annotations}
    obj = {**parent.obj, "metadata": meta}
    view = StaticView.build(objects=[*objects, *extra])
    coverage = parents.coverage(obj, view)
    if isinstance(coverage, str):
        raise ApprovalgateError(coverage)
    if parent.kind == "OrchestrationRun":  # its steps' runs are exact: no per-run fields
        policies = policies_for(bundle, parent.obj, parent.namespace, coverage.templates.values())
    stale = any(key in old and old[key] != value for key, value in annotations.items())
    return Prepared(parent, obj, annotations, coverage, policies, tuple(targets), stale)


def _what(obj: Mapping[str, Any], namespace: str) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')} {meta.get('namespace') or namespace}/{meta.get('name') or ''}"


def ttl_cap(prepared: Sequence[Prepared], decision: str) -> int | None:
    """The longest lifetime every policy selecting one of the parents allows (their
    ``parents.maxTTL``; for a bypass also the bypass's maxTTL)."""
    return policies_cap([p for item in prepared for p in item.policies], decision)


def policies_cap(policies: Sequence[Policy], decision: str) -> int | None:
    """The longest lifetime of a parent's record all ``policies`` allow."""
    caps = []
    for policy in policies:
        cap = policy.parent_max_ttl_seconds
        if decision == "bypass":
            cap = min(cap, policy.bypass.max_ttl_seconds if policy.bypass else 0)
        caps.append(cap)
    return min(caps) if caps else None


def stamp(text: str, edits: Mapping[int, Mapping[str, str]]) -> str:
    """``text`` with the annotations ``edits[document index]`` set; every other document
    byte for byte."""
    from approvalgate.approvals.kubeyaml import split_documents
    from approvalgate.editing import set_annotation

    out = []
    for index, chunk in enumerate(split_documents(text)):
        edited = chunk
        for key, value in (edits.get(index) or {}).items():
            edited = set_annotation(edited, key, value)
        out.append(edited)
    return "".join(out)


# --- judging a parent as the webhook does (explain, status) -------------------------------


def _placed(parent: Parent) -> dict[str, Any]:
    meta = dict(parent.obj.get("metadata") or {})
    meta["namespace"] = parent.namespace
    return {**parent.obj, "metadata": meta}


def coverage_of(parent: Parent, view: Any, bundle: Bundle | None) -> Coverage | str:
    """The parent's coverage as the webhook computes it (its templates from its annotations,
    an Orchestration from ``view``); a str says what is missing."""
    from approvalgate.approvals import parents

    return parents.coverage(_placed(parent), view)


def policies_of(parent: Parent, view: Any, bundle: Bundle | None) -> tuple[Policy, ...]:
    """The policies that select any of the parent's run templates."""
    found = coverage_of(parent, view, bundle)
    if isinstance(found, str):
        return ()
    return policies_for(bundle, parent.obj, parent.namespace, found.templates.values())


def request_for(parent: Parent, username: str = "", operation: str = "CREATE") -> dict[str, Any]:
    """The AdmissionReview request kube-apiserver would send for this parent."""
    from approvalgate.approvals import parents
    from approvalgate.approvals.admission import request_for_manifest

    kind = parents.KINDS[parent.kind]
    request = dict(
        request_for_manifest(
            _placed(parent),
            operation=operation,  # type: ignore[arg-type]
            username=username,
            namespace=parent.namespace,
        )
    )
    request["resource"] = {"group": kind.group, "version": kind.version, "resource": kind.resource}
    return request
