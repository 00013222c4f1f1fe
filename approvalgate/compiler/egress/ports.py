"""The ports of a destination, and what a wildcard CIDR may open."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from approvalgate.approvals.errors import Finding, JsonPath
from approvalgate.compiler.egress.model import DNS_PORT
from approvalgate.compiler.egress.syntax import PORT_NAME, cidr_problem, network, shown


def check_ports(dest: Mapping[str, Any], path: JsonPath) -> Iterator[Finding]:
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
            f"`{shown(value)}` is not a valid port name",
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


def every_port(dest: Mapping[str, Any]) -> tuple[str, str] | None:
    """(what the destination writes, what it opens) when it opens every port, or every port
    of one protocol: ``allPorts: true``, or ranges that together run from 1 to 65535
    (``port: 1, endPort: 65535`` reads narrower than `allPorts` and opens as much TCP)."""
    if dest.get("allPorts"):
        return "`allPorts: true`", "every port"
    for protocol in ("TCP", "UDP", "SCTP"):
        ranges = sorted(
            span
            for p in dest.get("ports", [])
            if p.get("protocol", "TCP") == protocol
            for span in [_span(p)]
            if span is not None
        )
        reach = 0  # every port up to here is open
        for low, high in ranges:
            if low > reach + 1:
                break
            reach = max(reach, high)
        if reach >= 65535:
            return f"ports 1-65535/{protocol}", f"every {protocol} port"
    return None


def _span(port: Mapping[str, Any]) -> tuple[int, int] | None:
    """The numeric range of a port entry; None for a port name."""
    value, end = port["port"], port.get("endPort")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    low = int(value)
    high = int(end) if isinstance(end, int | float) and not isinstance(end, bool) else low
    return low, max(low, high)


def _reaches(port: Mapping[str, Any], number: int) -> bool:
    span = _span(port)
    return span is not None and span[0] <= number <= span[1]


def check_wildcards(dest: Mapping[str, Any], path: JsonPath) -> Iterator[Finding]:
    for j, block in enumerate(dest.get("cidrs", [])):
        if cidr_problem(block["cidr"]) is not None:
            continue
        net = network(block["cidr"])
        if net.prefixlen != 0:
            continue
        where: JsonPath = (*path, "cidrs", j, "cidr")
        wide = every_port(dest)
        if wide and not block.get("except"):
            yield Finding(
                where,
                f"`{net}` with {wide[0]} opens egress to every address on {wide[1]}",
                "list the ports this destination needs, or narrow the CIDR",
            )
        elif any(_reaches(p, DNS_PORT) for p in dest.get("ports", [])):
            yield Finding(
                where,
                f"port 53 to `{net}` lets pods use any DNS server (DNS tunnelling)",
                "cluster DNS comes from spec.dns; list external resolvers by address",
                severity="warning",
            )


def check_wildcard_union(dests: Sequence[Mapping[str, Any]]) -> Iterator[Finding]:
    """Blocks that together are every address, on every port: ``0.0.0.0/1`` and
    ``128.0.0.0/1`` (or ``::/1`` and ``8000::/1``, or any split), in one destination or
    several, open what ``0.0.0.0/0`` would, and read as if they did not. A block's
    ``except`` is taken out of it, and may be given back by another block."""
    for version in (4, 6):
        finding = _union_finding(dests, version)
        if finding is not None:
            yield finding


def _union_finding(dests: Sequence[Mapping[str, Any]], version: int) -> Finding | None:
    covered: list[Any] = []  # collapsed: what the blocks so far reach
    shown: list[str] = []
    whole = ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0")
    ranges = False  # a block open on every port by its port ranges, not allPorts
    for i, dest in enumerate(dests):
        wide = every_port(dest)
        if wide is None:
            continue
        for j, block in enumerate(dest.get("cidrs", [])):
            if cidr_problem(block["cidr"]) is not None:
                continue
            net = network(block["cidr"])
            excepts = [e for e in block.get("except") or () if cidr_problem(e) is None]
            if net.version != version or (net.prefixlen == 0 and not excepts):
                continue  # /0 without except: check_wildcards
            covered = list(ipaddress.collapse_addresses([*covered, *_without(net, excepts)]))
            ranges = ranges or not dest.get("allPorts")
            if covered == [whole]:
                others = ", ".join(shown[:4])
                kind = "blocks open on every port" if ranges else "`allPorts: true` blocks"
                return Finding(
                    ("spec", "destinations", i, "cidrs", j, "cidr"),
                    f"`{net}` with the other {kind} ({others}"
                    f"{', ...' if len(shown) > 4 else ''}) covers every IPv{version} "
                    "address: egress to every address on every port",
                    "list the ports these destinations need, or narrow the CIDRs",
                )
            shown.append(f"{net} except {', '.join(excepts)}" if excepts else str(net))
    return None


def _without(net: Any, excepts: Sequence[str]) -> list[Any]:
    """``net`` less its ``except`` blocks (those of its version inside it)."""
    parts = [net]
    for text in excepts:
        cut = network(text)
        if cut.version != net.version:
            continue
        parts = [
            piece
            for part in parts
            for piece in (part.address_exclude(cut) if cut.subnet_of(part) else (part,))
        ]
        parts = [p for p in parts if not p.subnet_of(cut)]
    return parts
