"""The guard in the chart (docs/design.md "The guard"): a ValidatingAdmissionPolicy and its
binding refusing updates that weaken the gate's own ValidatingWebhookConfiguration, built
from the same helper as the configuration (approvalgate.webhookShape), and in optInLabel
mode one refusing removal of a namespace's opt-in label. The CEL is compiled by the real API
server in tests/e2e/test_chart_dry_run.py and exercised in tests/e2e/test_guard.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.chart.support import (
    CHART,
    NAMESPACE,
    RELEASE,
    HelmError,
    by_kind,
    documents,
    example_values,
    namespace_values,
    one,
    render,
    run_helm,
)

pytestmark = pytest.mark.helm

PROD = example_values("prod")


def policies(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in by_kind(objects, "ValidatingAdmissionPolicy")}


def bindings(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = by_kind(objects, "ValidatingAdmissionPolicyBinding")
    return {b["metadata"]["name"]: b for b in found}


def cel_lists(expression: str, name: str) -> list[Any]:
    """The JSON literal the expression compares entry ``name``'s field with."""
    match = re.search(re.escape(f'w.name == "{name}"') + r".*?== (\[\[.*?\]\])\)", expression)
    assert match, expression
    found: list[Any] = json.loads(match.group(1))
    return found


def test_the_guard_matches_the_webhook_configuration_by_name_and_denies(helm: Path) -> None:
    objects = render(helm, PROD)
    config = one(objects, "ValidatingWebhookConfiguration")
    (policy,) = policies(objects).values()
    (binding,) = bindings(objects).values()
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["validatingwebhookconfigurations"]
    assert rule["resourceNames"] == [config["metadata"]["name"]]
    # no deployer named: nobody is exempt, and DELETE is left to RBAC (uninstall, prune)
    assert rule["operations"] == ["UPDATE"] and "matchConditions" not in spec
    # before the configuration (wave 1): a sync applies the guard it must pass first
    assert policy["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "0"
    assert config["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "1"


@pytest.mark.parametrize(
    ("selection", "exclude"), [("all", ()), ("all", ("legacy",)), ("optInLabel", ("legacy",))]
)
def test_the_guard_expects_what_the_configuration_renders(
    helm: Path, tmp_path: Path, selection: str, exclude: tuple[str, ...]
) -> None:
    """The rules and namespaceSelector written into the CEL are the configuration's own,
    entry by entry, in every namespace mode."""
    objects = render(helm, namespace_values(tmp_path, exclude, selection))
    config = one(objects, "ValidatingWebhookConfiguration")
    (policy,) = [p for n, p in policies(objects).items() if n.endswith("-guard")]
    checks = {v["message"]: v["expression"] for v in policy["spec"]["validations"]}
    rules = next(e for m, e in checks.items() if "rules" in m)
    selectors = next(e for m, e in checks.items() if "namespaceSelector" in m)
    service = next(e for m, e in checks.items() if "Service" in m)
    assert {h["name"] for h in config["webhooks"]} == set(
        re.findall(r'w\.name == "([^"]+)"', rules)
    )
    for hook in config["webhooks"]:
        flat = [
            [
                *r["apiGroups"],
                "|",
                *r["apiVersions"],
                "|",
                *r["operations"],
                "|",
                *r["resources"],
                "|",
                r["scope"],
            ]
            for r in hook["rules"]
        ]
        assert cel_lists(rules, hook["name"]) == flat
        selector = hook["namespaceSelector"]
        expressions = [
            [e["key"], e["operator"], *e["values"]] for e in selector.get("matchExpressions", [])
        ]
        part = selectors.split(f'w.name == "{hook["name"]}"')[1].split('(w.name == "')[0]
        if expressions:
            assert json.dumps(expressions, separators=(",", ":")) in part
        else:
            assert "w.namespaceSelector.matchExpressions.size() == 0" in part
        if selector.get("matchLabels"):
            assert json.dumps(selector["matchLabels"], separators=(",", ":")) in part
        else:
            assert "w.namespaceSelector.matchLabels.size() == 0" in part
        svc = hook["clientConfig"]["service"]
        assert f'w.clientConfig.service.name == "{svc["name"]}"' in service
        assert f'w.clientConfig.service.namespace == "{svc["namespace"]}"' in service
        assert f"w.clientConfig.service.port == {svc['port']}" in service
    names = policies(objects)
    if selection == "optInLabel":
        opt_in = next(p for n, p in names.items() if n.endswith("-guard-opt-in"))
        conditions = {c["name"]: c["expression"] for c in opt_in["spec"]["matchConditions"]}
        # with pinned keys the chart trusts no excludeNamespaces of the content (Helm cannot
        # check its signature): every opted-in namespace's label is guarded
        assert set(conditions) == {"opted-in"}
        assert len(bindings(objects)) == 2
    else:
        assert len(names) == 1 and len(bindings(objects)) == 1


def test_namespaces_excluded_by_name_keep_their_label_free(helm: Path, tmp_path: Path) -> None:
    """Unsigned (development): the content's excludeNamespaces are out of the selector by
    name, so their label decides nothing and is not guarded."""
    values = namespace_values(tmp_path, ("legacy",), "optInLabel")
    objects = documents(
        run_helm(
            helm,
            "template",
            RELEASE,
            str(CHART),
            "-n",
            NAMESPACE,
            "-f",
            str(values),
            "--set",
            "bundleSigning.allowUnsigned=true",
            "--set",
            "bundleSigning.namespaceSelection=optInLabel",
            signing=False,
        )
    )
    opt_in = next(p for n, p in policies(objects).items() if n.endswith("-guard-opt-in"))
    conditions = {c["name"]: c["expression"] for c in opt_in["spec"]["matchConditions"]}
    assert conditions["not-excluded-by-name"] == '!(oldObject.metadata.name in ["legacy"])'


def test_deployers_are_exempt_and_only_they_may_delete(helm: Path, tmp_path: Path) -> None:
    objects = render(
        helm,
        namespace_values(tmp_path, (), "optInLabel"),
        sets=[
            "guard.deployers.users={system:serviceaccount:argocd:argocd-application-controller}",
            "guard.deployers.groups={platform-ops}",
        ],
    )
    for policy in policies(objects).values():
        (condition,) = [
            c for c in policy["spec"]["matchConditions"] if c["name"] == "not-a-deployer"
        ]
        assert condition["expression"] == (
            "!(request.userInfo.username in "
            '["system:serviceaccount:argocd:argocd-application-controller"]'
            " || (has(request.userInfo.groups) && "
            'request.userInfo.groups.exists(g, g in ["platform-ops"])))'
        )
    guard = next(p for n, p in policies(objects).items() if n.endswith("-guard"))
    assert guard["spec"]["matchConstraints"]["resourceRules"][0]["operations"] == [
        "UPDATE",
        "DELETE",
    ]
    assert guard["spec"]["validations"][0]["expression"] == "request.operation != 'DELETE'"


@pytest.mark.parametrize("group", ["system:authenticated", "system:serviceaccounts"])
def test_a_deployer_group_of_everyone_is_refused(helm: Path, group: str) -> None:
    with pytest.raises(HelmError, match=f"guard.deployers.groups holds {group}"):
        render(helm, PROD, sets=[f"guard.deployers.groups={{{group}}}"])


def test_a_cluster_before_1_30_is_told_to_switch_the_guard_off(helm: Path) -> None:
    """ValidatingAdmissionPolicy v1 is GA in 1.30: an older API server gets a message saying
    what to set, not "no matches for kind"; with the guard off the chart renders there."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(PROD)]
    with pytest.raises(HelmError, match=r"guard.enabled needs Kubernetes 1.30 or newer.*v1.29.4"):
        run_helm(helm, *args, "--kube-version", "1.29.4")
    objects = documents(
        run_helm(helm, *args, "--kube-version", "1.29.4", "--set", "guard.enabled=false")
    )
    assert not policies(objects) and by_kind(objects, "ValidatingWebhookConfiguration")
    assert policies(documents(run_helm(helm, *args, "--kube-version", "1.30.0")))


def test_the_guard_can_be_left_out(helm: Path) -> None:
    objects = render(helm, PROD, sets=["guard.enabled=false"])
    assert not policies(objects) and not bindings(objects)


def test_the_deployments_guard_needs_a_deployer_and_names_the_gates_deployments(
    helm: Path,
) -> None:
    """Without a deployer named an upgrade cannot be told from an edit: no Deployment guard."""
    assert not any(n.endswith("-deployments") for n in policies(render(helm, PROD)))
    objects = render(helm, PROD, sets=["guard.deployers.users={helm}"])
    guard = policies(objects)["approvalgate-guard-deployments"]
    (rule,) = guard["spec"]["matchConstraints"]["resourceRules"]
    deployments = {d["metadata"]["name"] for d in by_kind(objects, "Deployment")}
    assert set(rule["resourceNames"]) == deployments == {"approvalgate", "approvalgate-controller"}
    assert rule["operations"] == ["UPDATE"] and rule["resources"] == ["deployments"]
    selector = guard["spec"]["matchConstraints"]["namespaceSelector"]
    assert selector == {"matchLabels": {"kubernetes.io/metadata.name": "approvalgate-system"}}
    assert bindings(objects)["approvalgate-guard-deployments"]["spec"]["validationActions"] == [
        "Deny"
    ]
