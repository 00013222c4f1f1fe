"""The arms of the peers benchmark that need no peer binary (bench/peers/run.py drives them).

- ``none``: no webhook at all, the API server alone (the floor of a create);
- ``constant``: the bare aiohttp TLS server of bench/webhook_bench.py, answering every
  review "allowed" (the floor any webhook pays: TLS, HTTP, the body read). That one
  answers uid "constant", which a real API server rejects ("expected response.uid"), so
  this one (bench/peers/constant_server.py, the same otherwise) copies the request's uid
  into its constant answer with a bytes search: no JSON is parsed;
- ``approvalgate``: the real webhook and queue controller of tests/e2e/gate.py on the
  example repo (environment "staging", namespace "agents"), judging runs signed by two
  Ed25519 approvers as `approvalgate approve` signs them.

The baselines judge nothing, so nothing is denied there (``denies = False``): the driver
expects every create admitted. Their runs carry an approvals annotation of the same shape
and size as approvalgate's (signed by a key nobody trusts), so every arm sends alike.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from approvalgate.approvals import keys, records, view
from approvalgate.approvals.digest import spec_digest
from bench.peers.arms import GROUP, VERSION, Hook
from tests.e2e.controlplane import ControlPlane
from tests.e2e.gate import ENFORCED, ENV, Gate

ROOT = Path(__file__).resolve().parents[2]
CONSTANT_SERVER = Path(__file__).resolve().parent / "constant_server.py"
APPROVERS = ("alice", "bob")  # two of the example's platform-leads: staging needs two
READY_SECONDS = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_spec(name: str) -> dict[str, Any]:
    """The spec every arm's runs carry (the example's agent; the task names the run)."""
    return {
        "agentRef": {"name": "codex-agent"},
        "implementationSpecRef": {"name": "codex-impl-sample"},
        "runtime": {"type": "workflow"},
        "parameters": {"task": f"peers bench {name}"},
    }


def agent_run(
    name: str, namespace: str, spec: dict[str, Any], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AgentRun",
        "metadata": meta,
        "spec": spec,
    }


def approvals(
    signers: Mapping[str, keys.Signer], namespace: str, name: str, spec: dict[str, Any]
) -> str:
    """The approvals annotation: one signed approval by each of ``signers`` for the run
    ``namespace/name`` with ``spec`` (as `approvalgate approve` writes it)."""
    now = datetime.now(UTC)
    envelopes = [
        records.sign(
            records.Claim(
                subject=records.subject_name(namespace, name),
                digest=spec_digest(spec),
                decision="approve",
                approver=approver,
                reason="peers bench",
                issued_at=now,
                expires_at=now + timedelta(hours=6),
                nonce=records.new_nonce(),
                environment=ENV,
            ),
            signer,
        )
        for approver, signer in signers.items()
    ]
    return records.dump_annotation(envelopes)


def _wait_ready(
    url: str, context: ssl.SSLContext, alive: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if alive.poll() is not None:
            raise RuntimeError(
                f"{url}: exited {alive.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(
        f"{url}: not ready in {READY_SECONDS} s:\n{log.read_text(errors='replace')[-3000:]}"
    )


class _Baseline:
    """What the two baselines share: runs with an untrusted approvals annotation."""

    key = ""
    namespace = ""
    denies = False  # nothing is judged: every run must be admitted

    def __init__(self) -> None:
        self._signers = {name: keys.generate() for name in APPROVERS}  # trusted by nobody

    def manifest(self, name: str, valid: bool) -> dict[str, Any]:
        spec = run_spec(name)
        note = {records.ANNOTATION: approvals(self._signers, self.namespace, name, spec)}
        return agent_run(name, self.namespace, spec, note)


class NoneArm(_Baseline):
    key = "none"
    title = "no webhook (the API server alone)"
    checks = "nothing: no webhook is called"
    namespace = "peer-none"

    def start(self, plane: ControlPlane, work: Path) -> None:
        """Nothing to start."""

    def hook(self) -> Hook | None:
        return None

    def pids(self) -> list[int]:
        return []

    def stop(self) -> None:
        """Nothing to stop."""


class ConstantArm(_Baseline):
    key = "constant"
    title = "constant answer (bare aiohttp over TLS)"
    checks = "nothing: reads the body and answers a constant `allowed: true`"
    namespace = "peer-constant"

    def __init__(self) -> None:
        super().__init__()
        self._process: subprocess.Popen[bytes] | None = None
        self._port = 0
        self._ca_bundle = ""

    def start(self, plane: ControlPlane, work: Path) -> None:
        from approvalgate.webhook.devcert import CertificateAuthority

        work.mkdir(parents=True, exist_ok=True)
        authority = CertificateAuthority.generate("peers bench constant CA")
        issued = authority.issue(["127.0.0.1", "localhost"])
        cert, key, log = work / "tls.crt", work / "tls.key", work / "constant.log"
        cert.write_bytes(issued.cert_pem)
        key.write_bytes(issued.key_pem)
        self._ca_bundle = authority.ca_bundle
        self._port = _free_port()
        command = [sys.executable, str(CONSTANT_SERVER), str(self._port)]
        with log.open("ab") as out:
            self._process = subprocess.Popen(
                [*command, str(cert), str(key)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        context = ssl.create_default_context(cadata=authority.cert_pem.decode())
        _wait_ready(f"https://127.0.0.1:{self._port}/readyz", context, self._process, log)

    def hook(self) -> Hook | None:
        return Hook(f"https://127.0.0.1:{self._port}/validate", self._ca_bundle)

    def pids(self) -> list[int]:
        process = self._process
        return [process.pid] if process is not None and process.poll() is None else []

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


class ApprovalgateArm:
    key = "approvalgate"
    title = "approvalgate, 2 Ed25519 approvals"
    checks = (
        "the full decision: 2 Ed25519 signatures over the run's namespace, name and spec "
        "digest by approvers the signed policy bundle names, expiry, environment, replay "
        "against the cluster view of uses"
    )
    namespace = ENFORCED  # the example's enforced namespace ("agents")
    denies = True

    def __init__(self) -> None:
        self._gate: Gate | None = None
        self._signers: dict[str, keys.Signer] = {}
        self._invalid = 0  # invalid runs made: they alternate between the two kinds

    def start(self, plane: ControlPlane, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        gate = Gate(plane, work)
        self._gate = gate  # stop() stops whatever started, even when start fails half-way
        gate.prepare()
        self._signers = {
            name: keys.signer_from_pem((gate.keys / f"{name}.key").read_bytes())
            for name in APPROVERS
        }
        # with the controller: the example's staging requires the cluster view, and the
        # controller records each run's use (its finalizer) as in production
        gate.start(controller=True)

    def hook(self) -> Hook | None:
        assert self._gate is not None, "start() first"
        return Hook(f"https://127.0.0.1:{self._gate.port}/validate", self._gate.ca.ca_bundle)

    def pids(self) -> list[int]:
        """The webhook process only (the queue controller runs beside it, not counted)."""
        process = self._gate.process if self._gate is not None else None
        return [process.pid] if process is not None and process.poll() is None else []

    def side_pids(self) -> list[int]:
        """The queue controller's processes: beside the webhook, not its cost per request
        (it records each admitted run's use afterwards), reported apart by the driver."""
        gate = self._gate
        if gate is None:
            return []
        return [
            c.process.pid
            for c in gate.controllers
            if c.process is not None and c.process.poll() is None
        ]

    def manifest(self, name: str, valid: bool) -> dict[str, Any]:
        """Valid: 2 approvals over this run. Invalid, alternately: one approval missing,
        or both signed over another spec."""
        spec = run_spec(name)
        signers = self._signers
        signed = spec
        if not valid:
            self._invalid += 1
            if self._invalid % 2:
                signers = dict(list(signers.items())[:1])
            else:
                signed = {**spec, "parameters": {"task": "something else"}}
        note = {records.ANNOTATION: approvals(signers, self.namespace, name, signed)}
        run = agent_run(name, self.namespace, spec, note)
        # staging requires the cluster view: a run judged by records holds the approval-use
        # finalizer until its use is recorded (`approvalgate approve` adds it)
        run["metadata"]["finalizers"] = [view.USE_FINALIZER]
        return run

    def stop(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.stop()
