"""The one interface every CNI flavor implements, and what it lays out.

A flavor turns an :class:`~.model.EgressPolicy` into :class:`~.model.Rule` objects
(``rules``) and lays one policy's rules out as the CNI's object (``build``). A new flavor is
one module under ``flavors/`` that defines a :class:`Flavor`, plus one entry in
``flavors/__init__.py``; the settings check, the fqdns rule and rendering read the
registry, so nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from approvalgate.compiler.egress.model import EgressPolicy, Json, Port, Rule

if TYPE_CHECKING:  # the environment checks flavor names against the registry
    from approvalgate.compiler.egress.env import EgressEnv


@dataclass(frozen=True)
class Manifest:
    """One runner policy ready to lay out: names, metadata and the flavor's rules.

    A repo's own template (``templates:`` in approvalgate.yaml) sees it as ``policy``.
    """

    name: str
    namespace: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    pod_selector: Json
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Flavor:
    """One CNI's policy format, selected by the ``egress.flavor`` setting.

    ``name`` is the setting's value; ``template`` the file name in a repo's templates folder
    that replaces ``build`` (rendered with Jinja2, then parsed); ``renders`` says what it
    renders, in messages; ``fqdns`` whether it has domain rules. ``build`` must return plain
    JSON types with no dict or list shared, within or across objects (the canonical dumper
    would write YAML anchors).
    """

    name: str
    template: str
    renders: str
    fqdns: bool
    rules: Callable[[EgressPolicy, EgressEnv], list[Rule]]
    build: Callable[[Manifest], Json]


def metadata(m: Manifest) -> Json:
    """The rendered object's metadata, the same for every flavor."""
    meta: Json = {"name": m.name, "namespace": m.namespace, "labels": m.labels}
    if m.annotations:
        meta["annotations"] = m.annotations
    return meta


def api_ports(env: EgressEnv) -> tuple[Port, ...]:
    """The API server ports of the environment, TCP."""
    return tuple(Port(p, "TCP") for p in env.api_server_ports)
