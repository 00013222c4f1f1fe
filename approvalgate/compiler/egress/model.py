"""The typed model of an EgressPolicy document, and the rule every flavor lays out.

:func:`parse_egress` builds an :class:`EgressPolicy` from a document that
``validate_egress`` accepted; a flavor turns it into :class:`Rule` objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, cast

API_VERSION = "gates.proompteng.ai/v1alpha1"
KIND = "EgressPolicy"

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
POLICY_LABEL = "gates.proompteng.ai/egress-policy"
RULES_ANNOTATION = "gates.proompteng.ai/egress-rules"
POLICIES_ANNOTATION = "gates.proompteng.ai/egress-policies"
RUNNER_POD_LABEL = "agents.proompteng.ai/agent-run"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DNS_PORT = 53
RESERVED_RULE_NAMES = ("dns", "dns-node-local", "api-server", "api-server-entity")
#: The default-deny policy rendered for runner pods that no policy of their namespace
#: selects (render.py); no EgressPolicy may take the name.
DEFAULT_DENY_NAME = "approvalgate-runners-default-deny"

Target = Literal["runners", "controlPlane"]
Json = dict[str, Any]

DEFAULT_RUNNER_SELECTOR: Mapping[str, Any] = MappingProxyType(
    {"matchExpressions": [{"key": RUNNER_POD_LABEL, "operator": "Exists"}]}
)


@dataclass(frozen=True)
class Port:
    port: int | str
    protocol: str = "TCP"
    end_port: int | None = None


#: Cluster DNS, in the order every flavor writes it.
DNS_PORTS = (Port(DNS_PORT, "UDP"), Port(DNS_PORT, "TCP"))


@dataclass(frozen=True)
class CidrBlock:
    cidr: str
    except_: tuple[str, ...] = ()


@dataclass(frozen=True)
class Peer:
    """An in-cluster peer: pods matching ``pod_selector`` in ``namespace`` (AND)."""

    namespace: str | None = None
    pod_selector: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Destination:
    name: str
    cidrs: tuple[CidrBlock, ...] = ()
    peers: tuple[Peer, ...] = ()
    fqdns: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()  # empty: allPorts

    @property
    def kind(self) -> str:
        if self.cidrs:
            return "cidrs"
        return "fqdns" if self.fqdns else "pods"


@dataclass(frozen=True)
class EgressPolicy:
    name: str
    namespace: str | None
    target: Target
    enabled: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    pod_selector: Mapping[str, Any] | None = None
    dns: bool = True
    node_local_dns: bool = True
    api_server: bool = False
    destinations: tuple[Destination, ...] = ()


@dataclass(frozen=True)
class Rule:
    """One egress rule of a rendered policy, computed by a flavor.

    ``peer_key`` names the flavor's peer field (``to`` for NetworkPolicy; ``toEndpoints``,
    ``toCIDRSet``, ``toFQDNs`` or ``toEntities`` for Cilium); ``ports`` is the flavor's
    ports list (empty: every port). A repo's own template sees these fields as ``rule.*``.
    """

    name: str
    peer_key: str
    peers: tuple[Any, ...]
    ports: tuple[Json, ...] = ()


def parse_egress(doc: Mapping[str, Any]) -> EgressPolicy:
    """The typed model of a document that ``validate_egress`` accepted."""
    meta, spec = doc["metadata"], doc["spec"]
    dns = spec.get("dns", {})
    return EgressPolicy(
        name=meta["name"],
        namespace=meta.get("namespace"),
        target=spec["target"],
        enabled=spec.get("enabled", True),
        labels=dict(meta.get("labels", {})),
        annotations=dict(meta.get("annotations", {})),
        pod_selector=spec.get("podSelector"),
        dns=dns.get("enabled", True),
        node_local_dns=dns.get("nodeLocalDNS", True),
        api_server=spec.get("apiServer", False),
        destinations=tuple(_parse_destination(d) for d in spec.get("destinations", [])),
    )


def _parse_destination(raw: Mapping[str, Any]) -> Destination:
    if "anyOf" in raw:
        peers = tuple(_parse_peer(p) for p in raw["anyOf"])
    elif "namespace" in raw or "podSelector" in raw:
        peers = (_parse_peer(raw),)
    else:
        peers = ()
    return Destination(
        name=raw["name"],
        cidrs=tuple(CidrBlock(c["cidr"], tuple(c.get("except", ()))) for c in raw.get("cidrs", ())),
        peers=peers,
        fqdns=tuple(raw.get("fqdns", ())),
        ports=tuple(
            Port(_number(p["port"]), p.get("protocol", "TCP"), _number(p.get("endPort")))
            for p in raw.get("ports", ())
        ),
    )


def _number(value: Any) -> Any:
    """JSON Schema counts 443.0 as an integer; write it as 443."""
    return int(value) if isinstance(value, float) else value


def _parse_peer(raw: Mapping[str, Any]) -> Peer:
    return Peer(namespace=raw.get("namespace"), pod_selector=raw.get("podSelector"))


def selector(labels: Mapping[str, Any]) -> Json:
    """A deep, plain, key-sorted copy of a label selector."""
    return cast(Json, _plain(labels))


def _plain(node: object) -> object:
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in sorted(node.items())}
    if isinstance(node, list | tuple):
        return [_plain(item) for item in node]
    return node
