"""approvals.structural: what the API server would prune or reject, against real CRDs."""

from __future__ import annotations

from typing import Any

import pytest

from approvalgate.approvals.errors import InputError
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.structural import (
    check_against_crd,
    load_agentrun_crd,
    load_crd_schema,
)
from tests.support.paths import ROOT, UPSTREAM_AGENTS

UPSTREAM = UPSTREAM_AGENTS
CRD_FILES = [
    "agents.proompteng.ai_agentruns.yaml",
    "agents.proompteng.ai_agents.yaml",
    "approvals.proompteng.ai_approvalpolicies.yaml",
]

BROKEN_RUN = """\
apiVersion: agents.proompteng.ai/v1alpha1
kind: AgentRun
metadata:
  name: broken
  labels: {anything: goes}
spec:
  agentRef:
    name: codex-agent
  implementationSpecRef:
    name: codex-impl-sample
  runtime:
    type: workflow
    config: {free: [form, {x: 1}], on: yes}
  priority: high
  parameters:
    approve: yes
    task: 'fine'
  workload:
    resources:
      requests:
        cpu: 250m
      gpu: 1
"""


def problems_of(text: str, prefix: tuple[str | int, ...] = ("spec",)) -> list[tuple[str, str]]:
    (document,) = load_manifests(text, "run.yaml")
    return [
        (str(document.location(problem.path)), problem.message)
        for problem in check_against_crd(document.obj, load_agentrun_crd(), prefix)
    ]


def test_the_packaged_agentrun_schema_is_loaded_once() -> None:
    schema = load_agentrun_crd()
    assert schema["type"] == "object"
    assert "parameters" in schema["properties"]["spec"]["properties"]
    assert load_agentrun_crd() is schema


@pytest.mark.parametrize("name", CRD_FILES)
def test_every_packaged_crd_has_a_v1alpha1_schema(name: str) -> None:
    assert load_crd_schema(f"crds/{name}", "v1alpha1")["type"] == "object"


def test_an_unknown_version_is_an_error() -> None:
    with pytest.raises(InputError, match="no CustomResourceDefinition with version v9"):
        load_crd_schema("crds/agents.proompteng.ai_agentruns.yaml", "v9")


@pytest.mark.parametrize("name", CRD_FILES)
def test_packaged_crds_are_the_upstream_files(name: str) -> None:
    packaged = ROOT / "schemas" / "crds" / name
    assert packaged.read_bytes() == (UPSTREAM / "crds" / name).read_bytes()


@pytest.mark.parametrize("name", ["agentrun-sample.yaml", "agentrun-workflow-smoke.yaml"])
def test_upstream_example_runs_have_no_problems(name: str) -> None:
    text = (UPSTREAM / "examples" / name).read_text(encoding="utf-8")
    assert problems_of(text) == []
    assert problems_of(text, ()) == []


def test_unknown_fields_and_wrong_types_are_reported_with_positions() -> None:
    assert problems_of(BROKEN_RUN) == [
        (
            "run.yaml:14:3: $.spec.priority",
            "unknown field 'priority': the API server would prune it "
            "(kubectl's default strict validation rejects it)",
        ),
        (
            "run.yaml:16:5: $.spec.parameters.approve",
            "expected a string, got the boolean true: the API server rejects it",
        ),
        (
            "run.yaml:22:7: $.spec.workload.resources.gpu",
            "unknown field 'gpu': the API server would prune it "
            "(kubectl's default strict validation rejects it)",
        ),
    ]


def test_problems_say_what_to_do() -> None:
    (document,) = load_manifests(BROKEN_RUN)
    priority, approve, gpu = check_against_crd(document.obj, load_agentrun_crd())
    assert priority.advice.startswith("known fields here: agentRef, goal, idempotencyKey,")
    assert approve.advice == (
        "unquoted yes/no/on/off/y/n/true/false are booleans in kubectl's YAML: quote it"
    )
    assert gpu.advice == "known fields here: limits, requests"


def test_the_whole_object_can_be_checked_but_metadata_is_the_servers() -> None:
    text = BROKEN_RUN.replace("kind: AgentRun\n", "kind: AgentRun\nextra: 1\n")
    found = problems_of(text, ())
    assert found[0][0] == "run.yaml:3:1: $.extra"
    assert [where for where, _ in found[1:]] == [
        "run.yaml:15:3: $.spec.priority",
        "run.yaml:17:5: $.spec.parameters.approve",
        "run.yaml:23:7: $.spec.workload.resources.gpu",
    ]


def test_a_missing_prefix_is_not_a_problem() -> None:
    assert check_against_crd({"kind": "AgentRun"}, load_agentrun_crd()) == []


def test_a_crd_version_entry_is_accepted_too() -> None:
    entry = {"name": "v1alpha1", "schema": {"openAPIV3Schema": load_agentrun_crd()}}
    (document,) = load_manifests(BROKEN_RUN)
    assert len(check_against_crd(document.obj, entry)) == 3


# --- the rules, one small schema at a time -------------------------------------------------

OBJECT = {"type": "object"}
STRING = {"type": "string"}

RULES: list[tuple[str, dict[str, Any], Any, list[tuple[tuple[str | int, ...], str]]]] = [
    ("known property", {**OBJECT, "properties": {"a": STRING}}, {"a": "x"}, []),
    (
        "unknown property is pruned",
        {**OBJECT, "properties": {"a": STRING}},
        {"a": "x", "b": 1},
        [(("spec", "b"), "unknown field 'b'")],
    ),
    (
        "object without properties keeps nothing",
        OBJECT,
        {"a": 1},
        [(("spec", "a"), "unknown field 'a'")],
    ),
    (
        "additionalProperties: false prunes",
        {**OBJECT, "properties": {"a": STRING}, "additionalProperties": False},
        {"b": "x"},
        [(("spec", "b"), "unknown field 'b'")],
    ),
    (
        "additionalProperties schema types every value",
        {**OBJECT, "additionalProperties": STRING},
        {"x": "ok", "y": True, "z": 384},
        [
            (("spec", "y"), "expected a string, got the boolean true"),
            (("spec", "z"), "expected a string, got the number 384"),
        ],
    ),
    (
        "preserve-unknown-fields keeps anything",
        {**OBJECT, "x-kubernetes-preserve-unknown-fields": True},
        {"a": {"b": [1, None, {"c": True}]}, "n": None},
        [],
    ),
    (
        "preserve-unknown-fields still checks known properties",
        {
            **OBJECT,
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"a": {"type": "integer"}},
        },
        {"a": "1", "b": "kept"},
        [(("spec", "a"), 'expected an integer, got the string "1"')],
    ),
    (
        "items",
        {**OBJECT, "properties": {"l": {"type": "array", "items": {"type": "integer"}}}},
        {"l": [1, 2.5, "3", None]},
        [
            (("spec", "l", 1), "expected an integer, got the number 2.5"),
            (("spec", "l", 2), 'expected an integer, got the string "3"'),
            (("spec", "l", 3), "null is not allowed here"),
        ],
    ),
    (
        "array without items keeps anything",
        {**OBJECT, "properties": {"l": {"type": "array"}}},
        {"l": [{"x": 1}, None]},
        [],
    ),
    (
        "int-or-string",
        {**OBJECT, "additionalProperties": {"x-kubernetes-int-or-string": True}},
        {"a": 80, "b": "http", "c": 1.5, "d": True},
        [
            (("spec", "c"), "expected an integer or a string, got the number 1.5"),
            (("spec", "d"), "expected an integer or a string, got the boolean true"),
        ],
    ),
    (
        "null in a non-nullable field is dropped",
        {**OBJECT, "properties": {"a": STRING, "b": {**STRING, "nullable": True}}},
        {"a": None, "b": None},
        [(("spec", "a"), "null here is dropped by the API server")],
    ),
    (
        "null is replaced by a default",
        {**OBJECT, "properties": {"a": {**STRING, "default": "x"}}},
        {"a": None},
        [(("spec", "a"), 'null here is replaced by the default "x"')],
    ),
    (
        "a missing field with a default is filled in",
        {**OBJECT, "properties": {"a": {"type": "integer", "default": 3}}},
        {},
        [(("spec", "a"), "missing: the API server fills in the default 3")],
    ),
    (
        "numbers, integers and booleans",
        {
            **OBJECT,
            "properties": {
                "n": {"type": "number"},
                "i": {"type": "integer"},
                "b": {"type": "boolean"},
            },
        },
        {"n": True, "i": True, "b": "true"},
        [
            (("spec", "n"), "expected a number, got the boolean true"),
            (("spec", "i"), "expected an integer, got the boolean true"),
            (("spec", "b"), 'expected a boolean, got the string "true"'),
        ],
    ),
    (
        "objects and lists",
        {**OBJECT, "properties": {"o": OBJECT, "l": {"type": "array"}}},
        {"o": [], "l": {}},
        [
            (("spec", "o"), "expected an object, got a list"),
            (("spec", "l"), "expected a list, got an object"),
        ],
    ),
    (
        "enum",
        {**OBJECT, "properties": {"mode": {**STRING, "enum": ["a", "b"]}}},
        {"mode": "c"},
        [(("spec", "mode"), '"c" is not one of "a", "b"')],
    ),
    (
        "required",
        {**OBJECT, "required": ["name"], "properties": {"name": STRING}},
        {},
        [(("spec", "name"), "required field 'name' is missing")],
    ),
    (
        "embedded resource keeps its header",
        {
            **OBJECT,
            "properties": {
                "template": {
                    **OBJECT,
                    "x-kubernetes-embedded-resource": True,
                    "properties": {"spec": OBJECT},
                }
            },
        },
        {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"x": 1}, "bad": 1}},
        [(("spec", "template", "bad"), "unknown field 'bad'")],
    ),
]


@pytest.mark.parametrize(
    ("spec_schema", "spec", "expected"),
    [pytest.param(schema, spec, expected, id=name) for name, schema, spec, expected in RULES],
)
def test_structural_rules(
    spec_schema: dict[str, Any],
    spec: Any,
    expected: list[tuple[tuple[str | int, ...], str]],
) -> None:
    schema = {**OBJECT, "properties": {"spec": spec_schema}}
    found = check_against_crd({"spec": spec}, schema)
    assert [problem.path for problem in found] == [path for path, _ in expected]
    for problem, (_, message) in zip(found, expected, strict=True):
        assert problem.message.startswith(message)


def test_a_prefix_the_schema_does_not_know_is_pruned_whole() -> None:
    schema = {**OBJECT, "properties": {"spec": OBJECT}}
    (problem,) = check_against_crd({"status": {"a": 1}}, schema, ("status",))
    assert problem.path == ("status",)
    assert problem.message.startswith("unknown field 'status'")


def test_yaml_typing_reaches_the_structural_check() -> None:
    text = (
        "apiVersion: agents.proompteng.ai/v1alpha1\nkind: AgentRun\nmetadata: {name: r}\n"
        "spec:\n  agentRef: {name: a}\n  runtime: {type: workflow}\n"
        "  parameters: {mode: 0600, flag: on, when: 2024-01-01, big: '12345678901234567890'}\n"
        "  ttlSecondsAfterFinished: '60'\n"
        "  workflow:\n    steps:\n      - {name: a, timeoutSeconds: 1e3}\n"
    )
    assert problems_of(text) == [
        (
            "run.yaml:7:16: $.spec.parameters.mode",
            "expected a string, got the number 384: the API server rejects it",
        ),
        (
            "run.yaml:7:28: $.spec.parameters.flag",
            "expected a string, got the boolean true: the API server rejects it",
        ),
        (
            "run.yaml:8:3: $.spec.ttlSecondsAfterFinished",
            'expected an integer, got the string "60": the API server rejects it',
        ),
    ]
