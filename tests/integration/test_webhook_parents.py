"""Class 23 (indirect creation) and the parents' parts of classes 10, 19 and 21 over HTTPS.

tests/unit/test_parents_decide.py tries every attack on runs the platform derives from
Schedules, OrchestrationRuns and Swarms, and on those parents, with decide() and a cluster
view of its own. Its tests are run again here with each decision also asked of the
production webhook worker over TLS, given the same bundle, time and view: the answer must be
exactly the AdmissionReview response decide()'s decision makes (allowed, message, warnings,
audit annotations), and each test's own assertions then run on that decision. Before the
seventh red-team pass this level was "n/a" for class 23 (docs/reliability.md): the HTTPS
server was given no view.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import tests.unit.test_parents_decide as unit
from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.decide import Decision
from approvalgate.approvals.view import StaticView
from approvalgate.webhook.review import build_response
from tests.integration.harness import V1, Clock, ServerThread, TestPKI

TEXTS: dict[str, str] = {}
"""Each bundle's compiled text by generation: what the server is started from."""


def _recording(text: str | bytes, source: str = "bundle") -> Bundle:
    bundle = parse_bundle_text(text, source)
    TEXTS[bundle.generation] = text.decode() if isinstance(text, bytes) else text
    return bundle


def _record_module_bundles() -> None:
    """The unit module's bundles, compiled again with their texts recorded (compilation is
    deterministic: the same generations)."""
    real = unit.parse_bundle_text
    unit.parse_bundle_text = _recording  # type: ignore[assignment]
    try:
        made = (
            unit._bundle(),
            unit._bundle(referenced_content="off"),
            unit._bundle(with_parents=False),
        )
    finally:
        unit.parse_bundle_text = real
    for bundle in made:
        assert bundle.generation in TEXTS
    for bundle in (unit.BUNDLE, unit.UNBOUND, unit.WITHOUT_PARENTS):
        assert bundle.generation in TEXTS, "compiling the unit bundles is not deterministic"


_record_module_bundles()


def _judged_tests() -> list[Any]:
    """pytest params: every test of the unit module that asks judge(), with its own
    parameters."""
    found = []
    for name, function in vars(unit).items():
        if not name.startswith("test_") or not callable(function):
            continue
        if "judge(" not in inspect.getsource(function):
            continue
        marks = [m for m in getattr(function, "pytestmark", []) if m.name == "parametrize"]
        grids = []
        for mark in marks:
            names, values = mark.args[0], mark.args[1]
            names = [n.strip() for n in names.split(",")] if isinstance(names, str) else names
            grids.append(
                [dict(zip(names, v if len(names) > 1 else (v,), strict=True)) for v in values]
            )
        for index, combination in enumerate(itertools.product(*grids)):
            kwargs: dict[str, Any] = {}
            for part in combination:
                kwargs.update(part)
            ident = name if not grids else f"{name}-{index}"
            found.append(pytest.param(name, kwargs, id=ident))
    return found


JUDGED = _judged_tests()


class Servers:
    """One webhook worker per bundle, each given the view of the judgement at hand."""

    def __init__(self, pki: TestPKI, folder: Path) -> None:
        self.pki = pki
        self.folder = folder
        self.servers: dict[str, ServerThread] = {}
        self.asked = 0

    def judge(self, request: Mapping[str, Any], view: StaticView, bundle: Bundle) -> Decision:
        text = TEXTS[bundle.generation]
        server = self.servers.get(bundle.generation)
        if server is None:
            path = self.folder / f"{bundle.generation}.json"
            path.write_text(text)
            server = ServerThread(self.pki, path, clock=Clock(unit.NOW), view=StaticView())
            server.__enter__()
            self.servers[bundle.generation] = server
        views = server.running.views
        views.fixed = view
        views.current = view
        with server.client() as client:
            review = client.review(request, V1).review()
        self.asked += 1
        return review["response"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture
def servers(pki: TestPKI, tmp_path: Path) -> Iterator[Servers]:
    made = Servers(pki, tmp_path)
    try:
        yield made
    finally:
        made.stop()


@pytest.mark.parametrize(("name", "kwargs"), JUDGED)
def test_parents_decide_over_https(
    name: str, kwargs: dict[str, Any], servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tests/unit/test_parents_decide.py's test ``name``, each judge() also over HTTPS."""
    real: Callable[..., Decision] = unit.judge
    monkeypatch.setattr(unit, "parse_bundle_text", _recording)  # bundles a test compiles

    def judge_over_https(
        request: Mapping[str, Any],
        view: StaticView,
        bundle: Bundle = unit.BUNDLE,
        *,
        compare: bool = True,
    ) -> Decision:
        decision = real(request, view, bundle, compare=compare)
        response = servers.judge(request, view, bundle)
        assert response == build_response(V1, str(request["uid"]), decision)["response"]
        return decision

    monkeypatch.setattr(unit, "judge", judge_over_https)
    getattr(unit, name)(**kwargs)
    assert servers.asked > 0, f"{name} asked nothing of the webhook"


def test_every_test_of_the_unit_module_asking_judge_runs_here() -> None:
    """A new test of the unit module that asks judge() is run over HTTPS by itself."""
    assert len(JUDGED) >= 60, len(JUDGED)
    assert {p.values[0] for p in JUDGED} >= {
        "test_a_run_the_schedule_runner_makes_from_an_approved_schedule_is_admitted",
        "test_an_expired_reject_of_a_parent_holds_as_long_as_the_parents_approvals_live",
        "test_a_swarm_stage_run_is_admitted_through_the_swarm",
        "test_an_orchestration_step_run_is_admitted_only_as_the_controller_makes_it",
    }
