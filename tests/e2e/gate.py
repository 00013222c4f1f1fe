"""The real webhook in front of the real API server, registered the way the chart does it.

- The example policy repo is copied and its approvers re-keyed with fresh Ed25519 keys
  (the committed example holds public keys only), then compiled with the real CLI;
- `approvalgate webhook serve` runs as a process over TLS with a test CA;
- the ValidatingWebhookConfiguration comes from `helm template charts/approvalgate`, with
  only its clientConfig switched to `url: https://127.0.0.1:<port>/validate` + the test CA.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from approvalgate.webhook.devcert import CertificateAuthority
from tests.e2e.controlplane import ControlPlane
from tests.integration.harness import write_atomic
from tests.support.paths import ROOT
from tests.support.tools import pinned_binary

EXAMPLE = ROOT / "examples" / "gitops-repo"
CHART = ROOT / "charts" / "approvalgate"
ENV = "staging"  # its policies select the namespace "agents"
OTHER_ENV = "prod"  # also compiled: what `Gate.enforcing` switches the webhook to
# every namespace is enforced; the e2e copy of the example excludes "sandbox" by name
ENFORCED, NOT_ENFORCED = "agents", "sandbox"
WEBHOOK_NAME = "agentruns.approvalgate.proompteng.ai"
CLI = [sys.executable, "-m", "approvalgate"]
APPROVERS = {
    "alice": "platform-leads,agents-admin",
    "bob": "platform-leads",
    "dana": "agents-admin",
    "oncall": "sre",
}


def helm() -> Path:
    return pinned_binary("helm", "helm")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gate:
    plane: ControlPlane
    work: Path
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def repo(self) -> Path:
        return self.work / "repo"

    @property
    def keys(self) -> Path:
        return self.work / "keys"

    @property
    def bundle(self) -> Path:
        return self.work / "rendered" / ENV / "bundle.json"

    # --- setup ---------------------------------------------------------------------------

    def prepare(self) -> None:
        shutil.copytree(EXAMPLE, self.repo, ignore=shutil.ignore_patterns("rendered"))
        config = self.repo / "approvalgate.yaml"
        text = config.read_text()
        assert f"  {ENV}:\n" in text
        config.write_text(
            text.replace(f"  {ENV}:\n", f"  {ENV}:\n    excludeNamespaces: [{NOT_ENFORCED}]\n", 1)
        )
        for name, groups in APPROVERS.items():
            self.cli(
                "keygen", name, "--out", str(self.keys), "--groups", groups, "--usernames", name
            )
            shutil.copy(self.keys / f"{name}.yaml", self.repo / "approvers" / f"{name}.yaml")
        for env in (ENV, OTHER_ENV):
            self.cli("compile", str(self.repo), "--env", env, "--out", str(self.work / "rendered"))
        self.ca = CertificateAuthority.generate("approvalgate e2e CA")
        issued = self.ca.issue(["127.0.0.1", "localhost"])
        (self.work / "tls.crt").write_bytes(issued.cert_pem)
        (self.work / "tls.key").write_bytes(issued.key_pem)
        (self.work / "ca.crt").write_bytes(self.ca.cert_pem)

    def start(self) -> None:
        with (self.work / "webhook.log").open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [
                    *CLI,
                    "webhook",
                    "serve",
                    "--bundle",
                    str(self.bundle),
                    "--tls-cert",
                    str(self.work / "tls.crt"),
                    "--tls-key",
                    str(self.work / "tls.key"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--metrics-port",
                    "0",
                    # the cluster view (clusterView: required): read as admin until the e2e
                    # plane has the chart's read-only identity for the webhook
                    "--kubeconfig",
                    str(self.plane.kubeconfig("admin")),
                ],
                stdout=log,
                stderr=log,
                cwd=self.work,
            )
        deadline = time.monotonic() + 30
        context = ssl.create_default_context(cafile=str(self.work / "ca.crt"))
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"webhook exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(
                    f"https://127.0.0.1:{self.port}/readyz", context=context, timeout=2
                ) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"webhook not ready in 30 s: {self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def served_generation(self) -> str:
        """The generation of the bundle the running webhook has loaded (from /readyz)."""
        context = ssl.create_default_context(cafile=str(self.work / "ca.crt"))
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{self.port}/readyz", context=context, timeout=2
            ) as response:
                text: str = response.read().decode()
        except OSError:
            return ""
        return text.removeprefix("ready: bundle ").strip()

    def compile_changed(self, name: str, change: Callable[[Path], None], env: str = ENV) -> Path:
        """Environment ``env``'s bundle compiled from a copy of the repo that ``change``
        edits (copy and output under ``work/name``; the repo itself stays as it is): serve it
        with :meth:`serving`."""
        repo = self.work / name / "repo"
        shutil.copytree(self.repo, repo)
        change(repo)
        self.cli("compile", str(repo), "--env", env, "--out", str(self.work / name / "rendered"))
        return self.work / name / "rendered" / env / "bundle.json"

    @contextmanager
    def enforcing(self, env: str) -> Iterator[None]:
        """The webhook enforces environment ``env``'s compiled bundle for the block, then
        ``ENV``'s again."""
        with self.serving(self.work / "rendered" / env / "bundle.json"):
            yield

    @contextmanager
    def serving(self, bundle: Path) -> Iterator[None]:
        """The webhook enforces the compiled ``bundle`` for the block (the served file is
        replaced, as a ConfigMap update does), then the one it served before."""
        own = self.bundle.read_text()
        other = bundle.read_text()
        try:
            write_atomic(self.bundle, other)
            self._wait_for_generation(json.loads(other)["generation"])
            yield
        finally:
            write_atomic(self.bundle, own)
            self._wait_for_generation(json.loads(own)["generation"])

    def _wait_for_generation(self, generation: str) -> None:
        deadline = time.monotonic() + 30
        while self.served_generation() != generation:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the webhook never loaded bundle {generation}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        path = self.work / "webhook.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def chart_render(self, *extra: str) -> list[dict[str, Any]]:
        values = self.work / "rendered" / ENV / "approvalgate-values.yaml"
        out = subprocess.run(
            [
                str(helm()),
                "template",
                "approvalgate",
                str(CHART),
                "-n",
                "approvalgate-system",
                "-f",
                str(values),
                *extra,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return [d for d in yaml.safe_load_all(out.stdout) if d]

    def webhook_configuration(self) -> dict[str, Any]:
        (config,) = [
            d for d in self.chart_render() if d["kind"] == "ValidatingWebhookConfiguration"
        ]
        config["metadata"].get("annotations", {}).pop("cert-manager.io/inject-ca-from", None)
        for hook in config["webhooks"]:
            hook["clientConfig"] = {
                "url": f"https://127.0.0.1:{self.port}/validate",
                "caBundle": self.ca.ca_bundle,
            }
        return config

    def register(self) -> None:
        self.plane.kubectl(
            "admin", "apply", "-f", "-", input=json.dumps(self.webhook_configuration())
        )
        # The API server picks up webhook configurations asynchronously: wait until a
        # request in the enforced namespace is actually judged by us.
        probe = run_manifest("registration-probe")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = self.plane.kubectl(
                "requester", "apply", "--dry-run=server", "-f", "-", input=probe, check=False
            )
            if done.returncode != 0 and WEBHOOK_NAME in done.stderr:
                return
            time.sleep(0.2)
        raise RuntimeError("the webhook configuration never took effect")

    def unregister(self) -> None:
        config = self.webhook_configuration()
        self.plane.kubectl(
            "admin",
            "delete",
            "validatingwebhookconfiguration",
            config["metadata"]["name"],
            "--ignore-not-found",
        )

    # --- actions -------------------------------------------------------------------------

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=self.work)
        if check and done.returncode != 0:
            raise AssertionError(f"approvalgate {' '.join(args)}: {done.stdout}{done.stderr}")
        return done

    def approve(
        self, manifest: str, *approvers: str, extra: tuple[str, ...] = (), env: str = ENV
    ) -> str:
        """``manifest`` approved by each of ``approvers`` for environment ``env``."""
        path = self.work / f"approve-{time.monotonic_ns()}.yaml"
        path.write_text(manifest)
        for name in approvers:
            self.cli(
                "approve",
                str(path),
                "--env",
                env,
                "--key",
                str(self.keys / f"{name}.key"),
                "--approver",
                name,
                "--in-place",
                *extra,
            )
        return path.read_text()

    def verify(self, manifest: str, user: str) -> dict[str, Any]:
        path = self.work / f"verify-{time.monotonic_ns()}.yaml"
        path.write_text(manifest)
        done = self.cli(
            "verify",
            str(path),
            "--bundle",
            str(self.bundle),
            "--user",
            user,
            "--output",
            "json",
            check=False,
        )
        report: list[dict[str, Any]] = json.loads(done.stdout)
        return report[0]

    def kubectl(
        self, user: str, *args: str, manifest: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(user, *args, input=manifest, check=False)


def pod_bound_token(plane: ControlPlane, namespace: str, account: str, pod: str) -> str:
    """A token of ServiceAccount ``account`` bound to a Pod ``pod`` running as it, as the
    kubelet would mount it. No kubelet runs: the Pod object stays Pending, which is all the
    API server needs to bind a token to it (and to put its name and uid in userInfo.extra)."""
    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod},
            "spec": {
                "serviceAccountName": account,
                "automountServiceAccountToken": False,
                "containers": [{"name": "main", "image": "registry.invalid/none:0"}],
            },
        },
    ]
    plane.kubectl(
        "admin",
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
    )
    done = plane.kubectl(
        "admin",
        "create",
        "token",
        account,
        "-n",
        namespace,
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        pod,
    )
    return done.stdout.strip()


def run_manifest(
    name: str,
    namespace: str = ENFORCED,
    *,
    agent: str = "codex-agent",
    task: str = "Update onboarding flow",
    generate: bool = False,
) -> str:
    """An AgentRun like the example's, as a requester writes it."""
    meta = f"  generateName: {name}-\n" if generate else f"  name: {name}\n"
    return (
        "apiVersion: agents.proompteng.ai/v1alpha1\nkind: AgentRun\nmetadata:\n"
        f"{meta}  namespace: {namespace}\n"
        "spec:\n  agentRef:\n    name: " + agent + "\n"
        "  implementationSpecRef:\n    name: codex-impl-sample\n"
        "  runtime:\n    type: workflow\n    config:\n      ttlSecondsAfterFinished: 600\n"
        "  parameters:\n    repository: proompteng/lab\n"
        f"    task: '{task}'\n"
    )
