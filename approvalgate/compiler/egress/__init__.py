"""EgressPolicy: validate the input kind and render it (issue 3).

Pipeline: ``validate_egress(doc, env)`` returns findings located by JSON path (schema first,
then the semantic rules of docs/egress.md); ``parse_egress(doc)`` builds the typed model of
a valid document; ``render_egress(docs, env)`` turns the ``runners`` policies into the
objects of the environment's flavor (``FLAVORS``: NetworkPolicy for ``kubernetes``,
CiliumNetworkPolicy for ``cilium``); ``agents_values(docs, env)`` turns the
``controlPlane`` policies into the complete ``networkPolicy`` values block of the upstream
agents chart.

Modules, lowest first (an import-linter contract in pyproject.toml keeps the order):
``syntax``, ``model`` and ``schema``; ``flavor`` (the interface) and ``flavors/`` (one
module per CNI, and the registry); ``env`` (the settings); ``checks``, ``ports``,
``destinations`` and ``validation`` (the semantic rules); ``templates`` (a repo's own
templates) and ``values``; ``render``. ``k8s_rules`` and ``cilium_rules`` are the
documented names of the two flavors' ``rules`` (docs/egress.md); a new flavor needs none.
"""

from __future__ import annotations

from approvalgate.compiler.egress.env import EgressEnv, env_from_mapping
from approvalgate.compiler.egress.flavor import Flavor, Manifest
from approvalgate.compiler.egress.flavors import FLAVORS
from approvalgate.compiler.egress.flavors.cilium import rules as cilium_rules
from approvalgate.compiler.egress.flavors.kubernetes import rules as k8s_rules
from approvalgate.compiler.egress.model import API_VERSION, KIND, EgressPolicy, Rule, parse_egress
from approvalgate.compiler.egress.render import (
    render_egress,
    render_egress_and_values,
    render_validated,
)
from approvalgate.compiler.egress.validation import validate_egress
from approvalgate.compiler.egress.values import agents_values

__all__ = [
    "API_VERSION",
    "FLAVORS",
    "KIND",
    "EgressEnv",
    "EgressPolicy",
    "Flavor",
    "Manifest",
    "Rule",
    "agents_values",
    "cilium_rules",
    "env_from_mapping",
    "k8s_rules",
    "parse_egress",
    "render_egress",
    "render_egress_and_values",
    "render_validated",
    "validate_egress",
]
