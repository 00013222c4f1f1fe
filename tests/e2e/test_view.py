"""The cluster view on a real kube-apiserver: kube.view.WatchedView in this process, and the
webhook (`approvalgate webhook serve --kubeconfig ...`) as a process reading its own.

The module starts its own control plane because one test stops and restarts the API server.
The queue's three kinds' CRDs are the chart's (charts/approvalgate/files/crds/); the agents
platform's seven (Schedule, OrchestrationRun, Orchestration, Swarm, ImplementationSpec, Agent,
AgentProvider) are upstream's (third_party/upstream-agents/crds/). Objects are created
and deleted with kubectl as admin; nothing here signs records: what decide() makes of the
view is tested in the unit tests and the e2e tests of the approval queue. Here: the view is
complete, current, and honest about when it is not.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from approvalgate.approvals import parents
from approvalgate.approvals.policy import BundleSettings
from approvalgate.kube.backoff import Backoff
from approvalgate.kube.client import Client
from approvalgate.kube.view import (
    AGENT,
    AGENT_PROVIDER,
    CONTENT_DIGEST,
    CRDS_MISSING,
    DECISION,
    IMPLEMENTATION_SPEC,
    OBJECT_RESOURCES,
    ORCHESTRATION,
    ORCHESTRATION_RUN,
    PLATFORM_CRDS_MISSING,
    REQUEST,
    RESOURCES,
    SCHEDULE,
    SWARM,
    USE,
    WatchedView,
    parent_summary,
)
from tests.integration.harness import agentrun_request, cli_command, cli_env
from tests.support import bundle_signing
from tests.support.corpus import CORPUS, CORPUS_ENVIRONMENT, compile_case_bundle
from tests.support.paths import ROOT, UPSTREAM_AGENTS, crd_files
from tests.support.ports import free_port

from .conftest import own_control_plane
from .controlplane import ControlPlane

pytestmark = pytest.mark.e2e

GATES_CRDS = crd_files(ROOT / "charts" / "approvalgate" / "files" / "crds")
PLATFORM_CRDS = [
    UPSTREAM_AGENTS / "crds" / f"{resource.group}_{resource.plural}.yaml"
    for resource in OBJECT_RESOURCES.values()
]
S1, S2 = "1" * 64, "2" * 64  # statement digests
MAX_AGE = 4.0  # seconds a watch may go silent before the view is not usable (tests only)
PLATFORM_MISSING = (
    f"{PLATFORM_CRDS_MISSING} (the API server does not serve Schedules, OrchestrationRuns, "
    "Orchestrations, Swarms, ImplementationSpecs, Agents, AgentProviders)"
)
ALL_MISSING = (
    f"{CRDS_MISSING} (the API server does not serve {REQUEST}s, {DECISION}s, {USE}s); "
    f"{PLATFORM_MISSING}"
)


def eventually(what: str, condition: Callable[[], bool], timeout: float = 90) -> None:
    """Wait for ``condition`` (a generous deadline: nothing here measures speed)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    yield from own_control_plane(crds=False)


@pytest.fixture
def client(plane: ControlPlane) -> Iterator[Client]:
    with Client.connect(plane.kubeconfig("admin")) as connected:
        yield connected


def install_gates(plane: ControlPlane) -> None:
    assert len(GATES_CRDS) == 3
    plane.apply_crds(GATES_CRDS)


def install_platform(plane: ControlPlane) -> None:
    assert all(path.is_file() for path in PLATFORM_CRDS), PLATFORM_CRDS
    plane.apply_crds(PLATFORM_CRDS)


@pytest.fixture
def gates(plane: ControlPlane) -> None:
    """Every CRD the view watches."""
    install_gates(plane)
    install_platform(plane)


def view_of(client: Client) -> WatchedView:
    """A view with a short bound, and retries at most 1 s apart (so tests need not wait)."""
    return WatchedView(client, max_age=MAX_AGE, backoff=lambda: Backoff(maximum=1.0))


# --- the webhook as a process ------------------------------------------------------------------


@dataclass
class Webhook:
    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    ca: Path
    log: Path

    def get(self, path: str) -> tuple[int, str]:
        context = ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{self.port}{path}", context=context, timeout=5
            ) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode()

    def review(self, request: dict[str, Any]) -> dict[str, Any]:
        context = ssl.create_default_context(cafile=str(self.ca))
        body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
        sent = urllib.request.Request(
            f"https://127.0.0.1:{self.port}/validate",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(sent, context=context, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())["response"]
            return answer

    def metric(self, name: str, kind: str) -> float | None:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as response:
            text = response.read().decode()
        prefix = f'{name}{{kind="{kind}"}} '
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.removeprefix(prefix))
        return None

    def log_lines(self) -> list[dict[str, Any]]:
        text = self.log.read_text(errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def webhook(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    """`webhook serve` with a bundle requiring the view and the admin kubeconfig, started
    before the CRDs exist (the first test needs that)."""
    work = tmp_path_factory.mktemp("view-webhook")
    bundle = work / "bundle.json"
    text = compile_case_bundle(
        CORPUS / "_base", BundleSettings(environment=CORPUS_ENVIRONMENT, referenced_content="off")
    )
    assert '"clusterView": "required"' in text
    bundle.write_text(text)
    bundle_signing.sign_file(bundle)
    port, metrics_port = free_port(), free_port()
    log = work / "webhook.log"
    command = cli_command(
        "webhook",
        "serve",
        "--bundle",
        str(bundle),
        *bundle_signing.cli_args(work),
        "--dev",
        "--dev-ca-out",
        str(work / "ca.pem"),
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        "--kubeconfig",
        str(plane.kubeconfig("admin")),
        "--view-max-age",
        str(MAX_AGE),
    )
    with log.open("wb") as err, (work / "stdout").open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=cli_env())
    hook = Webhook(process, port, metrics_port, work / "ca.pem", log)
    try:
        eventually("the webhook answers /healthz", lambda: hook.ca.exists() and _answers(hook), 60)
        yield hook
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(hook: Webhook) -> bool:
    try:
        return hook.get("/healthz")[0] == 200
    except OSError:
        return False


# --- tests -------------------------------------------------------------------------------------


def says_missing(problem: str) -> bool:
    """The problem names missing CRDs (the queue's, the platform's: the lists answer in any
    order, so a line logged early may name one of them only)."""
    return CRDS_MISSING in problem or PLATFORM_CRDS_MISSING in problem


def test_without_the_crds_the_view_says_so_and_syncs_once_they_are_installed(
    plane: ControlPlane, client: Client, webhook: Webhook
) -> None:
    """Runs first: no CRD is installed yet. Not a crash, not a loop of tracebacks: a problem
    that says what to do, an unready webhook, and both recover by themselves. The agents
    platform's kinds count as much as the queue's: without them the view is not usable."""
    with view_of(client) as view:
        eventually("every list answered 404", lambda: view.problem == ALL_MISSING)
        assert not view.synced
        eventually(
            "the webhook says the CRDs are missing",
            lambda: webhook.get("/readyz") == (503, f"not ready: {ALL_MISSING}\n"),
        )
        denied = webhook.review(agentrun_request())
        assert denied["allowed"] is False
        assert denied["auditAnnotations"]["reason"] == "cluster-view-unavailable"
        assert CRDS_MISSING in denied["status"]["message"]
        assert PLATFORM_CRDS_MISSING in denied["status"]["message"]
        eventually(  # the log lines come from a report made every second
            "a log line says each kind is not synced, and why",
            lambda: (
                {
                    line["kind"]
                    for line in webhook.log_lines()
                    if line["msg"] == "cluster view not synced" and says_missing(line["problem"])
                }
                == set(RESOURCES)
            ),
        )

        install_gates(plane)  # the queue alone is not enough: fail closed, and say what is not
        eventually("the queue's kinds sync", lambda: view.problem == PLATFORM_MISSING)
        assert not view.synced
        eventually(
            "the webhook says the platform's CRDs are missing",
            lambda: webhook.get("/readyz") == (503, f"not ready: {PLATFORM_MISSING}\n"),
        )
        denied = webhook.review(agentrun_request())
        assert denied["auditAnnotations"]["reason"] == "cluster-view-unavailable"
        assert PLATFORM_MISSING in denied["status"]["message"]

        install_platform(plane)
        eventually("the view syncs", lambda: view.problem == "")
        assert view.synced and view.index.counts() == dict.fromkeys(RESOURCES, 0)
    eventually("the webhook is ready", lambda: webhook.get("/readyz")[0] == 200)
    eventually(  # the metrics are refreshed every second
        "the metrics say the view is usable",
        lambda: webhook.metric("approvalgate_view_synced", DECISION) == 1,
    )
    assert webhook.metric("approvalgate_view_objects", USE) == 0
    assert webhook.metric("approvalgate_view_objects", SWARM) == 0
    eventually(
        "a log line says each kind synced",
        lambda: (
            {line["kind"] for line in webhook.log_lines() if line["msg"] == "cluster view synced"}
            == set(RESOURCES)
        ),
    )
    lines = webhook.log_lines()
    not_synced = [line for line in lines if line["msg"] == "cluster view not synced"]
    assert {line["kind"] for line in not_synced} == set(RESOURCES)
    assert all(says_missing(line["problem"]) for line in not_synced)
    assert "Traceback" not in webhook.log.read_text()


def decision(namespace: str, name: str, request: str, payload: str) -> dict[str, Any]:
    return {
        "apiVersion": "gates.proompteng.ai/v1alpha1",
        "kind": "ApprovalDecision",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "requestName": request,
            "decision": "approve",
            "approver": "alice",
            "record": {
                "payload": payload,
                "payloadType": "application/vnd.in-toto+json",
                "signatures": [{"keyid": "k", "sig": "c2ln"}],  # not checked by the view
            },
        },
    }


def use(namespace: str, uid: str, statements: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "gates.proompteng.ai/v1alpha1",
        "kind": "ApprovalUse",
        "metadata": {"name": uid, "namespace": namespace},
        "spec": {
            "run": {"name": "run-1", "uid": uid},  # the CRD: named after the run's uid
            "environment": "prod",
            "specDigest": "0" * 64,
            "statements": statements,
            "expiresAt": "2030-01-01T00:00:00Z",
        },
    }


def request_object(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "gates.proompteng.ai/v1alpha1",
        "kind": "ApprovalRequest",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "requester": "requester",
            "environment": "prod",
            "specDigest": "0" * 64,
            "run": {
                "apiVersion": "agents.proompteng.ai/v1alpha1",
                "kind": "AgentRun",
                "metadata": {"name": name},
                "spec": {},
            },
        },
    }


def create(plane: ControlPlane, *docs: dict[str, Any]) -> None:
    items = {"apiVersion": "v1", "kind": "List", "items": list(docs)}
    plane.kubectl("admin", "create", "-f", "-", input=json.dumps(items))


def payloads(view: WatchedView, namespace: str, name: str) -> list[str]:
    return [str(e["payload"]) for e in view.records_for(namespace, name)]


def test_the_view_follows_creates_and_deletes_of_every_kind(
    plane: ControlPlane, client: Client, gates: None
) -> None:
    ns = plane.create_namespace("view")
    create(plane, decision(ns, "z-first", "run-1", "first"))  # listed before the view starts
    with view_of(client) as view:
        assert view.wait_synced(60)
        eventually("the view is usable", lambda: view.problem == "")
        assert payloads(view, ns, "run-1") == ["first"]
        # creationTimestamp has one-second resolution: a second apart, the order is time's,
        # not the names' (z, m, a)
        for name, payload in (("m-second", "second"), ("a-third", "third")):
            time.sleep(1.1)
            create(plane, decision(ns, name, "run-1", payload))
        create(plane, decision(ns, "other", "run-2", "other"), use(ns, "uid-1", [S1, S2]))
        create(plane, request_object(ns, "run-1"))
        eventually(
            "the decisions arrive",
            lambda: payloads(view, ns, "run-1") == ["first", "second", "third"],
        )
        eventually("the use arrives", lambda: view.use_of_run(ns, "uid-1") is not None)
        eventually("the request arrives", lambda: view.request(ns, "run-1") is not None)
        assert payloads(view, ns, "run-2") == ["other"]
        assert [u.run_uid for u in view.uses_of(S2)] == ["uid-1"]

        plane.kubectl("admin", "delete", "approvaldecisions", "m-second", "-n", ns)
        plane.kubectl("admin", "delete", "approvaluses", "uid-1", "-n", ns)
        plane.kubectl("admin", "delete", "approvalrequests", "run-1", "-n", ns)
        eventually(
            "the deletions arrive",
            lambda: (
                payloads(view, ns, "run-1") == ["first", "third"]
                and view.uses_of(S1) == ()
                and view.use_of_run(ns, "uid-1") is None
                and view.request(ns, "run-1") is None
            ),
        )
        assert view.problem == ""


PLATFORM_API = {
    kind: f"{resource.group}/{resource.version}" for kind, resource in OBJECT_RESOURCES.items()
}
TEMPLATE = '{"agentRef":{"name":"codex"},"runtime":{"type":"job"}}'


def platform(kind: str, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": PLATFORM_API[kind],
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def platform_objects(namespace: str) -> list[dict[str, Any]]:
    """One valid object of each of the seven kinds (upstream's CRDs check them)."""
    schedule = platform(
        SCHEDULE,
        namespace,
        "nightly",
        {"cron": "0 1 * * *", "targetRef": {"kind": "AgentRun", "name": "template-run"}},
    )
    schedule["metadata"]["annotations"] = {"gates.proompteng.ai/run-template": TEMPLATE}
    stage = {"enabled": True, "every": "1h", "targetRef": {"kind": "AgentRun", "name": "t"}}
    return [
        schedule,
        platform(
            ORCHESTRATION,
            namespace,
            "release",
            {"steps": [{"name": "implement", "kind": "AgentRun", "agentRef": {"name": "codex"}}]},
        ),
        platform(
            ORCHESTRATION_RUN,
            namespace,
            "release-1",
            {"orchestrationRef": {"name": "release"}, "parameters": {"task": "ship"}},
        ),
        platform(
            SWARM,
            namespace,
            "fleet",
            {
                "mode": "assisted",
                "owner": {"id": "team-a", "channel": "slack"},
                "domains": ["payments"],
                "objectives": ["ship"],
                "delivery": {"deploymentTargets": ["staging"]},
                "discovery": {"sources": [{"name": "github"}]},
                "execution": {"discover": stage, "plan": stage, "implement": stage, "verify": {}},
            },
        ),
        platform(
            IMPLEMENTATION_SPEC,
            namespace,
            "task-a",
            {"text": "Update the onboarding flow. " * 2000, "summary": "onboarding"},
        ),
        platform(AGENT, namespace, "codex", {"providerRef": {"name": "codex-cli"}}),
        platform(AGENT_PROVIDER, namespace, "codex-cli", {"binary": "/usr/local/bin/codex"}),
    ]


def served(plane: ControlPlane, kind: str, namespace: str, name: str) -> dict[str, Any]:
    resource = OBJECT_RESOURCES[kind]
    done = plane.kubectl(
        "admin",
        "get",
        f"{resource.plural}.{resource.group}",
        name,
        "-n",
        namespace,
        "-o",
        "json",
        "--show-managed-fields",
    )
    obj: dict[str, Any] = json.loads(done.stdout)
    return obj


def spec_digest(obj: dict[str, Any]) -> str:
    return hashlib.sha256(rfc8785.dumps(obj.get("spec", {}))).hexdigest()


def test_the_view_follows_the_platforms_parents_and_content(
    plane: ControlPlane, client: Client, gates: None
) -> None:
    """Schedules, OrchestrationRuns, Orchestrations and Swarms as the summary of what the
    server has (what decide() reads, never managedFields); ImplementationSpecs and Agents as
    the digest of their spec only; uses by the content they bind."""
    ns = plane.create_namespace("view-platform")
    objects = platform_objects(ns)
    create(plane, *objects[:3])  # listed before the view starts
    with view_of(client) as view:
        assert view.wait_synced(60)
        eventually("the view is usable", lambda: view.problem == "")
        create(plane, *objects[3:])
        for obj in objects:
            kind, name = obj["kind"], obj["metadata"]["name"]
            eventually(
                f"the view has {kind} {name}",
                lambda kind=kind, name=name: view.object(kind, ns, name) is not None,
            )
        for kind, name in ((SCHEDULE, "nightly"), (ORCHESTRATION, "release"), (SWARM, "fleet")):
            stored = view.object(kind, ns, name)
            assert stored is not None
            expected = served(plane, kind, ns, name)
            # kept as the summary of what the server serves (fifth red-team pass): what
            # decide() reads, never managedFields, status or a Schedule's cron
            assert stored == parent_summary(expected)
            assert stored["metadata"]["uid"] == expected["metadata"]["uid"]
            assert "managedFields" in expected["metadata"]
            assert "managedFields" not in stored["metadata"]
        schedule = view.object(SCHEDULE, ns, "nightly")
        assert schedule is not None and "cron" not in schedule.get("spec", {})
        nightly = view.object(SCHEDULE, ns, "nightly")
        assert nightly is not None
        # its run template is held as the coverage computed from it, not as its text
        assert (
            served(plane, SCHEDULE, ns, "nightly")["metadata"]["annotations"][
                "gates.proompteng.ai/run-template"
            ]
            == TEMPLATE
        )
        assert "gates.proompteng.ai/run-template" not in nightly["metadata"].get("annotations", {})
        assert parents.HELD_COVERAGE in nightly
        run = view.object(ORCHESTRATION_RUN, ns, "release-1")
        assert run is not None and run["spec"]["orchestrationRef"] == {"name": "release"}

        task = served(plane, IMPLEMENTATION_SPEC, ns, "task-a")
        assert len(json.dumps(task["spec"])) > 50_000
        assert view.content(IMPLEMENTATION_SPEC, ns, "task-a") == spec_digest(task)
        summary = view.object(IMPLEMENTATION_SPEC, ns, "task-a")
        assert summary is not None and "spec" not in summary
        assert summary[CONTENT_DIGEST] == spec_digest(task)
        agent = served(plane, AGENT, ns, "codex")
        assert view.content(AGENT, ns, "codex") == spec_digest(agent)
        assert view.provider(ns, "codex") == "codex-cli"  # the runner the Agent names
        runner = served(plane, AGENT_PROVIDER, ns, "codex-cli")
        assert view.content(AGENT_PROVIDER, ns, "codex-cli") == spec_digest(runner)
        assert view.content(AGENT, ns, "task-a") is None  # kinds do not cross
        assert view.content(SCHEDULE, ns, "nightly") is None  # not content

        # an edit of the content is a new digest
        plane.kubectl(
            "admin",
            "patch",
            "implementationspecs.agents.proompteng.ai",
            "task-a",
            "-n",
            ns,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"summary": "onboarding, edited"}}),
        )
        edited = served(plane, IMPLEMENTATION_SPEC, ns, "task-a")
        assert spec_digest(edited) != spec_digest(task)
        eventually(
            "the edit arrives",
            lambda: view.content(IMPLEMENTATION_SPEC, ns, "task-a") == spec_digest(edited),
        )

        # uses by the content they bind
        bound = use(ns, "uid-content", [S1])
        bound["spec"]["references"] = {
            "ImplementationSpec/task-a": spec_digest(edited),
            "Agent/codex": spec_digest(agent),
            "AgentProvider/codex-cli": spec_digest(runner),
        }
        create(plane, bound)
        eventually(
            "the use arrives by reference",
            lambda: [u.name for u in view.content_uses(ns, "Agent/codex")] == ["uid-content"],
        )
        [found] = view.content_uses(ns, "ImplementationSpec/task-a")
        assert found.references == bound["spec"]["references"]
        assert view.content_uses(ns, "Agent/other") == ()
        assert view.content_uses("default", "Agent/codex") == ()

        for obj in objects:
            resource = OBJECT_RESOURCES[obj["kind"]]
            plane.kubectl(
                "admin",
                "delete",
                f"{resource.plural}.{resource.group}",
                obj["metadata"]["name"],
                "-n",
                ns,
            )
        plane.kubectl("admin", "delete", "approvaluses", "uid-content", "-n", ns)
        eventually(
            "the deletions arrive",
            lambda: (
                all(view.object(o["kind"], ns, o["metadata"]["name"]) is None for o in objects)
                and view.content(AGENT, ns, "codex") is None
                and view.content_uses(ns, "Agent/codex") == ()
            ),
        )
        assert view.problem == ""


def test_an_approval_use_refuses_references_that_name_no_content(
    plane: ControlPlane, gates: None
) -> None:
    """The CRD's CEL rule: keys are "ImplementationSpec/<name>", "Agent/<name>" or
    "AgentProvider/<name>", values sha256 hex."""
    ns = plane.create_namespace("view-refs")
    for references in (
        {"Schedule/nightly": S1},
        {"Agent/codex": "not-a-digest"},
        {"AgentProviders/codex": S1},
    ):
        bad = use(ns, "uid-bad", [S1])
        bad["spec"]["references"] = references
        items = {"apiVersion": "v1", "kind": "List", "items": [bad]}
        done = plane.kubectl("admin", "create", "-f", "-", input=json.dumps(items), check=False)
        assert done.returncode != 0, references
        assert "spec.references" in done.stderr, done.stderr


def test_a_stopped_api_server_is_a_problem_after_the_bound_and_a_restart_recovers(
    plane: ControlPlane, client: Client, gates: None, webhook: Webhook
) -> None:
    ns = plane.create_namespace("view-outage")
    create(plane, decision(ns, "before", "run-1", "before"))
    eventually("the webhook is ready", lambda: webhook.get("/readyz")[0] == 200)
    with view_of(client) as view:
        eventually("the view has the decision", lambda: payloads(view, ns, "run-1") == ["before"])
        # every kind listed (the platform's seven too): usable
        eventually("the view is usable", lambda: view.problem == "")
        plane.stop_apiserver()
        try:
            eventually(
                "every kind is reported lost",
                lambda: all(
                    f"the cluster view lost its watch of {kind}s" in view.problem
                    for kind in (REQUEST, DECISION, USE)
                ),
            )
            assert f"(bound {MAX_AGE:g} s)" in view.problem
            # stale, not empty: what it held is still there, and still not trusted
            assert payloads(view, ns, "run-1") == ["before"]
            eventually(
                "the webhook's view is lost too",
                lambda: (webhook.metric("approvalgate_view_synced", DECISION) or 0) == 0,
            )
            since = webhook.metric("approvalgate_view_seconds_since_contact", DECISION)
            assert since is not None and since > MAX_AGE
            # synced once, so still ready: what needs the view is denied, and says why
            assert webhook.get("/readyz")[0] == 200
            denied = webhook.review(agentrun_request())
            assert denied["allowed"] is False
            assert denied["auditAnnotations"]["reason"] == "cluster-view-unavailable"
            assert "the cluster view lost its watch of" in denied["status"]["message"]
        finally:
            plane.start_apiserver()
        create(plane, decision(ns, "after", "run-1", "after"))
        eventually("the view is usable again", lambda: view.problem == "")
        eventually(
            "changes after the restart arrive",
            lambda: payloads(view, ns, "run-1") == ["before", "after"],
        )
    eventually(
        "the webhook's view is usable again",
        lambda: webhook.metric("approvalgate_view_synced", DECISION) == 1,
    )
    assert webhook.metric("approvalgate_view_objects", DECISION) is not None
    eventually(
        "the log says the watch was lost and regained",
        lambda: (
            {"cluster view lost its watch", "cluster view contact restored"}
            <= {line["msg"] for line in webhook.log_lines()}
        ),
    )
    assert "Traceback" not in webhook.log.read_text()


# --- verify --cluster ----------------------------------------------------------------------------

RUN = (CORPUS / "_base" / "run.yaml").read_text()  # agents/codex-run-sample, no records


def test_verify_reads_the_view_with_cluster_and_says_what_it_could_not_check_without(
    plane: ControlPlane, gates: None, tmp_path: Path
) -> None:
    plane.kubectl("admin", "create", "namespace", "agents")
    (tmp_path / "run.yaml").write_text(RUN)
    bundle = tmp_path / "bundle.json"
    bundle.write_text(
        compile_case_bundle(
            CORPUS / "_base",
            BundleSettings(environment=CORPUS_ENVIRONMENT, referenced_content="off"),
        )
    )
    bundle_signing.sign_file(bundle)  # signed and pinned: verify warns about nothing else

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        command = cli_command(
            *("verify", "run.yaml", "--bundle", str(bundle), "--output", "json"),
            *bundle_signing.cli_args(tmp_path),
            *args,
        )
        return subprocess.run(
            command, capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=120
        )

    def warnings(result: subprocess.CompletedProcess[str]) -> list[str]:
        [verdict] = json.loads(result.stdout)
        assert verdict["run"] == "agents/codex-run-sample"
        return list(verdict["warnings"])

    offline = verify()
    assert offline.returncode == 1, offline.stderr  # no records: denied either way
    assert any("could not check offline (pass --cluster)" in w for w in warnings(offline))

    admin = str(plane.kubeconfig("admin"))
    online = verify("--cluster", "--kubeconfig", admin)
    assert online.returncode == 1, online.stderr
    assert not any("could not check offline" in w for w in warnings(online))
    assert online.stderr == ""

    # alice may not read the view at all: exit 2, the reason and what to do
    alice = str(plane.kubeconfig("alice"))
    refused = verify("--cluster", "--kubeconfig", alice)
    assert refused.returncode == 2, refused.stdout
    assert refused.stdout == ""
    assert "error: forbidden while listing approvalrequests.gates.proompteng.ai in namespace" in (
        refused.stderr
    )
    assert "hint: grant this identity the permission" in refused.stderr
    assert "Traceback" not in refused.stderr
    # ... and once she may read the run's namespace, verify reads that namespace only, and says so
    plane.grant(
        "view-reader",
        subjects=["alice"],
        namespace="agents",
        rules=[
            {
                "apiGroups": ["gates.proompteng.ai"],
                "resources": ["approvalrequests", "approvaldecisions", "approvaluses"],
                "verbs": ["get", "list", "watch"],
            }
        ],
    )
    scoped = verify("--cluster", "--kubeconfig", alice)
    assert scoped.returncode == 1, scoped.stderr
    assert not any("could not check offline" in w for w in warnings(scoped))
    assert scoped.stderr.startswith(
        "note: forbidden while listing approvalrequests.gates.proompteng.ai in all namespaces"
    )
    assert "read namespaces agents only (uses recorded in other namespaces are not seen)" in (
        scoped.stderr
    )


def test_a_platform_crd_removed_after_the_sync_makes_the_view_unusable_and_says_which(
    plane: ControlPlane, client: Client, gates: None
) -> None:
    """Fail closed: the view does not carry on without the Swarms it can no longer see."""
    with view_of(client) as view:
        eventually("the view is usable", lambda: view.problem == "")
        plane.kubectl("admin", "delete", "crd", "swarms.swarm.proompteng.ai")
        try:
            eventually(
                "the view says the Swarm CRD is gone",
                lambda: (
                    view.problem
                    == f"{PLATFORM_CRDS_MISSING} (the API server does not serve Swarms)"
                ),
            )
        finally:
            install_platform(plane)
        eventually("the view is usable again", lambda: view.problem == "")


def test_an_object_as_deep_as_the_api_server_keeps_is_read(
    plane: ControlPlane, client: Client, gates: None
) -> None:
    """The API server keeps an Agent nested thousands of levels deep (its spec.config keeps
    unknown fields, in any namespace), deeper than Python decodes by default: the view still
    reads it (kube.client.allow_api_server_depth) and holds its digest, and stays usable.
    Were it unreadable, its kind's watch would stop and every decision needing the view be
    denied: anyone who may create an Agent could deny service."""
    ns = plane.create_namespace("view-deep")
    depth = 5000
    text = json.dumps(platform(AGENT, ns, "deep", {"providerRef": {"name": "codex-cli"}}))
    deep = text[:-2] + ', "config": ' + '{"a":' * depth + "{}" + "}" * depth + "}}"
    with view_of(client) as view:
        eventually("the view is usable", lambda: view.problem == "")
        plane.kubectl("admin", "create", "-f", "-", input=deep)
        eventually("the view holds the deep Agent", lambda: view.content("Agent", ns, "deep"))
        assert view.problem == ""
        assert all(informer.running for informer in view.informers.values())
