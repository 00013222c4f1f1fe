"""The checks of each destination: its name, peers (cidrs, pods, fqdns) and ports."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from approvalgate.approvals.errors import Finding, JsonPath
from approvalgate.compiler.egress.checks import Ctx, check_selector
from approvalgate.compiler.egress.env import FLAVOR_SETTING
from approvalgate.compiler.egress.flavors import FLAVORS
from approvalgate.compiler.egress.model import RESERVED_RULE_NAMES
from approvalgate.compiler.egress.ports import check_ports, check_wildcard_union, check_wildcards
from approvalgate.compiler.egress.syntax import (
    FQDN_LABEL,
    IPNetwork,
    cidr_problem,
    network,
    shown,
    within,
)


def check_destinations(dests: Sequence[Mapping[str, Any]], ctx: Ctx) -> Iterator[Finding]:
    seen: set[str] = set()
    for i, dest in enumerate(dests):
        path: JsonPath = ("spec", "destinations", i)
        yield from _check_name(dest["name"], seen, (*path, "name"))
        yield from _check_peers(dest, path, ctx)
        yield from check_ports(dest, path)
        yield from check_wildcards(dest, path)
    yield from check_wildcard_union(dests)


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


def _check_peers(dest: Mapping[str, Any], path: JsonPath, ctx: Ctx) -> Iterator[Finding]:
    for j, block in enumerate(dest.get("cidrs", [])):
        yield from _check_cidr_block(block, (*path, "cidrs", j), ctx)
    if "podSelector" in dest:
        yield from check_selector(dest["podSelector"], (*path, "podSelector"))
    for j, peer in enumerate(dest.get("anyOf", [])):
        if "podSelector" in peer:
            yield from check_selector(peer["podSelector"], (*path, "anyOf", j, "podSelector"))
    if "fqdns" in dest:
        yield from _check_fqdns(dest["fqdns"], (*path, "fqdns"), ctx)


def _check_cidr_block(block: Mapping[str, Any], path: JsonPath, ctx: Ctx) -> Iterator[Finding]:
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
    cidr: IPNetwork, excepted: IPNetwork, path: JsonPath, ctx: Ctx
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


def _check_except_node_local(excepted: IPNetwork, path: JsonPath, ctx: Ctx) -> Iterator[Finding]:
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


def _check_fqdns(fqdns: Sequence[str], path: JsonPath, ctx: Ctx) -> Iterator[Finding]:
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
        if not name.isascii():
            advice = (
                "a letter outside ASCII (a look-alike to a reader): write an internationalised "
                "name in its xn-- (punycode) form"
            )
            name = name.encode("ascii", "backslashreplace").decode("ascii")
        elif name.lower() != name:
            advice = f"domain names are lowercase here: did you mean {name.lower()}?"
        yield Finding(path, f"`{shown(name)}` is not a valid domain name or pattern", advice)
