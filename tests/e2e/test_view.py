"""The cluster view on a real kube-apiserver: kube.view.WatchedView in this process, and the
webhook (`approvalgate webhook serve --kubeconfig ...`) as a process reading its own.

The module starts its own control plane because one test stops and restarts the API server.
The three kinds' CRDs are the chart's (charts/approvalgate/files/crds/). Objects are created
and deleted with kubectl as admin; nothing here signs records: what decide() makes of the
view is tested in the unit tests and the e2e tests of the approval queue. Here: the view is
complete, current, and honest about when it is not.
"""

from __future__ import annotations

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

from approvalgate.approvals.policy import BundleSettings
from approvalgate.kube.backoff import Backoff
from approvalgate.kube.client import Client
from approvalgate.kube.view import CRDS_MISSING, DECISION, REQUEST, USE, WatchedView
from tests.integration.harness import agentrun_request, cli_command, cli_env, free_port
from tests.support.corpus import CORPUS, CORPUS_ENVIRONMENT, compile_case_bundle
from tests.support.paths import ROOT, crd_files
from tests.support.tools import unavailable

from .controlplane import ControlPlane, ControlPlaneError, locate_binaries

pytestmark = pytest.mark.e2e

GATES_CRDS = crd_files(ROOT / "charts" / "approvalgate" / "files" / "crds")
S1, S2 = "1" * 64, "2" * 64  # statement digests
MAX_AGE = 4.0  # seconds a watch may go silent before the view is not usable (tests only)
ALL_MISSING = f"{CRDS_MISSING} (the API server does not serve {REQUEST}s, {DECISION}s, {USE}s)"


def eventually(what: str, condition: Callable[[], bool], timeout: float = 90) -> None:
    """Wait for ``condition`` (a generous deadline: nothing here measures speed)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    try:
        control_plane = ControlPlane(locate_binaries())
        control_plane.start()
    except ControlPlaneError as error:
        unavailable(f"e2e control plane: {error}")
    try:
        yield control_plane
    finally:
        control_plane.stop()


@pytest.fixture
def client(plane: ControlPlane) -> Iterator[Client]:
    with Client.connect(plane.kubeconfig("admin")) as connected:
        yield connected


def install_gates(plane: ControlPlane) -> None:
    assert len(GATES_CRDS) == 3
    plane.apply_crds(GATES_CRDS)


@pytest.fixture
def gates(plane: ControlPlane) -> None:
    install_gates(plane)


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
    port, metrics_port = free_port(), free_port()
    log = work / "webhook.log"
    command = cli_command(
        "webhook",
        "serve",
        "--bundle",
        str(bundle),
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


def test_without_the_crds_the_view_says_so_and_syncs_once_they_are_installed(
    plane: ControlPlane, client: Client, webhook: Webhook
) -> None:
    """Runs first: the CRDs are not installed yet. Not a crash, not a loop of tracebacks: a
    problem that says what to do, an unready webhook, and both recover by themselves."""
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
        eventually(  # the log lines come from a report made every second
            "a log line says each kind is not synced, and why",
            lambda: (
                {
                    line["kind"]
                    for line in webhook.log_lines()
                    if line["msg"] == "cluster view not synced" and CRDS_MISSING in line["problem"]
                }
                == {REQUEST, DECISION, USE}
            ),
        )

        install_gates(plane)
        eventually("the view syncs", lambda: view.problem == "")
        assert view.synced and view.index.counts() == {REQUEST: 0, DECISION: 0, USE: 0}
    eventually("the webhook is ready", lambda: webhook.get("/readyz")[0] == 200)
    eventually(  # the metrics are refreshed every second
        "the metrics say the view is usable",
        lambda: webhook.metric("approvalgate_view_synced", DECISION) == 1,
    )
    assert webhook.metric("approvalgate_view_objects", USE) == 0
    eventually(
        "a log line says each kind synced",
        lambda: (
            {line["kind"] for line in webhook.log_lines() if line["msg"] == "cluster view synced"}
            == {REQUEST, DECISION, USE}
        ),
    )
    lines = webhook.log_lines()
    not_synced = [line for line in lines if line["msg"] == "cluster view not synced"]
    assert {line["kind"] for line in not_synced} == {REQUEST, DECISION, USE}
    assert all(CRDS_MISSING in line["problem"] for line in not_synced)
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


def test_a_stopped_api_server_is_a_problem_after_the_bound_and_a_restart_recovers(
    plane: ControlPlane, client: Client, gates: None, webhook: Webhook
) -> None:
    ns = plane.create_namespace("view-outage")
    create(plane, decision(ns, "before", "run-1", "before"))
    eventually("the webhook is ready", lambda: webhook.get("/readyz")[0] == 200)
    with view_of(client) as view:
        eventually("the view has the decision", lambda: payloads(view, ns, "run-1") == ["before"])
        assert view.problem == ""
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

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        command = cli_command(
            "verify", "run.yaml", "--bundle", str(bundle), "--output", "json", *args
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
