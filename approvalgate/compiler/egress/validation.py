"""The semantic rules of EgressPolicy documents (docs/egress.md), after the schema.

``validate_egress`` returns every finding of one document, located by JSON path (the
policy-level rules here, the destinations' in ``destinations``); ``parse_valid`` validates
a set of documents for one environment and parses them, or raises one
:class:`ValidationError` with every error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from approvalgate.approvals.errors import (
    ApprovalgateError,
    Finding,
    JsonPath,
    Location,
    ValidationError,
    format_json_path,
)
from approvalgate.compiler.egress.checks import (
    Ctx,
    check_labels,
    check_selector,
    tool_owned_problem,
)
from approvalgate.compiler.egress.destinations import check_destinations
from approvalgate.compiler.egress.env import SETTINGS_PREFIX, EgressEnv
from approvalgate.compiler.egress.model import DEFAULT_DENY_NAME, EgressPolicy, parse_egress
from approvalgate.compiler.egress.ports import check_wildcard_union
from approvalgate.compiler.egress.schema import schema_findings


def validate_egress(doc: Mapping[str, Any], env: EgressEnv | None = None) -> list[Finding]:
    """Every problem of one EgressPolicy document, located by JSON path.

    Schema problems come first and alone (semantic rules need a well-typed document).
    Rules that depend on the environment (flavor, API server endpoints, node-local-dns)
    use ``env`` (default: ``EgressEnv()``) and are skipped for disabled policies.
    """
    findings = schema_findings(doc)
    if findings:
        return findings
    env = env or EgressEnv()
    spec = doc["spec"]
    dns = spec.get("dns", {})
    ctx = Ctx(
        env=env,
        target=spec["target"],
        dns=dns.get("enabled", True),
        node_local_dns=dns.get("nodeLocalDNS", True),
        check_env=spec.get("enabled", True),
    )
    return [
        *_check_metadata(doc["metadata"]),
        *_check_target(spec, ctx),
        *_check_api_server(spec, ctx),
        *check_destinations(spec.get("destinations", []), ctx),
        *_check_tpl(spec, ctx, ("spec",)),
    ]


def check_merged(docs: Sequence[Mapping[str, Any]], env: EgressEnv) -> list[tuple[int, Finding]]:
    """(index of the document, finding) for blocks of several valid, enabled policies that
    together open every address on every port to the same pods: the runners policies of
    one namespace (NetworkPolicies add up for a pod two of them select) or every
    controlPlane policy (merged into one values block). The rule a single policy meets
    (``ports.check_wildcard_union``) must not come apart across files."""
    groups: dict[tuple[str, str], list[int]] = {}
    for n, doc in enumerate(docs):
        spec = doc["spec"]
        if not spec.get("enabled", True):
            continue
        target = spec["target"]
        namespace = (
            (doc["metadata"].get("namespace") or env.namespace) if target == "runners" else ""
        )
        groups.setdefault((target, namespace), []).append(n)
    out: list[tuple[int, Finding]] = []
    for (target, namespace), members in sorted(groups.items()):
        if len(members) < 2 or any(_own_union(docs[n]) for n in members):
            continue
        flat = [
            (n, i, dest)
            for n in members
            for i, dest in enumerate(docs[n]["spec"].get("destinations", []))
        ]
        names = ", ".join(str(docs[n]["metadata"]["name"]) for n in members)
        scope = f"the runners of namespace {namespace}" if target == "runners" else "controlPlane"
        for finding in check_wildcard_union([dest for _, _, dest in flat]):
            n, i, _ = flat[int(finding.path[2])]
            out.append(
                (
                    n,
                    Finding(
                        ("spec", "destinations", i, *finding.path[3:]),
                        f"{finding.message}, with the EgressPolicies of {scope} ({names}) "
                        "taken together: they apply to the same pods",
                        finding.advice,
                    ),
                )
            )
    return out


def _own_union(doc: Mapping[str, Any]) -> bool:
    return any(True for _ in check_wildcard_union(doc["spec"].get("destinations", [])))


def _check_metadata(meta: Mapping[str, Any]) -> Iterator[Finding]:
    yield from check_labels(meta.get("labels", {}), ("metadata", "labels"))
    for field in ("labels", "annotations"):
        for key in meta.get(field, {}):
            problem = tool_owned_problem(key)
            if problem:
                yield Finding(("metadata", field, key), *problem)
    if meta["name"] == DEFAULT_DENY_NAME:
        yield Finding(
            ("metadata", "name"),
            f"`{DEFAULT_DENY_NAME}` is the name of the default-deny policy approvalgate "
            "renders for runner pods no policy selects",
            "pick another name",
        )


def _check_target(spec: Mapping[str, Any], ctx: Ctx) -> Iterator[Finding]:
    selector = spec.get("podSelector")
    if selector is None:
        return
    path: JsonPath = ("spec", "podSelector")
    if ctx.target == "controlPlane":
        yield Finding(
            path,
            "podSelector cannot be set for target controlPlane",
            "the agents chart selects its own pods: remove spec.podSelector",
        )
        return
    yield from check_selector(selector, path)


def _check_api_server(spec: Mapping[str, Any], ctx: Ctx) -> Iterator[Finding]:
    if spec.get("apiServer", False) and ctx.check_env and not ctx.env.api_server_endpoints:
        yield Finding(
            ("spec", "apiServer"),
            "apiServer is requested but the environment has no API server endpoints",
            f"set `{SETTINGS_PREFIX}apiServerEndpoints` to the endpoint IPs (kubectl get "
            "endpointslices -n default -l kubernetes.io/service-name=kubernetes); a rule "
            "by port alone would open those ports to every address",
        )


def _check_tpl(node: object, ctx: Ctx, path: JsonPath = ()) -> Iterator[Finding]:
    """controlPlane values may go through the chart's `tpl`: no `{{` anywhere in spec."""
    if ctx.target != "controlPlane":
        return
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _check_tpl(key, ctx, (*path, key))
            yield from _check_tpl(value, ctx, (*path, key))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _check_tpl(item, ctx, (*path, i))
    elif isinstance(node, str) and "{{" in node:
        yield Finding(
            path,
            "`{{` in a value rendered into the agents chart values",
            "the chart may pass values through `tpl`, which would run it as a template: "
            "remove the braces",
        )


def parse_valid(policies: Sequence[Mapping[str, Any]], env: EgressEnv) -> list[EgressPolicy]:
    """The models of ``policies``; raises :class:`ValidationError` with every error finding."""
    problems: list[ApprovalgateError] = []
    for doc in policies:
        name = _doc_name(doc)
        for f in validate_egress(doc, env):
            if f.severity == "error":
                location = Location(json_path=format_json_path(f.path))
                problems.append(
                    ApprovalgateError(
                        f"EgressPolicy {name}: {f.message}", location=location, advice=f.advice
                    )
                )
    for n, f in [] if problems else check_merged(policies, env):
        location = Location(json_path=format_json_path(f.path))
        name = _doc_name(policies[n])
        problems.append(
            ApprovalgateError(
                f"EgressPolicy {name}: {f.message}", location=location, advice=f.advice
            )
        )
    if problems:
        raise ValidationError(problems)
    return [parse_egress(doc) for doc in policies]


def _doc_name(doc: Mapping[str, Any]) -> str:
    meta = doc.get("metadata")
    return str(meta.get("name", "?")) if isinstance(meta, Mapping) else "?"
