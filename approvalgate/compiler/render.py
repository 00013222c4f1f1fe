"""One environment's rendered output, in memory: ``{relative path: text}``.

Every object is validated before it is emitted: NetworkPolicies against the Kubernetes
networking/v1 schema, ApprovalPolicy CRs against the upstream CRD, the agents values
against the agents chart's values schema, the bundle against its schema. A failure here
is a bug in approvalgate or a template, and is reported as such.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from approvalgate.approvals.bundle_trust import SIGNATURES_FILE
from approvalgate.approvals.errors import ApprovalgateError
from approvalgate.approvals.policy import compile_bundle, dump_bundle
from approvalgate.approvals.schemas import describe, schema_findings
from approvalgate.approvals.structural import check_against_crd, load_crd_schema
from approvalgate.approvals.view import USE_FINALIZER
from approvalgate.compiler.canonical import dump
from approvalgate.compiler.config import Environment
from approvalgate.compiler.egress import parse_egress, render_egress_and_values, render_validated
from approvalgate.compiler.repo import Repo
from approvalgate.compiler.signing import Previous, with_revision

SUMS_FILE = "SHA256SUMS"
APPROVALPOLICY_CRD = "crds/approvals.proompteng.ai_approvalpolicies.yaml"


def compiled_bundle(
    repo: Repo, env: Environment, previous: Previous | None = None
) -> tuple[dict[str, Any], str]:
    """The environment's bundle and its bundle.json text; ``previous`` (what the output
    folder holds) sets its revision."""
    bundle = repo.bundles.get(env.name)  # compiled by load_repo
    if bundle is None:
        bundle, problems = compile_bundle(
            [d.obj for d in repo.of_kind("ApprovalPolicy", "Approver")], env.bundle
        )
        if bundle is None:  # load_repo already reported these
            raise ApprovalgateError(
                f"[{env.name}] policies do not compile: {problems[0].finding.message}"
            )
    bundle = with_revision(bundle, previous or Previous())
    _check(describe(schema_findings("bundle.schema.json", bundle)), env.name, "bundle.json")
    return bundle, dump_bundle(bundle)


def render_environment(
    repo: Repo,
    env: Environment,
    compiled: tuple[dict[str, Any], str] | None = None,
    signatures: str | None = None,
) -> dict[str, str]:
    """The environment's files: ``compiled`` is :func:`compiled_bundle`'s (computed without
    a previous bundle when None); ``signatures`` its bundle.sig.json (None: unsigned)."""
    files: dict[str, str] = {}
    resources_list: list[str] = []
    templates = str(repo.config.root / repo.config.templates) if repo.config.templates else None

    bundle, bundle_text = compiled if compiled is not None else compiled_bundle(repo, env)
    files["bundle.json"] = bundle_text
    if signatures is not None:
        files[SIGNATURES_FILE] = signatures

    for source in repo.of_kind("ApprovalPolicy"):
        obj = _namespaced(source.obj, env.namespace)
        path = _object_path("approvalpolicies", obj)
        crd = load_crd_schema(APPROVALPOLICY_CRD, "v1alpha1")
        _check(describe(check_against_crd(obj, crd)), env.name, path)
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
        obj = _with_use_finalizer(_namespaced(source.obj, env.namespace), env)
        path = _object_path("agentruns", obj)
        files[path] = dump(obj, source.display)
        resources_list.append(path)

    _check(_agents_values_errors(network_policy), env.name, "agents-values.yaml")
    files["agents-values.yaml"] = dump({"networkPolicy": network_policy}, "egress policies")
    files["approvalgate-values.yaml"] = dump(
        webhook_values(bundle_text, bundle["generation"], bundle["revision"], signatures),
        "approval policies and approvers",
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


def _with_use_finalizer(obj: dict[str, Any], env: Environment) -> dict[str, Any]:
    """A git-kept run rendered for an environment that requires the cluster view carries the
    use finalizer (the webhook demands it; the controller releases it once the run's use is
    recorded); elsewhere it does not, since nothing there would release it."""
    meta = dict(obj.get("metadata") or {})
    finalizers = [f for f in meta.get("finalizers") or [] if f != USE_FINALIZER]
    if env.bundle.cluster_view == "required":
        finalizers.append(USE_FINALIZER)
    if finalizers:
        meta["finalizers"] = finalizers
    else:
        meta.pop("finalizers", None)
    return {**obj, "metadata": meta}


def webhook_values(
    bundle_text: str, generation: str, revision: int = 0, signatures: str | None = None
) -> dict[str, Any]:
    """The approvalgate chart's values: the bundle and its signatures document, byte for
    byte, as strings ("" when unsigned), its generation and revision."""
    return {
        "policyBundle": {
            "generation": generation,
            "revision": revision,
            "content": bundle_text,
            "signatures": signatures or "",
        }
    }


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


NETWORKPOLICY_SCHEMA = "k8s/networkpolicy-networking-v1.json"
AGENTS_VALUES_SCHEMA = "agents-values.schema.json"


def _networkpolicy_errors(obj: Mapping[str, Any]) -> list[str]:
    return describe(schema_findings(NETWORKPOLICY_SCHEMA, obj))


def _agents_values_errors(block: Mapping[str, Any]) -> list[str]:
    found = schema_findings(
        AGENTS_VALUES_SCHEMA, block, prefix=("networkPolicy",), pointer="/properties/networkPolicy"
    )
    return describe(found)
