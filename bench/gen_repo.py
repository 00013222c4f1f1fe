#!/usr/bin/env python3
"""Generate a policy repo with N EgressPolicy specs, and the matching helm values file.

    python bench/gen_repo.py N OUT [--seed 0]

writes

    OUT/repo/                 an approvalgate policy repo: approvalgate.yaml (one environment,
                              `bench`), 3 Approvers, 3 ApprovalPolicies and N EgressPolicies
                              (target runners), one spec per file under egress/<namespace>/
    OUT/helm-values.yaml      the same N policies as a values list for the chart in
                              bench/helm-equivalent/, which renders the same NetworkPolicies

The specs vary the way real ones do: CIDRs with `except`, namespace + pod selector (AND),
`anyOf` (OR), port ranges (`endPort`), UDP, named ports toward pods, `allPorts`, custom pod
selectors and labels, API server access, node-local-dns off. Output is deterministic for a
seed (keys are derived from it too), and every spec is valid without warnings.

Needs PyYAML and `cryptography` (for the approvers' Ed25519 public keys): approvalgate
dependencies, so they are installed wherever approvalgate is.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any

import yaml

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

NAMESPACES = 20
ENV_SETTINGS: dict[str, Any] = {
    "flavor": "kubernetes",
    "namespace": "agents",
    "dnsServiceNamespace": "kube-system",
    "dnsPodLabels": {"k8s-app": "kube-dns"},
    "nodeLocalDNS": ["169.254.20.10"],
    "apiServerEndpoints": ["10.96.0.1"],
    "apiServerPorts": [443, 6443],
}
APPROVERS = ("alice", "bob", "carol")


def _json(value: Any) -> str:
    """Flow style, for short values inside hand-written YAML."""
    return json.dumps(value, sort_keys=False)


def _yaml(value: Any) -> str:
    """Block style, the way people write specs."""
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def _destination(rng: random.Random, index: int, kind: int) -> dict[str, Any]:
    a, b, c = rng.randrange(1, 250), rng.randrange(0, 250), rng.randrange(1, 60)
    if kind == 0:  # a CIDR with except, HTTPS
        return {
            "name": f"net-{index}",
            "cidrs": [{"cidr": f"10.{a}.0.0/16", "except": [f"10.{a}.{b}.0/24"]}],
            "ports": [{"port": 443}],
        }
    if kind == 1:  # namespace AND pods: one peer
        return {
            "name": f"db-{index}",
            "namespace": f"databases-{c}",
            "podSelector": {"matchLabels": {"cnpg.io/cluster": f"db-{a}", "role": "primary"}},
            "ports": [{"port": 5432}],
        }
    if kind == 2:  # anyOf: OR of peers, one with matchExpressions
        return {
            "name": f"cache-{index}",
            "anyOf": [
                {"namespace": f"cache-{c}"},
                {"podSelector": {"matchLabels": {"app.kubernetes.io/name": f"worker-{a}"}}},
                {
                    "namespace": f"queue-{c}",
                    "podSelector": {
                        "matchExpressions": [
                            {"key": "tier", "operator": "In", "values": ["hot", "warm"]}
                        ]
                    },
                },
            ],
            "ports": [{"port": 6379}, {"port": 6380, "protocol": "TCP"}],
        }
    if kind == 3:  # port ranges and UDP toward a public block
        return {
            "name": f"range-{index}",
            "cidrs": [{"cidr": f"203.0.{a % 256}.0/24"}, {"cidr": f"198.51.{b}.0/24"}],
            "ports": [
                {"port": 30000, "endPort": 32767},
                {"port": 8000 + c, "endPort": 8100 + c, "protocol": "UDP"},
            ],
        }
    if kind == 4:  # the internet minus private ranges
        return {
            "name": f"internet-{index}",
            "cidrs": [
                {
                    "cidr": "0.0.0.0/0",
                    "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
                }
            ],
            "ports": [{"port": 443}, {"port": 80}],
        }
    if kind == 5:  # named port toward pods of the own namespace
        return {
            "name": f"metrics-{index}",
            "podSelector": {"matchLabels": {"app": f"exporter-{c}"}},
            "ports": [{"port": "metrics"}, {"port": 9090, "protocol": "TCP"}],
        }
    return {  # every port toward one namespace
        "name": f"mesh-{index}",
        "namespace": f"mesh-{c}",
        "allPorts": True,
    }


def egress_spec(rng: random.Random, i: int) -> dict[str, Any]:
    """The i-th EgressPolicy document (a dict, in input form)."""
    metadata: dict[str, Any] = {"name": f"egress-{i:05d}", "namespace": f"team-{i % NAMESPACES}"}
    if i % 5 == 0:
        metadata["labels"] = {"team": f"team-{i % NAMESPACES}", "tier": "batch"}
    spec: dict[str, Any] = {"target": "runners"}
    # the first spec of each namespace selects all its runner pods, so compile adds no
    # default-deny, which the helm-equivalent chart does not render (docs/egress.md,
    # "Runner pods no policy selects")
    if i % 4 == 1 and i >= NAMESPACES:
        spec["podSelector"] = {
            "matchLabels": {"agents.proompteng.ai/agent": f"agent-{i % 50}"},
            "matchExpressions": [{"key": "agents.proompteng.ai/agent-run", "operator": "Exists"}],
        }
    if i % 7 == 3:
        spec["dns"] = {"nodeLocalDNS": False}
    if i % 3 == 0:
        spec["apiServer"] = True
    count = 1 + rng.randrange(4)
    kinds = rng.sample(range(7), count)
    spec["destinations"] = [_destination(rng, n, kind) for n, kind in enumerate(kinds)]
    return {
        "apiVersion": "gates.proompteng.ai/v1alpha1",
        "kind": "EgressPolicy",
        "metadata": metadata,
        "spec": spec,
    }


def _public_key_pem(seed: int, name: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(f"approvalgate-bench-{seed}-{name}".encode()).digest()
    )
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode("ascii")


def _approver(seed: int, name: str, groups: list[str]) -> str:
    key = "".join(f"        {line}\n" for line in _public_key_pem(seed, name).splitlines())
    return (
        "apiVersion: gates.proompteng.ai/v1alpha1\n"
        "kind: Approver\n"
        f"metadata:\n  name: {name}\n"
        f"spec:\n  usernames: {_json([name])}\n  groups: {_json(groups)}\n"
        f"  keys:\n    - publicKey: |\n{key}"
    )


def _approval_policies() -> str:
    policies = [
        {
            "metadata": {"name": "two-person", "namespace": "agents"},
            "spec": {
                "mode": "manual",
                "defaultDecision": "deny",
                "subjects": [{"kind": "Agent", "name": "codex-agent"}],
                "approvers": ["group:platform-leads"],
                "requiredApprovals": 2,
                "timeoutSeconds": 86400,
            },
        },
        {
            "metadata": {"name": "default-approval", "namespace": "agents"},
            "spec": {
                "mode": "automatic",
                "defaultDecision": "deny",
                "approvers": ["group:agents-admin"],
                "requiredApprovals": 1,
                "timeoutSeconds": 86400,
                "trustedSubmitters": {
                    "users": ["system:serviceaccount:agents-system:submission-api"]
                },
            },
        },
        {
            "metadata": {"name": "oncall-bypass", "namespace": "agents"},
            "spec": {
                "mode": "manual",
                "defaultDecision": "deny",
                "subjects": [{"kind": "Agent", "name": "release-agent"}],
                "approvers": ["alice", "bob"],
                "requiredApprovals": 1,
                "bypass": {"approvers": ["carol"], "maxTTL": "2h"},
            },
        },
    ]
    docs = [
        _yaml({"apiVersion": "approvals.proompteng.ai/v1alpha1", "kind": "ApprovalPolicy", **p})
        for p in policies
    ]
    return "".join(f"---\n{doc}" for doc in docs)


def config_text() -> str:
    return (
        "apiVersion: gates.proompteng.ai/v1alpha1\n"
        "kind: ApprovalgateConfig\n"
        "sources: [policies, approvers, egress]\n"
        "output: rendered\n"
        "defaults:\n"
        "  namespace: agents\n"
        f"  egress: {_json(ENV_SETTINGS)}\n"
        "environments:\n"
        "  bench: {}\n"
    )


def helm_policy(doc: dict[str, Any]) -> dict[str, Any]:
    """One entry of the chart's `policies` list: the same fields as the spec."""
    spec = doc["spec"]
    entry: dict[str, Any] = {
        "name": doc["metadata"]["name"],
        "namespace": doc["metadata"]["namespace"],
        "destinations": spec.get("destinations", []),
    }
    for key in ("labels",):
        if key in doc["metadata"]:
            entry[key] = doc["metadata"][key]
    for key in ("podSelector", "apiServer", "dns"):
        if key in spec:
            entry[key] = spec[key]
    return entry


def generate(n: int, out: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write OUT/repo and OUT/helm-values.yaml; return both paths."""
    rng = random.Random(seed)
    repo = out / "repo"
    for folder in ("policies", "approvers", "egress"):
        (repo / folder).mkdir(parents=True, exist_ok=True)
    (repo / "approvalgate.yaml").write_text(config_text(), encoding="utf-8")
    groups = {"alice": ["platform-leads"], "bob": ["platform-leads"], "carol": ["agents-admin"]}
    for name in APPROVERS:
        (repo / "approvers" / f"{name}.yaml").write_text(
            _approver(seed, name, groups[name]), encoding="utf-8"
        )
    (repo / "policies" / "policies.yaml").write_text(_approval_policies(), encoding="utf-8")
    entries = []
    for i in range(n):
        doc = egress_spec(rng, i)
        folder = repo / "egress" / doc["metadata"]["namespace"]
        folder.mkdir(exist_ok=True)
        text = f"# generated by bench/gen_repo.py (seed {seed})\n{_yaml(doc)}"
        (folder / f"{doc['metadata']['name']}.yaml").write_text(text, encoding="utf-8")
        entries.append(helm_policy(doc))
    values = out / "helm-values.yaml"
    settings = {
        "dnsServiceNamespace": ENV_SETTINGS["dnsServiceNamespace"],
        "dnsPodLabels": ENV_SETTINGS["dnsPodLabels"],
        "nodeLocalDNS": ENV_SETTINGS["nodeLocalDNS"],
        "apiServerEndpoints": ENV_SETTINGS["apiServerEndpoints"],
        "apiServerPorts": ENV_SETTINGS["apiServerPorts"],
    }
    values.write_text(_yaml({"egress": settings, "policies": entries}), encoding="utf-8")
    return repo, values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, help="number of EgressPolicy specs")
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    repo, values = generate(args.n, args.out, args.seed)
    print(f"{repo}\n{values}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
