"""Hypothesis against the running handler over HTTPS: no 5xx, no crash, no allow without records.

Three generators, bounded to about 200 examples in all: arbitrary bytes, arbitrary JSON
shaped roughly like an AdmissionReview, and well-formed AgentRun CREATEs in an enforced
namespace that carry no valid approval (these must all be denied).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.harness import V1, V1BETA1, Client, ServerThread, TestPKI

FUZZ = settings(
    max_examples=70,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ENFORCED = "agents"


@pytest.fixture(scope="module")
def client(
    module_pki: TestPKI, tmp_path_factory: pytest.TempPathFactory, base_bundle_text: str
) -> Iterator[Client]:
    bundle = tmp_path_factory.mktemp("fuzz") / "bundle.json"
    bundle.write_text(base_bundle_text)
    with ServerThread(module_pki, bundle, read_timeout=2.0) as server, server.client() as c:
        yield c
        assert c.get("/healthz").status == 200


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=0, max_size=40)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, json_values)


review_shaped = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": maybe(st.sampled_from([V1, V1BETA1])),
        "kind": maybe(st.just("AdmissionReview")),
        "request": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "uid": maybe(st.uuids().map(str)),
                    "operation": maybe(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"])),
                    "resource": maybe(
                        st.fixed_dictionaries(
                            {
                                "group": maybe(st.just("agents.proompteng.ai")),
                                "version": maybe(st.just("v1alpha1")),
                                "resource": maybe(st.just("agentruns")),
                            }
                        )
                    ),
                    "namespace": maybe(st.sampled_from([ENFORCED, "other"])),
                    "name": maybe(names),
                    "subResource": maybe(st.sampled_from(["", "status", "scale"])),
                    "userInfo": maybe(
                        st.fixed_dictionaries(
                            {}, optional={"username": maybe(names), "groups": json_values}
                        )
                    ),
                    "object": json_values,
                    "oldObject": json_values,
                    "dryRun": json_values,
                },
            )
        ),
    },
)

label_maps = st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3)
annotation_maps = st.dictionaries(
    st.sampled_from(
        ["approvals.proompteng.ai/approvals", "note", "approvals.proompteng.ai/author"]
    ),
    st.one_of(st.text(max_size=40), json_values.map(json.dumps)),
    max_size=3,
)


@st.composite
def gated_creates(draw: st.DrawFn) -> dict[str, Any]:
    """An AgentRun CREATE in an enforced namespace, by a non-trusted user, without approvals."""
    name = draw(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True))
    metadata: dict[str, Any] = {"name": name, "namespace": ENFORCED, "labels": draw(label_maps)}
    metadata["annotations"] = draw(annotation_maps)
    spec = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=4))
    spec["agentRef"] = {"name": draw(st.sampled_from(["codex-agent", "other-agent", ""]))}
    return {
        "uid": str(draw(st.uuids())),
        "operation": "CREATE",
        "resource": {
            "group": "agents.proompteng.ai",
            "version": "v1alpha1",
            "resource": "agentruns",
        },
        "namespace": ENFORCED,
        "name": name,
        "userInfo": {"username": draw(names), "groups": draw(st.lists(names, max_size=3))},
        "object": {
            "apiVersion": "agents.proompteng.ai/v1alpha1",
            "kind": "AgentRun",
            "metadata": metadata,
            "spec": spec,
        },
        "dryRun": draw(st.booleans()),
    }


def _check(client: Client, body: bytes) -> dict[str, Any] | None:
    reply = client.post(body)
    assert reply.status in (200, 400, 413), (reply.status, reply.body[:300])
    if reply.status != 200:
        assert b'"allowed"' not in reply.body
        return None
    review: dict[str, Any] = json.loads(reply.body)
    assert review["apiVersion"] in (V1, V1BETA1)
    assert isinstance(review["response"]["allowed"], bool)
    return review


@FUZZ
@given(body=st.binary(max_size=2000))
def test_random_bytes(client: Client, body: bytes) -> None:
    _check(client, body)


@FUZZ
@given(review=review_shaped)
def test_random_review_shaped_json(client: Client, review: dict[str, Any]) -> None:
    answer = _check(client, json.dumps(review).encode())
    if answer is not None:
        assert answer["apiVersion"] == review["apiVersion"]
        assert answer["response"]["uid"] == review["request"]["uid"]


@FUZZ
@given(request=gated_creates(), version=st.sampled_from([V1, V1BETA1]))
def test_gated_requests_without_records_are_never_allowed(
    client: Client, request: dict[str, Any], version: str
) -> None:
    body = json.dumps({"apiVersion": version, "kind": "AdmissionReview", "request": request})
    answer = _check(client, body.encode())
    assert answer is not None
    assert answer["response"]["uid"] == request["uid"]
    assert answer["response"]["allowed"] is False, answer["response"]
