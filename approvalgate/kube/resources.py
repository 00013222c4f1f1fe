"""Which objects a request is about: a resource (group, version, plural) and its URL paths."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class Resource:
    """One kind of object on the API server, e.g. ``Resource("", "v1", "configmaps")``.

    ``group`` is "" for the core group (``/api/v1``). ``namespaced`` is False for cluster-scoped
    kinds (namespaces, ClusterRoles, ValidatingWebhookConfigurations).
    """

    group: str
    version: str
    plural: str
    namespaced: bool = True
    singular: str = ""

    @property
    def singular_name(self) -> str:
        """``singular``, else the plural without its final s (``configmaps`` -> ``configmap``)."""
        return self.singular or self.plural.removesuffix("s")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The collection (or, with ``name``, the object) path; no namespace means all."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace and self.namespaced:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        return f"{base}/{quote(name, safe='')}" if name else base

    def describe(self, namespace: str | None = None) -> str:
        """``plural.group in namespace NS`` (or ``in all namespaces``), for messages."""
        what = f"{self.plural}.{self.group}" if self.group else self.plural
        if not self.namespaced:
            return what
        return f"{what} in namespace {namespace}" if namespace else f"{what} in all namespaces"


def object_key(obj: Mapping[str, Any]) -> str:
    """``namespace/name`` (or ``name`` for a cluster-scoped object): a store's key."""
    meta = obj.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    name = str(meta.get("name") or "")
    return f"{namespace}/{name}" if namespace else name


def resource_version(obj: Mapping[str, Any]) -> str:
    """``metadata.resourceVersion`` of an object or a list ("" when absent)."""
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


# --- the objects approvalgate reads and writes -------------------------------------------

AGENT_RUNS = Resource("agents.proompteng.ai", "v1alpha1", "agentruns")
APPROVAL_REQUESTS = Resource("gates.proompteng.ai", "v1alpha1", "approvalrequests")
APPROVAL_DECISIONS = Resource("gates.proompteng.ai", "v1alpha1", "approvaldecisions")
APPROVAL_USES = Resource("gates.proompteng.ai", "v1alpha1", "approvaluses")
LEASES = Resource("coordination.k8s.io", "v1", "leases")
EVENTS = Resource("events.k8s.io", "v1", "events")
CORE_EVENTS = Resource("", "v1", "events")
SIGNAL_DELIVERIES = Resource("signals.proompteng.ai", "v1alpha1", "signaldeliveries")

# --- issue 16: the parents of derived runs, and the content runs refer to -----------------
SCHEDULES = Resource("schedules.proompteng.ai", "v1alpha1", "schedules")
ORCHESTRATION_RUNS = Resource("orchestration.proompteng.ai", "v1alpha1", "orchestrationruns")
ORCHESTRATIONS = Resource("orchestration.proompteng.ai", "v1alpha1", "orchestrations")
SWARMS = Resource("swarm.proompteng.ai", "v1alpha1", "swarms")
IMPLEMENTATION_SPECS = Resource("agents.proompteng.ai", "v1alpha1", "implementationspecs")
AGENTS = Resource("agents.proompteng.ai", "v1alpha1", "agents")
AGENT_PROVIDERS = Resource("agents.proompteng.ai", "v1alpha1", "agentproviders")
