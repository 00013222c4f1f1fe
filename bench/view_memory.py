"""Memory of the webhook's cluster view: the informers' stores plus the index, per process.

Builds ApprovalDecisions, ApprovalRequests and ApprovalUses shaped as the API server sends
them (metadata with a managedFields entry, an ~850-byte DSSE envelope per decision, a
request embedding an AgentRun spec), feeds them through the same Store and ViewIndex the
informers use, and reports what tracemalloc sees retained, and the time of one lookup of each
kind. Objects are decoded JSON, as the watch delivers them (each object its own strings).

    .venv/bin/python bench/view_memory.py [--decisions 10000] [--requests 1000] [--uses 1000]
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import secrets
import time
import tracemalloc
from typing import Any

from approvalgate.kube.store import Store
from approvalgate.kube.view import ViewIndex


def _meta(namespace: str, name: str, number: int) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "uid": f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-"
        f"{secrets.token_hex(2)}-{secrets.token_hex(6)}",
        "resourceVersion": str(100000 + number),
        "generation": 1,
        "creationTimestamp": f"2026-12-01T{number // 3600 % 24:02}:{number // 60 % 60:02}:"
        f"{number % 60:02}Z",
        "managedFields": [
            {
                "manager": "approvalgate",
                "operation": "Update",
                "apiVersion": "gates.proompteng.ai/v1alpha1",
                "time": "2026-12-01T00:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {".": {}, "f:record": {}, "f:requestName": {}}},
            }
        ],
    }


def decision(number: int, runs: int) -> dict[str, Any]:
    namespace, run = f"team-{number % 20}", f"run-{number % runs:05}"
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": f"agents.proompteng.ai/AgentRun/{namespace}/{run}"}],
        "predicateType": "https://approvals.proompteng.ai/approval/v2",
        "predicate": {
            "approver": "alice",
            "decision": "approve",
            "environment": "prod",
            "issuedAt": "2026-12-01T00:00:00Z",
            "expiresAt": "2026-12-02T00:00:00Z",
            "nonce": secrets.token_hex(16),
            "specDigest": secrets.token_hex(32),
            "reason": "reviewed",
        },
    }
    envelope = {
        "payload": base64.b64encode(json.dumps(statement).encode()).decode(),
        "payloadType": "application/vnd.in-toto+json",
        "signatures": [
            {
                "keyid": secrets.token_hex(8),
                "sig": base64.b64encode(secrets.token_bytes(64)).decode(),
            }
        ],
    }
    obj = {
        "apiVersion": "gates.proompteng.ai/v1alpha1",
        "kind": "ApprovalDecision",
        "metadata": _meta(namespace, f"{run}-{secrets.token_hex(3)}", number),
        "spec": {
            "requestName": run,
            "decision": "approve",
            "approver": "alice",
            "record": envelope,
        },
    }
    return json.loads(json.dumps(obj))  # as decoded from the wire: nothing shared


def request(number: int) -> dict[str, Any]:
    namespace, run = f"team-{number % 20}", f"run-{number:05}"
    obj = {
        "apiVersion": "gates.proompteng.ai/v1alpha1",
        "kind": "ApprovalRequest",
        "metadata": _meta(namespace, run, number),
        "spec": {
            "requester": "requester@example.com",
            "environment": "prod",
            "reason": "nightly refactor",
            "specDigest": secrets.token_hex(32),
            "run": {
                "apiVersion": "agents.proompteng.ai/v1alpha1",
                "kind": "AgentRun",
                "metadata": {"name": run, "labels": {"team": namespace}},
                "spec": {
                    "agentRef": {"name": "codex-agent"},
                    "runtime": {"type": "workflow", "config": {"ttlSecondsAfterFinished": 600}},
                    "workload": {"image": "ghcr.io/proompteng/codex-runner:1.4.2"},
                    "parameters": {"repository": "proompteng/lab", "task": "x" * 400},
                },
            },
        },
        "status": {"phase": "Pending", "required": 2, "approvedBy": ["alice"], "decisions": 1},
    }
    return json.loads(json.dumps(obj))


def use(number: int) -> dict[str, Any]:
    uid = secrets.token_hex(16)
    obj = {
        "apiVersion": "gates.proompteng.ai/v1alpha1",
        "kind": "ApprovalUse",
        "metadata": _meta(f"team-{number % 20}", uid, number),
        "spec": {
            "run": {"name": f"run-{number:05}", "uid": uid},
            "environment": "prod",
            "specDigest": secrets.token_hex(32),
            "statements": [secrets.token_hex(32), secrets.token_hex(32)],
            "expiresAt": "2026-12-02T00:00:00Z",
        },
    }
    return json.loads(json.dumps(obj))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--uses", type=int, default=1_000)
    args = parser.parse_args()
    made = {
        "decisions": [decision(i, max(1, args.decisions // 5)) for i in range(args.decisions)],
        "requests": [request(i) for i in range(args.requests)],
        "uses": [use(i) for i in range(args.uses)],
    }
    wire = {k: sum(len(json.dumps(o)) for o in v) for k, v in made.items()}
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    index = ViewIndex()
    stores = {k: Store() for k in made}
    feeds = {
        "decisions": index.decision_changed,
        "requests": index.request_changed,
        "uses": index.use_changed,
    }
    # the objects are freshly decoded ones: count them as retained by the view
    objects = {k: [json.loads(json.dumps(o)) for o in v] for k, v in made.items()}
    made.clear()
    for kind, items in objects.items():
        for change in stores[kind].replace(items):
            feeds[kind](change)
    objects.clear()
    gc.collect()
    after = tracemalloc.take_snapshot()
    retained = sum(s.size_diff for s in after.compare_to(before, "filename"))
    tracemalloc.stop()
    counts = index.counts()
    lookups = 100_000
    started = time.perf_counter()
    for i in range(lookups):
        index.records_for(f"team-{i % 20}", f"run-{i % 2000:05}")
        index.uses_of("absent")
        index.use_of_run("team-1", "absent")
        index.request("team-1", f"run-{i % 1000:05}")
    per_admission = (time.perf_counter() - started) / lookups
    print(f"objects: {counts}")
    print(f"JSON size on the wire: {sum(wire.values()) / 2**20:.1f} MiB {wire}")
    print(f"retained by stores + index: {retained / 2**20:.1f} MiB")
    print(f"four lookups (one of each): {per_admission * 1e6:.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
