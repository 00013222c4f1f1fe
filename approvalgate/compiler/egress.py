"""EgressPolicy: validate the input kind and render it (issue 3).

Pipeline: ``validate_egress(doc, env)`` returns findings located by JSON path (schema first,
then the semantic rules of docs/egress.md); ``parse_egress(doc)`` builds the typed model of
a valid document; ``render_egress(docs, env)`` turns the ``runners`` policies into
NetworkPolicies (flavor ``kubernetes``) or CiliumNetworkPolicies (flavor ``cilium``);
``agents_values(docs, env)`` turns the ``controlPlane`` policies into the complete
``networkPolicy`` values block of the upstream agents chart.

The model pre-computes every rule (:class:`Rule`); the Jinja2 templates only lay them out,
and the rendered YAML is parsed back into plain dicts. For the packaged templates, exactly
as shipped, the same dicts are built directly (see ``_DIRECT_PINS``): parsing was most of
the time of a compile.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast

import yaml

from approvalgate.approvals.errors import (
    ApprovalgateError,
    Finding,
    JsonPath,
    Location,
    ValidationError,
    format_json_path,
)
from approvalgate.approvals.schemas import schema_findings

if TYPE_CHECKING:
    import jinja2

API_VERSION = "gates.proompteng.ai/v1alpha1"
KIND = "EgressPolicy"
SCHEMA_FILE = "egresspolicy.schema.json"
#: Where the environment settings live in approvalgate.yaml; used in messages only.
SETTINGS_PREFIX = "egress."
FLAVOR_SETTING = f"{SETTINGS_PREFIX}flavor"

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
POLICY_LABEL = "gates.proompteng.ai/egress-policy"
RULES_ANNOTATION = "gates.proompteng.ai/egress-rules"
POLICIES_ANNOTATION = "gates.proompteng.ai/egress-policies"
RUNNER_POD_LABEL = "agents.proompteng.ai/agent-run"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
CILIUM_NAMESPACE_LABEL = "k8s:io.kubernetes.pod.namespace"
DNS_PORT = 53
RESERVED_RULE_NAMES = ("dns", "dns-node-local", "api-server", "api-server-entity")

Flavor = Literal["kubernetes", "cilium"]
Target = Literal["runners", "controlPlane"]
Json = dict[str, Any]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_RUNNER_SELECTOR: Mapping[str, Any] = MappingProxyType(
    {"matchExpressions": [{"key": RUNNER_POD_LABEL, "operator": "Exists"}]}
)


# --------------------------------------------------------------------------- environment


def _frozen_labels(labels: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(sorted(labels.items())))


@dataclass(frozen=True)
class EgressEnv:
    """Per-environment facts the renderer needs (``egress:`` in approvalgate.yaml).

    ``node_local_dns`` lists node-local-dns addresses (empty: no node-local-dns rule);
    ``api_server_endpoints`` holds IPs or canonical CIDRs of the API server endpoints;
    ``namespace`` is where runner policies go when their metadata names no namespace.
    """

    flavor: Flavor = "kubernetes"
    namespace: str = "agents"
    dns_service_namespace: str = "kube-system"
    dns_pod_labels: Mapping[str, str] = field(
        default_factory=lambda: _frozen_labels({"k8s-app": "kube-dns"})
    )
    node_local_dns: tuple[str, ...] = ("169.254.20.10",)
    api_server_endpoints: tuple[str, ...] = ()
    api_server_ports: tuple[int, ...] = (443, 6443)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dns_pod_labels", _frozen_labels(self.dns_pod_labels))
        for name in ("node_local_dns", "api_server_endpoints", "api_server_ports"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        problems = list(_env_problems(self))
        if problems:
            raise ValidationError(
                [
                    ApprovalgateError(msg, location=Location(json_path=path), advice=advice)
                    for path, msg, advice in problems
                ]
            )

    def node_local_networks(self) -> list[IPNetwork]:
        return [_host_network(ip) for ip in self.node_local_dns]

    def api_server_networks(self) -> list[IPNetwork]:
        return [_host_network(e) for e in self.api_server_endpoints]


_ENV_KEYS = {
    "flavor": "flavor",
    "namespace": "namespace",
    "dnsServiceNamespace": "dns_service_namespace",
    "dnsPodLabels": "dns_pod_labels",
    "nodeLocalDNS": "node_local_dns",
    "apiServerEndpoints": "api_server_endpoints",
    "apiServerPorts": "api_server_ports",
}


_ENV_LISTS = ("nodeLocalDNS", "apiServerEndpoints", "apiServerPorts")


def env_from_mapping(data: Mapping[str, Any]) -> EgressEnv:
    """Build an :class:`EgressEnv` from the camelCase ``egress:`` settings mapping.

    Raises :class:`ValidationError` (paths under ``$.egress``) on unknown or bad settings.
    """
    problems = list(_env_shape_problems(data))
    if problems:
        raise ValidationError(
            [
                ApprovalgateError(msg, location=Location(json_path=path), advice=advice)
                for path, msg, advice in problems
            ]
        )
    return EgressEnv(**{_ENV_KEYS[key]: value for key, value in data.items()})


def _env_shape_problems(data: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    prefix = "$." + SETTINGS_PREFIX.rstrip(".")
    known = "known settings: " + ", ".join(sorted(_ENV_KEYS))
    for key in sorted(set(data) - set(_ENV_KEYS)):
        yield f"{prefix}.{key}", f"unknown egress setting `{key}`", known
    for key in _ENV_LISTS:
        if key in data and not isinstance(data[key], list):
            yield f"{prefix}.{key}", f"`{key}` must be a list", ""
    if "dnsPodLabels" in data and not isinstance(data["dnsPodLabels"], Mapping):
        yield f"{prefix}.dnsPodLabels", "`dnsPodLabels` must be a mapping of labels", ""


def _env_problems(env: EgressEnv) -> Iterator[tuple[str, str, str]]:
    """(JSON path, message, advice) for each bad environment setting."""
    prefix = "$." + SETTINGS_PREFIX.rstrip(".")
    if env.flavor not in ("kubernetes", "cilium"):
        yield f"{prefix}.flavor", f"unknown flavor `{env.flavor}`: use kubernetes or cilium", ""
    names = (("namespace", env.namespace), ("dnsServiceNamespace", env.dns_service_namespace))
    for key, value in names:
        if not isinstance(value, str) or not _DNS_LABEL.match(value):
            yield f"{prefix}.{key}", f"`{value}` is not a namespace name", ""
    yield from _env_label_problems(env, prefix)
    for i, ip in enumerate(env.node_local_dns):
        if not _is_ip(ip):
            yield f"{prefix}.nodeLocalDNS[{i}]", f"`{ip}` is not an IP address", ""
    for i, endpoint in enumerate(env.api_server_endpoints):
        problem = None if _is_ip(endpoint) else _cidr_problem(str(endpoint))
        if problem:
            yield f"{prefix}.apiServerEndpoints[{i}]", *problem
    for i, port in enumerate(env.api_server_ports):
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            yield f"{prefix}.apiServerPorts[{i}]", f"`{port}` is not a port number 1-65535", ""
    if not env.api_server_ports:
        yield f"{prefix}.apiServerPorts", "at least one API server port is needed", ""


def _env_label_problems(env: EgressEnv, prefix: str) -> Iterator[tuple[str, str, str]]:
    if not env.dns_pod_labels:
        yield (
            f"{prefix}.dnsPodLabels",
            "the DNS pod labels cannot be empty",
            "an empty selector would match every pod in the DNS namespace",
        )
    for key, value in env.dns_pod_labels.items():
        valid = isinstance(value, str) and _LABEL_VALUE.match(value)
        if not _LABEL_KEY.match(key) or not valid:
            yield f"{prefix}.dnsPodLabels.{key}", f"`{key}: {value}` is not a valid label", ""


def _is_ip(text: object) -> bool:
    if not isinstance(text, str):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=4096)
def _host_network(text: str) -> IPNetwork:
    """An IP (``10.0.0.1``) as a host network; a CIDR stays itself."""
    if "/" in text:
        return ipaddress.ip_network(text, strict=True)
    address = ipaddress.ip_address(text)
    return ipaddress.ip_network(f"{address}/{address.max_prefixlen}")


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Port:
    port: int | str
    protocol: str = "TCP"
    end_port: int | None = None

    def k8s(self) -> Json:
        out: Json = {"port": self.port, "protocol": self.protocol}
        if self.end_port is not None:
            out["endPort"] = self.end_port
        return out

    def cilium(self) -> Json:
        """Cilium's CRD types ``port`` as a string (``"443"``), ``endPort`` as an int."""
        out: Json = {"port": str(self.port), "protocol": self.protocol}
        if self.end_port is not None:
            out["endPort"] = self.end_port
        return out


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


# --------------------------------------------------------------------------- schema


def _resource_text(package: str, name: str) -> str:
    """Package data of the installed distribution, or of the source tree in development."""
    for candidate in (f"approvalgate.{package}", package):
        try:
            return resources.files(candidate).joinpath(name).read_text(encoding="utf-8")
        except (ModuleNotFoundError, FileNotFoundError):
            continue
    raise ApprovalgateError(
        f"packaged file {package}/{name} is missing",
        advice="reinstall approvalgate: its package data is incomplete",
    )


def _schema_findings(doc: object) -> list[Finding]:
    return schema_findings(SCHEMA_FILE, doc)


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Ctx:
    env: EgressEnv
    target: str
    dns: bool
    node_local_dns: bool
    check_env: bool


def validate_egress(doc: Mapping[str, Any], env: EgressEnv | None = None) -> list[Finding]:
    """Every problem of one EgressPolicy document, located by JSON path.

    Schema problems come first and alone (semantic rules need a well-typed document).
    Rules that depend on the environment (flavor, API server endpoints, node-local-dns)
    use ``env`` (default: ``EgressEnv()``) and are skipped for disabled policies.
    """
    findings = _schema_findings(doc)
    if findings:
        return findings
    env = env or EgressEnv()
    spec = doc["spec"]
    dns = spec.get("dns", {})
    ctx = _Ctx(
        env=env,
        target=spec["target"],
        dns=dns.get("enabled", True),
        node_local_dns=dns.get("nodeLocalDNS", True),
        check_env=spec.get("enabled", True),
    )
    return [
        *_check_metadata(doc["metadata"]),
        *_check_target(spec, ctx),
        *_check_api_server(spec, ctx),
        *_check_destinations(spec.get("destinations", []), ctx),
        *_check_tpl(spec, ctx, ("spec",)),
    ]


def _check_metadata(meta: Mapping[str, Any]) -> Iterator[Finding]:
    yield from _check_labels(meta.get("labels", {}), ("metadata", "labels"))


def _check_target(spec: Mapping[str, Any], ctx: _Ctx) -> Iterator[Finding]:
    selector = spec.get("podSelector")
    if selector is None:
        return
    path: JsonPath = ("spec", "podSelector")
    if ctx.target == "controlPlane":
        yield Finding(
            path,
            "podSelector cannot be set for target controlPlane",
            "the agents chart selects its own pods: remove spec.podSelector",
        )
        return
    yield from _check_selector(selector, path)


def _check_api_server(spec: Mapping[str, Any], ctx: _Ctx) -> Iterator[Finding]:
    if spec.get("apiServer", False) and ctx.check_env and not ctx.env.api_server_endpoints:
        yield Finding(
            ("spec", "apiServer"),
            "apiServer is requested but the environment has no API server endpoints",
            f"set `{SETTINGS_PREFIX}apiServerEndpoints` to the endpoint IPs (kubectl get "
            "endpointslices -n default -l kubernetes.io/service-name=kubernetes); a rule "
            "by port alone would open those ports to every address",
        )


def _check_selector(selector: Mapping[str, Any], path: JsonPath) -> Iterator[Finding]:
    yield from _check_labels(selector.get("matchLabels", {}), (*path, "matchLabels"))
    for i, expr in enumerate(selector.get("matchExpressions", [])):
        where: JsonPath = (*path, "matchExpressions", i)
        if not _LABEL_KEY.match(expr["key"]):
            yield Finding((*where, "key"), f"`{expr['key']}` is not a valid label key")
        for k, value in enumerate(expr.get("values", [])):
            if not _LABEL_VALUE.match(value):
                yield Finding((*where, "values", k), f"`{value}` is not a valid label value")
        has_values = bool(expr.get("values"))
        if expr["operator"] in ("In", "NotIn") and not has_values:
            yield Finding(where, f"operator {expr['operator']} needs a non-empty `values` list")
        if expr["operator"] in ("Exists", "DoesNotExist") and "values" in expr:
            yield Finding((*where, "values"), f"operator {expr['operator']} takes no `values`")


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?" + _LABEL_NAME + "$"
)
_LABEL_VALUE = re.compile(f"^{_LABEL_NAME}?$")


def _check_labels(labels: Mapping[str, str], path: JsonPath) -> Iterator[Finding]:
    for key, value in labels.items():
        if not _LABEL_KEY.match(key) or len(key.split("/")[0]) > 253:
            yield Finding((*path, key), f"`{key}` is not a valid label key")
        if not _LABEL_VALUE.match(value):
            yield Finding(
                (*path, key),
                f"`{value}` is not a valid label value",
                "at most 63 letters, digits, '-', '_' or '.', starting and ending with a "
                "letter or digit",
            )


def _check_tpl(node: object, ctx: _Ctx, path: JsonPath = ()) -> Iterator[Finding]:
    """controlPlane values may go through the chart's `tpl`: no `{{` anywhere in spec."""
    if ctx.target != "controlPlane":
        return
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _check_tpl(key, ctx, (*path, key))
            yield from _check_tpl(value, ctx, (*path, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _check_tpl(item, ctx, (*path, i))
    elif isinstance(node, str) and "{{" in node:
        yield Finding(
            path,
            "`{{` in a value rendered into the agents chart values",
            "the chart may pass values through `tpl`, which would run it as a template: "
            "remove the braces",
        )


# ---- destinations


def _check_destinations(dests: Sequence[Mapping[str, Any]], ctx: _Ctx) -> Iterator[Finding]:
    seen: set[str] = set()
    for i, dest in enumerate(dests):
        path: JsonPath = ("spec", "destinations", i)
        yield from _check_name(dest["name"], seen, (*path, "name"))
        yield from _check_peers(dest, path, ctx)
        yield from _check_ports(dest, path)
        yield from _check_wildcards(dest, path)


def _check_name(name: str, seen: set[str], path: JsonPath) -> Iterator[Finding]:
    if name in RESERVED_RULE_NAMES:
        yield Finding(
            path,
            f"destination name `{name}` is reserved for a generated rule",
            "pick another name; DNS and the API server have their own settings "
            "(spec.dns, spec.apiServer)",
        )
    elif name in seen:
        yield Finding(path, f"destination name `{name}` is used twice")
    seen.add(name)


def _check_peers(dest: Mapping[str, Any], path: JsonPath, ctx: _Ctx) -> Iterator[Finding]:
    for j, block in enumerate(dest.get("cidrs", [])):
        yield from _check_cidr_block(block, (*path, "cidrs", j), ctx)
    if "podSelector" in dest:
        yield from _check_selector(dest["podSelector"], (*path, "podSelector"))
    for j, peer in enumerate(dest.get("anyOf", [])):
        if "podSelector" in peer:
            yield from _check_selector(peer["podSelector"], (*path, "anyOf", j, "podSelector"))
    if "fqdns" in dest:
        yield from _check_fqdns(dest["fqdns"], (*path, "fqdns"), ctx)


def _check_cidr_block(block: Mapping[str, Any], path: JsonPath, ctx: _Ctx) -> Iterator[Finding]:
    problem = _cidr_problem(block["cidr"])
    if problem:
        yield Finding((*path, "cidr"), *problem)
        return
    cidr = _network(block["cidr"])
    for k, text in enumerate(block.get("except", [])):
        where: JsonPath = (*path, "except", k)
        problem = _cidr_problem(text)
        if problem:
            yield Finding(where, *problem)
            continue
        excepted = _network(text)
        yield from _check_except(cidr, excepted, where, ctx)


@lru_cache(maxsize=8192)
def _network(text: str) -> IPNetwork:
    """A canonical CIDR (checked by :func:`_cidr_problem`) as a network; the same CIDRs
    recur across specs, and parsing one costs more than the rest of its checks."""
    return ipaddress.ip_network(text)


@lru_cache(maxsize=8192)
def _cidr_problem(text: str) -> tuple[str, str] | None:
    """(message, advice) when ``text`` is not a canonical CIDR."""
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    else:
        if "/" in text:
            return None
        bits = ipaddress.ip_address(text).max_prefixlen
        return f"`{text}` has no prefix length", f"did you mean {text}/{bits}?"
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return (
            f"`{text}` is not a valid CIDR",
            "write an address and a prefix length, e.g. 10.0.0.0/8 or 2001:db8::/32",
        )
    return (
        f"`{text}` is not a canonical CIDR: bits are set after the /{loose.prefixlen} "
        "prefix (newer API servers reject it)",
        f"did you mean {loose}?",
    )


def _check_except(
    cidr: IPNetwork, excepted: IPNetwork, path: JsonPath, ctx: _Ctx
) -> Iterator[Finding]:
    if excepted == cidr:
        yield Finding(
            path,
            f"except `{excepted}` is the whole cidr `{cidr}`: the block allows nothing",
            "remove the destination, or except a smaller range",
        )
        return
    if not _within(excepted, cidr):
        yield Finding(
            path,
            f"except `{excepted}` is not inside cidr `{cidr}`",
            "each except must be a strict subset of its cidr (the API server rejects it otherwise)",
        )
        return
    yield from _check_except_node_local(excepted, path, ctx)


def _within(inner: IPNetwork, outer: IPNetwork) -> bool:
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False


def _check_except_node_local(excepted: IPNetwork, path: JsonPath, ctx: _Ctx) -> Iterator[Finding]:
    for ip in ctx.env.node_local_networks():
        if not _within(ip, excepted):
            continue
        covered = ip.network_address
        if ctx.dns and ctx.node_local_dns:
            advice = (
                "DNS still works through this policy's own dns rule; narrow the except "
                "(e.g. 169.254.169.254/32 for cloud metadata) to keep the intent clear"
            )
        else:
            advice = (
                "this policy does not allow node-local-dns itself, so lookups through it "
                "fail: enable spec.dns.nodeLocalDNS or narrow the except"
            )
        yield Finding(
            path,
            f"except `{excepted}` blocks node-local-dns at {covered} in this rule",
            advice,
            severity="warning",
        )


_FQDN_LABEL = re.compile(r"^(?=.{1,63}$)[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?$")


def _check_fqdns(fqdns: Sequence[str], path: JsonPath, ctx: _Ctx) -> Iterator[Finding]:
    if ctx.target == "controlPlane":
        yield Finding(
            path,
            "fqdns cannot be used with target controlPlane",
            "the agents chart renders a core NetworkPolicy, which has no domain rules: use cidrs",
        )
    elif ctx.check_env and ctx.env.flavor != "cilium":
        yield Finding(
            path,
            f"fqdns need the cilium flavor, but this environment renders flavor `{ctx.env.flavor}`",
            f"core NetworkPolicy has no domain rules: set `{FLAVOR_SETTING}: cilium` for "
            "this environment, or replace the names with cidrs",
        )
    if not ctx.dns:
        yield Finding(
            path,
            "fqdns need DNS: the allowed addresses are learned from the lookups the DNS proxy sees",
            "remove `spec.dns.enabled: false`",
        )
    for k, name in enumerate(fqdns):
        yield from _check_fqdn(name, (*path, k))


def _check_fqdn(name: str, path: JsonPath) -> Iterator[Finding]:
    if name.strip("*.") == "":
        yield Finding(
            path,
            f"`{name}` matches every domain name",
            "name the domains you need; if you mean every address, use cidrs 0.0.0.0/0 "
            "with explicit ports",
        )
        return
    labels = name.split(".")
    if len(name) > 253 or not all(_FQDN_LABEL.match(label) for label in labels):
        advice = "letters, digits, '-' and '.', with '*' as a wildcard (e.g. *.example.com)"
        if name.lower() != name:
            advice = f"domain names are lowercase here: did you mean {name.lower()}?"
        yield Finding(path, f"`{name}` is not a valid domain name or pattern", advice)


# ---- ports


_PORT_NAME = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")


def _check_ports(dest: Mapping[str, Any], path: JsonPath) -> Iterator[Finding]:
    kind = "cidrs" if "cidrs" in dest else "fqdns" if "fqdns" in dest else "pods"
    seen: set[tuple[object, str, object]] = set()
    for k, port in enumerate(dest.get("ports", [])):
        where: JsonPath = (*path, "ports", k)
        yield from _check_port(port, where, kind)
        key = (port["port"], port.get("protocol", "TCP"), port.get("endPort"))
        if key in seen:
            yield Finding(where, f"port {key[0]}/{key[1]} is listed twice", severity="warning")
        seen.add(key)


def _check_port(port: Mapping[str, Any], path: JsonPath, kind: str) -> Iterator[Finding]:
    value = port["port"]
    if isinstance(value, str):
        yield from _check_named_port(value, (*path, "port"), kind)
        if "endPort" in port:
            yield Finding(
                (*path, "endPort"),
                f"endPort needs a numeric port, but port `{value}` is a name",
                "give the first port of the range as a number",
            )
        return
    if not 1 <= value <= 65535:
        yield Finding((*path, "port"), f"port {value} is out of range 1-65535")
    end = port.get("endPort")
    if end is None:
        return
    if not 1 <= end <= 65535:
        yield Finding((*path, "endPort"), f"endPort {end} is out of range 1-65535")
    elif end < value:
        yield Finding(
            (*path, "endPort"),
            f"endPort {end} is below port {value}",
            f"a range runs from port up to endPort: did you mean port: {end}, endPort: {value}?",
        )


def _check_named_port(value: str, path: JsonPath, kind: str) -> Iterator[Finding]:
    if value.isdigit():
        yield Finding(
            path,
            f'port "{value}" is a string, so Kubernetes reads it as a port name, not a number',
            f"write it without quotes: port: {int(value)}",
        )
    elif not _PORT_NAME.match(value):
        yield Finding(
            path,
            f"`{value}` is not a valid port name",
            "a port name has 1-15 lowercase letters, digits and '-', at least one letter, "
            "and must match a containerPort name of the destination pods",
        )
    elif kind != "pods":
        peer = "an ipBlock (cidrs)" if kind == "cidrs" else "an fqdns"
        yield Finding(
            path,
            f"named port `{value}` cannot be used with {peer} destination",
            "a port name is resolved on the destination pods, and CNIs disagree on what it "
            "means for addresses outside the cluster: use the port number",
        )


def _check_wildcards(dest: Mapping[str, Any], path: JsonPath) -> Iterator[Finding]:
    for j, block in enumerate(dest.get("cidrs", [])):
        if _cidr_problem(block["cidr"]) is not None:
            continue
        network = _network(block["cidr"])
        if network.prefixlen != 0:
            continue
        where: JsonPath = (*path, "cidrs", j, "cidr")
        if dest.get("allPorts") and not block.get("except"):
            yield Finding(
                where,
                f"`{network}` with `allPorts: true` opens egress to every address on every port",
                "list the ports this destination needs, or narrow the CIDR",
            )
        elif any(p["port"] == DNS_PORT for p in dest.get("ports", [])):
            yield Finding(
                where,
                f"port 53 to `{network}` lets pods use any DNS server (DNS tunnelling)",
                "cluster DNS comes from spec.dns; list external resolvers by address",
                severity="warning",
            )


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """One egress rule, laid out by a template.

    ``peer_key`` is ``to`` for NetworkPolicy and ``toEndpoints``/``toCIDRSet``/``toFQDNs``/
    ``toEntities`` for Cilium; ``ports`` is the NetworkPolicy ``ports`` list or Cilium's
    ``toPorts`` list (empty: every port).
    """

    name: str
    peer_key: str
    peers: tuple[Any, ...]
    ports: tuple[Json, ...] = ()

    def k8s(self) -> Json:
        out: Json = {"to": list(self.peers)}
        if self.ports:
            out["ports"] = list(self.ports)
        return out


def _selector(selector: Mapping[str, Any]) -> Json:
    """A deep, plain, key-sorted copy of a label selector."""
    return cast(Json, _plain(selector))


def _plain(node: object) -> object:
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in sorted(node.items())}
    if isinstance(node, list | tuple):
        return [_plain(item) for item in node]
    return node


def _dns_ports(make: str) -> tuple[Json, ...]:
    ports = (Port(DNS_PORT, "UDP"), Port(DNS_PORT, "TCP"))
    return tuple(p.k8s() if make == "k8s" else p.cilium() for p in ports)


def _api_ports(env: EgressEnv) -> tuple[Port, ...]:
    return tuple(Port(p, "TCP") for p in env.api_server_ports)


def k8s_rules(policy: EgressPolicy, env: EgressEnv) -> list[Rule]:
    """NetworkPolicy egress rules, in order: dns, api-server, then the destinations."""
    rules: list[Rule] = []
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
        rules.append(Rule("dns", "to", tuple(peers), _dns_ports("k8s")))
    if policy.api_server:
        api = tuple({"ipBlock": {"cidr": str(n)}} for n in env.api_server_networks())
        rules.append(Rule("api-server", "to", api, tuple(p.k8s() for p in _api_ports(env))))
    rules += [_k8s_destination(d) for d in policy.destinations]
    return rules


def _k8s_destination(dest: Destination) -> Rule:
    peers: list[Json] = [_k8s_ip_block(block) for block in dest.cidrs]
    peers += [_k8s_peer(peer) for peer in dest.peers]
    return Rule(dest.name, "to", tuple(peers), tuple(p.k8s() for p in dest.ports))


def _k8s_ip_block(block: CidrBlock) -> Json:
    ip_block: Json = {"cidr": block.cidr}
    if block.except_:
        ip_block["except"] = list(block.except_)
    return {"ipBlock": ip_block}


def _k8s_peer(peer: Peer) -> Json:
    """Both fields in ONE peer: pods matching the selector in that namespace (AND)."""
    out: Json = {}
    if peer.namespace is not None:
        out["namespaceSelector"] = {"matchLabels": {NAMESPACE_NAME_LABEL: peer.namespace}}
    if peer.pod_selector is not None:
        out["podSelector"] = _selector(peer.pod_selector)
    return out


def cilium_rules(policy: EgressPolicy, env: EgressEnv) -> list[Rule]:
    """CiliumNetworkPolicy egress rules: one L3 peer kind per rule, as Cilium requires."""
    rules: list[Rule] = []
    if policy.dns:
        rules += _cilium_dns(policy, env)
    if policy.api_server:
        ports = ({"ports": [p.cilium() for p in _api_ports(env)]},)
        cidrs = tuple({"cidr": str(n)} for n in env.api_server_networks())
        rules.append(Rule("api-server", "toCIDRSet", cidrs, ports))
        rules.append(Rule("api-server-entity", "toEntities", ("kube-apiserver",), ports))
    for dest in policy.destinations:
        rules.append(_cilium_destination(dest))
    return rules


def _cilium_dns(policy: EgressPolicy, env: EgressEnv) -> list[Rule]:
    """DNS through Cilium's DNS proxy (``rules.dns``), so toFQDNs learns the addresses."""
    to_ports = ({"ports": list(_dns_ports("cilium")), "rules": {"dns": [{"matchPattern": "*"}]}},)
    labels = {f"k8s:{k}": v for k, v in env.dns_pod_labels.items()}
    labels[CILIUM_NAMESPACE_LABEL] = env.dns_service_namespace
    rules = [Rule("dns", "toEndpoints", ({"matchLabels": labels},), to_ports)]
    node_local = tuple({"cidr": str(n)} for n in env.node_local_networks())
    if policy.node_local_dns and node_local:
        rules.append(Rule("dns-node-local", "toCIDRSet", node_local, to_ports))
    return rules


def _cilium_destination(dest: Destination) -> Rule:
    to_ports = ({"ports": [p.cilium() for p in dest.ports]},) if dest.ports else ()
    if dest.cidrs:
        peers: tuple[Any, ...] = tuple(
            {"cidr": b.cidr, **({"except": list(b.except_)} if b.except_ else {})}
            for b in dest.cidrs
        )
        return Rule(dest.name, "toCIDRSet", peers, to_ports)
    if dest.fqdns:
        fqdns = tuple({"matchPattern" if "*" in n else "matchName": n} for n in dest.fqdns)
        return Rule(dest.name, "toFQDNs", fqdns, to_ports)
    endpoints = tuple(_cilium_endpoint(p) for p in dest.peers)
    return Rule(dest.name, "toEndpoints", endpoints, to_ports)


def _cilium_endpoint(peer: Peer) -> Json:
    """Namespace and pod labels in ONE endpoint selector (AND); no namespace: own one."""
    out = _selector(peer.pod_selector or {})
    if peer.namespace is not None:
        labels = dict(out.get("matchLabels", {}))
        labels[CILIUM_NAMESPACE_LABEL] = peer.namespace
        out["matchLabels"] = dict(sorted(labels.items()))
    return out


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Manifest:
    """What a template needs: names, metadata and the pre-computed rules."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    pod_selector: Json
    rules: tuple[Rule, ...]


_TEMPLATES: Mapping[Flavor, str] = MappingProxyType(
    {
        "kubernetes": "networkpolicy.yaml.j2",
        "cilium": "ciliumnetworkpolicy.yaml.j2",
    }
)


@lru_cache(maxsize=1)
def _jinja(templates_dir: str | None = None) -> jinja2.Environment:
    import jinja2

    # autoescape stays on as a safety net: templates pass every value through `tojson`
    # (JSON is YAML), and anything that is not would show up HTML-escaped, not injected.
    packaged = jinja2.FunctionLoader(lambda name: _resource_text("templates", name))
    loader: jinja2.BaseLoader = packaged
    if templates_dir is not None:  # a policy repo's own templates shadow the packaged ones
        loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(templates_dir), packaged])
    return jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_egress(
    policies: Sequence[Mapping[str, Any]], env: EgressEnv, templates_dir: str | None = None
) -> list[Json]:
    """NetworkPolicy (or CiliumNetworkPolicy) dicts for the enabled ``runners`` policies.

    Raises :class:`ValidationError` when a document has an error finding or two policies
    would render the same object. Output is sorted by namespace and name.
    """
    return _render_parsed(_parse_all(policies, env), env, templates_dir)


def render_egress_and_values(
    policies: Sequence[Mapping[str, Any]], env: EgressEnv, templates_dir: str | None = None
) -> tuple[list[Json], Json]:
    """``(render_egress(...), agents_values(...))`` from one validation of the documents."""
    return render_validated(_parse_all(policies, env), env, templates_dir)


def render_validated(
    parsed: Sequence[EgressPolicy], env: EgressEnv, templates_dir: str | None = None
) -> tuple[list[Json], Json]:
    """Like :func:`render_egress_and_values`, for documents ``validate_egress`` passed with
    this ``env`` (no error finding), parsed with :func:`parse_egress`."""
    return _render_parsed(parsed, env, templates_dir), _agents_values_parsed(parsed, env)


def _render_parsed(
    parsed: Sequence[EgressPolicy], env: EgressEnv, templates_dir: str | None
) -> list[Json]:
    manifests = [_manifest(p, env) for p in parsed if p.enabled and p.target == "runners"]
    _refuse_duplicates(manifests)
    name = _TEMPLATES[env.flavor]
    build = _direct_builder(name, templates_dir)
    if build is not None:
        rendered = [build(m) for m in manifests]
    else:
        template = _jinja(templates_dir).get_template(name)
        rendered = [_load_rendered(template.render(policy=m)) for m in manifests]
    return sorted(rendered, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))


# The templates stay the source of the output format. Rendering one and parsing the YAML
# back costs ~4 ms a policy (over a minute for 10,000), so for the packaged templates,
# byte for byte as pinned here, the same dicts are built directly. A repo's own template
# of that name, or any edit of a packaged one, changes the hash and goes through Jinja2
# again; tests/bench/test_render_direct.py checks both ways agree on the egress corpus and
# that the pins match the packaged templates.
_DIRECT_PINS: Mapping[str, str] = MappingProxyType(
    {
        "networkpolicy.yaml.j2": "4448655cf80a080b",
        "ciliumnetworkpolicy.yaml.j2": "0cd1dd8db5278afd",
    }
)


def _direct_builder(name: str, templates_dir: str | None) -> Any:
    """The direct builder of template ``name`` when the template used is the pinned one."""
    if templates_dir is not None and _custom_template(templates_dir, name):
        return None
    if _template_digest(name) != _DIRECT_PINS.get(name):
        return None
    return _DIRECT_BUILDERS[name]


def _custom_template(templates_dir: str, name: str) -> bool:
    """Would jinja2's FileSystemLoader find ``name`` there (shadowing the packaged one)?"""
    return os.path.isfile(os.path.join(templates_dir, *name.split("/")))


@lru_cache(maxsize=4)
def _template_digest(name: str) -> str:
    return hashlib.sha256(_resource_text("templates", name).encode()).hexdigest()[:16]


def _metadata(m: _Manifest) -> Json:
    meta: Json = {"name": m.name, "namespace": m.namespace, "labels": m.labels}
    if m.annotations:
        meta["annotations"] = m.annotations
    return meta


def _direct_networkpolicy(m: _Manifest) -> Json:
    """What networkpolicy.yaml.j2 renders, parsed: the same dict, without the YAML.

    No copy is needed: k8s_rules() and _manifest() build every dict and list afresh for
    each policy (lists, not tuples; nothing shared, or the canonical dumper would write
    YAML anchors: tests/bench/test_render_direct.py checks both).
    """
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(m),
        "spec": {
            "podSelector": m.pod_selector,
            "policyTypes": ["Egress"],
            "egress": [rule.k8s() for rule in m.rules],
        },
    }


def _direct_ciliumnetworkpolicy(m: _Manifest) -> Json:
    """What ciliumnetworkpolicy.yaml.j2 renders, parsed (copied: cilium_rules() shares
    its port lists between rules)."""
    egress: list[Json] = []
    for rule in m.rules:
        entry: Json = {rule.peer_key: list(rule.peers)}
        if rule.ports:
            entry["toPorts"] = list(rule.ports)
        egress.append(entry)
    obj = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": _metadata(m),
        "spec": {"endpointSelector": m.pod_selector, "egress": egress or [{}]},
    }
    return _fresh(obj)


def _fresh(obj: Json) -> Json:
    """A JSON round trip, as `tojson` + parsing does: plain types, nothing shared."""
    fresh: Json = json.loads(json.dumps(obj))
    return fresh


_DIRECT_BUILDERS: Mapping[str, Any] = MappingProxyType(
    {
        "networkpolicy.yaml.j2": _direct_networkpolicy,
        "ciliumnetworkpolicy.yaml.j2": _direct_ciliumnetworkpolicy,
    }
)


def _parse_all(policies: Sequence[Mapping[str, Any]], env: EgressEnv) -> list[EgressPolicy]:
    problems: list[ApprovalgateError] = []
    for doc in policies:
        name = _doc_name(doc)
        for f in validate_egress(doc, env):
            if f.severity == "error":
                location = Location(json_path=format_json_path(f.path))
                problems.append(
                    ApprovalgateError(
                        f"EgressPolicy {name}: {f.message}", location=location, advice=f.advice
                    )
                )
    if problems:
        raise ValidationError(problems)
    return [parse_egress(doc) for doc in policies]


def _doc_name(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata")
    return str(meta.get("name", "?")) if isinstance(meta, Mapping) else "?"


def _manifest(policy: EgressPolicy, env: EgressEnv) -> _Manifest:
    rules = k8s_rules(policy, env) if env.flavor == "kubernetes" else cilium_rules(policy, env)
    labels = {**policy.labels, MANAGED_BY_LABEL: "approvalgate", POLICY_LABEL: policy.name}
    annotations = dict(policy.annotations)
    if rules:
        annotations[RULES_ANNOTATION] = ",".join(r.name for r in rules)
    selector = policy.pod_selector
    return _Manifest(
        name=policy.name,
        namespace=policy.namespace or env.namespace,
        labels=dict(sorted(labels.items())),
        annotations=dict(sorted(annotations.items())),
        pod_selector=_selector(DEFAULT_RUNNER_SELECTOR if selector is None else selector),
        rules=tuple(rules),
    )


def _refuse_duplicates(manifests: Sequence[_Manifest]) -> None:
    seen: set[tuple[str, str]] = set()
    for m in manifests:
        key = (m.namespace, m.name)
        if key in seen:
            raise ValidationError(
                [
                    ApprovalgateError(
                        f"two EgressPolicies render {m.namespace}/{m.name}",
                        advice="give each runners policy a unique name within its namespace",
                    )
                ]
            )
        seen.add(key)


def _load_rendered(text: str) -> Json:
    obj = yaml.safe_load(text)
    if not isinstance(obj, dict):
        raise ApprovalgateError("an egress template rendered no object")  # a bug, not input
    return obj


# --------------------------------------------------------------------------- chart values


def agents_values(policies: Sequence[Mapping[str, Any]], env: EgressEnv) -> Json:
    """The complete ``networkPolicy`` block of the agents chart values.

    Built from the enabled ``controlPlane`` policies (several are merged in name order).
    Lists are complete because Helm replaces lists. This block restricts egress only:
    ``policyTypes: [Egress]`` and, for chart versions that hard-code
    ``policyTypes: [Ingress, Egress]`` and ignore ours, one allow-all ingress rule
    (``ingress: [{}]``) so that enabling egress control never cuts traffic to the control
    plane (docs/design.md). No enabled policy: ``enabled: false`` and an empty egress list.
    """
    return _agents_values_parsed(_parse_all(policies, env), env)


def _agents_values_parsed(parsed: Sequence[EgressPolicy], env: EgressEnv) -> Json:
    chosen = sorted(
        (p for p in parsed if p.enabled and p.target == "controlPlane"),
        key=lambda p: p.name,
    )
    block: Json = {"enabled": bool(chosen), "policyTypes": ["Egress"], "ingress": [{}]}
    block["egress"] = _unique([rule.k8s() for p in chosen for rule in k8s_rules(p, env)])
    if chosen:
        names = ",".join(p.name for p in chosen)
        block["annotations"] = {POLICIES_ANNOTATION: names}
    _refuse_template_braces(block)
    return block


def _unique(rules: list[Json]) -> list[Json]:
    """Drop exact repeats (two merged policies both asking for DNS), keeping the order."""
    out: list[Json] = []
    for rule in rules:
        if rule not in out:
            out.append(rule)
    return out


def _refuse_template_braces(block: Json) -> None:
    text = json.dumps(block)
    if "{{" in text:
        raise ApprovalgateError(
            "the agents values block would contain `{{`",
            advice="the chart may pass values through `tpl`: remove the braces from the "
            "controlPlane EgressPolicies or the egress settings",
        )
