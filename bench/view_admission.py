"""Webhook CPU per admission with a cluster view of 10,000 ApprovalDecisions, against none.

The same AgentRun CREATE reviews (each approved by two signed records it carries, and
carrying the approval-use finalizer) are judged by ``approvals.decide.decide`` three ways,
interleaved request by request (the order rotates, so background load hits all three alike):

- **no view**: the bundle says ``clusterView: off`` and decide() gets ``view=None``: issue 14's
  path, records on the run alone (the baseline);
- **empty view**: ``clusterView: required`` and a synced view holding nothing
  (``approvals.view.EMPTY``): the view's rules run, every lookup misses;
- **10,000 decisions**: ``clusterView: required`` and a view holding ``--decisions``
  ApprovalDecisions spread over run names (one to four per run, approve, reject and withdraw,
  signed for real; the measured runs' own two approvals among them, as the queue leaves them),
  plus one ApprovalUse per fourth run name and one ApprovalRequest per measured run.

Level (a), always: the view is ``approvals.view.StaticView.build`` of those objects, in this
process. Level (b), with ``--apiserver``: the objects are created on a real kube-apiserver
(127.0.0.1, started here from tools/testbin.py binaries; the webhook is not registered, the
CRDs are the chart's) and the view is ``kube.view.WatchedView`` fed by its watches, as the
webhook runs it; the same three ways are measured against it.

CPU is measured around each decide() call: ``time.process_time`` at level (a) (one thread);
``time.thread_time`` at level (b), where the view's three informer threads run in the same
process and would otherwise be charged to whichever admission they woke during (their cost
is the watch, not the admission: it is reported apart, as CPU over the measuring phase).
Every decision is checked (allowed, and with the view: its records seen in the cluster).

    .venv/bin/python bench/view_admission.py                  # level (a): 10,000 decisions
    .venv/bin/python bench/view_admission.py --apiserver      # and level (b)
    .venv/bin/python bench/view_admission.py --quick          # smoke: 50 decisions, 5 runs

Prints markdown (``--markdown``, the default) or ``--json``; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import signal
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from approvalgate.approvals import records, view  # noqa: E402
from approvalgate.approvals.admission import request_for_manifest  # noqa: E402
from approvalgate.approvals.bundle import Bundle, parse_bundle_text  # noqa: E402
from approvalgate.approvals.decide import decide  # noqa: E402
from approvalgate.approvals.digest import spec_digest  # noqa: E402
from approvalgate.approvals.policy import BundleSettings  # noqa: E402
from tests.support.corpus import BASE, compile_case_bundle, signer  # noqa: E402

ENV = "prod"
NAMESPACE = "agents"  # the corpus policy's namespace
OTHER_NAMESPACES = ("team-a", "team-b", "team-c")  # where the other decisions live too
APPROVERS = ("alice", "bob", "carol")
WAYS = ("no view", "empty view", "decisions view")
QUICK = {"decisions": 50, "runs": 5, "rounds": 2}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- what is judged --------------------------------------------------------------------------


def run_spec(number: int) -> dict[str, Any]:
    return {
        "agentRef": {"name": "codex-agent"},
        "implementationSpecRef": {"name": "codex-impl-sample"},
        "runtime": {"type": "workflow", "config": {"ttlSecondsAfterFinished": 600}},
        "workload": {"image": "ghcr.io/proompteng/codex-runner:1.4.2"},
        "parameters": {"repository": "proompteng/lab", "task": f"bench task {number}"},
    }


def sign(
    namespace: str, name: str, digest: str, approver: str, decision: str, now: datetime
) -> dict[str, Any]:
    issued = now - timedelta(minutes=10)
    return records.sign(
        records.Claim(
            subject=records.subject_name(namespace, name),
            digest=digest,
            decision=decision,
            approver=approver,
            reason="bench" if decision != "approve" else "",
            issued_at=issued,
            expires_at=issued + timedelta(hours=6),
            nonce=records.new_nonce(),
            environment=ENV,
        ),
        SIGNERS[approver],
    )


SIGNERS: dict[str, Any] = {}


def statement_of(envelope: Mapping[str, Any]) -> str:
    """sha256 of the DSSE payload bytes (what an ApprovalUse lists: view.statement_digest)."""
    return hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()


def _meta(namespace: str, name: str, number: int, now: datetime) -> dict[str, Any]:
    created = now - timedelta(minutes=30) + timedelta(milliseconds=number)
    return {
        "name": name,
        "namespace": namespace,
        "uid": f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-"
        f"{secrets.token_hex(2)}-{secrets.token_hex(6)}",
        "creationTimestamp": records.format_time(created),
    }


def decision_object(
    namespace: str,
    run: str,
    envelope: Mapping[str, Any],
    approver: str,
    kind: str,
    number: int,
    now: datetime,
) -> dict[str, Any]:
    return {
        "apiVersion": view.API_VERSION,
        "kind": "ApprovalDecision",
        "metadata": _meta(namespace, f"{run}-{secrets.token_hex(3)}", number, now),
        "spec": {"requestName": run, "decision": kind, "approver": approver, "record": envelope},
    }


def request_object(namespace: str, run: str, spec: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "apiVersion": view.API_VERSION,
        "kind": "ApprovalRequest",
        "metadata": _meta(namespace, run, 0, now),
        "spec": {
            "requester": "requester",
            "environment": ENV,
            "reason": "bench",
            "specDigest": spec_digest(spec),
            "cancelled": False,
            "run": {
                "apiVersion": "agents.proompteng.ai/v1alpha1",
                "kind": "AgentRun",
                "metadata": {"name": run},
                "spec": spec,
            },
        },
    }


def use_object(
    namespace: str, run: str, statements: Sequence[str], now: datetime
) -> dict[str, Any]:
    uid = f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-" + (
        f"{secrets.token_hex(2)}-{secrets.token_hex(6)}"
    )
    meta = _meta(namespace, uid, 0, now)
    meta["uid"] = secrets.token_hex(8)
    return {
        "apiVersion": view.API_VERSION,
        "kind": "ApprovalUse",
        "metadata": meta,
        "spec": {
            "run": {"name": run, "uid": uid},
            "environment": ENV,
            "specDigest": secrets.token_hex(32),
            "statements": list(statements),
            "expiresAt": records.format_time(now + timedelta(hours=6)),
        },
    }


@dataclass
class Corpus:
    """The reviews judged, and the cluster objects the view holds."""

    reviews: list[dict[str, Any]]
    decisions: list[dict[str, Any]] = field(default_factory=list)
    uses: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    run_names: int = 0


def build_corpus(decisions: int, runs: int, now: datetime) -> Corpus:
    """``runs`` approved AgentRun CREATE reviews, and ``decisions`` ApprovalDecisions in all
    (theirs first: two each), the rest over other run names, one to four per name."""
    if not SIGNERS:
        SIGNERS.update({name: signer(name) for name in APPROVERS})
    corpus = Corpus(reviews=[])
    for number in range(runs):
        name, spec = f"bench-{number:05d}", run_spec(number)
        digest = spec_digest(spec)
        envelopes = [sign(NAMESPACE, name, digest, a, "approve", now) for a in APPROVERS[:2]]
        obj = {
            "apiVersion": "agents.proompteng.ai/v1alpha1",
            "kind": "AgentRun",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "finalizers": [view.USE_FINALIZER],
                "annotations": {records.ANNOTATION: records.dump_annotation(envelopes)},
            },
            "spec": spec,
        }
        review = dict(request_for_manifest(obj, username="requester", groups=["agents-users"]))
        corpus.reviews.append(review)
        corpus.requests.append(request_object(NAMESPACE, name, spec, now))
        for approver, envelope in zip(APPROVERS, envelopes, strict=False):
            corpus.decisions.append(
                decision_object(NAMESPACE, name, envelope, approver, "approve", 0, now)
            )
    corpus.run_names = runs
    number = 0
    namespaces = (NAMESPACE, *OTHER_NAMESPACES)
    while len(corpus.decisions) < decisions:
        namespace = namespaces[number % len(namespaces)]
        name = f"other-{number:05d}"
        digest = spec_digest(run_spec(100_000 + number))
        count = min(1 + number % 4, decisions - len(corpus.decisions))
        # approve, approve, reject, withdraw...: the shapes a queue accumulates
        kinds = ("approve", "approve", "reject", "withdraw")[:count]
        statements = []
        for position, kind in enumerate(kinds):
            approver = APPROVERS[position % len(APPROVERS)]
            envelope = sign(namespace, name, digest, approver, kind, now)
            statements.append(statement_of(envelope))
            corpus.decisions.append(
                decision_object(namespace, name, envelope, approver, kind, position, now)
            )
        if number % 4 == 1:  # two approvals: a run was created and its use recorded
            corpus.uses.append(use_object(namespace, name, statements[:2], now))
        number += 1
    corpus.run_names += number
    return corpus


def bundle_of(cluster_view: str) -> Bundle:
    text = compile_case_bundle(
        BASE, BundleSettings(environment=ENV, cluster_view=cluster_view, referenced_content="off")
    )
    return parse_bundle_text(text)


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Way:
    name: str
    bundle: Bundle
    view: view.ClusterView | None
    cpu_s: list[float] = field(default_factory=list)


def measure(
    corpus: Corpus,
    ways: Sequence[Way],
    rounds: int,
    now: datetime,
    clock: Callable[[], float],
    expect_cluster_records: Sequence[bool],
) -> None:
    """Every review judged every way, interleaved review by review (the order rotates); one
    warm-up round first (the verifier's caches, as a webhook that saw the decisions created)."""
    for round_number in range(rounds + 1):
        for index, review in enumerate(corpus.reviews):
            shift = (round_number + index) % len(ways)
            for position in range(len(ways)):
                way_index = (position + shift) % len(ways)
                way = ways[way_index]
                started = clock()
                decision = decide(review, way.bundle, now, way.view)
                spent = clock() - started
                if not decision.allowed:
                    raise SystemExit(
                        f"{way.name}: {review['name']} denied ({decision.reason}): "
                        f"{decision.message}"
                    )
                seen = any(v.cluster for r in decision.results for v in r.records)
                # the view's copy of a carried record is the same record: never counted twice;
                # a record seen only in the cluster would show as a cluster record
                if seen and not expect_cluster_records[way_index]:
                    raise SystemExit(f"{way.name}: cluster records where none were expected")
                if round_number:
                    way.cpu_s.append(spent)


def summary(ways: Sequence[Way]) -> dict[str, Any]:
    base = ways[0]
    empty = ways[1]
    out: dict[str, Any] = {}
    for way in ways:
        us = sorted(1e6 * s for s in way.cpu_s)
        out[way.name] = {
            "admissions": len(us),
            "p50_us": statistics.median(us),
            "p90_us": us[int(0.90 * (len(us) - 1))],
            "p99_us": us[int(0.99 * (len(us) - 1))],
            "mean_us": statistics.fmean(us),
            "ratio_p50_to_no_view": statistics.median(way.cpu_s) / statistics.median(base.cpu_s),
            "ratio_mean_to_no_view": statistics.fmean(way.cpu_s) / statistics.fmean(base.cpu_s),
            "ratio_p50_to_empty_view": statistics.median(way.cpu_s)
            / statistics.median(empty.cpu_s),
        }
    return out


def level_a(args: argparse.Namespace, corpus: Corpus, now: datetime) -> dict[str, Any]:
    started = time.perf_counter()
    full = view.StaticView.build(
        requests=corpus.requests, decisions=corpus.decisions, uses=corpus.uses
    )
    build_s = time.perf_counter() - started
    ways = [
        Way(WAYS[0], bundle_of("off"), None),
        Way(WAYS[1], bundle_of("required"), view.EMPTY),
        Way(WAYS[2], bundle_of("required"), full),
    ]
    log(f"level (a): {len(corpus.reviews)} reviews x {args.rounds} rounds x {len(ways)} ways")
    measure(corpus, ways, args.rounds, now, time.process_time, (False, False, False))
    return {"ways": summary(ways), "view_build_s": build_s}


# --- level (b): the real API server ------------------------------------------------------------


def create_objects(client_factory: Callable[[], Any], corpus: Corpus, workers: int = 8) -> float:
    """Create every object (decisions, uses, requests) with ``workers`` clients at once."""
    from approvalgate.kube.resources import APPROVAL_DECISIONS, APPROVAL_REQUESTS, APPROVAL_USES

    jobs = [
        *((APPROVAL_REQUESTS, o) for o in corpus.requests),
        *((APPROVAL_DECISIONS, o) for o in corpus.decisions),
        *((APPROVAL_USES, o) for o in corpus.uses),
    ]
    clients = [client_factory() for _ in range(workers)]

    def create(slot: int) -> None:
        client = clients[slot]
        for resource, obj in jobs[slot::workers]:
            meta = {
                k: v for k, v in obj["metadata"].items() if k in ("name", "namespace", "labels")
            }
            body = {**obj, "metadata": meta}
            client.request("creating", "POST", resource.path(meta["namespace"]), body=body)

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for done in pool.map(create, range(workers)):
            del done
    for client in clients:
        client.close()
    return time.perf_counter() - started


def level_b(args: argparse.Namespace, corpus: Corpus, now: datetime) -> dict[str, Any]:
    from approvalgate.kube.client import Client
    from approvalgate.kube.view import OBJECT_RESOURCES, WatchedView
    from tests.e2e.controlplane import ControlPlane, locate_binaries

    # the queue's CRDs and the agents platform's six the view also watches (it is not usable
    # until each is listed)
    platform = REPO / "third_party" / "upstream-agents" / "crds"
    crds = [
        *sorted((REPO / "charts" / "approvalgate" / "files" / "crds").glob("*.yaml")),
        *(platform / f"{r.group}_{r.plural}.yaml" for r in OBJECT_RESOURCES.values()),
    ]
    result: dict[str, Any] = {}
    started = time.perf_counter()
    plane = ControlPlane(locate_binaries())
    plane.start()
    result["control_plane_start_s"] = time.perf_counter() - started
    try:
        plane.apply_crds(crds)
        for namespace in (NAMESPACE, *OTHER_NAMESPACES):
            plane.kubectl("admin", "create", "namespace", namespace)
        admin = plane.kubeconfig("admin")
        log(f"level (b): creating {len(corpus.decisions)} decisions on the API server")
        result["create_s"] = create_objects(lambda: Client.connect(admin), corpus)
        client = Client.connect(admin)
        watched = WatchedView(client)
        started = time.perf_counter()
        cpu_before = time.process_time()
        watched.start()
        try:
            if not watched.wait_synced(300):
                raise SystemExit(f"the view did not sync: {watched.problem}")
            result["view_sync_s"] = time.perf_counter() - started
            result["view_sync_cpu_s"] = time.process_time() - cpu_before
            counts = {s.kind: s.objects for s in watched.status()}
            result["view_objects"] = counts
            if counts.get("ApprovalDecision") != len(corpus.decisions):
                raise SystemExit(f"the view holds {counts}, not every decision created")
            if watched.problem:
                raise SystemExit(f"the view is not usable: {watched.problem}")
            ways = [
                Way(WAYS[0], bundle_of("off"), None),
                Way(WAYS[1], bundle_of("required"), view.EMPTY),
                Way(WAYS[2], bundle_of("required"), watched),
            ]
            log(f"level (b): {len(corpus.reviews)} reviews x {args.rounds} rounds")
            process_before, thread_before = time.process_time(), time.thread_time()
            wall = time.perf_counter()
            measure(corpus, ways, args.rounds, now, time.thread_time, (False, False, False))
            informers = (time.process_time() - process_before) - (
                time.thread_time() - thread_before
            )
            result["measure_wall_s"] = time.perf_counter() - wall
            result["informer_cpu_s_while_measuring"] = informers
            result["ways"] = summary(ways)
        finally:
            watched.stop()
            client.close()
    finally:
        plane.stop()
    return result


# --- output ------------------------------------------------------------------------------------


def table(ways: Mapping[str, Mapping[str, float]]) -> list[str]:
    lines = [
        "| view | admissions | CPU p50 (µs) | p90 | p99 | mean | p50 / no view | "
        "mean / no view | p50 / empty view |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, w in ways.items():
        lines.append(
            f"| {name} | {w['admissions']:,} | {w['p50_us']:.0f} | {w['p90_us']:.0f} | "
            f"{w['p99_us']:.0f} | {w['mean_us']:.0f} | **{w['ratio_p50_to_no_view']:.2f}** | "
            f"{w['ratio_mean_to_no_view']:.2f} | {w['ratio_p50_to_empty_view']:.2f} |"
        )
    return lines


def markdown(result: Mapping[str, Any]) -> str:
    setup = result["setup"]
    lines = [
        "## Webhook CPU per admission with a cluster view (bench/view_admission.py)",
        "",
        f"{setup['reviews']} approved AgentRun CREATE reviews (two signed records each, the "
        "use finalizer) judged by `decide()` three ways, interleaved review by review, "
        f"{setup['rounds']} rounds after a warm-up: **no view** (`clusterView: off`, "
        "view=None: the baseline), **empty view** (`clusterView: required`, a synced view "
        f"holding nothing), and a view of **{setup['decisions']:,} ApprovalDecisions** "
        f"over {setup['run_names']:,} run names in {1 + len(OTHER_NAMESPACES)} namespaces "
        f"(one to four each: approve, reject, withdraw; signed), {setup['uses']:,} "
        f"ApprovalUses and {setup['requests']:,} ApprovalRequests. Figures are CPU time "
        "per admission (one decide() call); the ratios are to the baseline of the same run.",
        "",
        "### (a) In process: `approvals.view.StaticView`",
        "",
        "CPU: `time.process_time()` around each call (one thread). Building the view from "
        f"the object lists took {result['a']['view_build_s'] * 1000:.0f} ms (once).",
        "",
        *table(result["a"]["ways"]),
        "",
    ]
    b = result.get("b")
    if b:
        lines += [
            "### (b) Through `kube.view.WatchedView` fed by a real kube-apiserver",
            "",
            "The same objects created on a real kube-apiserver (127.0.0.1; the webhook not "
            f"registered) in {b['create_s']:.0f} s; the view's three informers listed and "
            f"indexed them in {b['view_sync_s']:.2f} s ({b['view_sync_cpu_s']:.2f} s CPU). "
            "CPU per admission: `time.thread_time()` of the admitting thread; the informer "
            "threads used "
            f"{b['informer_cpu_s_while_measuring'] * 1000:.0f} ms CPU over the "
            f"{b['measure_wall_s']:.2f} s of measuring (watches kept open, nothing changing).",
            "",
            *table(b["ways"]),
            "",
        ]
    elif result.get("b_skipped"):
        lines += [f"(b) through the watch-fed view: {result['b_skipped']}", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=10_000, help="decisions in the view")
    parser.add_argument("--runs", type=int, default=200, help="reviews judged per round")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (after warm-up)")
    parser.add_argument(
        "--apiserver", action="store_true", help="also level (b): a real kube-apiserver"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke: 50 decisions, 5 reviews, 2 rounds"
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--markdown", action="store_true", help="print markdown (the default)")
    out.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    # a TERM (timeout, make interrupted) still stops the control plane of --apiserver
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.quick:
        args.decisions, args.runs, args.rounds = QUICK["decisions"], QUICK["runs"], QUICK["rounds"]
    if args.decisions < 2 * args.runs:
        parser.error("--decisions must be at least twice --runs (two approvals per run)")
    now = records.now_utc()
    log(f"signing {args.decisions} decisions")
    corpus = build_corpus(args.decisions, args.runs, now)
    result: dict[str, Any] = {
        "setup": {
            "decisions": len(corpus.decisions),
            "uses": len(corpus.uses),
            "requests": len(corpus.requests),
            "reviews": len(corpus.reviews),
            "run_names": corpus.run_names,
            "rounds": args.rounds,
        },
        "a": level_a(args, corpus, now),
    }
    if args.apiserver:
        result["b"] = level_b(args, corpus, now)
    else:
        result["b_skipped"] = "not run (pass --apiserver)"
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
