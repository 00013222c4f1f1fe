"""approvals.parents: the ports of the upstream code that creates runs, coverage, derivation.

Each port is checked against what the upstream TypeScript does for the same input
(proompteng/lab services/agents/src/server/: supporting-primitives-controller.ts
buildScheduleRunTemplate, orchestration-controller.ts submitAgentRunStep / mergeParameters /
normalizeStringMap, kubernetes-labels.ts normalizeKubernetesLabelValue). decide() on derived
runs, parents and content: tests/unit/test_parents_decide.py.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from approvalgate.approvals import content, parents
from approvalgate.approvals.digest import canonical_json
from approvalgate.approvals.view import StaticView

NS = "agents"
TARGET: dict[str, Any] = {
    "apiVersion": "agents.proompteng.ai/v1alpha1",
    "kind": "AgentRun",
    "metadata": {"name": "nightly-template", "namespace": NS},
    "spec": {
        "agentRef": {"name": "codex-agent"},
        "implementationSpecRef": {"name": "task-a"},
        "runtime": {"type": "job"},
        "idempotencyKey": "first",
        "parameters": {"repo": "lab", "count": 2, "flag": True},
    },
}


def schedule(**annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "schedules.proompteng.ai/v1alpha1",
        "kind": "Schedule",
        "metadata": {
            "name": "nightly",
            "namespace": NS,
            "labels": {"team": "infra", parents.SCHEDULE_LABEL: "spoofed"},
            "annotations": dict(annotations),
        },
        "spec": {
            "cron": "0 3 * * *",
            "targetRef": {"kind": "AgentRun", "name": "nightly-template"},
        },
    }


def annotated() -> dict[str, Any]:
    template = parents.schedule_template(TARGET["spec"])
    return schedule(**{parents.TEMPLATE_ANNOTATION: json.dumps(template)})


ORCHESTRATION: dict[str, Any] = {
    "apiVersion": "orchestration.proompteng.ai/v1alpha1",
    "kind": "Orchestration",
    "metadata": {"name": "release", "namespace": NS},
    "spec": {
        "steps": [
            {
                "name": "plan",
                "kind": "AgentRun",
                "agentRef": {"name": "codex-agent"},
                "implementationSpecRef": {"name": "plan-task"},
                "with": {"depth": 3},
            },
            {"name": "lint", "kind": "ToolRun", "toolRef": {"name": "ruff"}},
            {
                "name": "ship",
                "kind": "AgentRun",
                "dependsOn": ["plan"],
                "with": {
                    "agentRef": "codex-agent",
                    "implementationSpecRef": "ship-task",
                    "runtime": {"type": "workflow"},
                },
                "secrets": ["gh-token", 7],
                "memoryRef": " notes ",
            },
        ]
    },
}
ORUN: dict[str, Any] = {
    "apiVersion": "orchestration.proompteng.ai/v1alpha1",
    "kind": "OrchestrationRun",
    "metadata": {"name": "release-42", "namespace": NS},
    "spec": {"orchestrationRef": {"name": "release"}, "parameters": {"depth": "1", "env": "prod"}},
}


# --- naming, as upstream -------------------------------------------------------------------


def test_label_values_are_kept_when_valid_and_hashed_when_not() -> None:
    assert parents.label_value("release-42") == "release-42"
    assert parents.label_value("  release-42 ") == "release-42"
    long = "a" * 70
    hashed = parents.label_value(long)
    assert hashed == "a" * 50 + "-" + hashlib.sha256(long.encode()).hexdigest()[:12]
    assert len(hashed) <= 63
    assert (
        parents.label_value("-bad name!")
        == "bad-name-" + hashlib.sha256(b"-bad name!").hexdigest()[:12]
    )
    assert parents.label_value("") == ""


def test_as_string_trims_what_javascript_trims_and_nothing_else() -> None:
    """The platform is TypeScript: ``trim()`` removes U+FEFF (Python's strip() keeps it) and
    keeps U+001C-U+001F and U+0085 (Python's strip() removes them)."""
    assert parents.as_string("\ufeffAgentRun\u3000") == "AgentRun"
    assert parents.as_string("\u2028\xa0true\u205f") == "true"
    for kept in ("\x1c", "\x1d", "\x1e", "\x1f", "\x85"):
        assert parents.as_string(f"{kept}true") == f"{kept}true"
    assert parents.as_string("\ufeff \t") is None
    assert parents.label_value("\ufeffrelease-42") == "release-42"


def test_make_name_lowercases_replaces_and_cuts_the_base_at_50() -> None:
    assert parents.make_name("Release_42", "plan") == "release-42-plan"
    assert parents.make_name("a--b", "x") == "a-b-x"
    assert parents.make_name("r" * 60, "step") == "r" * 50 + "-step"


def test_normalize_string_map_keeps_strings_drops_null_and_writes_the_rest_as_json() -> None:
    assert parents.normalize_string_map(
        {"a": "x", "b": None, "c": 2, "d": 1.0, "e": {"k": [1]}}
    ) == {
        "a": "x",
        "c": "2",
        "d": "1",
        "e": '{"k":[1]}',
    }
    assert parents.normalize_string_map(None) == {}
    assert parents.normalize_parameter_map({"a": "x", "n": 2}) == {"a": "x"}


# --- what the platform creates -------------------------------------------------------------


def test_a_schedule_run_is_the_target_spec_with_a_fresh_key_and_string_parameters() -> None:
    run = parents.schedule_run_manifest(schedule(), TARGET)
    assert run["metadata"] == {
        "generateName": "nightly-",
        "namespace": NS,
        "labels": {
            "team": "infra",
            parents.SCHEDULE_LABEL: "nightly",
            parents.DELIVERY_LABEL: parents.DELIVERY_PLACEHOLDER,
        },
    }
    assert run["spec"]["idempotencyKey"] == parents.DELIVERY_PLACEHOLDER
    assert run["spec"]["parameters"] == {"repo": "lab"}
    assert run["spec"]["agentRef"] == {"name": "codex-agent"}
    assert TARGET["spec"]["idempotencyKey"] == "first"  # the target is not changed


def test_an_orchestration_run_target_gets_a_delivery_id_and_other_kinds_are_refused() -> None:
    target = {"kind": "OrchestrationRun", "metadata": {"name": "r"}, "spec": ORUN["spec"]}
    run = parents.schedule_run_manifest(schedule(), target)
    assert run["kind"] == "OrchestrationRun"
    assert run["spec"]["deliveryId"] == parents.DELIVERY_PLACEHOLDER
    with pytest.raises(ValueError, match="unsupported schedule target kind: Job"):
        parents.schedule_run_manifest(schedule(), {"kind": "Job", "spec": {}})


def test_the_template_is_every_fired_run_without_its_per_run_fields() -> None:
    template = parents.schedule_template(TARGET["spec"])
    for delivery in ("0f5c", "9a1e"):
        fired = json.loads(
            json.dumps(parents.schedule_run_manifest(schedule(), TARGET)).replace(
                parents.DELIVERY_PLACEHOLDER, delivery
            )
        )
        assert parents.strip(fired["spec"], parents.DEFAULT_PER_RUN_FIELDS) == template
    assert "idempotencyKey" not in template
    # a policy that does not declare idempotencyKey per run binds the placeholder itself
    assert (
        parents.schedule_template(TARGET["spec"], ())["idempotencyKey"] == "__AGENTS_DELIVERY_ID__"
    )


def test_a_step_run_is_built_as_submit_agent_run_step_builds_it() -> None:
    plan = parents.step_run_spec(ORCHESTRATION["spec"], ORUN["spec"], "plan")
    assert plan == {
        "agentRef": {"name": "codex-agent"},
        "implementationSpecRef": {"name": "plan-task"},
        "parameters": {"depth": "3", "env": "prod"},  # the step's `with` wins
        "runtime": {"type": "job"},
    }
    ship = parents.step_run_spec(ORCHESTRATION["spec"], ORUN["spec"], "ship")
    assert ship is not None
    assert ship["agentRef"] == {"name": "codex-agent"}
    assert ship["implementationSpecRef"] == {"name": "ship-task"}
    assert ship["secrets"] == ["gh-token"]
    assert ship["memoryRef"] == {"name": "notes"}
    assert ship["runtime"] == {"type": "workflow"}
    assert ship["workflow"] == {"steps": [{"name": "main"}]}
    # `with` is flattened into the parameters as upstream does (objects as JSON text)
    assert ship["parameters"]["runtime"] == '{"type":"workflow"}'
    assert parents.step_run_spec(ORCHESTRATION["spec"], ORUN["spec"], "lint") is None
    assert parents.step_run_spec(ORCHESTRATION["spec"], ORUN["spec"], "nope") is None
    assert parents.agent_run_steps(ORCHESTRATION["spec"]) == ["plan", "ship"]


def test_a_step_without_agent_or_task_is_not_created() -> None:
    spec = {"steps": [{"name": "x", "kind": "AgentRun", "agentRef": {"name": "a"}}]}
    assert parents.step_run_spec(spec, {}, "x") is None


def test_step_run_metadata_is_named_and_labelled_like_upstream() -> None:
    meta = parents.step_run_metadata("Release_42", "plan", NS)
    assert meta["generateName"] == "release-42-plan-"
    assert meta["labels"] == {
        parents.ORCHESTRATION_RUN_LABEL: "Release_42",
        parents.ORCHESTRATION_STEP_LABEL: "plan",
    }


def test_a_swarm_makes_one_owned_schedule_per_enabled_stage() -> None:
    swarm = {
        "kind": "Swarm",
        "metadata": {"name": "torghut", "namespace": NS, "uid": "u-1"},
        "spec": {
            "mode": "lights-out",
            "timezone": "UTC",
            "execution": {
                "implement": {
                    "enabled": True,
                    "every": "2h",
                    "targetRef": {"kind": "AgentRun", "name": "impl"},
                },
                "verify": {"enabled": False, "targetRef": {"kind": "AgentRun", "name": "v"}},
            },
        },
    }
    made = parents.swarm_schedule(swarm, "implement")
    assert made is not None
    assert made["metadata"]["name"] == "torghut-implement-sched"
    assert made["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert made["metadata"]["labels"][parents.SWARM_STAGE_LABEL] == "implement"
    assert made["spec"] == {  # jangar's reconcileSwarm: apiVersion added, namespace defaulted
        "cron": "0 */2 * * *",
        "timezone": "UTC",
        "targetRef": {
            "apiVersion": "agents.proompteng.ai/v1alpha1",
            "kind": "AgentRun",
            "name": "impl",
            "namespace": NS,
        },
    }
    long = copy.deepcopy(swarm)
    long["metadata"]["name"] = "s" * 60
    made = parents.swarm_schedule(long, "implement")
    assert made is not None and made["metadata"]["name"] == "s" * 45 + "-sched"
    assert parents.swarm_schedule(swarm, "verify") is None
    assert parents.swarm_schedule(swarm, "plan") is None


# --- coverage --------------------------------------------------------------------------------


def test_a_schedule_without_its_template_has_no_coverage() -> None:
    problem = parents.coverage(schedule(), None)
    assert isinstance(problem, str) and "approvalgate approve schedule.yaml --target" in problem


def test_the_coverage_digest_changes_with_the_spec_and_with_the_template() -> None:
    base = parents.coverage(annotated(), None)
    assert isinstance(base, parents.Coverage)
    assert base.subject == "schedules.proompteng.ai/Schedule/agents/nightly"
    assert base.references == ("Agent/codex-agent", "ImplementationSpec/task-a")
    changed = annotated()
    changed["spec"]["targetRef"]["name"] = "other"
    other = parents.coverage(changed, None)
    assert isinstance(other, parents.Coverage) and other.digest != base.digest
    retemplated = annotated()
    template = json.loads(retemplated["metadata"]["annotations"][parents.TEMPLATE_ANNOTATION])
    template["parameters"]["repo"] = "evil"
    retemplated["metadata"]["annotations"][parents.TEMPLATE_ANNOTATION] = json.dumps(template)
    third = parents.coverage(retemplated, None)
    assert isinstance(third, parents.Coverage) and third.digest != base.digest
    # labels, records and formatting do not change what is covered
    relabelled = annotated()
    relabelled["metadata"]["labels"]["x"] = "y"
    again = parents.coverage(relabelled, None)
    assert isinstance(again, parents.Coverage) and again.digest == base.digest


def test_an_orchestration_run_is_covered_with_its_orchestration_from_the_view() -> None:
    assert "is not known" in str(parents.coverage(ORUN, StaticView.build()))
    covered = parents.coverage(ORUN, StaticView.build(objects=[ORCHESTRATION]))
    assert isinstance(covered, parents.Coverage)
    assert sorted(covered.templates) == ["plan", "ship"]
    assert "ImplementationSpec/ship-task" in covered.references
    edited = copy.deepcopy(ORCHESTRATION)
    edited["spec"]["steps"][0]["implementationSpecRef"]["name"] = "other-task"
    moved = parents.coverage(ORUN, StaticView.build(objects=[edited]))
    assert isinstance(moved, parents.Coverage) and moved.digest != covered.digest


# --- derivation ------------------------------------------------------------------------------


def fired(sched: dict[str, Any], delivery: str = "d-1") -> dict[str, Any]:
    text = json.dumps(parents.schedule_run_manifest(sched, TARGET))
    return dict(json.loads(text.replace(parents.DELIVERY_PLACEHOLDER, delivery)))


def test_a_fired_run_derives_from_its_schedule_and_a_changed_one_does_not() -> None:
    sched = annotated()
    view = StaticView.build(objects=[sched])
    derivation = parents.derive(fired(sched), NS, view)
    assert derivation.problem == ""
    assert derivation.chain == ("AgentRun agents/nightly-*", "Schedule agents/nightly")
    assert parents.chain_text(derivation.chain) == (
        "AgentRun agents/nightly-* <- Schedule agents/nightly <- approval"
    )
    tampered = fired(sched)
    tampered["spec"]["implementationSpecRef"]["name"] = "task-b"
    assert "spec.implementationSpecRef.name differs" in parents.derive(tampered, NS, view).problem
    renamed = fired(sched)
    renamed["metadata"]["generateName"] = "other-"
    assert "generateName" in parents.derive(renamed, NS, view).problem
    assert "does not exist" in parents.derive(fired(sched), NS, StaticView.build()).problem
    orphan = fired(sched)
    del orphan["metadata"]["labels"][parents.SCHEDULE_LABEL]
    assert "names no parent" in parents.derive(orphan, NS, view).problem


def test_a_swarm_schedule_derives_only_with_its_owner_uid_and_stage_target() -> None:
    template = parents.schedule_template(TARGET["spec"])
    swarm = {
        "kind": "Swarm",
        "metadata": {
            "name": "torghut",
            "namespace": NS,
            "uid": "u-1",
            "annotations": {parents.TEMPLATES_ANNOTATION: json.dumps({"implement": template})},
        },
        "spec": {
            "execution": {
                "implement": {
                    "enabled": True,
                    "every": "1h",
                    "targetRef": {"kind": "AgentRun", "name": "nightly-template"},
                }
            }
        },
    }
    made = parents.swarm_schedule(swarm, "implement")
    assert made is not None
    run = json.loads(
        json.dumps(parents.schedule_run_manifest(made, TARGET)).replace(
            parents.DELIVERY_PLACEHOLDER, "x"
        )
    )
    view = StaticView.build(objects=[swarm, made])
    derivation = parents.derive(run, NS, view)
    assert derivation.problem == ""
    assert derivation.chain[-1] == "Swarm agents/torghut"
    impostor = copy.deepcopy(swarm)
    impostor["metadata"]["uid"] = "u-2"  # deleted and made again by someone else
    assert (
        "uid differs" in parents.derive(run, NS, StaticView.build(objects=[impostor, made])).problem
    )
    retargeted = copy.deepcopy(made)
    retargeted["spec"]["targetRef"]["name"] = "other"
    problem = parents.derive(run, NS, StaticView.build(objects=[swarm, retargeted])).problem
    assert "targetRef is not" in problem


def test_a_step_run_derives_from_its_orchestration_run() -> None:
    view = StaticView.build(objects=[ORUN, ORCHESTRATION])
    spec = parents.step_run_spec(ORCHESTRATION["spec"], ORUN["spec"], "plan")
    run = {"metadata": parents.step_run_metadata("release-42", "plan", NS), "spec": spec}
    assert parents.derive(run, NS, view).problem == ""
    changed = copy.deepcopy(run)
    changed["spec"]["parameters"]["env"] = "staging"
    assert "step plan" in parents.derive(changed, NS, view).problem
    other_step = copy.deepcopy(run)
    other_step["metadata"]["labels"][parents.ORCHESTRATION_STEP_LABEL] = "lint"
    assert "names no AgentRun step" in parents.derive(other_step, NS, view).problem


def test_content_refs_are_the_agent_and_every_implementation_spec() -> None:
    spec = {
        "agentRef": {"name": "codex-agent"},
        "implementationSpecRef": {"name": "top"},
        "workflow": {"steps": [{"name": "a", "implementationSpecRef": {"name": "step-a"}}]},
    }
    assert content.refs(spec) == (
        "Agent/codex-agent",
        "ImplementationSpec/step-a",
        "ImplementationSpec/top",
    )
    obj = {"kind": "ImplementationSpec", "spec": {"text": "x"}}
    assert content.digest(obj) == hashlib.sha256(b'{"text":"x"}').hexdigest()


def test_json_equal_is_canonical_equality() -> None:
    assert parents.json_equal({"a": [1, "x", None]}, {"a": [1.0, "x", None]})
    assert not parents.json_equal({"a": True}, {"a": 1})
    assert not parents.json_equal({"a": "1"}, {"a": 1})
    assert not parents.json_equal({"a": 1}, {"a": 1, "b": None})
    assert not parents.json_equal([1, 2], [2, 1])


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, width=32)
    | st.sampled_from(["", "a", "1", "true"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(JSON_VALUES, JSON_VALUES)
@settings(max_examples=300, deadline=None)
def test_json_equal_agrees_with_rfc8785_bytes(left: Any, right: Any) -> None:
    same = canonical_json(left) == canonical_json(right)
    assert parents.json_equal(left, right) == same
    assert parents.json_equal(left, left)


def test_only_stored_versions_are_remembered() -> None:
    """An UPDATE's object carries the resourceVersion of the version it replaces: its coverage
    must be computed from what it says, never taken from the stored version's memo."""
    stored = annotated()
    stored["metadata"].update(uid="u-1", resourceVersion="41")
    first = parents.coverage(stored, None, stored=True)
    update = copy.deepcopy(stored)
    update["spec"]["cron"] = "* * * * *"  # same uid and resourceVersion, another spec
    changed = parents.coverage(update, None)
    assert isinstance(first, parents.Coverage) and isinstance(changed, parents.Coverage)
    assert changed.digest != first.digest
    assert parents.coverage(stored, None, stored=True) is first  # remembered


# Node's JSON.stringify(JSON.parse(TEXT)) for each TEXT (node 18), written down: what the
# orchestration controller puts in a step run's parameters for a value that is no string
JS_STRINGIFY = [
    ("0.00001", "0.00001"),
    ("1e-7", "1e-7"),
    ("1.5e-7", "1.5e-7"),
    ("1e16", "10000000000000000"),
    ("9007199254740993", "9007199254740992"),
    ("123e-20", "1.23e-18"),
    ("0.000001", "0.000001"),
    ("1e21", "1e+21"),
    ('{"10":1,"9":2,"a":3}', '{"9":2,"10":1,"a":3}'),
    (
        '{"b":1,"4294967295":2,"4294967294":3,"01":4,"1":5,"0":6}',
        '{"0":6,"1":5,"4294967294":3,"b":1,"4294967295":2,"01":4}',
    ),
    ('{"k":[1.0,2.50,1e2,-0.0]}', '{"k":[1,2.5,100,0]}'),
]


@pytest.mark.parametrize(("text", "javascript"), JS_STRINGIFY)
def test_values_that_are_no_string_are_written_as_javascript_writes_them(
    text: str, javascript: str
) -> None:
    """Python's json.dumps wrote 1e-05 for JavaScript's 0.00001, 1e+16 for 10000000000000000,
    and kept "10" before "9" where JavaScript puts array-index keys first: the template of
    an approved OrchestrationRun's step then differed from the run the platform made."""
    assert parents.normalize_string_map({"v": json.loads(text)}) == {"v": javascript}


def test_a_swarm_cadence_in_other_digits_is_no_cadence_as_in_javascript() -> None:
    """JavaScript's ``\\d`` is ASCII; Python's matched ``٣`` (and int() read it as 3)."""
    swarm = {
        "metadata": {"name": "s", "namespace": "agents", "uid": "u"},
        "spec": {"execution": {"plan": {"every": "\u0663m", "targetRef": {"name": "p"}}}},
    }
    made = parents.swarm_schedule(swarm, "plan")
    assert made is not None and made["spec"]["cron"] == "0 * * * *"
    swarm["spec"]["execution"]["plan"]["every"] = "3m"
    made = parents.swarm_schedule(swarm, "plan")
    assert made is not None and made["spec"]["cron"] == "*/3 * * * *"
