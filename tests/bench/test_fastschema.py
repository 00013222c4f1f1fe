"""approvals.fastschema must agree with jsonschema on validity, or the fast path lies.

The compiler asks the compiled check first and jsonschema only for invalid documents, so
a document the check wrongly accepted would lose its error messages. Compared here on the
egress corpus, the rendered NetworkPolicies, and random mutations of both (keys removed,
added, retyped), for every packaged schema the check supports.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from approvalgate.approvals.fastschema import compile_check
from tests.support.paths import ROOT

SCHEMAS = ROOT / "schemas"
EGRESS = SCHEMAS / "egresspolicy.schema.json"
NETWORKPOLICY = SCHEMAS / "k8s" / "networkpolicy-networking-v1.json"
CORPUS = ROOT / "tests" / "corpus" / "egress"


def load(path: Path) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def documents(pattern: str) -> list[Any]:
    docs = []
    for path in sorted(CORPUS.glob(pattern)):
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


INPUTS = documents("*/input.yaml")
OUTPUTS = [d for d in documents("*/expected.yaml") if d.get("kind") == "NetworkPolicy"]
REPLACEMENTS = [None, True, 0, 1, 1.5, 2.0, -1, "", "x", "TCP", "53", [], [{}], {}, {"x": 1}]


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += paths(value, (*prefix, index))
    return out


def replacement(data: st.DataObject) -> Any:
    return copy.deepcopy(data.draw(st.sampled_from(REPLACEMENTS)))  # never share the samples


def mutate(doc: Any, data: st.DataObject) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(paths(doc)))
        if not where:
            continue
        parent = doc
        for part in where[:-1]:
            parent = parent[part]
        last = where[-1]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[last] = replacement(data)
        elif action == "delete":
            del parent[last]
        elif isinstance(parent, dict):
            key = data.draw(st.sampled_from(["extra", "except", "ports", "to", "name"]))
            parent[key] = replacement(data)
        else:
            parent.append(replacement(data))
    return doc


def agree(schema: dict[str, Any], doc: Any) -> None:
    check = compile_check(schema)
    assert check is not None
    assert check(doc) == Draft202012Validator(schema).is_valid(doc), doc


@pytest.mark.parametrize("doc", INPUTS, ids=lambda d: str(d.get("metadata", {}).get("name")))
def test_egress_corpus(doc: Any) -> None:
    agree(load(EGRESS), doc)


@pytest.mark.parametrize("doc", OUTPUTS, ids=lambda d: d["metadata"]["name"])
def test_rendered_networkpolicies(doc: Any) -> None:
    agree(load(NETWORKPOLICY), doc)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_egress_policies(data: st.DataObject) -> None:
    agree(load(EGRESS), mutate(data.draw(st.sampled_from(INPUTS)), data))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_networkpolicies(data: st.DataObject) -> None:
    agree(load(NETWORKPOLICY), mutate(data.draw(st.sampled_from(OUTPUTS)), data))


def test_unsupported_schemas_are_refused() -> None:
    """A keyword it does not implement means no check at all: jsonschema decides alone."""
    assert compile_check({"patternProperties": {"^x": {}}}) is None
    assert compile_check({"$ref": "other.json#/x"}) is None
    assert compile_check({"contains": {}}) is None
    assert compile_check({"unevaluatedProperties": False, "anyOf": [{}]}) is None
    assert compile_check({"unevaluatedProperties": {"type": "string"}}) is None


def test_unsure_means_no() -> None:
    """Where it cannot be exact it says "maybe invalid": jsonschema then decides."""
    formats = compile_check({"type": "string", "format": "date-time"}, formats=True)
    assert formats is not None and not formats("2026-01-01T00:00:00Z")
    unique = compile_check({"uniqueItems": True})
    assert unique is not None and not unique([1, 2]) and unique(["a", "b"]) and unique("x")


@pytest.mark.parametrize(
    ("schema", "good", "bad"),
    [
        ({"type": "integer"}, [1, 2.0, -3], [True, 1.5, "1", None]),
        ({"type": ["integer", "string"]}, [1, "a"], [False, 1.5, []]),
        ({"enum": [1, "a"]}, [1, 1.0, "a"], [True, "1", 2]),
        ({"const": True}, [True], [1, "true"]),
        ({"const": [1, {"a": False}]}, [[1, {"a": False}]], [[1, {"a": 0}], [True, {"a": False}]]),
        ({"minProperties": 1}, [{"a": 1}, [], "x"], [{}]),
        ({"additionalProperties": False}, [{}, 1], [{"a": 1}]),
        (
            {"properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "integer"}},
            [{"a": "x", "b": 1}],
            [{"a": 1}, {"b": "x"}],
        ),
        ({"oneOf": [{"type": "integer"}, {"minimum": 0}]}, [-1, 1.5], [1, "x"]),
        ({"items": {"type": "string"}, "minItems": 1}, [["a"], "x"], [[], [1]]),
        ({"pattern": "^a"}, ["ab", 1], ["ba"]),
        ({"$defs": {"n": {"type": "null"}}, "items": {"$ref": "#/$defs/n"}}, [[None]], [[0]]),
    ],
)
def test_keywords(schema: dict[str, Any], good: list[Any], bad: list[Any]) -> None:
    for doc in good + bad:
        agree(schema, doc)


# --------------------------------------------------------------------------- the rest


def repo_documents() -> dict[str, list[Any]]:
    """Documents of the other packaged schemas: examples and the decision corpus."""
    example = ROOT / "examples" / "gitops-repo"
    found: dict[str, list[Any]] = {
        "config.schema.json": [],
        "approver.schema.json": [],
        "approvalpolicy.schema.json": [],
        "bundle.schema.json": [],
    }
    found["config.schema.json"].append(yaml.safe_load((example / "approvalgate.yaml").read_text()))
    sources = [*example.glob("*/*.yaml"), *(ROOT / "tests" / "corpus" / "decide").rglob("*.yaml")]
    for path in sources:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "Approver":
                found["approver.schema.json"].append(doc)
            elif doc.get("kind") == "ApprovalPolicy":
                found["approvalpolicy.schema.json"].append(doc)
    for path in sorted((example / "rendered").glob("*/bundle.json")):
        found["bundle.schema.json"].append(json.loads(path.read_text(encoding="utf-8")))
    return found


REPO_DOCUMENTS = repo_documents()


def never_wrongly_valid(name: str, doc: Any) -> None:
    """With a format checker the check may say no where jsonschema says yes, never the
    other way round."""
    from jsonschema import FormatChecker

    schema = load(SCHEMAS / name)
    check = compile_check(schema, formats=True)
    assert check is not None, name
    valid = Draft202012Validator(schema, format_checker=FormatChecker()).is_valid(doc)
    assert not check(doc) or valid, doc


@pytest.mark.parametrize("name", sorted(REPO_DOCUMENTS))
def test_other_schemas(name: str) -> None:
    assert REPO_DOCUMENTS[name], name
    for doc in REPO_DOCUMENTS[name]:
        never_wrongly_valid(name, doc)
        # and valid documents do take the fast path (no format field: the example's)
        if "notBefore" not in json.dumps(doc) and "notAfter" not in json.dumps(doc):
            check = compile_check(load(SCHEMAS / name), formats=True)
            assert check is not None and check(doc), (name, doc)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_other_documents(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(REPO_DOCUMENTS)))
    never_wrongly_valid(name, mutate(data.draw(st.sampled_from(REPO_DOCUMENTS[name])), data))
