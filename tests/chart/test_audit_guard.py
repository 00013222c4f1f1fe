"""`approvalgate audit` on the guard's own objects (approvalgate/audit/guard.py): missing
altogether is a note; present but altered is a finding, field by field; given the chart's
render, any other expression is a finding too. The chart's render is the real one (helm)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from approvalgate.audit import guard
from approvalgate.kube.resources import Resource
from tests.chart.support import example_values, namespace_values, render

pytestmark = pytest.mark.helm

CONFIG = "approvalgate"


@pytest.fixture(scope="module")
def rendered(helm: Path) -> list[dict[str, Any]]:
    return guard.rendered_guard(render(helm, example_values("prod")))


def reader(objects: list[dict[str, Any]]) -> Callable[[Resource, str], Mapping[str, Any] | None]:
    def read(resource: Resource, name: str) -> Mapping[str, Any] | None:
        kind = guard.POLICY_KIND if resource == guard.POLICIES else guard.BINDING_KIND
        return next(
            (o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name), None
        )

    return read


def test_the_charts_guard_as_rendered_passes(rendered: list[dict[str, Any]]) -> None:
    assert len(rendered) == 2
    assert guard.audit_guard(reader(rendered), CONFIG, False, rendered) == []


def test_a_missing_guard_is_a_note() -> None:
    (note,) = guard.audit_guard(reader([]), CONFIG, False)
    assert (
        note.severity == "note" and note.subject == "ValidatingAdmissionPolicy/approvalgate-guard"
    )
    assert "is not installed" in note.message and "guard.enabled" in note.advice


def _edited(
    rendered: list[dict[str, Any]], kind: str, edit: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    live = copy.deepcopy(rendered)
    edit(next(o for o in live if o["kind"] == kind)["spec"])
    return live


EDITS: dict[str, tuple[str, Callable[[dict[str, Any]], None], str]] = {
    "failurePolicy Ignore": (
        guard.POLICY_KIND,
        lambda s: s.update(failurePolicy="Ignore"),
        "spec.failurePolicy",
    ),
    "another name": (
        guard.POLICY_KIND,
        lambda s: s["matchConstraints"]["resourceRules"][0].update(resourceNames=["other"]),
        "spec.matchConstraints.resourceRules",
    ),
    "no validation": (guard.POLICY_KIND, lambda s: s.update(validations=[]), "spec.validations"),
    "audit only": (
        guard.BINDING_KIND,
        lambda s: s.update(validationActions=["Audit"]),
        "spec.validationActions",
    ),
    "a selector on the binding": (
        guard.BINDING_KIND,
        lambda s: s.update(matchResources={"objectSelector": {"matchLabels": {"a": "b"}}}),
        "spec.matchResources.objectSelector",
    ),
    "another policy bound": (
        guard.BINDING_KIND,
        lambda s: s.update(policyName="approvalgate-other"),
        "spec.policyName",
    ),
    "an exclusion in the policy": (
        guard.POLICY_KIND,
        lambda s: s["matchConstraints"].update(
            excludeResourceRules=[
                {
                    "apiGroups": ["admissionregistration.k8s.io"],
                    "apiVersions": ["*"],
                    "operations": ["UPDATE"],
                    "resources": ["validatingwebhookconfigurations"],
                }
            ]
        ),
        "spec.matchConstraints.excludeResourceRules",
    ),
    "an object selector in the policy": (
        guard.POLICY_KIND,
        lambda s: s["matchConstraints"].update(
            objectSelector={"matchExpressions": [{"key": "guarded", "operator": "Exists"}]}
        ),
        "spec.matchConstraints.objectSelector",
    ),
    "exact versions only": (
        guard.POLICY_KIND,
        lambda s: s["matchConstraints"].update(matchPolicy="Exact"),
        "spec.matchConstraints.matchPolicy",
    ),
    "a match condition added": (
        guard.POLICY_KIND,
        lambda s: s.update(matchConditions=[{"name": "off", "expression": "false"}]),
        "spec.matchConditions",
    ),
}


@pytest.mark.parametrize("case", EDITS, ids=EDITS.keys())
def test_an_altered_guard_is_a_finding(rendered: list[dict[str, Any]], case: str) -> None:
    kind, edit, where = EDITS[case]
    live = _edited(rendered, kind, edit)
    # given the chart's render, and without it (structure only) where the structure shows it
    found = guard.audit_guard(reader(live), CONFIG, False, rendered)
    assert where in {f.field for f in found}, found
    assert all(f.severity == "finding" and "was altered" in f.message for f in found)
    if case != "a match condition added":
        assert where in {f.field for f in guard.audit_guard(reader(live), CONFIG, False)}


def test_what_the_api_server_stores_for_unset_selectors_passes(
    rendered: list[dict[str, Any]],
) -> None:
    """The API server stores ``{}`` for the selectors the chart leaves out: every object."""
    live = _edited(
        rendered,
        guard.POLICY_KIND,
        lambda s: s["matchConstraints"].update(namespaceSelector={}, objectSelector={}),
    )
    assert guard.audit_guard(reader(live), CONFIG, False, rendered) == []


@pytest.mark.parametrize("kind", [guard.POLICY_KIND, guard.BINDING_KIND])
def test_half_a_guard_is_a_finding(rendered: list[dict[str, Any]], kind: str) -> None:
    live = [o for o in rendered if o["kind"] != kind]
    (found,) = guard.audit_guard(reader(live), CONFIG, False)
    assert found.severity == "finding" and found.subject == f"{kind}/approvalgate-guard"


def test_in_label_mode_the_opt_in_guard_is_audited_too(helm: Path, tmp_path: Path) -> None:
    objects = guard.rendered_guard(render(helm, namespace_values(tmp_path, (), "optInLabel")))
    assert guard.audit_guard(reader(objects), CONFIG, True, objects) == []
    without = [o for o in objects if not o["metadata"]["name"].endswith("-opt-in")]
    (note,) = guard.audit_guard(reader(without), CONFIG, True, objects)
    assert note.subject == "ValidatingAdmissionPolicy/approvalgate-guard-opt-in"
    assert "the namespaces" in note.message


def test_names_follow_the_charts_truncation() -> None:
    long = "a" * 63
    assert guard.suffixed(long, "guard") == "a" * 57 + "-guard"
    assert len(guard.suffixed(long, "guard-opt-in")) == 63
