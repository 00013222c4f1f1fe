"""Admission latency as the API server itself measures it, for N AgentRun creates.

Starts the real control plane (tools/testbin.py binaries) and the real webhook, registers
the chart's ValidatingWebhookConfiguration, creates N approved AgentRuns with kubectl (one
`kubectl create -f` of N documents, as the requester), and reads the API server's
`apiserver_admission_webhook_admission_duration_seconds` histogram (the series operators
watch) before and after. Baseline in the same run: the same N creates into a namespace the
webhook configuration does not select (excluded by name). Loopback only; bounded by N;
stops by itself.

    python bench/apiserver_admission.py [--count 1000] [--quick] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from approvalgate.approvals import keys, records, view
from approvalgate.approvals.digest import spec_digest
from tests.e2e.controlplane import ControlPlane, locate_binaries
from tests.e2e.gate import ENFORCED, ENV, NOT_ENFORCED, WEBHOOK_NAME, Gate
from tests.support.paths import UPSTREAM_AGENTS, crd_files

METRIC = "apiserver_admission_webhook_admission_duration_seconds"
QUEUE_CRDS = Path(__file__).resolve().parents[1] / "charts" / "approvalgate" / "files" / "crds"
UNSELECTED = NOT_ENFORCED  # excluded by name in the e2e copy of the example: not selected


def histogram(metrics: str) -> tuple[list[tuple[float, float]], float, float]:
    """(cumulative buckets, count, sum) of our webhook's CREATE series."""
    buckets: list[tuple[float, float]] = []
    count = total = 0.0
    for line in metrics.splitlines():
        if not line.startswith(METRIC) or f'name="{WEBHOOK_NAME}"' not in line:
            continue
        if 'operation="CREATE"' not in line:
            continue
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith(METRIC + "_bucket"):
            le = re.search(r'le="([^"]+)"', line)
            assert le is not None
            bound = float("inf") if le.group(1) == "+Inf" else float(le.group(1))
            buckets.append((bound, value))
        elif line.startswith(METRIC + "_count"):
            count += value
        elif line.startswith(METRIC + "_sum"):
            total += value
    merged: dict[float, float] = {}
    for bound, value in buckets:  # rejected="true"/"false" series add up
        merged[bound] = merged.get(bound, 0.0) + value
    return sorted(merged.items()), count, total


def quantile(buckets: list[tuple[float, float]], count: float, q: float) -> float:
    """Prometheus histogram_quantile: linear interpolation inside the bucket."""
    rank = q * count
    previous_bound, previous_count = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if bound == float("inf"):
                return previous_bound
            share = (rank - previous_count) / max(cumulative - previous_count, 1e-12)
            return previous_bound + (bound - previous_bound) * share
        previous_bound, previous_count = bound, cumulative
    return previous_bound


def delta(
    after: list[tuple[float, float]], before: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    base = dict(before)
    return [(bound, value - base.get(bound, 0.0)) for bound, value in after]


def manifests(gate: Gate, namespace: str, count: int, approve: bool) -> str:
    signers = {
        name: keys.signer_from_pem((gate.keys / f"{name}.key").read_bytes())
        for name in ("alice", "bob")
    }
    now = datetime.now(UTC)
    docs = []
    for i in range(count):
        spec = {
            "agentRef": {"name": "codex-agent"},
            "implementationSpecRef": {"name": "codex-impl-sample"},
            "runtime": {"type": "workflow"},
            "parameters": {"task": f"bench {i}"},
        }
        meta: dict[str, object] = {"name": f"bench-{i:05d}", "namespace": namespace}
        if approve:
            envelopes = [
                records.sign(
                    records.Claim(
                        subject=records.subject_name(namespace, f"bench-{i:05d}"),
                        digest=spec_digest(spec),
                        decision="approve",
                        approver=name,
                        reason="bench",
                        issued_at=now,
                        expires_at=now + timedelta(hours=1),
                        nonce=records.new_nonce(),
                        environment=ENV,
                    ),
                    signer,
                )
                for name, signer in signers.items()
            ]
            meta["annotations"] = {records.ANNOTATION: records.dump_annotation(envelopes)}
            # the example's staging requires the cluster view: a run judged by records holds
            # the approval-use finalizer until its use is recorded (approve adds it)
            meta["finalizers"] = [view.USE_FINALIZER]
        docs.append(
            json.dumps(
                {
                    "apiVersion": "agents.proompteng.ai/v1alpha1",
                    "kind": "AgentRun",
                    "metadata": meta,
                    "spec": spec,
                }
            )
        )
    return "\n---\n".join(docs)


def create_all(gate: Gate, text: str) -> float:
    started = time.perf_counter()
    done = gate.plane.kubectl(
        "requester", "create", "-f", "-", "-o", "name", input=text, timeout=1800
    )
    elapsed = time.perf_counter() - started
    assert done.stdout.count("agentrun") == text.count('"kind": "AgentRun"'), done.stderr
    return elapsed


def run(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="approvalgate-bench-") as tmp:
        started = time.perf_counter()
        plane = ControlPlane(locate_binaries())
        plane.start()
        result = {"control_plane_start_s": time.perf_counter() - started}
        gate: Gate | None = None
        try:
            # the queue's CRDs too: the webhook's cluster view (clusterView: required in the
            # example's staging) lists them before /readyz says ready
            plane.apply_crds(
                [*crd_files(UPSTREAM_AGENTS / "crds"), *sorted(QUEUE_CRDS.glob("*.yaml"))]
            )
            for namespace in (ENFORCED, UNSELECTED):
                plane.kubectl("admin", "create", "namespace", namespace)
            plane.grant(
                "bench-unselected",
                subjects=["requester"],
                namespace=UNSELECTED,
                rules=[
                    {
                        "apiGroups": ["agents.proompteng.ai"],
                        "resources": ["agentruns"],
                        "verbs": ["create", "get"],
                    }
                ],
            )
            gate = Gate(plane, Path(tmp))
            gate.prepare()
            gate.start()
            gate.register()
            result["baseline_create_s"] = create_all(
                gate, manifests(gate, UNSELECTED, count, approve=False)
            )
            before, before_count, before_sum = histogram(plane.metrics())
            result["gated_create_s"] = create_all(
                gate, manifests(gate, ENFORCED, count, approve=True)
            )
            after, after_count, after_sum = histogram(plane.metrics())
            buckets, n = delta(after, before), after_count - before_count
            result.update(
                {
                    "count": n,
                    "p50_ms": 1000 * quantile(buckets, n, 0.50),
                    "p99_ms": 1000 * quantile(buckets, n, 0.99),
                    "mean_ms": 1000 * (after_sum - before_sum) / max(n, 1),
                    "under_5ms": dict(buckets).get(0.005, 0.0) / max(n, 1),
                    "under_25ms": dict(buckets).get(0.025, 0.0) / max(n, 1),
                }
            )
            gate.unregister()
        finally:
            if gate is not None:  # also when it never became ready: no webhook left behind
                gate.stop()
            plane.stop()
    return result


def markdown(result: dict[str, float], count: int) -> str:
    ratio = result["gated_create_s"] / result["baseline_create_s"]
    return (
        "\n".join(
            [
                "The API server's buckets for this histogram are 5, 25, 100, 500 ms ...: quantiles "
                "are interpolated inside a bucket, the shares below are exact.",
                "",
                f"| measure ({count} AgentRun creates, one `kubectl create -f`) | value |",
                "|---|---|",
                f"| webhook admission p50 (API server histogram) | {result['p50_ms']:.2f} ms |",
                f"| webhook admission p99 (API server histogram) | {result['p99_ms']:.2f} ms |",
                f"| webhook admission mean (histogram sum / count) | {result['mean_ms']:.2f} ms |",
                f"| share of admissions under 5 ms (exact: a bucket bound) | "
                f"{100 * result['under_5ms']:.1f} % |",
                f"| share under 25 ms (exact) | {100 * result['under_25ms']:.1f} % |",
                f"| observations counted | {int(result['count'])} |",
                f"| creates through the webhook (approved runs) | "
                f"{result['gated_create_s']:.1f} s |",
                f"| same creates, namespace not selected (baseline) | "
                f"{result['baseline_create_s']:.1f} s |",
                f"| ratio gated / baseline | {ratio:.2f} |",
                f"| control plane warm start (etcd + kube-apiserver ready) | "
                f"{result['control_plane_start_s']:.1f} s |",
            ]
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="20 creates (smoke test)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)
    count = 20 if args.quick else args.count
    result = run(count)
    print(markdown(result, count) if args.markdown else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
