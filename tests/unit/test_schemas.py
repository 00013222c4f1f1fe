"""The schema registry (approvals.schemas), and every packaged JSON Schema is itself valid
(checked here against its meta-schema, not at every start)."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from jsonschema import Draft7Validator, Draft202012Validator

from approvalgate.approvals import schemas
from approvalgate.approvals.errors import Finding, InputError, JsonPath
from approvalgate.approvals.schemas import SCHEMA_PACKAGE

NAMES = [
    *sorted(p.name for p in resources.files(SCHEMA_PACKAGE).iterdir() if p.name.endswith(".json")),
    "k8s/networkpolicy-networking-v1.json",
]


@pytest.mark.parametrize("name", NAMES)
def test_packaged_schema_is_valid(name: str) -> None:
    schema = json.loads(resources.files(SCHEMA_PACKAGE).joinpath(name).read_text())
    draft = Draft7Validator if "draft-07" in schema.get("$schema", "") else Draft202012Validator
    draft.check_schema(schema)


# --------------------------------------------------------------------------- the registry


def test_every_packaged_schema_compiles_once_through_the_registry() -> None:
    for name in NAMES:
        assert schemas.validator(name) is schemas.validator(name)
        assert schemas.load_schema(name) is schemas.load_schema(name)


def test_a_missing_schema_is_a_named_error() -> None:
    with pytest.raises(schemas.SchemaMissingError, match=r"packaged schema nope\.json is missing"):
        schemas.load_schema("nope.json")
    with pytest.raises(schemas.SchemaMissingError, match="packaged schema crds is missing"):
        schemas.validator("crds")  # a folder, not a file
    with pytest.raises(schemas.SchemaMissingError, match=r"agents-values.schema.json#/nope"):
        schemas.validator("agents-values.schema.json", "/nope")


def test_a_missing_schema_is_an_input_error_for_the_cli() -> None:
    error = schemas.SchemaMissingError("x.json")
    assert isinstance(error, InputError)
    assert error.render() == (
        "packaged schema x.json is missing\n"
        "  hint: reinstall approvalgate: its package data is incomplete"
    )


def test_the_draft_comes_from_the_schema() -> None:
    """agents-values is draft-07 (the https:// spelling), the others 2020-12; a part of a
    schema keeps its root's draft."""
    import jsonschema_rs

    values = schemas.validator("agents-values.schema.json", "/properties/networkPolicy")
    assert isinstance(values, jsonschema_rs.Draft7Validator)
    assert isinstance(
        schemas.validator("egresspolicy.schema.json"), jsonschema_rs.Draft202012Validator
    )


def test_findings_locate_each_unknown_field_with_the_closest_name() -> None:
    found = schemas.schema_findings(
        "config.schema.json", {"apiVersion": "x", "environmnets": []}, prefix=("doc",)
    )
    unknown = [f for f in found if f.message == "unknown field 'environmnets'"]
    assert unknown == [
        Finding(
            ("doc", "environmnets"), "unknown field 'environmnets'", "did you mean 'environments'?"
        )
    ]


def test_x_messages_replace_the_validator_text() -> None:
    doc = {"apiVersion": "v1", "kind": "EgressPolicy", "metadata": {"name": "a"}, "spec": {}}
    found = schemas.schema_findings("egresspolicy.schema.json", doc)
    assert [(f.path, f.message) for f in found] == [
        (("apiVersion",), "apiVersion must be gates.proompteng.ai/v1alpha1"),
        (
            ("spec",),
            "spec.target is required: runners (agent runner pods) "
            "or controlPlane (the agents chart)",
        ),
    ]


def test_findings_are_in_document_order_and_described_without_a_file() -> None:
    block = {"enabled": "yes", "egress": [1] * 11, "egres": 1}
    found = schemas.schema_findings(
        "agents-values.schema.json", block, ("networkPolicy",), "/properties/networkPolicy"
    )
    assert [f.path for f in found] == [
        ("networkPolicy", "egres"),
        *[("networkPolicy", "egress", i) for i in range(11)],  # 2 before 10
        ("networkPolicy", "enabled"),
    ]
    described = schemas.describe(found)
    assert described[0] == ("$.networkPolicy.egres: unknown field 'egres' (did you mean 'egress'?)")
    assert described[-1] == '$.networkPolicy.enabled: "yes" is not of type "boolean"'


def test_formats_are_never_asserted() -> None:
    """As before the registry: the reference implementation asserted date-time only when
    an optional package was installed, which none of our environments had."""
    key = {"notAfter": "not a date"}
    assert not any(
        f.path[-1:] == ("notAfter",)
        for f in schemas.schema_findings("approver.schema.json", {"spec": {"keys": [key]}})
    )


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        ({"spec": {1: "x"}}, ("doc", "spec"), "the key 1 is not a string: JSON keys are strings"),
        ({"spec": {"a": [b"x"]}}, ("doc", "spec", "a", 0), "a bytes is not JSON data"),
        ({"spec": {"a": {1, 2}}}, ("doc", "spec", "a"), "a set is not JSON data"),
    ],
)
def test_data_that_is_not_json_is_a_located_finding(
    document: dict[str, object], path: JsonPath, message: str
) -> None:
    """jsonschema-rs refuses such data whole (ValueError); the registry says where."""
    assert schemas.schema_findings("egresspolicy.schema.json", document, ("doc",)) == [
        Finding(path, message)
    ]
    assert not schemas.is_valid("egresspolicy.schema.json", document)
