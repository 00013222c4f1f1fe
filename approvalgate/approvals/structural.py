"""What the API server would prune or reject in a custom resource, found before signing.

A CRD's structural ``openAPIV3Schema`` decides what the server keeps of an object: unknown
fields are pruned (kubectl's default ``--validate=strict`` rejects them instead), ``null`` in
a field that is not ``nullable`` is dropped, and wrongly typed values are rejected. An
approval signed over a field the server drops, or over ``yes`` read as a boolean where the
schema wants a string, is an approval of a spec the webhook will never see, so the CLI runs
these checks first.

Only the structural part is checked (known fields, types, nullability), plus the cheap
``enum`` and ``required``; lengths, patterns and CEL rules stay the server's job. Honoured:
``properties``, ``additionalProperties``, ``items``, ``x-kubernetes-preserve-unknown-fields``,
``x-kubernetes-int-or-string``, ``x-kubernetes-embedded-resource``, ``nullable``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from approvalgate.approvals.errors import Finding, JsonPath
from approvalgate.approvals.schemas import load_crd_schema

__all__ = ["AGENTRUN_CRD", "Problem", "check_against_crd", "load_agentrun_crd", "load_crd_schema"]

Problem = Finding
"""A field the server would prune or reject: ``path`` from the object's root, ``message``."""

AGENTRUN_CRD: Final = "crds/agents.proompteng.ai_agentruns.yaml"

_TYPES: Final[dict[str, tuple[str, Callable[[object], bool]]]] = {
    "object": ("an object", lambda v: isinstance(v, dict)),
    "array": ("a list", lambda v: isinstance(v, list)),
    "string": ("a string", lambda v: isinstance(v, str)),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    "boolean": ("a boolean", lambda v: isinstance(v, bool)),
}
_OBJECT_HEADER: Final = frozenset({"apiVersion", "kind", "metadata"})
_UNCHECKED: Final[Mapping[str, Any]] = MappingProxyType({})  # kept as is, never walked


def check_against_crd(
    obj: Mapping[str, Any],
    crd_version_schema: Mapping[str, Any],
    path_prefix: JsonPath = ("spec",),
) -> list[Problem]:
    """Every field of ``obj`` under ``path_prefix`` that the server would prune or reject.

    ``obj`` is the whole object (as :func:`approvals.kubeyaml.load_manifests` reads it);
    ``crd_version_schema`` is a version's ``openAPIV3Schema`` (a CRD version entry works too).
    Paths in the problems start at the object's root, so ``Document.location`` places them.
    """
    schema = _open_api_schema(crd_version_schema)
    value: Any = obj
    for depth, part in enumerate(path_prefix):
        if not _has(value, part):
            return []
        child = _child_schema(schema, part)
        if child is None:
            return [_unknown(path_prefix[: depth + 1], {})]
        value, schema = value[part], child
    problems: list[Problem] = []
    _walk(value, schema, tuple(path_prefix), problems)
    return problems


def load_agentrun_crd() -> dict[str, Any]:
    """The AgentRun ``v1alpha1`` ``openAPIV3Schema`` shipped with the package (cached by
    the schema registry, :func:`approvals.schemas.load_crd_schema`)."""
    return load_crd_schema(AGENTRUN_CRD, "v1alpha1")


def _open_api_schema(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(schema.get("schema"), Mapping):  # a CRD version entry
        schema = schema["schema"]
    inner = schema.get("openAPIV3Schema")
    return inner if isinstance(inner, Mapping) else schema


def _has(value: Any, part: str | int) -> bool:
    if isinstance(part, int):
        return isinstance(value, list) and 0 <= part < len(value)
    return isinstance(value, dict) and part in value


def _child_schema(schema: Mapping[str, Any], part: str | int) -> Mapping[str, Any] | None:
    """The schema of one child: :data:`_UNCHECKED` when kept as is, None when pruned."""
    if isinstance(part, int):
        items = schema.get("items")
        return items if isinstance(items, Mapping) else _UNCHECKED
    properties = schema.get("properties") or {}
    if part in properties:
        child: Mapping[str, Any] = properties[part]
        return child
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        return extra
    if extra is True or schema.get("x-kubernetes-preserve-unknown-fields") is True:
        return _UNCHECKED
    return None


def _walk(value: Any, schema: Mapping[str, Any], path: JsonPath, problems: list[Problem]) -> None:
    if schema is _UNCHECKED:
        return
    if value is None:
        if not schema.get("nullable"):
            problems.append(_null(path, schema))
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _TYPES["integer"][1](value)):
            problems.append(Problem(path, f"expected an integer or a string, got {_kind(value)}"))
        return
    expected = schema.get("type")
    if expected in _TYPES and not _TYPES[expected][1](value):
        problems.append(_wrong_type(path, expected, value))
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(option) for option in schema["enum"])
        problems.append(Problem(path, f"{json.dumps(value)} is not one of {allowed}"))
    if isinstance(value, dict):
        _walk_object(value, schema, path, problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, _child_schema(schema, index) or _UNCHECKED, (*path, index), problems)


def _walk_object(
    value: dict[str, Any], schema: Mapping[str, Any], path: JsonPath, problems: list[Problem]
) -> None:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    is_resource = path == () or schema.get("x-kubernetes-embedded-resource") is True
    for name, child in properties.items():
        if name not in value and "default" in child:
            problems.append(
                Problem(
                    (*path, name),
                    f"missing: the API server fills in the default {json.dumps(child['default'])} "
                    "before the webhook sees the spec",
                    "write the field out with its default value",
                )
            )
    for name in schema.get("required") or ():
        if name not in value:
            problems.append(Problem((*path, name), f"required field {name!r} is missing"))
    for key, item in value.items():
        if is_resource and (key == "metadata" or (key in _OBJECT_HEADER and key not in properties)):
            continue  # ObjectMeta is the server's own business, not the CRD schema's
        child = _child_schema(schema, key)
        if child is None:
            problems.append(_unknown((*path, key), properties))
        else:
            _walk(item, child, (*path, key), problems)


def _null(path: JsonPath, schema: Mapping[str, Any]) -> Problem:
    if isinstance(path[-1], int):  # list items are not pruned: validation rejects them
        return Problem(path, "null is not allowed here: the API server rejects it")
    if "default" in schema:
        default = json.dumps(schema["default"])
        return Problem(
            path,
            f"null here is replaced by the default {default} before the webhook sees the spec",
            "write the default value out",
        )
    return Problem(
        path,
        "null here is dropped by the API server (the field is not nullable)",
        "remove the field or give it a value",
    )


def _unknown(path: JsonPath, properties: Mapping[str, Any]) -> Problem:
    known = f"known fields here: {', '.join(sorted(properties))}" if properties else ""
    return Problem(
        path,
        f"unknown field {path[-1]!r}: the API server would prune it "
        "(kubectl's default strict validation rejects it)",
        known or "this object takes no fields of its own",
    )


def _wrong_type(path: JsonPath, expected: str, value: Any) -> Problem:
    message = f"expected {_TYPES[expected][0]}, got {_kind(value)}: the API server rejects it"
    advice = ""
    if expected == "string" and isinstance(value, bool):
        advice = "unquoted yes/no/on/off/y/n/true/false are booleans in kubectl's YAML: quote it"
    elif expected == "string" and isinstance(value, int | float):
        advice = "unquoted numbers are numbers in YAML (0600 even becomes 384): quote it"
    elif isinstance(value, str) and expected in ("integer", "number", "boolean"):
        advice = "remove the quotes"
    return Problem(path, message, advice)


def _kind(value: Any) -> str:
    if isinstance(value, bool | int | float):
        noun = "the boolean" if isinstance(value, bool) else "the number"
        return f"{noun} {json.dumps(value)}"
    if isinstance(value, str):
        return f"the string {json.dumps(value, ensure_ascii=False)}"
    return "a list" if isinstance(value, list) else "an object"
