#!/usr/bin/env python3
"""`make bench-peers`: approvalgate against Kyverno and Gatekeeper on one real API server.

One control plane (tests/e2e/controlplane.py); every arm (bench/peers/arms.py) judges
AgentRun creates in its own namespace through exactly one ValidatingWebhookConfiguration
that this driver registers; creates go to the API server over HTTPS as the requester (one
kept-alive connection per client thread), after an unmeasured warm-up (--warmup creates
per arm) arms interleaved in rounds (the order rotated each round), sequentially (1
client) and concurrently (--clients threads), valid and invalid runs mixed; every
decision is compared to what it should be. Per arm and phase:
creates/s as the client sees them, the API server's own
apiserver_admission_webhook_admission_duration_seconds for that webhook (mean; the shares
under 5 and 25 ms),
that only that webhook judged the arm's namespace (the histogram's counts: the run fails
otherwise), the webhook's CPU per 1,000 admissions and its peak memory. Then the CLI part
(bench/peers/cli.py). Loopback only; bounded by --count and --rounds; stops everything.

    python bench/peers/run.py [--count 200] [--rounds 5] [--arms none,approvalgate,...]
                              [--quick] [--write docs/benchmarks.md] [--json FILE]

Arms: none, constant, approvalgate (bench/peers/local.py), kyverno-presence,
kyverno-manifests (bench/peers/kyverno.py), gatekeeper-presence (bench/peers/gatekeeper.py).
The peers' binaries come from `make peers` (tools/testbin.py peers, ~15 minutes cold).
Exit codes: 0 done, 1 the run failed (the message says why), 2 usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import importlib
import importlib.util
import json
import math
import os
import platform
import re
import shlex
import ssl
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.peers.arms import GROUP, PLURAL, VERSION, Arm, Hook  # noqa: E402
from bench.webhook_bench import cpu_seconds  # noqa: E402  (utime + stime from /proc)
from tests.e2e.controlplane import ControlPlane, ControlPlaneError, locate_binaries  # noqa: E402

METRIC = "apiserver_admission_webhook_admission_duration_seconds"
START, END = "<!-- peers:start -->", "<!-- peers:end -->"
HOOK_SUFFIX = "peers.bench.approvalgate.dev"
TESTBIN = ROOT / "tools" / "testbin.py"
BENCH_RUN = ROOT / "bench" / "run.py"
REGISTER_SECONDS = 60
REQUEST_TIMEOUT = 60  # seconds for one create (the webhooks' own timeout is 10 s)
KEPT_MESSAGES = 3

# key -> (module, class, the tools/testbin.py peer it needs)
ARMS: dict[str, tuple[str, str, str | None]] = {
    "none": ("bench.peers.local", "NoneArm", None),
    "constant": ("bench.peers.local", "ConstantArm", None),
    "approvalgate": ("bench.peers.local", "ApprovalgateArm", None),
    "kyverno-presence": ("bench.peers.kyverno", "KyvernoPresenceArm", "kyverno"),
    "kyverno-manifests": ("bench.peers.kyverno", "KyvernoManifestsArm", "kyverno"),
    "gatekeeper-presence": ("bench.peers.gatekeeper", "GatekeeperPresenceArm", "gatekeeper"),
}
# the targets (docs: issue 18, "Done when" 2 and 3)
GATEKEEPER_RATIO, CONSTANT_RATIO, CLI_RATIO, CPU_RATIO = 0.9, 1.2, 0.5, 2.5


class BenchError(Exception):
    """The run cannot go on or its measurement is not what it claims; the message says why."""


# --- arms ---------------------------------------------------------------------------------


def _module_file(key: str) -> Path:
    return ROOT / (ARMS[key][0].replace(".", "/") + ".py")


def load_arm(key: str) -> Arm:
    module_name, class_name, _ = ARMS[key]
    path = _module_file(key)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise BenchError(
            f"peer arm module missing: {path.relative_to(ROOT)} (arm {key}); "
            f"the arms there: --arms {','.join(k for k in ARMS if _module_file(k).exists())}"
        ) from error
    factory = getattr(module, class_name, None)
    if factory is None:
        raise BenchError(f"peer arm module missing: {path.relative_to(ROOT)} has no {class_name}")
    arm: Arm = factory()
    if arm.key != key:
        raise BenchError(f"{path.relative_to(ROOT)}: {class_name}.key is {arm.key!r}, not {key!r}")
    return arm


def _testbin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("approvalgate_testbin", TESTBIN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def missing_binaries(key: str) -> str | None:
    """Why arm ``key`` cannot run here (its peer's binaries are not built), or None."""
    tool_name = ARMS[key][2]
    if tool_name is None:
        return None
    testbin = _testbin()
    tool = testbin.PEERS[tool_name]
    if testbin.is_built(tool):
        return None
    return f"{tool_name} not built ({testbin.bin_dir(tool)}): run `make peers`"


def denies(arm: Arm) -> bool:
    """Whether the arm denies anything (the baselines none and constant admit every run)."""
    return bool(getattr(arm, "denies", True))


def hook_name(key: str) -> str:
    return f"{key}.{HOOK_SUFFIX}"


def webhook_configuration(arm: Arm, hook: Hook) -> dict[str, Any]:
    """The one ValidatingWebhookConfiguration that judges ``arm``'s namespace."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": f"peer-{arm.key}"},
        "webhooks": [
            {
                "name": hook_name(arm.key),
                "admissionReviewVersions": ["v1"],
                "clientConfig": {"url": hook.url, "caBundle": hook.ca_bundle},
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "operations": ["CREATE"],
                        "resources": [PLURAL],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": arm.namespace}
                },
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "sideEffects": "None",
                "timeoutSeconds": 10,
            }
        ],
    }


# --- the API server's histogram -------------------------------------------------------------


@dataclass
class Series:
    """One webhook's CREATE histogram: cumulative buckets, count, sum (seconds)."""

    buckets: dict[float, float] = field(default_factory=dict)
    count: float = 0.0
    total: float = 0.0

    def minus(self, before: Series) -> Series:
        return Series(
            {b: v - before.buckets.get(b, 0.0) for b, v in self.buckets.items()},
            self.count - before.count,
            self.total - before.total,
        )

    def add(self, other: Series) -> None:
        for bound, value in other.buckets.items():
            self.buckets[bound] = self.buckets.get(bound, 0.0) + value
        self.count += other.count
        self.total += other.total

    def share(self, bound: float) -> float:
        """The exact share of observations at most ``bound`` seconds (a bucket's bound)."""
        return self.buckets.get(bound, float("nan")) / self.count if self.count else float("nan")

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")


_LABELS = re.compile(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"')


def histograms(metrics: str) -> dict[str, Series]:
    """Every validating webhook's CREATE series by webhook name (the rejected="true" and
    "false" series added up)."""
    found: dict[str, Series] = {}
    for line in metrics.splitlines():
        if not line.startswith(METRIC):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        labels = dict(_LABELS.findall(rest))
        if labels.get("operation") != "CREATE" or labels.get("type") != "validating":
            continue
        series = found.setdefault(labels.get("name", ""), Series())
        if metric == METRIC + "_bucket":
            bound = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            series.buckets[bound] = series.buckets.get(bound, 0.0) + float(value)
        elif metric == METRIC + "_count":
            series.count += float(value)
        elif metric == METRIC + "_sum":
            series.total += float(value)
    return found


# --- processes ------------------------------------------------------------------------------


def descendants(pids: Sequence[int]) -> list[int]:
    """``pids`` and all their children, grandchildren...: from /proc."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.append(pid)
        todo += [child for child, parent in parents.items() if parent == pid]
    return found


def peak_rss(pids: Sequence[int]) -> int:
    """The sum of the processes' VmHWM (peak resident set), bytes."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        total += int(match.group(1)) * 1024 if match else 0
    return total


# --- creates --------------------------------------------------------------------------------


class Client:
    """One kept-alive HTTPS connection to the API server, as one user (a bearer token)."""

    def __init__(self, server: str, ca_file: Path, token: str) -> None:
        host, _, port = server.removeprefix("https://").partition(":")
        self.host, self.port = host, int(port)
        self.context = ssl.create_default_context(cafile=str(ca_file))
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self.connection = self._connect()

    def _connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=REQUEST_TIMEOUT
        )

    def create(self, namespace: str, body: bytes, dry_run: bool = False) -> tuple[int, str]:
        """(HTTP status, the API server's message when it is not 201 Created)."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        if dry_run:
            path += "?dryRun=All"
        for attempt in (1, 2):
            try:
                self.connection.request("POST", path, body=body, headers=self.headers)
                response = self.connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # the server closed the idle kept-alive connection before this request
                self.connection.close()
                self.connection = self._connect()
                if attempt == 2:
                    raise
        if response.status == 201:
            return 201, ""
        try:
            message = str(json.loads(data).get("message", ""))
        except ValueError:
            message = data.decode(errors="replace")[:500]
        return response.status, message

    def close(self) -> None:
        self.connection.close()


@dataclass
class Cell:
    """What one arm measured in one phase, over every round."""

    creates: int = 0
    seconds: float = 0.0
    admitted: int = 0
    admitted_invalid: int = 0
    denied_valid: int = 0
    messages: list[str] = field(default_factory=list)
    series: Series = field(default_factory=Series)
    cpu: float = 0.0
    chunks: int = 0

    @property
    def wrong(self) -> int:
        return self.admitted_invalid + self.denied_valid


def send_all(
    clients: Sequence[Client], namespace: str, bodies: Sequence[bytes]
) -> list[tuple[int, str]]:
    """Create every body, the clients working in parallel threads (one: sequentially)."""
    results: list[tuple[int, str]] = [(0, "")] * len(bodies)
    lock = threading.Lock()
    position = 0
    errors: list[BaseException] = []

    def work(client: Client) -> None:
        nonlocal position
        while True:
            with lock:
                if position >= len(bodies) or errors:
                    return
                index, position = position, position + 1
            try:
                results[index] = client.create(namespace, bodies[index])
            except BaseException as error:  # reported after the join
                with lock:
                    errors.append(error)
                return

    if len(clients) == 1:
        work(clients[0])
    else:
        threads = [threading.Thread(target=work, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise BenchError(f"a create to {namespace} failed: {errors[0]!r}")
    return results


@dataclass
class Plan:
    count: int
    rounds: int
    clients: int
    invalid_every: int
    warmup: int = 0

    @property
    def phases(self) -> list[tuple[str, int]]:
        return [("sequential", 1), ("concurrent", self.clients)]


@dataclass
class Run:
    """Everything one driver run measured (what the section and --json show)."""

    plan: Plan
    arms: list[Arm]
    skipped: dict[str, str]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    rss: dict[str, int] = field(default_factory=dict)
    hooked: set[str] = field(default_factory=set)  # the arms with a webhook
    side_cpu: dict[str, float] = field(default_factory=dict)  # processes beside a webhook
    chunks_checked: int = 0
    foreign: list[str] = field(default_factory=list)
    cli: dict[str, Any] | None = None
    cli_markdown: str = ""
    cli_note: str = ""
    seconds: float = 0.0
    control_plane_start_s: float = 0.0


def chunk(
    plane: ControlPlane,
    arm: Arm,
    phase: str,
    clients: Sequence[Client],
    prefix: str,
    count: int,
    run: Run,
    hooks: Sequence[str],
    record: bool = True,
) -> None:
    """One arm's share of one round: ``count`` creates named ``prefix-NNNNN`` (every
    ``invalid_every``-th invalid), with the histogram, CPU and decisions around it (kept
    in ``run.cells`` when ``record``; checked always)."""
    plan = run.plan
    cell = run.cells.setdefault((arm.key, phase), Cell()) if record else Cell()
    names, valid = [], []
    for i in range(count):
        names.append(f"{prefix}-{i:05d}")
        valid.append((i + 1) % plan.invalid_every != 0 if plan.invalid_every else True)
    bodies = [
        json.dumps(arm.manifest(n, v), separators=(",", ":")).encode()
        for n, v in zip(names, valid, strict=True)
    ]
    pids = descendants(arm.pids())
    before, cpu_before = histograms(plane.metrics()), cpu_seconds(pids)
    started = time.perf_counter()
    results = send_all(clients, arm.namespace, bodies)
    elapsed = time.perf_counter() - started
    cpu_after, after = cpu_seconds(pids), histograms(plane.metrics())
    # every namespace judged by exactly one webhook: during this chunk only this arm's
    # webhook counted, and once per create
    own = hook_name(arm.key) if arm.key in run.hooked else None
    for name in hooks:
        moved = after.get(name, Series()).count - before.get(name, Series()).count
        expected = len(bodies) if name == own else 0
        if moved != expected:
            raise BenchError(
                f"chunk {prefix}, {phase}, arm {arm.key}: webhook {name} judged "
                f"{moved:.0f} creates during the chunk, {expected} expected: each arm's "
                "namespace must be judged by its own webhook only, once per create"
            )
    run.chunks_checked += 1
    if own is not None:
        cell.series.add(after.get(own, Series()).minus(before.get(own, Series())))
    cell.creates += len(bodies)
    cell.seconds += elapsed
    cell.cpu += cpu_after - cpu_before
    cell.chunks += 1
    judged = denies(arm)
    for name, is_valid, (status, message) in zip(names, valid, results, strict=True):
        admitted = status == 201
        cell.admitted += admitted
        expected_admitted = is_valid or not judged
        if admitted == expected_admitted:
            continue
        if admitted:
            cell.admitted_invalid += 1
            note = f"{name}: invalid, admitted"
        else:
            cell.denied_valid += 1
            note = f"{name}: valid, denied ({status}): {message}"
        if len(cell.messages) < KEPT_MESSAGES:
            cell.messages.append(note[:400])


def register(plane: ControlPlane, arms: Sequence[Arm], client: Client) -> None:
    """One ValidatingWebhookConfiguration per arm with a webhook; return when each judges
    (a dry-run create in its namespace moves its webhook's histogram)."""
    configurations = [webhook_configuration(a, h) for a in arms if (h := a.hook()) is not None]
    if not configurations:
        return
    plane.kubectl(
        "admin",
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": configurations}),
    )
    for arm in arms:
        if arm.hook() is None:
            continue
        name = hook_name(arm.key)
        probe = json.dumps(arm.manifest("registration-probe", False)).encode()
        deadline = time.monotonic() + REGISTER_SECONDS
        while True:
            before = histograms(plane.metrics()).get(name, Series()).count
            status, message = client.create(arm.namespace, probe, dry_run=True)
            if histograms(plane.metrics()).get(name, Series()).count > before:
                break
            if time.monotonic() > deadline:
                raise BenchError(
                    f"arm {arm.key}: webhook {name} never judged a create in {arm.namespace} "
                    f"within {REGISTER_SECONDS} s (last answer {status}: {message})"
                )
            time.sleep(0.2)


def _matches_agentruns(webhook: dict[str, Any], namespaces: set[str]) -> bool:
    rules = webhook.get("rules") or []
    hit = any(
        {GROUP, "*"} & set(rule.get("apiGroups") or [])
        and {PLURAL, "*", "*/*"} & set(rule.get("resources") or [])
        and {"CREATE", "*"} & set(rule.get("operations") or [])
        for rule in rules
    )
    if not hit:
        return False
    selector = webhook.get("namespaceSelector") or {}
    named = (selector.get("matchLabels") or {}).get("kubernetes.io/metadata.name")
    if named is not None and named not in namespaces and not selector.get("matchExpressions"):
        return False
    for expression in selector.get("matchExpressions") or []:
        if expression.get("key") != "kubernetes.io/metadata.name":
            continue
        values = set(expression.get("values") or [])
        if expression.get("operator") == "In" and not values & namespaces:
            return False
        if expression.get("operator") == "NotIn" and namespaces <= values:
            return False
    return True


def foreign_webhooks(plane: ControlPlane, arms: Sequence[Arm]) -> list[str]:
    """Webhooks this driver did not register that could judge AgentRun creates in the arms'
    namespaces (validating or mutating): there must be none."""
    ours = {hook_name(a.key) for a in arms}
    namespaces = {a.namespace for a in arms}
    found = []
    for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        listed = json.loads(plane.kubectl("admin", "get", kind, "-o", "json").stdout)
        for item in listed.get("items", []):
            for webhook in item.get("webhooks") or []:
                if webhook["name"] in ours or not _matches_agentruns(webhook, namespaces):
                    continue
                found.append(f"{kind} {item['metadata']['name']}: webhook {webhook['name']}")
    return found


def prepare_namespaces(plane: ControlPlane, arms: Sequence[Arm]) -> None:
    """The arms' namespaces, and a Role in each letting the requester create AgentRuns."""
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": a.namespace}} for a in arms
    ]
    plane.kubectl(
        "admin",
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": namespaces}),
    )
    for arm in arms:
        plane.grant(
            f"peers-bench-{arm.key}",
            subjects=["requester"],
            namespace=arm.namespace,
            rules=[{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["create"]}],
        )


def crd_paths() -> list[Path]:
    """The upstream agents CRDs and the queue's (the approvalgate arm's cluster view lists
    them), as bench/apiserver_admission.py installs them."""
    from tests.support.paths import UPSTREAM_AGENTS, crd_files

    queue = ROOT / "charts" / "approvalgate" / "files" / "crds"
    return [*crd_files(UPSTREAM_AGENTS / "crds"), *sorted(queue.glob("*.yaml"))]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(run: Run, work: Path) -> None:
    """The admission part: control plane, arms, webhooks, rounds. Stops everything."""
    plan = run.plan
    plane = ControlPlane(locate_binaries())
    started: list[Arm] = []
    clients: list[Client] = []
    try:
        say("starting the control plane...")
        plane.start()
        run.control_plane_start_s = plane.startup_seconds or 0.0
        plane.apply_crds(crd_paths())
        prepare_namespaces(plane, run.arms)
        for arm in run.arms:
            say(f"starting arm {arm.key} (namespace {arm.namespace})...")
            started.append(arm)
            (work / arm.key).mkdir(parents=True, exist_ok=True)
            try:
                arm.start(plane, work / arm.key)
            except Exception as error:
                raise BenchError(f"arm {arm.key} did not start: {error}") from error
        clients = [
            Client(plane.server, plane.ca_file, plane.tokens["requester"])
            for _ in range(max(c for _, c in plan.phases))
        ]
        register(plane, run.arms, clients[0])
        run.foreign = foreign_webhooks(plane, run.arms)
        if run.foreign:
            raise BenchError(
                "webhooks the driver did not register could judge the arms' AgentRuns: "
                + "; ".join(run.foreign)
            )
        run.hooked = {a.key for a in run.arms if a.hook() is not None}
        hooks = [hook_name(key) for key in sorted(run.hooked)]
        if plan.warmup:  # not measured: connections, caches, the peers' lazy set-up
            for arm in run.arms:
                say(f"warm-up: {arm.key} ({plan.warmup})")
                chunk(plane, arm, "warm-up", clients, "warm", plan.warmup, run, hooks, False)
        beside = {a.key: descendants(getattr(a, "side_pids", list)()) for a in run.arms}
        beside_before = {key: cpu_seconds(pids) for key, pids in beside.items()}
        for index in range(plan.rounds):
            shift = index % len(run.arms)
            order = run.arms[shift:] + run.arms[:shift]
            for phase, width in plan.phases:
                for arm in order:
                    say(f"round {index + 1}/{plan.rounds}, {phase}: {arm.key} ({plan.count})")
                    prefix = f"{phase[:3]}-r{index}"
                    chunk(plane, arm, phase, clients[:width], prefix, plan.count, run, hooks)
        for key, pids in beside.items():
            if pids:
                run.side_cpu[key] = cpu_seconds(pids) - beside_before[key]
        late = foreign_webhooks(plane, run.arms)  # an arm may register its own later
        if late:
            raise BenchError(
                "webhooks appeared that the driver did not register: " + "; ".join(late)
            )
        for arm in run.arms:
            run.rss[arm.key] = peak_rss(descendants(arm.pids()))
    finally:
        for client in clients:
            client.close()
        for arm in reversed(started):
            try:
                arm.stop()
            except Exception as error:  # the others and the plane must stop all the same
                say(f"arm {arm.key} did not stop cleanly: {error}")
        plane.stop()


def run_cli(run: Run, quick: bool) -> None:
    try:
        cli = importlib.import_module("bench.peers.cli")
    except ModuleNotFoundError as error:
        if error.name != "bench.peers.cli":
            raise
        raise BenchError(
            "peer arm module missing: bench/peers/cli.py (the CLI part); run with --no-cli"
        ) from error
    say("the CLI part (bench/peers/cli.py)...")
    run.cli = cli.run(quick)
    run.cli_markdown = str(cli.markdown(run.cli))


# --- the section ----------------------------------------------------------------------------


def _bench_run() -> ModuleType | None:
    """bench/run.py (its machine(), load_average(), commit()), when it imports."""
    try:
        spec = importlib.util.spec_from_file_location("approvalgate_bench_run", BENCH_RUN)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception:
        return None
    return module


def machine_lines(helpers: ModuleType | None) -> list[str]:
    if helpers is not None:
        return list(helpers.machine())
    return [f"- {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"]


def load_average(helpers: ModuleType | None) -> str:
    if helpers is not None:
        return str(helpers.load_average())
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def _cell_text(message: str, limit: int = 400) -> str:
    """One line of a markdown table cell: whitespace runs folded, pipes escaped, cut."""
    text = " ".join(message.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _share(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:.1f} %"


def _ms(seconds: float) -> str:
    return "—" if math.isnan(seconds) else f"{seconds * 1000:.2f}"  # NaN: no webhook


def _ratio(value: float, base: float | None) -> str:
    if base is None or math.isnan(base) or math.isnan(value) or base == 0:
        return "—"
    return f"{value / base:.2f}x"


def cli_figures(result: dict[str, Any] | None) -> tuple[float, float, str] | None:
    """(approvalgate verify s, kyverno apply with the presence rule s, where they were
    found) at N = 1,000, from bench/peers/cli.py's result (its ``target(result)``); None
    when the CLI part did not run or did not measure both."""
    if result is None:
        return None
    from bench.peers import cli

    figures = cli.target(result)
    if figures is None:
        return None
    return float(figures[0]), float(figures[1]), "bench/peers/cli.py's target()"


def targets(run: Run) -> list[tuple[str, bool | None, str]]:
    """The issue's targets: (what, met (None: not measured), the figures)."""
    out: list[tuple[str, bool | None, str]] = []
    means = {k: c.series.mean for k, c in run.cells.items()}
    phases = [p for p, _ in run.plan.phases]

    def versus(other: str, limit: float, what: str) -> None:
        figures, met = [], True
        for phase in phases:
            ours, theirs = means.get(("approvalgate", phase)), means.get((other, phase))
            if ours is None or theirs is None or math.isnan(ours) or math.isnan(theirs):
                out.append((what, None, f"arms approvalgate and {other} not both run"))
                return
            ratio = ours / theirs
            met = met and ratio <= limit
            figures.append(
                f"{phase}: {ours * 1000:.2f} ms vs {theirs * 1000:.2f} ms = {ratio:.2f}x"
            )
        out.append((what, met, "; ".join(figures)))

    versus(
        "gatekeeper-presence",
        GATEKEEPER_RATIO,
        f"approvalgate's mean admission ≤ {GATEKEEPER_RATIO}x Gatekeeper's presence check",
    )
    versus(
        "constant",
        CONSTANT_RATIO,
        f"approvalgate's mean admission ≤ {CONSTANT_RATIO}x the constant-answer webhook's",
    )
    concurrent = run.cells.get(("approvalgate", "concurrent"))
    if concurrent is None:
        out.append(("0 wrong decisions under concurrency for approvalgate", None, "not run"))
    else:
        out.append(
            (
                "0 wrong decisions under concurrency for approvalgate",
                concurrent.wrong == 0,
                f"{concurrent.wrong} wrong of {concurrent.creates} ({run.plan.clients} clients)",
            )
        )
    figures = cli_figures(run.cli)
    what = f"`approvalgate verify` of 1,000 manifests ≤ {CLI_RATIO}x `kyverno apply` (presence)"
    if figures is None:
        why = "the CLI part was not run" if run.cli is None else "the CLI part gave no figure"
        out.append((what, None, why))
    else:
        verify, apply, source = figures
        out.append(
            (
                what,
                verify / apply <= CLI_RATIO,
                f"{verify:.2f} s vs {apply:.2f} s = {verify / apply:.2f}x; from {source}",
            )
        )
    ours = [run.cells.get(("approvalgate", p)) for p in phases]
    base = [run.cells.get(("constant", p)) for p in phases]
    what = f"webhook CPU per admission ≤ {CPU_RATIO}x the bare aiohttp server's (constant)"
    if all(ours) and all(base):
        cpu = sum(c.cpu for c in ours if c) / max(sum(c.creates for c in ours if c), 1)
        floor = sum(c.cpu for c in base if c) / max(sum(c.creates for c in base if c), 1)
        ratio = cpu / floor if floor else float("inf")
        out.append(
            (
                what,
                ratio <= CPU_RATIO,
                f"{cpu * 1e6:.0f} µs vs {floor * 1e6:.0f} µs = {ratio:.2f}x (both phases; "
                "through the API server, 1 in "
                f"{run.plan.invalid_every} runs a denial)",
            )
        )
    else:
        out.append((what, None, "arms approvalgate and constant not both run"))
    return out


def markdown(run: Run, meta: dict[str, str]) -> str:
    plan = run.plan
    phases = [p for p, _ in plan.phases]
    lines = [
        START,
        "## Peers: approvalgate against Kyverno and Gatekeeper (issue 18)",
        "",
        f"Generated by {meta['command']} on {meta['date']} (commit {meta['commit']}), in "
        f"{run.seconds:.0f} s. Do not edit: rerun the command."
        + (" **Quick (smoke) run: sizes too small to mean anything.**" if meta["quick"] else ""),
        "",
        *meta["machine"].splitlines(),
        f"- load average before: {meta['load_before']}",
        f"- load average after: {meta['load_after']}",
        "",
        "One real control plane (kube-apiserver + etcd, loopback); each arm judges AgentRun "
        "creates in its own namespace through exactly one ValidatingWebhookConfiguration "
        "(failurePolicy Fail, timeout 10 s; the peers run out of cluster). "
        f"After {plan.warmup} unmeasured creates per arm (warm-up), "
        f"{plan.count:,} creates per arm per phase in each of {plan.rounds} round(s), arms "
        "interleaved (the order rotated each round); sequential: 1 client; concurrent: "
        f"{plan.clients} client threads; each client one kept-alive HTTPS connection to the "
        "API server as the requester. "
        + (
            f"1 run in {plan.invalid_every} must be denied (invalid), the others admitted. "
            if plan.invalid_every
            else ""
        )
        + "Latency is the API server's own "
        f"`{METRIC}` for the arm's webhook: the mean is exact (sum / count), and so are the "
        "shares under 5 and 25 ms (bounds of its buckets: 5, 25, 100 ms...; a quantile "
        "interpolated inside a 5 ms bucket would say nothing). The control plane started in "
        f"{run.control_plane_start_s:.1f} s.",
        "",
    ]
    if run.skipped:
        lines += [
            "Arms not run: "
            + "; ".join(f"{key} ({why})" for key, why in run.skipped.items())
            + ".",
            "",
        ]
    lines += [
        "### What each arm checks",
        "",
        "The ratios below are not like for like: read them with this table.",
        "",
        "| arm | namespace | what it checks |",
        "|---|---|---|",
        *(f"| {a.title} | `{a.namespace}` | {a.checks} |" for a in run.arms),
        "",
        "### Admission latency (the API server's histogram)",
        "",
        "| arm | phase | creates | creates/s (client) | mean ms | ≤ 5 ms | ≤ 25 ms "
        "| mean vs approvalgate | mean vs constant |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    means = {k: c.series.mean for k, c in run.cells.items()}
    for phase in phases:
        for arm in run.arms:
            cell = run.cells.get((arm.key, phase))
            if cell is None:
                continue
            mean = cell.series.mean
            has_hook = cell.series.count > 0
            under5 = cell.series.share(0.005) if has_hook else float("nan")
            under25 = cell.series.share(0.025) if has_hook else float("nan")
            rate = cell.creates / cell.seconds if cell.seconds else 0.0
            lines.append(
                f"| {arm.title} | {phase} | {cell.creates:,} | {rate:,.0f} | {_ms(mean)} | "
                f"{_share(under5)} | {_share(under25)} "
                f"| {_ratio(mean, means.get(('approvalgate', phase)))} "
                f"| {_ratio(mean, means.get(('constant', phase)))} |"
            )
    lines += [
        "",
        "### Wrong decisions",
        "",
        "Every answer compared to what it should be (the baselines admit everything).",
        "",
        "| arm | phase | admitted invalid | denied valid | first wrong answer |",
        "|---|---|---:|---:|---|",
    ]
    for phase in phases:
        for arm in run.arms:
            cell = run.cells.get((arm.key, phase))
            if cell is None:
                continue
            notes = "<br>".join(_cell_text(m) for m in cell.messages[:1])
            lines.append(
                f"| {arm.title} | {phase} | {cell.admitted_invalid} | {cell.denied_valid} "
                f"| {notes} |"
            )
    lines += [
        "",
        "### CPU and memory of each webhook",
        "",
        "CPU: user + system time of the webhook's processes (and their children) during its "
        "creates, per 1,000 admissions. Memory: the sum of their peak resident set (VmHWM) "
        "at the end.",
        "",
        "| arm | " + " | ".join(f"CPU s per 1,000, {p}" for p in phases) + " | peak RSS MiB |",
        "|---|" + "---:|" * (len(phases) + 1),
    ]
    for arm in run.arms:
        if arm.key not in run.hooked:
            continue
        cpu = []
        for phase in phases:
            cell = run.cells.get((arm.key, phase))
            cpu.append(f"{cell.cpu / cell.creates * 1000:.2f}" if cell and cell.creates else "—")
        rss = run.rss.get(arm.key, 0) / 2**20
        lines.append(f"| {arm.title} | {' | '.join(cpu)} | {rss:.0f} |")
    for arm in run.arms:
        if arm.key not in run.side_cpu:
            continue
        admitted = sum(c.admitted for (key, _), c in run.cells.items() if key == arm.key)
        per = (
            f", {run.side_cpu[arm.key] / admitted * 1000:.2f} s per 1,000 admitted runs"
            if admitted
            else ""
        )
        lines += [
            "",
            f"Beside the webhook of arm `{arm.key}`, its other processes (for approvalgate: "
            "the queue controller, which records each admitted run's use afterwards, as the "
            "example's staging requires the cluster view) used "
            f"{run.side_cpu[arm.key]:.2f} s of CPU over the rounds{per}: not counted above.",
        ]
    lines += [
        "",
        "### One webhook per namespace",
        "",
        f"Checked around each of the {run.chunks_checked} chunks from the histogram's counts: "
        "only the arm's own webhook counted, exactly once per create (the run fails "
        "otherwise), and no webhook the driver did not register matches AgentRun creates "
        "in the arms' namespaces: held.",
        "",
        "### CLI",
        "",
        (run.cli_markdown.strip() or run.cli_note or "Not run.")
        .replace(START, "")
        .replace(END, ""),
        "",
        "### Targets (issue 18)",
        "",
    ]
    for what, met, figures in targets(run):
        verdict = "not measured" if met is None else "**met**" if met else "**missed**"
        lines.append(f"- {what}: {verdict} ({figures})")
    lines += ["", END]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace the text between the markers in ``path`` (append it when they are absent)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    start, end = text.find(START), text.find(END)
    if start >= 0 and end > start:
        text = text[:start] + section.rstrip("\n") + text[end + len(END) :]
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def as_json(run: Run) -> dict[str, Any]:
    return {
        "plan": vars(run.plan),
        "skipped": run.skipped,
        "cells": {
            f"{key}/{phase}": {
                "creates": c.creates,
                "seconds": c.seconds,
                "admitted": c.admitted,
                "admitted_invalid": c.admitted_invalid,
                "denied_valid": c.denied_valid,
                "wrong": c.wrong,
                "messages": c.messages,
                "count": c.series.count,
                "mean_ms": c.series.mean * 1000 if c.series.count else None,
                "under_5ms": c.series.share(0.005) if c.series.count else None,
                "under_25ms": c.series.share(0.025) if c.series.count else None,
                "cpu_s": c.cpu,
            }
            for (key, phase), c in run.cells.items()
        },
        "rss_bytes": run.rss,
        "side_cpu_s": run.side_cpu,
        "chunks_checked": run.chunks_checked,
        "targets": [{"what": w, "met": m, "figures": f} for w, m, f in targets(run)],
        "cli": run.cli,
        "seconds": run.seconds,
    }


# --- main -----------------------------------------------------------------------------------


def shown_command(argv: Sequence[str]) -> str:
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(ROOT)
    command = f"`{shlex.join([str(python), 'bench/peers/run.py', *argv])}`"
    given = os.environ.get("APPROVALGATE_BENCH_COMMAND")  # set by `make bench-peers`
    return f"`{given}` (that is, {command})" if given else command


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/peers/run.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--count", type=int, default=200, help="creates per arm per phase per round (200)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--clients", type=int, default=4, help="threads when concurrent (4)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=100,
        metavar="N",
        help="unmeasured creates per arm before the rounds (100; checked all the same)",
    )
    parser.add_argument(
        "--invalid-every",
        type=int,
        default=10,
        metavar="N",
        help="every N-th run must be denied (10; 0: none)",
    )
    parser.add_argument(
        "--arms", default=",".join(ARMS), help="comma-separated arm keys (default: all)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 10 creates per arm, 1 round; arms whose peer is not built are "
        "skipped with the reason",
    )
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI part")
    parser.add_argument(
        "--write",
        type=Path,
        metavar="FILE",
        help="rewrite the Peers section of FILE (e.g. docs/benchmarks.md) between "
        f"{START} and {END}, appended when they are absent; else print it",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.arms.split(",") if k.strip()]
    unknown = [k for k in keys if k not in ARMS]
    if unknown or not keys:
        parser.error(
            f"unknown arm(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(ARMS)}"
        )
    if len(set(keys)) != len(keys):
        parser.error("an arm is named twice in --arms")
    args.keys = keys
    if args.quick:
        args.count, args.rounds, args.warmup = 10, 1, min(args.warmup, 4)
    if min(args.count, args.rounds, args.clients) < 1 or min(args.invalid_every, args.warmup) < 0:
        parser.error(
            "--count, --rounds and --clients must be at least 1, --invalid-every and "
            "--warmup at least 0"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    helpers = _bench_run()
    skipped: dict[str, str] = {}
    arms: list[Arm] = []
    for key in args.keys:
        why = missing_binaries(key)
        if why is not None:
            if not args.quick:
                print(f"error: arm {key}: {why}", file=sys.stderr)
                return 1
            say(f"skipping arm {key}: {why}")
            skipped[key] = why
            continue
        try:
            arms.append(load_arm(key))
        except BenchError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    if not arms:
        print("error: no arm left to run", file=sys.stderr)
        return 1
    plan = Plan(args.count, args.rounds, args.clients, args.invalid_every, args.warmup)
    run = Run(plan, arms, skipped)
    meta = {
        "command": shown_command(argv),
        "date": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "commit": str(helpers.commit()) if helpers is not None else "unknown",
        "machine": "\n".join(machine_lines(helpers)),
        "load_before": load_average(helpers),
        "quick": "yes" if args.quick else "",
    }
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="approvalgate-peers-") as tmp:
            measure(run, Path(tmp))
        if args.no_cli:
            run.cli_note = "Not run (`--no-cli`)."
        else:
            run_cli(run, args.quick)
    except (BenchError, ControlPlaneError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    except Exception:
        print(traceback.format_exc(), file=sys.stderr)
        print("error: the peers benchmark crashed (traceback above)", file=sys.stderr)
        return 1
    run.seconds = time.monotonic() - started
    meta["load_after"] = load_average(helpers)
    section = markdown(run, meta)
    if args.json:
        args.json.write_text(json.dumps(as_json(run), indent=2), encoding="utf-8")
    if args.write:
        write_section(args.write, section)
        say(f"wrote the Peers section of {args.write}")
    else:
        print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
