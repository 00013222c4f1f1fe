"""The EgressPolicy JSON Schema, through the one schema registry (``approvals.schemas``).

Findings are located by JSON path and carry the schema's own messages; the registry
compiles the schema once (jsonschema-rs) and words every finding the same way.
"""

from __future__ import annotations

from approvalgate.approvals.errors import Finding
from approvalgate.approvals.schemas import schema_findings as _registry_findings

SCHEMA_FILE = "egresspolicy.schema.json"


def schema_findings(doc: object) -> list[Finding]:
    """Every schema problem of ``doc``, in document order; none when valid."""
    return _registry_findings(SCHEMA_FILE, doc)
