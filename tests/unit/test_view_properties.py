"""Properties of decide() with the cluster view that no example list can cover (class 21).

Random sets of records (approve, reject, bypass, withdraw by the corpus's approvers and
others, at random times, some for staging, some expired) are split at random between what
the run carries and what the cluster holds (ApprovalDecisions). Whatever the split:

- a reject or withdrawal counts the same whether the run carries it or only the cluster
  holds it (the requester cannot leave one out);
- carrying a copy of any cluster record with a forged signature changes nothing;
- more rejects or withdrawals in the cluster, or more uses by other runs, never admit a
  run that was denied;
- an approval listed in another run's use never counts.

The bundle is the corpus's ``_base`` (veto; two of alice, bob, carol, requester; oncall
bypasses) in prod, with the view required. Example counts are bounded (a few seconds).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approvalgate.approvals import records
from approvalgate.approvals.admission import request_for_manifest
from approvalgate.approvals.bundle import parse_bundle_text
from approvalgate.approvals.decide import Decision, decide
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.policy import BundleSettings
from approvalgate.approvals.view import USE_FINALIZER, StaticView
from tests.support.corpus import (
    BASE,
    CORPUS_ENVIRONMENT,
    DEFAULT_NOW,
    compile_case_bundle,
    make_record,
)

BUNDLE = parse_bundle_text(
    compile_case_bundle(
        BASE,
        BundleSettings(
            environment=CORPUS_ENVIRONMENT, cluster_view="required", referenced_content="off"
        ),
    )
)
NOW = records.parse_time(DEFAULT_NOW)
RUN: dict[str, Any] = dict(load_manifests((BASE / "run.yaml").read_text())[0].obj)
RUN["metadata"]["uid"] = "run-uid-1"
RUN["metadata"]["finalizers"] = [USE_FINALIZER]
NAME, NS = RUN["metadata"]["name"], RUN["metadata"]["namespace"]

recipes = st.fixed_dictionaries(
    {
        "key": st.sampled_from(["alice", "bob", "carol", "requester", "oncall", "mallory"]),
        "decision": st.sampled_from(["approve", "approve", "reject", "withdraw", "bypass"]),
        "minutes": st.integers(-150, 5),  # issued this many minutes from now
        "environment": st.sampled_from([CORPUS_ENVIRONMENT] * 4 + ["staging"]),
        "where": st.sampled_from(["run", "cluster", "both"]),
    }
)


def _envelope(recipe: dict[str, Any]) -> dict[str, Any]:
    issued = NOW + timedelta(minutes=recipe["minutes"])
    return make_record(
        {
            "key": recipe["key"],
            "decision": recipe["decision"],
            "issuedAt": records.format_time(issued),
            "ttl": "1h",
            "reason": "prod is down, INC-4711" if recipe["decision"] == "bypass" else "",
            "environment": recipe["environment"],
        },
        RUN,
        BASE,
        NOW,
    )


def _decision_obj(index: int, envelope: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{NAME}-{index}",
            "namespace": NS,
            "creationTimestamp": f"2026-11-21T10:{index:02d}:00Z",
        },
        "spec": {"requestName": NAME, "record": envelope},
    }


def _statement(envelope: dict[str, Any]) -> str:
    return hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()


def judge(
    carried: list[dict[str, Any]],
    cluster: list[dict[str, Any]],
    uses: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> Decision:
    run = copy.deepcopy(RUN)
    if carried:
        run["metadata"]["annotations"] = {records.ANNOTATION: records.dump_annotation(carried)}
    request = dict(request_for_manifest(run, username="requester", groups=["agents-users"]))
    view = StaticView.build(
        decisions=[_decision_obj(i, e) for i, e in enumerate(cluster)], uses=list(uses)
    )
    decision = decide(request, BUNDLE, NOW, view)
    assert decision.internal_error == ""
    return decision


def _split(recipes_: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    carried, cluster = [], []
    seen: set[str] = set()
    for recipe in recipes_:
        envelope = _envelope(recipe)
        key = json.dumps(envelope, sort_keys=True)
        if key in seen:  # the same record twice (same approver, decision, time)
            continue
        seen.add(key)
        if recipe["where"] in ("run", "both"):
            carried.append(envelope)
        if recipe["where"] in ("cluster", "both"):
            cluster.append(envelope)
    return carried, cluster


def _verdict(decision: Decision) -> tuple[bool, str, tuple[str, ...]]:
    return decision.allowed, decision.reason, decision.approvers


def _is_take_back(envelope: dict[str, Any]) -> bool:
    parsed, _ = records.parse_envelopes([envelope])
    return parsed[0].claim.decision in ("reject", "withdraw")


SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.lists(recipes, min_size=1, max_size=6))
def test_a_reject_or_withdrawal_counts_wherever_it_is(recipes_: list[dict[str, Any]]) -> None:
    carried, cluster = _split(recipes_)
    base = _verdict(judge(carried, cluster))
    # every take-back also in the cluster, and none of them carried: the same verdict
    take_backs = [e for e in carried if _is_take_back(e)]
    in_cluster = cluster + [e for e in take_backs if e not in cluster]
    left_out = [e for e in carried if not _is_take_back(e)]
    assert _verdict(judge(carried, in_cluster)) == base  # the same envelope counts once
    assert _verdict(judge(left_out, in_cluster)) == base


@SETTINGS
@given(st.lists(recipes, min_size=1, max_size=6))
def test_a_forged_copy_of_a_cluster_record_changes_nothing(
    recipes_: list[dict[str, Any]],
) -> None:
    carried, cluster = _split(recipes_)
    base = _verdict(judge(carried, cluster))
    forged = []
    for envelope in cluster:
        copy_ = copy.deepcopy(envelope)
        copy_["signatures"][0]["sig"] = base64.b64encode(bytes(64)).decode()
        forged.append(copy_)
    assert _verdict(judge(carried + forged, cluster)) == base


@SETTINGS
@given(
    st.lists(recipes, min_size=1, max_size=6),
    st.lists(
        st.fixed_dictionaries(
            {
                "key": st.sampled_from(["alice", "bob", "carol", "oncall"]),
                "decision": st.sampled_from(["reject", "withdraw"]),
                "minutes": st.integers(-150, 5),
                "environment": st.just(CORPUS_ENVIRONMENT),
                "where": st.just("cluster"),
            }
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_more_take_backs_in_the_cluster_never_admit(
    recipes_: list[dict[str, Any]], more: list[dict[str, Any]]
) -> None:
    carried, cluster = _split(recipes_)
    before = judge(carried, cluster)
    after = judge(carried, cluster + [_envelope(r) for r in more])
    assert after.allowed <= before.allowed
    assert set(after.approvers) <= set(before.approvers)


@SETTINGS
@given(st.lists(recipes, min_size=1, max_size=6), st.data())
def test_an_approval_another_run_used_never_counts(
    recipes_: list[dict[str, Any]], data: st.DataObject
) -> None:
    carried, cluster = _split(recipes_)
    every = carried + [e for e in cluster if e not in carried]
    used = data.draw(st.lists(st.sampled_from(every), max_size=len(every), unique_by=_statement))
    use = {
        "metadata": {
            "name": "uid-earlier",
            "namespace": NS,
            "creationTimestamp": "2026-11-21T10:00:00Z",
        },
        "spec": {
            "run": {"name": NAME, "uid": "uid-earlier"},
            "statements": [_statement(e) for e in used],
            "expiresAt": "2026-11-21T14:00:00Z",
        },
    }
    before = judge(carried, cluster)
    after = judge(carried, cluster, [use])
    assert after.allowed <= before.allowed
    assert set(after.approvers) <= set(before.approvers)
    unused = [records.parse_envelopes([e])[0][0].claim for e in every if e not in used]
    still = {c.approver for c in unused if c.decision == "approve"}
    assert set(after.approvers) <= still  # who counts has an approval nobody used
