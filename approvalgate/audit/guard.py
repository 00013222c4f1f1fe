"""The guard's own objects (docs/design.md "The guard"): the chart's ValidatingAdmissionPolicy
``<release>-guard`` refusing updates that weaken the webhook configuration, and in
optInLabel mode ``<release>-guard-opt-in`` refusing removal of a namespace's opt-in label,
each with its binding of the same name.

Missing altogether (a cluster before Kubernetes 1.30, or ``guard.enabled: false``): a note,
the configuration is compared anyway and nothing is admitted through it. Present but
altered (a binding without its policy or the other way round, ``failurePolicy: Ignore``, an
action other than Deny, a selector or parameter narrowing the binding, a rule no longer
matching the configuration's updates, an exclusion or selector in the policy's
matchConstraints, or, given the chart's render, any other expression
than the chart's): a finding, since that is how someone who may edit admission policies
would make way for a weakened configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from approvalgate.audit.findings import Finding
from approvalgate.kube.resources import Resource

POLICIES: Final = Resource(
    "admissionregistration.k8s.io", "v1", "validatingadmissionpolicies", namespaced=False
)
BINDINGS: Final = Resource(
    "admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings", namespaced=False
)
POLICY_KIND: Final = "ValidatingAdmissionPolicy"
BINDING_KIND: Final = "ValidatingAdmissionPolicyBinding"
RESTORE: Final = (
    "restore it from the chart (`helm template` with your values, guard.enabled) and find out "
    "who changed it: whoever may edit validatingadmissionpolicies or their bindings can "
    "remove the guard (docs/deploy.md, section 6)"
)

Read = Callable[[Resource, str], Mapping[str, Any] | None]


def suffixed(name: str, suffix: str) -> str:
    """The chart's approvalgate.suffixedName: ``<name>-<suffix>`` within 63 characters."""
    return f"{name[: 62 - len(suffix)].removesuffix('-')}-{suffix}"


def rendered_guard(documents: Iterable[Any]) -> list[dict[str, Any]]:
    """The guard's policies and bindings among a `helm template` output's documents."""
    return [
        dict(d)
        for d in documents
        if isinstance(d, Mapping) and d.get("kind") in (POLICY_KIND, BINDING_KIND)
    ]


def audit_guard(
    read: Read, config: str, opt_in: bool, rendered: Sequence[Mapping[str, Any]] = ()
) -> list[Finding]:
    """Findings on the guard of the webhook configuration ``config`` (and, ``opt_in``, on the
    opt-in label's); ``rendered``: the chart's guard objects, when known, to compare with."""
    out = _pair(
        read, suffixed(config, "guard"), "validatingwebhookconfigurations", config, rendered
    )
    if opt_in:
        out += _pair(read, suffixed(config, "guard-opt-in"), "namespaces", "", rendered)
    return out


def _pair(
    read: Read, name: str, resource: str, object_name: str, rendered: Sequence[Mapping[str, Any]]
) -> list[Finding]:
    policy, binding = read(POLICIES, name), read(BINDINGS, name)
    guarded = f"the {resource} {object_name}".rstrip() if object_name else f"the {resource}"
    if policy is None and binding is None:
        return [
            Finding(
                "webhook",
                "note",
                f"{POLICY_KIND}/{name}",
                f"the guard of {guarded} is not installed: whoever may patch it can weaken the "
                "gate (a matchCondition outlives every server-side apply sync) and only this "
                "audit finds it afterwards",
                "render the chart's guard (guard.enabled, Kubernetes 1.30 or later)",
            )
        ]
    problems: list[tuple[str, str, str]] = []  # (subject, field, what)
    if policy is None:
        problems.append((f"{POLICY_KIND}/{name}", "", "its binding exists, the policy does not"))
    else:
        problems += [
            (f"{POLICY_KIND}/{name}", f, w)
            for f, w in _policy_problems(policy, resource, object_name)
        ]
    if binding is None:
        problems.append((f"{BINDING_KIND}/{name}", "", "the policy exists, its binding does not"))
    else:
        problems += [(f"{BINDING_KIND}/{name}", f, w) for f, w in _binding_problems(binding, name)]
    for kind, live in ((POLICY_KIND, policy), (BINDING_KIND, binding)):
        expected = next(
            (
                r
                for r in rendered
                if r.get("kind") == kind and (r.get("metadata") or {}).get("name") == name
            ),
            None,
        )
        if expected is not None and live is not None:
            problems += [(f"{kind}/{name}", f, w) for f, w in _differs(expected, live, kind)]
    return [
        Finding(
            "webhook",
            "finding",
            subject,
            f"the guard of {guarded} was altered: {what}",
            RESTORE,
            field,
        )
        for subject, field, what in problems
    ]


def _policy_problems(
    policy: Mapping[str, Any], resource: str, object_name: str
) -> list[tuple[str, str]]:
    spec = policy.get("spec") or {}
    out: list[tuple[str, str]] = []
    if spec.get("failurePolicy", "Fail") != "Fail":
        out.append(
            ("spec.failurePolicy", f"failurePolicy is {spec.get('failurePolicy')}, not Fail")
        )
    constraints = spec.get("matchConstraints") or {}
    rules = constraints.get("resourceRules") or []
    if not any(_rule_matches(rule, resource, object_name) for rule in rules):
        out.append(
            (
                "spec.matchConstraints.resourceRules",
                f"its rules no longer match an UPDATE of {resource} {object_name}".rstrip(),
            )
        )
    # what the chart never renders there, each a way to leave the guarded object out
    for key in ("excludeResourceRules", "namespaceSelector", "objectSelector"):
        if _selects(constraints.get(key)):
            out.append(
                (f"spec.matchConstraints.{key}", f"its matchConstraints.{key} leaves objects out")
            )
    if constraints.get("matchPolicy", "Equivalent") != "Equivalent":
        out.append(
            (
                "spec.matchConstraints.matchPolicy",
                f"its matchPolicy is {constraints.get('matchPolicy')}, not Equivalent",
            )
        )
    if not spec.get("validations"):
        out.append(("spec.validations", "it holds no validation"))
    return out


def _selects(value: object) -> bool:
    """Whether a selector or rule list holds anything (the API server stores ``{}`` for an
    unset selector: every object)."""
    if isinstance(value, Mapping):
        return any(value.get(key) for key in ("matchLabels", "matchExpressions")) or not (
            set(value) <= {"matchLabels", "matchExpressions"}
        )
    return bool(value)


def _rule_matches(rule: Mapping[str, Any], resource: str, object_name: str) -> bool:
    operations = rule.get("operations") or []
    names = rule.get("resourceNames") or []
    return (
        bool({"UPDATE", "*"} & set(operations))
        and bool({resource, "*"} & set(rule.get("resources") or []))
        and (not names or not object_name or object_name in names)
    )


def _binding_problems(binding: Mapping[str, Any], name: str) -> list[tuple[str, str]]:
    spec = binding.get("spec") or {}
    out: list[tuple[str, str]] = []
    if spec.get("policyName") != name:
        out.append(("spec.policyName", f"it binds {spec.get('policyName')!r}, not {name}"))
    if "Deny" not in (spec.get("validationActions") or []):
        actions = ", ".join(spec.get("validationActions") or []) or "none"
        out.append(("spec.validationActions", f"its actions are {actions}, without Deny"))
    if spec.get("paramRef"):
        out.append(("spec.paramRef", "it names parameters the chart's binding does not"))
    match = spec.get("matchResources") or {}
    for key in ("namespaceSelector", "objectSelector"):
        if match.get(key):
            out.append((f"spec.matchResources.{key}", f"its {key} narrows what it guards"))
    for key in ("resourceRules", "excludeResourceRules"):
        if match.get(key):
            out.append((f"spec.matchResources.{key}", f"its {key} narrow what it guards"))
    return out


#: The fields compared with the chart's render (the rest the API server defaults).
_COMPARED: Final = {
    POLICY_KIND: ("matchConditions", "variables", "validations"),
    BINDING_KIND: ("validationActions",),
}


def _differs(
    expected: Mapping[str, Any], live: Mapping[str, Any], kind: str
) -> list[tuple[str, str]]:
    want, have = expected.get("spec") or {}, live.get("spec") or {}
    return [
        (f"spec.{key}", f"{key} differ from the chart's render")
        for key in _COMPARED[kind]
        if (want.get(key) or []) != (have.get(key) or [])
    ]
