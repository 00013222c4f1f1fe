"""Rendered egress output against the real schemas, strictly.

- every rendered NetworkPolicy (and every NetworkPolicy in the corpus' expected files)
  validates against schemas/k8s/networkpolicy-networking-v1.json (unknown fields are errors);
- every agents values block validates against the agents chart's values.schema.json
  (the copy we ship, and the upstream file vendored in third_party/upstream-agents/).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from approvalgate.compiler.egress import EgressEnv, agents_values, env_from_mapping, render_egress
from tests.support.paths import UPSTREAM_AGENTS

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus" / "egress"
CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir())
K8S_SCHEMA = ROOT / "schemas" / "k8s" / "networkpolicy-networking-v1.json"
VALUES_SCHEMA = ROOT / "schemas" / "agents-values.schema.json"
UPSTREAM_VALUES_SCHEMA = UPSTREAM_AGENTS / "values.schema.json"


@functools.cache
def validator(path: Path) -> jsonschema.protocols.Validator:
    schema = json.loads(path.read_text(encoding="utf-8"))
    # The agents chart says "$schema": "https://json-schema.org/draft-07/schema#" (https),
    # which jsonschema does not know by that name: take draft-07 as it says.
    draft7 = "draft-07" in str(schema.get("$schema", ""))
    default = jsonschema.Draft7Validator if draft7 else jsonschema.Draft202012Validator
    cls = jsonschema.validators.validator_for(schema, default=default)
    cls.check_schema(schema)
    return cls(schema)


def errors(path: Path, instance: object) -> list[str]:
    return sorted(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator(path).iter_errors(instance)
    )


def load_case(case: Path) -> tuple[list[dict[str, Any]], EgressEnv]:
    text = (case / "input.yaml").read_text(encoding="utf-8")
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    env_file = case / "env.yaml"
    settings = yaml.safe_load(env_file.read_text(encoding="utf-8")) if env_file.exists() else {}
    return docs, env_from_mapping(settings or {})


def renderable(case: Path) -> bool:
    return (case / "expected.yaml").exists()


RENDERABLE = [c for c in CASES if renderable(c)]


def as_kubernetes(env: EgressEnv) -> EgressEnv:
    """The same environment in flavor kubernetes (fqdns cases aside, every case renders)."""
    return EgressEnv(
        flavor="kubernetes",
        namespace=env.namespace,
        dns_service_namespace=env.dns_service_namespace,
        dns_pod_labels=env.dns_pod_labels,
        node_local_dns=env.node_local_dns,
        api_server_endpoints=env.api_server_endpoints,
        api_server_ports=env.api_server_ports,
    )


def has_fqdns(docs: list[dict[str, Any]]) -> bool:
    return any("fqdns" in d for doc in docs for d in doc["spec"].get("destinations", []))


# --------------------------------------------------------------------------- NetworkPolicy


#: fqdns render only in the cilium flavor; every other case also renders as NetworkPolicies.
KUBERNETES_RENDERABLE = [c for c in RENDERABLE if not has_fqdns(load_case(c)[0])]


@pytest.mark.parametrize("case", KUBERNETES_RENDERABLE, ids=lambda p: p.name)
def test_rendered_networkpolicies_are_valid(case: Path) -> None:
    docs, env = load_case(case)
    for obj in render_egress(docs, as_kubernetes(env)):
        assert obj["kind"] == "NetworkPolicy"
        assert errors(K8S_SCHEMA, obj) == []


@pytest.mark.parametrize("case", RENDERABLE, ids=lambda p: p.name)
def test_expected_networkpolicies_are_valid(case: Path) -> None:
    text = (case / "expected.yaml").read_text(encoding="utf-8")
    for obj in (d for d in yaml.safe_load_all(text) if d is not None):
        if obj["kind"] == "NetworkPolicy":
            assert errors(K8S_SCHEMA, obj) == []


def _policy() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "x", "namespace": "agents"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
                    "ports": [{"port": 443, "protocol": "TCP", "endPort": 8443}],
                }
            ],
        },
    }


def test_schema_accepts_a_minimal_policy() -> None:
    assert errors(K8S_SCHEMA, _policy()) == []


@pytest.mark.parametrize(
    ("where", "key", "value", "expected"),
    [
        ("spec", "egres", [], "Additional properties are not allowed ('egres' was unexpected)"),
        (
            "metadata",
            "labelz",
            {},
            "Additional properties are not allowed ('labelz' was unexpected)",
        ),
        ("rule", "from", [], "Additional properties are not allowed ('from' was unexpected)"),
        (
            "port",
            "portName",
            "x",
            "Additional properties are not allowed ('portName' was unexpected)",
        ),
        ("port", "port", 4.5, "4.5 is not valid under any of the given schemas"),
        ("port", "protocol", "ICMP", "'ICMP' is not one of ['SCTP', 'TCP', 'UDP']"),
        ("spec", "policyTypes", ["egress"], "'egress' is not one of ['Ingress', 'Egress']"),
    ],
)
def test_schema_is_strict(where: str, key: str, value: object, expected: str) -> None:
    obj = _policy()
    target = {
        "spec": obj["spec"],
        "metadata": obj["metadata"],
        "rule": obj["spec"]["egress"][0],
        "port": obj["spec"]["egress"][0]["ports"][0],
    }[where]
    target[key] = value
    assert [e.split(": ", 1)[1] for e in errors(K8S_SCHEMA, obj)] == [expected]


def test_schema_requires_pod_selector() -> None:
    obj = _policy()
    del obj["spec"]["podSelector"]
    assert errors(K8S_SCHEMA, obj) == ["spec: 'podSelector' is a required property"]


# --------------------------------------------------------------------------- agents values


def values_schemas() -> list[Path]:
    return [VALUES_SCHEMA, UPSTREAM_VALUES_SCHEMA]


@pytest.mark.parametrize("case", RENDERABLE, ids=lambda p: p.name)
def test_agents_values_are_valid(case: Path) -> None:
    docs, env = load_case(case)
    values = {"networkPolicy": agents_values(docs, env)}
    for schema in values_schemas():
        assert errors(schema, values) == []


def test_values_schema_rejects_unknown_network_policy_keys() -> None:
    values = {"networkPolicy": {"enabled": True, "egressRules": []}}
    for schema in values_schemas():
        assert errors(schema, values) == [
            "networkPolicy: Additional properties are not allowed ('egressRules' was unexpected)"
        ]


def test_shipped_values_schema_is_the_upstream_one() -> None:
    shipped = json.loads(VALUES_SCHEMA.read_text(encoding="utf-8"))
    assert shipped == json.loads(UPSTREAM_VALUES_SCHEMA.read_text(encoding="utf-8"))


def test_egresspolicy_schema_is_a_valid_schema() -> None:
    validator(ROOT / "schemas" / "egresspolicy.schema.json")
