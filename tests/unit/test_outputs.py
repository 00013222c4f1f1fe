"""What the gate writes, as those who read it see it (docs/design.md, "Known limits", fifth
red-team pass: outputs): the metrics a requester's requests label, and the log lines her
text reaches. Each test fails without its fix."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from approvalgate.approvals import records
from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.decide import Decision, decide
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.cli import main
from approvalgate.webhook.metrics import MAX_POLICY_SETS, OTHER_POLICIES, Metrics
from approvalgate.webhook.review import build_response
from tests.support.corpus import (
    BASE,
    DEFAULT_NOW,
    KEYS,
    case_names,
    case_settings,
    compile_case_bundle,
    load_case,
    make_record,
)
from tests.unit.test_cli import CONTENT

NOW = records.parse_time(DEFAULT_NOW)
LABELLED = 10
"""Policies selecting runs by a label each: a requester picks any of 2**10 combinations."""


def labelled_policies_folder(folder: Path, count: int = LABELLED) -> Path:
    """The corpus's ``_base`` with ``count`` more policies for namespace agents, policy i
    selecting runs labelled ``gate-i: "on"`` (warn: each admits, and says so)."""
    folder.mkdir(parents=True, exist_ok=True)
    policies = [d.obj for d in load_manifests((BASE / "policies.yaml").read_text()) if d.obj]
    for i in range(count):
        extra = copy.deepcopy(dict(policies[0]))
        extra["metadata"] = {"name": f"labelled-{i}", "namespace": "agents"}
        extra["spec"] = {
            "mode": "manual",
            "defaultDecision": "deny",
            "selector": {"matchLabels": {f"gate-{i}": "on"}},
            "approvers": ["carol", "requester"],
            "requiredApprovals": 1,
            "timeoutSeconds": 86400,
        }
        policies.append(extra)
    (folder / "policies.yaml").write_text(yaml.safe_dump_all(policies))
    (folder / "approvers.yaml").write_text((BASE / "approvers.yaml").read_text())
    return folder


def labelled_bundle(folder: Path) -> Bundle:
    return parse_bundle_text(compile_case_bundle(labelled_policies_folder(folder)))


def run_request(labels: dict[str, str], name: str = "codex-run-sample") -> dict[str, Any]:
    run = dict(load_manifests((BASE / "run.yaml").read_text())[0].obj)
    run = copy.deepcopy(run)
    run["metadata"]["name"] = name
    run["metadata"]["labels"] = labels
    return {
        "uid": f"uid-{name}",
        "kind": {"group": "agents.proompteng.ai", "version": "v1alpha1", "kind": "AgentRun"},
        "resource": {
            "group": "agents.proompteng.ai",
            "version": "v1alpha1",
            "resource": "agentruns",
        },
        "namespace": "agents",
        "name": name,
        "operation": "CREATE",
        "userInfo": {"username": "requester", "groups": ["system:authenticated"]},
        "object": run,
        "dryRun": False,
    }


def label_combinations(count: int = LABELLED) -> list[dict[str, str]]:
    """Every subset of the labelled policies, as the labels selecting exactly it."""
    return [
        {f"gate-{i}": "on" for i in chosen}
        for size in range(count + 1)
        for chosen in itertools.combinations(range(count), size)
    ]


def request_series(metrics: Metrics) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in metrics.registry.collect()
        if family.name == "approvalgate_admission_requests"
        for sample in family.samples
        if sample.name == "approvalgate_admission_requests_total"
    ]


# --- metrics ----------------------------------------------------------------------------


def test_a_requester_choosing_label_combinations_cannot_grow_the_requests_series(
    tmp_path: Path,
) -> None:
    """``policy`` names the set of policies that decided a request. A requester picks that
    set with her run's labels: with 10 policies selecting by a label each, 1,024 sets, each a
    series of approvalgate_admission_requests_total (and a memo entry) in every worker, for
    ever. Past MAX_POLICY_SETS sets of several policies, a set is counted as
    OTHER_POLICIES; a set of one policy (bounded by the bundle) always keeps its name, and
    every request is still counted once."""
    bundle = labelled_bundle(tmp_path / "policies")
    metrics = Metrics.create()
    combos = label_combinations()
    seen: set[tuple[str, ...]] = set()
    for index, labels in enumerate(combos):
        decision = decide(run_request(labels, f"run-{index}"), bundle, NOW, None)
        seen.add(decision.policies)
        metrics.observe(decision, 0.001)
        metrics.observe(decision, 0.001)  # the same set again: the same series
    assert len(seen) == len(combos)  # decide() did see every set the requester chose
    series = request_series(metrics)
    reasons = {(s["decision"], s["reason"]) for s in series}
    assert len(series) <= (MAX_POLICY_SETS + LABELLED + 2) * len(reasons), len(series)
    assert len(metrics._children) <= len(series)  # the memo holds no more than the series
    total = sum(
        metrics.registry.get_sample_value("approvalgate_admission_requests_total", s) or 0
        for s in series
    )
    assert total == 2 * len(combos)
    names = {s["policy"] for s in series}
    assert OTHER_POLICIES in names
    assert "agents/two-person" in names  # a single policy always keeps its name
    for i in range(LABELLED):  # the sets seen first kept theirs (every run is two-person's)
        assert f"agents/labelled-{i},agents/two-person" in names, sorted(names)[:12]


def test_a_single_policy_keeps_its_name_past_the_bound_and_the_bound_holds_per_process() -> None:
    metrics = Metrics.create()
    several = [(f"a/p{i}", f"a/q{i}") for i in range(MAX_POLICY_SETS + 50)]
    for policies in several:
        metrics.observe(Decision(False, 403, "require-approval", "", policies=policies), 0.0)
    metrics.observe(Decision(True, 200, "approved", "", policies=("a/late",)), 0.0)
    names = {s["policy"] for s in request_series(metrics)}
    assert "a/late" in names and OTHER_POLICIES in names
    assert len(names) == MAX_POLICY_SETS + 2
    assert len(metrics._children) == MAX_POLICY_SETS + 2


# --- the review's warnings and audit annotations, as the API server takes them ----------

QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def test_every_warning_and_audit_annotation_is_one_the_api_server_keeps() -> None:
    """The API server drops a warning that is not one line of UTF-8 (the user is never told)
    and an audit annotation whose key, prefixed with the webhook's name, is not a qualified
    name (the audit trail loses it; both only logged, tests/e2e/test_outputs.py). Every
    decision of the corpus in warn mode (where denials become warnings) answers only what
    it keeps."""
    warnings = annotations = 0
    for name in case_names():
        case = load_case(name)
        bundle = dataclasses.replace(case.bundle, enforcement="warn")
        decision = decide(case.request, bundle, case.now, case.view)
        response = build_response("admission.k8s.io/v1", "u", decision)["response"]
        for warning in response.get("warnings", []):
            warnings += 1
            assert warning and "\n" not in warning and "\r" not in warning, (name, warning)
            warning.encode("utf-8")  # no lone surrogate
        for key, value in response.get("auditAnnotations", {}).items():
            annotations += 1
            assert QUALIFIED_NAME.fullmatch(key), (name, key)
            assert isinstance(value, str) and "\n" not in value, (name, key, value)
    assert warnings > 100 and annotations > 900, (warnings, annotations)


# --- the CLI's own lines about the records a file carries --------------------------------

HIDING_OR_BREAKING = ("\x1b", "\u202e", "\n  - record 1 by bob")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_and_approve_quote_a_claimed_approver_on_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`explain` lists every record a file carries and `approve` notes the v1 records it
    keeps, each by the approver it claims, before any signature is checked: an approver
    reading a requester's file saw a forged line and an escape sequence. Both quote the
    claim as decide() does (``shown_claim``)."""
    for name in ("approver-name-forges-a-line", "approver-name-forges-a-line-v1"):
        case = load_case(name)
        (tmp_path / "run.yaml").write_text(case.run_text)
        bundle = tmp_path / "bundle.json"
        bundle.write_text(compile_case_bundle(case.folder, case_settings(case.spec)))
        code, out, _ = _cli(
            capsys,
            *("explain", str(tmp_path / "run.yaml"), "--bundle", str(bundle)),
            *("--now", DEFAULT_NOW, "--allow-unsigned-bundle"),
        )
        assert code == 0, out
        shown = json.dumps("alice\n  - record 1 by bob: valid approve\x1b[2K\u202e")
        assert f"record 0: approve by {shown} " in out, out
        assert not any(part in out for part in HIDING_OR_BREAKING), out
    (tmp_path / "content.yaml").write_text(CONTENT)
    code, _, err = _cli(
        capsys,
        *("approve", str(tmp_path / "run.yaml"), "--env", "prod", "--in-place"),
        *("--content", str(tmp_path / "content.yaml")),
        *("--key", str(KEYS / "alice.key"), "--approver", "alice", "--now", DEFAULT_NOW),
    )
    assert code == 0, err
    assert f"record 0 by {shown} is of format v1" in err, err
    assert not any(part in err for part in HIDING_OR_BREAKING), err


def test_a_binding_subjects_name_forges_no_line_of_the_audit() -> None:
    """RBAC takes any string as a User or Group subject's name. A namespace admin binding
    `edit` where a trusted submitter lives, to a user named with a newline, a line saying
    the audit passed and an escape sequence erasing the line, made `approvalgate audit`
    print that line (and hide hers) where it names who can act as the submitter. The name
    is quoted as decide() quotes a claim; a plain name reads as before, and a group the
    bundle trusts is still itself whatever its name holds."""
    from approvalgate.audit.reports import _finding_text
    from tests.unit.test_audit_rbac import NS, SUBMITTER, Target, audit, binding, user

    forged = "mallory\nok: rbac: nothing can act as the trusted submitter\x1b[2K\u202e"
    (finding,) = audit(role_bindings=[binding("mallory-edit", "edit", user(forged))])
    shown = json.dumps(forged)
    assert finding.subject == f"User/{shown}"
    assert finding.message.startswith(f"User {shown} can act as the trusted submitter")
    text = _finding_text(finding)
    assert "\nok: rbac" not in text and "\x1b" not in text and "\u202e" not in text
    (plain,) = audit(role_bindings=[binding("mallory-edit", "edit", user("mallory"))])
    assert plain.subject == "User/mallory"
    spaced = Target("Platform Leads", None, "", True, ("trusted submitter",), ("p",))
    group = {"kind": "Group", "name": "Platform Leads"}
    assert audit(spaced, role_bindings=[binding("leads", "edit", group, namespace=NS)]) == []
    assert SUBMITTER.username  # the module's own target, unchanged


def test_a_denial_quoting_claimed_names_stays_small_whatever_they_hold() -> None:
    """Each record's payload may hold 8 KiB, nearly all of it a claimed approver name, and a
    denial quoted each name twice in full: a requester's run carrying 256 KiB of records
    made a denial of about half a megabyte, which the API server writes into its audit log
    for each such request. A quoted claim is now at most 80 characters."""
    case = load_case("approve-two-distinct")
    request = copy.deepcopy(case.request)
    obj = request["object"]
    envelopes = [
        make_record({"key": "carol", "approver": f"{i:03d}" + "x" * 5500}, obj, BASE, case.now)
        for i in range(30)
    ]
    annotation = records.dump_annotation(envelopes)
    assert len(annotation) < records.MAX_ANNOTATION_BYTES
    obj["metadata"]["annotations"][records.ANNOTATION] = annotation
    decision = decide(request, case.bundle, case.now, case.view)
    assert not decision.allowed
    assert decision.message.count("is not a known approver") == 30
    assert len(decision.message) < 30 * 400, len(decision.message)


def test_a_terminal_line_of_status_and_pending_holds_no_carriage_return_or_separator() -> None:
    """`status` and `pending` print each field a requester, an approver or an identity
    provider wrote through ``one_line``: a newline and a tab were escaped, but a carriage
    return (which sends the cursor back to overwrite what the line said) and the line and
    paragraph separators were not."""
    from approvalgate.commands._queue import one_line, table

    for text in ("approved\rREJECTED by bob", "a\u2028b\u2029c\x85d"):
        shown = one_line(text)
        assert not any(char in shown for char in "\r\n\t\u2028\u2029\x85"), repr(shown)
    assert one_line("approved\rx") == "approved<U+000D>x"
    assert one_line("a\u2028b") == "a<U+2028>b"
    rows = table(["REASON"], [["fix\r                INC-1 approved"]])
    assert "\r" not in rows
