"""Issue 17, done-when 1: approvers using different providers, on the real API server.

A run approved by two approvers whose keys live in different places is admitted by the real
webhook behind the real kube-apiserver; the same run with one of the two signatures tampered
is denied with exactly ``decide()``'s message (``approvalgate verify`` on the same object).
Every approval is made with the CLI the way users make it (``approvalgate approve
--signer REF``); the Approvers hold the public keys the providers gave.

- alice signs with her Ed25519 key file (``keygen``'s default), bob with an ECDSA P-256 key
  file;
- (more providers: see the tests below).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence

import pytest
import yaml

from approvalgate.approvals import keys
from approvalgate.approvals.records import ANNOTATION
from tests.e2e.controlplane import ControlPlane
from tests.e2e.gate import CLI, ENV, OTHER_ENV, WEBHOOK_NAME, Gate, run_manifest

pytestmark = pytest.mark.e2e
REQUESTER = "requester"


def add_key(gate: Gate, approver: str, public_text: str) -> None:
    """One more key in ``approver``'s Approver document (keygen writes ``keys:`` last)."""
    path = gate.repo / "approvers" / f"{approver}.yaml"
    text = path.read_text()
    assert text.rstrip("\n").splitlines()[-1].startswith("        "), text
    lines = [
        "    - publicKey: |",
        *(f"        {line}" for line in public_text.strip().splitlines()),
    ]
    path.write_text(text.rstrip("\n") + "\n" + "\n".join(lines) + "\n")


def recompile(gate: Gate) -> None:
    """Compile both environments again, as Gate.prepare does (the served and signing copies)."""
    for env in (ENV, OTHER_ENV):
        gate.cli("compile", str(gate.repo), "--env", env, "--out", str(gate.work / "rendered"))
        gate.signing_bundle(env).write_bytes(
            (gate.work / "rendered" / env / "bundle.json").read_bytes()
        )


@pytest.fixture(scope="module")
def gate(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    gate = Gate(control_plane, tmp_path_factory.mktemp("providers"))
    gate.prepare()
    # bob also holds an ECDSA P-256 key file
    p256 = keys.generate("ecdsa-p256")
    (gate.keys / "bob-p256.key").write_bytes(p256.private_bytes)
    add_key(gate, "bob", keys.public_key_pem(p256.public_key))
    recompile(gate)
    control_plane.kubectl("admin", "create", "namespace", "agents", check=False)
    gate.start()
    gate.register()
    try:
        yield gate
    finally:
        gate.unregister()
        gate.stop()


def approve(
    gate: Gate,
    manifest: str,
    signers: Sequence[tuple[str, str]],
    env: Mapping[str, str] | None = None,
) -> str:
    """``manifest`` approved with ``approvalgate approve --signer REF`` by each (approver,
    REF), in a user's environment ``env`` (e.g. SSH_AUTH_SOCK, SOFTHSM2_CONF)."""
    path = gate.work / f"approve-{time.monotonic_ns()}.yaml"
    path.write_text(manifest)
    for approver, ref in signers:
        done = _cli(
            gate,
            env,
            *("approve", str(path), "--bundle", str(gate.signing_bundle(ENV))),
            *("--signer", ref, "--approver", approver, "--in-place"),
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr.startswith("signed "), done.stderr
    return path.read_text()


def _cli(gate: Gate, env: Mapping[str, str] | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        cwd=gate.work,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def tampered(manifest: str, index: int) -> str:
    """``manifest`` with one bit of record ``index``'s signature flipped."""
    obj = yaml.safe_load(manifest)
    envelopes = json.loads(obj["metadata"]["annotations"][ANNOTATION])
    sig = bytearray(base64.b64decode(envelopes[index]["signatures"][0]["sig"]))
    sig[len(sig) // 2] ^= 0x01
    envelopes[index]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    obj["metadata"]["annotations"][ANNOTATION] = json.dumps(envelopes)
    return yaml.safe_dump(obj, sort_keys=False)


def denial(message: str) -> str:
    return (
        'Error from server (Forbidden): error when creating "STDIN": admission webhook '
        f'"{WEBHOOK_NAME}" denied the request: {message}'
    )


def admitted_and_tampered_denied(
    gate: Gate, name: str, signers: Sequence[tuple[str, str]], env: Mapping[str, str] | None = None
) -> None:
    """The run approved by ``signers`` is created; a twin with bob's signature tampered is
    denied with decide()'s message, naming the record whose signature does not verify."""
    manifest = approve(gate, run_manifest(name), signers, env)
    done = gate.kubectl(REQUESTER, "create", "-f", "-", manifest=manifest)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"agentrun.agents.proompteng.ai/{name} created"
    stored = gate.kubectl("admin", "get", "agentrun", name, "-n", "agents", "-o", "json")
    assert len(json.loads(json.loads(stored.stdout)["metadata"]["annotations"][ANNOTATION])) == 2

    twin = approve(gate, run_manifest(f"{name}-tampered"), signers, env)
    bad = tampered(twin, 1)
    expected = gate.verify(bad, REQUESTER)
    assert expected["allowed"] is False
    who = signers[1][0]
    assert (
        f"record 1 by {who}: signature does not verify with a key of {who}" in (expected["message"])
    )
    done = gate.kubectl(REQUESTER, "create", "-f", "-", manifest=bad)
    assert done.returncode == 1, done.stdout
    assert done.stderr.strip() == denial(expected["message"])
    gone = gate.kubectl("admin", "get", "agentrun", f"{name}-tampered", "-n", "agents")
    assert "NotFound" in gone.stderr


def test_an_ed25519_key_file_and_a_p256_key_file(gate: Gate) -> None:
    admitted_and_tampered_denied(
        gate,
        "prov-files",
        [("alice", str(gate.keys / "alice.key")), ("bob", f"file:{gate.keys / 'bob-p256.key'}")],
    )
