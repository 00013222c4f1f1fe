"""Class 18 as properties: every reference the platform resolves, any name that is not a
Kubernetes object name, wherever it is written, is denied with its field; ImplementationSpec
subjects see every step. The corpus holds the named cases (ref-*, implementation-subject-*).
"""

from __future__ import annotations

import copy
import itertools
import re
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from approvalgate.approvals import references
from approvalgate.approvals.admission import request_for_manifest
from approvalgate.approvals.decide import decide
from tests.support.corpus import load_case

SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
BASE = load_case("approve-two-distinct")  # two valid approvals of the base run: admitted
NOW: datetime = BASE.now

# where a name goes (a path into the spec) and how decide() reports it
FIELDS: list[tuple[tuple[Any, ...], str]] = [
    (("agentRef", "name"), "spec.agentRef.name"),
    (("implementationSpecRef", "name"), "spec.implementationSpecRef.name"),
    (("memoryRef", "name"), "spec.memoryRef.name"),
    (("vcsRef", "name"), "spec.vcsRef.name"),
    (("systemPromptRef", "name"), "spec.systemPromptRef.name"),
    (("implementation", "inline", "vcsRef", "name"), "spec.implementation.inline.vcsRef.name"),
    (("secrets", 0), "spec.secrets[0]"),
    (("workload", "volumes", 0, "secretName"), "spec.workload.volumes[0].secretName"),
    (("workload", "volumes", 0, "claimName"), "spec.workload.volumes[0].claimName"),
    (
        ("workflow", "steps", 1, "implementationSpecRef", "name"),
        "spec.workflow.steps[1].implementationSpecRef.name",
    ),
    (
        ("workflow", "steps", 1, "implementation", "inline", "vcsRef", "name"),
        "spec.workflow.steps[1].implementation.inline.vcsRef.name",
    ),
    (
        ("workflow", "steps", 1, "workload", "volumes", 0, "claimName"),
        "spec.workflow.steps[1].workload.volumes[0].claimName",
    ),
]


def _put(spec: dict[str, Any], path: tuple[Any, ...], value: object) -> None:
    """Set ``spec[path]``, creating objects and lists (padded with valid items) on the way."""
    target: Any = spec
    for step, following in itertools.pairwise(path):
        empty: Any = [] if isinstance(following, int) else {}
        if isinstance(step, int):
            while len(target) <= step:
                target.append({"name": f"s{len(target)}"} if isinstance(following, str) else {})
            target = target[step]
        else:
            target = target.setdefault(step, empty)
    last = path[-1]
    if isinstance(last, int):
        while len(target) <= last:
            target.append("padding")
        target[last] = value
    else:
        target[last] = value


def _decide(spec: dict[str, Any]) -> Any:
    obj = copy.deepcopy(BASE.request["object"])
    obj["spec"] = spec
    request = request_for_manifest(obj, username="requester", groups=["agents-users"])
    return decide(request, BASE.bundle, NOW)


names = st.text(min_size=0, max_size=40) | st.sampled_from(
    [
        "codex-agent ",
        " codex-agent",
        "codex-agent\u00a0",
        "codex\u200bagent",
        "Codex-Agent",
        "\u0441odex-agent",
        "codex_agent",
        "-codex",
        "codex.",
        "a" * 254,
        "codex..agent",
        "",
    ]
)


@settings(max_examples=300, deadline=None)
@given(names)
def test_name_problem_is_exactly_the_kubernetes_rule(value: str) -> None:
    valid = bool(SUBDOMAIN.fullmatch(value)) and len(value) <= 253
    assert (references.name_problem(value) == "") is valid


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(FIELDS), names.filter(lambda v: not SUBDOMAIN.fullmatch(v)))
def test_an_invalid_name_anywhere_is_denied_with_its_field(
    field: tuple[tuple[Any, ...], str], value: str
) -> None:
    path, where = field
    spec = copy.deepcopy(BASE.request["object"]["spec"])
    _put(spec, path, value)
    decision = _decide(spec)
    assert (decision.allowed, decision.reason) == (False, "invalid-reference"), decision.message
    assert f"- {where} " in decision.message


@pytest.mark.parametrize(("path", "where"), FIELDS)
def test_a_valid_name_in_each_field_is_not_refused(path: tuple[Any, ...], where: str) -> None:
    spec = copy.deepcopy(BASE.request["object"]["spec"])
    _put(spec, path, "valid-name.example")
    assert where in [r.path for r in references.references(spec)]
    assert references.reference_problems(spec) == []


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 5), st.integers(0, 5))
def test_implementation_specs_lists_the_top_one_and_every_step(steps: int, at: int) -> None:
    spec: dict[str, Any] = {"implementationSpecRef": {"name": "top"}}
    spec["workflow"] = {
        "steps": [
            {"name": f"s{i}", "implementationSpecRef": {"name": f"impl-{i}"}} for i in range(steps)
        ]
    }
    found = references.implementation_specs(spec)
    assert found == ("top", *(f"impl-{i}" for i in range(steps)))
    assert (f"impl-{at}" in found) is (at < steps)


# --- class 19: the UPDATE shortcut holds only while the same policies select the run ----------

STRICT = load_case("update-label-selects-stricter-policy")  # high-risk: risk=high, carol
labels = st.dictionaries(
    st.sampled_from(["risk", "team", "tier"]), st.sampled_from(["high", "low", "x"]), max_size=3
)


@settings(max_examples=100, deadline=None)
@given(labels, labels)
def test_a_label_change_passes_unchanged_only_under_the_same_policies(
    old_labels: dict[str, str], new_labels: dict[str, str]
) -> None:
    request = copy.deepcopy(STRICT.request)
    request["oldObject"]["metadata"]["labels"] = old_labels
    request["object"]["metadata"]["labels"] = new_labels
    decision = decide(request, STRICT.bundle, STRICT.now)
    same = (old_labels.get("risk") == "high") == (new_labels.get("risk") == "high")
    assert (decision.reason == "unchanged-spec") is same, decision.message
    if not same and new_labels.get("risk") == "high":  # carol has not approved
        assert (decision.allowed, decision.reason) == (False, "missing-approvals")
