"""Packaged JSON Schemas and the validators built from them (package data, cached)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from approvals.errors import Finding, JsonPath

SCHEMA_PACKAGE = "approvalgate.schemas"


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Read ``schemas/<name>`` shipped as package data."""
    text = resources.files(SCHEMA_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def validator(name: str) -> Draft202012Validator:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def schema_findings(name: str, document: object, prefix: JsonPath = ()) -> list[Finding]:
    """Every schema violation of ``document`` as a finding, sorted by location."""
    findings = []
    for error in validator(name).iter_errors(document):
        path: JsonPath = prefix + tuple(error.absolute_path)
        findings.append(Finding(path, _describe(error)))
    return sorted(findings, key=lambda f: (tuple(str(p) for p in f.path), f.message))


def _describe(error: Any) -> str:
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"unknown field {', '.join(map(repr, extra))} (allowed: {allowed})"
    if error.validator == "enum":
        allowed = ", ".join(map(repr, error.validator_value))
        if isinstance(error.instance, bool):
            word = "on/yes/true" if error.instance else "off/no/false"
            return (
                f"{str(error.instance).lower()} is not one of {allowed}: unquoted {word} is a "
                'boolean in Kubernetes YAML; quote the word, e.g. "off"'
            )
        return f"{error.instance!r} is not one of {allowed}"
    if error.validator == "const":
        return f"must be {error.validator_value!r}, not {error.instance!r}"
    if error.validator == "required":
        return str(error.message).replace("is a required property", "is required")
    return str(error.message)
