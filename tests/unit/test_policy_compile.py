"""compile_bundle(): ApprovalPolicy + Approver documents -> the bundle, or located problems."""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from approvalgate.approvals.bundle import load_bundle, parse_bundle_text
from approvalgate.approvals.decide import decide
from approvalgate.approvals.errors import BundleError, Finding
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.policy import (
    BundleSettings,
    Problem,
    bundle_generation,
    compile_bundle,
    dump_bundle,
)
from tests.support.corpus import BASE, KEYS, compile_case_bundle, load_case
from tests.support.paths import UPSTREAM_AGENTS

UPSTREAM_SAMPLE = UPSTREAM_AGENTS / "examples" / "approvalpolicy-sample.yaml"
REPO = Path(__file__).resolve().parents[2]


def load(text: str) -> list[dict[str, Any]]:
    return [dict(d.obj) for d in load_manifests(text) if d.obj is not None]


def base_docs() -> list[dict[str, Any]]:
    return load((BASE / "policies.yaml").read_text()) + load((BASE / "approvers.yaml").read_text())


def approvers() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in load((BASE / "approvers.yaml").read_text())}


def approver(name: str, like: str = "alice", **spec: Any) -> dict[str, Any]:
    """An Approver called ``name`` holding the keys of the base approver ``like``."""
    doc = copy.deepcopy(approvers()[like])
    doc["metadata"]["name"] = name
    doc["spec"] = {"keys": doc["spec"]["keys"], "usernames": [f"{name}@example.com"], **spec}
    return doc


def policy(spec: dict[str, Any], name: str = "p", namespace: str = "agents") -> dict[str, Any]:
    return {
        "apiVersion": "approvals.proompteng.ai/v1alpha1",
        "kind": "ApprovalPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def compile_docs(docs: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[Problem]]:
    return compile_bundle(docs, BundleSettings())


def errors(problems: list[Problem]) -> list[tuple[int, tuple[str | int, ...], str]]:
    return [(p.doc, p.finding.path, p.finding.message) for p in problems if _is_error(p)]


def warnings(problems: list[Problem]) -> list[tuple[int, tuple[str | int, ...], str]]:
    return [(p.doc, p.finding.path, p.finding.message) for p in problems if not _is_error(p)]


def _is_error(problem: Problem) -> bool:
    return problem.finding.severity == "error"


# --- the upstream sample ------------------------------------------------------------------

ORCHESTRATION_WARNING = Finding(
    ("spec", "subjects", 0, "kind"),
    "subject kind 'Orchestration' is not visible on an AgentRun: "
    "this subject never matches a run at admission",
    "approvalgate matches kinds Agent, AgentRun, ImplementationSpec, Namespace",
    "warning",
)


def test_the_upstream_sample_as_is_compiles_with_warnings() -> None:
    """The sample names no approvers and an Orchestration subject: both are valid upstream,
    so it compiles, and each is a warning saying what it means at admission."""
    sample = load(UPSTREAM_SAMPLE.read_text())
    assert [d["kind"] for d in sample] == ["ApprovalPolicy"]
    assert "approvers" not in sample[0]["spec"]
    bundle, problems = compile_docs([*sample, approvers()["alice"]])
    assert bundle is not None
    assert problems == [
        Problem(0, ORCHESTRATION_WARNING),
        Problem(
            0,
            Finding(
                ("spec",),
                "the policy names no approvers: runs it selects are admitted only through "
                "trustedSubmitters or a bypass",
                "list Approver names or group:NAME under spec.approvers",
                "warning",
            ),
        ),
    ]


def test_the_upstream_sample_compiles_once_it_names_an_approver() -> None:
    sample = load(UPSTREAM_SAMPLE.read_text())[0]
    sample["spec"]["approvers"] = ["alice"]
    bundle, problems = compile_docs([sample, approvers()["alice"]])
    assert problems == [Problem(0, ORCHESTRATION_WARNING)]
    assert bundle is not None
    [compiled] = bundle["policies"]
    assert compiled == {
        "name": "default-approval",
        "namespace": "",
        "mode": "manual",
        "defaultDecision": "deny",
        "namespaces": ["*"],
        "subjects": [{"kind": "Orchestration", "name": "codex-orchestration"}],
        "agents": [],
        "matchLabels": {},
        "approvers": ["alice"],
        "approverRefs": ["alice"],
        "requiredApprovals": 1,
        "timeoutSeconds": 86400,
        "rejection": "veto",
        "enforcement": "enforce",
        "bypass": None,
        "trustedSubmitters": {"users": [], "groups": []},
        "serviceAccountRequesters": "deny",
        "gitOpsAppliers": [],
    }
    parse_bundle_text(dump_bundle(bundle))  # and the webhook can load it


# --- the upstream GitOps policy: mode automatic, one approver -----------------------------

AUTOMATIC = {
    "mode": "automatic",
    "approvers": ["agents-admin"],
    "requiredApprovals": 1,
    "timeoutSeconds": 86400,
}
AUTOMATIC_WARNING = (
    0,
    ("spec", "mode"),
    "mode: automatic approves inside the submission API only; direct submissions "
    "still need approval records, and no trustedSubmitters are set",
)


def test_automatic_policy_with_an_approver_named_agents_admin() -> None:
    bundle, problems = compile_docs([policy(AUTOMATIC), approver("agents-admin")])
    assert errors(problems) == []
    assert warnings(problems) == [AUTOMATIC_WARNING]
    assert bundle is not None
    [compiled] = bundle["policies"]
    assert (compiled["mode"], compiled["approvers"], compiled["approverRefs"]) == (
        "automatic",
        ["agents-admin"],
        ["agents-admin"],
    )
    assert (compiled["requiredApprovals"], compiled["timeoutSeconds"]) == (1, 86400)
    assert [a["name"] for a in bundle["approvers"]] == ["agents-admin"]


def test_automatic_policy_where_agents_admin_is_a_group_of_approvers() -> None:
    docs = [
        policy(AUTOMATIC),
        approver("alice", "alice", groups=["agents-admin"]),
        approver("bob", "bob", groups=["agents-admin", "sre"]),
        approver("carol", "carol", groups=["sre"]),
    ]
    bundle, problems = compile_docs(docs)
    assert errors(problems) == []
    assert warnings(problems) == [AUTOMATIC_WARNING]
    assert bundle is not None
    [compiled] = bundle["policies"]
    assert compiled["approvers"] == ["alice", "bob"]
    assert compiled["approverRefs"] == ["agents-admin"]
    parse_bundle_text(dump_bundle(bundle))


def test_the_group_prefix_names_the_group_even_when_an_approver_has_its_name() -> None:
    docs = [
        policy({**AUTOMATIC, "approvers": ["group:agents-admin"]}),
        approver("agents-admin", "carol"),
        approver("alice", "alice", groups=["agents-admin"]),
    ]
    bundle, problems = compile_docs(docs)
    assert errors(problems) == []
    assert bundle is not None
    assert bundle["policies"][0]["approvers"] == ["alice"]
    docs[0]["spec"]["approvers"] = ["agents-admin"]  # a bare name: the Approver wins
    bundle, problems = compile_docs(docs)
    assert bundle is not None
    assert bundle["policies"][0]["approvers"] == ["agents-admin"]


def test_automatic_with_trusted_submitters_has_no_warning() -> None:
    spec = {
        **AUTOMATIC,
        "trustedSubmitters": {"users": ["system:serviceaccount:agents-system:api"]},
    }
    bundle, problems = compile_docs([policy(spec), approver("agents-admin")])
    assert (bundle is not None, problems) == (True, [])


# --- trusted ServiceAccounts live outside what the policy enforces (class 17) -------------

SA_IN_RUNS_NAMESPACE = (
    "trusted submitter 'system:serviceaccount:agents:api' is a ServiceAccount in namespace "
    "'agents', where this policy enforces approvals: anyone who may create runs there can "
    "usually impersonate it, mint a token for it or run a pod as it (the built-in edit role "
    "grants all three)"
)


@pytest.mark.parametrize(
    ("selector", "excluded", "error"),
    [
        ({}, (), True),  # the policy's own namespace
        ({"namespaces": ["agents", "agents-prod"]}, (), True),
        ({"namespaces": ["agents-prod"]}, (), False),  # the policy never judges agents
        ({}, ("agents",), False),  # the environment excludes agents by name
    ],
)
def test_a_trusted_service_account_where_the_policy_enforces_is_an_error(
    selector: dict[str, Any], excluded: tuple[str, ...], error: bool
) -> None:
    spec = {
        "approvers": ["alice"],
        "selector": selector,
        "trustedSubmitters": {"users": ["carol", "system:serviceaccount:agents:api"]},
    }
    bundle, problems = compile_bundle(
        [policy(spec), approvers()["alice"]], BundleSettings(exclude_namespaces=excluded)
    )
    found = errors(problems)
    if not error:
        assert (bundle is not None, found) == (True, [])
        return
    assert bundle is None
    assert found == [(0, ("spec", "trustedSubmitters", "users", 1), SA_IN_RUNS_NAMESPACE)]
    assert problems[0].finding.advice == (
        "move the submitter to a namespace of its own that requesters cannot edit "
        "(e.g. agents-system) and trust system:serviceaccount:agents-system:api"
    )


def test_a_trusted_service_account_where_another_policy_approves_runs_is_an_error() -> None:
    """Class 17: the submitter trusted for agents lives in team-b, where another policy
    approves runs (so requesters create runs there, with edit). Whoever runs a pod as it in
    team-b is trusted in agents. Every policy's namespaces count, not only its own."""
    spec = {
        "approvers": ["alice"],
        "trustedSubmitters": {
            "users": ["system:serviceaccount:team-b:api"],
            "groups": ["system:serviceaccounts:team-b"],
        },
        "gitOpsAppliers": ["system:serviceaccount:team-b:argo"],
    }
    team_b = policy({"approvers": ["alice"]}, name="team-b-runs", namespace="team-b")
    bundle, problems = compile_docs([policy(spec), team_b, approvers()["alice"]])
    assert bundle is None
    where = "where policy team-b/team-b-runs approves runs"
    assert [(doc, path) for doc, path, _ in errors(problems)] == [
        (0, ("spec", "trustedSubmitters", "users", 0)),
        (0, ("spec", "gitOpsAppliers", 0)),
        (0, ("spec", "trustedSubmitters", "groups", 0)),
    ]
    assert all(where in message for _, _, message in errors(problems))
    # a policy of every namespace names no tenant namespace; an excluded one is no tenant's
    everywhere = policy({"approvers": ["alice"]}, name="everywhere", namespace="")
    del everywhere["metadata"]["namespace"]
    bundle, problems = compile_docs([policy(spec), everywhere, approvers()["alice"]])
    assert (bundle is not None, errors(problems)) == (True, [])
    settings = BundleSettings(exclude_namespaces=("team-b",))
    bundle, problems = compile_bundle([policy(spec), team_b, approvers()["alice"]], settings)
    assert (bundle is not None, errors(problems)) == (True, [])


@pytest.mark.parametrize(
    ("group", "where"),
    [
        ("system:serviceaccounts:agents", "namespace 'agents'"),
        ("system:serviceaccounts", "every namespace"),
    ],
)
def test_trusting_the_service_accounts_of_an_enforced_namespace_is_an_error(
    group: str, where: str
) -> None:
    spec = {"approvers": ["alice"], "trustedSubmitters": {"groups": ["platform", group]}}
    bundle, problems = compile_docs([policy(spec), approvers()["alice"]])
    assert bundle is None
    assert errors(problems) == [
        (
            0,
            ("spec", "trustedSubmitters", "groups", 1),
            f"trusted group {group!r} holds the ServiceAccounts of {where}, where this policy "
            "enforces approvals: anyone who may create runs there can act as one of them",
        )
    ]


@pytest.mark.parametrize(
    ("where", "name", "message"),
    [
        (
            "groups",
            "system:authenticated",
            "trusted group 'system:authenticated' holds every authenticated user (and every "
            "ServiceAccount): it would trust everyone who may create runs, people and "
            "ServiceAccounts alike",
        ),
        (
            "groups",
            "system:unauthenticated",
            "trusted group 'system:unauthenticated' holds every request without credentials: "
            "it would trust everyone who may create runs, people and ServiceAccounts alike",
        ),
        (
            "users",
            "system:anonymous",
            "trusted submitter 'system:anonymous' is every request without credentials",
        ),
    ],
)
def test_trusting_everyone_is_an_error(where: str, name: str, message: str) -> None:
    """system:authenticated holds every ServiceAccount too (any requester with edit acts as
    one of hers, from a pod of her own), and every person."""
    spec = {"approvers": ["alice"], "trustedSubmitters": {where: [name]}}
    bundle, problems = compile_docs([policy(spec), approvers()["alice"]])
    assert bundle is None
    assert errors(problems) == [(0, ("spec", "trustedSubmitters", where, 0), message)]


@pytest.mark.parametrize("choice", ["deny", "extraApproval"])
def test_service_account_requesters_is_compiled_with_a_safe_default(choice: str) -> None:
    bundle, _ = compile_docs([policy({"approvers": ["alice"]}), approvers()["alice"]])
    assert bundle is not None and bundle["policies"][0]["serviceAccountRequesters"] == "deny"
    spec = {"approvers": ["alice"], "serviceAccountRequesters": choice}
    bundle, _ = compile_docs([policy(spec), approvers()["alice"]])
    assert bundle is not None and bundle["policies"][0]["serviceAccountRequesters"] == choice
    spec["serviceAccountRequesters"] = "allow"
    bundle, problems = compile_docs([policy(spec), approvers()["alice"]])
    assert bundle is None and errors(problems)[0][1] == ("spec", "serviceAccountRequesters")


def test_the_base_corpus_policy_compiles_cleanly() -> None:
    bundle, problems = compile_docs(base_docs())
    assert problems == []
    assert bundle is not None
    [compiled] = bundle["policies"]
    assert compiled["approvers"] == ["alice", "bob", "carol", "requester"]
    assert compiled["bypass"] == {"approvers": ["oncall"], "maxTTLSeconds": 7200}


# --- schema errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "field"),
    [
        (("spec",), "colour"),
        (("spec",), "requiredApproval"),  # a typo of requiredApprovals
        (("metadata",), "owner"),
        (("spec", "bypass"), "ttl"),
        (("spec", "selector"), "labels"),
        (("spec", "subjects", 0), "apiGroup"),
    ],
)
def test_unknown_fields_are_errors_located_at_the_field(
    where: tuple[str | int, ...], field: str
) -> None:
    doc = policy(
        {
            "approvers": ["alice"],
            "bypass": {"approvers": ["alice"], "maxTTL": "1h"},
            "selector": {},
            "subjects": [{"kind": "Agent", "name": "codex-agent"}],
        }
    )
    target: Any = doc
    for part in where:
        target = target[part]
    target[field] = "x"
    bundle, problems = compile_docs([doc, approvers()["alice"]])
    assert bundle is None
    [(index, path, message)] = errors(problems)
    assert (index, path) == (0, (*where, field))
    assert message.startswith(f"unknown field {field!r}")


def test_unknown_fields_in_an_approver_are_errors_located_at_the_field() -> None:
    doc = approvers()["alice"]
    doc["spec"]["email"] = "alice@example.com"
    doc["spec"]["keys"][0]["comment"] = "laptop"
    bundle, problems = compile_docs([policy({"approvers": ["bob"]}), approvers()["bob"], doc])
    assert bundle is None
    found = errors(problems)
    assert [(i, p) for i, p, _ in found] == [
        (2, ("spec", "email")),
        (2, ("spec", "keys", 0, "comment")),
    ]
    assert all(m.startswith("unknown field") for _, _, m in found)


def test_unquoted_off_gives_the_quote_the_word_message() -> None:
    text = (
        "apiVersion: approvals.proompteng.ai/v1alpha1\n"
        "kind: ApprovalPolicy\n"
        "metadata:\n  name: p\n  namespace: agents\n"
        "spec:\n  approvers: [alice]\n  enforcement: off\n"
    )
    docs = load(text)
    assert docs[0]["spec"]["enforcement"] is False  # what kubectl would send too
    bundle, problems = compile_docs([*docs, approvers()["alice"]])
    assert bundle is None
    assert errors(problems) == [
        (
            0,
            ("spec", "enforcement"),
            "false is not one of 'enforce', 'warn', 'audit', 'off': unquoted off/no/false "
            'is a boolean in Kubernetes YAML; quote the word, e.g. "off"',
        )
    ]
    quoted = load(text.replace("enforcement: off", 'enforcement: "off"'))
    bundle, problems = compile_docs([*quoted, approvers()["alice"]])
    assert (errors(problems), bundle is not None) == ([], True)
    assert bundle is not None
    assert bundle["policies"][0]["enforcement"] == "off"


def test_requiredapprovals_above_the_eligible_approvers_is_an_error() -> None:
    docs = [
        policy({"approvers": ["group:platform-leads"], "requiredApprovals": 3}),
        *approvers().values(),
    ]
    bundle, problems = compile_docs(docs)
    assert bundle is None
    assert errors(problems) == [
        (
            0,
            ("spec", "requiredApprovals"),
            "requires 3 approvals but only 2 approvers are eligible (alice, bob)",
        )
    ]
    [problem] = [p for p in problems if _is_error(p)]
    assert problem.finding.advice == "add approvers or lower requiredApprovals"
    docs[0]["spec"]["requiredApprovals"] = 2
    assert compile_docs(docs)[0] is not None


def test_an_approver_reached_twice_counts_once_against_requiredapprovals() -> None:
    """alice directly and through her group is still one eligible approver."""
    docs = [
        policy({"approvers": ["alice", "group:platform-leads"], "requiredApprovals": 3}),
        *approvers().values(),
    ]
    bundle, problems = compile_docs(docs)
    assert bundle is None
    assert errors(problems)[0][2] == (
        "requires 3 approvals but only 2 approvers are eligible (alice, bob)"
    )


def test_a_policy_listing_an_approver_twice_is_an_error() -> None:
    bundle, problems = compile_docs(
        [policy({"approvers": ["alice", "bob", "alice"]}), *approvers().values()]
    )
    assert bundle is None
    [(index, path, message)] = errors(problems)
    assert (index, path) == (0, ("spec", "approvers"))
    assert "non-unique" in message


def test_an_approver_defined_twice_is_an_error() -> None:
    again = approver("alice", "carol")
    docs = [policy({"approvers": ["alice"]}), approvers()["alice"], again]
    bundle, problems = compile_docs(docs)
    assert bundle is None
    assert errors(problems) == [(2, ("metadata", "name"), "approver 'alice' is defined twice")]
    [problem] = [p for p in problems if _is_error(p)]
    assert problem.finding.advice == "the first definition is document 2"


def test_a_key_shared_by_two_approvers_is_an_error() -> None:
    twin = approver("zed", "bob")
    docs = [policy({"approvers": ["bob"]}), approvers()["bob"], twin]
    bundle, problems = compile_docs(docs)
    assert bundle is None
    assert errors(problems) == [
        (2, ("spec", "keys", 0, "publicKey"), "this key already belongs to approver 'bob'")
    ]


def test_a_key_shared_by_two_approvers_is_reported_whatever_the_document_order() -> None:
    twin = approver("aaron", "bob")
    bundle, problems = compile_docs([policy({"approvers": ["bob"]}), twin, approvers()["bob"]])
    assert bundle is None
    assert errors(problems) == [
        (2, ("spec", "keys", 0, "publicKey"), "this key already belongs to approver 'aaron'")
    ]


def test_a_key_shared_by_two_approvers_in_another_form_is_an_error() -> None:
    """The same key as PEM for one approver and as an OpenSSH line for another has another
    key id (securesystemslib's covers the form): one private key would sign for both."""
    private = serialization.load_pem_private_key((KEYS / "bob.key").read_bytes(), None)
    line = (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    twin = approver("zed", "bob")
    twin["spec"]["keys"] = [{"publicKey": line}]
    bundle, problems = compile_docs(
        [policy({"approvers": ["bob", "zed"]}), approvers()["bob"], twin]
    )
    assert bundle is None
    assert errors(problems) == [
        (2, ("spec", "keys", 0, "publicKey"), "this key already belongs to approver 'bob'")
    ]


@pytest.mark.parametrize("spelt", ["bob", "Bob", " bob", "b\u200bob"])
def test_a_username_shared_by_two_approvers_is_an_error(spelt: str) -> None:
    """One username is one person: as two approvers they would vote twice."""
    twin = approver("zed", "carol", usernames=[spelt])
    docs = [policy({"approvers": ["bob", "zed"]}), approvers()["bob"], twin]
    bundle, problems = compile_docs(docs)
    assert bundle is None
    found = errors(problems)
    assert found[0] == (
        2,
        ("spec", "usernames"),
        f"username {spelt!r} already belongs to approver 'bob' (as 'bob'): whoever "
        "logs in as it would approve as both",
    )
    # " bob" is also whitespace a reviewer cannot see (the identities check)
    assert [m for _, _, m in found[1:]] == (
        [
            f"username {spelt!r} begins or ends with whitespace, which a reviewer cannot see: "
            "Kubernetes compares it as written, so it is another identity than 'bob'"
        ]
        if spelt != spelt.strip()
        else []
    )


def test_approvers_sharing_a_username_in_a_loaded_bundle_count_as_one_person() -> None:
    """A bundle compiled before the check above (or made by hand and signed): decide()
    still counts approvers that share a username as one person, one vote."""
    case = load_case("approve-two-distinct")  # alice and bob approve: admitted
    assert decide(case.request, case.bundle, case.now).allowed
    obj = json.loads(compile_case_bundle(BASE))
    (bob,) = [a for a in obj["approvers"] if a["name"] == "bob"]
    bob["usernames"] = sorted({*bob["usernames"], "ALICE@example.com"})  # alice's, spelt anew
    obj["generation"] = bundle_generation(obj)
    decision = decide(case.request, load_bundle(obj), case.now)
    assert (decision.allowed, decision.reason) == (False, "missing-approvals")
    assert "1 of 2 required approvals" in decision.message
    assert "still needed: 1 more approval(s) from carol\n" in decision.message


def test_an_approver_listing_anothers_name_as_a_username_is_one_person_with_them() -> None:
    """carol lists ``b\u043eb`` (bob's Approver name, a Cyrillic o) among her usernames:
    refusals already took whoever logs in as it for bob and carol both; the vote counts them
    as one person too (before: 2 of 2, admitted). The compiler refuses such a bundle."""
    case = load_case("approve-two-distinct")
    obj = json.loads(compile_case_bundle(BASE))
    for entry in obj["approvers"]:
        if entry["name"] == "bob":
            entry["usernames"] = ["bob@example.com"]
        if entry["name"] == "carol":
            entry["usernames"] = sorted({*entry["usernames"], "b\u043eb"})
    obj["generation"] = bundle_generation(obj)
    from approvalgate.approvals import records
    from tests.support.corpus import CORPUS, make_record

    run = case.request["object"]
    signed = [
        make_record({"key": "bob"}, run, CORPUS / case.name, case.now),
        make_record({"key": "carol"}, run, CORPUS / case.name, case.now),
    ]
    run["metadata"]["annotations"][records.ANNOTATION] = json.dumps(signed)
    decision = decide(case.request, load_bundle(obj), case.now)
    assert (decision.allowed, decision.reason) == (False, "missing-approvals")
    assert "1 of 2 required approvals" in decision.message


def test_a_username_naming_another_approver_is_an_error() -> None:
    twin = approver("zed", "carol", usernames=["bob"])
    bob = copy.deepcopy(approvers()["bob"])
    bob["spec"]["usernames"] = ["bob@example.com"]
    bundle, problems = compile_docs([policy({"approvers": ["bob", "zed"]}), bob, twin])
    assert bundle is None
    assert errors(problems) == [
        (
            2,
            ("spec", "usernames"),
            "username 'bob' is the name of approver 'bob': whoever logs in as it would "
            "approve as both",
        )
    ]


def test_approvers_sharing_a_key_in_a_loaded_bundle_count_as_one_person() -> None:
    """A bundle compiled before the key check (or made by hand and signed) lists bob's key
    under carol too: whoever holds it signs as bob and as carol, and decide() counts one
    vote, as it does for approvers sharing a username (before: 2 of 2, admitted)."""
    from approvalgate.approvals import records
    from tests.support.corpus import CORPUS, make_record

    case = load_case("approve-two-distinct")
    obj = json.loads(compile_case_bundle(BASE))
    (bob,) = [a for a in obj["approvers"] if a["name"] == "bob"]
    (carol,) = [a for a in obj["approvers"] if a["name"] == "carol"]
    carol["keys"] = [*carol["keys"], *bob["keys"]]
    obj["generation"] = bundle_generation(obj)
    run = case.request["object"]
    signed = [
        make_record({"key": "bob"}, run, CORPUS / case.name, case.now),
        make_record({"key": "bob", "approver": "carol"}, run, CORPUS / case.name, case.now),
    ]
    run["metadata"]["annotations"][records.ANNOTATION] = json.dumps(signed)
    decision = decide(case.request, load_bundle(obj), case.now)
    assert (decision.allowed, decision.reason) == (False, "missing-approvals")
    assert "1 of 2 required approvals" in decision.message
    assert "record 1 by carol: valid approve" in decision.message


@pytest.mark.parametrize(
    ("principal", "message"),
    [
        ("dave", "'dave' is neither an Approver nor a group of approvers"),
        ("group:nobody", "no Approver is in group 'nobody'"),
        ("Alice", "'Alice' is neither an Approver nor a group of approvers"),
    ],
)
def test_unknown_approver_names_are_errors(principal: str, message: str) -> None:
    docs = [policy({"approvers": ["alice", principal]}), approvers()["alice"]]
    bundle, problems = compile_docs(docs)
    assert bundle is None
    assert errors(problems) == [(0, ("spec", "approvers", 1), message)]


def test_unknown_bypass_approvers_are_errors() -> None:
    spec = {"approvers": ["alice"], "bypass": {"approvers": ["oncall"], "maxTTL": "2h"}}
    bundle, problems = compile_docs([policy(spec), approvers()["alice"]])
    assert bundle is None
    assert errors(problems) == [
        (
            0,
            ("spec", "bypass", "approvers", 0),
            "'oncall' is neither an Approver nor a group of approvers",
        )
    ]


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        ("2026-06-01T00:00:00Z", "2026-06-01T00:00:00Z"),
        ("2026-06-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ("2026-06-01T02:00:00+02:00", "2026-06-01T00:00:00Z"),  # equal instants
    ],
    ids=["equal", "reversed", "equal-in-another-zone"],
)
def test_notbefore_not_before_notafter_is_an_error(not_before: str, not_after: str) -> None:
    doc = approvers()["bob"]
    doc["spec"]["keys"][0].update(notBefore=not_before, notAfter=not_after)
    bundle, problems = compile_docs([policy({"approvers": ["bob"]}), doc])
    assert bundle is None
    assert errors(problems) == [
        (1, ("spec", "keys", 0, "notAfter"), "notAfter must be later than notBefore")
    ]


def test_a_key_window_is_kept_in_utc() -> None:
    doc = approvers()["bob"]
    doc["spec"]["keys"][0].update(
        notBefore="2026-01-01T01:00:00+01:00", notAfter="2027-01-01T00:00:00Z"
    )
    bundle, problems = compile_docs([policy({"approvers": ["bob"]}), doc])
    assert problems == []
    assert bundle is not None
    key = bundle["approvers"][0]["keys"][0]
    assert (key["notBefore"], key["notAfter"]) == ("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z")


# --- stable output ------------------------------------------------------------------------


def _generation_in_a_fresh_process(seed: str) -> str:
    code = (
        "from tests.unit.test_policy_compile import base_docs, compile_docs\n"
        "print(compile_docs(base_docs())[0]['generation'])\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_generation_is_stable_across_runs() -> None:
    first, _ = compile_docs(base_docs())
    second, _ = compile_docs(base_docs())
    assert first is not None
    assert second is not None
    assert first["generation"] == second["generation"]
    assert len(first["generation"]) == 16
    assert {_generation_in_a_fresh_process(seed) for seed in ("1", "2")} == {first["generation"]}


def test_the_generation_changes_when_a_policy_changes() -> None:
    before, _ = compile_docs(base_docs())
    docs = base_docs()
    docs[0]["spec"]["requiredApprovals"] = 1
    after, _ = compile_docs(docs)
    docs = base_docs()
    docs[0]["spec"]["bypass"]["maxTTL"] = "1h"
    shorter, _ = compile_docs(docs)
    assert before is not None
    assert after is not None
    assert shorter is not None
    assert len({before["generation"], after["generation"], shorter["generation"]}) == 3


def test_the_generation_changes_when_a_key_changes() -> None:
    before, _ = compile_docs(base_docs())
    docs = base_docs()
    carol = next(d for d in docs if d["metadata"]["name"] == "carol")
    carol["spec"]["keys"][0]["notAfter"] = "2030-01-01T00:00:00Z"
    after, _ = compile_docs(docs)
    assert before is not None
    assert after is not None
    assert before["generation"] != after["generation"]


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


def _shuffled_keys(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: _shuffled_keys(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [_shuffled_keys(v, rng) for v in value]
    return value


def test_dump_bundle_is_byte_identical_across_compiles() -> None:
    first, _ = compile_docs(base_docs())
    second, _ = compile_docs(base_docs())
    assert first is not None
    assert second is not None
    text = dump_bundle(first)
    assert text == dump_bundle(second)
    assert text.endswith("}\n")
    assert not text.endswith("\n\n")
    assert json.loads(text) == first


def test_dump_bundle_ignores_dict_insertion_order_of_the_input() -> None:
    reference, _ = compile_docs(base_docs())
    assert reference is not None
    expected = dump_bundle(reference)
    variants = [[_reversed_keys(d) for d in base_docs()]]
    rng = random.Random(20261121)
    variants += [[_shuffled_keys(d, rng) for d in base_docs()] for _ in range(5)]
    for docs in variants:
        bundle, problems = compile_docs(docs)
        assert problems == []
        assert bundle is not None
        assert dump_bundle(bundle) == expected
        assert bundle["generation"] == reference["generation"]


def test_dump_bundle_ignores_the_order_of_documents() -> None:
    reference, _ = compile_docs(base_docs())
    assert reference is not None
    docs = base_docs()
    for seed in range(3):
        random.Random(seed).shuffle(docs)
        bundle, _ = compile_docs(docs)
        assert bundle is not None
        assert dump_bundle(bundle) == dump_bundle(reference)


def test_dump_bundle_of_the_bundle_with_its_keys_reversed_is_the_same_text() -> None:
    bundle, _ = compile_docs(base_docs())
    assert bundle is not None
    assert dump_bundle(_reversed_keys(bundle)) == dump_bundle(bundle)


# --- names a run's references can never carry (class 18, the policy's side) ---------------


@pytest.mark.parametrize("name", ["codex-agent ", "Codex-Agent", "codex\u00a0agent", "codex_agent"])
def test_a_subject_or_agent_name_no_run_can_carry_is_an_error(name: str) -> None:
    spec = {
        "approvers": ["alice"],
        "subjects": [{"kind": "Agent", "name": name}, {"kind": "Orchestration", "name": name}],
        "selector": {"agents": ["codex-agent", name]},
    }
    bundle, problems = compile_docs([policy(spec), approvers()["alice"]])
    assert bundle is None
    assert [p[1] for p in errors(problems)] == [
        ("spec", "subjects", 0, "name"),
        ("spec", "selector", "agents", 1),
    ]
    assert "never matches a run" in errors(problems)[0][2]


def test_extra_approval_that_can_never_be_met_is_a_warning() -> None:
    spec = {"approvers": ["alice"], "serviceAccountRequesters": "extraApproval"}
    bundle, problems = compile_docs([policy(spec), approvers()["alice"]])
    assert bundle is not None
    assert warnings(problems) == [
        (
            0,
            ("spec", "serviceAccountRequesters"),
            "extraApproval asks a ServiceAccount requester for 2 approvals, but only 1 "
            "approvers are eligible: such runs are never admitted",
        )
    ]


# --- parents (issue 16) ------------------------------------------------------------------------

CREATORS = ["system:serviceaccount:agents:agents-controller"]


def test_a_parents_block_compiles_with_its_defaults() -> None:
    spec = {"approvers": ["alice"], "parents": {"creators": CREATORS}}
    bundle, problems = compile_docs([policy(spec), approvers()["alice"]])
    assert bundle is not None and errors(problems) == [] and warnings(problems) == []
    assert bundle["policies"][0]["parents"] == {
        "creators": CREATORS,
        "perRunFields": ["idempotencyKey"],
        "maxRuns": 0,
        "maxTTLSeconds": 720 * 3600,
    }
    plain, _ = compile_docs([policy({"approvers": ["alice"]}), approvers()["alice"]])
    assert plain is not None and "parents" not in plain["policies"][0]  # older bundles stay


def test_per_run_fields_beyond_the_idempotency_key_are_a_warning() -> None:
    spec = {
        "approvers": ["alice"],
        "parents": {"creators": CREATORS, "perRunFields": ["idempotencyKey", "parameters"]},
    }
    _, problems = compile_docs([policy(spec), approvers()["alice"]])
    ((doc, path, message),) = warnings(problems)
    assert (doc, path) == (0, ("spec", "parents", "perRunFields"))
    assert message.startswith("spec.parameters of a Schedule's runs would not be bound")


def test_a_creator_must_be_a_service_account_and_max_ttl_a_duration() -> None:
    spec = {
        "approvers": ["alice"],
        "parents": {"creators": ["alice"], "maxTTL": "soon"},
    }
    bundle, problems = compile_docs([policy(spec), approvers()["alice"]])
    assert bundle is None
    paths = {path for _, path, _ in errors(problems)}
    assert ("spec", "parents", "creators", 0) in paths


# --- approver identities are explicit (class 22) --------------------------------------------


@pytest.mark.parametrize("usernames", [None, []])
def test_an_approver_without_usernames_is_an_error_with_the_whoami_hint(
    usernames: list[str] | None,
) -> None:
    doc = approver("erin")
    if usernames is None:
        del doc["spec"]["usernames"]
    else:
        doc["spec"]["usernames"] = usernames
    bundle, problems = compile_docs([doc])
    assert bundle is None
    (problem,) = problems
    assert problem.finding.path == (("spec",) if usernames is None else ("spec", "usernames"))
    assert problem.finding.message.startswith("approver 'erin' lists no usernames")
    assert "`kubectl auth whoami`" in problem.finding.advice


def test_usernames_are_taken_as_written_never_from_the_name() -> None:
    bundle, problems = compile_docs([approver("erin", usernames=["oidc:Erin@corp.example"])])
    assert problems == [] and bundle is not None
    assert bundle["approvers"][0]["usernames"] == ["oidc:Erin@corp.example"]


# --- durations read two ways or beyond a date (fourth red-team pass) -------------------------


@pytest.mark.parametrize(
    ("where", "text", "message"),
    [
        pytest.param("bypass", "99999999999999d", "is longer than 3650d", id="bypass-huge"),
        pytest.param("parents", "99999999999999d", "is longer than 3650d", id="parents-huge"),
        # parents.maxTTL has no pattern in the policy schema: the duration parser is its check
        pytest.param("parents", "2h\n", "is not a duration like", id="trailing-newline"),
        pytest.param("parents", "\u0663h", "is not a duration like", id="arabic-indic-digit"),
        pytest.param("parents", "1.5h", "is not a duration like", id="fraction"),
        pytest.param("parents", "-1h", "is not a duration like", id="negative"),
    ],
)
def test_a_duration_only_python_reads_or_beyond_a_date_is_a_located_error(
    where: str, text: str, message: str
) -> None:
    """`bypass.maxTTL: 99999999999999d` compiled, and every later verdict on an expired
    reject (its veto lasts the bundle's longest lifetime more) was an internal error; `\\d`
    and `int` read other scripts' digits (Go's time.ParseDuration does not) and `$` a
    trailing newline."""
    spec: dict[str, Any] = {"approvers": ["alice"]}
    if where == "bypass":
        spec["bypass"] = {"approvers": ["alice"], "maxTTL": text}
    else:
        spec["parents"] = {"creators": ["system:serviceaccount:agents:runner"], "maxTTL": text}
    bundle, problems = compile_docs([policy(spec), approvers()["alice"]])
    assert bundle is None
    found = [(path, msg) for _, path, msg in errors(problems) if path[-1] == "maxTTL"]
    assert found and message in found[0][1], errors(problems)
    assert found[0][0] == ("spec", where, "maxTTL")


def test_a_bundle_with_a_lifetime_beyond_ten_years_is_refused() -> None:
    bundle = json.loads(compile_case_bundle(BASE))
    bundle["policies"][0]["bypass"]["maxTTLSeconds"] = 8639999999999913600
    bundle["generation"] = bundle_generation(bundle)
    with pytest.raises(BundleError, match=r"(does not match the bundle schema|beyond 3650d)"):
        parse_bundle_text(json.dumps(bundle))
