"""The ``networkPolicy`` values block of the upstream agents chart (``controlPlane``).

The chart renders a core NetworkPolicy whatever the environment's flavor, so the rules are
always those of flavor ``kubernetes``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from approvalgate.approvals.errors import ApprovalgateError
from approvalgate.compiler.egress.env import EgressEnv
from approvalgate.compiler.egress.flavors import kubernetes
from approvalgate.compiler.egress.model import POLICIES_ANNOTATION, EgressPolicy, Json
from approvalgate.compiler.egress.validation import parse_valid


def agents_values(policies: Sequence[Mapping[str, Any]], env: EgressEnv) -> Json:
    """The complete ``networkPolicy`` block of the agents chart values.

    Built from the enabled ``controlPlane`` policies (several are merged in name order).
    Lists are complete because Helm replaces lists. This block restricts egress only:
    ``policyTypes: [Egress]`` and, for chart versions that hard-code
    ``policyTypes: [Ingress, Egress]`` and ignore ours, one allow-all ingress rule
    (``ingress: [{}]``) so that enabling egress control never cuts traffic to the control
    plane (docs/design.md). No enabled policy: ``enabled: false`` and an empty egress list.
    """
    return values_block(parse_valid(policies, env), env)


def values_block(parsed: Sequence[EgressPolicy], env: EgressEnv) -> Json:
    """:func:`agents_values` of documents already validated for ``env`` and parsed."""
    chosen = sorted(
        (p for p in parsed if p.enabled and p.target == "controlPlane"),
        key=lambda p: p.name,
    )
    block: Json = {"enabled": bool(chosen), "policyTypes": ["Egress"], "ingress": [{}]}
    block["egress"] = _unique(
        [kubernetes.egress_rule(rule) for p in chosen for rule in kubernetes.rules(p, env)]
    )
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
