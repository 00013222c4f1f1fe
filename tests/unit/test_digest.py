"""approvals.digest: sha256 over RFC 8785, refusing what JSON cannot carry exactly."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from approvalgate.approvals.digest import MAX_SAFE_INTEGER, canonical_json, spec_digest
from approvalgate.approvals.errors import DigestError
from approvalgate.approvals.kubeyaml import load_manifests

RUN_BLOCK = """\
apiVersion: agents.proompteng.ai/v1alpha1
kind: AgentRun
metadata:
  name: run   # the name is not part of the spec digest
spec:
  agentRef:
    name: codex-agent
  runtime:
    type: workflow
    config:
      ttlSecondsAfterFinished: 600
      ratio: 2.0
  parameters:
    task: 'Update onboarding flow'
    mode: "0600"
"""

RUN_FLOW = """\
# same run, other formatting, other key order, other quotes, other comments
kind: AgentRun
apiVersion: agents.proompteng.ai/v1alpha1
metadata: {name: another-name}
spec: {parameters: {mode: '0600', task: "Update onboarding flow"},
       runtime: {config: {ratio: 2, ttlSecondsAfterFinished: 6e2}, type: workflow},
       agentRef: {name: "codex-agent"}}
"""


def spec_of(text: str) -> Any:
    (document,) = load_manifests(text)
    return document.obj["spec"]


def test_digest_is_sha256_of_rfc8785() -> None:
    spec = {"b": [1, 2.5, "x"], "a": {"z": None, "y": True}}
    expected = hashlib.sha256(b'{"a":{"y":true,"z":null},"b":[1,2.5,"x"]}').hexdigest()
    assert spec_digest(spec) == expected
    assert spec_digest({}) == hashlib.sha256(b"{}").hexdigest()


def test_canonical_json_sorts_keys_and_formats_numbers_like_ecmascript() -> None:
    value = {"b": 1.5, "a": [1e-7, 2.0, 123456789.5, -0.0], "é": "\u2028", "c": "\x01"}
    assert (
        canonical_json(value)
        == '{"a":[1e-7,2,123456789.5,0],"b":1.5,"c":"\\u0001","é":"\u2028"}'.encode()
    )


def test_digest_ignores_comments_key_order_and_formatting() -> None:
    assert spec_of(RUN_BLOCK) == spec_of(RUN_FLOW)
    assert spec_digest(spec_of(RUN_BLOCK)) == spec_digest(spec_of(RUN_FLOW))


def test_digest_sees_kubectl_typing() -> None:
    quoted = spec_of("spec:\n  parameters:\n    approve: 'yes'\n")
    plain = spec_of("spec:\n  parameters:\n    approve: yes\n")
    assert plain == {"parameters": {"approve": True}}
    assert spec_digest(quoted) != spec_digest(plain)


def test_digest_of_the_spec_the_server_returns_matches_the_yaml_file() -> None:
    # The webhook gets the spec as JSON from the API server (integral floats as integers).
    served = json.loads(
        '{"agentRef":{"name":"codex-agent"},"parameters":{"mode":"0600",'
        '"task":"Update onboarding flow"},"runtime":{"config":{"ratio":2,'
        '"ttlSecondsAfterFinished":600},"type":"workflow"}}'
    )
    assert spec_digest(served) == spec_digest(spec_of(RUN_BLOCK))


@pytest.mark.parametrize("number", [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 0, 1.5, -1e15, 5e-324])
def test_numbers_within_the_safe_range_are_digested(number: float) -> None:
    assert spec_digest({"n": number}) == hashlib.sha256(rfc8785.dumps({"n": number})).hexdigest()


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"n": MAX_SAFE_INTEGER + 1}, "$.spec.n", "beyond ±(2^53 - 1)"),
        ({"a": [1, -(2**63)]}, "$.spec.a[1]", "beyond ±(2^53 - 1)"),
        ({"a": {"b": 12345678901234567890}}, "$.spec.a.b", "12345678901234567890"),
        ({"f": 1e20}, "$.spec.f", "beyond ±(2^53 - 1)"),
        ({"f": math.nan}, "$.spec.f", "not a JSON number"),
        ({"f": [math.inf]}, "$.spec.f[0]", "not a JSON number"),
        ({"f": -math.inf}, "$.spec.f", "not a JSON number"),
    ],
)
def test_numbers_json_cannot_carry_exactly_are_refused(
    spec: dict[str, Any], path: str, fragment: str
) -> None:
    with pytest.raises(DigestError) as caught:
        spec_digest(spec)
    assert caught.value.location is not None
    assert caught.value.location.json_path == path
    assert fragment in caught.value.message
    assert "quote" in caught.value.advice


@pytest.mark.parametrize(
    ("value", "path", "message"),
    [
        ({1: "x"}, "$", "object key 1 is not a string"),
        ({"a": {"x", "y"}}, "$.a", "set is not a JSON value"),
        ({"a": b"bytes"}, "$.a", "bytes is not a JSON value"),
        ({"a": ["\udce9"]}, "$.a[0]", "lone surrogate"),
        ({"a": {"\udce9": 1}}, "$.a", "lone surrogate"),
    ],
)
def test_non_json_values_are_refused(value: Any, path: str, message: str) -> None:
    with pytest.raises(DigestError, match=message) as caught:
        canonical_json(value)
    assert caught.value.location is not None
    assert caught.value.location.json_path == path


def test_booleans_are_not_numbers() -> None:
    assert canonical_json([True, False, None]) == b"[true,false,null]"


JSON_TREES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


def reordered(value: Any) -> Any:
    """The same tree with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(item) for item in value]
    return value


@given(JSON_TREES)
@settings(max_examples=300)
def test_digest_is_sha256_of_rfc8785_and_ignores_key_order(tree: Any) -> None:
    digest = spec_digest(tree)
    assert digest == hashlib.sha256(rfc8785.dumps(tree)).hexdigest()
    assert spec_digest(reordered(tree)) == digest
    assert len(digest) == 64
    assert digest == digest.lower()
