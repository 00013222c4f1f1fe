"""Rendering decisions for people (text) and machines (JSON, JUnit XML)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from xml.etree import ElementTree

from approvalgate.approvals.decide import Decision
from approvalgate.manifests import Run

Outcome = tuple[Run, Decision]


def render(outcomes: Sequence[Outcome], fmt: str, source: str, environment: str) -> str:
    """The verdicts of ``approvalgate verify`` in environment ``environment``."""
    if fmt == "json":
        body = [as_json(r, d, environment) for r, d in outcomes]
        return json.dumps(body, indent=2, sort_keys=True) + "\n"
    if fmt == "junit":
        return junit(outcomes, source, environment)
    return "".join(text(r, d, environment) for r, d in outcomes)


def text(run: Run, decision: Decision, environment: str) -> str:
    if not decision.allowed:
        return f"DENIED {run.ref} in {environment}\n{decision.message}\n"
    line = f"ADMITTED {run.ref} in {environment} ({decision.reason}"
    if decision.approvers:
        line += f"; approved by {', '.join(decision.approvers)}"
    out = line + ")\n"
    out += "".join(f"  warning: {w}\n" for w in decision.warnings)
    return out


def as_json(run: Run, decision: Decision, environment: str) -> dict[str, Any]:
    return {
        "run": run.ref,
        "environment": environment,
        "allowed": decision.allowed,
        "code": decision.code,
        "reason": decision.reason,
        "message": decision.message,
        "warnings": list(decision.warnings),
        "auditAnnotations": dict(decision.audit_annotations),
        "policies": list(decision.policies),
        "approvers": list(decision.approvers),
        "digest": decision.digest,
        "subject": decision.subject,
        "results": [
            {
                "policy": r.policy,
                "outcome": r.outcome,
                "reason": r.reason,
                "summary": r.summary,
                "records": [
                    {
                        "index": v.index,
                        "approver": v.approver,
                        "decision": v.decision,
                        "valid": v.valid,
                        "environment": v.environment,
                        "note": v.note,
                    }
                    for v in r.records
                ],
            }
            for r in decision.results
        ],
    }


def junit(outcomes: Sequence[Outcome], source: str, environment: str) -> str:
    failures = sum(1 for _, d in outcomes if not d.allowed)
    suite = ElementTree.Element(
        "testsuite",
        name=f"approvalgate verify {source} in {environment}",
        tests=str(len(outcomes)),
        failures=str(failures),
    )
    for run, decision in outcomes:
        case = ElementTree.SubElement(suite, "testcase", classname="approvalgate", name=run.ref)
        if not decision.allowed:
            failure = ElementTree.SubElement(case, "failure", message=decision.reason)
            failure.text = decision.message
    ElementTree.indent(suite)
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
