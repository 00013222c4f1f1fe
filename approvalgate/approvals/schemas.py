"""The registry of packaged schemas: every one loaded, compiled and applied here.

Each schema under ``schemas/`` (package data ``approvalgate.schemas``) is read by name with
:mod:`importlib.resources`, once; a missing one raises :class:`SchemaMissingError`. JSON
Schemas are compiled once by ``jsonschema-rs`` (a maintained Rust validator, about 1 µs
for a valid EgressPolicy: the compiler validates every input and every rendered object)
and the validator is cached. CRD schemas (``crds/*.yaml``) are served to
:mod:`approvals.structural`, which applies the API server's pruning rules.

Validation returns :class:`Finding`\\ s in one style whatever the schema: the JSON path of
the offending value and a message (and advice where there is one). The loaders that know
the file turn the path into ``file:line:col`` (``SourceDocument.location``); output
without a source file is described as ``$.path: message`` by :func:`describe`.

Messages: a subschema's ``x-messages`` (keyword -> text) wins; unknown fields are reported
one by one at their own path, with the closest known name; ``enum``/``const``/``required``
are worded for YAML authors (an unquoted ``off`` is a boolean); anything else is
jsonschema-rs's own message. ``format`` is never asserted (it was not before either: the
reference implementation checks ``date-time`` only when an optional package is installed).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any, Final

from approvalgate.approvals.errors import Finding, InputError, JsonPath, format_json_path

if TYPE_CHECKING:
    import jsonschema_rs

SCHEMA_PACKAGE: Final = "approvalgate.schemas"
_SOURCE_PACKAGE: Final = "schemas"  # a source checkout that is not installed


class SchemaMissingError(InputError):
    """A packaged schema is not there: the installation is incomplete."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"packaged schema {name} is missing",
            advice="reinstall approvalgate: its package data is incomplete",
        )
        self.name = name


# --------------------------------------------------------------------------- loading


def schema_files() -> Traversable:
    """The folder of packaged schemas (the source tree's ``schemas/`` when not installed)."""
    try:
        return resources.files(SCHEMA_PACKAGE)
    except ModuleNotFoundError:
        return resources.files(_SOURCE_PACKAGE)


@cache
def schema_text(name: str) -> str:
    """The text of ``schemas/<name>`` (``name`` may have folders: ``k8s/x.json``)."""
    try:
        return schema_files().joinpath(name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise SchemaMissingError(name) from None


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The packaged JSON Schema ``name``, parsed once: treat it as read-only."""
    schema: dict[str, Any] = json.loads(schema_text(name))
    return schema


@cache
def load_crd_schema(name: str, version: str) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of ``version`` in the packaged CRD file ``schemas/<name>``.

    Parsed once and cached: treat the result as read-only.
    """
    from approvalgate.approvals.kubeyaml import load_manifests

    for document in load_manifests(schema_text(name), name):
        if document.obj.get("kind") != "CustomResourceDefinition":
            continue
        for entry in document.obj["spec"]["versions"]:
            if entry["name"] == version:
                schema: dict[str, Any] = entry["schema"]["openAPIV3Schema"]
                return schema
    raise InputError(f"{name}: no CustomResourceDefinition with version {version}")


@cache
def subschema(name: str, pointer: str = "") -> dict[str, Any]:
    """The part of schema ``name`` at JSON pointer ``pointer`` ("" is the whole), keeping
    the root's ``$schema`` so it is validated under the same draft."""
    root = load_schema(name)
    node: Any = root
    for raw in pointer.split("/")[1:] if pointer else ():
        part = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise SchemaMissingError(f"{name}#{pointer}")
        node = node[part]
    if not isinstance(node, dict):
        raise SchemaMissingError(f"{name}#{pointer}")
    if node is root or "$schema" not in root:
        return node
    return {"$schema": root["$schema"], **node}


# --------------------------------------------------------------------------- validating


@cache
def validator(name: str, pointer: str = "") -> jsonschema_rs.Validator:
    """The compiled validator of :func:`subschema` (draft from its ``$schema``), cached."""
    import jsonschema_rs

    # offline: a $ref is never fetched (every packaged schema is self-contained).
    schema = subschema(name, pointer)
    return jsonschema_rs.validator_for(schema, validate_formats=False, offline=True)


def is_valid(name: str, document: object, pointer: str = "") -> bool:
    """Whether ``document`` satisfies the schema (no messages built; data that is not
    JSON, such as a non-string key, is not valid)."""
    try:
        return validator(name, pointer).is_valid(document)
    except ValueError:
        return False


def schema_findings(
    name: str, document: object, prefix: JsonPath = (), pointer: str = ""
) -> list[Finding]:
    """Every violation of the schema by ``document``, one finding each, sorted by path.

    ``prefix`` is prepended to every path (the document sits there in a larger one).
    """
    check = validator(name, pointer)
    try:
        if check.is_valid(document):
            return []
        errors = list(check.iter_errors(document))
    except ValueError as exc:  # not JSON data: a non-string key, a date, bytes...
        return [_not_json(document, prefix, str(exc))]
    schema = subschema(name, pointer)
    found: set[Finding] = set()
    for error in errors:
        found.update(_findings(error, schema, (*prefix, *error.instance_path)))
    return sorted(found, key=finding_key)


def finding_key(finding: Finding) -> tuple[Any, ...]:
    """Document order: list indices compared as numbers, then the message."""
    path = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in finding.path)
    return path, finding.message


def describe(findings: Iterable[Finding]) -> list[str]:
    """``$.path: message`` for each finding (for output that has no source file)."""
    return [
        f"{format_json_path(f.path)}: {f.message}" + (f" ({f.advice})" if f.advice else "")
        for f in findings
    ]


def _findings(
    error: jsonschema_rs.ValidationError, root: Mapping[str, Any], path: JsonPath
) -> list[Finding]:
    keyword = str(error.schema_path[-1]) if error.schema_path else ""
    where = _at(root, error.schema_path[:-1])
    custom = where.get("x-messages", {}).get(keyword)
    if custom:
        return [Finding(path, str(custom))]
    kind: Any = error.kind
    if keyword in ("additionalProperties", "unevaluatedProperties") and hasattr(kind, "unexpected"):
        known = where.get("properties", {})
        findings = []
        for extra in sorted(str(name) for name in kind.unexpected):
            advice = ""
            if keyword == "additionalProperties":
                hint = _closest(extra, known)
                advice = (
                    f"did you mean {hint!r}?" if hint else f"allowed: {', '.join(sorted(known))}"
                )
            findings.append(Finding((*path, extra), f"unknown field {extra!r}", advice))
        return findings
    return [Finding(path, _message(keyword, error, where))]


_JSON_SCALARS: Final = (str, int, float, bool, type(None))


def _not_json(document: object, prefix: JsonPath, detail: str) -> Finding:
    """Where ``document`` stops being JSON data (jsonschema-rs refuses it whole)."""
    todo: list[tuple[JsonPath, object]] = [(prefix, document)]
    while todo:
        path, node = todo.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    return Finding(path, f"the key {key!r} is not a string: JSON keys are strings")
                todo.append(((*path, key), value))
        elif isinstance(node, list | tuple):
            todo.extend(((*path, index), value) for index, value in enumerate(node))
        elif not isinstance(node, _JSON_SCALARS):
            return Finding(path, f"a {type(node).__name__} is not JSON data")
    return Finding(prefix, f"not JSON data: {detail}")


def _at(root: Mapping[str, Any], schema_path: Sequence[str | int]) -> Mapping[str, Any]:
    """The subschema at ``schema_path`` (jsonschema-rs gives it with ``$ref`` resolved)."""
    node: Any = root
    for part in schema_path:
        found = part in node if isinstance(node, Mapping) else _is_index(node, part)
        if not found:
            return {}
        node = node[part]
    return node if isinstance(node, Mapping) else {}


def _is_index(node: object, part: str | int) -> bool:
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _closest(word: str, candidates: Iterable[object]) -> str:
    matches = difflib.get_close_matches(word, [str(c) for c in candidates], n=1, cutoff=0.75)
    return matches[0] if matches else ""


def _message(keyword: str, error: jsonschema_rs.ValidationError, where: Mapping[str, Any]) -> str:
    instance: Any = error.instance
    if keyword == "enum" and isinstance(where.get("enum"), list):
        allowed = ", ".join(map(repr, where["enum"]))
        if isinstance(instance, bool):
            word = "on/yes/true" if instance else "off/no/false"
            return (
                f"{str(instance).lower()} is not one of {allowed}: unquoted {word} is a "
                'boolean in Kubernetes YAML; quote the word, e.g. "off"'
            )
        return f"{instance!r} is not one of {allowed}"
    if keyword == "const" and "const" in where:
        return f"must be {where['const']!r}, not {instance!r}"
    if keyword == "required" and hasattr(error.kind, "property"):
        return f"{error.kind.property!r} is required"
    return str(error.message)
