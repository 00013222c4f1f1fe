"""The whole decision corpus over real HTTPS: the verdicts of decide() and `approvalgate verify`.

Each case's bundle is compiled to a file and served by a real server (one per distinct
bundle, with the hidden test clock set to the case's ``now``); the case's request goes out
as an AdmissionReview v1 and again as v1beta1. The answer must be exactly the review that
decide() gives, carry the corpus's expected verdict, message and warnings, and, for the
cases a manifest can express, agree with `approvalgate verify` on the same run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from approvalgate.approvals import records
from approvalgate.approvals.decide import decide
from approvalgate.cli import main as cli_main
from approvalgate.compiler.sources import MAX_FILE_BYTES
from approvalgate.webhook.review import build_response
from tests.integration.harness import V1, V1BETA1, Client, Clock, ServerThread, TestPKI
from tests.support.corpus import (
    Case,
    case_names,
    case_settings,
    compile_case_bundle,
    is_view_case,
    load_case,
)

CORPUS_MAX_BODY = 16 * 1024 * 1024  # annotation-10000-entries is 8 MiB (see test_webhook_malformed)
# request knobs verify cannot express
NOT_A_MANIFEST = ("namespace", "subResource", "dryRun", "extra")
# verify refuses these manifests before deciding (exit 1, a located error on stderr): the
# same verdict as the webhook's denial, in the CLI's words instead of decide()'s
VERIFY_REFUSES = {
    "annotation-not-array": "existing approvals annotation is not a JSON array",
    "annotation-not-json": "existing approvals annotation is not a JSON array",
    "annotation-deeply-nested": "existing approvals annotation is not a JSON array",
    "empty-annotation": "existing approvals annotation is not a JSON array",
    "big-integer-in-spec": "the number 9007199254740993 is beyond",
}


@dataclass
class CorpusServers:
    """One real server per distinct bundle text, started on first use."""

    pki: TestPKI
    folder: Path
    clock: Clock = field(default_factory=lambda: Clock(datetime.now()))
    servers: dict[str, tuple[ServerThread, Client]] = field(default_factory=dict)

    def for_bundle(self, text: str) -> tuple[ServerThread, Client]:
        if text not in self.servers:
            path = self.folder / f"bundle-{len(self.servers)}.json"
            path.write_text(text)
            server = ServerThread(
                self.pki, path, clock=self.clock, max_body_bytes=CORPUS_MAX_BODY
            ).__enter__()
            self.servers[text] = (server, server.client())
        return self.servers[text]

    def close(self) -> None:
        for server, client in self.servers.values():
            client.close()
            server.stop()


@pytest.fixture(scope="module")
def corpus(
    module_pki: TestPKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CorpusServers]:
    servers = CorpusServers(module_pki, tmp_path_factory.mktemp("bundles"))
    yield servers
    servers.close()
    # 23: the sixth pass's security keys requiring the PIN are Approvers of their own (one
    # bundle) and one hand-made bundle listing a key twice
    assert len(servers.servers) <= 23, "cases should share few bundles"


def load_case_spec(name: str) -> dict[str, Any]:
    import yaml

    from tests.support.corpus import CORPUS

    spec: dict[str, Any] = yaml.safe_load((CORPUS / name / "case.yaml").read_text())
    return spec


def https_case_names() -> list[str]:
    """The cases a server started from a bundle file alone can judge.

    Left out (not skipped: they are not parametrised at all): the cases of the cluster view
    (``view:``, or a bundle with ``cluster_view: required``). This server has no cluster
    view to be given, and `verify` has no way to be given a StaticView; decide() judges
    them with theirs in tests/unit/test_decide_corpus.py.
    """
    return [n for n in case_names() if not is_view_case(load_case_spec(n))]


@pytest.mark.parametrize("name", https_case_names())
def test_case_over_https(
    name: str, corpus: CorpusServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = load_case(name)
    bundle_text = compile_case_bundle(case.folder, case_settings(case.spec))
    server, client = corpus.for_bundle(bundle_text)
    corpus.clock.now = case.now
    expect = case.expect

    reply = client.review(case.request, V1)
    review = reply.review()
    response = review["response"]
    assert (review["apiVersion"], review["kind"]) == (V1, "AdmissionReview")
    assert response["uid"] == case.request["uid"]
    assert response["allowed"] is expect["allowed"], response.get("status")
    audit = response.get("auditAnnotations", {})
    assert audit.get("reason") == expect["reason"]
    if expect["allowed"]:
        assert "status" not in response
    else:
        assert response["status"]["code"] == 403
        assert response["status"]["reason"] == "Forbidden"
        if "message" in expect:
            assert response["status"]["message"] == expect["message"].rstrip("\n")
    if "warnings" in expect:
        assert response.get("warnings", []) == expect["warnings"]
    for key, value in expect.get("audit", {}).items():
        assert audit.get(key) == value
    # exactly what decide() says for the same request, bundle and time
    decision = decide(case.request, case.bundle, case.now)
    assert response == build_response(V1, case.request["uid"], decision)["response"]

    beta = client.review(case.request, V1BETA1).review()
    assert (beta["apiVersion"], beta["kind"]) == (V1BETA1, "AdmissionReview")
    assert beta["response"] == response

    args = _verify_args(case, tmp_path, server.config.bundle)
    if args is None:
        return
    code = cli_main(args)
    captured = capsys.readouterr()
    assert code == (0 if response["allowed"] else 1), captured.err
    if name in VERIFY_REFUSES:
        assert not response["allowed"]
        assert (captured.out, VERIFY_REFUSES[name] in captured.err) == ("", True), captured.err
        return
    (verdict,) = json.loads(captured.out)
    assert verdict["allowed"] is response["allowed"]
    assert verdict["environment"] == case.bundle.environment
    assert verdict["reason"] == audit.get("reason")
    assert verdict["warnings"] == response.get("warnings", [])
    assert verdict["auditAnnotations"] == audit
    if not response["allowed"]:
        assert verdict["message"] == response["status"]["message"]


def _verify_args(case: Case, folder: Path, bundle: Path) -> list[str] | None:
    """`approvalgate verify` arguments for the case's run, or None when a manifest can't say it."""
    spec: dict[str, Any] = case.spec
    operation = spec.get("operation", "CREATE")
    if operation not in ("CREATE", "UPDATE") or any(k in spec for k in NOT_A_MANIFEST):
        return None
    if len(case.run_text.encode()) > MAX_FILE_BYTES:  # verify refuses such files, rightly
        return None
    run = folder / "run.yaml"
    run.write_text(case.run_text)
    args = [
        "verify",
        str(run),
        "--bundle",
        str(bundle),
        "--allow-unsigned-bundle",  # decide() parity, not signing (test_webhook_bundle_signing)
        "--now",
        records.format_time(case.now),
        "--user",
        spec.get("user", "requester"),
        "--groups",
        ",".join(spec.get("groups", ["agents-users"])),
        "--operation",
        operation,
        "--output",
        "json",
    ]
    if case.old_text is not None:
        old = folder / "old.yaml"
        old.write_text(case.old_text)
        args += ["--old", str(old)]
    return args


def test_every_case_is_checked_against_verify_where_a_manifest_can_express_it() -> None:
    """Guard against the verify comparison silently covering nothing."""
    names = https_case_names()
    specs = {n: load_case_spec(n) for n in names}
    checked = [
        n
        for n, spec in specs.items()
        if spec.get("operation", "CREATE") in ("CREATE", "UPDATE")
        and not any(k in spec for k in NOT_A_MANIFEST)
        and n not in VERIFY_REFUSES
    ]
    assert len(checked) >= 55, len(checked)
