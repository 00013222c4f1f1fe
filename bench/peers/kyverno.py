"""The Kyverno arms of `make bench-peers` (issue 18): the real admission controller
(`cmd/kyverno` of v1.19.1, built by `tools/testbin.py peers`) out of cluster against the
project's e2e control plane.

- `KyvernoPresenceArm` ("kyverno-presence"): policies/kyverno-presence.yaml, the
  approvals annotation must be present (no crypto).
- `KyvernoManifestsArm` ("kyverno-manifests"): policies/kyverno-manifests.yaml,
  `validate.manifests` with two ECDSA P-256 keys, `count: 2` (signing:
  bench/peers/manifest_signing.py). Valid runs carry both signatures; invalid ones have
  their spec changed after signing.

How it runs (decided here, read before changing):

- One kyverno PROCESS PER ARM, so each arm's CPU and memory are its own. Both are replicas
  of one installation: the same namespace `kyverno` (its TLS secrets, ConfigMap-less default
  configuration, leases), different ports and pod names (`KYVERNO_POD_NAME`, the leader
  election identity). Separate namespaces do not work: the leader of each would own the
  cluster-wide webhook configurations Kyverno names by constants
  (kyverno-policy-validating-webhook-cfg, ...) and rewrite each other's URLs forever. With
  one namespace exactly one process is leader; it runs Kyverno's controllers (webhook
  configurations, ClusterPolicy status: a policy is enforced only once its status is Ready)
  and so pays a little background CPU the other does not. Both load both ClusterPolicies;
  each policy matches only its arm's namespace, and each process is sent only its arm's
  requests.
- Kyverno judges nothing except through the driver's webhook configuration: the resource
  webhook configurations (kyverno-resource-{validating,mutating}-webhook-cfg) are created
  here EMPTY before Kyverno starts, and Kyverno runs with `--autoUpdateWebhooks=false`,
  under which it only creates them when missing and never rewrites them (its webhook
  controller, reconcileValidatingWebhookConfiguration). `install()` re-creates them before
  every start: when the last arm stops, Kyverno's webhook configurations are deleted
  (Kyverno's policy webhook, failurePolicy Fail on kyverno.io writes, would point at
  nothing), and a kyverno started without them creates catch-alls for every resource. The
  ones it still creates match only its own objects (kyverno.io policies and exceptions,
  globalcontextentries, its leases), never an AgentRun; `start()` checks that. With
  autoUpdateWebhooks=false the leader marks every policy Ready itself. Its `webhooks`
  ConfigMap namespaceSelector is not needed.
- TLS: our own CA and 127.0.0.1 serving certificate in the secrets Kyverno reads
  (`--caSecretName`, `--tlsSecretName`), with `--disableCertManagerController` so it never
  replaces them; a second arm reads the CA back from the secret. `hook()` gives
  https://127.0.0.1:PORT/validate/fail (Kyverno's path for failurePolicy Fail, i.e.
  Enforce policies) and that CA.
- It runs with the admin kubeconfig (system:masters): acceptable for a benchmark, no RBAC to
  keep in step with Kyverno's. `--serverIP=127.0.0.1:PORT` is its out-of-cluster mode (no
  Deployment to look up). Admission reports are off (`--admissionReports=false`): they
  would add an EphemeralReport write per admission to the API server every arm shares; the
  Helm chart turns them on, so Kyverno's real cost is somewhat higher than measured. Its
  metrics endpoint stays on (loopback, a free port), as in a default install; the
  controller-runtime metrics server is off. Everything listens on 127.0.0.1. It logs at
  its default verbosity to `<work>/<key>.log`.
- Known Kyverno behaviour the driver will count: under concurrent creates the manifests arm
  denies some VALID runs (measured here: 7 and 10 of 200 with 4 clients, "invalid signature
  when validating ASN.1 encoded signature"; the presence arm denied none).
  k8s-manifest-sigstore's cosign.VerifyBlob (pkg/cosign/verify.go) hands the message to
  cosign's VerifyBlobCmd through a pipe it swaps into the process-wide os.Stdin, so
  concurrent admissions can verify one run's signature over another run's message.
- `start()` returns only when a real create through the API server was denied by Kyverno
  with the policy's message: it registers a temporary webhook configuration
  (`register(..., name=probe)`) for the arm's namespace, waits for the denial, and deletes
  it. The driver then registers its own (`register(plane, arm)` here is that helper).
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import yaml
from cryptography.hazmat.primitives import serialization

from approvalgate.webhook.devcert import CertificateAuthority
from bench.peers import manifest_signing
from bench.peers.arms import GROUP, PLURAL, POLICIES, VERSION, Arm, Hook
from tests.e2e.controlplane import ControlPlane, KubectlError

REPO = Path(__file__).resolve().parents[2]
TESTBIN = REPO / "tools" / "testbin.py"
KYVERNO_WRAPPER = REPO / "tools" / "kyverno"
LOOPBACK = "127.0.0.1"
KYVERNO_NAMESPACE = "kyverno"
CA_SECRET = "kyverno-svc.kyverno.svc.kyverno-tls-ca"
TLS_SECRET = "kyverno-svc.kyverno.svc.kyverno-tls-pair"
RESOURCE_WEBHOOKS = (
    "kyverno-resource-validating-webhook-cfg",
    "kyverno-resource-mutating-webhook-cfg",
)
MANAGED_BY = "webhook.kyverno.io/managed-by=kyverno"
APPROVALS = "approvals.proompteng.ai/approvals"
# CRD folders of the kyverno module it needs to start: its own kinds, the policies.kyverno.io
# kinds its controller-runtime cache waits for; reports stay unused (admission reports off)
CRD_FOLDERS = ("kyverno", "policies.kyverno.io", "reports", "policyreport")
READY_TIMEOUT = 180.0


class KyvernoUnavailable(RuntimeError):
    """The kyverno binary or its module sources are not there (run `make peers`)."""


def _testbin() -> Any:
    spec = importlib.util.spec_from_file_location("approvalgate_testbin", TESTBIN)
    if spec is None or spec.loader is None:
        raise KyvernoUnavailable(f"cannot load {TESTBIN}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def kyverno_binary() -> Path:
    """The built admission controller; KyvernoUnavailable (never a build) when missing."""
    testbin = _testbin()
    tool = testbin.ALL_TOOLS["kyverno"]
    binary = Path(testbin.bin_dir(tool)) / "kyverno"
    if not os.access(binary, os.X_OK):
        raise KyvernoUnavailable(f"kyverno not built ({binary} missing): run `make peers`")
    return binary


def kyverno_module_dir() -> Path:
    """github.com/kyverno/kyverno's sources in the Go module cache (filled by the build)."""
    try:
        result = subprocess.run(
            ["go", "list", "-m", "-f", "{{.Dir}}", "github.com/kyverno/kyverno"],
            cwd=KYVERNO_WRAPPER,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "GOFLAGS": "-mod=mod"},
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise KyvernoUnavailable(f"`go list` failed in {KYVERNO_WRAPPER}: {error}") from error
    directory = Path(result.stdout.strip())
    if result.returncode != 0 or not (directory / "config" / "crds").is_dir():
        raise KyvernoUnavailable(
            f"kyverno sources not in the Go module cache ({result.stderr.strip()[-500:]}): "
            "run `make peers`"
        )
    return directory


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _apply(plane: ControlPlane, *items: dict[str, Any]) -> None:
    plane.kubectl(
        "admin",
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(items)}),
    )


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _pem_key(key: Any) -> bytes:
    data: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return data


def _tls_secret(name: str, cert: bytes, key: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": KYVERNO_NAMESPACE},
        "data": {
            "tls.crt": base64.b64encode(cert).decode(),
            "tls.key": base64.b64encode(key).decode(),
        },
    }


def _empty_resource_webhooks() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": name, "labels": {"webhook.kyverno.io/managed-by": "kyverno"}},
            "webhooks": [],
        }
        for name, kind in zip(
            RESOURCE_WEBHOOKS,
            ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"),
            strict=True,
        )
    ]


def install(plane: ControlPlane) -> str:
    """Kyverno's CRDs, namespace and serving certificate (once per control plane) and its
    resource webhook configurations, empty (every time: they must exist before any kyverno
    starts, else it creates catch-alls for every resource); returns the CA PEM the serving
    certificate chains to (read back from its secret, so every arm gets the same one)."""
    existing = plane.kubectl(
        "admin",
        "get",
        "secret",
        CA_SECRET,
        "-n",
        KYVERNO_NAMESPACE,
        "-o",
        "jsonpath={.data.tls\\.crt}",
        check=False,
    )
    if existing.returncode == 0 and existing.stdout.strip():
        _apply(plane, *_empty_resource_webhooks())
        return base64.b64decode(existing.stdout.strip()).decode()
    crds = kyverno_module_dir() / "config" / "crds"
    plane.apply_crds([crds / folder for folder in CRD_FOLDERS])
    ca = CertificateAuthority.generate("approvalgate bench-peers kyverno CA", days=2)
    serving = ca.issue([LOOPBACK, "localhost"], days=2)
    _apply(plane, _namespace(KYVERNO_NAMESPACE))
    _apply(
        plane,
        _tls_secret(CA_SECRET, ca.cert_pem, _pem_key(ca.key)),
        _tls_secret(TLS_SECRET, serving.cert_pem, serving.key_pem),
        *_empty_resource_webhooks(),
    )
    return ca.cert_pem.decode()


def stray_webhooks(
    plane: ControlPlane, *, selector: str = MANAGED_BY, ours: tuple[str, ...] = ()
) -> list[str]:
    """Webhooks (of configurations matching the label `selector`: by default Kyverno's own;
    "" for all) other than `ours` whose rules could match an AgentRun (apiGroups "*" or
    agents.proompteng.ai): must be none, or an arm's namespace would be judged by more than
    its one webhook."""
    stray = []
    for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        command = ["get", kind, "-o", "json", *(["-l", selector] if selector else [])]
        listed = json.loads(plane.kubectl("admin", *command).stdout)
        for item in listed["items"]:
            for webhook in item.get("webhooks") or []:
                if webhook["name"] in ours:
                    continue
                for rule in webhook.get("rules") or []:
                    if {"*", GROUP} & set(rule.get("apiGroups") or []):
                        stray.append(f"{kind}/{item['metadata']['name']}: {webhook['name']}")
    return stray


def webhook_configuration(arm: Arm, hook: Hook, name: str) -> dict[str, Any]:
    """One ValidatingWebhookConfiguration, webhook `name`, for AgentRun creates and updates
    in the arm's namespace only, failurePolicy Fail."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": name,
                "clientConfig": {"url": hook.url, "caBundle": hook.ca_bundle},
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "resources": [PLURAL],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": arm.namespace}
                },
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 30,
            }
        ],
    }


def webhook_name(arm: Arm) -> str:
    return f"{arm.key}.peers.proompteng.ai"


def create(plane: ControlPlane, manifest: dict[str, Any], user: str = "admin") -> tuple[bool, str]:
    """Create one run through the API server: (admitted, kubectl's output)."""
    result = plane.kubectl(
        user, "create", "-f", "-", "-o", "name", input=json.dumps(manifest), check=False
    )
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def register(
    plane: ControlPlane, arm: Arm, name: str | None = None, timeout: float = READY_TIMEOUT
) -> str:
    """Register a webhook configuration sending the arm's namespace to `arm.hook()` and wait
    until a real create of an invalid run is denied through it; returns its name."""
    hook = arm.hook()
    if hook is None:
        raise RuntimeError(f"arm {arm.key} has no webhook")
    name = name or webhook_name(arm)
    _apply(plane, webhook_configuration(arm, hook, name))
    deadline = time.monotonic() + timeout
    last = "nothing tried"
    while time.monotonic() < deadline:
        if isinstance(arm, KyvernoArm) and not arm.running():
            break
        probe = arm.manifest(f"probe-{secrets.token_hex(4)}", valid=False)
        admitted, last = create(plane, probe)
        if admitted:  # the configuration (or the policy) is not in force yet
            plane.kubectl(
                "admin",
                "delete",
                PLURAL,
                probe["metadata"]["name"],
                "-n",
                arm.namespace,
                "--wait=false",
                check=False,
            )
        elif f'admission webhook "{name}" denied the request' in last:
            return name
        time.sleep(0.5)
    unregister(plane, name)
    raise RuntimeError(f"{arm.key}: an invalid run was not denied within {timeout:.0f}s: {last}")


def unregister(plane: ControlPlane, name: str) -> None:
    plane.kubectl(
        "admin", "delete", "validatingwebhookconfiguration", name, "--ignore-not-found", check=False
    )


def _spec(name: str) -> dict[str, Any]:
    return {
        "agentRef": {"name": "codex-agent"},
        "implementationSpecRef": {"name": "codex-impl-sample"},
        "runtime": {"type": "workflow"},
        "parameters": {"task": f"bench {name}"},
    }


def _run(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AgentRun",
        "metadata": {"name": name, "namespace": namespace},
        "spec": _spec(name),
    }


class KyvernoArm:
    """One kyverno process judging one namespace (see the module docstring)."""

    key = ""
    title = ""
    checks = ""
    namespace = ""
    policy_name = ""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_path: Path | None = None
        self._port = 0
        self._ca_pem = ""
        self._plane: ControlPlane | None = None

    # -- what an arm's subclass provides ---------------------------------------------------

    def policy(self) -> dict[str, Any]:
        raise NotImplementedError

    def manifest(self, name: str, valid: bool) -> dict[str, Any]:
        raise NotImplementedError

    # -- the Arm protocol ------------------------------------------------------------------

    def start(self, plane: ControlPlane, work: Path) -> None:
        if self._process is not None:
            raise RuntimeError(f"{self.key} already started")
        binary = kyverno_binary()
        self._plane = plane
        self._ca_pem = install(plane)
        _apply(plane, _namespace(self.namespace), self.policy())
        self._port = _free_port()
        work.mkdir(parents=True, exist_ok=True)
        self._log_path = work / f"{self.key}.log"
        self._log = self._log_path.open("ab")
        home = work / f"{self.key}-home"
        home.mkdir(exist_ok=True)
        args = [
            str(binary),
            f"--kubeconfig={plane.kubeconfig('admin')}",
            f"--serverIP={LOOPBACK}:{self._port}",
            f"--webhookServerHost={LOOPBACK}",
            f"--webhookServerPort={self._port}",
            f"--caSecretName={CA_SECRET}",
            f"--tlsSecretName={TLS_SECRET}",
            "--disableCertManagerController",
            "--autoUpdateWebhooks=false",
            "--admissionReports=false",
            f"--metricsHost={LOOPBACK}",
            f"--metricsPort={_free_port()}",
            "--controllerRuntimeMetricsAddress=0",
            "--profile=false",
            "--enableTracing=false",
            "--disableLogColor",
        ]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "NO_PROXY": "*",
            "KYVERNO_NAMESPACE": KYVERNO_NAMESPACE,
            "KYVERNO_POD_NAME": f"kyverno-{self.key}",
            "KYVERNO_SERVICEACCOUNT_NAME": "kyverno",
            "KYVERNO_DEPLOYMENT": "kyverno",
            # ConfigMaps it watches; none exist: its built-in defaults (no filters)
            "INIT_CONFIG": "kyverno",
            "METRICS_CONFIG": "kyverno-metrics",
        }
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=work,
            start_new_session=True,
        )
        _LIVE.add(self.key)
        try:
            probe = register(plane, self, name=f"probe.{webhook_name(self)}")
            unregister(plane, probe)
            stray = stray_webhooks(plane)
            if stray:
                raise RuntimeError(f"webhooks that could judge AgentRuns: {', '.join(stray)}")
        except BaseException as error:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"{self.key} did not start: {error}\n{tail}") from error

    def hook(self) -> Hook | None:
        if not self._port:
            return None
        bundle = base64.b64encode(self._ca_pem.encode()).decode()
        return Hook(url=f"https://{LOOPBACK}:{self._port}/validate/fail", ca_bundle=bundle)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def pids(self) -> list[int]:
        return [self._process.pid] if self._process is not None else []

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(15)
            _LIVE.discard(self.key)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._plane is not None and not _LIVE:
            # no kyverno left: its own webhooks (policy validation: failurePolicy Fail on
            # kyverno.io writes) would point at nothing
            with contextlib.suppress(KubectlError):
                for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
                    self._plane.kubectl("admin", "delete", kind, "-l", MANAGED_BY, check=False)
        self._plane = None

    def log_tail(self, lines: int = 40) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        text = self._log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return f"--- last lines of {self._log_path} ---\n" + "\n".join(text[-lines:])


_LIVE: set[str] = set()


class KyvernoPresenceArm(KyvernoArm):
    key = "kyverno-presence"
    title = "Kyverno, annotation present (no crypto)"
    checks = "the approvals annotation is present and not empty; nothing about what it holds"
    namespace = "peer-kyverno-presence"
    policy_name = "agentrun-approvals-present"

    def policy(self) -> dict[str, Any]:
        document: dict[str, Any] = yaml.safe_load(
            (POLICIES / "kyverno-presence.yaml").read_text(encoding="utf-8")
        )
        return document

    def manifest(self, name: str, valid: bool) -> dict[str, Any]:
        run = _run(self.namespace, name)
        if valid:  # any non-empty value passes; a realistic size (two approval records)
            run["metadata"]["annotations"] = {APPROVALS: _PLACEHOLDER_APPROVALS}
        return run


# presence is all that is checked: the value only gives the request a realistic size
_PLACEHOLDER_APPROVALS = json.dumps(
    [{"approver": who, "signature": "A" * 88, "nonce": "0" * 32} for who in ("alice", "bob")]
)


class KyvernoManifestsArm(KyvernoArm):
    key = "kyverno-manifests"
    title = "Kyverno `validate.manifests`, 2 ECDSA signatures"
    checks = (
        "the run equals a manifest signed by both ECDSA P-256 keys (k8s-manifest-sigstore); "
        "no approver rules, expiry or single use; the namespace is bound only when signed in"
    )
    namespace = "peer-kyverno-manifests"
    policy_name = "agentrun-manifest-signatures"

    def __init__(self) -> None:
        super().__init__()
        self.keys = (manifest_signing.generate_key(), manifest_signing.generate_key())

    def policy(self) -> dict[str, Any]:
        text = (POLICIES / "kyverno-manifests.yaml").read_text(encoding="utf-8")
        pems = {
            f"${{PUBLIC_KEY_{index}}}": manifest_signing.public_pem(key).strip()
            for index, key in enumerate(self.keys, start=1)
        }
        lines = []
        for line in text.splitlines():
            pem = pems.get(line.strip())
            if pem is None:
                lines.append(line)
            else:  # a placeholder alone on its line: the PEM, indented as it
                indent = line[: len(line) - len(line.lstrip())]
                lines += [indent + part for part in pem.splitlines()]
        text = "\n".join(lines)
        document: dict[str, Any] = yaml.safe_load(text)
        return document

    def manifest(self, name: str, valid: bool) -> dict[str, Any]:
        signed = manifest_signing.sign(_run(self.namespace, name), self.keys)
        if not valid:  # changed after signing: the object no longer equals the message
            signed["spec"]["parameters"]["task"] += " (changed after signing)"
        return signed
