"""The real webhook in front of the real API server, registered the way the chart does it.

- The example policy repo is copied and its approvers re-keyed with fresh Ed25519 keys
  (the committed example holds public keys only), then compiled with the real CLI;
- `approvalgate webhook serve` runs as a process over TLS with a test CA;
- the ValidatingWebhookConfiguration comes from `helm template charts/approvalgate`, with
  only its clientConfig switched to `url: https://127.0.0.1:<port>/validate` + the test CA.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from approvalgate.approvals.view import USE_FINALIZER
from approvalgate.webhook.devcert import CertificateAuthority
from tests.e2e.controlplane import GATE_NAMESPACE, QUEUE_CONTROLLER, WEBHOOK_SA, ControlPlane
from tests.support import bundle_signing
from tests.support.paths import ROOT
from tests.support.ports import free_port as _free_port
from tests.support.tools import pinned_binary

EXAMPLE = ROOT / "examples" / "gitops-repo"
CHART = ROOT / "charts" / "approvalgate"
ENV = "staging"  # its policies select the namespace "agents"
OTHER_ENV = "prod"  # also compiled: what `Gate.enforcing` switches the webhook to
# every namespace is enforced; the e2e copy of the example excludes "sandbox" by name
ENFORCED, NOT_ENFORCED = "agents", "sandbox"
WEBHOOK_NAME = "agentruns.approvalgate.proompteng.ai"
CLI = [sys.executable, "-m", "approvalgate"]
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
# the chart's ClusterRoles for people, bound here to the groups of tests/e2e/controlplane.py
PEOPLE = {"approvalgate-requester": "agents-users", "approvalgate-approver": "approvers"}
LEASE = "approvalgate-controller"  # the chart's Lease name (its Role names it)
VIEW_MAX_AGE = 6  # seconds: the webhook's --view-max-age and the bundles' useSettleSeconds
APPROVERS = {
    "alice": "platform-leads,agents-admin",
    "bob": "platform-leads",
    "dana": "agents-admin",
    "oncall": "sre",
}


def helm() -> Path:
    return pinned_binary("helm", "helm")


def eventually(what: str, condition: Callable[[], Any], timeout: float = 90) -> Any:
    """Wait for ``condition`` to be truthy and return it (a generous deadline: nothing in
    the e2e tests measures speed)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.2)


def _http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    """(status, body) of a plain-HTTP GET on loopback; (0, "") when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode(errors="replace")
    except OSError:
        return 0, ""


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` in Prometheus text ``text`` whose labels include
    ``labels`` (0 when there is none)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        found = dict(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', rest))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


@dataclass
class QueueController:
    """One `approvalgate controller` process, as the chart's ServiceAccount (its RBAC only),
    electing a leader on the chart's Lease in approvalgate-system. The Lease is short here
    (a takeover in seconds) and requests are looked at every 2 s."""

    gate: Gate
    identity: str
    bundle: Path
    extra: tuple[str, ...] = ()
    metrics_port: int = field(default_factory=_free_port)
    health_port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.gate.work / f"controller-{self.identity}.log"

    def start(self, wait: bool = True) -> QueueController:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *CLI,
                    "controller",
                    "--bundle",
                    str(self.bundle),
                    *self.gate.trust_args(),
                    "--kubeconfig",
                    str(self.gate.plane.kubeconfig(QUEUE_CONTROLLER)),
                    "--lease-namespace",
                    GATE_NAMESPACE,
                    "--lease-name",
                    LEASE,
                    "--identity",
                    self.identity,
                    "--host",
                    "127.0.0.1",
                    "--metrics-port",
                    str(self.metrics_port),
                    "--health-port",
                    str(self.health_port),
                    "--lease-duration",
                    "4",
                    "--renew-deadline",
                    "3",
                    "--retry-period",
                    "1",
                    "--resync",
                    "2",
                    "--reload-interval",
                    "0.5",
                    *self.extra,
                ],
                stdout=log,
                stderr=log,
                cwd=self.gate.work,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        if wait:
            eventually(f"controller {self.identity} ready", self.ready, timeout=60)
        return self

    def ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise AssertionError(f"controller {self.identity} exited {code}:\n{self.log()}")
        return _http_get(f"http://127.0.0.1:{self.health_port}/readyz")[0] == 200

    def metrics(self) -> str:
        return _http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")[1]

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.metrics(), name, **labels)

    def leading(self) -> bool:
        return self.metric("approvalgate_controller_leader") == 1.0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the process (SIGTERM drains and releases the Lease, SIGKILL does not) and
        wait for it; its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def log(self, chars: int = 6000) -> str:
        path = self.log_path
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@dataclass
class Gate:
    plane: ControlPlane
    work: Path
    port: int = field(default_factory=_free_port)
    metrics_port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None
    controllers: list[QueueController] = field(default_factory=list)
    revision: int = 0  # of the bundle served last (Gate.publish)
    served: Path | None = None
    extra_trust: tuple[str, ...] = ()  # more --bundle-key/--bundle-threshold flags

    @property
    def repo(self) -> Path:
        return self.work / "repo"

    @property
    def keys(self) -> Path:
        return self.work / "keys"

    @property
    def bundle(self) -> Path:
        """The bundle file the webhook and the controller read (``served`` when set: e.g. a
        ConfigMap projected the way the kubelet does, tests/e2e/test_bundle_signing.py)."""
        return self.served or self.work / "rendered" / ENV / "bundle.json"

    # --- setup ---------------------------------------------------------------------------

    def prepare(self) -> None:
        shutil.copytree(EXAMPLE, self.repo, ignore=shutil.ignore_patterns("rendered"))
        config = self.repo / "approvalgate.yaml"
        text = config.read_text()
        assert f"  {ENV}:\n" in text
        config.write_text(
            text.replace(f"  {ENV}:\n", f"  {ENV}:\n    excludeNamespaces: [{NOT_ENFORCED}]\n", 1)
            # a run's finalizer goes VIEW_MAX_AGE s after its use is recorded (default 30 s:
            # shorter here so that tests delete runs in seconds; the webhook's --view-max-age
            # matches, see start())
            .replace("defaults:\n", f"defaults:\n  useSettleSeconds: {VIEW_MAX_AGE}\n", 1)
            # the tests of other classes approve runs without their referenced content;
            # content binding (the example's default) is proven by tests/e2e/test_parents.py,
            # which serves a bundle that binds (Gate.compile_changed)
            .replace("defaults:\n", 'defaults:\n  referencedContent: "off"\n', 1)
        )
        for name, groups in APPROVERS.items():
            self.cli(
                "keygen", name, "--out", str(self.keys), "--groups", groups, "--usernames", name
            )
            shutil.copy(self.keys / f"{name}.yaml", self.repo / "approvers" / f"{name}.yaml")
        for env in (ENV, OTHER_ENV):
            self.cli("compile", str(self.repo), "--env", env, "--out", str(self.work / "rendered"))
            # what `approve` signs with (the served file is swapped by `serving`)
            self.signing_bundle(env).parent.mkdir(exist_ok=True)
            shutil.copy(self.work / "rendered" / env / "bundle.json", self.signing_bundle(env))
        # the served bundle is signed by the tests' key, which the webhook and the controller
        # pin (as the chart does); every later content gets a higher revision (publish)
        self.publish(self.bundle.read_text())
        self.ca = CertificateAuthority.generate("approvalgate e2e CA")
        issued = self.ca.issue(["127.0.0.1", "localhost"])
        (self.work / "tls.crt").write_bytes(issued.cert_pem)
        (self.work / "tls.key").write_bytes(issued.key_pem)
        (self.work / "ca.crt").write_bytes(self.ca.cert_pem)

    def install_rbac(self) -> None:
        """The chart's own ServiceAccounts and RBAC (rendered with this repo's values): the
        webhook's read-only view, the controller's calls and its Lease; its ClusterRoles for
        people bound in the enforced namespace (RoleBindings, as docs/queue.md suggests) to
        the requesters' and the approvers' groups. Least privilege is what the e2e tests
        exercise. Idempotent (every module's Gate applies it)."""
        for namespace in (GATE_NAMESPACE, ENFORCED):
            self.plane.kubectl("admin", "create", "namespace", namespace, check=False)
        items = [d for d in self.chart_render() if d["kind"] in RBAC_KINDS]
        for role, group in PEOPLE.items():
            assert any(d["kind"] == "ClusterRole" and d["metadata"]["name"] == role for d in items)
            items.append(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": f"approvalgate-e2e:{role}", "namespace": ENFORCED},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": role,
                    },
                    "subjects": [
                        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group}
                    ],
                }
            )
        self.plane.kubectl(
            "admin",
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )

    def publish(self, text: str) -> str:
        """Serve ``text`` (a compiled bundle) signed, at its own revision when that is above
        the one served last (the compiled bytes and generation unchanged), else at the next;
        its generation."""
        self.revision = max(self.revision + 1, int(json.loads(text).get("revision", 0)))
        return bundle_signing.publish(self.bundle, text, self.revision)

    def recompile(self) -> None:
        """Compile the repo into rendered/ again (after editing it) and serve the result,
        signed by the tests' key at the next revision (compile drops signatures by keys
        the repo does not list); with the webhook running, return once it has loaded it
        (it notices the file within a poll interval: a create sent before then is judged
        by the bundle before the edit)."""
        self.cli("compile", str(self.repo), "--env", ENV, "--out", str(self.work / "rendered"))
        generation = self.publish((self.work / "rendered" / ENV / "bundle.json").read_text())
        if self.process is not None and self.process.poll() is None:
            self._wait_for_generation(generation)

    def trust_args(self) -> list[str]:
        """The webhook's and controller's --bundle-key (the tests' bundle-signing key)."""
        return [*bundle_signing.cli_args(self.work), *self.extra_trust]

    def signing_bundle(self, env: str = ENV) -> Path:
        """Environment ``env``'s bundle as compiled (never swapped by :meth:`serving`)."""
        return self.work / "bundles" / f"{env}.json"

    def start(self, controller: bool = True, ready: bool = True) -> None:
        """The webhook (reading its cluster view as the chart's webhook ServiceAccount), and
        unless ``controller`` is False one queue controller (it records the uses of the runs
        and releases their finalizer, without which no run judged by records can be
        deleted where the view is required). Waits until the webhook is ready, or with
        ``ready`` False only until it answers (/healthz: it serves, ready or not)."""
        self.install_rbac()
        with (self.work / "webhook.log").open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [
                    *CLI,
                    "webhook",
                    "serve",
                    "--bundle",
                    str(self.bundle),
                    *self.trust_args(),
                    "--tls-cert",
                    str(self.work / "tls.crt"),
                    "--tls-key",
                    str(self.work / "tls.key"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--metrics-port",
                    str(self.metrics_port),
                    # the cluster view (staging has clusterView: required), read with the
                    # chart's read-only RBAC for the webhook's ServiceAccount
                    "--cluster-view",
                    "auto",
                    "--view-max-age",
                    str(VIEW_MAX_AGE),
                    "--kubeconfig",
                    str(self.plane.kubeconfig(WEBHOOK_SA)),
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
                    f"https://127.0.0.1:{self.port}/{'readyz' if ready else 'healthz'}",
                    context=context,
                    timeout=2,
                ) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"webhook not ready in 30 s: {self.log_tail()}")
        if controller:
            self.start_controller()

    def start_controller(
        self, identity: str = "", *extra: str, bundle: Path | None = None, wait: bool = True
    ) -> QueueController:
        """Start one more controller process (``identity`` defaults to a fresh name);
        ``wait``: until its /readyz answers."""
        identity = identity or f"ctrl-{len(self.controllers)}-{time.monotonic_ns() % 100000}"
        if bundle is not None and bundle != self.bundle:
            bundle_signing.sign_file(bundle)  # another compiled bundle: signed where it is
        process = QueueController(self, identity, bundle or self.bundle, tuple(extra))
        self.controllers.append(process)
        return process.start(wait=wait)

    def stop_controllers(self, sig: int = signal.SIGTERM) -> None:
        for process in self.controllers:
            if process.running:
                process.stop(sig)
        self.controllers.clear()

    def leader(self, timeout: float = 60) -> QueueController:
        """The running controller that holds the Lease (waits for one)."""
        found: list[QueueController] = eventually(
            "a controller leads",
            lambda: [c for c in self.controllers if c.running and c.leading()],
            timeout=timeout,
        )
        assert len(found) == 1, [c.identity for c in found]
        return found[0]

    def webhook_metric(self, name: str, **labels: str) -> float:
        text = _http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")[1]
        return metric_value(text, name, **labels)

    def stop(self) -> None:
        self.stop_controllers()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def readyz(self) -> tuple[int, str]:
        """The webhook's /readyz: (status, body); (0, "") when it does not answer."""
        context = ssl.create_default_context(cafile=str(self.work / "ca.crt"))
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{self.port}/readyz", context=context, timeout=2
            ) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode(errors="replace")
        except OSError:
            return 0, ""

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
            self._wait_for_generation(self.publish(other))
            yield
        finally:
            self._wait_for_generation(self.publish(own))

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
                # the pinned bundle-signing key (operator's values, not the compiled ones)
                "--set-file",
                f"bundleSigning.publicKeys[0]={bundle_signing.public_key_file(self.work)}",
                "--set",
                f"bundleSigning.environment={ENV}",  # pinned beside the key, as operators do
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
        done = subprocess.run(  # no terminal: approve never asks
            [*CLI, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=self.work
        )
        if check and done.returncode != 0:
            raise AssertionError(f"approvalgate {' '.join(args)}: {done.stdout}{done.stderr}")
        return done

    def approve(
        self, manifest: str, *approvers: str, extra: tuple[str, ...] = (), env: str = ENV
    ) -> str:
        """``manifest`` approved by each of ``approvers`` for environment ``env`` (signed
        with its compiled bundle: where it requires the cluster view, `approve` adds the
        approval-use finalizer and names a generateName run)."""
        path = self.work / f"approve-{time.monotonic_ns()}.yaml"
        path.write_text(manifest)
        for name in approvers:
            self.cli(
                "approve",
                str(path),
                "--bundle",
                str(self.signing_bundle(env)),
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
            *self.trust_args(),  # the served bundle is signed by the tests' key
            "--user",
            user,
            "--output",
            "json",
            # the decisions and uses the webhook's view holds (read as admin)
            "--cluster",
            "--kubeconfig",
            str(self.plane.kubeconfig("admin")),
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
    finalizer: bool = False,
) -> str:
    """An AgentRun like the example's, as a requester writes it; ``finalizer``: with the
    approval-use finalizer that `approvalgate approve` adds where the cluster view is
    required (so that the record checks are what decides a run approved by hand)."""
    meta = f"  generateName: {name}-\n" if generate else f"  name: {name}\n"
    held = f"  finalizers: [{USE_FINALIZER}]\n" if finalizer else ""
    return (
        "apiVersion: agents.proompteng.ai/v1alpha1\nkind: AgentRun\nmetadata:\n"
        f"{meta}  namespace: {namespace}\n{held}"
        "spec:\n  agentRef:\n    name: " + agent + "\n"
        "  implementationSpecRef:\n    name: codex-impl-sample\n"
        "  runtime:\n    type: workflow\n    config:\n      ttlSecondsAfterFinished: 600\n"
        "  parameters:\n    repository: proompteng/lab\n"
        f"    task: '{task}'\n"
    )
