"""What `approve` binds besides the run: the ImplementationSpecs and Agent it references, and
the AgentProvider that Agent names (the runner it executes).

Where the bundle's ``referencedContent`` binds (approvalgate.yaml's default, in environments
with ``clusterView: required``), an approval counts only if it names the sha256 of every
referenced object's spec as the cluster has it (:mod:`approvals.content`). The approver
gives those objects with ``--content FILE`` (manifests, several documents allowed) or reads
them from the cluster with ``--cluster`` (which follows each Agent's ``spec.providerRef`` to
its AgentProvider); the ImplementationSpec's text is shown on stderr so the approver sees
what they sign.

Objects come in as plain dicts and go out as a :class:`approvals.view.StaticView`, the view
``content.binding`` and ``parents.coverage`` read.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from approvalgate.approvals.errors import ApprovalgateError, InputError

if TYPE_CHECKING:
    from approvalgate.approvals.bundle import Bundle
    from approvalgate.kube.client import Client

PREVIEW_LINES = 8
"""How many lines of an ImplementationSpec's text approve shows."""

CONTENT_GROUP = "agents.proompteng.ai"


def binds(bundle: Bundle | None, assumed: bool) -> bool:
    """Whether a record binds the referenced content: the bundle says so (its
    ``referencedContent: bind`` where the cluster view is required), or, without a compiled
    bundle, approvalgate.yaml's default (bind) is assumed (then what is given is bound, and
    stderr says when nothing is)."""
    if assumed or bundle is None:
        return True
    return bundle.binds_content


def read_files(paths: Sequence[Path], namespace: str) -> list[dict[str, Any]]:
    """The ImplementationSpecs, Agents and AgentProviders of ``paths`` (``namespace`` where
    they name none).

    Raises:
        InputError: a file holds neither kind.
    """
    from approvalgate import manifests
    from approvalgate.compiler.sources import load_text

    found: list[dict[str, Any]] = []
    for path in paths:
        text = manifests.read_manifest(path)
        objs = of_documents((s.obj for s in load_text(text, str(path))), namespace)
        if not objs:
            raise InputError(
                f"{path}: no ImplementationSpec, Agent or AgentProvider ({CONTENT_GROUP}) in "
                "this file",
                advice="--content takes the manifests of the objects the runs reference",
            )
        found.extend(objs)
    return found


def of_documents(objs: Iterable[Mapping[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """The ImplementationSpecs, Agents and AgentProviders among ``objs`` (a manifest's other
    documents)."""
    from approvalgate.approvals import content

    return [
        with_namespace(obj, namespace)
        for obj in objs
        if obj.get("kind") in content.KINDS and _group(obj) == CONTENT_GROUP
    ]


def with_namespace(obj: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """``obj`` with ``metadata.namespace`` set to ``namespace`` when it names none."""
    meta = dict(obj.get("metadata") or {})
    if not meta.get("namespace"):
        meta["namespace"] = namespace
    return {**obj, "metadata": meta}


def _group(obj: Mapping[str, Any]) -> str:
    return str(obj.get("apiVersion") or "").partition("/")[0]


def read_cluster(
    client: Client,
    wanted: Iterable[tuple[str, str]],
    given: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The objects ``(namespace, "Kind/name")`` as the API server has them (absent ones
    left out: :func:`bind` names them), and the AgentProvider each Agent names (the Agent
    read here, or given in ``given``, which win: a provider given there is not read)."""
    from approvalgate.approvals import content

    found = _read(client, wanted)
    have = {(_namespace(obj), _key(obj)) for obj in given}
    agents = {(_namespace(obj), _key(obj)): obj for obj in [*found, *given]}
    providers = {
        (namespace, content.key(content.PROVIDER, content.provider_name(obj)))
        for (namespace, key), obj in agents.items()
        if key.startswith(content.AGENT + "/") and content.provider_name(obj)
    }
    return [*found, *_read(client, providers - have)]


READ_ADVICE = (
    "you need get on implementationspecs, agents and agentproviders ({group}) in namespace "
    "{namespace} to read what you sign: ask an admin to bind the chart's approver ClusterRole "
    "to you (docs/queue.md, RBAC to grant; kubectl auth can-i get agentproviders -n "
    "{namespace} says whether you may)"
)


@dataclass(frozen=True)
class Read:
    """One object a run references (or the AgentProvider its Agent names), as read."""

    kind: str
    name: str
    obj: dict[str, Any] | None
    """The object (``kind`` set), None when it does not exist or could not be read."""
    error: ApprovalgateError | None
    """Why it could not be read (a refusal: HTTP 403; another failure), None when read or
    absent."""


@dataclass(frozen=True)
class Reading:
    """What a request's run references, read once, in one way, wherever it is shown or
    signed (the console's page, ``status``, ``file_decision``): the pin computed from it is
    the same everywhere."""

    read: tuple[Read, ...]
    invalid: ApprovalgateError | None = None
    """The run names objects the platform would not read (nothing was read)."""

    @property
    def objects(self) -> list[dict[str, Any]]:
        """The objects read (absent and unreadable ones left out): what the pin covers."""
        return [r.obj for r in self.read if r.obj is not None]

    @property
    def unread(self) -> ApprovalgateError | None:
        """Why some of the content could not be read (the first such error), None when all
        that exists was read."""
        return next(iter(self.unread_all), None)

    @property
    def unread_all(self) -> tuple[ApprovalgateError, ...]:
        """Why each object that could not be read was not (in reading order), or why nothing
        was read: what ``status`` lists, as the console's page lists each."""
        if self.invalid is not None:
            return (self.invalid,)
        return tuple(r.error for r in self.read if r.error is not None)


def read_run(client: Client, namespace: str, run_spec: object) -> Reading:
    """The ImplementationSpecs and Agent run spec ``run_spec`` references in ``namespace``,
    and the AgentProvider each Agent read names, as the API server has them now (with the
    user's credentials). An object that cannot be read is said in its place and the others
    are still read: the page shows them, and the pin covers exactly what was read, here as
    where the approval is signed (which refuses to sign, before comparing any pin, where the
    content it binds could not be read)."""
    from approvalgate.approvals import content
    from approvalgate.kube import objects
    from approvalgate.kube.errors import KubeError
    from approvalgate.kube.view import OBJECT_RESOURCES

    try:
        refs = list(content.refs(run_spec))
    except ApprovalgateError as exc:
        return Reading((), exc)
    found: list[Read] = []
    for key in refs:  # grows by the provider of each Agent read
        kind, _, name = key.partition("/")
        where = OBJECT_RESOURCES[kind]
        try:
            obj = objects.get(client, where, name, namespace)
        except KubeError as exc:
            found.append(Read(kind, name, None, _unreadable(exc, kind, namespace, name)))
            continue
        if obj is None:
            found.append(Read(kind, name, None, None))
            continue
        obj = {**obj, "kind": kind}
        found.append(Read(kind, name, obj, None))
        provider = content.provider_name(obj) if kind == content.AGENT else ""
        if provider and content.key(content.PROVIDER, provider) not in refs:
            refs.append(content.key(content.PROVIDER, provider))
    return Reading(tuple(found))


def _unreadable(exc: Any, kind: str, namespace: str, name: str) -> ApprovalgateError:
    """The error for ``kind namespace/name`` that could not be read: a refusal said as one
    (HTTP 403, with the permission needed), else the API server's error."""
    from approvalgate.commands._cluster import platform_not_served
    from approvalgate.kube.errors import KubeError
    from approvalgate.kube.view import OBJECT_RESOURCES

    if getattr(exc, "status", None) == 403:
        return KubeError(
            f"you may not read {kind} {namespace}/{name} (HTTP 403): {exc.message}",
            status=403,
            advice=READ_ADVICE.format(group=CONTENT_GROUP, namespace=namespace),
        )
    where = OBJECT_RESOURCES[kind]
    return platform_not_served(exc, where.plural, where.group)


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def _key(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name') or ''}"


def _read(client: Client, wanted: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    from approvalgate.commands._cluster import platform_not_served
    from approvalgate.kube import objects
    from approvalgate.kube.errors import KubeError
    from approvalgate.kube.view import OBJECT_RESOURCES

    found: list[dict[str, Any]] = []
    for namespace, key in sorted(set(wanted)):
        kind, _, name = key.partition("/")
        where = OBJECT_RESOURCES[kind]
        try:
            obj = objects.get(client, where, name, namespace)
        except KubeError as exc:
            raise platform_not_served(exc, where.plural, where.group) from exc
        if obj is not None:
            found.append({**obj, "kind": kind})
    return found


def bind(
    refs: Sequence[str],
    namespace: str,
    view: Any,
    what: str,
    source: str,
    advice: str = "give the object's manifest with --content FILE, or read it from the "
    "cluster with --cluster (it must exist there first)",
) -> dict[str, str]:
    """What the record binds for ``what`` (e.g. ``AgentRun agents/x``): every referenced
    object's digest and that of the AgentProvider its Agent names; an error naming the
    objects ``source`` does not hold, an Agent naming no provider, or one taking its system
    prompt from a ConfigMap or Secret.

    ``source`` says where the objects were looked for (``--content a.yaml``, ``the cluster``).
    """
    from approvalgate.approvals import content

    bound = content.binding(refs, namespace, view)
    missing = [key for key in content.required(refs, namespace, view) if key not in bound]
    unnamed = [
        key
        for key in refs
        if content.split(key)[0] == content.AGENT
        and view.provider(namespace, content.split(key)[1]) == ""
    ]
    if unnamed:
        names = ", ".join(name_of(k, namespace) for k in unnamed)
        raise ApprovalgateError(
            f"{what} executes {names}, which names no AgentProvider (spec.providerRef.name) "
            f"in {source}: the approval must bind the runner the run executes "
            "(referencedContent: bind), so nothing was signed",
            advice="set the Agent's spec.providerRef.name to an AgentProvider in its namespace",
        )
    prompted = [
        (key, view.prompt_source(namespace, content.split(key)[1]))
        for key in refs
        if content.split(key)[0] == content.AGENT
    ]
    if any(held for _, held in prompted):
        names = ", ".join(
            f"{name_of(k, namespace)} (from {name_of(held, namespace)})"
            for k, held in prompted
            if held
        )
        raise ApprovalgateError(
            f"{what} executes {names}, which takes its system prompt from a ConfigMap or "
            f"Secret (spec.defaults.systemPromptRef) in {source}: approvals cannot bind it "
            "(referencedContent: bind), so nothing was signed",
            advice="put the prompt in the Agent's spec.defaults.systemPrompt",
        )
    if missing:
        names = ", ".join(_named(k, refs, namespace, view) for k in missing)
        raise ApprovalgateError(
            f"{what} references {names}, not found in {source}: the approval must bind the "
            "content it runs (referencedContent: bind), so nothing was signed",
            advice=advice,
        )
    return dict(bound)


def _named(key: str, refs: Sequence[str], namespace: str, view: Any) -> str:
    """``Kind namespace/name``; for an AgentProvider the run does not name itself, which
    Agent names it."""
    from approvalgate.approvals import content

    if key in refs or content.split(key)[0] != content.PROVIDER:
        return name_of(key, namespace)
    provider = content.split(key)[1]
    agents = [
        name_of(ref, namespace)
        for ref in refs
        if content.split(ref)[0] == content.AGENT
        and view.provider(namespace, content.split(ref)[1]) == provider
    ]
    return f"{name_of(key, namespace)} (the provider {', '.join(agents)} names)"


def binding_of(refs: Sequence[str], namespace: str, view: Any) -> dict[str, str]:
    """The digests of those of ``refs`` (and their Agents' AgentProviders) the view holds
    (absent ones left out)."""
    from approvalgate.approvals import content

    return dict(content.binding(refs, namespace, view))


def name_of(key: str, namespace: str) -> str:
    """``Kind/name`` as ``Kind namespace/name``."""
    kind, _, name = key.partition("/")
    return f"{kind} {namespace}/{name}"


def unbound_note(refs: Sequence[str], namespace: str, what: str, environment: str) -> str:
    """What stderr says when content is not bound and the environment's setting is assumed
    (no compiled bundle): the record binds none of it."""
    names = ", ".join(name_of(k, namespace) for k in refs)
    return (
        f"note: {what} references {names}: not bound (no --content or --cluster); where the "
        "environment binds referenced content (referencedContent: bind, approvalgate.yaml's "
        "default) this record will not count: approve with --content FILE or --cluster, or "
        f"with --bundle rendered/{environment}/bundle.json to use its setting"
    )


def missing_source(refs: Sequence[str], namespace: str, what: str) -> ApprovalgateError:
    """The error when content must be bound but neither --content nor --cluster was given."""
    names = ", ".join(name_of(k, namespace) for k in refs)
    return ApprovalgateError(
        f"{what} references {names}: an approval must bind that content "
        "(referencedContent: bind), so nothing was signed",
        advice="give the objects' manifests with --content FILE (ImplementationSpec, Agent "
        "and the AgentProvider it names), "
        "or read them from the cluster with --cluster; an environment with "
        "referencedContent: off needs neither (pass its --bundle)",
    )


def show(bound: Mapping[str, str], namespace: str, objects: Sequence[Mapping[str, Any]]) -> None:
    """Say on stderr what the record binds: each object's digest, and the first lines of
    each ImplementationSpec's text (found among ``objects``), so the approver sees what they
    sign."""
    for key, digest in sorted(bound.items()):
        kind, _, name = key.partition("/")
        print(f"  binds {kind} {namespace}/{name} spec sha256:{digest}", file=sys.stderr)
        if kind != "ImplementationSpec":
            continue
        for line in preview(find(objects, kind, namespace, name)):
            print(f"    | {line}", file=sys.stderr)


def find(
    objects: Sequence[Mapping[str, Any]], kind: str, namespace: str, name: str
) -> Mapping[str, Any] | None:
    """The last of ``objects`` that is ``kind namespace/name`` (the one the view holds)."""
    for obj in reversed(objects):
        meta = obj.get("metadata") or {}
        if obj.get("kind") == kind and (meta.get("namespace"), meta.get("name")) == (
            namespace,
            name,
        ):
            found: Mapping[str, Any] = obj
            return found
    return None


def preview(obj: Mapping[str, Any] | None, limit: int = PREVIEW_LINES) -> list[str]:
    """The first ``limit`` lines of an ImplementationSpec's summary and text (and how many
    more there are)."""
    from approvalgate.approvals.hidden_text import escaped

    if obj is None:
        return []
    spec = obj.get("spec") or {}
    lines: list[str] = []
    summary = spec.get("summary")
    if isinstance(summary, str) and summary.strip():
        lines.append(f"summary: {escaped(summary.strip())}")
    text = spec.get("text")
    body = escaped(text).splitlines() if isinstance(text, str) else []
    lines.extend(body)
    if len(lines) > limit:
        rest = len(lines) - limit
        return [*lines[:limit], f"... ({rest} more line{'s' if rest != 1 else ''})"]
    return lines
