"""The approval queue: time from the last approval to the AgentRun existing, and controller memory.

For each queue size N (10, 100 and 1,000 by default) a fresh control plane is started (a real
etcd and kube-apiserver on 127.0.0.1 from tools/testbin.py binaries, the AgentRun CRD of the
agents platform and the chart's queue CRDs) with one real controller process
(`python -m approvalgate controller`, ``--resync 30``, otherwise its defaults) and
the decision corpus's bundle (two approvals out of platform-leads, carol and requester;
``clusterView: required``). Then:

1. N ApprovalRequests are created (8 clients at once) and the benchmark waits until the
   controller has written every one's status (phase Pending): N requests are pending;
2. ``--sample`` more requests, one at a time, spread over ``--spread`` seconds (36: more than
   the controller's resync, which looks at every request again; its default is 300 s, a
   safety net, and the benchmark passes 30 so that every size's timed approvals meet a
   resync of all N, the worst case): the request is created and the controller's
   Pending seen; alice's ApprovalDecision is created and the controller's count of it seen;
   then bob's, the **last approval**: the clock starts when its create returns and stops
   when the AgentRun of that name arrives on a watch of agentruns opened beforehand. While
   it is measured, N + 1 requests are pending.

The controller's memory (VmRSS and VmHWM from /proc/<pid>/status) is read once the N are
pending, and after the sample; its CPU time (/proc/<pid>/stat) over the sampling phase too.
By default the webhook is registered in front of the API server as the chart registers it
(``approvalgate webhook serve --cluster-view auto``, failurePolicy Fail, for agentruns and
the queue's kinds) and people act as themselves: requester creates the requests, alice and
bob their decisions (the webhook verifies each and that its creator is that approver), and
the controller's AgentRun is admitted on its records by the webhook's watch-fed view
(courier rule). ``--no-webhook``: the controller and the API server alone, as admin.
Loopback only; bounded (each wait has a deadline; the default run takes about three
minutes); every process started is stopped, also on SIGTERM.

    .venv/bin/python bench/queue_latency.py                    # 10, 100 and 1,000
    .venv/bin/python bench/queue_latency.py --quick            # smoke: 5 pending, 2 approvals
    .venv/bin/python bench/queue_latency.py --sizes 10,100 --sample 10 --json

Prints markdown (the default) or ``--json``; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from approvalgate.approvals import records, view  # noqa: E402
from approvalgate.approvals.digest import spec_digest  # noqa: E402
from approvalgate.approvals.policy import BundleSettings  # noqa: E402
from approvalgate.kube.client import Client  # noqa: E402
from approvalgate.kube.resources import (  # noqa: E402
    AGENT_RUNS,
    APPROVAL_DECISIONS,
    APPROVAL_REQUESTS,
)
from approvalgate.kube.view import OBJECT_RESOURCES  # noqa: E402
from tests.e2e.controlplane import ControlPlane, locate_binaries  # noqa: E402
from tests.support import bundle_signing  # noqa: E402
from tests.support.corpus import BASE, compile_case_bundle, make_record  # noqa: E402
from tests.support.paths import UPSTREAM_AGENTS  # noqa: E402

ENV = "prod"
NS = "agents"  # the corpus policy's namespace
SIZES = (10, 100, 1000)
SAMPLE = 20
SPREAD_S = 36.0
RESYNC_S = 30  # the controller's default is 300 s; a resync must fall in the timed window
QUICK = {"sizes": (5,), "sample": 2}
WAIT_S = 120.0  # the longest any single step may take before the run is abandoned
CREATORS = 8
WEBHOOK_NAME = "agentruns.approvalgate.proompteng.ai"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class BenchError(Exception):
    """A step did not happen in time; the message says which, with the controller's log."""


# --- objects ----------------------------------------------------------------------------------


def run_spec(name: str) -> dict[str, Any]:
    return {
        "agentRef": {"name": "codex-agent"},
        "implementationSpecRef": {"name": "codex-impl-sample"},
        "runtime": {"type": "workflow", "config": {"ttlSecondsAfterFinished": 600}},
        "workload": {"image": "ghcr.io/proompteng/codex-runner:1.4.2"},
        "parameters": {"repository": "proompteng/lab", "task": f"queue bench {name}"},
    }


def request_body(name: str) -> dict[str, Any]:
    spec = run_spec(name)
    return {
        "apiVersion": view.API_VERSION,
        "kind": "ApprovalRequest",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "requester": "requester",
            "environment": ENV,
            "reason": "queue latency benchmark",
            "specDigest": spec_digest(spec),
            "cancelled": False,
            "run": {
                "apiVersion": "agents.proompteng.ai/v1alpha1",
                "kind": "AgentRun",
                "metadata": {"name": name, "labels": {"team": "bench"}},
                "spec": spec,
            },
        },
    }


def decision_body(name: str, approver: str) -> dict[str, Any]:
    run = {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "AgentRun",
        "metadata": {"name": name, "namespace": NS},
        "spec": run_spec(name),
    }
    envelope = make_record({"key": approver}, run, BASE, records.now_utc(), ENV)
    return {
        "apiVersion": view.API_VERSION,
        "kind": "ApprovalDecision",
        "metadata": {"generateName": f"{name}-", "namespace": NS},
        "spec": {
            "requestName": name,
            "decision": "approve",
            "approver": approver,
            "record": envelope,
        },
    }


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of one process, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


class Controller:
    """One `approvalgate controller` process against the plane, as admin."""

    def __init__(self, plane: ControlPlane, bundle: Path, work: Path) -> None:
        self.health_port, self.metrics_port = free_port(), free_port()
        self.log_path = work / "controller.log"
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "approvalgate",
                    "controller",
                    "--bundle",
                    str(bundle),
                    *bundle_signing.cli_args(work),
                    "--kubeconfig",
                    str(plane.kubeconfig("admin")),
                    "--lease-namespace",
                    NS,
                    "--identity",
                    "bench",
                    "--host",
                    "127.0.0.1",
                    "--health-port",
                    str(self.health_port),
                    "--metrics-port",
                    str(self.metrics_port),
                    "--resync",
                    str(RESYNC_S),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=work,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def get(self, port: int, path: str) -> tuple[int, str]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def leading(self) -> bool:
        if self.process.poll() is not None:
            raise BenchError(f"the controller exited {self.process.returncode}\n{self.tail()}")
        status, text = self.get(self.health_port, "/readyz")
        return status == 200 and "leader" in text

    def memory(self) -> dict[str, int]:
        return memory_kib(self.process.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "--- controller log (last lines) ---\n" + "\n".join(text)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class Webhook:
    """`approvalgate webhook serve` with its cluster view (as admin), registered on the plane
    for agentruns and the queue's kinds as the chart registers it (failurePolicy Fail)."""

    def __init__(self, plane: ControlPlane, bundle: Path, work: Path) -> None:
        from approvalgate.webhook.devcert import CertificateAuthority

        self.plane = plane
        self.port = free_port()
        self.ca = CertificateAuthority.generate("approvalgate queue bench CA")
        issued = self.ca.issue(["127.0.0.1", "localhost"])
        (work / "tls.crt").write_bytes(issued.cert_pem)
        (work / "tls.key").write_bytes(issued.key_pem)
        (work / "ca.crt").write_bytes(self.ca.cert_pem)
        self.ca_file = work / "ca.crt"
        self.log_path = work / "webhook.log"
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "approvalgate",
                    "webhook",
                    "serve",
                    "--bundle",
                    str(bundle),
                    *bundle_signing.cli_args(work),
                    "--tls-cert",
                    str(work / "tls.crt"),
                    "--tls-key",
                    str(work / "tls.key"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--metrics-port",
                    "0",
                    "--cluster-view",
                    "auto",
                    "--kubeconfig",
                    str(plane.kubeconfig("admin")),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=work,
            )

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise BenchError(f"the webhook exited {self.process.returncode}\n{self.tail()}")
        context = ssl.create_default_context(cafile=str(self.ca_file))
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
        try:
            with opener.open(f"https://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                return int(response.status) == 200
        except OSError:
            return False

    def register(self) -> None:
        hook: dict[str, Any] = {
            "admissionReviewVersions": ["v1"],
            "clientConfig": {
                "url": f"https://127.0.0.1:{self.port}/validate",
                "caBundle": self.ca.ca_bundle,
            },
            "failurePolicy": "Fail",
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "timeoutSeconds": 10,
            "namespaceSelector": {},
        }
        rules = {
            WEBHOOK_NAME: ("agents.proompteng.ai", ["CREATE", "UPDATE"], ["agentruns"]),
            "gates.approvalgate.proompteng.ai": (
                view.GROUP,
                ["CREATE", "UPDATE", "DELETE"],
                [view.REQUESTS, view.DECISIONS, view.USES],
            ),
        }
        config = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "approvalgate-queue-bench"},
            "webhooks": [
                {
                    **hook,
                    "name": name,
                    "rules": [
                        {
                            "apiGroups": [group],
                            "apiVersions": ["*"],
                            "operations": operations,
                            "resources": resources,
                            "scope": "Namespaced",
                        }
                    ],
                }
                for name, (group, operations, resources) in rules.items()
            ],
        }
        self.plane.kubectl("admin", "apply", "-f", "-", input=json.dumps(config))
        # the API server reads webhook configurations asynchronously: wait until a run with
        # no records is denied by ours
        probe = {
            "apiVersion": "agents.proompteng.ai/v1alpha1",
            "kind": "AgentRun",
            "metadata": {"name": "registration-probe", "namespace": NS},
            "spec": run_spec("probe"),
        }
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            done = self.plane.kubectl(
                "requester",
                "create",
                "--dry-run=server",
                "-f",
                "-",
                input=json.dumps(probe),
                check=False,
            )
            if done.returncode != 0 and WEBHOOK_NAME in done.stderr:
                return
            time.sleep(0.2)
        raise BenchError(f"the webhook configuration never took effect\n{self.tail()}")

    def memory(self) -> dict[str, int]:
        return memory_kib(self.process.pid)

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "--- webhook log (last lines) ---\n" + "\n".join(text)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def grant_people(plane: ControlPlane) -> None:
    """What the chart's requester and approver ClusterRoles give, in NS: requester creates
    requests, alice and bob create decisions (the webhook checks they are those approvers)."""
    read = ["get", "list", "watch"]
    plane.grant(
        "bench-queue-requester",
        subjects=["requester"],
        namespace=NS,
        rules=[
            {"apiGroups": [view.GROUP], "resources": [view.REQUESTS], "verbs": [*read, "create"]}
        ],
    )
    plane.grant(
        "bench-queue-approvers",
        subjects=["alice", "bob"],
        namespace=NS,
        rules=[
            {"apiGroups": [view.GROUP], "resources": [view.DECISIONS], "verbs": [*read, "create"]},
            {"apiGroups": [view.GROUP], "resources": [view.REQUESTS], "verbs": read},
        ],
    )


class RunWatch:
    """A watch of agentruns in NS: when each run was first seen (perf_counter)."""

    def __init__(self, plane: ControlPlane, resource_version: str) -> None:
        self.seen: dict[str, float] = {}
        self.error = ""
        self.condition = threading.Condition()
        context = ssl.create_default_context(cafile=str(plane.ca_file))
        host, port = plane.server.removeprefix("https://").split(":")
        self.connection = http.client.HTTPSConnection(host, int(port), context=context)
        path = (
            f"{AGENT_RUNS.path(NS)}?watch=true&allowWatchBookmarks=false"
            f"&resourceVersion={resource_version}&timeoutSeconds=3600"
        )
        self.connection.request(
            "GET", path, headers={"Authorization": f"Bearer {plane.tokens['admin']}"}
        )
        self.response = self.connection.getresponse()
        self.socket = self.connection.sock
        if self.response.status != 200:
            raise BenchError(f"watching agentruns: HTTP {self.response.status}")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.response:
                at = time.perf_counter()
                event = json.loads(line)
                name = event.get("object", {}).get("metadata", {}).get("name", "")
                if event.get("type") == "ADDED" and name:
                    with self.condition:
                        self.seen.setdefault(name, at)
                        self.condition.notify_all()
        except (OSError, ValueError, http.client.HTTPException) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        with self.condition:
            self.error = self.error or "the watch ended"
            self.condition.notify_all()

    def wait_for(self, name: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self.condition:
            while name not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0 or self.error:
                    raise BenchError(f"AgentRun {NS}/{name} not seen ({self.error or 'timeout'})")
                self.condition.wait(left)
            return self.seen[name]

    def close(self) -> None:
        # wake the reader first: closing the response under a blocked read would wait on
        # its buffer's lock for ever
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        self.thread.join(10)
        self.connection.close()


def eventually(what: str, condition: Callable[[], Any], process: Controller | Webhook) -> Any:
    deadline = time.monotonic() + WAIT_S
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"not within {WAIT_S:.0f} s: {what}\n{process.tail()}")
        time.sleep(0.02)


# --- one size ---------------------------------------------------------------------------------


def phases(client: Client) -> dict[str, int]:
    items = client.request("listing requests", "GET", APPROVAL_REQUESTS.path(NS))["items"]
    counts: dict[str, int] = {}
    for item in items:
        phase = str((item.get("status") or {}).get("phase") or "(none)")
        counts[phase] = counts.get(phase, 0) + 1
    return counts


def status_of(client: Client, name: str) -> dict[str, Any]:
    found = client.request("get", "GET", APPROVAL_REQUESTS.path(NS, name), missing_ok=True)
    return dict((found or {}).get("status") or {})


def create_pending(plane: ControlPlane, count: int, user: str) -> float:
    clients = [Client.connect(plane.kubeconfig(user)) for _ in range(CREATORS)]

    def create(slot: int) -> None:
        for number in range(slot, count, CREATORS):
            body = request_body(f"pending-{number:05d}")
            clients[slot].request(
                "creating a request", "POST", APPROVAL_REQUESTS.path(NS), body=body
            )

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(CREATORS) as pool:
            list(pool.map(create, range(CREATORS)))
    finally:
        for client in clients:
            client.close()
    return time.perf_counter() - started


def one_size(
    size: int, sample: int, spread: float, bundle: Path, work: Path, webhook: bool
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "pending": size,
        "sample": sample,
        "spread_s": spread,
        "webhook": webhook,
    }
    plane = ControlPlane(locate_binaries())
    plane.start()
    controller: Controller | None = None
    gate: Webhook | None = None
    clients: dict[str, Client] = {}
    try:
        crds = UPSTREAM_AGENTS / "crds" / "agents.proompteng.ai_agentruns.yaml"
        queue_crds = sorted((REPO / "charts" / "approvalgate" / "files" / "crds").glob("*.yaml"))
        # the platform's kinds the webhook's view also watches (not ready until each is listed)
        platform_crds = [
            UPSTREAM_AGENTS / "crds" / f"{r.group}_{r.plural}.yaml"
            for r in OBJECT_RESOURCES.values()
        ]
        plane.apply_crds([crds, *queue_crds, *platform_crds])
        plane.kubectl("admin", "create", "namespace", NS)
        grant_people(plane)
        if webhook:  # people act as themselves: the webhook checks who creates what
            gate = Webhook(plane, bundle, work)
            eventually("the webhook is ready (its view synced)", gate.ready, gate)
            gate.register()
        for user in ("admin", "requester", "alice", "bob"):
            clients[user] = Client.connect(plane.kubeconfig(user if webhook else "admin"))
        client = clients["admin"]
        controller = Controller(plane, bundle, work)
        started = time.perf_counter()
        eventually("the controller leads", controller.leading, controller)
        result["controller_ready_s"] = time.perf_counter() - started
        result["memory_idle_kib"] = controller.memory()
        log(f"{size} pending: creating the requests")
        result["create_pending_s"] = create_pending(
            plane, size, "requester" if webhook else "admin"
        )
        started = time.perf_counter()
        eventually(
            f"{size} requests Pending",
            lambda: phases(client).get("Pending", 0) == size,
            controller,
        )
        result["all_pending_s"] = time.perf_counter() - started
        result["memory_pending_kib"] = controller.memory()
        if gate is not None:
            result["webhook_memory_pending_kib"] = gate.memory()
        runs = client.request("listing runs", "GET", AGENT_RUNS.path(NS))
        watch = RunWatch(plane, runs["metadata"]["resourceVersion"])
        latencies = []
        pacing = random.Random(size)  # the same offsets every run
        interval = spread / sample
        sampling, cpu_before = time.monotonic(), controller.cpu()
        try:
            for number in range(sample):
                # spread over more than a resync period: the approvals meet the controller
                # busy (a resync of N requests) as often as it is
                due = sampling + interval * (number + pacing.uniform(0.0, 0.5))
                time.sleep(max(0.0, due - time.monotonic()))
                name = f"sample-{number:03d}"
                clients["requester"].request(
                    "creating a request",
                    "POST",
                    APPROVAL_REQUESTS.path(NS),
                    body=request_body(name),
                )
                eventually(
                    f"{name} Pending",
                    lambda n=name: status_of(client, n).get("phase") == "Pending",
                    controller,
                )
                clients["alice"].request(
                    "approving",
                    "POST",
                    APPROVAL_DECISIONS.path(NS),
                    body=decision_body(name, "alice"),
                )
                eventually(
                    f"{name} approved by alice",
                    lambda n=name: "alice" in (status_of(client, n).get("approvedBy") or []),
                    controller,
                )
                body = decision_body(name, "bob")  # signed before the clock starts
                clients["bob"].request("approving", "POST", APPROVAL_DECISIONS.path(NS), body=body)
                approved = time.perf_counter()
                try:
                    seen = watch.wait_for(name, WAIT_S)
                except BenchError as error:
                    logs = controller.tail() + ("\n" + gate.tail() if gate else "")
                    raise BenchError(f"{error}\n{logs}") from error
                latencies.append(seen - approved)
                log(f"{size} pending: {name} {1000 * (seen - approved):.1f} ms")
        finally:
            watch.close()
        result["latency_s"] = latencies
        result["sampling_s"] = time.monotonic() - sampling
        result["controller_cpu_s"] = controller.cpu() - cpu_before
        result["memory_after_kib"] = controller.memory()
        if gate is not None:
            result["webhook_memory_after_kib"] = gate.memory()
        result["phases_after"] = phases(client)
    finally:
        for connected in clients.values():
            connected.close()
        if controller is not None:
            controller.stop()
        if gate is not None:
            gate.stop()
        plane.stop()
    return result


# --- output -----------------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest rank (a p99 of 20 samples is their maximum)."""
    ordered = sorted(values)
    rank = max(1, -(-round(q * 1000) * len(ordered) // 1000))
    return ordered[min(rank, len(ordered)) - 1]


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    ms = [1000 * s for s in result["latency_s"]]
    return {
        **result,
        "p50_ms": statistics.median(ms),
        "p99_ms": quantile(ms, 0.99),
        "min_ms": min(ms),
        "max_ms": max(ms),
    }


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


def markdown(results: Sequence[dict[str, Any]]) -> str:
    mib = 1024
    lines = [
        "## The approval queue: last approval to run, controller memory (bench/queue_latency.py)",
        "",
        "A real kube-apiserver and etcd on 127.0.0.1 (a fresh control plane per size) and one "
        f"`approvalgate controller` process (`--resync {RESYNC_S}`: its default is 300 s; "
        "otherwise its defaults). N "
        "ApprovalRequests are created and left pending (the controller has written each one's "
        "status); then, one request at a time, a new request gets alice's approval and then "
        "bob's, the last: the time is from bob's ApprovalDecision create returning to the "
        "AgentRun arriving on a watch of agentruns; the approvals of a size are spread over "
        f"{results[0]['spread_s']:.0f} s, more than that resync (when it looks at every "
        "request again), so the timed approvals meet one. "
        + (
            "**The webhook is registered** (`webhook serve --cluster-view auto`, failurePolicy "
            "Fail, agentruns and the queue's kinds): requester creates the requests, alice and "
            "bob their decisions (each verified, and its creator checked), and the "
            "controller's run is admitted on its records through the webhook's watch-fed view. "
            if results[0].get("webhook")
            else "**The webhook is not registered** (`--no-webhook`: the controller and the "
            "API server alone). "
        )
        + "Absolute milliseconds on "
        f"this machine ({machine()}); p99 is the nearest rank, so with "
        f"{results[0]['sample']} approvals it is the slowest.",
        "",
        "| pending requests | approvals timed | last approval to run p50 | p99 | min | "
        "controller RSS, N pending | RSS after | peak (VmHWM) | controller CPU while timing | "
        "webhook RSS, N pending | N created in | controller had all Pending after |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['pending']:,} | {len(r['latency_s'])} | {r['p50_ms']:.0f} ms | "
            f"{r['p99_ms']:.0f} ms | {r['min_ms']:.0f} ms | "
            f"{r['memory_pending_kib']['VmRSS'] / mib:.0f} MiB | "
            f"{r['memory_after_kib']['VmRSS'] / mib:.0f} MiB | "
            f"{r['memory_after_kib']['VmHWM'] / mib:.0f} MiB | "
            f"{100 * r['controller_cpu_s'] / max(r['sampling_s'], 1e-9):.0f} % of a core | "
            + (
                f"{r['webhook_memory_pending_kib']['VmRSS'] / mib:.0f} MiB | "
                if r.get("webhook")
                else "(not registered) | "
            )
            + f"{r['create_pending_s']:.1f} s | "
            f"{r['all_pending_s']:.1f} s |"
        )
    idle = results[0]["memory_idle_kib"]["VmRSS"] / mib
    lines += [
        "",
        f"The controller's RSS once leading, before any request: {idle:.0f} MiB. Memory is "
        "the controller process's own (VmRSS now, VmHWM its peak) from /proc/<pid>/status; "
        "its CPU (user + system, /proc/<pid>/stat) is over the timed approvals, as a share of "
        "their wall time.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, SIZES)),
        help="pending queue sizes, comma-separated (default: 10,100,1000)",
    )
    parser.add_argument("--sample", type=int, default=SAMPLE, help="approvals timed per size")
    parser.add_argument(
        "--spread",
        type=float,
        default=SPREAD_S,
        metavar="SECONDS",
        help=f"spread each size's approvals over this long (default {SPREAD_S:.0f}: more "
        f"than the --resync {RESYNC_S} the controller is given)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke: 5 pending, 2 approvals")
    parser.add_argument(
        "--webhook",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="register the webhook (with its cluster view) in front of the API server, people "
        "acting as themselves (default); --no-webhook: the controller and API server alone",
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--markdown", action="store_true", help="print markdown (the default)")
    out.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    try:
        sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    except ValueError:
        parser.error(f"--sizes: not a comma-separated list of numbers: {args.sizes!r}")
    sample, spread = args.sample, args.spread
    if args.quick:
        sizes, sample, spread = QUICK["sizes"], QUICK["sample"], 0.0
    if not sizes or min(sizes) < 0 or sample < 1:
        parser.error("--sizes must be counts >= 0 and --sample at least 1")
    # a TERM (timeout, Ctrl-C from make) still stops the control plane and the controller
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = []
    with tempfile.TemporaryDirectory(prefix="approvalgate-queue-bench-") as tmp:
        bundle = Path(tmp) / "bundle.json"
        bundle.write_text(
            compile_case_bundle(BASE, BundleSettings(environment=ENV, referenced_content="off"))
        )
        bundle_signing.sign_file(bundle)  # signed and pinned, as the chart deploys it
        for size in sizes:
            work = Path(tmp) / f"size-{size}"
            work.mkdir()
            try:
                results.append(
                    summarise(one_size(size, sample, spread, bundle, work, args.webhook))
                )
            except BenchError as error:
                print(f"queue_latency: {size} pending: {error}", file=sys.stderr)
                return 1
    print(json.dumps(results, indent=2) if args.json else markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
