"""Live ApprovalPolicy CRs against git (audit.policies): exactly, or by meaning with the bundle."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.audit.policies import compare_with_bundle, compare_with_compiled
from tests.support.paths import ROOT

RENDERED = ROOT / "examples" / "gitops-repo" / "rendered" / "staging"
SOURCE = "rendered/staging/approvalpolicies"


def compiled() -> list[dict[str, Any]]:
    out = []
    for path in sorted((RENDERED / "approvalpolicies").glob("*.yaml")):
        out += [dict(d.obj) for d in load_manifests(path.read_text(), str(path))]
    return out


def bundle() -> dict[str, Any]:
    obj: dict[str, Any] = json.loads((RENDERED / "bundle.json").read_text())
    return obj


def as_stored(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The CRs as the API server returns them: server metadata and a field manager added."""
    out = copy.deepcopy(objects)
    for index, obj in enumerate(out):
        obj["metadata"].update(
            uid=f"uid-{index}",
            resourceVersion="42",
            generation=1,
            creationTimestamp="2026-11-20T10:00:00Z",
            managedFields=[
                {
                    "manager": "argocd-controller",
                    "operation": "Apply",
                    "time": "2026-11-20T10:00:00Z",
                    "fieldsV1": {"f:spec": {}},
                }
            ],
        )
    return out


def everywhere(_namespace: str) -> bool:
    return True


def named(live: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [p for p in live if p["metadata"]["name"] == name]
    return found


@pytest.fixture(params=["compiled", "bundle"])
def compare(request: pytest.FixtureRequest) -> Any:
    if request.param == "compiled":
        return lambda live, in_scope=everywhere: compare_with_compiled(
            live, compiled(), in_scope, SOURCE
        )
    return lambda live, in_scope=everywhere: compare_with_bundle(
        live, bundle(), in_scope, "the bundle"
    )


def test_what_git_says_is_no_finding(compare: Any) -> None:
    assert compare(as_stored(compiled())) == []


def test_a_missing_policy(compare: Any) -> None:
    live = [p for p in as_stored(compiled()) if p["metadata"]["name"] != "default-approval"]
    (finding,) = compare(live)
    assert finding.failing and finding.subject == "ApprovalPolicy/agents/default-approval"
    assert "is in git" in finding.message and "but not in the cluster" in finding.message
    assert "kubectl apply -f rendered/ENV/approvalpolicies/" in finding.advice


def test_an_extra_policy_in_scope_only(compare: Any) -> None:
    live = as_stored(compiled())
    extra = copy.deepcopy(named(live, "default-approval"))
    extra["metadata"]["name"] = "handmade"
    (finding,) = compare([*live, extra])
    assert finding.subject == "ApprovalPolicy/agents/handmade"
    assert "is in the cluster but not in git" in finding.message
    assert "field manager 'argocd-controller'" in finding.message
    extra["metadata"]["namespace"] = "elsewhere"
    assert compare([*live, extra], in_scope=lambda ns: ns == "agents") == []


def test_a_weakened_policy_names_the_field(compare: Any) -> None:
    live = as_stored(compiled())
    policy = named(live, "codex-two-person")
    policy["spec"]["requiredApprovals"] = 1
    policy["metadata"]["managedFields"].append(
        {
            "manager": "kubectl-edit",
            "operation": "Update",
            "time": "2026-11-21T09:00:00Z",
            "fieldsV1": {"f:spec": {"f:requiredApprovals": {}}},
        }
    )
    (finding,) = compare(live)
    assert finding.failing and finding.field == "spec"
    assert "requiredApprovals: 2 in git, 1 live" in finding.message
    assert finding.message.endswith(
        "(spec last written by field manager 'kubectl-edit', Update at 2026-11-21T09:00:00Z)"
    )


def test_exact_comparison_sees_every_field() -> None:
    live = as_stored(compiled())
    spec = named(live, "codex-two-person")["spec"]
    spec["trustedSubmitters"]["groups"] = ["everyone"]
    del spec["bypass"]
    spec["requiredApprovals"] = True  # JSON types matter: true is not 2
    (finding,) = compare_with_compiled(live, compiled(), everywhere, SOURCE)
    assert finding.message.startswith(
        f"ApprovalPolicy agents/codex-two-person differs from git ({SOURCE}): "
        'spec.bypass: {"approvers": ["oncall"], "maxTTL": "2h"} in git, (absent) live; '
        "spec.requiredApprovals: 2 in git, true live; "
        'spec.trustedSubmitters.groups: (absent) in git, ["everyone"] live'
    )


def test_by_meaning_a_spelling_that_compiles_the_same_is_no_finding() -> None:
    live = as_stored(compiled())
    spec = named(live, "codex-two-person")["spec"]
    spec["bypass"]["maxTTL"] = "120m"  # 2h
    assert compare_with_bundle(live, bundle(), everywhere, "the bundle") == []
    assert compare_with_compiled(live, compiled(), everywhere, SOURCE) != []


def test_by_meaning_an_invalid_or_unknown_approver_is_a_finding() -> None:
    live = as_stored(compiled())
    named(live, "codex-two-person")["spec"]["approvers"] = ["group:platform-leads", "mallory"]
    (finding,) = compare_with_bundle(live, bundle(), everywhere, "the bundle")
    assert "a valid policy in git, invalid: spec.approvers.1: 'mallory' is neither" in (
        finding.message
    )
    live = as_stored(compiled())
    named(live, "codex-two-person")["spec"]["approvers"] = ["group:agents-admin"]
    (finding,) = compare_with_bundle(live, bundle(), everywhere, "the bundle")
    assert (
        'compiled.approverRefs: ["group:platform-leads"] in git, ["group:agents-admin"] live'
        in (finding.message)
    )
