"""The semantic rules of EgressPolicy documents (docs/egress.md), after the schema.

``validate_egress`` returns every finding of one document, located by JSON path;
``parse_valid`` validates a set of documents for one environment and parses them, or
raises one :class:`ValidationError` with every error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from approvalgate.approvals.errors import (
    ApprovalgateError,
    Finding,
    JsonPath,
    Location,
    ValidationError,
    format_json_path,
)
from approvalgate.compiler.egress.env import FLAVOR_SETTING, SETTINGS_PREFIX, EgressEnv
from approvalgate.compiler.egress.flavors import FLAVORS
from approvalgate.compiler.egress.model import (
    DNS_PORT,
    RESERVED_RULE_NAMES,
    EgressPolicy,
    parse_egress,
)
from approvalgate.compiler.egress.schema import schema_findings
from approvalgate.compiler.egress.syntax import (
    FQDN_LABEL,
    LABEL_KEY,
    LABEL_VALUE,
    PORT_NAME,
    IPNetwork,
    cidr_problem,
    network,
    within,
)


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
    findings = schema_findings(doc)
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
        if not LABEL_KEY.match(expr["key"]):
            yield Finding((*where, "key"), f"`{expr['key']}` is not a valid label key")
        for k, value in enumerate(expr.get("values", [])):
            if not LABEL_VALUE.match(value):
                yield Finding((*where, "values", k), f"`{value}` is not a valid label value")
        has_values = bool(expr.get("values"))
        if expr["operator"] in ("In", "NotIn") and not has_values:
            yield Finding(where, f"operator {expr['operator']} needs a non-empty `values` list")
        if expr["operator"] in ("Exists", "DoesNotExist") and "values" in expr:
            yield Finding((*where, "values"), f"operator {expr['operator']} takes no `values`")


def _check_labels(labels: Mapping[str, str], path: JsonPath) -> Iterator[Finding]:
    for key, value in labels.items():
        if not LABEL_KEY.match(key) or len(key.split("/")[0]) > 253:
            yield Finding((*path, key), f"`{key}` is not a valid label key")
        if not LABEL_VALUE.match(value):
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
    problem = cidr_problem(block["cidr"])
    if problem:
        yield Finding((*path, "cidr"), *problem)
        return
    cidr = network(block["cidr"])
    for k, text in enumerate(block.get("except", [])):
        where: JsonPath = (*path, "except", k)
        problem = cidr_problem(text)
        if problem:
            yield Finding(where, *problem)
            continue
        excepted = network(text)
        yield from _check_except(cidr, excepted, where, ctx)


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
    if not within(excepted, cidr):
        yield Finding(
            path,
            f"except `{excepted}` is not inside cidr `{cidr}`",
            "each except must be a strict subset of its cidr (the API server rejects it otherwise)",
        )
        return
    yield from _check_except_node_local(excepted, path, ctx)


def _check_except_node_local(excepted: IPNetwork, path: JsonPath, ctx: _Ctx) -> Iterator[Finding]:
    for ip in ctx.env.node_local_networks():
        if not within(ip, excepted):
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


def _check_fqdns(fqdns: Sequence[str], path: JsonPath, ctx: _Ctx) -> Iterator[Finding]:
    if ctx.target == "controlPlane":
        yield Finding(
            path,
            "fqdns cannot be used with target controlPlane",
            "the agents chart renders a core NetworkPolicy, which has no domain rules: use cidrs",
        )
    elif ctx.check_env and not FLAVORS[ctx.env.flavor].fqdns:
        able = " or ".join(f.name for f in FLAVORS.values() if f.fqdns)
        yield Finding(
            path,
            f"fqdns need the {able} flavor, but this environment renders flavor `{ctx.env.flavor}`",
            f"{FLAVORS[ctx.env.flavor].renders} has no domain rules: set `{FLAVOR_SETTING}: "
            f"{able}` for this environment, or replace the names with cidrs",
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
    if len(name) > 253 or not all(FQDN_LABEL.match(label) for label in labels):
        advice = "letters, digits, '-' and '.', with '*' as a wildcard (e.g. *.example.com)"
        if name.lower() != name:
            advice = f"domain names are lowercase here: did you mean {name.lower()}?"
        yield Finding(path, f"`{name}` is not a valid domain name or pattern", advice)


# ---- ports


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
    elif not PORT_NAME.match(value):
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
        if cidr_problem(block["cidr"]) is not None:
            continue
        net = network(block["cidr"])
        if net.prefixlen != 0:
            continue
        where: JsonPath = (*path, "cidrs", j, "cidr")
        if dest.get("allPorts") and not block.get("except"):
            yield Finding(
                where,
                f"`{net}` with `allPorts: true` opens egress to every address on every port",
                "list the ports this destination needs, or narrow the CIDR",
            )
        elif any(p["port"] == DNS_PORT for p in dest.get("ports", [])):
            yield Finding(
                where,
                f"port 53 to `{net}` lets pods use any DNS server (DNS tunnelling)",
                "cluster DNS comes from spec.dns; list external resolvers by address",
                severity="warning",
            )


def parse_valid(policies: Sequence[Mapping[str, Any]], env: EgressEnv) -> list[EgressPolicy]:
    """The models of ``policies``; raises :class:`ValidationError` with every error finding."""
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
