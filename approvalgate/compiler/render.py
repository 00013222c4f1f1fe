"""One environment's rendered output, in memory: ``{relative path: text}``.

Every object is validated before it is emitted: NetworkPolicies against the Kubernetes
networking/v1 schema, ApprovalPolicy CRs against the upstream CRD, the agents values
against the agents chart's values schema, the bundle against its schema. A failure here
is a bug in approvalgate or a template, and is reported as such.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from approvalgate.approvals.errors import ApprovalgateError, Finding, format_json_path
from approvalgate.approvals.fastschema import Check, compile_check
from approvalgate.approvals.policy import compile_bundle, dump_bundle
from approvalgate.approvals.schemas import SCHEMA_PACKAGE, schema_findings
from approvalgate.approvals.structural import check_against_crd, load_crd_schema
from approvalgate.compiler.canonical import dump
from approvalgate.compiler.config import Environment
from approvalgate.compiler.egress import parse_egress, render_egress_and_values, render_validated
from approvalgate.compiler.repo import Repo

if TYPE_CHECKING:
    from jsonschema import Draft7Validator, Draft202012Validator

SUMS_FILE = "SHA256SUMS"
APPROVALPOLICY_CRD = "crds/approvals.proompteng.ai_approvalpolicies.yaml"


def render_environment(repo: Repo, env: Environment) -> dict[str, str]:
    files: dict[str, str] = {}
    resources_list: list[str] = []
    templates = str(repo.config.root / repo.config.templates) if repo.config.templates else None

    bundle = repo.bundles.get(env.name)  # compiled by load_repo
    if bundle is None:
        bundle, problems = compile_bundle(
            [d.obj for d in repo.of_kind("ApprovalPolicy", "Approver")], env.bundle
        )
        if bundle is None:  # load_repo already reported these
            raise ApprovalgateError(
                f"[{env.name}] policies do not compile: {problems[0].finding.message}"
            )
    bundle_text = dump_bundle(bundle)
    _check(_described(schema_findings("bundle.schema.json", bundle)), env.name, "bundle.json")
    files["bundle.json"] = bundle_text

    for source in repo.of_kind("ApprovalPolicy"):
        obj = _namespaced(source.obj, env.namespace)
        path = _object_path("approvalpolicies", obj)
        crd = load_crd_schema(APPROVALPOLICY_CRD, "v1alpha1")
        _check(_described(check_against_crd(obj, crd)), env.name, path)
        files[path] = dump(obj, source.display)
        resources_list.append(path)

    egress_sources = repo.of_kind("EgressPolicy")
    origin = {
        (s.obj["metadata"].get("namespace") or env.egress.namespace, s.name): s.display
        for s in egress_sources
    }
    if env.name in repo.egress_valid:  # load_repo validated them for this environment
        if repo.egress_models is None:  # the model does not depend on the environment
            repo.egress_models = [parse_egress(s.obj) for s in egress_sources]
        rendered, network_policy = render_validated(repo.egress_models, env.egress, templates)
    else:
        rendered, network_policy = render_egress_and_values(
            [s.obj for s in egress_sources], env.egress, templates
        )
    for obj in rendered:
        path = _object_path("networkpolicies", obj)
        if obj["kind"] == "NetworkPolicy":
            _check(_networkpolicy_errors(obj), env.name, path)
        meta = obj["metadata"]
        files[path] = dump(obj, origin.get((meta["namespace"], meta["name"]), "egress policies"))
        resources_list.append(path)

    for source in repo.of_kind("AgentRun"):
        obj = _namespaced(source.obj, env.namespace)
        path = _object_path("agentruns", obj)
        files[path] = dump(obj, source.display)
        resources_list.append(path)

    _check(_agents_values_errors(network_policy), env.name, "agents-values.yaml")
    files["agents-values.yaml"] = dump({"networkPolicy": network_policy}, "egress policies")
    files["approvalgate-values.yaml"] = dump(
        webhook_values(bundle_text, bundle["generation"]), "approval policies and approvers"
    )
    files["kustomization.yaml"] = dump(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": sorted(resources_list),
        },
        f"approvalgate.yaml ({env.name})",
    )
    files[SUMS_FILE] = sums(files)
    return files


def webhook_values(bundle_text: str, generation: str) -> dict[str, Any]:
    """The approvalgate chart's values: the bundle, byte for byte, as a string."""
    return {"policyBundle": {"generation": generation, "content": bundle_text}}


def sums(files: Mapping[str, str]) -> str:
    """``sha256sum``-style record of the generated files (orphans are what it lacks)."""
    lines = [
        f"{hashlib.sha256(files[p].encode()).hexdigest()}  {p}\n"
        for p in sorted(files)
        if p != SUMS_FILE
    ]
    return "".join(lines)


def _namespaced(obj: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    meta = dict(obj.get("metadata") or {})
    meta.setdefault("namespace", namespace)
    return {**obj, "metadata": meta}


def _object_path(folder: str, obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    # Names were validated as DNS-1123 names (no '/', no '..' alone) by load_repo.
    return f"{folder}/{meta['namespace']}.{meta['name']}.yaml"


def _check(errors: list[str], env: str, what: str) -> None:
    """Refuse an invalid rendered file: an error naming the file and the JSON path of each
    problem (the first five), exit 1, not a crash, so the output is never written."""
    if errors:
        raise ApprovalgateError(
            f"rendered {env}/{what} is invalid: {'; '.join(errors[:5])}",
            advice="this is a bug in approvalgate or in a custom template",
        )


def _described(findings: list[Finding]) -> list[str]:
    return [f"{format_json_path(f.path)}: {f.message}" for f in findings]


@cache
def _json_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        resources.files(SCHEMA_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    )
    return schema


NETWORKPOLICY_SCHEMA = "k8s/networkpolicy-networking-v1.json"


# Valid objects are recognised by approvals.fastschema; jsonschema is imported and run only
# to say what is wrong with an invalid one (a bug, then).


@cache
def _networkpolicy_check() -> Check | None:
    return compile_check(_json_schema(NETWORKPOLICY_SCHEMA))


@cache
def _networkpolicy_validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_json_schema(NETWORKPOLICY_SCHEMA))


def _networkpolicy_errors(obj: Mapping[str, Any]) -> list[str]:
    check = _networkpolicy_check()
    if check is not None and check(obj):
        return []
    return [
        f"{format_json_path(tuple(e.absolute_path))}: {e.message}"
        for e in _networkpolicy_validator().iter_errors(obj)
    ]


def _agents_values_schema() -> dict[str, Any]:
    values: dict[str, Any] = _json_schema("agents-values.schema.json")
    schema: dict[str, Any] = values["properties"]["networkPolicy"]
    return schema


@cache
def _agents_values_check() -> Check | None:
    return compile_check(_agents_values_schema())


@cache
def _agents_values_validator() -> Draft7Validator:
    from jsonschema import Draft7Validator

    return Draft7Validator(_agents_values_schema())


def _agents_values_errors(block: Mapping[str, Any]) -> list[str]:
    check = _agents_values_check()
    if check is not None and check(block):
        return []
    return [
        f"{format_json_path(('networkPolicy', *e.absolute_path))}: {e.message}"
        for e in _agents_values_validator().iter_errors(block)
    ]
