"""jsonschema-rs (what approvalgate runs) must agree with the reference jsonschema.

Every packaged schema is applied by approvals.schemas through jsonschema-rs; a document it
wrongly accepted would pass unchecked, one it wrongly refused would block a good repo. Both
are compared here on validity, for every packaged schema: on the egress corpus, the
rendered NetworkPolicies, the example repo and the decision corpus, and on random
mutations of all of them (keys removed, added, retyped). Formats are not asserted by
either (approvalgate never asserts ``format``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, Draft202012Validator

from approvalgate.approvals.schemas import is_valid, load_schema, subschema
from tests.support.paths import ROOT

SCHEMAS = ROOT / "schemas"
EGRESS = "egresspolicy.schema.json"
NETWORKPOLICY = "k8s/networkpolicy-networking-v1.json"
VALUES = "agents-values.schema.json"
VALUES_BLOCK = "/properties/networkPolicy"
CORPUS = ROOT / "tests" / "corpus" / "egress"


def documents(pattern: str) -> list[Any]:
    docs = []
    for path in sorted(CORPUS.glob(pattern)):
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


INPUTS = documents("*/input.yaml")
OUTPUTS = [d for d in documents("*/expected.yaml") if d.get("kind") == "NetworkPolicy"]
VALUES_BLOCKS = documents("*/expected-values.yaml")
REPLACEMENTS: list[Any] = [
    None,
    True,
    0,
    1,
    1.5,
    2.0,
    -1,
    "",
    "x",
    "TCP",
    "53",
    [],
    [{}],
    {},
    {"x": 1},
]


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


def reference(name: str, pointer: str = "") -> Draft7Validator | Draft202012Validator:
    schema = subschema(name, pointer)
    draft = Draft7Validator if "draft-07" in schema.get("$schema", "") else Draft202012Validator
    return draft(schema)


def agree(name: str, doc: Any, pointer: str = "") -> None:
    assert is_valid(name, doc, pointer) == reference(name, pointer).is_valid(doc), doc


@pytest.mark.parametrize("doc", INPUTS, ids=lambda d: str(d.get("metadata", {}).get("name")))
def test_egress_corpus(doc: Any) -> None:
    agree(EGRESS, doc)


@pytest.mark.parametrize("doc", OUTPUTS, ids=lambda d: d["metadata"]["name"])
def test_rendered_networkpolicies(doc: Any) -> None:
    assert is_valid(NETWORKPOLICY, doc)
    agree(NETWORKPOLICY, doc)


@pytest.mark.parametrize("doc", VALUES_BLOCKS, ids=str)
def test_rendered_agents_values(doc: Any) -> None:
    assert is_valid(VALUES, doc, VALUES_BLOCK)
    agree(VALUES, doc, VALUES_BLOCK)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_egress_policies(data: st.DataObject) -> None:
    agree(EGRESS, mutate(data.draw(st.sampled_from(INPUTS)), data))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_networkpolicies(data: st.DataObject) -> None:
    agree(NETWORKPOLICY, mutate(data.draw(st.sampled_from(OUTPUTS)), data))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_agents_values(data: st.DataObject) -> None:
    agree(VALUES, mutate(data.draw(st.sampled_from(VALUES_BLOCKS)), data), VALUES_BLOCK)


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
        ({"uniqueItems": True}, [[1, "1"], [1, True]], [[1, 1.0], [{"a": 1}, {"a": 1}]]),
        ({"type": "string", "format": "date-time"}, ["not a date", "2026-01-01T00:00:00Z"], []),
        ({"$defs": {"n": {"type": "null"}}, "items": {"$ref": "#/$defs/n"}}, [[None]], [[0]]),
    ],
)
def test_keywords(schema: dict[str, Any], good: list[Any], bad: list[Any]) -> None:
    """Value by value, on the keywords the packaged schemas use (Python's True is not 1,
    2.0 is an integer, formats are annotations)."""
    import jsonschema_rs

    fast = jsonschema_rs.validator_for(schema, validate_formats=False, offline=True)
    for doc in good + bad:
        assert fast.is_valid(doc) == Draft202012Validator(schema).is_valid(doc), doc


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


@pytest.mark.parametrize("name", sorted(REPO_DOCUMENTS))
def test_other_schemas(name: str) -> None:
    assert REPO_DOCUMENTS[name], name
    for doc in REPO_DOCUMENTS[name]:
        agree(name, doc)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_other_documents(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(REPO_DOCUMENTS)))
    agree(name, mutate(data.draw(st.sampled_from(REPO_DOCUMENTS[name])), data))


def test_every_packaged_json_schema_is_compared() -> None:
    names = {EGRESS, NETWORKPOLICY, VALUES, *REPO_DOCUMENTS}
    packaged = {p.name for p in SCHEMAS.glob("*.json")} | {NETWORKPOLICY}
    assert names == packaged
    for name in names:
        load_schema(name)
