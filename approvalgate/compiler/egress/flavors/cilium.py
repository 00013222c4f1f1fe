"""Flavor ``cilium``: one cilium.io/v2 CiliumNetworkPolicy per runners policy.

One L3 peer kind per rule, as Cilium requires; DNS goes through Cilium's DNS proxy, so
``toFQDNs`` rules learn the addresses; ports are strings, as Cilium's CRD types them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from approvalgate.compiler.egress.flavor import Flavor, Manifest, api_ports, metadata
from approvalgate.compiler.egress.model import (
    DNS_PORTS,
    Destination,
    EgressPolicy,
    Json,
    Peer,
    Port,
    Rule,
    selector,
)

if TYPE_CHECKING:
    from approvalgate.compiler.egress.env import EgressEnv

NAMESPACE_LABEL = "k8s:io.kubernetes.pod.namespace"


def port(p: Port) -> Json:
    """Cilium's CRD types ``port`` as a string (``"443"``), ``endPort`` as an int."""
    out: Json = {"port": str(p.port), "protocol": p.protocol}
    if p.end_port is not None:
        out["endPort"] = p.end_port
    return out


def rules(policy: EgressPolicy, env: EgressEnv) -> list[Rule]:
    """CiliumNetworkPolicy egress rules: one L3 peer kind per rule, as Cilium requires."""
    out: list[Rule] = []
    if policy.dns:
        out += _dns(policy, env)
    if policy.api_server:
        ports = ({"ports": [port(p) for p in api_ports(env)]},)
        cidrs = tuple({"cidr": str(n)} for n in env.api_server_networks())
        out.append(Rule("api-server", "toCIDRSet", cidrs, ports))
        out.append(Rule("api-server-entity", "toEntities", ("kube-apiserver",), ports))
    for dest in policy.destinations:
        out.append(_destination(dest))
    return out


def _dns(policy: EgressPolicy, env: EgressEnv) -> list[Rule]:
    """DNS through Cilium's DNS proxy (``rules.dns``), so toFQDNs learns the addresses."""
    dns_ports = [port(p) for p in DNS_PORTS]
    to_ports = ({"ports": dns_ports, "rules": {"dns": [{"matchPattern": "*"}]}},)
    labels = {f"k8s:{k}": v for k, v in env.dns_pod_labels.items()}
    labels[NAMESPACE_LABEL] = env.dns_service_namespace
    out = [Rule("dns", "toEndpoints", ({"matchLabels": labels},), to_ports)]
    node_local = tuple({"cidr": str(n)} for n in env.node_local_networks())
    if policy.node_local_dns and node_local:
        out.append(Rule("dns-node-local", "toCIDRSet", node_local, to_ports))
    return out


def _destination(dest: Destination) -> Rule:
    to_ports = ({"ports": [port(p) for p in dest.ports]},) if dest.ports else ()
    if dest.cidrs:
        peers: tuple[Any, ...] = tuple(
            {"cidr": b.cidr, **({"except": list(b.except_)} if b.except_ else {})}
            for b in dest.cidrs
        )
        return Rule(dest.name, "toCIDRSet", peers, to_ports)
    if dest.fqdns:
        fqdns = tuple({"matchPattern" if "*" in n else "matchName": n} for n in dest.fqdns)
        return Rule(dest.name, "toFQDNs", fqdns, to_ports)
    endpoints = tuple(_endpoint(p) for p in dest.peers)
    return Rule(dest.name, "toEndpoints", endpoints, to_ports)


def _endpoint(peer: Peer) -> Json:
    """Namespace and pod labels in ONE endpoint selector (AND); no namespace: own one."""
    out = selector(peer.pod_selector or {})
    if peer.namespace is not None:
        labels = dict(out.get("matchLabels", {}))
        labels[NAMESPACE_LABEL] = peer.namespace
        out["matchLabels"] = dict(sorted(labels.items()))
    return out


def build(m: Manifest) -> Json:
    """The CiliumNetworkPolicy of one runners policy (copied: :func:`rules` shares its
    port lists between rules)."""
    egress: list[Json] = []
    for rule in m.rules:
        entry: Json = {rule.peer_key: list(rule.peers)}
        if rule.ports:
            entry["toPorts"] = list(rule.ports)
        egress.append(entry)
    obj = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": metadata(m),
        # no rule: one empty rule puts the selected pods in default-deny for egress
        "spec": {"endpointSelector": m.pod_selector, "egress": egress or [{}]},
    }
    return _fresh(obj)


def _fresh(obj: Json) -> Json:
    """A JSON round trip: plain types, nothing shared."""
    fresh: Json = json.loads(json.dumps(obj))
    return fresh


FLAVOR = Flavor(
    name="cilium",
    template="ciliumnetworkpolicy.yaml.j2",
    renders="CiliumNetworkPolicy",
    fqdns=True,
    rules=rules,
    build=build,
)
