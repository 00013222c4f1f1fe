"""The live ValidatingWebhookConfiguration against what the chart renders.

Only drift that lets an AgentRun request reach the API server's storage without our decision
is a *finding*: the configuration gone, our webhook entry gone, ``failurePolicy: Ignore``,
rules that no longer send CREATE or UPDATE of agentruns, a namespace or object selector that
excludes more, ``matchConditions`` that skip requests, requests sent to another endpoint, or
a CA that is not ours. Everything else that differs (timeout, sideEffects, extra rules, a
wider selector...) is a *note*: it changes latency or availability, not who is checked.

The comparison is pure: :func:`compare_webhook` takes both objects as plain dicts, plus the
versions of agentruns the API server serves (from discovery) and the enforced namespaces.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from approvalgate.approvals.errors import InputError
from approvalgate.approvals.policy import OPT_IN_LABEL
from approvalgate.audit.findings import Finding

WEBHOOK_ENTRY: Final = "agentruns.approvalgate.proompteng.ai"
GATES_ENTRY: Final = "gates.approvalgate.proompteng.ai"
GATES_GROUP: Final = "gates.proompteng.ai"
GATES_RESOURCES: Final = ("approvalrequests", "approvaldecisions", "approvaluses")
AGENTS_GROUP: Final = "agents.proompteng.ai"
AGENTRUNS: Final = "agentruns"
PARENT_RULES: Final = (  # (group, resource): the parents that make AgentRuns, CREATE and UPDATE
    ("schedules.proompteng.ai", "schedules"),
    ("orchestration.proompteng.ai", "orchestrationruns"),
    ("swarm.proompteng.ai", "swarms"),
)
CONTENT_RESOURCES: Final = (  # CREATE, UPDATE and DELETE
    "implementationspecs",
    "agents",
    "agentproviders",
)
INJECT_ANNOTATION: Final = "cert-manager.io/inject-ca-from"
NAME_LABEL: Final = "kubernetes.io/metadata.name"
DEFAULT_RELEASE: Final = "approvalgate"
DEFAULT_NAMESPACE: Final = "approvalgate-system"

# What the API server assumes for a field that is left out (admissionregistration/v1).
_DEFAULTS: Final[Mapping[str, Any]] = {
    "failurePolicy": "Fail",
    "matchPolicy": "Equivalent",
    "timeoutSeconds": 10,
    "namespaceSelector": {},
    "objectSelector": {},
    "matchConditions": [],
}

_RESTORE: Final = (
    "restore it from the chart (`helm upgrade`, or sync the approvalgate Argo CD "
    "application), audit the AgentRuns created since (this audit lists them), and restrict "
    "who may edit validatingwebhookconfigurations (webhooks never guard their own "
    "configuration)"
)

Requirement = tuple[str, str, frozenset[str]]


def chart_defaults(
    name: str = DEFAULT_RELEASE,
    namespace: str = DEFAULT_NAMESPACE,
    *,
    exclude: Sequence[str] = (),
    opt_in: bool = False,
) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration the chart renders with its default values.

    ``name`` is the release's full name (the configuration's and the Service's name) and
    ``namespace`` the release namespace; ``exclude`` and ``opt_in`` are the bundle's
    ``excludeNamespaces`` and ``namespaceSelection: optInLabel``, from which the chart
    builds the namespaceSelector (``exclude`` only without pinned bundle-signing keys: with
    them every namespace is sent). Kept equal to ``helm template`` by a test.
    """
    selector: dict[str, Any] = {}
    if opt_in:
        selector["matchLabels"] = {OPT_IN_LABEL: "true"}
    if exclude:
        selector["matchExpressions"] = [
            {"key": NAME_LABEL, "operator": "NotIn", "values": list(dict.fromkeys(exclude))}
        ]
    service = {"name": name, "namespace": namespace, "path": "/validate", "port": 443}
    common = {
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": 5,
        # rendered although empty, so that a server-side apply sync owns it (design.md)
        "objectSelector": {},
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {
            "name": name,
            "annotations": {INJECT_ANNOTATION: f"{namespace}/{name}-tls"},
        },
        "webhooks": [
            {
                "name": WEBHOOK_ENTRY,
                "admissionReviewVersions": ["v1"],
                "clientConfig": {"service": dict(service)},
                "rules": [
                    {
                        "apiGroups": [AGENTS_GROUP],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [AGENTRUNS, f"{AGENTRUNS}/scale"],
                        "scope": "Namespaced",
                    },
                    *(
                        {
                            "apiGroups": [group],
                            "apiVersions": ["*"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": [resource, f"{resource}/scale"],
                            "scope": "Namespaced",
                        }
                        for group, resource in PARENT_RULES
                    ),
                    {
                        "apiGroups": [AGENTS_GROUP],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE", "DELETE"],
                        "resources": [
                            *CONTENT_RESOURCES,
                            *(f"{r}/scale" for r in CONTENT_RESOURCES),
                        ],
                        "scope": "Namespaced",
                    },
                ],
                **common,
                "namespaceSelector": selector,
            },
            {  # the approval queue, judged in every namespace (the chart says why)
                "name": GATES_ENTRY,
                "admissionReviewVersions": ["v1"],
                "clientConfig": {"service": dict(service)},
                "rules": [
                    {
                        "apiGroups": [GATES_GROUP],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE", "DELETE"],
                        "resources": list(GATES_RESOURCES),
                        "scope": "Namespaced",
                    }
                ],
                **common,
                "namespaceSelector": {},
            },
        ],
    }


def pick_configuration(documents: Iterable[Any], source: str) -> dict[str, Any]:
    """The one ValidatingWebhookConfiguration among ``documents`` (e.g. ``helm template``)."""
    found = [
        d
        for d in documents
        if isinstance(d, dict) and d.get("kind") == "ValidatingWebhookConfiguration"
    ]
    if len(found) != 1:
        raise InputError(
            f"{source}: expected exactly one ValidatingWebhookConfiguration, found {len(found)}",
            advice="pass the output of `helm template RELEASE charts/approvalgate -n NAMESPACE "
            "-f rendered/ENV/approvalgate-values.yaml` (or just its webhook configuration)",
        )
    return found[0]


@dataclass(frozen=True)
class _Context:
    subject: str
    served: tuple[str, ...] | None
    enforced: frozenset[str]

    def finding(self, field: str, message: str, advice: str = _RESTORE) -> Finding:
        return Finding("webhook", "finding", self.subject, message, advice, field)

    def note(self, field: str, message: str, advice: str = "") -> Finding:
        return Finding("webhook", "note", self.subject, message, advice, field)


def compare_webhook(
    expected: Mapping[str, Any],
    live: Mapping[str, Any] | None,
    *,
    served_versions: Sequence[str] | None = None,
    enforced_namespaces: Iterable[str] = (),
) -> list[Finding]:
    """Findings (weakening drift) and notes (harmless drift) of ``live`` against ``expected``.

    ``served_versions``: the versions of agentruns the API server serves (None: unknown).
    """
    name = str((expected.get("metadata") or {}).get("name", ""))
    ctx = _Context(
        f"ValidatingWebhookConfiguration/{name}",
        tuple(served_versions) if served_versions is not None else None,
        frozenset(enforced_namespaces),
    )
    if live is None:
        return [
            ctx.finding(
                "",
                f"the ValidatingWebhookConfiguration {name} does not exist: no AgentRun request "
                "is sent to approvalgate, the gate is off",
            )
        ]
    out: list[Finding] = []
    live_entries = {str(h.get("name")): h for h in live.get("webhooks") or []}
    expected_names = set()
    for want in expected.get("webhooks") or []:
        entry = str(want.get("name"))
        expected_names.add(entry)
        have = live_entries.get(entry)
        if have is None:
            out.append(
                ctx.finding(
                    f"webhooks[{entry}]",
                    f"the webhook {entry} was removed from the configuration: no AgentRun "
                    "request is sent to approvalgate, the gate is off",
                )
            )
            continue
        out += _compare_entry(ctx, entry, want, have, expected, live)
    for extra in sorted(set(live_entries) - expected_names):
        out.append(
            ctx.note(
                f"webhooks[{extra}]",
                f"the configuration has a webhook the chart does not render ({extra}); "
                "it does not change what approvalgate checks",
                "remove it unless someone added it on purpose",
            )
        )
    # the configuration-wide checks (metadata annotations) run once per entry: report once
    return list(dict.fromkeys(out))


def _get(entry: Mapping[str, Any], key: str) -> Any:
    value = entry.get(key)
    return _DEFAULTS.get(key) if value is None else value


def _compare_entry(
    ctx: _Context,
    entry: str,
    want: Mapping[str, Any],
    have: Mapping[str, Any],
    expected: Mapping[str, Any],
    live: Mapping[str, Any],
) -> list[Finding]:
    out: list[Finding] = []
    prefix = f"webhooks[{entry}]"

    if _get(have, "failurePolicy") != _get(want, "failurePolicy"):
        if _get(have, "failurePolicy") == "Ignore":
            out.append(
                ctx.finding(
                    f"{prefix}.failurePolicy",
                    "failurePolicy is Ignore (the chart sets Fail): whenever the webhook is "
                    "down, slow or unreachable, AgentRuns are admitted without a decision",
                )
            )
        else:
            out.append(
                ctx.note(
                    f"{prefix}.failurePolicy",
                    f"failurePolicy is {_get(have, 'failurePolicy')} (the chart sets "
                    f"{_get(want, 'failurePolicy')}); this fails closed",
                )
            )

    out += _compare_rules(ctx, prefix, want, have)

    for key, what in (("namespaceSelector", "namespace"), ("objectSelector", "object")):
        out += _compare_selector(ctx, f"{prefix}.{key}", what, _get(want, key), _get(have, key))

    want_conditions = {_condition(c) for c in _get(want, "matchConditions")}
    have_conditions = {_condition(c) for c in _get(have, "matchConditions")}
    for name, expression in sorted(have_conditions - want_conditions):
        out.append(
            ctx.finding(
                f"{prefix}.matchConditions",
                f"matchCondition {name} ({expression}) is not in the chart: requests for which "
                "it is false skip the webhook and are admitted without a decision",
            )
        )
    if want_conditions - have_conditions:
        out.append(
            ctx.note(
                f"{prefix}.matchConditions",
                "matchConditions of the chart are missing: more requests reach the webhook",
            )
        )

    out += _compare_client(ctx, prefix, want, have, expected, live)

    if _get(have, "timeoutSeconds") != _get(want, "timeoutSeconds"):
        out.append(
            ctx.note(
                f"{prefix}.timeoutSeconds",
                f"timeoutSeconds is {_get(have, 'timeoutSeconds')} (the chart sets "
                f"{_get(want, 'timeoutSeconds')}); with failurePolicy Fail a timeout denies, "
                "so this changes latency, not who is checked",
                "set webhook.timeoutSeconds in the chart values if the change is wanted",
            )
        )
    if have.get("sideEffects") != want.get("sideEffects"):
        out.append(
            ctx.note(
                f"{prefix}.sideEffects",
                f"sideEffects is {have.get('sideEffects')} (the chart sets "
                f"{want.get('sideEffects')}); server-side dry-runs may be refused, nothing is "
                "admitted because of it",
            )
        )
    if sorted(have.get("admissionReviewVersions") or []) != sorted(
        want.get("admissionReviewVersions") or []
    ):
        out.append(
            ctx.note(
                f"{prefix}.admissionReviewVersions",
                f"admissionReviewVersions is {have.get('admissionReviewVersions')} (the chart "
                f"sets {want.get('admissionReviewVersions')}); the webhook answers v1 and "
                "v1beta1 alike",
            )
        )
    return out


def _condition(condition: Mapping[str, Any]) -> tuple[str, str]:
    return (str(condition.get("name", "")), str(condition.get("expression", "")))


# --- rules ------------------------------------------------------------------------------


def _resource_matches(resources: Sequence[str], resource: str) -> bool:
    base, _, sub = resource.partition("/")
    for pattern in resources:
        if pattern in (resource, "*/*"):
            return True
        if pattern == "*" and not sub:
            return True
        if sub and pattern in (f"{base}/*", f"*/{sub}"):
            return True
    return False


def _rule_covers(rule: Mapping[str, Any], group: str, resource: str, operation: str) -> bool:
    """The rule matches ``operation`` on the namespaced ``resource`` in ``group`` (any version)."""
    groups = rule.get("apiGroups") or []
    operations = rule.get("operations") or []
    scope = rule.get("scope") or "*"
    return (
        (group in groups or "*" in groups)
        and (operation in operations or "*" in operations)
        and _resource_matches(rule.get("resources") or [], resource)
        and scope in ("*", "Namespaced")
    )


def _uncovered_versions(
    rules: Sequence[Mapping[str, Any]],
    group: str,
    resource: str,
    operation: str,
    wanted: Sequence[str],
    match_policy: str,
    served: tuple[str, ...] | None,
) -> list[str]:
    """Versions of ``wanted`` (``*``: every served version) whose requests skip the webhook."""
    listed: set[str] = set()
    for rule in rules:
        if _rule_covers(rule, group, resource, operation):
            listed.update(rule.get("apiVersions") or [])
    if "*" in listed:
        return []
    needed = (list(served) if served else ["*"]) if "*" in wanted else list(wanted)
    if match_policy == "Equivalent":
        # A request in any version is converted and matched against every served version.
        usable = listed & set(served) if served else listed & set(needed)
        return [] if usable else needed
    return [v for v in needed if v not in listed]


def _compare_rules(
    ctx: _Context, prefix: str, want: Mapping[str, Any], have: Mapping[str, Any]
) -> list[Finding]:
    out: list[Finding] = []
    match_policy = str(_get(have, "matchPolicy"))
    have_rules = have.get("rules") or []
    missing: list[str] = []
    for rule in want.get("rules") or []:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for operation in rule.get("operations") or []:
                    versions = _uncovered_versions(
                        have_rules,
                        group,
                        resource,
                        operation,
                        rule.get("apiVersions") or ["*"],
                        match_policy,
                        ctx.served,
                    )
                    if versions:
                        which = "any version" if versions == ["*"] else ", ".join(versions)
                        missing.append(f"{operation} of {resource}.{group} ({which})")
    if missing:
        policy = (
            f" (matchPolicy {match_policy})" if match_policy != _get(want, "matchPolicy") else ""
        )
        out.append(
            ctx.finding(
                f"{prefix}.rules",
                f"the rules{policy} no longer send {'; '.join(missing)} to the webhook: those "
                "requests are admitted without a decision",
            )
        )
        return out
    if _normal_rules(have_rules) != _normal_rules(want.get("rules") or []):
        out.append(
            ctx.note(
                f"{prefix}.rules",
                "the rules differ from the chart's but still send every CREATE and UPDATE "
                "of agentruns to the webhook; extra operations or resources only add requests",
                "restore the chart's rules unless the change is wanted",
            )
        )
    if match_policy != _get(want, "matchPolicy"):
        out.append(
            ctx.note(
                f"{prefix}.matchPolicy",
                f"matchPolicy is {match_policy} (the chart sets {_get(want, 'matchPolicy')}); "
                "every served version of agentruns is still matched",
            )
        )
    return out


def _normal_rules(rules: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            tuple(sorted(r.get("apiGroups") or [])),
            tuple(sorted(r.get("apiVersions") or [])),
            tuple(sorted(r.get("operations") or [])),
            tuple(sorted(r.get("resources") or [])),
            r.get("scope") or "*",
        )
        for r in rules
    )


# --- selectors ----------------------------------------------------------------------------


def requirements(selector: Mapping[str, Any] | None) -> list[Requirement]:
    """A label selector as a list of ANDed requirements (matchLabels become ``In``)."""
    if not selector:
        return []
    out: list[Requirement] = [
        (str(k), "In", frozenset([str(v)])) for k, v in (selector.get("matchLabels") or {}).items()
    ]
    for expression in selector.get("matchExpressions") or []:
        out.append(
            (
                str(expression.get("key")),
                str(expression.get("operator")),
                frozenset(str(v) for v in expression.get("values") or []),
            )
        )
    return out


def implies(known: Requirement, other: Requirement) -> bool:
    """Every label set that satisfies ``known`` also satisfies ``other``."""
    key, operator, values = known
    other_key, other_operator, other_values = other
    if key != other_key:
        return False
    if known == other:
        return True
    if operator == "In":
        return (
            (other_operator == "In" and values <= other_values)
            or (other_operator == "NotIn" and not values & other_values)
            or other_operator == "Exists"
        )
    if operator == "NotIn":
        return other_operator == "NotIn" and other_values <= values
    if operator == "DoesNotExist":
        return other_operator in ("DoesNotExist", "NotIn")
    return operator == "Exists" and other_operator == "Exists"


def narrowing(
    expected: Mapping[str, Any] | None, live: Mapping[str, Any] | None
) -> list[Requirement]:
    """Requirements of ``live`` that ``expected`` does not imply: what the live selector excludes
    beyond the chart's. Empty: everything the chart's selector matches, the live one matches."""
    known = requirements(expected)
    return [r for r in requirements(live) if not any(implies(k, r) for k in known)]


def describe(requirement: Requirement) -> str:
    key, operator, values = requirement
    shown = f" [{', '.join(sorted(values))}]" if values else ""
    return f"{key} {operator}{shown}"


def _name_matches(requirement: Requirement, namespace: str) -> bool | None:
    """Whether the namespace ``namespace`` satisfies a requirement on its name label."""
    key, operator, values = requirement
    if key != NAME_LABEL:
        return None
    return {
        "In": namespace in values,
        "NotIn": namespace not in values,
        "Exists": True,
        "DoesNotExist": False,
    }.get(operator)


def _compare_selector(
    ctx: _Context, field: str, what: str, want: Mapping[str, Any], have: Mapping[str, Any]
) -> list[Finding]:
    extra = narrowing(want, have)
    if extra:
        excluded = sorted(
            ns for ns in ctx.enforced - {"*"} if any(_name_matches(r, ns) is False for r in extra)
        )
        detail = (
            f"; this excludes the enforced namespace(s) {', '.join(excluded)}" if excluded else ""
        )
        who = "namespaces" if what == "namespace" else "AgentRuns"
        labels = (
            "anyone who can label an AgentRun can opt it out"
            if what == "object"
            else "only as strong as the RBAC on namespace labels"
        )
        return [
            ctx.finding(
                field,
                f"the {what}Selector also requires {'; '.join(describe(r) for r in extra)}, "
                f"which the chart does not: {who} that fail it are not sent to the webhook and "
                f"their AgentRuns are admitted without a decision ({labels}){detail}",
            )
        ]
    if sorted(requirements(want)) != sorted(requirements(have)):
        return [
            ctx.note(
                field,
                f"the {what}Selector differs from the chart's but excludes nothing the chart's "
                "includes: more requests reach the webhook",
            )
        ]
    return []


# --- clientConfig and CA ------------------------------------------------------------------


def _endpoint(client: Mapping[str, Any]) -> str:
    if client.get("url"):
        return f"url {client['url']}"
    service = client.get("service") or {}
    return (
        f"service {service.get('namespace')}/{service.get('name')}:"
        f"{service.get('port') or 443}{service.get('path') or ''}"
    )


def _annotation(obj: Mapping[str, Any], key: str) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(key) or "")


def _compare_client(
    ctx: _Context,
    prefix: str,
    want: Mapping[str, Any],
    have: Mapping[str, Any],
    expected: Mapping[str, Any],
    live: Mapping[str, Any],
) -> list[Finding]:
    out: list[Finding] = []
    want_client: Mapping[str, Any] = want.get("clientConfig") or {}
    have_client: Mapping[str, Any] = have.get("clientConfig") or {}
    if _endpoint(want_client) != _endpoint(have_client):
        out.append(
            ctx.finding(
                f"{prefix}.clientConfig",
                f"requests go to {_endpoint(have_client)} instead of {_endpoint(want_client)}: "
                "whoever serves that endpoint decides every AgentRun",
            )
        )
    want_ca = str(want_client.get("caBundle") or "")
    have_ca = str(have_client.get("caBundle") or "")
    want_inject = _annotation(expected, INJECT_ANNOTATION)
    have_inject = _annotation(live, INJECT_ANNOTATION)
    field = f"{prefix}.clientConfig.caBundle"
    if want_ca and have_ca != want_ca:
        out.append(
            ctx.finding(
                field,
                "the caBundle is not the chart's (tls.existingSecret.caBundle)"
                + (": the API server trusts another CA" if have_ca else ": it was removed")
                + ", so an endpoint with a certificate from that CA can answer for the webhook",
            )
        )
    elif want_inject and have_inject != want_inject:
        if have_inject:
            out.append(
                ctx.finding(
                    f"metadata.annotations[{INJECT_ANNOTATION}]",
                    f"cert-manager injects the CA of {have_inject} instead of {want_inject}: "
                    "whoever holds that CA can answer for the webhook",
                )
            )
        elif have_ca:
            out.append(
                ctx.note(
                    f"metadata.annotations[{INJECT_ANNOTATION}]",
                    "the cert-manager injection annotation was removed: the current caBundle "
                    "stays, but it will not follow a CA rotation",
                    "restore the annotation from the chart",
                )
            )
    if not have_ca and not have_inject:
        out.append(
            ctx.finding(
                field,
                "the webhook has no caBundle and no cert-manager injection: the API server does "
                "not pin the webhook's CA (and usually cannot call it, denying every AgentRun)",
            )
        )
    elif not have_ca:
        out.append(
            ctx.note(
                field,
                f"cert-manager has not injected the caBundle yet ({have_inject}): the API "
                "server cannot verify the webhook, so every AgentRun is denied (fail closed)",
                "check cert-manager's cainjector and the Certificate's status",
            )
        )
    return out
