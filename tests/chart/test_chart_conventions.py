"""The chart follows conventions.md ("Our Helm chart") and the cert-manager chart's layout."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.support import CHART, CI_VALUES, example_values, template

TEMPLATES = CHART / "templates"
SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
VALUES = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))


def test_chart_yaml() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "approvalgate"
    assert isinstance(chart["appVersion"], str)
    assert chart["annotations"]
    assert all(isinstance(v, str) for v in chart["annotations"].values()), chart["annotations"]


def test_helpers_are_prefixed_with_the_chart_name() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in TEMPLATES.iterdir())
    defined = re.findall(r'define\s+"([^"]+)"', text)
    used = re.findall(r'(?:include|template)\s+"([^"]+)"', text)
    assert defined
    assert [name for name in defined + used if not name.startswith("approvalgate.")] == []
    assert len(defined) == len(set(defined))


def test_no_certificates_or_cluster_lookups_in_templates() -> None:
    # Argo CD renders without a cluster: generated certs would change on every sync.
    forbidden = re.compile(
        r"\b(genCA|genSelfSignedCert|genSignedCert|genPrivateKey|lookup|randAlpha|randAlphaNum|"
        r"randNumeric|randAscii|uuidv4|now)\b"
    )
    for path in TEMPLATES.iterdir():
        assert not forbidden.search(path.read_text(encoding="utf-8")), path.name


def test_failures_say_error() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in TEMPLATES.iterdir())
    messages = re.findall(r'fail\s+(?:\(printf\s+)?"([^"]*)', text)
    assert messages
    assert all(message.startswith("ERROR: ") for message in messages), messages


@pytest.mark.helm
def test_one_kind_per_template(helm: Path) -> None:
    kinds: dict[str, set[str]] = {}
    for values in (*CI_VALUES, example_values("prod")):
        for source, body in re.findall(
            r"^# Source: approvalgate/(templates/\S+)\n(.*?)(?=^---$|\Z)",
            template(helm, values),
            re.M | re.S,
        ):
            for document in yaml.safe_load_all(body):
                kinds.setdefault(source, set()).add(document["kind"])
    assert {source: len(found) for source, found in kinds.items() if len(found) > 1} == {}
    rendered = {p.removeprefix("templates/") for p in kinds}
    on_disk = {p.name for p in TEMPLATES.glob("*.yaml")}
    assert rendered == on_disk  # every template file renders in some tested configuration


def _objects(schema: dict[str, Any], path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)] if schema.get("type") == "object" else []
    for name, sub in schema.get("properties", {}).items():
        found += _objects(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += _objects(schema["items"], f"{path}[]")
    return found


def test_values_schema_is_strict_draft_07() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert "global" in SCHEMA["properties"]
    loose = [
        path
        for path, node in _objects(SCHEMA)
        if "properties" in node and node.get("additionalProperties") is not False
    ]
    assert loose == []


def _leaves(values: Any, schema: dict[str, Any], path: str = "") -> list[tuple[str, Any, Any]]:
    out = []
    for name, value in values.items():
        sub = schema["properties"][name]
        if isinstance(value, dict) and value and "properties" in sub:
            out += _leaves(value, sub, f"{path}{name}.")
        else:
            out.append((f"{path}{name}", value, sub))
    return out


def test_values_validate_and_integers_are_typed_as_integers() -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(VALUES)
    for path, value, sub in _leaves(VALUES, SCHEMA):
        if isinstance(value, bool):
            assert sub.get("type") == "boolean", path
        elif isinstance(value, int):
            assert sub.get("type") == "integer", path


@pytest.mark.parametrize("values", [*CI_VALUES, example_values("prod")], ids=lambda p: p.name)
def test_every_values_file_validates(values: Path) -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(yaml.safe_load(values.read_text()) or {})
