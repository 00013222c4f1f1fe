"""The webhook's cluster view without an API server: when it starts, what /readyz says.

The view against a real kube-apiserver (synced, lost, regained) is in tests/e2e/test_view.py.
Here: ``--cluster-view off`` never starts one; ``auto`` starts one only for a bundle that
requires it (at start-up or on a reload), and credentials that cannot be loaded make the
webhook unready with the reason, not a crash.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from approvalgate.approvals.policy import BundleSettings
from approvalgate.approvals.view import StaticView
from approvalgate.commands import webhook as webhook_command
from approvalgate.runtime.metrics_server import generate_latest
from approvalgate.webhook.config import ServeConfig
from approvalgate.webhook.view import DEFAULT_MAX_AGE
from tests.integration.harness import (
    Clock,
    ServerThread,
    TestPKI,
    agentrun_request,
    write_atomic,
)
from tests.support.corpus import (
    CORPUS,
    CORPUS_ENVIRONMENT,
    case_names,
    case_settings,
    compile_case_bundle,
    is_view_case,
    load_case,
)


@pytest.fixture(scope="module")
def required_bundle_text() -> str:
    """The corpus's base policy with ``clusterView: required`` (the default)."""
    text = compile_case_bundle(CORPUS / "_base", BundleSettings(environment=CORPUS_ENVIRONMENT))
    assert '"clusterView": "required"' in text
    return text


@pytest.fixture
def required_bundle(tmp_path: Path, required_bundle_text: str) -> Path:
    path = tmp_path / "required.json"
    path.write_text(required_bundle_text)
    return path


def test_off_never_starts_a_view_and_decide_gets_none(pki: TestPKI, required_bundle: Path) -> None:
    with ServerThread(pki, required_bundle, cluster_view="off") as server, server.client() as c:
        assert server.running.state.bundle is not None
        assert server.running.state.bundle.needs_view
        ready = c.get("/readyz")
        assert ready.status == 200, ready.body
        views = server.running.views
        assert views.view is None and views.current is None and not views.start_error
        response = c.review(agentrun_request(operation="DELETE")).response
        assert response["allowed"] is True
        # a CREATE judged by records needs the view the bundle requires: denied, and says why
        response = c.review(agentrun_request()).response
        assert response["allowed"] is False
        assert response["auditAnnotations"]["reason"] == "cluster-view-unavailable"
        assert "this process has no cluster view" in response["status"]["message"]


def test_auto_with_credentials_that_cannot_load_is_unready_and_says_why(
    pki: TestPKI, required_bundle: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-kubeconfig"
    with (
        ServerThread(pki, required_bundle, cluster_view="auto", kubeconfig=missing) as server,
        server.client() as c,
    ):
        ready = c.get("/readyz")
        assert ready.status == 503
        text = ready.body.decode()
        assert text.startswith(
            "not ready: the cluster view cannot start: cannot load Kubernetes credentials: "
        )
        assert str(missing) in text
        assert c.get("/healthz").status == 200
        views = server.running.views
        assert views.view is None
        # decide() gets a view whose problem is the reason (it denies what needs the view)
        assert isinstance(views.current, StaticView)
        assert views.current.problem == views.start_error
        assert c.review(agentrun_request(operation="DELETE")).response["allowed"] is True
        response = c.review(agentrun_request()).response
        assert response["auditAnnotations"]["reason"] == "cluster-view-unavailable"
        assert views.start_error in response["status"]["message"]
        assert "approvalgate_view_synced{" not in _metrics(server)  # no view, no samples


def test_auto_starts_the_view_only_once_a_bundle_requires_it(
    pki: TestPKI, tmp_path: Path, base_bundle_text: str, required_bundle_text: str
) -> None:
    bundle = tmp_path / "bundle.json"
    assert '"clusterView": "off"' in base_bundle_text  # the corpus's default
    bundle.write_text(base_bundle_text)
    missing = tmp_path / "no-such-kubeconfig"
    with (
        ServerThread(pki, bundle, cluster_view="auto", kubeconfig=missing) as server,
        server.client() as c,
    ):
        views = server.running.views
        assert c.get("/readyz").status == 200
        assert views.view is None and not views.start_error  # not needed: not attempted
        write_atomic(bundle, required_bundle_text)
        server.wait_for(lambda: c.get("/readyz").status == 503)
        assert b"the cluster view cannot start" in c.get("/readyz").body
        assert views.start_error.startswith("the cluster view cannot start: ")


def test_the_view_flags_reach_every_worker() -> None:
    config = ServeConfig(
        bundle=Path("b.json"),
        tls_cert=Path("c"),
        tls_key=Path("k"),
        cluster_view="off",
        kubeconfig=Path("/etc/kube/config"),
        context="prod",
        view_max_age=30.0,
    )
    assert ServeConfig.from_json(config.to_json()) == config
    plain = ServeConfig(bundle=Path("b.json"), tls_cert=Path("c"), tls_key=Path("k"))
    assert ServeConfig.from_json(plain.to_json()) == plain
    assert plain.cluster_view == "auto" and plain.kubeconfig is None and plain.context is None
    # the CLI's default (kept without importing the webhook) is the server's
    assert webhook_command.DEFAULT_VIEW_MAX_AGE == DEFAULT_MAX_AGE == plain.view_max_age


def _metrics(server: ServerThread) -> str:
    return generate_latest(server.running.metrics.registry).decode()


def test_credentials_without_a_view_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from approvalgate.cli import main as cli_main

    args = ["webhook", "serve", "--bundle", "b.json", "--dev", "--cluster-view", "off"]
    assert cli_main([*args, "--kubeconfig", "k"]) == 2
    err = capsys.readouterr().err
    assert "--kubeconfig and --context are for the cluster view" in err
    assert "pass --bundle-floor" in err  # what else they are for, in the advice
    # --help says what the credentials serve: the view, and the revision floor
    with pytest.raises(SystemExit):
        cli_main(["webhook", "serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "credentials for the view and the --bundle-floor" in shown


THIRD_PASS_CASES = (
    "parent-label-forged-own-approvals",
    "parent-label-forged-no-creators",
    "parent-label-forged-warn",
    "view-cluster-approval-filed-after-creation",
    "view-update-template-live-on-decisions-filed-after-creation",
    "view-finalizer-removal-decision-filed-after-use",
    "view-cluster-reject-filed-after-creation-still-vetoes",
    "view-update-template-live-on-carried-approvals-after-creation",
    "view-update-adds-carried-approval-issued-after-creation",
    "view-update-adds-carried-approval-its-use-does-not-record",
    "view-finalizer-removal-carried-approval-issued-after-creation",
)


FOURTH_PASS_CASES = ("view-replay-reencoded-base64",)
"""Values read two ways (fourth pass): a used record re-encoded is the same record."""


SIXTH_PASS_CASES = (
    "view-cluster-user-verification-withdrawal-without-pin",
    "view-cluster-withdrawal-signed-by-a-clock-behind",
    "view-cluster-reject-signed-by-a-clock-behind",
    "view-cluster-withdrawal-filed-late-keeps-a-later-reject",
    "view-courier-run-created-after-its-request-expired",
)
"""Sixth pass: a security key's PIN (a withdrawal without it lifts no veto); time (a
withdrawal or reject counts from its filing when the signer's clock runs behind; a run of an
expired request is denied by the API server's times)."""


def view_case_names() -> list[str]:
    """Every corpus case judged with a cluster view, or whose bundle requires one: the cases
    tests/integration/test_webhook_corpus.py leaves out (its server is given no view)."""
    return [n for n in case_names() if is_view_case(load_case(n).spec)]


VIEW_CASES = tuple(view_case_names())
"""Seventh pass (attacks at every level): until then only the passes' own cases above ran
over HTTPS, and the other view cases (a reject or withdrawal in the cluster, replay, the use
finalizer, runs from a request, a view unusable or offline) in decide() alone."""


@pytest.mark.parametrize("name", VIEW_CASES)
def test_ledger_cases_over_https_with_their_view(pki: TestPKI, tmp_path: Path, name: str) -> None:
    """Every corpus case of the cluster view over HTTPS, its view given to the production
    worker (the passes' own cases above among them): the answer is the case's, as decide()
    gives it in tests/unit/test_decide_corpus.py. First the ledger pass's: a run naming a
    parent from anyone but a creator (parent-label-forged), and ApprovalDecisions filed, or
    approvals carried, issued after the run was created or not recorded by its use (they
    count for none of its admissions and are not asked of its use when its finalizer
    goes)."""
    case = load_case(name)
    path = tmp_path / "bundle.json"
    path.write_text(compile_case_bundle(case.folder, case_settings(case.spec)))
    clock = Clock(case.now)
    with ServerThread(pki, path, clock=clock, view=case.view) as server, server.client() as c:
        assert server.running.state.bundle is not None
        response = c.review(case.request).response
    expect = case.expect
    assert response["allowed"] is expect["allowed"], response.get("status")
    assert response["auditAnnotations"]["reason"] == expect["reason"]
    message = response.get("status", {}).get("message", "")
    if "message" in expect:
        assert message == expect["message"].rstrip("\n")
    for part in expect.get("contains", []):
        assert part in message, message
    for key, value in expect.get("audit", {}).items():
        assert response["auditAnnotations"].get(key) == value


def test_the_passes_own_view_cases_are_among_those_run_over_https() -> None:
    """The cases the earlier passes name (docs/reliability.md) still exist and run above."""
    named = THIRD_PASS_CASES + FOURTH_PASS_CASES + SIXTH_PASS_CASES
    assert set(named) <= set(VIEW_CASES), set(named) - set(VIEW_CASES)
    assert len(VIEW_CASES) > len(named)
