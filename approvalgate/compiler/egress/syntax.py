"""What a valid name, label, address and CIDR look like: the shared lexical checks.

Used by the environment settings and by the semantic rules of EgressPolicy documents.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Anchored with \A and \Z, never ^ and $: Python's `$` also matches before a final
# newline, so "web\n" passed as a label value and the API server refused the output.
DNS_LABEL = re.compile(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_LABEL_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
LABEL_KEY = re.compile(
    r"\A([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?" + _LABEL_NAME + r"\Z"
)
LABEL_VALUE = re.compile(rf"\A{_LABEL_NAME}?\Z")
FQDN_LABEL = re.compile(r"\A(?=.{1,63}\Z)[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?\Z")
PORT_NAME = re.compile(r"\A(?=.{1,15}\Z)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*\Z")


#: Domains of label and annotation keys that the tools between the output and the cluster
#: act on: kustomize drops an object annotated `config.kubernetes.io/local-config: "true"`
#: (so Argo CD never applies it), Argo CD runs an `argocd.argoproj.io/hook` object as a
#: hook and deletes it, Helm and kubectl keep their own bookkeeping there.
TOOL_DOMAINS = (
    "config.kubernetes.io",
    "config.k8s.io",
    "argoproj.io",
    "helm.sh",
    "kubectl.kubernetes.io",
)


def tool_owned(key: str) -> str | None:
    """The tool domain of a label or annotation key, or None."""
    prefix, slash, _ = key.partition("/")
    if not slash:
        return None
    prefix = prefix.lower()
    for domain in TOOL_DOMAINS:
        if prefix == domain or prefix.endswith("." + domain):
            return domain
    return None


def shown(text: str) -> str:
    """``text`` for a one-line message: control and invisible characters as escapes."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


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
    """(message, advice) when ``text`` is not a CIDR with one reading: canonical (no bits
    after the prefix), spelled as Go and RFC 5952 write it, no zone id, not IPv4-mapped.

    Python's ``ipaddress`` and Go (the API server, CNIs) read the others apart: Go reads
    ``::ffff:0:0/96`` as ``0.0.0.0/0`` (Python: a small IPv6 range), refuses a zone id
    (Python keeps it), and the API server warns on ``10.0.0.0/08`` or ``2001:DB8::/32``,
    which a future release refuses, while the output carries the text as written.
    """
    if "%" in text:
        return _zone_problem(text)
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    else:
        mapped = _mapped_problem(text, net)
        if mapped:
            return mapped
        if "/" not in text:
            bits = ipaddress.ip_address(text).max_prefixlen
            return f"`{text}` has no prefix length", f"did you mean {text}/{bits}?"
        if str(net) != text:
            return (
                f"`{text}` is not spelled as the API server writes it (`{net}`): it warns, "
                "and a future release refuses it",
                f"write {net} (lowercase, zeros compressed, no leading zeros)",
            )
        return None
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return (
            f"`{text}` is not a valid CIDR",
            "write an address and a prefix length, e.g. 10.0.0.0/8 or 2001:db8::/32",
        )
    return _mapped_problem(text, loose) or (
        f"`{text}` is not a canonical CIDR: bits are set after the /{loose.prefixlen} "
        "prefix (newer API servers reject it)",
        f"did you mean {loose}?",
    )


def ip_problem(text: object) -> tuple[str, str] | None:
    """(message, advice) when ``text`` is not an IP address with one reading (see
    :func:`cidr_problem`); a bare address, no prefix."""
    if not is_ip(text) or not isinstance(text, str):
        return f"`{shown(str(text))}` is not an IP address", ""
    if "%" in text:
        return _zone_problem(text)
    address = ipaddress.ip_address(text)
    mapped = _mapped_problem(text, host_network(text))
    if mapped:
        return mapped
    if str(address) != text:
        return (
            f"`{text}` is not spelled as the API server writes it (`{address}`)",
            f"write {address}",
        )
    return None


def _zone_problem(text: str) -> tuple[str, str]:
    address, _, rest = text.partition("%")
    prefix = rest.partition("/")[2]
    bare = f"{address}/{prefix}" if prefix else address
    return (
        f"`{text}` has an IPv6 zone id (`%{rest.partition('/')[0]}`), which the API server refuses",
        f"write {bare}",
    )


def _mapped_problem(text: str, net: IPNetwork) -> tuple[str, str] | None:
    """An IPv4-mapped IPv6 network: Go's ``net.IPNet`` reads ``::ffff:a.b.c.d/(96+n)`` as
    the IPv4 ``a.b.c.d/n`` (``::ffff:0:0/96`` is every IPv4 address)."""
    if not isinstance(net, ipaddress.IPv6Network) or net.prefixlen < 96:
        return None
    v4 = net.network_address.ipv4_mapped
    if v4 is None:
        return None
    go = ipaddress.IPv4Network((v4, net.prefixlen - 96))
    return (
        f"`{text}` is an IPv4-mapped IPv6 address, which Kubernetes and Go read as the IPv4 "
        f"CIDR `{go}`",
        f"write {go} if you mean those IPv4 addresses",
    )


def within(inner: IPNetwork, outer: IPNetwork) -> bool:
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False
