"""Per-environment egress settings (``egress:`` in approvalgate.yaml), checked on creation."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from approvalgate.approvals.errors import ApprovalgateError, Location, ValidationError
from approvalgate.compiler.egress.flavors import FLAVORS
from approvalgate.compiler.egress.syntax import (
    DNS_LABEL,
    LABEL_KEY,
    LABEL_VALUE,
    IPNetwork,
    cidr_problem,
    host_network,
    ip_problem,
    is_ip,
)

#: Where the environment settings live in approvalgate.yaml; used in messages only.
SETTINGS_PREFIX = "egress."
FLAVOR_SETTING = f"{SETTINGS_PREFIX}flavor"


def _frozen_labels(labels: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(sorted(labels.items())))


@dataclass(frozen=True)
class EgressEnv:
    """Per-environment facts the renderer needs (``egress:`` in approvalgate.yaml).

    ``flavor`` names a registered flavor (``flavors/__init__.py``); ``node_local_dns`` lists
    node-local-dns addresses (empty: no node-local-dns rule); ``api_server_endpoints`` holds
    IPs or canonical CIDRs of the API server endpoints; ``namespace`` is where runner
    policies go when their metadata names no namespace.
    """

    flavor: str = "kubernetes"
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
        _raise_problems(list(_env_problems(self)))

    def node_local_networks(self) -> list[IPNetwork]:
        return [host_network(ip) for ip in self.node_local_dns]

    def api_server_networks(self) -> list[IPNetwork]:
        return [host_network(e) for e in self.api_server_endpoints]


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
    _raise_problems(list(_env_shape_problems(data)))
    return EgressEnv(**{_ENV_KEYS[key]: value for key, value in data.items()})


def _raise_problems(problems: list[tuple[str, str, str]]) -> None:
    if problems:
        raise ValidationError(
            [
                ApprovalgateError(msg, location=Location(json_path=path), advice=advice)
                for path, msg, advice in problems
            ]
        )


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
    if not isinstance(env.flavor, str) or env.flavor not in FLAVORS:  # may be unhashable
        known = " or ".join(FLAVORS)
        yield f"{prefix}.flavor", f"unknown flavor `{env.flavor}`: use {known}", ""
    names = (("namespace", env.namespace), ("dnsServiceNamespace", env.dns_service_namespace))
    for key, value in names:
        if not isinstance(value, str) or not DNS_LABEL.match(value):
            yield f"{prefix}.{key}", f"`{value}` is not a namespace name", ""
    yield from _env_label_problems(env, prefix)
    for i, ip in enumerate(env.node_local_dns):
        problem = ip_problem(ip)
        if problem:
            yield f"{prefix}.nodeLocalDNS[{i}]", *problem
    for i, endpoint in enumerate(env.api_server_endpoints):
        problem = ip_problem(endpoint) if is_ip(endpoint) else cidr_problem(str(endpoint))
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
        valid = isinstance(value, str) and LABEL_VALUE.match(value)
        if not LABEL_KEY.match(key) or not valid:
            yield f"{prefix}.dnsPodLabels.{key}", f"`{key}: {value}` is not a valid label", ""
