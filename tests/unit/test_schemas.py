"""Every packaged JSON Schema is itself valid (checked here, not at every start)."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from jsonschema import Draft7Validator, Draft202012Validator

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
