"""Packaged JSON Schemas and the validators built from them (package data, cached).

Valid documents are recognised by :mod:`approvals.fastschema`; jsonschema (about 50 ms to
import, and a generic walk per document) is imported and run only to explain an invalid
one, so its messages are unchanged.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from approvalgate.approvals.errors import Finding, JsonPath
from approvalgate.approvals.fastschema import Check, compile_check

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

SCHEMA_PACKAGE = "approvalgate.schemas"


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Read ``schemas/<name>`` shipped as package data."""
    text = resources.files(SCHEMA_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def validator(name: str) -> Draft202012Validator:
    # The packaged schemas are checked against the meta-schema by the test suite
    # (tests/unit/test_schemas.py), not on every start: that costs ~50 ms a schema.
    from jsonschema import Draft202012Validator, FormatChecker

    return Draft202012Validator(load_schema(name), format_checker=FormatChecker())


@cache
def fast_check(name: str) -> Check | None:
    """The yes/no check standing for :func:`validator` (None: use the validator)."""
    return compile_check(load_schema(name), formats=True)


def schema_findings(name: str, document: object, prefix: JsonPath = ()) -> list[Finding]:
    """Every schema violation of ``document`` as a finding, sorted by location."""
    check = fast_check(name)
    if check is not None and check(document):  # valid: jsonschema would find nothing
        return []
    findings = []
    for error in validator(name).iter_errors(document):
        path: JsonPath = prefix + tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = error.schema.get("properties", {})
            allowed = ", ".join(sorted(known))
            for extra in sorted(set(error.instance) - set(known)):
                hint = _closest(extra, known)
                findings.append(
                    Finding(
                        (*path, extra),
                        f"unknown field {extra!r}",
                        f"did you mean {hint!r}?" if hint else f"allowed: {allowed}",
                    )
                )
            continue
        if error.validator == "unevaluatedProperties" and isinstance(error.instance, dict):
            listed = re.search(r"\((.*) (?:was|were) unexpected\)", error.message)
            names = re.findall(r"'([^']+)'", listed.group(1)) if listed else []
            for extra in sorted(n for n in names if n in error.instance):
                findings.append(Finding((*path, extra), f"unknown field {extra!r}"))
            continue
        findings.append(Finding(path, _describe(error)))
    return sorted(findings, key=lambda f: (tuple(str(p) for p in f.path), f.message))


def _closest(word: str, candidates: Iterable[object]) -> str:

    matches = difflib.get_close_matches(word, [str(c) for c in candidates], n=1, cutoff=0.75)
    return matches[0] if matches else ""


def _describe(error: Any) -> str:
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
