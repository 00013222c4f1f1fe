"""A real etcd + kube-apiserver on 127.0.0.1 for end-to-end tests (envtest-style).

Binaries come from tools/testbin.py (built from pinned Go modules). Every user authenticates
with a bearer token from --token-auth-file; authorization is real RBAC. No controllers run:
this tests authentication, authorization, admission and storage. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
TESTBIN = REPO / "tools" / "testbin.py"
LOOPBACK = "127.0.0.1"

CONTROLLER = "system:serviceaccount:agents:agents-controller"
# a ServiceAccount where runs are made that the example's policies neither trust nor name as a
# parents creator (agents-controller is one: its runs are judged by derivation, docs/parents.md)
WORKER = "system:serviceaccount:agents:report-worker"
# the trusted submitter lives in a namespace of its own (approvalgate refuses to trust a
# ServiceAccount where runs are made); its static token here is NOT pod-bound: the webhook
# admits it as trusted only with a token bound to a pod (tests/e2e/gate.py pod_bound_token)
SUBMISSION_API = "system:serviceaccount:agents-system:submission-api"
_SA_GROUPS = ("system:serviceaccounts", "system:serviceaccounts:agents")
# the chart's own ServiceAccounts (release "approvalgate" in approvalgate-system): the webhook
# reads its cluster view and the queue's controller works as them, with the chart's RBAC only
GATE_NAMESPACE = "approvalgate-system"
WEBHOOK_SA = f"system:serviceaccount:{GATE_NAMESPACE}:approvalgate"
QUEUE_CONTROLLER = f"system:serviceaccount:{GATE_NAMESPACE}:approvalgate-controller"
_GATE_SA_GROUPS = ("system:serviceaccounts", f"system:serviceaccounts:{GATE_NAMESPACE}")

#: Every user the API server knows, with its groups (system:authenticated is added by the server).
USERS: dict[str, tuple[str, ...]] = {
    "admin": ("system:masters",),
    "requester": ("agents-users",),
    "alice": ("approvers",),
    "bob": ("approvers",),
    "dana": ("approvers",),
    "oncall": ("approvers",),
    "mallory": ("agents-users",),
    CONTROLLER: _SA_GROUPS,
    WORKER: _SA_GROUPS,
    WEBHOOK_SA: _GATE_SA_GROUPS,
    QUEUE_CONTROLLER: _GATE_SA_GROUPS,
    SUBMISSION_API: ("system:serviceaccounts", "system:serviceaccounts:agents-system"),
}

AGENTS_GROUP = "agents.proompteng.ai"
APPROVALS_GROUP = "approvals.proompteng.ai"
_RW = ["get", "list", "watch", "create", "update", "patch", "delete"]
_RO = ["get", "list", "watch"]


class ControlPlaneError(Exception):
    """The control plane cannot be built, started or used; the message says why."""


class KubectlError(ControlPlaneError):
    """kubectl exited non-zero; `result` holds its output."""

    def __init__(self, command: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"`{' '.join(command)}` exited {result.returncode}\n"
            f"stderr: {result.stderr.strip()}\nstdout: {result.stdout.strip()[:2000]}"
        )
        self.result = result


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    kubectl: Path
    etcd: Path


def locate_binaries(timeout: float = 3600) -> Binaries:
    """Build (when missing, which can take many minutes) and locate the pinned binaries."""
    command = [sys.executable, str(TESTBIN), "--print-dir", "k8s", "etcd"]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise ControlPlaneError(f"{TESTBIN.name} did not finish in {timeout:.0f}s") from error
    if result.returncode != 0:
        raise ControlPlaneError(f"{TESTBIN.name} failed: {result.stderr.strip()[-3000:]}")
    k8s_dir, etcd_dir = (Path(line) for line in result.stdout.split())
    return Binaries(k8s_dir / "kube-apiserver", k8s_dir / "kubectl", etcd_dir / "etcd")


def _free_port() -> int:
    return free_port(LOOPBACK)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
) -> x509.Certificate:
    """A one-day certificate: a CA when `issuer` is None, else a 127.0.0.1 serving cert."""
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        return builder.sign(key, hashes.SHA256())
    builder = builder.add_extension(
        x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]
        ),
        critical=False,
    ).add_extension(
        x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
    )
    return builder.sign(issuer[1], hashes.SHA256())


def _cluster_role(
    name: str, rules: list[dict[str, Any]], subjects: list[dict[str, str]]
) -> list[dict[str, Any]]:
    meta = {"name": name, "labels": {"approvalgate.e2e/harness": "true"}}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta,
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": subjects,
        },
    ]


def _group(name: str) -> dict[str, str]:
    return {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def _service_account(username: str) -> dict[str, str]:
    _, _, namespace, name = username.split(":")
    return {"kind": "ServiceAccount", "namespace": namespace, "name": name}


def baseline_rbac() -> list[dict[str, Any]]:
    """Users and approvers may read and write agentruns in every namespace (the bypass gap the
    webhook closes); the controller also owns their status; the submission API creates them."""
    runs = {"apiGroups": [AGENTS_GROUP], "resources": ["agentruns"], "verbs": _RW}
    return [
        *_cluster_role(
            "approvalgate-e2e:agentrun-users",
            [runs],
            [_group("agents-users"), _group("approvers"), _service_account(WORKER)],
        ),
        *_cluster_role(
            "approvalgate-e2e:agents-controller",
            [
                {
                    "apiGroups": [AGENTS_GROUP],
                    "resources": ["agentruns", "agentruns/status", "agentruns/finalizers"],
                    "verbs": _RW,
                },
                {"apiGroups": [AGENTS_GROUP], "resources": ["agents"], "verbs": _RO},
                {"apiGroups": [APPROVALS_GROUP], "resources": ["approvalpolicies"], "verbs": _RO},
            ],
            [_service_account(CONTROLLER)],
        ),
        *_cluster_role(
            "approvalgate-e2e:submission-api",
            [
                {
                    "apiGroups": [AGENTS_GROUP],
                    "resources": ["agentruns"],
                    "verbs": [*_RO, "create"],
                },
                {"apiGroups": [APPROVALS_GROUP], "resources": ["approvalpolicies"], "verbs": _RO},
            ],
            [_service_account(SUBMISSION_API)],
        ),
    ]


class ControlPlane:
    """etcd + kube-apiserver on random loopback ports, with one kubeconfig per user in USERS."""

    def __init__(
        self,
        binaries: Binaries,
        *,
        ready_timeout: float = 90,
        stop_timeout: float = 10,
        audit_policy: Mapping[str, Any] | None = None,
    ) -> None:
        self.binaries = binaries
        # an audit.k8s.io/v1 Policy: the API server writes its audit log (JSON lines) to
        # audit_log, where the webhook's auditAnnotations land
        self.audit_policy = audit_policy
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.tokens: dict[str, str] = {user: secrets.token_hex(16) for user in USERS}
        self.startup_seconds: float | None = None
        self._workdir: Path | None = None
        self._port = 0
        self._etcd_url = ""
        self._processes: list[tuple[str, subprocess.Popen[bytes], IO[bytes], Path]] = []
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._workdir is not None:
            raise ControlPlaneError("control plane already started")
        for binary in (self.binaries.etcd, self.binaries.kube_apiserver, self.binaries.kubectl):
            if not os.access(binary, os.X_OK):
                raise ControlPlaneError(f"missing binary {binary}: run `python {TESTBIN} all`")
        started = time.monotonic()
        self._workdir = Path(tempfile.mkdtemp(prefix="approvalgate-e2e-"))
        try:
            self._write_credentials()
            self._etcd_url = self._start_etcd()
            self._start_apiserver(self._etcd_url)
            self.kubectl(
                "admin",
                "apply",
                "-f",
                "-",
                input=json.dumps({"apiVersion": "v1", "kind": "List", "items": baseline_rbac()}),
            )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Stop the processes by PID (SIGTERM, then SIGKILL after `stop_timeout`) and clean up."""
        for _, process, log, _ in reversed(self._processes):  # kube-apiserver before etcd
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(self.stop_timeout)
            log.close()
        self._processes.clear()
        if self._workdir is not None:
            shutil.rmtree(self._workdir)
            self._workdir = None

    def stop_apiserver(self) -> None:
        """Stop only the kube-apiserver (etcd keeps the data): clients lose the API server."""
        for entry in [e for e in self._processes if e[0] == "kube-apiserver"]:
            _, process, log, _ = entry
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(self.stop_timeout)
            log.close()
            self._processes.remove(entry)

    def start_apiserver(self) -> None:
        """Start the kube-apiserver again, on the same port with the same credentials."""
        if any(name == "kube-apiserver" for name, *_ in self._processes):
            raise ControlPlaneError("kube-apiserver already running")
        self._start_apiserver(self._etcd_url)

    # -- what tests use ------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self._port}"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the API server's serving certificate."""
        return self._dir / "ca.crt"

    def kubeconfig(self, user: str) -> Path:
        if user not in USERS:
            raise ControlPlaneError(f"unknown user {user!r}; known: {', '.join(USERS)}")
        return self._dir / "kubeconfigs" / f"{user.replace(':', '_')}.json"

    def kubectl(
        self,
        user: str,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl as `user`; with check=True a non-zero exit raises KubectlError."""
        command = [
            str(self.binaries.kubectl),
            f"--kubeconfig={self.kubeconfig(user)}",
            f"--cache-dir={self._dir / 'kubectl-cache' / user.replace(':', '_')}",
            *args,
        ]
        result = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self._env(),
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlError(command, result)
        return result

    def kubectl_with_token(
        self, token: str, *args: str, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl with a bearer ``token`` (e.g. a ServiceAccount token)."""
        return subprocess.run(
            [
                str(self.binaries.kubectl),
                f"--server={self.server}",
                f"--certificate-authority={self.ca_file}",
                f"--token={token}",
                *args,
            ],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self._env(),
            check=False,
        )

    def apply_crds(self, paths: Iterable[Path], timeout: float = 60) -> list[str]:
        """Server-side apply CRD files or folders as admin (one kubectl); wait until all are
        Established."""
        files = [arg for path in paths for arg in ("-f", str(path))]
        names: list[str] = []
        if files:
            applied = self.kubectl(
                "admin", "apply", "--server-side", "--force-conflicts", "-o", "name", *files
            )
            names = applied.stdout.split()
        if names:
            self.kubectl(
                "admin",
                "wait",
                "--for=condition=Established",
                f"--timeout={timeout:.0f}s",
                *names,
                timeout=timeout + 30,
            )
        return names

    def create_namespace(self, prefix: str = "e2e") -> str:
        name = f"{prefix}-{secrets.token_hex(4)}"
        self.kubectl("admin", "create", "namespace", name)
        return name

    def grant(
        self,
        name: str,
        *,
        subjects: Sequence[str],
        rules: list[dict[str, Any]],
        namespace: str | None = None,
    ) -> None:
        """A (Cluster)Role `name` with `rules`, bound to `subjects` (users, or `group:NAME`)."""
        kind = "Role" if namespace else "ClusterRole"
        meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
        bound = [
            _group(s.removeprefix("group:"))
            if s.startswith("group:")
            else {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": s}
            for s in subjects
        ]
        items = [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": kind,
                "metadata": meta,
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": f"{kind}Binding",
                "metadata": meta,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
                "subjects": bound,
            },
        ]
        self.kubectl(
            "admin",
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )

    def metrics(self) -> str:
        """The API server's /metrics text, read as admin."""
        return self._get("/metrics", self.tokens["admin"], timeout=30)

    # -- internals ---------------------------------------------------------------------------

    @property
    def _dir(self) -> Path:
        if self._workdir is None:
            raise ControlPlaneError("control plane not started")
        return self._workdir

    def _env(self) -> dict[str, str]:
        # A minimal environment: no ETCD_* / KUBECONFIG / proxy variables leak in, HOME is ours.
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self._dir / "home"),
            "NO_PROXY": "*",
        }

    def _write_credentials(self) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("approvalgate-e2e-ca", ca_key, None)
        serving_key = ec.generate_private_key(ec.SECP256R1())
        serving = _certificate("kube-apiserver", serving_key, (ca, ca_key))
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        files = {
            "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
            "apiserver.crt": serving.public_bytes(serialization.Encoding.PEM),
            "apiserver.key": _pem_key(serving_key),
            "sa.key": _pem_key(sa_key),
            "sa.pub": sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "tokens.csv": "".join(
                f'{self.tokens[user]},{user},{user},"{",".join(groups)}"\n'
                for user, groups in USERS.items()
            ).encode(),
        }
        for name, content in files.items():
            path = self._dir / name
            path.write_bytes(content)
            path.chmod(0o600)
        (self._dir / "home").mkdir()
        (self._dir / "kubeconfigs").mkdir()

    def _write_kubeconfigs(self) -> None:
        for user, token in self.tokens.items():
            config = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "e2e",
                        "cluster": {
                            "server": self.server,
                            "certificate-authority": str(self.ca_file),
                        },
                    }
                ],
                "users": [{"name": user, "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "e2e",
                        "context": {"cluster": "e2e", "user": user, "namespace": "default"},
                    }
                ],
                "current-context": "e2e",
            }
            path = self.kubeconfig(user)
            path.write_text(json.dumps(config, indent=2), encoding="utf-8")
            path.chmod(0o600)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log_path = self._dir / f"{name}.log"
        log = log_path.open("ab")  # a restarted process appends
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=self._dir,
                start_new_session=True,
            )
        except BaseException:
            log.close()
            raise
        self._processes.append((name, process, log, log_path))
        return process

    def _start_etcd(self) -> str:
        client, peer = _free_port(), _free_port()
        client_url, peer_url = f"http://{LOOPBACK}:{client}", f"http://{LOOPBACK}:{peer}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=e2e",
                f"--data-dir={self._dir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=e2e={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait_until(
            "etcd",
            lambda: json.loads(self._get_plain(f"{client_url}/health")).get("health") == "true",
        )
        return client_url

    def _start_apiserver(self, etcd_url: str) -> None:
        self._port = self._port or _free_port()  # a restart keeps the port
        d = self._dir
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                f"--tls-cert-file={d / 'apiserver.crt'}",
                f"--tls-private-key-file={d / 'apiserver.key'}",
                f"--secure-port={self._port}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                "--endpoint-reconciler-type=none",  # loopback is not a valid Endpoints address
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--service-account-issuer=https://{LOOPBACK}:{self._port}",
                f"--service-account-key-file={d / 'sa.pub'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                f"--token-auth-file={d / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                "--profiling=false",
                *self._audit_args(),
            ],
        )
        self._write_kubeconfigs()
        self._wait_until(
            "kube-apiserver", lambda: self._get("/readyz", self.tokens["admin"], timeout=5) == "ok"
        )

    @property
    def audit_log(self) -> Path:
        return self._dir / "audit.log"

    def audit_events(self) -> list[dict[str, Any]]:
        """The API server's audit events so far (empty without an audit policy)."""
        if not self.audit_log.exists():
            return []
        lines = self.audit_log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def _audit_args(self) -> list[str]:
        if self.audit_policy is None:
            return []
        policy = self._dir / "audit-policy.json"
        policy.write_text(json.dumps(self.audit_policy))
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
        ]

    def _wait_until(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last_error = "not polled yet"
        while time.monotonic() < deadline:
            for name, process, _, _ in self._processes:
                if process.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with {process.returncode}\n{self.logs()}"
                    )
            try:
                if ready():
                    return
                last_error = "not ready"
            except (OSError, ValueError, http.client.HTTPException, ControlPlaneError) as error:
                last_error = f"{type(error).__name__}: {error}"
            time.sleep(0.2)
        raise ControlPlaneError(
            f"{what} not ready after {self.ready_timeout:.0f}s ({last_error})\n{self.logs()}"
        )

    def logs(self, lines: int = 50) -> str:
        """The last `lines` lines of each process log (for error messages)."""
        parts = []
        for name, _, _, path in self._processes:
            tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            parts.append(f"--- last {len(tail)} lines of {name} log ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def _get_plain(self, url: str) -> str:
        return _fetch(self._opener, urllib.request.Request(url), timeout=5)

    def _get(self, path: str, token: str, timeout: float) -> str:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
        request = urllib.request.Request(
            self.server + path, headers={"Authorization": f"Bearer {token}"}
        )
        return _fetch(opener, request, timeout)


def _fetch(
    opener: urllib.request.OpenerDirector, request: urllib.request.Request, timeout: float
) -> str:
    try:
        with opener.open(request, timeout=timeout) as response:
            body: bytes = response.read()
            return body.decode()
    except urllib.error.HTTPError as error:
        with error:
            detail = error.read()[:500].decode(errors="replace")
        raise ControlPlaneError(f"GET {request.full_url}: HTTP {error.code}: {detail}") from error
