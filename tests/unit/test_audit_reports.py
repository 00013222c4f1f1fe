"""PolicyReports and the audit's output (audit.reports), its CLI, and what it imports."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import jsonschema
import pytest
import yaml

from approvalgate.audit.findings import AuditResult, Finding, ReportWrite, RunResult
from approvalgate.audit.reports import MAX_REPORT_MESSAGE, policy_report, render
from approvalgate.cli import main
from approvalgate.kube.credentials import impersonation_headers
from tests.support.paths import ROOT, THIRD_PARTY_CRDS

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
BUNDLE = ROOT / "examples" / "gitops-repo" / "rendered" / "staging" / "bundle.json"


def run(name: str, status: Any, message: str = "", **extra: Any) -> RunResult:
    return RunResult(
        namespace="agents",
        name=name,
        uid=f"uid-{name}",
        api_version="agents.proompteng.ai/v1alpha1",
        status=status,
        rule=extra.pop("rule", "recorded-approvals"),
        policies=extra.pop("policies", ("agents/two-person",)),
        reason=extra.pop("reason", "approved"),
        message=message or f"AgentRun agents/{name}: {status}\ndetail line",
        properties={"requester": "unknown (not recorded on the object)", "author": "(none)"},
        **extra,
    )


RUNS = [
    run("b", "fail", advice="delete it"),
    run("a", "pass"),
    run("c", "warn", rule="approvals-expired"),
    run("d", "error", rule="decide"),
]


def crd_schema() -> dict[str, Any]:
    path = THIRD_PARTY_CRDS / "policy-report" / "wgpolicyk8s.io_policyreports.yaml"
    crd = yaml.safe_load(path.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha2"]
    schema: dict[str, Any] = _strict(version["schema"]["openAPIV3Schema"])
    return schema


def _strict(node: Any) -> Any:
    """Unknown fields are errors, as with the server's fieldValidation=Strict."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if "properties" in out and out.get("type") == "object":
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def test_the_policy_report_is_valid_for_its_crd() -> None:
    report = policy_report("agents", RUNS, now=NOW, environment="prod", generation="abc")
    jsonschema.Draft7Validator(crd_schema()).validate(report)
    assert report["apiVersion"] == "wgpolicyk8s.io/v1alpha2"
    assert report["kind"] == "PolicyReport"
    assert report["metadata"]["name"] == "approvalgate-audit"
    assert report["metadata"]["namespace"] == "agents"
    assert report["summary"] == {"pass": 1, "fail": 1, "warn": 1, "error": 1, "skip": 0}
    assert [r["resources"][0]["name"] for r in report["results"]] == ["a", "b", "c", "d"]
    first = report["results"][0]
    assert first == {
        "source": "approvalgate",
        "policy": "agents/two-person",
        "rule": "recorded-approvals",
        "result": "pass",
        "scored": True,
        "severity": "high",
        "category": "Approvals",
        "message": "AgentRun agents/a: pass",  # the headline only
        "resources": [
            {
                "apiVersion": "agents.proompteng.ai/v1alpha1",
                "kind": "AgentRun",
                "name": "a",
                "namespace": "agents",
                "uid": "uid-a",
            }
        ],
        "timestamp": {"seconds": int(NOW.timestamp()), "nanos": 0},
        "properties": {"author": "(none)", "requester": "unknown (not recorded on the object)"},
    }


def test_an_empty_namespace_gets_an_empty_report_and_long_messages_are_cut() -> None:
    empty = policy_report("agents", [], now=NOW, environment="prod", generation="abc")
    assert empty["results"] == [] and sum(empty["summary"].values()) == 0
    long = policy_report(
        "agents", [run("x", "fail", "y" * 5000)], now=NOW, environment="e", generation="g"
    )
    message = long["results"][0]["message"]
    assert len(message) == MAX_REPORT_MESSAGE and message.endswith("...")
    none = policy_report(
        "agents", [run("x", "pass", policies=())], now=NOW, environment="e", generation="g"
    )
    assert none["results"][0]["policy"] == "approvalgate"


def result(*findings: Finding, runs: list[RunResult] = RUNS) -> AuditResult:
    return AuditResult(
        environment="prod",
        generation="abc",
        now="2026-11-21T12:00:00Z",
        server="https://127.0.0.1:6443 as admin",
        namespaces=("agents",),
        findings=list(findings),
        runs=sorted(runs, key=lambda r: r.name),
        reports=[ReportWrite("agents", "approvalgate-audit", 4)],
    )


WEBHOOK = Finding(
    "webhook", "finding", "ValidatingWebhookConfiguration/x", "Ignore!", "fix it", "f"
)
NOTE = Finding("webhook", "note", "ValidatingWebhookConfiguration/x", "slower", "tune it", "t")


def test_exit_code_counts_findings_and_failing_runs_not_notes_or_warnings() -> None:
    assert result(NOTE, runs=[run("a", "pass"), run("c", "warn")]).exit_code == 0
    assert result(WEBHOOK, runs=[run("a", "pass")]).exit_code == 1
    assert result(runs=[run("d", "error")]).exit_code == 1
    assert result(runs=[run("b", "fail")]).exit_code == 1


def test_text_output() -> None:
    text = render(result(WEBHOOK, NOTE), "text")
    assert text.startswith(
        "approvalgate audit of https://127.0.0.1:6443 as admin: environment prod (bundle abc), "
        "as of 2026-11-21T12:00:00Z\nnamespaces: agents\n\nValidatingWebhookConfiguration:\n"
        "  FINDING: Ignore!\n    fix: fix it\n  note: slower\n    hint: tune it\n"
    )
    assert "  pass agents/a: AgentRun agents/a: pass\n" in text
    assert (
        "  FAIL agents/b [recorded-approvals]: AgentRun agents/b: fail\n    detail line\n" in text
    )
    assert "    fix: delete it\n" in text
    assert "  applied agents/approvalgate-audit (4 results)\n" in text
    assert text.endswith(
        "FAILED: 1 finding(s), 1 note(s); AgentRuns: 1 fail, 1 error, 1 warn, 1 pass\n"
    )


def test_json_output() -> None:
    out = json.loads(render(result(WEBHOOK, NOTE), "json"))
    assert out["exitCode"] == 1
    assert out["summary"] == {
        "runs": {"pass": 1, "fail": 1, "warn": 1, "error": 1},
        "findings": 1,
        "notes": 1,
    }
    assert out["findings"][0] == {
        "area": "webhook",
        "severity": "finding",
        "subject": "ValidatingWebhookConfiguration/x",
        "field": "f",
        "message": "Ignore!",
        "advice": "fix it",
    }
    assert [r["name"] for r in out["runs"]] == ["a", "b", "c", "d"]
    assert out["reports"] == [{"namespace": "agents", "name": "approvalgate-audit", "results": 4}]


def test_junit_output() -> None:
    root = ElementTree.fromstring(render(result(WEBHOOK, NOTE), "junit"))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"ValidatingWebhookConfiguration", "AgentRuns"}
    assert (
        suites["ValidatingWebhookConfiguration"].get("failures"),
        suites["AgentRuns"].get("failures"),
    ) == ("1", "2")
    failures = [c.get("name") for c in root.iter("testcase") if c.find("failure") is not None]
    assert failures == ["ValidatingWebhookConfiguration/x", "agents/b", "agents/d"]


def test_rbac_findings_have_their_own_section_and_suite() -> None:
    rbac = Finding(
        "rbac", "finding", "User/mallory", "User mallory can act as ...", "remove it", "sa"
    )
    audited = result(WEBHOOK, rbac)
    shown = render(audited, "text")
    assert (
        shown.index("ValidatingWebhookConfiguration:")
        < shown.index("Who can act as a trusted ServiceAccount (RBAC):\n  FINDING: User mallory")
        < shown.index("AgentRuns:")
    )
    root = ElementTree.fromstring(render(audited, "junit"))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert suites["Who can act as a trusted ServiceAccount (RBAC)"].get("failures") == "1"
    (found,) = [f for f in json.loads(render(audited, "json"))["findings"] if f["area"] == "rbac"]
    assert (found["subject"], found["field"]) == ("User/mallory", "sa")


def test_impersonation_sends_one_header_per_group() -> None:
    headers = impersonation_headers("system:serviceaccount:ns:sa", ["g1", "g2", "g3"])
    assert headers["Impersonate-User"] == "system:serviceaccount:ns:sa"
    groups = {k: v for k, v in headers.items() if k.lower() == "impersonate-group"}
    assert sorted(groups.values()) == ["g1", "g2", "g3"] and len(set(groups)) == 3
    assert impersonation_headers(None, []) == {}


def cli(*args: str) -> int:
    return main(["audit", *args])


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli() == 2
    assert "--bundle FILE, or --repo DIR --env ENV" in capsys.readouterr().err
    assert cli("--bundle", str(BUNDLE), "--repo", ".", "--env", "prod") == 2
    assert cli("--repo", ".") == 2
    assert cli("--bundle", str(BUNDLE), "--bundle-configmap", "nameonly") == 2
    capsys.readouterr()
    # the writer of a floor not audited: said, not silently ignored
    writer = "system:serviceaccount:approvalgate-system:approvalgate-controller"
    assert cli("--bundle", str(BUNDLE), "--bundle-floor-writer", writer) == 2
    assert "--bundle-floor-writer goes with --bundle-floor" in capsys.readouterr().err
    missing = tmp_path / "nope.json"
    assert cli("--bundle", str(missing)) == 1
    assert f"cannot read {missing}" in capsys.readouterr().err
    bad = tmp_path / "kubeconfig"
    bad.write_text("not: a kubeconfig\n")
    assert cli("--bundle", str(BUNDLE), "--kubeconfig", str(bad)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot load Kubernetes credentials")
    assert "hint: pass --kubeconfig FILE" in err


def test_the_cli_loads_kubernetes_only_when_the_audit_runs() -> None:
    code = (
        "import sys; from approvalgate.cli import build_parser; build_parser(); "
        "import approvalgate.audit.runs, approvalgate.audit.webhook; "
        "import approvalgate.audit.policies, approvalgate.audit.reports; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'urllib3')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"
