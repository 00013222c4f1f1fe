"""The drift comparison of the live ValidatingWebhookConfiguration (audit.webhook).

Each case edits the chart's configuration the way an operator, an attacker or a tool would,
and says whether the edit weakens the gate (a finding) or not (a note, or nothing).
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from approvalgate.audit.findings import Finding
from approvalgate.audit.webhook import (
    WEBHOOK_ENTRY,
    chart_defaults,
    compare_webhook,
    describe,
    implies,
    narrowing,
    pick_configuration,
    requirements,
)
from tests.support.paths import ROOT
from tests.support.tools import pinned_binary

CHART = ROOT / "charts" / "approvalgate"
VALUES = ROOT / "examples" / "gitops-repo" / "rendered" / "staging" / "approvalgate-values.yaml"
SERVED = ["v1alpha1"]
ENFORCED = ["agents"]
NAME_LABEL = "kubernetes.io/metadata.name"


def expected() -> dict[str, Any]:
    """What the chart renders for a bundle excluding kube-system by name."""
    return chart_defaults(exclude=["kube-system"])


def live_with(edit: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    """The chart's configuration as the API server stores it (caBundle injected), edited."""
    live = copy.deepcopy(expected())
    for entry in live["webhooks"]:  # the AgentRun entry and the approval queue's
        entry["clientConfig"]["caBundle"] = "LS0tLS1CRUdJTi..."
        entry["objectSelector"] = {}
    edit(live)
    return live


def hook(live: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = live["webhooks"][0]
    return entry


def compare(live: dict[str, Any] | None, served: list[str] | None = SERVED) -> list[Finding]:
    return compare_webhook(expected(), live, served_versions=served, enforced_namespaces=ENFORCED)


def findings(live: dict[str, Any] | None, served: list[str] | None = SERVED) -> list[str]:
    return [f.field for f in compare(live, served) if f.failing]


def notes(live: dict[str, Any] | None, served: list[str] | None = SERVED) -> list[str]:
    return [f.field for f in compare(live, served) if not f.failing]


P = f"webhooks[{WEBHOOK_ENTRY}]"


def test_the_configuration_as_stored_has_no_drift() -> None:
    assert compare(live_with(lambda live: None)) == []


def test_server_defaults_for_missing_fields_are_not_drift() -> None:
    def strip(live: dict[str, Any]) -> None:
        del hook(live)["objectSelector"]  # the server's default is {}, an older chart omitted it

    assert compare(live_with(strip)) == []


def test_a_missing_configuration_or_entry_turns_the_gate_off() -> None:
    (gone,) = compare(None)
    assert gone.failing and gone.message.endswith("the gate is off")
    renamed = live_with(lambda live: hook(live).update(name="other.example.com"))
    assert findings(renamed) == [f"webhooks[{WEBHOOK_ENTRY}]"]
    assert notes(renamed) == ["webhooks[other.example.com]"]


def test_failure_policy_ignore_is_a_finding_and_fail_is_not() -> None:
    ignore = live_with(lambda live: hook(live).update(failurePolicy="Ignore"))
    (finding,) = [f for f in compare(ignore) if f.failing]
    assert finding.field == f"{P}.failurePolicy"
    assert "AgentRuns are admitted without a decision" in finding.message
    assert "restore it from the chart" in finding.advice
    # The other way round (the chart says Ignore, the cluster Fail) only fails closed.
    want = expected()
    hook(want)["failurePolicy"] = "Ignore"
    found = compare_webhook(want, live_with(lambda live: None), served_versions=SERVED)
    assert [(f.severity, f.field) for f in found] == [("note", f"{P}.failurePolicy")]


RULE_EDITS: dict[str, tuple[Callable[[dict[str, Any]], None], list[str]]] = {
    "no rules": (lambda h: h.update(rules=[]), ["CREATE", "UPDATE"]),
    "agentruns rule removed": (lambda h: h["rules"][0].update(resources=["agents"]), ["CREATE"]),
    "update dropped": (lambda h: h["rules"][0].update(operations=["CREATE"]), ["UPDATE"]),
    "create dropped": (lambda h: h["rules"][0].update(operations=["UPDATE"]), ["CREATE"]),
    "other group": (lambda h: h["rules"][0].update(apiGroups=["example.com"]), ["CREATE"]),
    "cluster scope": (lambda h: h["rules"][0].update(scope="Cluster"), ["CREATE"]),
    "status only": (lambda h: h["rules"][0].update(resources=["agentruns/status"]), ["CREATE"]),
    "unserved version": (lambda h: h["rules"][0].update(apiVersions=["v9"]), ["CREATE"]),
}


@pytest.mark.parametrize("case", sorted(RULE_EDITS))
def test_rules_that_stop_sending_agentruns_are_findings(case: str) -> None:
    edit, operations = RULE_EDITS[case]
    (finding,) = [f for f in compare(live_with(lambda live: edit(hook(live)))) if f.failing]
    assert finding.field == f"{P}.rules"
    for operation in operations:
        assert f"{operation} of agentruns.agents.proompteng.ai (v1alpha1)" in finding.message


def test_rules_that_stop_sending_parents_or_content_are_findings() -> None:
    """Every path to an AgentRun: a Schedule no longer judged, or an Agent that can be
    deleted unjudged, lets runs through without a decision."""

    def drop(resource: str) -> Callable[[dict[str, Any]], None]:
        return lambda live: hook(live).update(
            rules=[r for r in hook(live)["rules"] if resource not in r["resources"]]
        )

    (finding,) = [f for f in compare(live_with(drop("schedules"))) if f.failing]
    assert finding.field == f"{P}.rules"
    assert "CREATE of schedules.schedules.proompteng.ai (v1alpha1)" in finding.message
    assert "UPDATE of schedules.schedules.proompteng.ai (v1alpha1)" in finding.message
    (finding,) = [f for f in compare(live_with(drop("agents"))) if f.failing]
    assert "DELETE of agents.agents.proompteng.ai (v1alpha1)" in finding.message
    assert "implementationspecs" in finding.message


def test_a_rule_that_no_longer_sends_scale_is_a_finding() -> None:
    """`*` matches no subresource: a /scale write (should the CRD gain it) would skip us."""

    live = live_with(lambda live: hook(live)["rules"][0].update(resources=["*"]))
    (finding,) = [f for f in compare(live) if f.failing]
    assert "UPDATE of agentruns/scale.agents.proompteng.ai" in finding.message


COVERING_EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "extra DELETE": lambda h: h["rules"][0]["operations"].append("DELETE"),
    "every operation": lambda h: h["rules"][0].update(operations=["*"]),
    "every resource": lambda h: h["rules"][0].update(resources=["*", "*/scale"]),
    "every resource and subresource": lambda h: h["rules"][0].update(resources=["*/*"]),
    "every group": lambda h: h["rules"][0].update(apiGroups=["*"]),
    "any scope": lambda h: h["rules"][0].update(scope="*"),
    "split in two rules": lambda h: h.update(
        rules=[
            {**h["rules"][0], "operations": ["CREATE"]},
            {**h["rules"][0], "operations": ["UPDATE"]},
            *h["rules"][1:],
        ]
    ),
    "the served version by name": lambda h: h["rules"][0].update(apiVersions=["v1alpha1"]),
}


@pytest.mark.parametrize("case", sorted(COVERING_EDITS))
def test_rules_that_still_cover_agentruns_are_notes(case: str) -> None:
    live = live_with(lambda live: COVERING_EDITS[case](hook(live)))
    assert findings(live) == []
    assert notes(live) == [f"{P}.rules"]


def test_match_policy_matters_only_when_a_served_version_is_not_listed() -> None:
    def exact(versions: list[str]) -> Callable[[dict[str, Any]], None]:
        return lambda live: hook(live).update(
            matchPolicy="Exact",
            rules=[{**hook(live)["rules"][0], "apiVersions": versions}, *hook(live)["rules"][1:]],
        )

    two = ["v1alpha1", "v1beta1"]
    # Exact with "*": every version still matches: a note.
    assert findings(live_with(exact(["*"])), two) == []
    assert notes(live_with(exact(["*"])), two) == [f"{P}.matchPolicy"]
    # Exact with one of two served versions: requests in the other skip the webhook.
    (finding,) = [f for f in compare(live_with(exact(["v1alpha1"])), two) if f.failing]
    assert "(matchPolicy Exact)" in finding.message
    assert "CREATE of agentruns.agents.proompteng.ai (v1beta1)" in finding.message
    # Equivalent with one of two: requests in the other version are converted and matched.
    equivalent = live_with(lambda live: hook(live)["rules"][0].update(apiVersions=["v1alpha1"]))
    assert findings(equivalent, two) == []


def test_without_discovery_a_listed_version_cannot_be_trusted() -> None:
    listed = live_with(lambda live: hook(live)["rules"][0].update(apiVersions=["v1alpha1"]))
    (finding,) = [f for f in compare(listed, served=None) if f.failing]
    assert "(any version)" in finding.message
    assert findings(live_with(lambda live: None), served=None) == []


def test_requirement_implication() -> None:
    def req(key: str, op: str, *values: str) -> tuple[str, str, frozenset[str]]:
        return (key, op, frozenset(values))

    k = NAME_LABEL
    assert implies(req(k, "NotIn", "a", "b"), req(k, "NotIn", "a"))
    assert not implies(req(k, "NotIn", "a"), req(k, "NotIn", "a", "b"))
    assert implies(req(k, "In", "a"), req(k, "In", "a", "b"))
    assert not implies(req(k, "In", "a", "b"), req(k, "In", "a"))
    assert implies(req(k, "In", "a"), req(k, "NotIn", "b"))
    assert not implies(req(k, "In", "a"), req(k, "NotIn", "a"))
    assert implies(req(k, "In", "a"), req(k, "Exists"))
    assert implies(req(k, "DoesNotExist"), req(k, "NotIn", "a"))
    assert not implies(req(k, "NotIn", "a"), req(k, "DoesNotExist"))
    assert implies(req(k, "Exists"), req(k, "Exists"))
    assert not implies(req("other", "Exists"), req(k, "Exists"))
    assert requirements({"matchLabels": {"a": "1"}}) == [req("a", "In", "1")]
    assert requirements(None) == requirements({}) == []
    assert describe(req(k, "NotIn", "b", "a")) == f"{k} NotIn [a, b]"
    assert describe(req(k, "Exists")) == f"{k} Exists"


def test_narrowing_is_what_the_live_selector_excludes_beyond_the_charts() -> None:
    chart = {"matchExpressions": [{"key": NAME_LABEL, "operator": "NotIn", "values": ["a", "b"]}]}
    assert narrowing(chart, chart) == []
    assert narrowing(chart, {}) == []  # everything: wider
    fewer = {"matchExpressions": [{"key": NAME_LABEL, "operator": "NotIn", "values": ["a"]}]}
    assert narrowing(chart, fewer) == []
    more = {"matchExpressions": [{"key": NAME_LABEL, "operator": "NotIn", "values": ["a", "c"]}]}
    assert narrowing(chart, more) == [(NAME_LABEL, "NotIn", frozenset({"a", "c"}))]
    opt_in = {**chart, "matchLabels": {"approvals.proompteng.ai/enforce": "true"}}
    assert narrowing(chart, opt_in) == [
        ("approvals.proompteng.ai/enforce", "In", frozenset({"true"}))
    ]
    assert narrowing(opt_in, opt_in) == []


def test_a_namespace_selector_that_excludes_an_enforced_namespace_names_it() -> None:
    def exclude(live: dict[str, Any]) -> None:
        hook(live)["namespaceSelector"]["matchExpressions"][0]["values"].append("agents")

    (finding,) = compare(live_with(exclude))
    assert finding.failing and finding.field == f"{P}.namespaceSelector"
    assert finding.message.endswith("this excludes the enforced namespace(s) agents")

    def opt_in(live: dict[str, Any]) -> None:
        hook(live)["namespaceSelector"]["matchLabels"] = {"approvals.proompteng.ai/enforce": "true"}

    (finding,) = compare(live_with(opt_in))
    assert finding.failing
    assert "also requires approvals.proompteng.ai/enforce In [true]" in finding.message
    assert "only as strong as the RBAC on namespace labels" in finding.message


def test_a_wider_namespace_selector_is_a_note() -> None:
    def wider(live: dict[str, Any]) -> None:
        hook(live)["namespaceSelector"] = {}

    assert [(f.severity, f.field) for f in compare(live_with(wider))] == [
        ("note", f"{P}.namespaceSelector")
    ]


def test_an_object_selector_lets_runs_opt_out() -> None:
    def labelled(live: dict[str, Any]) -> None:
        hook(live)["objectSelector"] = {
            "matchExpressions": [{"key": "skip-gate", "operator": "DoesNotExist"}]
        }

    (finding,) = compare(live_with(labelled))
    assert finding.failing and finding.field == f"{P}.objectSelector"
    assert "anyone who can label an AgentRun can opt it out" in finding.message


def test_match_conditions_that_skip_requests_are_findings() -> None:
    def condition(live: dict[str, Any]) -> None:
        hook(live)["matchConditions"] = [
            {"name": "not-ci", "expression": "request.userInfo.username != 'ci'"}
        ]

    (finding,) = compare(live_with(condition))
    assert finding.failing and finding.field == f"{P}.matchConditions"
    assert "not-ci (request.userInfo.username != 'ci')" in finding.message


def test_another_endpoint_is_a_finding() -> None:
    def url(live: dict[str, Any]) -> None:
        hook(live)["clientConfig"] = {"url": "https://evil.example/validate", "caBundle": "eA=="}

    def service(live: dict[str, Any]) -> None:
        hook(live)["clientConfig"]["service"]["name"] = "always-allow"

    for edit in (url, service):
        assert f"{P}.clientConfig" in findings(live_with(edit))
    (finding,) = [f for f in compare(live_with(url)) if f.field == f"{P}.clientConfig"]
    assert finding.message.startswith(
        "requests go to url https://evil.example/validate instead of service "
        "approvalgate-system/approvalgate:443/validate"
    )


def test_ca_bundle_and_cert_manager_injection() -> None:
    ca = f"{P}.clientConfig.caBundle"
    annotation = "metadata.annotations[cert-manager.io/inject-ca-from]"
    # Neither a caBundle nor an injection: the CA is not pinned.
    neither = live_with(
        lambda live: (
            hook(live)["clientConfig"].pop("caBundle"),
            live["metadata"].pop("annotations"),
        )
    )
    assert ca in findings(neither)
    # Injection pending: fails closed, a note.
    pending = live_with(lambda live: hook(live)["clientConfig"].pop("caBundle"))
    assert findings(pending) == [] and notes(pending) == [ca]
    # Annotation removed, caBundle kept: a note.
    kept = live_with(lambda live: live["metadata"].pop("annotations"))
    assert findings(kept) == [] and notes(kept) == [annotation]
    # Injected from another Certificate: a finding.
    other = live_with(
        lambda live: live["metadata"]["annotations"].update(
            {"cert-manager.io/inject-ca-from": "attacker/their-cert"}
        )
    )
    assert findings(other) == [annotation]
    # existingSecret mode: the chart renders the caBundle; another one is a finding.
    want = expected()
    del want["metadata"]["annotations"]
    hook(want)["clientConfig"]["caBundle"] = "b3Vycw=="
    same = live_with(
        lambda live: (
            live["metadata"].pop("annotations"),
            hook(live)["clientConfig"].update(caBundle="b3Vycw=="),
        )
    )
    assert compare_webhook(want, same, served_versions=SERVED) == []
    theirs = copy.deepcopy(same)
    hook(theirs)["clientConfig"]["caBundle"] = "dGhlaXJz"
    found = compare_webhook(want, theirs, served_versions=SERVED)
    assert [(f.severity, f.field) for f in found] == [("finding", ca)]
    assert "the API server trusts another CA" in found[0].message


def test_harmless_fields_are_notes() -> None:
    def edit(live: dict[str, Any]) -> None:
        hook(live).update(
            timeoutSeconds=10, sideEffects="NoneOnDryRun", admissionReviewVersions=["v1", "v1beta1"]
        )

    assert findings(live_with(edit)) == []
    assert notes(live_with(edit)) == [
        f"{P}.timeoutSeconds",
        f"{P}.sideEffects",
        f"{P}.admissionReviewVersions",
    ]


def test_pick_configuration_from_a_multi_document_render() -> None:
    docs = [{"kind": "Service"}, expected(), None, {"kind": "Deployment"}]
    assert pick_configuration(docs, "render.yaml") == expected()
    with pytest.raises(Exception, match="expected exactly one ValidatingWebhookConfiguration"):
        pick_configuration([{"kind": "Service"}], "render.yaml")


RELEASE_KEY = (
    Path(__file__).resolve().parents[2] / "examples/gitops-repo/bundle-signing/release.pub"
)


@pytest.mark.helm
@pytest.mark.parametrize(
    ("release", "namespace", "exclude", "opt_in"),
    [
        ("approvalgate", "approvalgate-system", [], False),
        ("gate", "security", [], False),
        ("gate", "security", ["kube-system", "infra"], False),
        ("approvalgate", "approvalgate-system", ["kube-system"], True),
        ("approvalgate", "approvalgate-system", [], True),
    ],
)
def test_chart_defaults_are_what_helm_renders(
    tmp_path: Path, release: str, namespace: str, exclude: list[str], opt_in: bool
) -> None:
    """The selector is built from the bundle's namespaceSelection (pinned beside the keys);
    with pinned keys the bundle's excludeNamespaces are sent too (the webhook passes them)."""
    helm = pinned_binary("helm", "helm")
    values = VALUES
    if exclude or opt_in:
        compiled = yaml.safe_load(VALUES.read_text(encoding="utf-8"))
        bundle = json.loads(compiled["policyBundle"]["content"])
        bundle["excludeNamespaces"] = exclude
        bundle["namespaceSelection"] = "optInLabel" if opt_in else "all"
        compiled["policyBundle"]["content"] = json.dumps(bundle)
        values = tmp_path / "values.yaml"
        values.write_text(yaml.safe_dump(compiled), encoding="utf-8")
    out = subprocess.run(
        [
            str(helm),
            "template",
            release,
            str(CHART),
            "-n",
            namespace,
            # the pinned bundle-signing key the chart requires (kept out of compiled values)
            "--set-file",
            f"bundleSigning.publicKeys[0]={RELEASE_KEY}",
            "--set",
            "bundleSigning.environment=staging",
            "-f",
            str(values),
            "--set",
            f"bundleSigning.namespaceSelection={'optInLabel' if opt_in else 'all'}",
            "--show-only",
            "templates/validatingwebhookconfiguration.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rendered = pick_configuration(yaml.safe_load_all(out.stdout), "helm")
    defaults = chart_defaults(rendered["metadata"]["name"], namespace, opt_in=opt_in)
    assert rendered["webhooks"] == defaults["webhooks"]
    inject = "cert-manager.io/inject-ca-from"
    assert (
        rendered["metadata"]["annotations"][inject] == defaults["metadata"]["annotations"][inject]
    )
