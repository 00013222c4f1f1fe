"""The signed bundle at HTTPS level: a real TLS webhook (the production Worker) pins two
bundle-signing keys (threshold 2) and reads its bundle from a folder updated the way the
kubelet updates a ConfigMap volume (``..data`` swapped: both files change at once).

Every attack on the bundle (issue 17) replaces the files with a bundle that would admit an
unapproved AgentRun (its namespace excluded): unsigned, signatures stripped, signed by
another key, below the threshold, the good signatures over other content, a validly-signed
older revision (rollback), the same revision with other content, and another environment's
bundle signed by the same keys. Each time the webhook
keeps the last good bundle (the unapproved run is still denied), counts the refusal in
``approvalgate_bundle_rejected_total{reason}`` and logs one line with the reason and the
revision and generation in force. A webhook started with only a refused bundle is not ready
and denies every request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner

from approvalgate.approvals.bundle_trust import SIGNATURES_FILE, dump_signatures, sign_bundle
from tests.integration.harness import ServerThread, TestPKI, agentrun_request
from tests.support import bundle_signing
from tests.support.projection import KubeVolume
from tests.unit.test_ed25519_points import Holder, mixed, pem

GOOD_REVISION = 3
BUNDLE_LOGGER = "approvalgate.webhook.bundle"


def evil(text: str) -> str:
    """The attacker's bundle: the runs' namespace is no longer enforced."""
    obj: dict[str, Any] = json.loads(text)
    obj["excludeNamespaces"] = ["agents"]
    return json.dumps(obj)


@dataclass
class Signed:
    """Two pinned keys (threshold 2), an unpinned one, and the volume the webhook reads."""

    volume: KubeVolume
    first: CryptoSigner
    second: CryptoSigner
    stranger: CryptoSigner

    def signatures(self, bundle: bytes, *signers: CryptoSigner) -> str:
        return dump_signatures(sign_bundle(bundle, list(signers)))

    def publish(self, bundle: str | bytes, signatures: str | None) -> None:
        files: dict[str, bytes | str] = {"bundle.json": bundle}
        if signatures is not None:
            files[SIGNATURES_FILE] = signatures
        self.volume.publish(files)

    def publish_signed(self, text: str, revision: int, *signers: CryptoSigner) -> bytes:
        content = bundle_signing.with_revision(text, revision).encode()
        self.publish(content, self.signatures(content, *(signers or (self.first, self.second))))
        return content

    def options(self) -> dict[str, Any]:
        return {
            "bundle_keys": (
                bundle_signing.public_pem(self.first),
                bundle_signing.public_pem(self.second),
            ),
            "bundle_threshold": 2,
            "bundle_environment": "prod",  # the environment of the corpus's base bundle
        }


@pytest.fixture
def signed(tmp_path: Path) -> Signed:
    return Signed(
        KubeVolume(tmp_path / "bundle"),
        bundle_signing.other_signer(),
        bundle_signing.other_signer(),
        bundle_signing.other_signer(),
    )


def bundle_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    out = []
    for record in caplog.records:
        if record.name == BUNDLE_LOGGER and record.levelno >= logging.ERROR:
            out.append({"msg": record.getMessage(), **getattr(record, "approvalgate_fields", {})})
    return out


def rejected(server: ServerThread, reason: str) -> float:
    value = server.running.metrics.registry.get_sample_value(
        "approvalgate_bundle_rejected_total", {"reason": reason}
    )
    return value or 0.0


def ready_status(server: ServerThread) -> int:
    with server.client() as client:
        return client.get("/readyz").status


def unapproved_allowed(server: ServerThread) -> bool:
    with server.client() as client:
        allowed: bool = client.review(agentrun_request()).response["allowed"]
    return allowed


@pytest.fixture
def serving(
    pki: TestPKI, signed: Signed, base_bundle_text: str, caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[ServerThread, bytes]]:
    caplog.set_level(logging.INFO, logger=BUNDLE_LOGGER)
    good = signed.publish_signed(base_bundle_text, GOOD_REVISION)
    with ServerThread(pki, signed.volume.root / "bundle.json", **signed.options()) as server:
        assert server.running.state.bundle is not None
        assert not unapproved_allowed(server)  # the good bundle requires two approvals
        # the attacker's bundle, properly signed, would admit it: each attack below tries it
        assert bundle_signing.with_revision(evil(base_bundle_text), 9) != good.decode()
        yield server, good


def other_environment(text: str) -> str:
    """The same policies compiled for another environment (dev's bundle, say)."""
    obj: dict[str, Any] = json.loads(evil(text))
    obj["environment"] = "dev"
    return json.dumps(obj)


def attacks(signed: Signed, text: str, good: bytes) -> list[tuple[str, bytes, str | None]]:
    """(reason, bundle.json, bundle.sig.json) of each attack on a webhook enforcing ``good``."""
    newer = bundle_signing.with_revision(evil(text), GOOD_REVISION + 1).encode()
    older = bundle_signing.with_revision(evil(text), GOOD_REVISION - 1).encode()
    same = bundle_signing.with_revision(evil(text), GOOD_REVISION).encode()
    dev = bundle_signing.with_revision(other_environment(text), GOOD_REVISION + 1).encode()
    both = (signed.first, signed.second)
    stripped = json.loads(signed.signatures(newer, *both))
    stripped["signatures"] = []
    return [
        ("unsigned", newer, None),
        ("signature-stripped", newer, json.dumps(stripped)),
        ("untrusted-key", newer, signed.signatures(newer, signed.stranger)),
        ("below-threshold", newer, signed.signatures(newer, signed.first)),
        # the good bundle's own signatures beside other content
        ("signed-other-content", newer, signed.signatures(good, *both)),
        ("rollback", older, signed.signatures(older, *both)),
        ("revision-reused", same, signed.signatures(same, *both)),
        # another environment's bundle, signed by the same pinned keys, a higher revision
        ("other-environment", dev, signed.signatures(dev, *both)),
    ]


def test_every_attack_keeps_the_last_good_bundle_with_a_metric_and_a_line(
    serving: tuple[ServerThread, bytes],
    signed: Signed,
    base_bundle_text: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, good = serving
    state = server.running.state
    in_force = state.generation
    assert state.bundle is not None and state.bundle.revision == GOOD_REVISION
    revision_gauge = server.running.metrics.registry.get_sample_value
    assert revision_gauge("approvalgate_bundle_revision") == GOOD_REVISION
    assert revision_gauge("approvalgate_bundle_unsigned_allowed") == 0
    for count, (reason, bundle, signatures) in enumerate(
        attacks(signed, base_bundle_text, good), start=1
    ):
        caplog.clear()
        signed.publish(bundle, signatures)
        server.wait_for(lambda reason=reason: rejected(server, reason) == 1)  # type: ignore[misc]
        assert state.generation == in_force, reason
        assert not unapproved_allowed(server), f"{reason}: the attacker's bundle is enforced"
        (line,) = bundle_lines(caplog)
        assert line["msg"] == "bundle file cannot be loaded; keeping the last good bundle"
        assert line["reason"] == reason
        assert (line["generation"], line["revision"]) == (in_force, GOOD_REVISION)
        assert state.failures == count
        assert ready_status(server) == 200  # still serving the good bundle
    # the same files published again (a re-mount) are neither counted nor logged again,
    # and a properly signed newer bundle is enforced
    caplog.clear()
    signed.publish(bundle, signatures)
    newer = signed.publish_signed(evil(base_bundle_text), GOOD_REVISION + 1)
    server.wait_for(lambda: state.generation == json.loads(newer)["generation"])
    assert bundle_lines(caplog) == []
    assert rejected(server, "revision-reused") == 1
    assert unapproved_allowed(server)
    assert revision_gauge("approvalgate_bundle_revision") == GOOD_REVISION + 1


def test_one_key_pinned_in_two_forms_is_one_signer_of_the_threshold(
    pki: TestPKI, signed: Signed, base_bundle_text: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The first key pinned twice, as PEM and as its OpenSSH line (two key ids), beside the
    second, threshold 2: the attacker's bundle signed by the first key in both forms is
    one signer, below the threshold, and the good bundle stays."""
    caplog.set_level(logging.INFO, logger=BUNDLE_LOGGER)
    as_ssh = bundle_signing.SSHForm(signed.first)
    options = signed.options()
    options["bundle_keys"] = (options["bundle_keys"][0], as_ssh.line, options["bundle_keys"][1])
    good = signed.publish_signed(base_bundle_text, GOOD_REVISION)
    with ServerThread(pki, signed.volume.root / "bundle.json", **options) as server:
        state = server.running.state
        assert state.generation == json.loads(good)["generation"]
        newer = bundle_signing.with_revision(evil(base_bundle_text), GOOD_REVISION + 1).encode()
        both_forms = dump_signatures(sign_bundle(newer, [signed.first, as_ssh]))
        signed.publish(newer, both_forms)
        server.wait_for(lambda: rejected(server, "below-threshold") == 1)
        assert state.generation == json.loads(good)["generation"]
        assert not unapproved_allowed(server), "one key in two forms signed as two"
        signed.publish(newer, dump_signatures(sign_bundle(newer, [as_ssh, signed.second])))
        server.wait_for(lambda: state.generation == json.loads(newer)["generation"])
        assert unapproved_allowed(server)


def test_a_signed_bundle_with_an_ed25519_key_nobody_generated_is_refused(
    serving: tuple[ServerThread, bytes], signed: Signed, base_bundle_text: str
) -> None:
    """A properly signed newer bundle whose approver holds an Ed25519 point with a
    small-order part (one private key signing as two approvers,
    tests/unit/test_ed25519_points.py) is refused whole; the good bundle stays."""
    server, good = serving
    obj = json.loads(base_bundle_text)
    holder = Holder()
    obj["approvers"][-1]["keys"][0]["publicKey"] = pem(mixed(holder))
    signed.publish_signed(json.dumps(obj), GOOD_REVISION + 1)
    server.wait_for(lambda: rejected(server, "invalid-bundle") == 1)
    assert server.running.state.generation == json.loads(good)["generation"]
    assert not unapproved_allowed(server)


@pytest.mark.parametrize(
    ("reason", "what"),
    [
        ("unsigned", "unsigned"),
        ("untrusted-key", "stranger"),
        ("below-min-revision", "old"),
    ],
)
def test_only_a_refused_bundle_at_start_is_not_ready_and_denies_everything(
    pki: TestPKI, signed: Signed, base_bundle_text: str, reason: str, what: str
) -> None:
    content = bundle_signing.with_revision(evil(base_bundle_text), 1).encode()
    if what == "unsigned":
        signed.publish(content, None)
    elif what == "stranger":
        signed.publish(content, signed.signatures(content, signed.stranger))
    else:
        signed.publish_signed(evil(base_bundle_text), 1)
    options = {**signed.options(), "bundle_min_revision": 2}
    with ServerThread(pki, signed.volume.root / "bundle.json", **options) as server:
        assert server.running.state.bundle is None
        assert rejected(server, reason) == 1
        with server.client() as client:
            ready = client.get("/readyz")
            assert ready.status == 503
            assert f"(refused: {reason})" in ready.body.decode()
            response = client.review(agentrun_request()).response
            assert response["allowed"] is False
            assert "no policy bundle" in response["status"]["message"]
            # whoever is denied learns why (e.g. below-floor: an older bundle put back)
            assert f"The deployed bundle was refused ({reason})" in response["status"]["message"]
        # the good bundle, once deployed, is enforced
        signed.publish_signed(base_bundle_text, 2)
        server.wait_for(lambda: server.running.state.bundle is not None)
        assert not unapproved_allowed(server)
        assert ready_status(server) == 200


def test_unsigned_mode_is_loud(
    pki: TestPKI, bundle_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=BUNDLE_LOGGER)
    with ServerThread(pki, bundle_file, allow_unsigned_bundle=True) as server:
        registry = server.running.metrics.registry
        assert registry.get_sample_value("approvalgate_bundle_unsigned_allowed") == 1
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        # once at start, once for the load
        assert len(warnings) >= 2
        assert all("UNSIGNED bundles are allowed" in r.getMessage() for r in warnings)


def test_a_webhook_whose_credentials_load_late_becomes_ready_without_a_restart(
    pki: TestPKI, signed: Signed, base_bundle_text: str, tmp_path: Path
) -> None:
    """The pod started before its credentials could be loaded (--bundle-floor, a kubeconfig
    not there yet): not ready, every run denied with `floor-unknown` (fail closed); once
    they load, the next retry reads the floor (a real HTTP server answering as the API
    server) and the webhook serves, without a restart."""
    from tests.support.floor_server import FloorApiServer, write_kubeconfig

    signed.publish_signed(base_bundle_text, GOOD_REVISION)
    kubeconfig = tmp_path / "kubeconfig"
    api = FloorApiServer({"prod": str(GOOD_REVISION)})
    options = {
        **signed.options(),
        "bundle_floor": "approvalgate-system/approvalgate-bundle-floor",
        "kubeconfig": kubeconfig,
    }
    try:
        with ServerThread(pki, signed.volume.root / "bundle.json", **options) as server:
            assert server.running.state.bundle is None
            with server.client() as client:
                ready = client.get("/readyz")
                assert ready.status == 503 and "(refused: floor-unknown)" in ready.body.decode()
                response = client.review(agentrun_request()).response
                assert response["allowed"] is False
                assert "(floor-unknown)" in response["status"]["message"]
            server.running.state.file.retry_interval = 0.05  # 10 s in production
            write_kubeconfig(kubeconfig, api.url)
            server.wait_for(lambda: server.running.state.bundle is not None)
            assert ready_status(server) == 200 and api.gets >= 1
            assert not unapproved_allowed(server)  # the good bundle: two approvals needed
    finally:
        api.close()
