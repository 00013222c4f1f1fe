"""What the audit writes: PolicyReports for dashboards, and text, JSON or JUnit for people and CI.

One ``PolicyReport`` (``wgpolicyk8s.io/v1alpha2``) per audited namespace, always with the same
name, holds one result per AgentRun; it is server-side applied, so a re-run replaces its
results in place and never adds a second report. Results carry the headline of the audit's
message only (reports live in etcd: a namespace with thousands of runs must stay far below the
object size limit); the full reasoning is in the command's output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from xml.etree import ElementTree

from approvalgate.approvals import records
from approvalgate.audit.findings import AREAS, AuditResult, Finding, RunResult

REPORT_API: Final = "wgpolicyk8s.io/v1alpha2"
REPORT_PLURAL: Final = "policyreports"
REPORT_NAME: Final = "approvalgate-audit"
SOURCE: Final = "approvalgate"
MAX_REPORT_MESSAGE: Final = 512
LABELS: Final = {
    "app.kubernetes.io/managed-by": "approvalgate",
    "app.kubernetes.io/part-of": "approvalgate",
    "app.kubernetes.io/component": "audit",
}


def policy_report(
    namespace: str,
    runs: Sequence[RunResult],
    *,
    now: datetime,
    environment: str,
    generation: str,
    name: str = REPORT_NAME,
) -> dict[str, Any]:
    """The namespace's PolicyReport: one result per run, in a stable order."""
    summary = {"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0}
    results = []
    seconds = int(now.timestamp())
    for run in sorted(runs, key=lambda r: r.name):
        summary[run.status] += 1
        results.append(
            {
                "source": SOURCE,
                "policy": ",".join(run.policies) or SOURCE,
                "rule": run.rule,
                "result": run.status,
                "scored": True,
                "severity": "high",
                "category": "Approvals",
                "message": _headline(run.message),
                "resources": [
                    {
                        "apiVersion": run.api_version,
                        "kind": "AgentRun",
                        "name": run.name,
                        "namespace": run.namespace,
                        "uid": run.uid,
                    }
                ],
                "timestamp": {"seconds": seconds, "nanos": 0},
                "properties": {k: str(v) for k, v in sorted(run.properties.items())},
            }
        )
    return {
        "apiVersion": REPORT_API,
        "kind": "PolicyReport",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(LABELS),
            "annotations": {
                "approvals.proompteng.ai/environment": environment,
                "approvals.proompteng.ai/bundle-generation": generation,
                "approvals.proompteng.ai/audited-at": records.format_time(now),
            },
        },
        "summary": summary,
        "results": results,
    }


def _headline(message: str) -> str:
    first = message.split("\n", 1)[0]
    return first if len(first) <= MAX_REPORT_MESSAGE else first[: MAX_REPORT_MESSAGE - 3] + "..."


# --- command output -----------------------------------------------------------------------


def render(result: AuditResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(as_json(result), indent=2, sort_keys=True) + "\n"
    if fmt == "junit":
        return junit(result)
    return text(result)


def _indent(block: str, prefix: str = "    ") -> str:
    return "".join(f"{prefix}{line}\n" for line in block.splitlines())


def _finding_text(finding: Finding) -> str:
    label = "FINDING" if finding.failing else "note"
    out = f"  {label}: {finding.message}\n"
    if finding.advice:
        out += (
            f"    fix: {finding.advice}\n" if finding.failing else f"    hint: {finding.advice}\n"
        )
    return out


_TITLES: Final = {
    "cluster": "Audit",
    "webhook": "ValidatingWebhookConfiguration",
    "workloads": "The gate's Deployments, audit CronJob and Service",
    "bundle": "Policy bundle",
    "policies": "ApprovalPolicies",
    "rbac": "Who can act as a trusted ServiceAccount (RBAC)",
    "runs": "AgentRuns",
}


def text(result: AuditResult) -> str:
    out = [
        f"approvalgate audit of {result.server}: environment {result.environment} (bundle "
        f"{result.generation}), as of {result.now}\n",
        f"namespaces: {', '.join(result.namespaces) or '(none)'}\n",
    ]
    for area in AREAS:
        found = [f for f in result.findings if f.area == area]
        if area == "runs":
            out.append(
                f"\n{_TITLES[area]}: decided as a CREATE of their current spec. Who created a "
                "run is not recorded on it: runs are decided for an unknown requester (a "
                "self-approval is only caught through the recorded author annotation).\n"
            )
            out.extend(_finding_text(f) for f in found)
            out.extend(_run_text(r) for r in result.runs)
            if not result.runs:
                out.append("  no AgentRuns\n")
            continue
        if not found:
            continue
        out.append(f"\n{_TITLES[area]}:\n")
        out.extend(_finding_text(f) for f in found)
    if result.reports:
        out.append("\nPolicyReports:\n")
        for write in result.reports:
            out.append(f"  applied {write.namespace}/{write.name} ({write.results} results)\n")
    counts = result.counts()
    findings = sum(1 for f in result.findings if f.failing)
    notes = len(result.findings) - findings
    verdict = "FAILED" if result.failing else "ok"
    out.append(
        f"\n{verdict}: {findings} finding(s), {notes} note(s); AgentRuns: {counts['fail']} fail, "
        f"{counts['error']} error, {counts['warn']} warn, {counts['pass']} pass\n"
    )
    return "".join(out)


def _run_text(run: RunResult) -> str:
    if run.status == "pass":
        return f"  pass {run.ref}: {_headline(run.message)}\n"
    head, _, rest = run.message.partition("\n")
    out = f"  {run.status.upper()} {run.ref} [{run.rule}]: {head}\n"
    if rest:
        out += _indent(rest)
    if run.advice:
        out += f"    fix: {run.advice}\n"
    return out


def as_json(result: AuditResult) -> dict[str, Any]:
    return {
        "server": result.server,
        "environment": result.environment,
        "bundleGeneration": result.generation,
        "now": result.now,
        "namespaces": list(result.namespaces),
        "findings": [
            {
                "area": f.area,
                "severity": f.severity,
                "subject": f.subject,
                "field": f.field,
                "message": f.message,
                "advice": f.advice,
            }
            for f in result.findings
        ],
        "runs": [
            {
                "namespace": r.namespace,
                "name": r.name,
                "uid": r.uid,
                "result": r.status,
                "rule": r.rule,
                "policies": list(r.policies),
                "reason": r.reason,
                "message": r.message,
                "advice": r.advice,
                "properties": dict(r.properties),
            }
            for r in result.runs
        ],
        "reports": [
            {"namespace": w.namespace, "name": w.name, "results": w.results} for w in result.reports
        ],
        "summary": {
            "runs": result.counts(),
            "findings": sum(1 for f in result.findings if f.failing),
            "notes": sum(1 for f in result.findings if not f.failing),
        },
        "exitCode": result.exit_code,
    }


def junit(result: AuditResult) -> str:
    """One test suite per area; a finding or a failing run is a failure, notes are output."""
    suites = ElementTree.Element("testsuites", name=f"approvalgate audit {result.environment}")
    for area in AREAS:
        findings = [f for f in result.findings if f.area == area]
        runs = result.runs if area == "runs" else []
        if not findings and not runs and area != "runs":
            continue
        suite = ElementTree.SubElement(
            suites,
            "testsuite",
            name=_TITLES[area],
            tests=str(len(findings) + len(runs)),
            failures=str(sum(f.failing for f in findings) + sum(r.failing for r in runs)),
        )
        for finding in findings:
            case = ElementTree.SubElement(
                suite, "testcase", classname=f"approvalgate.audit.{area}", name=finding.subject
            )
            label = "fix" if finding.failing else "hint"
            body = finding.message + (f"\n{label}: {finding.advice}" if finding.advice else "")
            if finding.failing:
                failure = ElementTree.SubElement(case, "failure", message=finding.field or area)
                failure.text = body
            else:
                ElementTree.SubElement(case, "system-out").text = body
        for run in runs:
            case = ElementTree.SubElement(
                suite, "testcase", classname="approvalgate.audit.runs", name=run.ref
            )
            body = run.message + (f"\nfix: {run.advice}" if run.advice else "")
            if run.failing:
                failure = ElementTree.SubElement(case, "failure", message=run.rule)
                failure.text = body
            elif run.status == "warn":
                ElementTree.SubElement(case, "system-out").text = f"warn [{run.rule}]: {body}"
    ElementTree.indent(suites)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
