"""What the approval queue's end-to-end tests share: a Gate (webhook with its cluster view,
queue controllers, the chart's RBAC) and the people's commands, each run as a real
`approvalgate` process with that person's kubeconfig (static tokens, real RBAC).

Every test names its runs with its own prefix: the enforced namespace "agents" (the one the
example's policies select) is shared by the e2e modules of a session.
"""

from __future__ import annotations

import json
import queue
import secrets
import signal
import ssl
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from approvalgate.approvals import view
from tests.e2e.controlplane import GATE_NAMESPACE, ControlPlane
from tests.e2e.gate import CLI, ENFORCED, ENV, NOT_ENFORCED, Gate, eventually, run_manifest

G = view.GROUP
REQUESTS, DECISIONS, USES = (f"{kind}.{G}" for kind in (view.REQUESTS, view.DECISIONS, view.USES))
LINE_TIMEOUT = 60.0  # generous: a line is expected long before; never a speed assertion


def queue_gate(plane: ControlPlane, work: Path) -> Iterator[Gate]:
    """A Gate for a module: namespaces, webhook (its view), one controller, registered."""
    gate = Gate(plane, work)
    gate.prepare()
    for ns in (ENFORCED, NOT_ENFORCED, GATE_NAMESPACE, "argocd"):
        plane.kubectl("admin", "create", "namespace", ns, check=False)
    gate.start()
    gate.register()
    try:
        yield gate
    finally:
        gate.unregister()
        for process in gate.controllers:
            print(f"--- controller {process.identity} (last lines) ---\n{process.log(3000)}")
        gate.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@dataclass
class People:
    """The queue's commands as the people of the e2e plane run them."""

    gate: Gate

    def run(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``approvalgate ARGS --kubeconfig <user's>`` as a process (not checked)."""
        return subprocess.run(
            [*CLI, *args, "--kubeconfig", str(self.gate.plane.kubeconfig(user))],
            stdin=subprocess.DEVNULL,  # no terminal: approvals name the pin they read
            capture_output=True,
            text=True,
            cwd=self.gate.work,
            timeout=120,
        )

    def ok(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.run(user, *args)
        assert done.returncode == 0, f"approvalgate {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def run_file(self, name: str, *, agent: str = "codex-agent", task: str = "") -> Path:
        path = self.gate.work / f"run-{name}-{secrets.token_hex(2)}.yaml"
        # the spec of gate.approve(run_manifest(name)): a record signed on the file and one
        # filed on the request approve the same spec
        text = run_manifest(name, agent=agent, finalizer=False)
        if task:
            text = run_manifest(name, agent=agent, task=task, finalizer=False)
        path.write_text(text)
        return path

    def request(
        self,
        name: str,
        *,
        user: str = "requester",
        agent: str = "codex-agent",
        reason: str = "",
        task: str = "",
    ) -> dict[str, Any]:
        """``approvalgate request`` of a run named ``name`` (its task ``task``, else the
        example's): the created request (JSON)."""
        done = self.ok(
            user,
            "request",
            str(self.run_file(name, agent=agent, task=task)),
            "--env",
            ENV,
            "--reason",
            reason or f"e2e {name}",
            "-o",
            "json",
        )
        created: dict[str, Any] = json.loads(done.stdout)
        return created

    def decide(
        self,
        command: str,
        approver: str,
        name: str,
        *extra: str,
        user: str = "",
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``approvalgate approve|reject|withdraw --request agents/NAME`` signed with
        ``approver``'s key, filed as ``user`` (the approver by default). An approval names
        the pin ``status`` showed ``user`` just before (no terminal here), unless ``extra``
        does."""
        if command == "approve" and "--expect" not in extra:
            extra = ("--expect", self.pin(name, user or approver), *extra)
        args = (
            command,
            "--request",
            f"{ENFORCED}/{name}",
            "--key",
            str(self.gate.keys / f"{approver}.key"),
            "--approver",
            approver,
            *extra,
        )
        return (self.ok if check else self.run)(user or approver, *args)

    def pin(self, name: str, user: str) -> str:
        """The pin ``approvalgate status agents/NAME`` shows ``user``."""
        done = self.run(user, "status", f"{ENFORCED}/{name}", "-o", "json")
        assert done.returncode in (0, 1), done.stderr
        pin: str = json.loads(done.stdout)["pin"]
        return pin

    def approve(self, name: str, *approvers: str) -> None:
        for approver in approvers:
            self.decide("approve", approver, name)


# --- reading the cluster (as admin) ------------------------------------------------------------


def get(gate: Gate, resource: str, name: str, namespace: str = ENFORCED) -> dict[str, Any] | None:
    done = gate.kubectl("admin", "get", resource, name, "-n", namespace, "-o", "json")
    if done.returncode != 0:
        assert "NotFound" in done.stderr, done.stderr
        return None
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def items(gate: Gate, resource: str, namespace: str = ENFORCED) -> list[dict[str, Any]]:
    done = gate.kubectl("admin", "get", resource, "-n", namespace, "-o", "json")
    assert done.returncode == 0, done.stderr
    found: list[dict[str, Any]] = json.loads(done.stdout)["items"]
    return found


def status(gate: Gate, name: str) -> dict[str, Any]:
    request = get(gate, REQUESTS, name) or {}
    found: dict[str, Any] = request.get("status") or {}
    return found


def phase(gate: Gate, name: str) -> str:
    return str(status(gate, name).get("phase") or "")


def wait_phase(gate: Gate, name: str, wanted: str, timeout: float = 90) -> dict[str, Any]:
    try:
        eventually(f"request {name} is {wanted}", lambda: phase(gate, name) == wanted, timeout)
    except AssertionError as error:
        raise AssertionError(f"{error}; its status: {json.dumps(status(gate, name))}") from None
    return status(gate, name)


def runs_named(gate: Gate, name: str, namespace: str = ENFORCED) -> list[dict[str, Any]]:
    return [r for r in items(gate, "agentruns", namespace) if r["metadata"]["name"] == name]


def events_of(gate: Gate, name: str) -> list[dict[str, Any]]:
    """The events.k8s.io Events regarding ApprovalRequest ``name``."""
    return [
        e
        for e in items(gate, "events.events.k8s.io")
        if (e.get("regarding") or {}).get("name") == name
        and (e.get("regarding") or {}).get("kind") == "ApprovalRequest"
    ]


def decisions_of(gate: Gate, name: str) -> list[dict[str, Any]]:
    return sorted(
        (d for d in items(gate, DECISIONS) if d["spec"]["requestName"] == name),
        key=lambda d: int(d["metadata"]["resourceVersion"]),
    )


def delete_run(gate: Gate, name: str, user: str = "admin", timeout: float = 90) -> None:
    """Delete the run and wait until it is gone (the controller records its use and then
    releases the finalizer)."""
    done = gate.kubectl(user, "delete", "agentrun", name, "-n", ENFORCED, "--wait=false")
    assert done.returncode == 0, done.stderr
    eventually(f"run {name} is gone", lambda: not runs_named(gate, name), timeout=timeout)


def apply(gate: Gate, user: str, manifest: str | dict[str, Any], *args: str) -> Any:
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    return gate.kubectl(user, "create", "-f", "-", *args, manifest=text)


def to_yaml(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


# --- the webhook's own endpoint -----------------------------------------------------------------


def review(gate: Gate, request: dict[str, Any]) -> dict[str, Any]:
    """POST one AdmissionReview to the running webhook process (as the API server would)."""
    context = ssl.create_default_context(cafile=str(gate.work / "ca.crt"))
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    sent = urllib.request.Request(
        f"https://127.0.0.1:{gate.port}/validate",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(sent, context=context, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())["response"]
        return answer


# --- pending --watch ------------------------------------------------------------------------------


class Watch:
    """``approvalgate pending --watch -o json`` as a process; its stdout line by line."""

    def __init__(self, gate: Gate, user: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [
                *CLI,
                "pending",
                "--watch",
                "-o",
                "json",
                *args,
                "--kubeconfig",
                str(gate.plane.kubeconfig(user)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=gate.work,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        stream = self.process.stdout
        assert stream is not None
        threading.Thread(target=lambda: [self.lines.put(x) for x in stream], daemon=True).start()

    def next_about(self, name: str, timeout: float = LINE_TIMEOUT) -> dict[str, Any]:
        """The next line about request ``name`` (lines about others are skipped)."""
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while not deadline.is_set():
                try:
                    line = self.lines.get(timeout=0.5)
                except queue.Empty:
                    if self.process.poll() is not None:
                        raise AssertionError(
                            f"pending --watch exited {self.process.returncode}: "
                            f"{self.process.stderr.read() if self.process.stderr else ''}"
                        ) from None
                    continue
                event: dict[str, Any] = json.loads(line)
                if event["request"]["name"] == name:
                    return event
        finally:
            timer.cancel()
        raise AssertionError(f"no line about {name} from pending --watch in {timeout:.0f}s")

    def stop(self) -> tuple[int, str]:
        """SIGINT (as Ctrl-C): its exit code and stderr."""
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        stderr = self.process.stderr.read() if self.process.stderr else ""
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code, stderr


@pytest.fixture
def people(gate: Gate) -> People:
    return People(gate)
