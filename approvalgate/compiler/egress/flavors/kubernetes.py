"""Flavor ``kubernetes``: one networking.k8s.io/v1 NetworkPolicy per runners policy.

Its rules are also the ``networkPolicy`` values of the agents chart (``values.py``), which
renders a core NetworkPolicy whatever the flavor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from approvalgate.compiler.egress.flavor import Flavor, Manifest, api_ports, metadata
from approvalgate.compiler.egress.model import (
    DNS_PORTS,
    NAMESPACE_NAME_LABEL,
    CidrBlock,
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


def port(p: Port) -> Json:
    out: Json = {"port": p.port, "protocol": p.protocol}
    if p.end_port is not None:
        out["endPort"] = p.end_port
    return out


def rules(policy: EgressPolicy, env: EgressEnv) -> list[Rule]:
    """NetworkPolicy egress rules, in order: dns, api-server, then the destinations."""
    out: list[Rule] = []
    if policy.dns:
        peers: list[Json] = [
            {
                "namespaceSelector": {
                    "matchLabels": {NAMESPACE_NAME_LABEL: env.dns_service_namespace}
                },
                "podSelector": {"matchLabels": dict(env.dns_pod_labels)},
            }
        ]
        if policy.node_local_dns:
            peers += [{"ipBlock": {"cidr": str(n)}} for n in env.node_local_networks()]
        out.append(Rule("dns", "to", tuple(peers), tuple(port(p) for p in DNS_PORTS)))
    if policy.api_server:
        api = tuple({"ipBlock": {"cidr": str(n)}} for n in env.api_server_networks())
        out.append(Rule("api-server", "to", api, tuple(port(p) for p in api_ports(env))))
    out += [_destination(d) for d in policy.destinations]
    return out


def _destination(dest: Destination) -> Rule:
    peers: list[Json] = [_ip_block(block) for block in dest.cidrs]
    peers += [_peer(peer) for peer in dest.peers]
    return Rule(dest.name, "to", tuple(peers), tuple(port(p) for p in dest.ports))


def _ip_block(block: CidrBlock) -> Json:
    ip_block: Json = {"cidr": block.cidr}
    if block.except_:
        ip_block["except"] = list(block.except_)
    return {"ipBlock": ip_block}


def _peer(peer: Peer) -> Json:
    """Both fields in ONE peer: pods matching the selector in that namespace (AND)."""
    out: Json = {}
    if peer.namespace is not None:
        out["namespaceSelector"] = {"matchLabels": {NAMESPACE_NAME_LABEL: peer.namespace}}
    if peer.pod_selector is not None:
        out["podSelector"] = selector(peer.pod_selector)
    return out


def egress_rule(rule: Rule) -> Json:
    """One entry of a NetworkPolicy's ``spec.egress``."""
    out: Json = {"to": list(rule.peers)}
    if rule.ports:
        out["ports"] = list(rule.ports)
    return out


def build(m: Manifest) -> Json:
    """The NetworkPolicy of one runners policy.

    No copy is needed: :func:`rules` and the manifest build every dict and list afresh for
    each policy (lists, not tuples; nothing shared).
    """
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(m),
        "spec": {
            "podSelector": m.pod_selector,
            # always explicit: without it an egress-only policy defaults to Ingress
            "policyTypes": ["Egress"],
            # no rule: the selected pods may not send anything
            "egress": [egress_rule(rule) for rule in m.rules],
        },
    }


FLAVOR = Flavor(
    name="kubernetes",
    template="networkpolicy.yaml.j2",
    renders="core NetworkPolicy",
    fqdns=False,
    rules=rules,
    build=build,
)
