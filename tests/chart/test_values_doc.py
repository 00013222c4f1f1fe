"""Every values.yaml key is documented, typed by the schema and listed in the README."""

from __future__ import annotations

import json

import yaml

from tests.chart import values_doc
from tests.chart.values_doc import README, SCHEMA, VALUES, documented_keys, schema_keys


def keys() -> list[values_doc.Key]:
    return documented_keys(VALUES.read_text(encoding="utf-8"))


def declared() -> dict[str, dict[str, object]]:
    return schema_keys(json.loads(SCHEMA.read_text(encoding="utf-8")))


def test_every_key_is_documented() -> None:
    schema = declared()
    values = yaml.safe_load(VALUES.read_text(encoding="utf-8"))
    missing = [
        f"values.yaml:{key.line}: {key.path}"
        for key in keys()
        if key.path in schema
        and values_doc.is_row(schema[key.path], values_doc.lookup(values, key.path))
        and not key.doc
    ]
    assert missing == [], "add a `# -- ` comment above each of these keys"


def test_values_and_schema_declare_the_same_keys() -> None:
    values = yaml.safe_load(VALUES.read_text(encoding="utf-8"))
    schema = declared()
    in_values = {key.path for key in keys()}

    def structured(parent: str) -> bool:  # an object whose keys the schema spells out
        return parent == "" or "properties" in schema.get(parent, {})

    def parent(path: str) -> str:
        return path.rpartition(".")[0]

    undeclared = [p for p in in_values if structured(parent(p)) and p not in schema]
    assert sorted(undeclared) == [], "declare these in values.schema.json"
    # a declared key needs a default in values.yaml, unless its parent defaults to {}
    without_default = [
        p
        for p in schema
        if p not in in_values and (parent(p) == "" or values_doc.lookup(values, parent(p)))
    ]
    assert sorted(without_default) == [], "give these a documented default in values.yaml"


def test_readme_table_is_up_to_date() -> None:
    readme = README.read_text(encoding="utf-8")
    expected = values_doc.splice(readme, values_doc.table())
    assert readme == expected, "run: .venv/bin/python -m tests.chart.values_doc --write"


def test_every_key_is_in_the_readme() -> None:
    readme = README.read_text(encoding="utf-8")
    table_keys = [line.split("`")[1] for line in values_doc.table().splitlines()[2:]]
    assert table_keys
    assert [key for key in table_keys if f"| `{key}` |" not in readme] == []
