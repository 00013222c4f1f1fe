"""Rendering: the enabled ``runners`` policies as the flavor's objects, plus the values.

Output is sorted by namespace and name; two policies rendering the same object are refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from approvalgate.approvals.errors import ApprovalgateError, ValidationError
from approvalgate.compiler.egress.env import EgressEnv
from approvalgate.compiler.egress.flavor import Flavor, Manifest
from approvalgate.compiler.egress.flavors import FLAVORS
from approvalgate.compiler.egress.model import (
    DEFAULT_RUNNER_SELECTOR,
    MANAGED_BY_LABEL,
    POLICY_LABEL,
    RULES_ANNOTATION,
    EgressPolicy,
    Json,
    selector,
)
from approvalgate.compiler.egress.templates import repo_template
from approvalgate.compiler.egress.validation import parse_valid
from approvalgate.compiler.egress.values import values_block


def render_egress(
    policies: Sequence[Mapping[str, Any]], env: EgressEnv, templates_dir: str | None = None
) -> list[Json]:
    """The flavor's objects (NetworkPolicy, CiliumNetworkPolicy) for the enabled
    ``runners`` policies.

    Raises :class:`ValidationError` when a document has an error finding or two policies
    would render the same object. Output is sorted by namespace and name.
    """
    return _render_parsed(parse_valid(policies, env), env, templates_dir)


def render_egress_and_values(
    policies: Sequence[Mapping[str, Any]], env: EgressEnv, templates_dir: str | None = None
) -> tuple[list[Json], Json]:
    """``(render_egress(...), agents_values(...))`` from one validation of the documents."""
    return render_validated(parse_valid(policies, env), env, templates_dir)


def render_validated(
    parsed: Sequence[EgressPolicy], env: EgressEnv, templates_dir: str | None = None
) -> tuple[list[Json], Json]:
    """Like :func:`render_egress_and_values`, for documents ``validate_egress`` passed with
    this ``env`` (no error finding), parsed with ``parse_egress``."""
    return _render_parsed(parsed, env, templates_dir), values_block(parsed, env)


def _render_parsed(
    parsed: Sequence[EgressPolicy], env: EgressEnv, templates_dir: str | None
) -> list[Json]:
    flavor = FLAVORS[env.flavor]
    manifests = [manifest(p, env, flavor) for p in parsed if p.enabled and p.target == "runners"]
    _refuse_duplicates(manifests)
    build = repo_template(templates_dir, flavor.template) or flavor.build
    rendered = [build(m) for m in manifests]
    return sorted(rendered, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))


def manifest(policy: EgressPolicy, env: EgressEnv, flavor: Flavor) -> Manifest:
    """What ``flavor`` lays out for one runners policy: its rules and final metadata."""
    rules = flavor.rules(policy, env)
    labels = {**policy.labels, MANAGED_BY_LABEL: "approvalgate", POLICY_LABEL: policy.name}
    annotations = dict(policy.annotations)
    if rules:
        annotations[RULES_ANNOTATION] = ",".join(r.name for r in rules)
    pod_selector = policy.pod_selector
    return Manifest(
        name=policy.name,
        namespace=policy.namespace or env.namespace,
        labels=dict(sorted(labels.items())),
        annotations=dict(sorted(annotations.items())),
        pod_selector=selector(DEFAULT_RUNNER_SELECTOR if pod_selector is None else pod_selector),
        rules=tuple(rules),
    )


def _refuse_duplicates(manifests: Sequence[Manifest]) -> None:
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
