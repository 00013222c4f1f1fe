"""Stored AgentRuns decided again (audit.runs): pass, fail, and the two kinds of warning.

The runs are the decision corpus's base run and policy (two of the platform leads, on-call may
bypass, the submission API is trusted), stored as the API server returns them: with a
namespace, a uid and a creationTimestamp.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from approvalgate.approvals import records
from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.policy import BundleSettings
from approvalgate.approvals.records import ANNOTATION, parse_annotation
from approvalgate.approvals.view import EMPTY, USE_FINALIZER, StaticView, statement_digest
from approvalgate.audit.runs import REQUESTER_UNKNOWN, audit_run, audit_runs
from tests.support.corpus import BASE, compile_case_bundle, make_record

NOW = records.parse_time("2026-11-21T12:00:00Z")
CREATED = NOW - timedelta(hours=1)


def bundle(**settings: Any) -> Bundle:
    merged = {
        "environment": "test",
        "exclude_namespaces": ("sandbox",),
        "cluster_view": "off",  # records alone; the view's cases are at the end
        "referenced_content": "off",  # content binding: tests/unit/test_parents_decide.py
        **settings,
    }
    return parse_bundle_text(compile_case_bundle(BASE, BundleSettings(**merged)))


def stored(
    *recipes: dict[str, Any],
    created: datetime = CREATED,
    author: str = "",
    name: str = "codex-run-sample",
    agent: str = "codex-agent",
) -> dict[str, Any]:
    """The base run as stored, with approval records signed now (or as the recipes say)."""
    (doc,) = load_manifests((BASE / "run.yaml").read_text(), "run.yaml")
    run = copy.deepcopy(doc.obj)
    run["metadata"].update(
        name=name, uid=f"uid-{name}", creationTimestamp=records.format_time(created)
    )
    run["spec"]["agentRef"]["name"] = agent
    annotations: dict[str, str] = {}
    if recipes:
        envelopes = [make_record(r, run, BASE, NOW, "test") for r in recipes]  # issued NOW - 1h
        annotations[records.ANNOTATION] = json.dumps(envelopes)
    if author:
        annotations[records.AUTHOR_ANNOTATION] = author
    if annotations:
        run["metadata"]["annotations"] = annotations
    return run


LEADS = ({"key": "alice"}, {"key": "bob"})


def test_an_approved_run_passes() -> None:
    result = audit_run(stored(*LEADS), bundle(), NOW)
    assert (result.status, result.rule, result.reason) == ("pass", "recorded-approvals", "approved")
    assert result.message.startswith("AgentRun agents/codex-run-sample is approved by alice, bob")
    assert result.properties["requester"] == REQUESTER_UNKNOWN
    assert result.properties["approvers"] == "alice,bob"
    assert result.properties["created"] == "2026-11-21T11:00:00Z"
    assert result.uid == "uid-codex-run-sample"
    assert not result.failing


def test_a_run_without_approvals_fails_and_says_what_to_do() -> None:
    result = audit_run(stored(), bundle(), NOW)
    assert (result.status, result.rule, result.reason) == (
        "fail",
        "recorded-approvals",
        "missing-approvals",
    )
    assert result.policies == ("agents/two-person",)
    head, *details = result.message.splitlines()
    assert head == (
        "AgentRun agents/codex-run-sample would be denied if created now: it lacks the approvals "
        "it needs (missing-approvals); it would have been denied when it was created "
        "(2026-11-21T11:00:00Z) too. It got past admission without a decision (webhook not "
        "registered or not called, failurePolicy Ignore, namespace or object excluded) or under "
        "an older, looser policy."
    )
    assert details[0] == (
        "- policy agents/two-person: 0 of 2 required approvals "
        "(approvers: group:platform-leads, carol, requester)"
    )
    assert "the run was decided for an unknown requester" in details[-1]
    assert "it was most likely applied directly" in details[-1]  # no author, yet trusted exists
    assert result.advice.startswith(
        "delete it (`kubectl delete agentrun -n agents codex-run-sample`)"
    )
    assert result.failing


def test_approvals_expired_before_creation_fail_as_expired() -> None:
    long_ago = records.format_time(CREATED - timedelta(days=2))
    recipes = [{"key": k, "issuedAt": long_ago, "ttl": "1h"} for k in ("alice", "bob")]
    result = audit_run(stored(*recipes), bundle(), NOW)
    assert (result.status, result.rule) == ("fail", "approvals-expired")
    assert "its approvals had already expired (alice expired at 2026-11-19T12:00:00Z, " in (
        result.message
    )
    assert result.properties["expired"] == "true"


def test_approvals_that_expired_after_creation_are_a_warning() -> None:
    recipes = [{"key": k, "ttl": "2h"} for k in ("alice", "bob")]  # 11:00 to 13:00
    run = stored(*recipes)
    assert audit_run(run, bundle(), NOW).status == "pass"
    later = audit_run(run, bundle(), NOW + timedelta(hours=2))
    assert (later.status, later.rule) == ("warn", "approvals-expired")
    assert later.message.startswith(
        "AgentRun agents/codex-run-sample was admissible when it was created "
        "(2026-11-21T11:00:00Z), but its approvals have expired since"
    )
    assert "record 0 by alice: expired at 2026-11-21T13:00:00Z" in later.message
    assert not later.failing


def test_a_run_naming_its_author_may_come_from_the_trusted_submitter() -> None:
    result = audit_run(stored(author="carol"), bundle(), NOW)
    assert (result.status, result.rule) == ("warn", "trusted-submitter-unverified")
    assert "trusted submitter system:serviceaccount:agents-system:submission-api" in result.message
    assert "It names its author (carol)" in result.message
    assert result.properties["author"] == "carol"
    assert (
        result.properties["trustedSubmitter"]
        == "system:serviceaccount:agents-system:submission-api"
    )


def test_the_recorded_author_cannot_approve_their_own_run(tmp_path: Path) -> None:
    run = stored({"key": "alice"}, {"key": "carol"}, author="carol")
    result = audit_run(run, bundle(), NOW)
    assert "carol is the run's recorded author" in result.message
    assert result.status == "warn"  # the base policy trusts the submission API
    # Without trusted submitters the same run is a plain failure.
    policy = (BASE / "policies.yaml").read_text()
    (tmp_path / "policies.yaml").write_text(policy.split("  trustedSubmitters:")[0])
    untrusted = parse_bundle_text(
        compile_case_bundle(tmp_path, BundleSettings(exclude_namespaces=("sandbox",)))
    )
    again = audit_run(run, untrusted, NOW)
    assert (again.status, again.rule) == ("fail", "recorded-approvals")
    assert "recorded author carol" in again.message


def test_a_bypass_is_a_warning() -> None:
    recipe = {"key": "oncall", "decision": "bypass", "reason": "incident 42", "ttl": "2h"}
    result = audit_run(stored(recipe), bundle(), NOW)
    assert (result.status, result.rule, result.reason) == ("warn", "break-glass-bypass", "bypass")
    assert "incident 42" in result.message


def test_enforcement_below_enforce_is_a_warning() -> None:
    for level in ("warn", "audit"):
        result = audit_run(stored(), bundle(enforcement=level), NOW)
        assert (result.status, result.rule) == ("warn", "recorded-approvals"), level
        assert "admitted only because enforcement is below enforce" in result.message


def test_a_run_no_policy_selects() -> None:
    denied = audit_run(stored(agent="other-agent"), bundle(), NOW)
    assert (denied.status, denied.rule) == ("fail", "no-policy")
    assert "no ApprovalPolicy selects it and unmatched runs are denied" in denied.message
    allowed = audit_run(stored(agent="other-agent"), bundle(no_match="allow"), NOW)
    assert (allowed.status, allowed.rule) == ("pass", "no-policy")


@pytest.mark.parametrize("created", ["", "not a time"])
def test_an_unknown_creation_time_is_said(created: str) -> None:
    run = stored()
    run["metadata"]["creationTimestamp"] = created or None
    result = audit_run(run, bundle(), NOW)
    assert result.status == "fail"
    assert "its creation time is unknown" in result.message
    assert "created" not in result.properties


def test_runs_are_sorted_by_namespace_and_name() -> None:
    runs = [stored(name="b"), stored(*LEADS, name="a")]
    assert [(r.name, r.status) for r in audit_runs(runs, bundle(), NOW)] == [
        ("a", "pass"),
        ("b", "fail"),
    ]


def test_audited_namespaces() -> None:
    from approvalgate.audit.runner import audited_namespaces

    assert audited_namespaces(bundle(), []) == (("*",), [])  # every namespace, by default
    chosen, notes = audited_namespaces(bundle(), ["agents", "sandbox"])
    assert chosen == ("agents", "sandbox")  # listed: its runs are findings
    (note,) = notes
    assert not note.failing
    assert note.message.startswith("namespace sandbox is excluded by name in environment test")
    everything = bundle(exclude_namespaces=())
    assert audited_namespaces(everything, []) == (("*",), [])
    assert audited_namespaces(everything, ["b", "a"]) == (("a", "b"), [])


def _in(namespace: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": "r"}}


def test_every_namespace_holding_runs_without_enforcement_is_a_finding() -> None:
    from approvalgate.audit.runner import unenforced_namespaces

    objects = [_in("agents"), _in("sandbox"), _in("sandbox"), _in("team-new")]
    (finding,) = unenforced_namespaces(objects, bundle(), None)
    assert (finding.failing, finding.subject) == (True, "Namespace/sandbox")
    assert finding.message == (
        "namespace sandbox holds 2 AgentRuns but is excluded by name in environment test "
        "(excludeNamespaces): the webhook admits its AgentRuns without any approval check"
    )
    assert unenforced_namespaces(objects, bundle(exclude_namespaces=()), None) == []


def test_in_label_mode_namespaces_without_the_label_are_findings() -> None:
    from approvalgate.audit.runner import unenforced_namespaces

    labelled = bundle(exclude_namespaces=(), namespace_selection="optInLabel")
    objects = [_in("agents"), _in("team-new")]
    labels = {"agents": {"approvals.proompteng.ai/enforce": "true"}, "team-new": {}}
    (finding,) = unenforced_namespaces(objects, labelled, labels)
    assert (finding.failing, finding.subject) == (True, "Namespace/team-new")
    assert "lacks the label approvals.proompteng.ai/enforce=true" in finding.message
    assert "whoever may label namespaces can turn enforcement off" in finding.message
    (note,) = unenforced_namespaces(objects, labelled, None)  # labels not readable
    assert not note.failing and "could not be read" in note.message


def test_a_vetoed_run_says_so() -> None:
    result = audit_run(stored(*LEADS, {"key": "carol", "decision": "reject"}), bundle(), NOW)
    assert (result.status, result.reason) == ("fail", "vetoed")
    assert "would be denied if created now: an eligible approver rejected it (vetoed)" in (
        result.message
    )


# --- where the bundle requires the cluster view -------------------------------------------


def test_with_the_view_a_use_by_another_run_fails_and_the_own_use_passes() -> None:
    run = stored(*LEADS)
    run["metadata"]["finalizers"] = [USE_FINALIZER]
    required = bundle(cluster_view="required")
    statements = [
        statement_digest(r) for r in parse_annotation(run["metadata"]["annotations"][ANNOTATION])[0]
    ]

    def use(uid: str) -> dict[str, Any]:
        return {
            "metadata": {"name": uid, "namespace": "agents"},
            "spec": {"run": {"name": "codex-run-sample", "uid": uid}, "statements": statements},
        }

    own = audit_run(run, required, NOW, StaticView.build(uses=[use("uid-codex-run-sample")]))
    assert (own.status, own.reason) == ("pass", "approved")
    other = audit_run(run, required, NOW, StaticView.build(uses=[use("uid-earlier")]))
    assert (other.status, other.reason) == ("fail", "missing-approvals")
    assert "already used by run agents/codex-run-sample (uid uid-earlier)" in other.message


def test_with_the_view_required_a_run_without_the_use_finalizer_fails() -> None:
    result = audit_run(stored(*LEADS), bundle(cluster_view="required"), NOW, EMPTY)
    assert (result.status, result.reason) == ("fail", "missing-use-finalizer")
    assert USE_FINALIZER in result.message
