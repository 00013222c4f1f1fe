"""The data-driven EgressPolicy corpus: tests/corpus/egress/<case>/ (see its README.md).

Each case asserts the exact findings, the exact rendered objects and values, and the
NetworkPolicy output rules of conventions.md on whatever was rendered.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from approvalgate.approvals.errors import ValidationError, format_json_path
from approvalgate.compiler.egress import (
    EgressEnv,
    agents_values,
    env_from_mapping,
    render_egress,
    validate_egress,
)

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "egress"
CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir())
KNOWN_FILES = {
    "input.yaml",
    "env.yaml",
    "expected.yaml",
    "expected-errors.txt",
    "expected-values.yaml",
    "expected-render-error.txt",
}
#: At least one positive and one negative case per rule of conventions.md.
REQUIRED_CASES = {
    "policytypes-explicit",
    "policytypes-deny-all",
    "policytypes-input-error",
    "port-int",
    "port-quoted-is-named-error",
    "endport-range",
    "endport-named-error",
    "endport-below-port-error",
    "named-port-pods",
    "named-port-ipblock-error",
    "ports-empty-object-never",
    "all-ports-explicit",
    "cidr-canonical",
    "cidr-not-canonical-error",
    "except-subset",
    "except-not-subset-error",
    "dns-and-form",
    "dns-node-local",
    "dns-port-only-error",
    "except-blocks-node-local-warning",
    "except-metadata-no-warning",
    "apiserver-ipblock",
    "apiserver-missing-endpoints-error",
    "and-form",
    "or-form",
    "namespace-by-name",
    "namespace-invalid-name-error",
    "fqdn-kubernetes-error",
    "fqdn-cilium",
    "disabled-renders-nothing",
    "controlplane-values",
    "controlplane-disabled-values",
    "values-tpl-braces-error",
    "wildcard-all-error",
}
DNS_PORTS = {(53, "UDP"), (53, "TCP")}
NEGATIVE_SUFFIXES = ("-error", "-never")


# --------------------------------------------------------------------------- loading


def load_case(case: Path) -> tuple[list[dict[str, Any]], EgressEnv]:
    text = (case / "input.yaml").read_text(encoding="utf-8")
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    env_file = case / "env.yaml"
    settings = yaml.safe_load(env_file.read_text(encoding="utf-8")) if env_file.exists() else {}
    return docs, env_from_mapping(settings or {})


def finding_lines(docs: Sequence[Mapping[str, Any]], env: EgressEnv) -> list[str]:
    lines = []
    for n, doc in enumerate(docs):
        prefix = f"doc {n}: " if len(docs) > 1 else ""
        for f in validate_egress(doc, env):
            line = f"{prefix}{format_json_path(f.path)}: {f.severity}: {f.message}"
            lines.append(f"{line} [hint: {f.advice}]" if f.advice else line)
    return lines


def has_errors(docs: Sequence[Mapping[str, Any]], env: EgressEnv) -> bool:
    return any(f.severity == "error" for d in docs for f in validate_egress(d, env))


def read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_objects(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


# --------------------------------------------------------------------------- the corpus


def test_corpus_covers_every_rule() -> None:
    missing = REQUIRED_CASES - {case.name for case in CASES}
    assert not missing, f"corpus cases missing: {sorted(missing)}"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_case_layout(case: Path) -> None:
    files = {p.name for p in case.iterdir()}
    assert "input.yaml" in files
    assert files <= KNOWN_FILES, f"unknown files: {sorted(files - KNOWN_FILES)}"
    assert files & (KNOWN_FILES - {"input.yaml", "env.yaml"}), "the case expects nothing"
    docs, env = load_case(case)
    if has_errors(docs, env):
        assert not files & {"expected.yaml", "expected-values.yaml"}
    assert case.name.endswith(NEGATIVE_SUFFIXES) == (
        has_errors(docs, env) or (case / "expected-render-error.txt").exists()
    ), f"negative cases, and only they, are named *{'/*'.join(NEGATIVE_SUFFIXES)}"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_findings(case: Path) -> None:
    docs, env = load_case(case)
    assert finding_lines(docs, env) == read_lines(case / "expected-errors.txt")


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_render(case: Path) -> None:
    docs, env = load_case(case)
    render_error = case / "expected-render-error.txt"
    if has_errors(docs, env) or render_error.exists():
        with pytest.raises(ValidationError) as caught:
            render_egress(docs, env)
        if render_error.exists():
            assert caught.value.render() + "\n" == render_error.read_text(encoding="utf-8")
        return
    assert render_egress(docs, env) == read_objects(case / "expected.yaml")


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_values(case: Path) -> None:
    docs, env = load_case(case)
    expected = case / "expected-values.yaml"
    if has_errors(docs, env):
        with pytest.raises(ValidationError):
            agents_values(docs, env)
    elif expected.exists():
        assert agents_values(docs, env) == yaml.safe_load(expected.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_output_follows_conventions(case: Path) -> None:
    docs, env = load_case(case)
    if has_errors(docs, env) or (case / "expected-render-error.txt").exists():
        return
    problems = [p for obj in render_egress(docs, env) for p in manifest_problems(obj, env)]
    block = agents_values(docs, env)
    problems += [f"values: {p}" for p in egress_problems(block["egress"], env)]
    if block["enabled"] or block["egress"]:
        problems += [f"values: {p}" for p in policy_types_problems(block)]
    assert problems == []


# --------------------------------------------------------------------------- output rules


def manifest_problems(obj: Mapping[str, Any], env: EgressEnv) -> list[str]:
    labels = obj["metadata"]["labels"]
    problems = []
    if labels.get("app.kubernetes.io/managed-by") != "approvalgate":
        problems.append("managed-by label missing")
    if labels.get("gates.proompteng.ai/egress-policy") != obj["metadata"]["name"]:
        problems.append("egress-policy label missing")
    if obj["kind"] == "CiliumNetworkPolicy":
        return problems + cilium_problems(obj["spec"])
    problems += policy_types_problems(obj["spec"])
    return problems + egress_problems(obj["spec"]["egress"], env)


def policy_types_problems(spec: Mapping[str, Any]) -> list[str]:
    if spec.get("policyTypes") != ["Egress"]:
        return [f"policyTypes must be exactly [Egress], got {spec.get('policyTypes')}"]
    return []


def egress_problems(rules: Sequence[Mapping[str, Any]], env: EgressEnv) -> list[str]:
    problems: list[str] = []
    for i, rule in enumerate(rules):
        where = f"egress[{i}]"
        if not rule.get("to"):
            problems.append(f"{where}: a rule without `to` opens its ports to every address")
        problems += [f"{where}: {p}" for p in port_problems(rule)]
        for peer in rule.get("to", []):
            problems += [f"{where}: {p}" for p in peer_problems(peer, rule, env)]
        problems += [f"{where}: {p}" for p in dns_problems(rule, env)]
    return problems


def port_problems(rule: Mapping[str, Any]) -> Iterator[str]:
    if "ports" in rule and not rule["ports"]:
        yield "`ports: []` means every port"
    for port in rule.get("ports", []):
        if "port" not in port:
            yield f"port entry without a port: {port}"
            continue
        value = port["port"]
        if isinstance(value, str) and value.isdigit():
            yield f'port "{value}" is a quoted number: it would be read as a name'
        if port.get("protocol") not in ("TCP", "UDP", "SCTP"):
            yield f"protocol missing or unknown in {port}"
        if "endPort" in port and not (isinstance(value, int) and value <= port["endPort"]):
            yield f"endPort without a numeric port <= endPort: {port}"
        if isinstance(value, str) and any("ipBlock" in p for p in rule.get("to", [])):
            yield f"named port {value} with an ipBlock"


def peer_problems(
    peer: Mapping[str, Any], rule: Mapping[str, Any], env: EgressEnv
) -> Iterator[str]:
    if "ipBlock" in peer:
        yield from ip_block_problems(peer["ipBlock"])
        if len(peer) != 1:
            yield "ipBlock mixed with selectors in one peer"
    selector = peer.get("namespaceSelector")
    if selector is not None and set(selector) != {"matchLabels"}:
        yield f"namespaces must be selected by name: {selector}"
    elif selector is not None and set(selector["matchLabels"]) != {"kubernetes.io/metadata.name"}:
        yield f"namespaces must be selected by kubernetes.io/metadata.name: {selector}"
    if peer.get("podSelector") == {"matchLabels": dict(env.dns_pod_labels)} and not selector:
        yield "kube-dns selected without its namespace (OR form)"


def ip_block_problems(block: Mapping[str, Any]) -> Iterator[str]:
    cidr = ipaddress.ip_network(block["cidr"], strict=True)
    if str(cidr) != block["cidr"]:
        yield f"cidr {block['cidr']} is not canonical"
    for text in block.get("except", []):
        excepted = ipaddress.ip_network(text, strict=True)
        inside = excepted.version == cidr.version and (
            cidr.network_address <= excepted.network_address  # type: ignore[operator]
            and excepted.broadcast_address <= cidr.broadcast_address  # type: ignore[operator]
        )
        if excepted == cidr or not inside:
            yield f"except {text} is not a strict subset of {cidr}"


def dns_problems(rule: Mapping[str, Any], env: EgressEnv) -> Iterator[str]:
    ports = {(p.get("port"), p.get("protocol")) for p in rule.get("ports", [])}
    if not ports & DNS_PORTS:
        return
    dns_peer = {
        "namespaceSelector": {
            "matchLabels": {"kubernetes.io/metadata.name": env.dns_service_namespace}
        },
        "podSelector": {"matchLabels": dict(env.dns_pod_labels)},
    }
    if dns_peer in rule.get("to", []) and ports != DNS_PORTS:
        yield f"the DNS rule must allow exactly 53/UDP and 53/TCP, got {sorted(ports)}"


def cilium_problems(spec: Mapping[str, Any]) -> list[str]:
    rules = spec["egress"]
    problems = []
    if not rules:
        problems.append("empty egress list: Cilium would not apply default-deny")
    for rule in rules:
        for to_ports in rule.get("toPorts", []):
            problems += [
                f"Cilium ports are strings: {p}"
                for p in to_ports["ports"]
                if not isinstance(p["port"], str)
            ]
    if any("toFQDNs" in r for r in rules) and not any(
        "toEndpoints" in r and any("dns" in t.get("rules", {}) for t in r.get("toPorts", []))
        for r in rules
    ):
        problems.append("toFQDNs without a DNS rule carrying rules.dns")
    return problems


# ---- the rule checks above must bite: known-bad output


def _dns_rule() -> dict[str, Any]:
    return {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    }


BAD_RULES: dict[str, dict[str, Any]] = {
    "ports-only": {"ports": [{"port": 53, "protocol": "UDP"}]},
    "empty-port-object": {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{}]},
    "quoted-port": {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": "53"}]},
    "dns-or-form": {
        "to": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}},
            {"podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}},
        ],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    },
    "dns-udp-only": {**_dns_rule(), "ports": [{"port": 53, "protocol": "UDP"}]},
    "non-canonical-cidr": {
        "to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}],
        "ports": [{"port": 443, "protocol": "TCP"}],
    },
    "named-port-ipblock": {
        "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
        "ports": [{"port": "https", "protocol": "TCP"}],
    },
    "namespace-by-other-label": {
        "to": [{"namespaceSelector": {"matchLabels": {"team": "data"}}}],
        "ports": [{"port": 5432, "protocol": "TCP"}],
    },
}


@pytest.mark.parametrize("name", sorted(BAD_RULES))
def test_output_rule_checks_catch_bad_rules(name: str) -> None:
    assert list(egress_problems([BAD_RULES[name]], EgressEnv())) != []


def test_output_rule_checks_accept_the_dns_rule() -> None:
    assert egress_problems([_dns_rule()], EgressEnv()) == []


def test_output_rule_checks_catch_missing_policy_types() -> None:
    assert policy_types_problems({"podSelector": {}, "egress": []}) != []


# --------------------------------------------------------------------------- determinism


def test_render_is_independent_of_document_order() -> None:
    docs, env = load_case(CORPUS / "multi-policy")
    assert render_egress(docs, env) == render_egress(list(reversed(docs)), env)
    docs, env = load_case(CORPUS / "controlplane-merge")
    assert agents_values(docs, env) == agents_values(list(reversed(docs)), env)


def test_render_is_repeatable() -> None:
    docs, env = load_case(CORPUS / "cilium-full")
    first = yaml.safe_dump_all(render_egress(docs, env))
    assert yaml.safe_dump_all(render_egress(docs, env)) == first


# --------------------------------------------------------------------------- environment


def test_env_defaults() -> None:
    env = EgressEnv()
    assert env.flavor == "kubernetes"
    assert env.dns_service_namespace == "kube-system"
    assert dict(env.dns_pod_labels) == {"k8s-app": "kube-dns"}
    assert env.node_local_dns == ("169.254.20.10",)
    assert env.api_server_ports == (443, 6443)
    assert env.api_server_endpoints == ()


def test_env_from_mapping_rejects_unknown_settings() -> None:
    with pytest.raises(ValidationError) as caught:
        env_from_mapping({"flavour": "cilium"})
    assert caught.value.render() == (
        "<input>: $.egress.flavour: unknown egress setting `flavour`\n"
        "  hint: known settings: apiServerEndpoints, apiServerPorts, dnsPodLabels, "
        "dnsServiceNamespace, flavor, namespace, nodeLocalDNS"
    )


def test_env_from_mapping_rejects_wrong_types() -> None:
    with pytest.raises(ValidationError) as caught:
        env_from_mapping({"nodeLocalDNS": "169.254.20.10", "dnsPodLabels": ["k8s-app"]})
    assert caught.value.render().splitlines() == [
        "<input>: $.egress.nodeLocalDNS: `nodeLocalDNS` must be a list",
        "<input>: $.egress.dnsPodLabels: `dnsPodLabels` must be a mapping of labels",
    ]


def test_env_rejects_bad_values() -> None:
    with pytest.raises(ValidationError) as caught:
        env_from_mapping(
            {
                "flavor": "calico",
                "nodeLocalDNS": ["169.254.20.10/32"],
                "apiServerEndpoints": ["10.0.0.1/8"],
                "apiServerPorts": ["443"],
                "dnsPodLabels": {},
            }
        )
    assert caught.value.render().splitlines() == [
        "<input>: $.egress.flavor: unknown flavor `calico`: use kubernetes or cilium",
        "<input>: $.egress.dnsPodLabels: the DNS pod labels cannot be empty",
        "  hint: an empty selector would match every pod in the DNS namespace",
        "<input>: $.egress.nodeLocalDNS[0]: `169.254.20.10/32` is not an IP address",
        "<input>: $.egress.apiServerEndpoints[0]: `10.0.0.1/8` is not a canonical CIDR: bits are "
        "set after the /8 prefix (newer API servers reject it)",
        "  hint: did you mean 10.0.0.0/8?",
        "<input>: $.egress.apiServerPorts[0]: `443` is not a port number 1-65535",
    ]


# --------------------------------------------------------------------------- properties


def _doc(cidr: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "gates.proompteng.ai/v1alpha1",
        "kind": "EgressPolicy",
        "metadata": {"name": "p", "namespace": "agents"},
        "spec": {
            "target": "runners",
            "destinations": [{"name": "d", "cidrs": [{"cidr": cidr}], "ports": ports}],
        },
    }


@given(st.ip_addresses(v=4), st.integers(min_value=1, max_value=32))
def test_any_cidr_is_canonical_or_refused_with_the_fix(address: Any, prefix: int) -> None:
    text = f"{address}/{prefix}"
    canonical = ipaddress.ip_network(text, strict=False)
    findings = validate_egress(_doc(text, [{"port": 443}]))
    if str(canonical) == text:
        objs = render_egress([_doc(text, [{"port": 443}])], EgressEnv())
        assert objs[0]["spec"]["egress"][1]["to"] == [{"ipBlock": {"cidr": text}}]
    else:
        assert [f.advice for f in findings] == [f"did you mean {canonical}?"]


@given(st.integers(min_value=1, max_value=65535), st.sampled_from(["TCP", "UDP", "SCTP"]))
def test_numeric_ports_render_as_ints_and_quoted_ones_are_refused(port: int, proto: str) -> None:
    objs = render_egress([_doc("192.0.2.0/24", [{"port": port, "protocol": proto}])], EgressEnv())
    assert objs[0]["spec"]["egress"][1]["ports"] == [{"port": port, "protocol": proto}]
    quoted = validate_egress(_doc("192.0.2.0/24", [{"port": str(port), "protocol": proto}]))
    assert [f.advice for f in quoted] == [f"write it without quotes: port: {port}"]


def test_env_addresses_have_one_reading() -> None:
    """The settings render into every policy: an IPv4-mapped endpoint CIDR is every IPv4
    address to Go (on the API server ports), a zone id is refused by the API server, and
    another spelling is what the output would carry (fifth red-team pass)."""
    with pytest.raises(ValidationError) as caught:
        env_from_mapping(
            {
                "nodeLocalDNS": ["fe80::1%eth0", "::ffff:169.254.20.10", "169.254.20.10\n"],
                "apiServerEndpoints": ["::ffff:0:0/96", "2001:DB8::1", "10.0.0.0/08"],
            }
        )
    assert caught.value.render().splitlines() == [
        "<input>: $.egress.nodeLocalDNS[0]: `fe80::1%eth0` has an IPv6 zone id (`%eth0`), "
        "which the API server refuses",
        "  hint: write fe80::1",
        "<input>: $.egress.nodeLocalDNS[1]: `::ffff:169.254.20.10` is an IPv4-mapped IPv6 "
        "address, which Kubernetes and Go read as the IPv4 CIDR `169.254.20.10/32`",
        "  hint: write 169.254.20.10/32 if you mean those IPv4 addresses",
        "<input>: $.egress.nodeLocalDNS[2]: `169.254.20.10\\n` is not an IP address",
        "<input>: $.egress.apiServerEndpoints[0]: `::ffff:0:0/96` is an IPv4-mapped IPv6 "
        "address, which Kubernetes and Go read as the IPv4 CIDR `0.0.0.0/0`",
        "  hint: write 0.0.0.0/0 if you mean those IPv4 addresses",
        "<input>: $.egress.apiServerEndpoints[1]: `2001:DB8::1` is not spelled as the API "
        "server writes it (`2001:db8::1`)",
        "  hint: write 2001:db8::1",
        "<input>: $.egress.apiServerEndpoints[2]: `10.0.0.0/08` is not spelled as the API "
        "server writes it (`10.0.0.0/8`): it warns, and a future release refuses it",
        "  hint: write 10.0.0.0/8 (lowercase, zeros compressed, no leading zeros)",
    ]
