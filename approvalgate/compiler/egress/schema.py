"""The EgressPolicy JSON Schema: findings located by JSON path, with the schema's messages.

Valid documents are recognised by ``approvals.fastschema``; jsonschema runs only on a
document that fails, to say what is wrong with it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from approvalgate.approvals.errors import ApprovalgateError, Finding
from approvalgate.approvals.fastschema import Check, compile_check

if TYPE_CHECKING:
    import jsonschema

SCHEMA_FILE = "egresspolicy.schema.json"


def _resource_text(package: str, name: str) -> str:
    """Package data of the installed distribution, or of the source tree in development."""
    for candidate in (f"approvalgate.{package}", package):
        try:
            return resources.files(candidate).joinpath(name).read_text(encoding="utf-8")
        except (ModuleNotFoundError, FileNotFoundError):
            continue
    raise ApprovalgateError(
        f"packaged file {package}/{name} is missing",
        advice="reinstall approvalgate: its package data is incomplete",
    )


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(_resource_text("schemas", SCHEMA_FILE))
    return schema


@lru_cache(maxsize=1)
def _schema_validator() -> jsonschema.Draft202012Validator:
    import jsonschema

    return jsonschema.Draft202012Validator(_schema())


@lru_cache(maxsize=1)
def _schema_check() -> Check | None:
    return compile_check(_schema())


def schema_findings(doc: object) -> list[Finding]:
    """Every schema problem of ``doc``, sorted by path then message; none when valid."""
    check = _schema_check()
    if check is not None and check(doc):  # valid: jsonschema would find nothing
        return []
    found = {
        Finding(tuple(err.absolute_path), _schema_message(err))
        for err in _schema_validator().iter_errors(doc)
    }
    return sorted(found, key=_finding_key)


def _schema_message(err: jsonschema.ValidationError) -> str:
    schema = err.schema if isinstance(err.schema, Mapping) else {}
    custom = schema.get("x-messages", {}).get(str(err.validator))
    return str(custom) if custom else str(err.message)


def _finding_key(f: Finding) -> tuple[Any, ...]:
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in f.path), f.message
