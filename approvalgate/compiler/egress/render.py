"""Rendering: the enabled ``runners`` policies as the flavor's objects, plus the values.

Output is sorted by namespace and name; two policies rendering the same object are refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from approvalgate.approvals.errors import ApprovalgateError, Location, ValidationError
from approvalgate.compiler.egress.env import EgressEnv
from approvalgate.compiler.egress.flavor import Flavor, Manifest
from approvalgate.compiler.egress.flavors import FLAVORS
from approvalgate.compiler.egress.model import (
    DEFAULT_DENY_NAME,
    DEFAULT_RUNNER_SELECTOR,
    MANAGED_BY_LABEL,
    POLICY_LABEL,
    RULES_ANNOTATION,
    EgressPolicy,
    Json,
    selector,
)
from approvalgate.compiler.egress.templates import layout_problems, repo_template
from approvalgate.compiler.egress.validation import parse_valid
from approvalgate.compiler.egress.values import values_block


def render_egress(
    policies: Sequence[Mapping[str, Any]], env: EgressEnv, templates_dir: str | None = None
) -> list[Json]:
    """The flavor's objects (NetworkPolicy, CiliumNetworkPolicy) for the enabled
    ``runners`` policies, and a default-deny where they leave runner pods unselected
    (:func:`default_deny`).

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
    runners = [p for p in parsed if p.enabled and p.target == "runners"]
    manifests = [manifest(p, env, flavor) for p in runners]
    manifests += default_deny(runners, manifests)
    _refuse_duplicates(manifests)
    own = repo_template(templates_dir, flavor.template)
    if own is None:
        rendered = [flavor.build(m) for m in manifests]
    else:
        rendered = [own(m) for m in manifests]
        _refuse_more_than_declared(rendered, manifests, flavor, templates_dir or "")
    return sorted(rendered, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))


def _refuse_more_than_declared(
    rendered: Sequence[Json], manifests: Sequence[Manifest], flavor: Flavor, templates_dir: str
) -> None:
    """A repo template lays out what the policy declares: its object must be the flavor's,
    but for the labels and annotations it chooses (docs/egress.md, "Repo templates")."""
    template = os.path.join(templates_dir, flavor.template)
    problems = [
        ApprovalgateError(
            f"the repo template renders EgressPolicy {m.namespace}/{m.name} otherwise than "
            f"it declares: {message}",
            location=Location(file=template, json_path=path),
            advice="a repo template lays out the rules the flavor computed (policy.rules, "
            "policy.pod_selector) and may choose labels and annotations; anything else is "
            "declared in the EgressPolicy, where reviewers read it",
        )
        for obj, m in zip(rendered, manifests, strict=True)
        for path, message in layout_problems(obj, flavor.build(m))
    ]
    if problems:
        raise ValidationError(problems)


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


def default_deny(runners: Sequence[EgressPolicy], manifests: Sequence[Manifest]) -> list[Manifest]:
    """A default-deny for every runner pod of a namespace whose policies all select some
    runner pods only (a custom ``podSelector``).

    NetworkPolicies add up and a pod that no policy selects may send anything: a policy
    for `agents.proompteng.ai/agent: codex` leaves the runs of every other agent, which
    whoever creates the run picks, with no restriction. This one selects every runner pod
    and allows nothing, so it restricts only the pods no other policy selects.
    """
    covered = {m.namespace for p, m in zip(runners, manifests, strict=True) if _all_runners(p)}
    labels = {MANAGED_BY_LABEL: "approvalgate", POLICY_LABEL: DEFAULT_DENY_NAME}
    return [
        Manifest(
            name=DEFAULT_DENY_NAME,
            namespace=namespace,
            labels=dict(sorted(labels.items())),
            annotations={},
            pod_selector=selector(DEFAULT_RUNNER_SELECTOR),
            rules=(),
        )
        for namespace in sorted({m.namespace for m in manifests} - covered)
    ]


def _all_runners(policy: EgressPolicy) -> bool:
    """Whether the policy selects every runner pod: the default selector, or every pod."""
    chosen = policy.pod_selector
    if chosen is None:
        return True
    if selector(chosen) == selector(DEFAULT_RUNNER_SELECTOR):
        return True
    return not chosen.get("matchLabels") and not chosen.get("matchExpressions")


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
