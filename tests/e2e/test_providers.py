"""Issue 17, done-when 1: approvers using different providers, on the real API server.

A run approved by two approvers whose keys live in different places is admitted by the real
webhook behind the real kube-apiserver; the same run with one of the two signatures tampered
is denied with exactly ``decide()``'s message for the same object, bundle and cluster view.
Every approval is made with the CLI the way users make it (``approvalgate approve
--signer REF``); the Approvers hold the public keys the providers gave.

- a key file and a SoftHSM2 token: alice signs with her Ed25519 key file (``keygen``'s
  default), erin with an ECDSA P-256 key generated inside a SoftHSM2 token (PKCS#11,
  ``--signer hsm:2?label=...``; her Approver written by ``keygen --import hsm:...`` from
  the token's public key; the private key is not extractable);
- an ssh-agent key and a P-256 key file: frank signs with an ``sk-ssh-ed25519`` security
  key held by a real ``ssh-agent`` (OpenSSH's software security key; his Approver written
  by ``keygen --import`` from the ``.pub`` file, as git's SSH signing is set up), carol with
  an ECDSA P-256 key file (``keygen --type ecdsa-p256``);
- two key files of different types (Ed25519 and P-256);
- a plain SSH key in the agent listed twice in a served bundle, its PEM retired: its
  approval counts in neither form;
- a security key whose Approver requires user verification: its signature without the PIN
  (its key file's flags edited) is refused by ``approve`` and by the webhook, with it counts.

In every case the same run with either signature tampered is denied.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from approvalgate.approvals.keys import load_public_key
from approvalgate.approvals.policy import bundle_generation, dump_bundle
from approvalgate.approvals.records import ANNOTATION
from tests.e2e.controlplane import ControlPlane
from tests.e2e.gate import CLI, ENFORCED, ENV, Gate, run_manifest
from tests.e2e.test_attacks import Signer, denial, expected_message
from tests.support import softhsm, ssh

pytestmark = pytest.mark.e2e
REQUESTER = "requester"


def keygen(
    gate: Gate,
    name: str,
    *how: str,
    groups: str = "platform-leads",
    env: Mapping[str, str] | None = None,
) -> None:
    """``approvalgate keygen NAME ...`` as the approver runs it; the Approver into the repo."""
    done = _cli(
        gate,
        env,
        *("keygen", name, "--out", str(gate.keys), "--groups", groups),
        *("--usernames", name, *how),
    )
    assert done.returncode == 0, done.stderr
    shutil.copy(gate.keys / f"{name}.yaml", gate.repo / "approvers" / f"{name}.yaml")


def recompile(gate: Gate) -> None:
    """Serve the edited repo's bundle (Gate.recompile: signed, next revision) and sign
    approvals with it (``approve --bundle``)."""
    gate.recompile()
    shutil.copy(gate.work / "rendered" / ENV / "bundle.json", gate.signing_bundle(ENV))


@dataclass
class Providers:
    gate: Gate
    token: softhsm.SoftHSM
    erin: str
    """erin's signer REF: her key, generated inside the SoftHSM2 token."""
    agent: ssh.Agent
    frank: str
    """frank's signer REF: his security key, held by the ssh-agent."""


@pytest.fixture(scope="module")
def providers(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Providers]:
    """The example's gate with three more platform leads: carol (a P-256 key file; also an
    agents admin, as alice is), erin (a key in a SoftHSM2 token) and frank (a security key
    in a real ssh-agent)."""
    gate = Gate(control_plane, tmp_path_factory.mktemp("providers"))
    gate.prepare()
    with pytest.MonkeyPatch.context() as env, ssh.agent(gate.work) as agent:
        token = softhsm.SoftHSM.create(gate.work / "softhsm2", "approvers", env.setenv)
        token.generate_ec(2, "secp256r1")
        frank_key = ssh.keygen(gate.work, "frank-sk", "sk-ssh-ed25519@openssh.com")
        agent.add(frank_key)
        # the example also requires one agents admin for every run in its namespace
        keygen(gate, "carol", "--type", "ecdsa-p256", groups="platform-leads,agents-admin")
        keygen(gate, "erin", "--import", token.ref(2), env=token.signer_env())
        keygen(gate, "frank", "--import", f"{frank_key}.pub")
        line = " ".join(Path(f"{frank_key}.pub").read_text().split()[:2])
        assert line in (gate.repo / "approvers" / "frank.yaml").read_text()
        recompile(gate)
        gate.plane.kubectl("admin", "create", "namespace", ENFORCED, check=False)
        gate.start()
        gate.register()
        try:
            yield Providers(gate, token, token.ref(2), agent, f"ssh-agent:{frank_key}.pub")
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


def admitted_and_tampered_denied(
    gate: Gate, name: str, signers: Sequence[tuple[str, str]], env: Mapping[str, str] | None = None
) -> None:
    """The run approved by ``signers`` is created; a twin with either signature tampered is
    denied with decide()'s message, naming the record whose signature does not verify."""
    manifest = approve(gate, run_manifest(name), signers, env)
    done = gate.kubectl(REQUESTER, "create", "-f", "-", manifest=manifest)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"agentrun.agents.proompteng.ai/{name} created"
    stored = gate.kubectl("admin", "get", "agentrun", name, "-n", ENFORCED, "-o", "json")
    assert len(json.loads(json.loads(stored.stdout)["metadata"]["annotations"][ANNOTATION])) == 2

    for index, (who, _) in enumerate(signers):
        twin = f"{name}-tampered-{index}"
        bad = tampered(approve(gate, run_manifest(twin), signers, env), index)
        done = gate.kubectl(REQUESTER, "create", "-f", "-", manifest=bad)
        assert done.returncode == 1, done.stdout
        expected = expected_message(Signer(gate), yaml.safe_load(bad), REQUESTER)
        assert f"record {index} by {who}: signature does not verify with a key of {who}" in (
            expected
        )
        assert done.stderr.strip() == denial(expected)
        gone = gate.kubectl("admin", "get", "agentrun", twin, "-n", ENFORCED)
        assert "NotFound" in gone.stderr


def test_a_key_file_and_a_softhsm2_token(providers: Providers) -> None:
    gate = providers.gate
    admitted_and_tampered_denied(
        gate,
        "prov-hsm",
        [("alice", str(gate.keys / "alice.key")), ("erin", providers.erin)],
        providers.token.signer_env(),
    )


def test_an_ssh_agent_security_key_and_a_p256_key_file(providers: Providers) -> None:
    gate = providers.gate
    admitted_and_tampered_denied(
        gate,
        "prov-ssh",
        [("frank", providers.frank), ("carol", str(gate.keys / "carol.key"))],
        providers.agent.env(),
    )


def test_two_key_files_of_different_types(providers: Providers) -> None:
    gate = providers.gate
    admitted_and_tampered_denied(
        gate,
        "prov-files",
        [("alice", str(gate.keys / "alice.key")), ("carol", f"file:{gate.keys / 'carol.key'}")],
    )


def test_a_key_retired_in_one_form_approves_in_no_form(providers: Providers) -> None:
    """grace's plain SSH key, in the real ssh-agent, listed twice in the served bundle: its
    PEM retired (a notAfter), its OpenSSH line without a window (a bundle compiled before
    compile refused one key listed twice; served signed). Her approval through the agent,
    beside carol's, is not counted: the key's window is the one its entries share (the
    webhook admitted the run before)."""
    gate = providers.gate
    key = ssh.keygen(gate.work, "grace-ssh", "ssh-ed25519")
    providers.agent.add(key)
    private = serialization.load_ssh_private_key(key.read_bytes(), None)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    window = {"notBefore": "2025-01-01T00:00:00Z", "notAfter": "2026-01-01T00:00:00Z"}
    approver = {
        "apiVersion": "gates.proompteng.ai/v1alpha1",
        "kind": "Approver",
        "metadata": {"name": "grace"},
        "spec": {
            "usernames": ["grace"],
            "groups": ["platform-leads"],
            "keys": [{"publicKey": pem.decode(), **window}],
        },
    }
    (gate.repo / "approvers" / "grace.yaml").write_text(yaml.safe_dump(approver))
    recompile(gate)
    line = " ".join(Path(f"{key}.pub").read_text().split()[:2])
    bundle = json.loads(gate.signing_bundle(ENV).read_text())
    (grace,) = [a for a in bundle["approvers"] if a["name"] == "grace"]
    grace["keys"].append({"keyid": load_public_key(line).keyid, "publicKey": line})
    bundle["generation"] = bundle_generation(bundle)
    edited = gate.work / "retired-in-one-form.json"
    edited.write_text(dump_bundle(bundle))
    shutil.copy(edited, gate.signing_bundle(ENV))
    with gate.serving(edited):
        signers = [("grace", f"ssh-agent:{key}.pub"), ("carol", str(gate.keys / "carol.key"))]
        manifest = approve(gate, run_manifest("prov-retired"), signers, providers.agent.env())
        done = gate.kubectl(REQUESTER, "create", "-f", "-", manifest=manifest)
        assert done.returncode == 1, done.stdout
        assert "record 0 by grace: signature does not verify with a key of grace valid at" in (
            done.stderr
        ), done.stderr


def test_a_security_key_requiring_user_verification_counts_only_with_the_pin(
    providers: Providers,
) -> None:
    """henry's Approver says ``userVerification: required`` of his security key (made with
    ``-O verify-required``). Whoever holds his key handle file, its stored flags edited to
    touch only, signs through a real ssh-agent without the PIN: ``approve --bundle`` says so
    and writes nothing; a record made without that check (``approve --env``, no bundle) is
    denied by the webhook with decide()'s message naming the key, also when the served
    bundle lists the key again without the option (made by hand: compile refuses it). The
    same key with its PIN (the agent asks through its askpass) approves (sixth red-team
    pass; the webhook admitted the run signed without the PIN before)."""
    gate = providers.gate
    key = ssh.keygen(gate.work, "henry-sk", "sk-ssh-ed25519@openssh.com", "-O", "verify-required")
    stolen = ssh.with_flags(key, gate.work / "henry-stolen", ssh.SK_USER_PRESENCE)
    providers.agent.add(key)
    line = " ".join(Path(f"{key}.pub").read_text().split()[:2])
    approver = {
        "apiVersion": "gates.proompteng.ai/v1alpha1",
        "kind": "Approver",
        "metadata": {"name": "henry"},
        "spec": {
            "usernames": ["henry"],
            "groups": ["platform-leads"],
            "keys": [{"publicKey": line, "userVerification": "required"}],
        },
    }
    (gate.repo / "approvers" / "henry.yaml").write_text(yaml.safe_dump(approver))
    recompile(gate)
    bundle = json.loads(gate.signing_bundle(ENV).read_text())
    (henry,) = [a for a in bundle["approvers"] if a["name"] == "henry"]
    assert henry["keys"][0]["userVerification"] == "required"
    carol = ("carol", str(gate.keys / "carol.key"))
    henry_ref = f"ssh-agent:{key}.pub"
    (gate.work / "thief").mkdir()
    with ssh.agent(gate.work / "thief") as thief:
        thief.add(stolen)
        path = gate.work / "uv-refused.yaml"
        path.write_text(run_manifest("prov-uv-no-pin"))
        before = path.read_text()
        done = _cli(
            gate,
            thief.env(),
            *("approve", str(path), "--bundle", str(gate.signing_bundle(ENV))),
            *("--signer", henry_ref, "--approver", "henry", "--in-place"),
        )
        assert done.returncode == 1, done.stderr
        assert "the security key signed without user verification (no PIN)" in done.stderr
        assert "nothing was written" in done.stderr
        assert path.read_text() == before
        done = _cli(
            gate,
            thief.env(),
            *("approve", str(path), "--env", ENV, "--signer", henry_ref),
            *("--approver", "henry", "--in-place"),
        )
        assert done.returncode == 0, done.stderr
    manifest = approve(gate, path.read_text(), [carol])
    expected = expected_message(Signer(gate), yaml.safe_load(manifest), REQUESTER)
    assert "record 0 by henry: signed with henry's security key sk-ssh-ed25519" in expected
    assert "without user verification (no PIN)" in expected
    done = gate.kubectl(REQUESTER, "create", "-f", "-", manifest=manifest)
    assert done.returncode == 1, done.stdout
    assert done.stderr.strip() == denial(expected)
    # the key listed again, without the option, in a served bundle made by hand
    bundle = json.loads(gate.signing_bundle(ENV).read_text())
    (henry,) = [a for a in bundle["approvers"] if a["name"] == "henry"]
    henry["keys"].append({"keyid": load_public_key(line).keyid, "publicKey": line})
    bundle["generation"] = bundle_generation(bundle)
    edited = gate.work / "uv-listed-twice.json"
    edited.write_text(dump_bundle(bundle))
    with gate.serving(edited):
        done = gate.kubectl(REQUESTER, "create", "-f", "-", manifest=manifest)
        assert done.returncode == 1, done.stdout
        assert "record 0 by henry: signed with henry's security key" in done.stderr
        assert "without user verification (no PIN)" in done.stderr
    # with the PIN
    signers = [("henry", henry_ref), carol]
    manifest = approve(gate, run_manifest("prov-uv-pin"), signers, providers.agent.env())
    done = gate.kubectl(REQUESTER, "create", "-f", "-", manifest=manifest)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "agentrun.agents.proompteng.ai/prov-uv-pin created"
