"""The Gatekeeper arm of `make bench-peers` (issue 18): an annotation-presence rule in Rego.

The real Gatekeeper manager (v3.23.1, built by `make peers`) runs out of cluster against the
e2e control plane, as one process on 127.0.0.1:

- Gatekeeper's CRDs are read from its Go module (the build fills the module cache): only the
  ones its controllers watch at start-up (CRDS; none of the mutation ones);
- the manager runs `--operation=webhook` (the admission webhook, no audit) plus
  `--operation=generate` (what turns the ConstraintTemplate into its constraint CRD; in a
  chart install the audit pod does that). VAP generation is off: every admission is judged
  by Gatekeeper's Rego engine, not by the API server in process;
- TLS: a serving certificate for 127.0.0.1 from a CA of our own (`--disable-cert-rotation`:
  Gatekeeper neither writes a Secret nor touches any webhook configuration: the driver
  registers the only ValidatingWebhookConfiguration, scoped to `namespace`);
- health and metrics on free loopback ports; Gatekeeper's Prometheus exporter would listen on
  every interface (`:8888`, no host flag), so the metrics backend is OpenTelemetry with a push
  interval of a day to a loopback port nobody listens on: metrics are recorded as in a real
  install, never sent.

It authenticates with the control plane's admin kubeconfig (system:masters). A real install
has a ServiceAccount with the chart's RBAC; for a benchmark of admission latency that makes
no difference to the requests it judges.
"""

from __future__ import annotations

import functools
import http.client
import importlib.util
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from approvalgate.approvals import records
from approvalgate.approvals.digest import spec_digest
from approvalgate.approvals.keys.signers import generate
from approvalgate.webhook.devcert import CertificateAuthority
from bench.peers.arms import GROUP, PLURAL, POLICIES, VERSION, Hook
from tests.e2e.controlplane import ControlPlane, ControlPlaneError

REPO = Path(__file__).resolve().parents[2]
MODULE = "github.com/open-policy-agent/gatekeeper/v3"
SYSTEM_NAMESPACE = "gatekeeper-system"  # its ConstraintPodStatus objects and events go there
TEMPLATE = POLICIES / "gatekeeper-template.yaml"
CONSTRAINT = POLICIES / "gatekeeper-constraint.yaml"
CONSTRAINT_CRD = "agentrunapprovalspresent.constraints.gatekeeper.sh"
# what the constraint's violation says (gatekeeper-template.yaml); Gatekeeper prefixes it with
# the constraint's name: "[agentrun-approvals-present] an AgentRun needs ..."
MESSAGE = f"an AgentRun needs the {records.ANNOTATION} annotation"
# The CRDs (manifest_staging/charts/gatekeeper/crds/<name>-customresourcedefinition.yaml) the
# manager's controllers and readiness tracker watch with --operation=webhook,generate: without
# one of them it logs "no matches for kind" and never becomes ready. Mutation's are not needed.
CRDS = (
    "constrainttemplate",
    "constrainttemplatepodstatus",
    "constraintpodstatus",
    "config",
    "configpodstatus",
    "syncset",
    "expansiontemplate",
    "expansiontemplatepodstatus",
    "provider",
    "providerpodstatus",
)
LOOPBACK = "127.0.0.1"


@functools.cache
def _testbin() -> ModuleType:
    """tools/testbin.py (a script, not a package), loaded once: where `make peers` builds."""
    path = REPO / "tools" / "testbin.py"
    spec = importlib.util.spec_from_file_location("approvalgate_peers_testbin", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def binary() -> Path:
    """Where `make peers` puts Gatekeeper's manager (it may not be built: see `built`)."""
    testbin = _testbin()
    directory: Path = testbin.bin_dir(testbin.ALL_TOOLS["gatekeeper"])
    return directory / "manager"


def built() -> bool:
    return os.access(binary(), os.X_OK)


def module_dir() -> Path:
    """Gatekeeper's source in the Go module cache (filled by the build), read offline."""
    command = ["go", "list", "-m", "-f", "{{.Dir}}", MODULE]
    try:
        result = subprocess.run(
            command,
            cwd=REPO / "tools" / "gatekeeper",
            env={**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except OSError as error:
        raise RuntimeError(
            f"cannot run {command[0]}: {error}; Go is needed (make peers)"
        ) from error
    directory = Path(result.stdout.strip())
    if result.returncode != 0 or not (directory / "go.mod").is_file():
        raise RuntimeError(
            f"{MODULE} is not in the Go module cache (`{' '.join(command)}` in tools/gatekeeper "
            f"exited {result.returncode}: {result.stderr.strip()[-500:]}): run `make peers`"
        )
    return directory


def crd_paths() -> list[Path]:
    folder = module_dir() / "manifest_staging" / "charts" / "gatekeeper" / "crds"
    paths = [folder / f"{name}-customresourcedefinition.yaml" for name in CRDS]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise RuntimeError(f"{folder}: missing {', '.join(missing)}")
    return paths


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _spec(name: str) -> dict[str, Any]:
    return {
        "agentRef": {"name": "codex-agent"},
        "implementationSpecRef": {"name": "codex-impl-sample"},
        "runtime": {"type": "workflow"},
        "parameters": {"task": f"peers {name}"},
    }


class GatekeeperPresenceArm:
    key = "gatekeeper-presence"
    title = "Gatekeeper, annotation present (Rego)"
    checks = (
        "the approvals annotation exists and is not empty (a Rego ConstraintTemplate); "
        "nothing about what it holds: no signature, no binding to the run, no approver rules"
    )
    namespace = "peer-gatekeeper-presence"

    def __init__(self, *, ready_timeout: float = 120, stop_timeout: float = 15) -> None:
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_path: Path | None = None
        self._ca: CertificateAuthority | None = None
        self._ca_file: Path | None = None
        self._port = self._health = 0
        # the approvals a valid run carries: real signed records, by keys nobody trusts (a
        # presence rule cannot tell), so its requests are the size of approvalgate's
        self._signers = {name: generate() for name in ("alice", "bob")}

    # -- the Arm protocol ----------------------------------------------------------------

    def start(self, plane: ControlPlane, work: Path) -> None:
        if self._process is not None:
            raise RuntimeError("the Gatekeeper arm is already started")
        manager = binary()
        if not os.access(manager, os.X_OK):
            raise RuntimeError(f"gatekeeper not built ({manager} missing): run `make peers`")
        folder = work / "gatekeeper"
        folder.mkdir(parents=True, exist_ok=True)
        try:
            plane.apply_crds(crd_paths())
            self._apply(
                plane, *(self._namespace(name) for name in (SYSTEM_NAMESPACE, self.namespace))
            )
            self._spawn(manager, plane, folder)
            self._wait("/readyz on its health port", self._healthy)
            plane.kubectl("admin", "apply", "-f", str(TEMPLATE))
            # --operation=generate creates the constraint CRD from the template
            self._wait(f"the CRD {CONSTRAINT_CRD}", lambda: self._established(plane))
            plane.kubectl("admin", "apply", "-f", str(CONSTRAINT))
            self._wait("the constraint judging its namespace", self._judging)
        except BaseException as error:
            tail = self.log_tail()
            self.stop()
            if isinstance(error, (RuntimeError, ControlPlaneError, OSError)):
                raise RuntimeError(f"Gatekeeper did not start: {error}\n{tail}") from error
            raise

    def hook(self) -> Hook | None:
        if self._ca is None:
            raise RuntimeError("the Gatekeeper arm is not started")
        return Hook(url=f"https://{LOOPBACK}:{self._port}/v1/admit", ca_bundle=self._ca.ca_bundle)

    def pids(self) -> list[int]:
        return [self._process.pid] if self._process is not None else []

    def manifest(self, name: str, valid: bool) -> dict[str, Any]:
        spec = _spec(name)
        metadata: dict[str, Any] = {"name": name, "namespace": self.namespace}
        if valid:
            now = datetime.now(UTC)
            envelopes = [
                records.sign(
                    records.Claim(
                        subject=records.subject_name(self.namespace, name),
                        digest=spec_digest(spec),
                        decision="approve",
                        approver=approver,
                        reason="peers benchmark",
                        issued_at=now,
                        expires_at=now + timedelta(hours=1),
                        nonce=records.new_nonce(),
                        environment="staging",
                    ),
                    signer,
                )
                for approver, signer in self._signers.items()
            ]
            metadata["annotations"] = {records.ANNOTATION: records.dump_annotation(envelopes)}
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AgentRun",
            "metadata": metadata,
            "spec": spec,
        }

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)  # --shutdown-delay=0: it exits at once
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(self.stop_timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- what start() is made of ---------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no Gatekeeper log)"
        text = self._log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return f"--- last {min(lines, len(text))} lines of {self._log_path} ---\n" + "\n".join(
            text[-lines:]
        )

    def _spawn(self, manager: Path, plane: ControlPlane, folder: Path) -> None:
        self._ca = CertificateAuthority.generate("approvalgate peers: gatekeeper CA")
        issued = self._ca.issue([LOOPBACK])
        (folder / "tls.crt").write_bytes(issued.cert_pem)  # the names --cert-dir expects
        (folder / "tls.key").write_bytes(issued.key_pem)
        (folder / "tls.key").chmod(0o600)
        self._ca_file = folder / "ca.crt"
        self._ca_file.write_bytes(self._ca.cert_pem)
        self._port, self._health = _free_port(), _free_port()
        self._log_path = folder / "manager.log"
        self._log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            [
                str(manager),
                f"--kubeconfig={plane.kubeconfig('admin')}",  # admin: see the module docstring
                "--debug-use-fake-pod",  # out of cluster: no Pod of its own to look up
                "--operation=webhook",
                "--operation=generate",
                "--default-create-vap-for-templates=false",
                "--default-create-vap-binding-for-constraints=false",
                "--disable-cert-rotation",
                f"--cert-dir={folder}",
                f"--host={LOOPBACK}",
                f"--port={self._port}",
                f"--health-addr={LOOPBACK}:{self._health}",
                f"--metrics-addr={LOOPBACK}:{_free_port()}",
                "--metrics-backend=opentelemetry",
                f"--otlp-endpoint={LOOPBACK}:{_free_port()}",
                "--otlp-metric-interval=24h",
                "--shutdown-delay=0",  # no Service endpoints to drain out of cluster
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder)},
            cwd=folder,
            start_new_session=True,
        )

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = "not polled yet"
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise RuntimeError(f"the manager exited ({code}) while waiting for {what}")
            try:
                if ready():
                    return
                last = "not yet"
            except (
                OSError,
                ValueError,
                KeyError,
                TypeError,
                AttributeError,
                http.client.HTTPException,
                ControlPlaneError,
            ) as error:  # a half-made object (null status, no response yet) is "not yet"
                last = f"{type(error).__name__}: {error}"
            time.sleep(0.2)
        raise RuntimeError(f"no {what} after {self.ready_timeout:.0f}s ({last})")

    def _healthy(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://{LOOPBACK}:{self._health}/readyz", timeout=5) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError:
            return False

    @staticmethod
    def _established(plane: ControlPlane) -> bool:
        result = plane.kubectl("admin", "get", "crd", CONSTRAINT_CRD, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        # a CRD Gatekeeper just created may show `status: {conditions: null}` for a moment
        status = json.loads(result.stdout).get("status") or {}
        conditions = status.get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

    def _judging(self) -> bool:
        """Ready means: Gatekeeper's own /v1/admit, asked directly over TLS, denies a run
        without the annotation with the constraint's message and admits one with it. Then the
        template is compiled and the constraint loaded for `namespace` (its ConstraintPodStatus
        also says enforced, but only the answer proves the webhook path judges with it)."""
        denied = self.review(self.manifest("gatekeeper-probe", valid=False))
        if denied.get("allowed", True) or MESSAGE not in str(
            (denied.get("status") or {}).get("message") or ""
        ):
            return False
        return bool(self.review(self.manifest("gatekeeper-probe", valid=True)).get("allowed"))

    def review(self, run: dict[str, Any]) -> dict[str, Any]:
        """Gatekeeper's AdmissionReview response to creating `run`, sent straight to its
        webhook (not through the API server)."""
        if self._ca_file is None:
            raise RuntimeError("the Gatekeeper arm is not started")
        request = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.uuid4()),
                "kind": {"group": GROUP, "version": VERSION, "kind": "AgentRun"},
                "resource": {"group": GROUP, "version": VERSION, "resource": PLURAL},
                "requestKind": {"group": GROUP, "version": VERSION, "kind": "AgentRun"},
                "requestResource": {"group": GROUP, "version": VERSION, "resource": PLURAL},
                "name": run["metadata"]["name"],
                "namespace": run["metadata"]["namespace"],
                "operation": "CREATE",
                "userInfo": {"username": "approvalgate-peers-probe"},
                "object": run,
                "dryRun": True,
                "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
            },
        }
        context = ssl.create_default_context(cafile=str(self._ca_file))
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
        post = urllib.request.Request(
            f"https://{LOOPBACK}:{self._port}/v1/admit",
            data=json.dumps(request).encode(),
            headers={"Content-Type": "application/json"},
        )
        with opener.open(post, timeout=10) as answer:
            response: dict[str, Any] = json.loads(answer.read())["response"]
        return response

    @staticmethod
    def _namespace(name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}

    @staticmethod
    def _apply(plane: ControlPlane, *items: dict[str, Any]) -> None:
        listed = {"apiVersion": "v1", "kind": "List", "items": list(items)}
        plane.kubectl("admin", "apply", "-f", "-", input=json.dumps(listed))
