"""The controller's reconcile of one request, with the API server stood in for (a stub that
answers each write as the API server would): what the worker remembers between reconciles
belongs to the request it was about, not to its name.

The bundle, the records and the verdicts are real (the decision corpus's ``_base``); the
caches are replaced by the objects given, the Lease by a leader that always leads.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from approvalgate.approvals import view
from approvalgate.controller.config import ControllerConfig
from approvalgate.controller.manager import Controller, Retry
from approvalgate.kube.errors import KubeError, UnreachableError
from approvalgate.kube.resources import AGENT_RUNS, APPROVAL_REQUESTS
from tests.unit.test_controller_reconcile import BUNDLE, NAME, NOW, NS, decision, request

COURIER = "system:serviceaccount:approvalgate-system:approvalgate-controller"


class StubServer:
    """Answers the controller's requests: status writes and run creates, as told."""

    def __init__(self) -> None:
        self.refuse_creates: KubeError | None = None
        self.lose_answers = 0
        """Store that many creates, then answer them as a connection lost would."""
        self.created: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []

    def request(self, what: str, method: str, path: str, **kwargs: Any) -> Any:
        body = copy.deepcopy(kwargs.get("body"))
        if path.endswith("/selfsubjectreviews"):
            return {"status": {"userInfo": {"username": COURIER}}}
        if method == "PUT" and path.endswith("/status"):
            self.statuses.append(body["status"])
            return body
        if method == "POST" and path == AGENT_RUNS.path(NS):
            if self.refuse_creates is not None:
                raise self.refuse_creates
            name = body["metadata"]["name"]
            if any(run["metadata"]["name"] == name for run in self.created):
                raise KubeError(f"agentruns {name!r} already exists", status=409)
            body["metadata"]["uid"] = f"run-uid-{len(self.created)}"
            self.created.append(body)
            if self.lose_answers:
                self.lose_answers -= 1
                raise UnreachableError("the connection broke while creating the run")
            return body
        if method == "GET" and path.startswith(AGENT_RUNS.path(NS) + "/"):
            name = path.rsplit("/", 1)[1]
            return next((r for r in self.created if r["metadata"]["name"] == name), None)
        if method == "POST":  # events
            return body
        raise AssertionError(f"unexpected {method} {path}")


def controller(server: StubServer, objects: dict[tuple[str, str, str], Any]) -> Controller:
    config = ControllerConfig(
        bundle=Path("unused.json"), identity="test", lease_namespace=NS, allow_unsigned_bundle=True
    )
    made = Controller(config, server, bundle=lambda: BUNDLE, clock=lambda: NOW)  # type: ignore[arg-type]
    made.caches.get = lambda resource, namespace, name: objects.get(  # type: ignore[method-assign]
        (resource.plural, namespace, name)
    )
    made.elector = SimpleNamespace(leading=True)  # type: ignore[assignment]
    return made


def test_a_request_made_again_under_the_name_of_a_refused_one_is_created() -> None:
    """The API server refused the run of request A as invalid (HTTP 422): A is Failed. An
    admin deletes A, and the requester files B under the same name with the run fixed, the
    deletion and the new request reaching the worker as one key (its queue was busy). B is
    approved: its run is created. Remembering A's refusal by name made B Failed with A's
    message, without a create: approved, never created."""
    server = StubServer()
    first = request(phase="Approved", reason="Quorum")
    decisions = [decision("alice"), decision("bob")]
    objects: dict[tuple[str, str, str], Any] = {(APPROVAL_REQUESTS.plural, NS, NAME): first}
    worker = controller(server, objects)
    current = view.StaticView.build(requests=[first], decisions=decisions)
    server.refuse_creates = KubeError("spec.runtime: Invalid value", status=422)
    worker.reconcile_request(NS, NAME, BUNDLE, current)
    assert (server.statuses[-1]["phase"], server.statuses[-1]["reason"]) == (
        "Failed",
        "CreateFailed",
    )
    assert server.created == []

    second = request()
    second["metadata"]["uid"] = "another-request-uid"
    objects[APPROVAL_REQUESTS.plural, NS, NAME] = second
    server.refuse_creates = None
    current = view.StaticView.build(requests=[second], decisions=decisions)
    worker.reconcile_request(NS, NAME, BUNDLE, current)
    assert len(server.created) == 1
    annotations = server.created[0]["metadata"]["annotations"]
    assert annotations[view.REQUEST_UID_ANNOTATION] == "another-request-uid"
    assert server.statuses[-1]["phase"] == "Submitted"


def test_a_transient_failure_of_one_request_is_not_said_of_the_next_of_its_name() -> None:
    """The Approved status written before B's create does not carry A's failure."""
    server = StubServer()
    first = request(phase="Approved", reason="Quorum")
    decisions = [decision("alice"), decision("bob")]
    objects: dict[tuple[str, str, str], Any] = {(APPROVAL_REQUESTS.plural, NS, NAME): first}
    worker = controller(server, objects)
    server.refuse_creates = KubeError("the API server is busy", status=503)
    with pytest.raises(Retry):
        worker.reconcile_request(
            NS, NAME, BUNDLE, view.StaticView.build(requests=[first], decisions=decisions)
        )
    assert server.statuses[-1]["reason"] == "CreateFailed"
    second = request()
    second["metadata"]["uid"] = "another-request-uid"
    objects[APPROVAL_REQUESTS.plural, NS, NAME] = second
    server.statuses.clear()
    server.refuse_creates = None
    worker.reconcile_request(
        NS, NAME, BUNDLE, view.StaticView.build(requests=[second], decisions=decisions)
    )
    assert len(server.created) == 1
    assert [s["phase"] for s in server.statuses] == ["Approved", "Submitted"]
    assert all("busy" not in s["message"] for s in server.statuses), server.statuses


def test_a_create_stored_whose_answer_was_lost_is_adopted_not_made_again() -> None:
    """The API server stored the run but its answer never came (a broken connection, a
    timeout): the request stays Approved and is retried; the retry's create answers
    AlreadyExists, the run found carries the request's uid, and the request is Submitted
    with it. One run, while the caches have not seen it yet."""
    server = StubServer()
    req = request(phase="Pending", reason="WaitingForApprovals")
    decisions = [decision("alice"), decision("bob")]
    objects: dict[tuple[str, str, str], Any] = {(APPROVAL_REQUESTS.plural, NS, NAME): req}
    worker = controller(server, objects)
    current = view.StaticView.build(requests=[req], decisions=decisions)
    server.lose_answers = 1
    with pytest.raises(Retry):
        worker.reconcile_request(NS, NAME, BUNDLE, current)
    assert len(server.created) == 1
    assert (server.statuses[-1]["phase"], server.statuses[-1]["reason"]) == (
        "Approved",
        "CreateFailed",
    )
    objects[APPROVAL_REQUESTS.plural, NS, NAME] = {**req, "status": server.statuses[-1]}
    worker.reconcile_request(NS, NAME, BUNDLE, current)  # the run is not in the cache yet
    [run] = server.created
    assert server.statuses[-1]["phase"] == "Submitted"
    assert server.statuses[-1]["run"] == {"name": NAME, "uid": run["metadata"]["uid"]}
