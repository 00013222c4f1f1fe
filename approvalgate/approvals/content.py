"""The content a run executes but does not carry: its ImplementationSpecs, its Agent and
the Agent's AgentProvider.

An AgentRun names its ImplementationSpec (the task text, ``spec.text``) and its Agent; the
Agent names its AgentProvider (``spec.providerRef.name``: the runner image, binary, args and
env). The platform's controller reads them by name when the run (or a workflow step)
starts. An approval of the run alone would let anyone who may edit those objects change
what the approved run executes (security class 19). So, where the bundle binds referenced
content (``referencedContent: bind``, with the cluster view required):

- a record counts only if it binds the digest of every object the run executes, as the
  approver saw it (the predicate's ``references``), and the cluster view holds that same
  content now (:func:`problems`). What the run executes (:func:`required`) is what its spec
  names (:func:`refs`) plus the AgentProvider its Agent names *as the view holds the Agent
  now*: a record made before the Agent moved to another provider does not bind the new one,
  and an Agent naming no provider (or one the view does not hold) admits no run;
- a write to an ImplementationSpec, Agent or AgentProvider is denied while a recorded use of
  an approval binds that object to other content (decide() with
  :meth:`ClusterView.content_uses`).

Keys name objects in the run's namespace: ``"ImplementationSpec/task-a"``, ``"Agent/codex"``,
``"AgentProvider/codex-runner"``. The digest is sha256 of the RFC 8785 JSON of the object's
``spec``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from approvalgate.approvals import references as refs_module
from approvalgate.approvals.digest import canonical_json
from approvalgate.approvals.errors import DigestError

if TYPE_CHECKING:
    from approvalgate.approvals.view import ClusterView

GROUP: Final = "agents.proompteng.ai"
AGENT: Final = "Agent"
PROVIDER: Final = "AgentProvider"
KINDS: Final = ("ImplementationSpec", AGENT, PROVIDER)
RESOURCES: Final = {
    "implementationspecs": "ImplementationSpec",
    "agents": AGENT,
    "agentproviders": PROVIDER,
}


def key(kind: str, name: str) -> str:
    """``"ImplementationSpec/task-a"``: how records and uses name a referenced object."""
    return f"{kind}/{name}"


def split(ref: str) -> tuple[str, str]:
    """``("ImplementationSpec", "task-a")`` of a key."""
    kind, _, name = ref.partition("/")
    return kind, name


def refs(spec: object) -> tuple[str, ...]:
    """Keys of the objects a run spec names: its Agent and every ImplementationSpec (top
    level and each workflow step), sorted, each once (:func:`required` adds the Agent's
    AgentProvider, which the spec does not name)."""
    found: set[str] = set()
    for ref in refs_module.references(spec):
        if not isinstance(ref.value, str) or not ref.value:
            continue
        if ref.path in {"spec.agentRef.name", "spec.agentRef"}:
            found.add(key(AGENT, ref.value))
        elif ref.path.endswith("implementationSpecRef.name") or ref.path.endswith(
            "implementationSpecRef"
        ):
            found.add(key("ImplementationSpec", ref.value))
    return tuple(sorted(found))


def refs_of_all(specs: Iterable[object]) -> tuple[str, ...]:
    """:func:`refs` of several run specs (a parent's templates), merged."""
    return tuple(sorted({r for spec in specs for r in refs(spec)}))


def provider_name(obj: Mapping[str, Any]) -> str:
    """The AgentProvider an Agent object names (``spec.providerRef.name``), "" when none."""
    spec = obj.get("spec")
    ref = spec.get("providerRef") if isinstance(spec, Mapping) else None
    name = ref.get("name") if isinstance(ref, Mapping) else None
    return name if isinstance(name, str) else ""


def prompt_ref(obj: Mapping[str, Any]) -> str:
    """``"ConfigMap/<name>"`` or ``"Secret/<name>"``: the object an Agent takes its system
    prompt from (``spec.defaults.systemPromptRef``), "" when it names none.

    The platform tells every run of the Agent that prompt, mounted from that object when the
    run starts; approvals cannot bind it (the gate does not read ConfigMaps or Secrets), so
    :func:`problems` admits no run of such an Agent. Any ref counts, whatever its kind or
    name says (upstream rejects an invalid one; the gate never guesses which is read)."""
    spec = obj.get("spec")
    defaults = spec.get("defaults") if isinstance(spec, Mapping) else None
    ref = defaults.get("systemPromptRef") if isinstance(defaults, Mapping) else None
    if ref is None:
        return ""
    kind = ref.get("kind") if isinstance(ref, Mapping) else None
    name = ref.get("name") if isinstance(ref, Mapping) else None
    return key(
        kind if isinstance(kind, str) and kind else "ConfigMap or Secret",
        name if isinstance(name, str) else "",
    )


def required(wanted: Iterable[str], namespace: str, view: ClusterView) -> tuple[str, ...]:
    """``wanted`` (a run's :func:`refs`) and, for each Agent among them, the AgentProvider
    it names as the view holds the Agent now: the keys a record must bind, sorted."""
    found = set(wanted)
    for ref in list(found):
        kind, name = split(ref)
        provider = view.provider(namespace, name) if kind == AGENT else None
        if provider:
            found.add(key(PROVIDER, provider))
    return tuple(sorted(found))


def digest(obj: Mapping[str, Any]) -> str:
    """sha256 (hex) of the RFC 8785 JSON of the object's ``spec`` (``{}`` when it has none).

    Content that cannot be digested (a number beyond 2^53) digests as its error text's
    hash, which no approver can have signed: such content never matches a binding.
    """
    spec = obj.get("spec")
    try:
        data = canonical_json({} if spec is None else spec, ("spec",))
    except DigestError as exc:
        data = f"undigestable: {exc.message}".encode()
    except RecursionError:  # deeper than kube.client.allow_api_server_depth allows for
        data = b"undigestable: nested too deeply"
    return hashlib.sha256(data).hexdigest()


def binding(wanted: Iterable[str], namespace: str, view: ClusterView) -> dict[str, str]:
    """What an approver signs now: key -> current digest, for each wanted object the view
    holds (absent objects are left out; :func:`problems` then names them)."""
    bound: dict[str, str] = {}
    for ref in required(wanted, namespace, view):
        kind, name = split(ref)
        current = view.content(kind, namespace, name)
        if current is not None:
            bound[ref] = current
    return bound


def problems(
    signed: Mapping[str, str], wanted: Iterable[str], namespace: str, view: ClusterView
) -> list[str]:
    """Why a record binding ``signed`` does not cover the content the run executes now
    (empty when every object :func:`required` names is bound to its current content).

    Fail closed on the AgentProvider: an Agent the view holds that names none, or names one
    the view does not hold, leaves the runner unbound, and no record counts; and on the
    system prompt: an Agent taking it from a ConfigMap or Secret (:func:`prompt_ref`) leaves
    what its runs are told unbound, and no record counts."""
    wanted = tuple(wanted)
    found: list[str] = []
    named_by: dict[str, str] = {}
    for ref in sorted(set(wanted)):
        kind, name = split(ref)
        provider = view.provider(namespace, name) if kind == AGENT else None
        prompt = view.prompt_source(namespace, name) if kind == AGENT else ""
        if prompt:
            source, _, held_in = prompt.partition("/")
            found.append(
                f"Agent {namespace}/{name} takes its system prompt from {source} "
                f"{namespace}/{held_in} (spec.defaults.systemPromptRef), which approvals "
                "cannot bind: whoever may edit it would change what every approved run is "
                "told. Put the prompt in the Agent's spec.defaults.systemPrompt (bound with "
                "the Agent) and approve again"
            )
        if provider == "":
            found.append(
                f"Agent {namespace}/{name} names no AgentProvider (spec.providerRef.name): "
                "the runner it executes cannot be bound, so no approval counts for its runs"
            )
        elif provider:
            named_by.setdefault(key(PROVIDER, provider), name)
    for ref in sorted({*wanted, *named_by}):  # what required() gives, without asking again
        kind, name = split(ref)
        current = view.content(kind, namespace, name)
        if current is None and ref in named_by and ref not in wanted:
            found.append(
                f"AgentProvider {namespace}/{name} (the provider Agent {namespace}/"
                f"{named_by[ref]} names) does not exist: the runner it executes cannot be "
                "bound, so no approval counts for its runs"
            )
        elif current is None:
            found.append(f"{kind} {namespace}/{name} does not exist")
        elif ref not in signed:
            found.append(
                f"does not bind the content of {kind} {namespace}/{name} (approve with "
                "--cluster or --content so the record names what the run executes)"
            )
        elif signed[ref] != current:
            found.append(
                f"{kind} {namespace}/{name} changed since the approval (approved "
                f"sha256:{signed[ref][:12]}, now sha256:{current[:12]}): re-approve"
            )
    return found
