"""Properties of decide() and parse_annotation() that no example list can cover.

The bundle is the decision corpus's ``_base`` (two-person policy over platform-leads,
carol and requester; veto; on-call bypass; trusted submission API), compiled once here.
Records are signed at test time with the corpus's test keys. Example counts are bounded
so the whole file stays well under 30 s on two slow cores.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from approvalgate.approvals import records
from approvalgate.approvals.admission import AGENTRUNS, AGENTS_GROUP, request_for_manifest
from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.decide import Decision, decide
from approvalgate.approvals.digest import MAX_SAFE_INTEGER
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.policy import BundleSettings, compile_bundle, dump_bundle
from tests.support.corpus import (
    BASE,
    CORPUS_ENVIRONMENT,
    DEFAULT_NOW,
    compile_case_bundle,
    make_record,
)

BUNDLE_TEXT = compile_case_bundle(BASE)
BUNDLE = parse_bundle_text(BUNDLE_TEXT)
BUNDLE_AGAIN = parse_bundle_text(BUNDLE_TEXT)
NOW = records.parse_time(DEFAULT_NOW)
SKEW = timedelta(seconds=BUNDLE.clock_skew_seconds)


def _vote_bundle() -> Bundle:
    docs = []
    for name in ("policies.yaml", "approvers.yaml"):
        docs += [dict(d.obj) for d in load_manifests((BASE / name).read_text()) if d.obj]
    docs[0]["spec"]["rejection"] = "vote"
    bundle, problems = compile_bundle(
        docs, BundleSettings(environment=CORPUS_ENVIRONMENT, cluster_view="off")
    )
    assert bundle is not None, problems
    return parse_bundle_text(dump_bundle(bundle))


VOTE_BUNDLE = _vote_bundle()
BASE_RUN: dict[str, Any] = dict(load_manifests((BASE / "run.yaml").read_text())[0].obj)
RICH_RUN = copy.deepcopy(BASE_RUN)  # the base run plus values whose type can flip
RICH_RUN["spec"]["parameters"].update(
    {
        "retries": "3",
        "ratio": "1.5",
        "dryRun": "true",
        "skip": "false",
        "empty": "",
        "missing": "null",
        "limit": 1,
        "zero": 0,
        "verbose": True,
        "quiet": False,
        "note": None,
        "scale": 1.5,
        "tags": ["1", 2, False, None],
    }
)
RICH_RUN["spec"]["runtime"]["config"]["retryPolicy"] = {"maxAttempts": 3, "backoff": "10s"}

ENFORCED_GATED_REASONS = {  # the documented ways a gated CREATE/UPDATE passes without records
    "operation-not-gated",
    "not-gated",
    "status-subresource",
    "namespace-not-enforced",
    "unchanged-spec",
    "deleting-object",
}
ELIGIBLE = ("alice", "bob", "carol")  # requester is named by the policy but submits the runs
PEOPLE = ("alice", "bob", "carol", "requester")

# --- helpers --------------------------------------------------------------------------


def record(
    who: str,
    run: dict[str, Any],
    decision: str = "approve",
    issued: datetime | None = None,
    ttl_seconds: int = 7200,
) -> dict[str, Any]:
    issued = issued if issued is not None else NOW - timedelta(hours=1)
    recipe = {
        "key": who,
        "decision": decision,
        "issuedAt": records.format_time(issued),
        "ttl": f"{ttl_seconds}s",
        "reason": "break-glass" if decision == "bypass" else "",
    }
    return make_record(recipe, run, BASE, NOW)


def annotated(run: dict[str, Any], envelopes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out = copy.deepcopy(run)
    annotations = out["metadata"].setdefault("annotations", {})
    annotations[records.ANNOTATION] = records.dump_annotation(envelopes)
    return out


def create(run: dict[str, Any], username: str = "requester") -> dict[str, Any]:
    return dict(request_for_manifest(run, username=username, groups=["agents-users"]))


def update(old: dict[str, Any], new: dict[str, Any], username: str = "requester") -> dict[str, Any]:
    return dict(
        request_for_manifest(
            new, operation="UPDATE", username=username, groups=["agents-users"], old=old
        )
    )


def same_json(a: object, b: object) -> bool:
    """Equal as JSON values: 1 == 1.0, but true != 1 and "1" != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def paths(value: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location inside ``value`` (the root included), depth first."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += paths(item, (*prefix, index))
    return out


def at(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


APPROVED_BASE = annotated(BASE_RUN, [record("alice", BASE_RUN), record("bob", BASE_RUN)])
APPROVED_RICH = annotated(RICH_RUN, [record("alice", RICH_RUN), record("bob", RICH_RUN)])
ORIGINALS = [APPROVED_BASE, APPROVED_RICH]

# --- strategies -----------------------------------------------------------------------

safe_ints = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
scalars = (
    st.none()
    | st.booleans()
    | safe_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def type_flips(value: object) -> list[object]:
    """The same word or number as another JSON type: "1" -> 1, true -> "true"..."""
    if isinstance(value, bool):
        return [str(value).lower(), int(value)]
    if value is None:
        return ["null", "", False, 0]
    if isinstance(value, int | float):
        return [str(value), bool(value)]
    if isinstance(value, str):
        flips: list[object] = []
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        if not isinstance(parsed, str):
            flips.append(parsed)
        if value == "":
            flips.append(None)
        return flips
    return []


@st.composite
def spec_mutations(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(original run with approvals, the same run with its spec mutated, what was done)."""
    original = draw(st.sampled_from(ORIGINALS))
    spec = copy.deepcopy(original["spec"])
    inside = [p for p in paths(spec) if p]
    kind = draw(st.sampled_from(["replace", "retype", "add", "remove"]))
    if kind == "replace":
        path = draw(st.sampled_from(inside))
        new = draw(json_values)
        assume(not same_json(new, at(spec, path)))
        at(spec, path[:-1])[path[-1]] = new
    elif kind == "retype":
        leaves = [p for p in inside if type_flips(at(spec, p))]
        path = draw(st.sampled_from(leaves))
        new = draw(st.sampled_from(type_flips(at(spec, path))))
        assume(not same_json(new, at(spec, path)))
        at(spec, path[:-1])[path[-1]] = new
    elif kind == "add":
        path = draw(
            st.sampled_from([p for p in paths(spec) if isinstance(at(spec, p), dict | list)])
        )
        container = at(spec, path)
        new = draw(json_values)
        if isinstance(container, dict):
            key = draw(st.text(max_size=10).filter(lambda k: k not in container))
            container[key] = new
        else:
            container.insert(draw(st.integers(0, len(container))), new)
    else:
        path = draw(st.sampled_from(inside))
        del at(spec, path[:-1])[path[-1]]
    assume(not same_json(spec, original["spec"]))
    mutated = copy.deepcopy(original)
    mutated["spec"] = spec
    return original, mutated, kind


# --- 1. no change of the spec keeps an approval valid ----------------------------------


def test_the_originals_are_admitted() -> None:
    for original in ORIGINALS:
        decision = decide(create(original), BUNDLE, NOW)
        assert (decision.allowed, decision.reason, decision.approvers) == (
            True,
            "approved",
            ("alice", "bob"),
        )


@settings(max_examples=150, deadline=None)
@given(spec_mutations())
def test_any_spec_change_voids_the_approvals(
    case: tuple[dict[str, Any], dict[str, Any], str],
) -> None:
    original, mutated, _ = case
    assert decide(create(original), BUNDLE, NOW).allowed
    for request in (create(mutated), update(original, mutated)):
        decision = decide(request, BUNDLE, NOW)
        assert decision.internal_error == ""
        assert not decision.allowed, decision
        assert decision.reason in {
            "missing-approvals",
            "no-policy",
            "undigestable-spec",
            "invalid-reference",  # e.g. agentRef.name changed to null or a number
        }
        if decision.reason == "missing-approvals":
            notes = [v.note for r in decision.results for v in r.records]
            assert notes
            assert all(n.startswith("approves another spec") for n in notes), notes


def test_a_float_that_equals_an_integer_is_not_a_change() -> None:
    """RFC 8785 writes 600.0 as 600: the API server would hand over the same number."""
    same = copy.deepcopy(APPROVED_BASE)
    same["spec"]["runtime"]["config"]["ttlSecondsAfterFinished"] = 600.0
    assert decide(create(same), BUNDLE, NOW).allowed


# --- 2. more approvals never hurt; a reject may (veto, or a changed vote) ---------------

Vote = tuple[str, str, int, int]  # who, decision, minutes ago, minutes left


def _vote(who: str) -> st.SearchStrategy[Vote]:
    return st.tuples(
        st.just(who),
        st.sampled_from(("approve", "approve", "reject")),
        st.integers(0, 600),
        st.integers(1, 600),
    )


# each person votes or not (most do), sometimes twice; requester, mallory (not named by the
# policy) and oncall (bypass only) add records that must not count
votes = st.builds(
    lambda ballot, again, order: [ballot[i] for i in order if ballot[i]] + again,
    st.tuples(*(st.none() | _vote(who) | _vote(who) for who in (*PEOPLE, "mallory", "oncall"))),
    st.lists(st.sampled_from(PEOPLE).flatmap(_vote), max_size=2),
    st.permutations(range(len(PEOPLE) + 2)),
)


def signed_votes(run: dict[str, Any], ballot: Sequence[Vote]) -> list[Any]:
    out = []
    for who, decision, ago, left in ballot:
        issued = NOW - timedelta(minutes=ago)
        out.append(record(who, run, decision, issued, (ago + left) * 60))
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ballot=votes,
    extra=st.tuples(st.sampled_from(PEOPLE), st.integers(0, 600), st.integers(1, 600)),
    rejection=st.sampled_from(["veto", "vote"]),
)
def test_one_more_approval_never_turns_allow_into_deny(
    ballot: list[Vote], extra: tuple[str, int, int], rejection: str
) -> None:
    bundle = BUNDLE if rejection == "veto" else VOTE_BUNDLE
    envelopes = signed_votes(BASE_RUN, ballot)
    more = signed_votes(BASE_RUN, [(extra[0], "approve", extra[1], extra[2])])
    for position in (0, len(envelopes)):  # the order of records does not matter either
        before = decide(create(annotated(BASE_RUN, envelopes)), bundle, NOW)
        after_list = envelopes[:position] + more + envelopes[position:]
        after = decide(create(annotated(BASE_RUN, after_list)), bundle, NOW)
        assert before.internal_error == after.internal_error == ""
        assert after.allowed or not before.allowed, (before.message, after.message)
        assert len(after.approvers) >= len(before.approvers)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ballot=votes,
    extra=st.tuples(st.sampled_from(PEOPLE), st.integers(0, 600), st.integers(1, 600)),
    rejection=st.sampled_from(["veto", "vote"]),
)
def test_one_more_reject_may_deny_only_as_a_valid_reject(
    ballot: list[Vote], extra: tuple[str, int, int], rejection: str
) -> None:
    bundle = BUNDLE if rejection == "veto" else VOTE_BUNDLE
    envelopes = signed_votes(BASE_RUN, ballot)
    more = signed_votes(BASE_RUN, [(extra[0], "reject", extra[1], extra[2])])
    before = decide(create(annotated(BASE_RUN, envelopes)), bundle, NOW)
    after = decide(create(annotated(BASE_RUN, envelopes + more)), bundle, NOW)
    if before.allowed and not after.allowed:
        assert extra[0] in ELIGIBLE, "the requester's own reject is not a valid record"
        expected = "vetoed" if rejection == "veto" else "missing-approvals"
        assert after.reason == expected, after.message


def test_a_valid_reject_under_veto_does_flip() -> None:
    envelopes = [record("alice", BASE_RUN), record("bob", BASE_RUN)]
    assert decide(create(annotated(BASE_RUN, envelopes)), BUNDLE, NOW).allowed
    vetoed = [*envelopes, record("carol", BASE_RUN, "reject")]
    decision = decide(create(annotated(BASE_RUN, vetoed)), BUNDLE, NOW)
    assert (decision.allowed, decision.reason) == (False, "vetoed")
    # under vote, 2 approvals against 1 reject still pass
    assert decide(create(annotated(BASE_RUN, vetoed)), VOTE_BUNDLE, NOW).allowed


# --- 2b. an approval counts only in the environment it names (security.md 21) -------------

ENVIRONMENT_NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?", fullmatch=True)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ENVIRONMENT_NAMES.filter(lambda name: name != CORPUS_ENVIRONMENT))
def test_approvals_count_only_in_the_environment_they_name(environment: str) -> None:
    """The same policies, compiled for another environment: records signed for prod count
    for nothing there, and records signed for it admit only there."""
    other = parse_bundle_text(
        compile_case_bundle(BASE, BundleSettings(environment=environment, cluster_view="off"))
    )
    for original in ORIGINALS:
        decision = decide(create(original), other, NOW)
        assert (decision.allowed, decision.reason) == (False, "missing-approvals")
        notes = [v.note for r in decision.results for v in r.records]
        assert notes and all(
            n.startswith(f"approved for {CORPUS_ENVIRONMENT}, this bundle enforces {environment}")
            for n in notes
        ), notes
    recipes = [{"key": who, "environment": environment} for who in ("alice", "bob")]
    there = annotated(BASE_RUN, [make_record(r, BASE_RUN, BASE, NOW) for r in recipes])
    assert decide(create(there), other, NOW).allowed
    assert not decide(create(there), BUNDLE, NOW).allowed


# --- 3. monotonic in time -----------------------------------------------------------------

T0 = NOW - timedelta(days=1)


@st.composite
def approval_windows(draw: st.DrawFn) -> list[tuple[str, datetime, datetime]]:
    """2 or 3 approvals of the base run, each issued in the day before NOW, with a TTL
    within the policy's timeout; most of them still valid when the last one is issued."""
    people = draw(st.lists(st.sampled_from(ELIGIBLE), min_size=2, max_size=3, unique=True))
    offsets = [draw(st.integers(0, 36_000)) for _ in people]
    timeout = BUNDLE.policies[0].timeout_seconds
    out = []
    for who, offset in zip(people, offsets, strict=True):
        wait = max(offsets) - offset  # until the last record is issued
        ttl = draw(st.integers(max(60, wait + 1), timeout) | st.integers(60, timeout))
        issued = T0 + timedelta(seconds=offset)
        out.append((who, issued, issued + timedelta(seconds=ttl)))
    return out


def admitted_at(envelopes: list[Any], moment: datetime) -> Decision:
    decision = decide(create(annotated(BASE_RUN, envelopes)), BUNDLE, moment)
    assert decision.internal_error == ""
    assert decision.reason in {"approved", "missing-approvals"}, decision.message
    return decision


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(windows=approval_windows(), data=st.data())
def test_admission_is_monotonic_in_time(
    windows: list[tuple[str, datetime, datetime]], data: st.DataObject
) -> None:
    required = BUNDLE.policies[0].required_approvals
    last_issued = max(issued for _, issued, _ in windows)
    # after every record is issued, the run passes while `required` of them are unexpired
    needed_expiry = sorted(expires for _, _, expires in windows)[-required]
    assume(last_issued < needed_expiry)
    envelopes = [
        record(who, BASE_RUN, issued=i, ttl_seconds=int((e - i).total_seconds()))
        for who, i, e in windows
    ]
    span = int((needed_expiry - last_issued).total_seconds())
    now = last_issued + timedelta(seconds=data.draw(st.integers(0, span - 1), label="now"))
    assert admitted_at(envelopes, now).allowed

    earlier = now - timedelta(
        seconds=data.draw(st.integers(0, int((now - last_issued).total_seconds())), label="back")
    )
    assert admitted_at(envelopes, earlier).allowed
    assert admitted_at(envelopes, last_issued).allowed
    assert admitted_at(envelopes, needed_expiry - timedelta(seconds=1)).allowed

    later = needed_expiry + timedelta(seconds=data.draw(st.integers(0, 10**7), label="after"))
    assert not admitted_at(envelopes, needed_expiry).allowed
    assert not admitted_at(envelopes, later).allowed

    # the oracle at any moment: valid while issuedAt <= t + skew and t < expiresAt
    moment = T0 + timedelta(seconds=data.draw(st.integers(-86_400, 3 * 86_400), label="t"))
    valid = sum(1 for _, i, e in windows if i <= moment + SKEW and moment < e)
    assert admitted_at(envelopes, moment).allowed == (valid >= required)


def test_the_clock_skew_allowance_is_exact() -> None:
    issued = NOW
    envelopes = [record(who, BASE_RUN, issued=issued) for who in ("alice", "bob")]
    assert admitted_at(envelopes, issued - SKEW).allowed
    assert not admitted_at(envelopes, issued - SKEW - timedelta(seconds=1)).allowed


# --- 4. decide() is total ---------------------------------------------------------------

TAMPERED = [  # real records of the base run whose signatures no longer verify
    {**env, "signatures": [{**env["signatures"][0], "sig": base64.b64encode(bytes(64)).decode()}]}
    for env in json.loads(APPROVED_BASE["metadata"]["annotations"][records.ANNOTATION])
]
REAL = json.loads(APPROVED_BASE["metadata"]["annotations"][records.ANNOTATION])


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


annotation_values: st.SearchStrategy[Any] = st.one_of(
    st.text(max_size=50),
    st.binary(max_size=50).map(lambda b: b.decode("utf-8", errors="replace")),
    json_values.map(json.dumps),
    st.lists(json_values, max_size=4).map(json.dumps),
    st.integers(1, 200_000).map(_nested),
    st.integers(1, 300_000).map(lambda n: '["' + "x" * n + '"]'),
    st.lists(st.sampled_from(TAMPERED), max_size=70).map(json.dumps),
    st.lists(st.sampled_from(REAL), min_size=65, max_size=70).map(json.dumps),
    json_values,  # not even a string
)
names = st.sampled_from(["codex-run-sample", "other", "", "codex-"]) | st.text(max_size=10)
namespaces = st.sampled_from(["agents", "default", "", "kube-system"]) | st.text(max_size=10)
junk_metadata = st.fixed_dictionaries(
    {},
    optional={
        "name": names | json_values,
        "generateName": names | json_values,
        "namespace": namespaces | json_values,
        "annotations": st.fixed_dictionaries(
            {}, optional={records.ANNOTATION: annotation_values, records.AUTHOR_ANNOTATION: names}
        )
        | json_values,
        "labels": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)
        | json_values,
        "finalizers": st.lists(st.text(max_size=5), max_size=3) | json_values,
        "deletionTimestamp": st.sampled_from(["2026-11-21T11:00:00Z", None]) | json_values,
    },
)
junk_specs = json_values | st.fixed_dictionaries(
    {"agentRef": st.fixed_dictionaries({"name": st.just("codex-agent") | json_values})},
    optional={"parameters": json_values, "workload": json_values},
)
junk_objects = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": st.just("agents.proompteng.ai/v1alpha1") | json_values,
        "kind": st.just("AgentRun") | json_values,
        "metadata": junk_metadata | json_values,
        "spec": junk_specs,
    },
)
operations = (
    st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", "PATCH", "create", ""]) | json_values
)
resources = (
    st.sampled_from(
        [
            {"group": AGENTS_GROUP, "version": "v1alpha1", "resource": AGENTRUNS},
            {"group": AGENTS_GROUP, "version": "v1", "resource": AGENTRUNS},
            {"group": AGENTS_GROUP, "version": "v1alpha1", "resource": "agents"},
            {"group": "", "version": "v1", "resource": "pods"},
        ]
    )
    | json_values
)
user_infos = (
    st.fixed_dictionaries(
        {},
        optional={
            "username": st.sampled_from(PEOPLE) | json_values,
            "groups": st.lists(st.text(max_size=5), max_size=3) | json_values,
        },
    )
    | json_values
)
junk_requests = st.fixed_dictionaries(
    {},
    optional={
        "uid": json_values,
        "operation": operations,
        "resource": resources,
        "subResource": st.sampled_from(["status", "scale", ""]) | json_values,
        "namespace": namespaces | json_values,
        "name": names | json_values,
        "userInfo": user_infos,
        "object": junk_objects | json_values,
        "oldObject": junk_objects | json_values,
        "dryRun": st.booleans() | json_values,
    },
)


def check_total(request: dict[str, Any], bundle: Bundle, approved: bool = False) -> Decision:
    """decide() answers, well-typed; a gated run passes only by a documented pass-through,
    or (``approved``: the request carries alice's and bob's approvals of the base run) as
    that exact approved spec."""
    decision = decide(request, bundle, NOW)
    assert isinstance(decision, Decision)
    assert isinstance(decision.allowed, bool)
    assert decision.code == (200 if decision.allowed else 403)
    assert isinstance(decision.message, str)
    assert all(isinstance(w, str) for w in decision.warnings)
    assert all(
        isinstance(k, str) and isinstance(v, str) for k, v in decision.audit_annotations.items()
    )
    gated = (
        request.get("operation") in ("CREATE", "UPDATE")
        and isinstance(request.get("resource"), dict)
        and request["resource"].get("group") == AGENTS_GROUP
        and request["resource"].get("resource") == AGENTRUNS
        and "object" in request
    )
    if gated and decision.allowed and decision.reason not in ENFORCED_GATED_REASONS:
        assert approved, (decision.reason, decision.message)
        assert decision.reason == "approved", decision.reason
        assert same_json(request["object"]["spec"], BASE_RUN["spec"])
    return decision


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(junk_requests)
def test_decide_is_total_on_junk(request: dict[str, Any]) -> None:
    check_total(request, BUNDLE)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    obj=junk_objects,
    old=st.none() | junk_objects,
    operation=st.sampled_from(["CREATE", "UPDATE"]),
    user=user_infos,
)
def test_decide_never_admits_a_gated_junk_run_without_records(
    obj: dict[str, Any], old: dict[str, Any] | None, operation: str, user: Any
) -> None:
    request: dict[str, Any] = {
        "uid": "u",
        "operation": operation,
        "resource": {"group": AGENTS_GROUP, "version": "v1alpha1", "resource": AGENTRUNS},
        "namespace": "agents",
        "userInfo": user,
        "object": obj,
    }
    if old is not None:
        request["oldObject"] = old
    check_total(request, BUNDLE)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from([p for p in paths(APPROVED_BASE) if p]),
    junk=json_values,
    operation=st.sampled_from(["CREATE", "UPDATE"]),
)
def test_a_junk_value_anywhere_in_an_approved_run_never_crashes(
    path: tuple[Any, ...], junk: Any, operation: str
) -> None:
    """Wrong types in every field of an otherwise valid, approved request."""
    obj = copy.deepcopy(APPROVED_BASE)
    at(obj, path[:-1])[path[-1]] = junk
    request = create(obj) if operation == "CREATE" else update(APPROVED_BASE, obj)
    check_total(request, BUNDLE, approved=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(
        [
            "operation",
            "resource",
            "namespace",
            "userInfo",
            "object",
            "oldObject",
            "name",
            "subResource",
            "dryRun",
        ]
    ),
    junk=json_values,
)
def test_a_junk_field_in_an_approved_request_never_crashes(field: str, junk: Any) -> None:
    request = update(APPROVED_BASE, APPROVED_BASE)
    request[field] = junk
    check_total(request, BUNDLE, approved=True)


def _legacy_run(**metadata: Any) -> dict[str, Any]:
    """A run admitted before its namespace was enforced, holding a number the API server
    keeps (a float beyond 2^53) but RFC 8785 cannot digest exactly."""
    run = copy.deepcopy(BASE_RUN)
    run["spec"]["parameters"]["seed"] = 1e20
    run["metadata"].update(metadata)
    return run


@pytest.mark.parametrize("change", ["labels", "finalizer-removal"])
def test_controllers_can_update_a_run_whose_spec_cannot_be_digested(change: str) -> None:
    finalizers = ["agents.proompteng.ai/cleanup"]
    if change == "labels":
        old = _legacy_run(finalizers=finalizers)
        new = _legacy_run(finalizers=finalizers, labels={"phase": "running"})
        expected = "unchanged-spec"
    else:
        old = _legacy_run(finalizers=finalizers, deletionTimestamp="2026-11-21T11:00:00Z")
        new = _legacy_run(finalizers=[], deletionTimestamp="2026-11-21T11:00:00Z")
        expected = "deleting-object"
    decision = decide(update(old, new, username="system:serviceaccount:agents:ctrl"), BUNDLE, NOW)
    assert (decision.allowed, decision.reason) == (True, expected), decision.message


def test_an_update_from_an_undigestable_spec_is_judged_on_the_new_spec() -> None:
    old = annotated(_legacy_run(), [])
    decision = decide(update(old, APPROVED_BASE), BUNDLE, NOW)
    assert decision.internal_error == ""
    assert (decision.allowed, decision.reason) == (True, "approved")


# --- 5. decide() is deterministic ---------------------------------------------------------

any_request = junk_requests | st.builds(
    lambda ballot: create(annotated(BASE_RUN, signed_votes(BASE_RUN, ballot))), votes
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_request)
def test_decide_is_deterministic(request: dict[str, Any]) -> None:
    pristine = copy.deepcopy(request)
    first = decide(request, BUNDLE, NOW)
    assert request == pristine, "decide() must not modify the request"
    assert decide(request, BUNDLE, NOW) == first
    assert decide(copy.deepcopy(request), BUNDLE_AGAIN, NOW) == first


# --- 6. parse_annotation never raises and is bounded --------------------------------------

ENVELOPE = REAL[0]


envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "payload": st.sampled_from([ENVELOPE["payload"]])
        | json_values.map(lambda v: base64.b64encode(json.dumps(v).encode()).decode())
        | json_values,
        "payloadType": st.just(records.PAYLOAD_TYPE) | json_values,
        "signatures": st.lists(
            st.fixed_dictionaries(
                {},
                optional={"keyid": st.text(max_size=4) | json_values, "sig": st.text(max_size=8)},
            )
            | json_values,
            max_size=10,
        )
        | json_values,
    },
)
statements = st.fixed_dictionaries(
    {
        "_type": st.just(records.STATEMENT_TYPE) | json_values,
        "predicateType": st.just(records.PREDICATE_TYPE) | json_values,
    },
    optional={
        "subject": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "name": st.text(max_size=8) | json_values,
                    "digest": st.fixed_dictionaries({}, optional={"sha256": st.text(max_size=8)})
                    | json_values,
                },
            ),
            max_size=2,
        )
        | json_values,
        "predicate": st.fixed_dictionaries(
            {},
            optional={
                "decision": st.sampled_from(["approve", "reject", "bypass", "maybe"]) | json_values,
                "approver": st.text(max_size=5) | json_values,
                "reason": st.text(max_size=5) | json_values,
                "nonce": st.text(max_size=5) | json_values,
                "issuedAt": st.sampled_from(
                    ["2026-11-21T11:00:00Z", "2026-11-21T11:00:00", "2026-11-21", ""]
                )
                | st.text(max_size=25)
                | json_values,
                "expiresAt": st.sampled_from(["2026-11-21T13:00:00+02:00", "2026-11-21T13:00Z"])
                | st.text(max_size=25)
                | json_values,
            },
        )
        | json_values,
    },
)
statement_envelopes = statements.map(
    lambda s: {
        "payload": base64.b64encode(json.dumps(s).encode()).decode(),
        "payloadType": records.PAYLOAD_TYPE,
        "signatures": [{"keyid": "k", "sig": "AA=="}],
    }
)
any_text = st.one_of(
    st.text(),
    st.text(st.characters(exclude_categories=())),  # lone surrogates too
    st.binary().map(lambda b: b.decode("utf-8", errors="replace")),
    json_values.map(json.dumps),
    st.lists(envelope_like | statement_envelopes | json_values, max_size=8).map(json.dumps),
    st.lists(st.sampled_from(REAL), max_size=100).map(json.dumps),
    st.integers(0, 300_000).map(_nested),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_text)
def test_parse_annotation_never_raises_and_is_bounded(value: str) -> None:
    parsed, problems = records.parse_annotation(value)
    assert len(parsed) <= records.MAX_RECORDS
    assert len(parsed) + len(problems) <= records.MAX_RECORDS or (parsed, len(problems)) == ([], 1)
    assert all(isinstance(p.message, str) and p.message for p in problems)
    assert [r.index for r in parsed] == sorted({r.index for r in parsed})
