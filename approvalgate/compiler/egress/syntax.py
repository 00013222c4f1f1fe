"""What a valid name, label, address and CIDR look like: the shared lexical checks.

Used by the environment settings and by the semantic rules of EgressPolicy documents.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?" + _LABEL_NAME + "$"
)
LABEL_VALUE = re.compile(f"^{_LABEL_NAME}?$")
FQDN_LABEL = re.compile(r"^(?=.{1,63}$)[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?$")
PORT_NAME = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")


def is_ip(text: object) -> bool:
    if not isinstance(text, str):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=4096)
def host_network(text: str) -> IPNetwork:
    """An IP (``10.0.0.1``) as a host network; a CIDR stays itself."""
    if "/" in text:
        return ipaddress.ip_network(text, strict=True)
    address = ipaddress.ip_address(text)
    return ipaddress.ip_network(f"{address}/{address.max_prefixlen}")


@lru_cache(maxsize=8192)
def network(text: str) -> IPNetwork:
    """A canonical CIDR (checked by :func:`cidr_problem`) as a network; the same CIDRs
    recur across specs, and parsing one costs more than the rest of its checks."""
    return ipaddress.ip_network(text)


@lru_cache(maxsize=8192)
def cidr_problem(text: str) -> tuple[str, str] | None:
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


def within(inner: IPNetwork, outer: IPNetwork) -> bool:
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False
