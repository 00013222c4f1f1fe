"""The agents platform's controllers, reproduced as a test process acting under their
ServiceAccounts on the real API server: every path by which the platform itself creates
AgentRuns (issue 16).

Upstream (proompteng/lab, services/agents/src/server/ unless said otherwise):

- supporting-primitives-controller.ts ``reconcileSchedule`` / ``buildScheduleRunTemplate``:
  for Schedule S it reads the target named by ``spec.targetRef`` and applies ConfigMap
  ``<S>-template`` (``data["run.json"]``: the run manifest with the placeholder
  ``__AGENTS_DELIVERY_ID__`` in its delivery-id label and ``spec.idempotencyKey``, only the
  string parameters of the target kept) and CronJob ``<S>-cron`` whose pods run as the
  schedule ServiceAccount with that ConfigMap mounted at /config.
  :meth:`Platform.reconcile_schedule`.
- supporting-schedule-runner.ts ``runSupportingScheduleRunner``: the CronJob's pod reads
  /config/run.json, replaces every ``__AGENTS_DELIVERY_ID__`` with one ``randomUUID()`` and
  applies the manifest (a create: it has a generateName). :meth:`Platform.fire`, one create
  per fire, as ``<ns>/agents-schedule-runner`` with a token bound to a pod of the CronJob.
- orchestration-controller.ts ``reconcileOrchestrationRun`` / ``submitAgentRunStep`` (its
  parameters from ``mergeParameters(normalizeStringMap(run.spec.parameters),
  normalizeStringMap(step.with))``), agent-resource-labels.ts
  ``buildOrchestrationChildLabels`` and kubernetes-labels.ts
  ``normalizeKubernetesLabelValue`` (the step run's labels): for an OrchestrationRun and its
  Orchestration, one AgentRun per AgentRun step, created as ``agents/agents-controller``.
  :meth:`Platform.reconcile_orchestration_run`. No controller runs here, so no step ever
  succeeds: the reproduction submits every AgentRun step (upstream submits a step once the
  steps it depends on succeeded; what it submits is the same).
- jangar supporting-primitives-controller.ts ``reconcileSwarm``: for each enabled stage of a
  Swarm, the Schedule it applies (controller ownerReference to the Swarm), re-applied on every
  reconcile (a PUT of the same object once it exists). :meth:`Platform.reconcile_swarm`.
- kube-types.ts ``apply`` (``upsertObject``): an object with only a generateName is created;
  a named one is read, then replaced with its resourceVersion when it exists, else created.
  :meth:`Account.apply`.

What the objects look like comes from approvalgate's own reproduction of those functions
(:mod:`approvalgate.approvals.parents`: ``schedule_run_manifest``, ``step_run_spec``,
``step_run_metadata``, ``swarm_schedule``), which the gate also uses to judge them; the
functions below named ``upstream_*`` are an independent transcription of the TypeScript,
compared with those (tests/e2e/test_parents.py) so that a mistake in one shows (it showed
one: a Swarm stage's targetRef without a namespace, which jangar fills with the Swarm's).

The requests go over HTTPS to the API server with the ServiceAccount's bearer token (from
the TokenRequest API, bound to a Pod as a kubelet would mount it): authentication, RBAC and
admission (the approvalgate webhook) are the real ones.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import secrets
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from approvalgate.approvals import parents
from tests.e2e.controlplane import ControlPlane
from tests.e2e.gate import pod_bound_token

CONTROL_PLANE_NAMESPACE = "agents"
CONTROLLER_ACCOUNT = "agents-controller"  # the control plane's ServiceAccount (chart default)
RUNNER_ACCOUNT = "agents-schedule-runner"  # AGENTS_SCHEDULE_SERVICE_ACCOUNT
DELIVERY_PLACEHOLDER = "__AGENTS_DELIVERY_ID__"
STAGES = ("discover", "plan", "implement", "verify")


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str, name: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        base += f"/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{base}/{quote(name, safe='')}" if name else base


AGENT_RUN = Kind("agents.proompteng.ai", "v1alpha1", "agentruns", "AgentRun")
AGENT = Kind("agents.proompteng.ai", "v1alpha1", "agents", "Agent")
AGENT_PROVIDER = Kind("agents.proompteng.ai", "v1alpha1", "agentproviders", "AgentProvider")
IMPLEMENTATION_SPEC = Kind(
    "agents.proompteng.ai", "v1alpha1", "implementationspecs", "ImplementationSpec"
)
SCHEDULE = Kind("schedules.proompteng.ai", "v1alpha1", "schedules", "Schedule")
ORCHESTRATION = Kind("orchestration.proompteng.ai", "v1alpha1", "orchestrations", "Orchestration")
ORCHESTRATION_RUN = Kind(
    "orchestration.proompteng.ai", "v1alpha1", "orchestrationruns", "OrchestrationRun"
)
SWARM = Kind("swarm.proompteng.ai", "v1alpha1", "swarms", "Swarm")
CONFIG_MAP = Kind("", "v1", "configmaps", "ConfigMap")
CRON_JOB = Kind("batch", "v1", "cronjobs", "CronJob")
KINDS = {
    k.kind: k
    for k in (
        AGENT_RUN,
        AGENT,
        AGENT_PROVIDER,
        IMPLEMENTATION_SPEC,
        SCHEDULE,
        ORCHESTRATION,
        ORCHESTRATION_RUN,
        SWARM,
        CONFIG_MAP,
        CRON_JOB,
    )
}


# --- talking to the API server ----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """The API server's answer to one request: its HTTP status and body."""

    method: str
    path: str
    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        return str(self.body.get("message") or "")

    @property
    def denied_by_webhook(self) -> bool:
        """Refused by a validating admission webhook (not by RBAC or validation)."""
        return self.status == 403 and "admission webhook" in self.message

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name") or "")

    def __str__(self) -> str:
        what = self.name if self.ok else self.message
        return f"{self.method} {self.path}: HTTP {self.status} {what}"


@dataclass
class Account:
    """A client acting as ``username`` with a bearer ``token``."""

    plane: ControlPlane
    username: str
    token: str = field(repr=False)

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Answer:
        context = ssl.create_default_context(cafile=str(self.plane.ca_file))
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.plane.server + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        try:
            with opener.open(request, timeout=60) as response:
                return Answer(method, path, response.status, json.loads(response.read() or b"{}"))
        except urllib.error.HTTPError as error:
            with error:
                raw = error.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = {"message": raw.decode(errors="replace")}
            return Answer(method, path, error.code, parsed)

    def delete(self, kind: Kind, namespace: str, name: str, dry_run: bool = False) -> Answer:
        path = kind.path(namespace, name) + ("?dryRun=All" if dry_run else "")
        return self.call("DELETE", path)

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        answer = self.call("GET", kind.path(namespace, name))
        if answer.status == 404:
            return None
        assert answer.ok, str(answer)
        return answer.body

    def create(self, obj: Mapping[str, Any], dry_run: bool = False) -> Answer:
        """POST ``obj``; ``dry_run``: judged (admission included) but not stored."""
        kind, namespace = _kind_of(obj), str(obj["metadata"]["namespace"])
        return self.call("POST", kind.path(namespace) + ("?dryRun=All" if dry_run else ""), obj)

    def replace(self, obj: Mapping[str, Any], dry_run: bool = False) -> Answer:
        """PUT ``obj``; ``dry_run``: judged (admission included) but not stored."""
        kind, meta = _kind_of(obj), obj["metadata"]
        path = kind.path(str(meta["namespace"]), str(meta["name"]))
        return self.call("PUT", path + ("?dryRun=All" if dry_run else ""), obj)

    def apply(self, obj: Mapping[str, Any], dry_run: bool = False) -> Answer:
        """kube-types.ts ``upsertObject``: a generateName-only object is created; a named one
        is replaced (with the resourceVersion read just before) when it exists, else created.
        ``dry_run``: as server-side dry runs."""
        meta = obj["metadata"]
        if meta.get("generateName") and not meta.get("name"):
            return self.create(obj, dry_run)
        existing = self.get(_kind_of(obj), str(meta["namespace"]), str(meta["name"]))
        if existing is None:
            return self.create(obj, dry_run)
        updated = copy.deepcopy(dict(obj))
        updated["metadata"] = {
            **updated["metadata"],
            "resourceVersion": existing["metadata"]["resourceVersion"],
        }
        return self.replace(updated, dry_run)


def _kind_of(obj: Mapping[str, Any]) -> Kind:
    kind = KINDS[str(obj["kind"])]
    assert obj.get("apiVersion") == kind.api_version, (obj.get("apiVersion"), kind)
    return kind


def service_account(plane: ControlPlane, namespace: str, name: str, pod: str) -> Account:
    """ServiceAccount ``namespace/name`` (created when missing) with a TokenRequest token
    bound to Pod ``pod`` running as it (created as admin: no kubelet runs it)."""
    token = pod_bound_token(plane, namespace, name, pod)
    return Account(plane, f"system:serviceaccount:{namespace}:{name}", token)


def admin(plane: ControlPlane) -> Account:
    return Account(plane, "admin", plane.tokens["admin"])


# --- RBAC the platform's chart gives its ServiceAccounts --------------------------------------

_RW = ["get", "list", "watch", "create", "update", "patch", "delete"]


def controller_rules() -> list[dict[str, Any]]:
    """What the control plane's ServiceAccount does here (a subset of charts/agents' role)."""
    return [
        {
            "apiGroups": ["agents.proompteng.ai"],
            "resources": ["agentruns", "agents", "implementationspecs"],
            "verbs": _RW,
        },
        {
            "apiGroups": ["schedules.proompteng.ai"],
            "resources": ["schedules", "schedules/status"],
            "verbs": _RW,
        },
        {
            "apiGroups": ["orchestration.proompteng.ai"],
            "resources": ["orchestrations", "orchestrationruns", "orchestrationruns/status"],
            "verbs": _RW,
        },
        {
            "apiGroups": ["swarm.proompteng.ai"],
            "resources": ["swarms", "swarms/status", "swarms/finalizers"],
            "verbs": _RW,
        },
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": _RW},
        {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": _RW},
    ]


def runner_rules() -> list[dict[str, Any]]:
    """The schedule runner applies its manifest: AgentRuns (and OrchestrationRuns)."""
    return [
        {"apiGroups": ["agents.proompteng.ai"], "resources": ["agentruns"], "verbs": _RW},
        {
            "apiGroups": ["orchestration.proompteng.ai"],
            "resources": ["orchestrationruns"],
            "verbs": _RW,
        },
    ]


# --- the controllers ----------------------------------------------------------------------------

ROLES = ("approvalgate-e2e:platform-controller", "approvalgate-e2e:schedule-runner")


class Platform:
    """The platform's controllers in ``namespace``: the control plane (supporting controller,
    orchestration controller, swarm controller) as ``agents/agents-controller``, the
    schedule runner's pods as ``<namespace>/agents-schedule-runner``, each with a Role in
    ``namespace`` (:meth:`revoke` takes them back)."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        self.plane = plane
        self.namespace = namespace
        plane.grant(
            ROLES[0],
            subjects=[f"system:serviceaccount:{CONTROL_PLANE_NAMESPACE}:{CONTROLLER_ACCOUNT}"],
            rules=controller_rules(),
            namespace=namespace,
        )
        plane.grant(
            ROLES[1],
            subjects=[f"system:serviceaccount:{namespace}:{RUNNER_ACCOUNT}"],
            rules=runner_rules(),
            namespace=namespace,
        )
        self.controller = service_account(
            plane, CONTROL_PLANE_NAMESPACE, CONTROLLER_ACCOUNT, "agents-controller-0"
        )
        self.kubelet = admin(plane)  # mounts the ConfigMap into the runner's pod
        self._dry_runners: dict[str, Account] = {}

    def revoke(self) -> None:
        """Take back the Roles :meth:`__init__` granted (other modules share the plane)."""
        for role in ROLES:
            self.plane.kubectl(
                "admin", "delete", "role,rolebinding", role, "-n", self.namespace, check=False
            )

    @property
    def runner_username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{RUNNER_ACCOUNT}"

    # -- schedules ----------------------------------------------------------------------------

    def reconcile_schedule(self, name: str) -> dict[str, Any]:
        """reconcileSchedule: ConfigMap ``<name>-template`` from the target (run.json) and
        CronJob ``<name>-cron``; the applied ConfigMap."""
        schedule = self.controller.get(SCHEDULE, self.namespace, name)
        assert schedule is not None, f"Schedule {self.namespace}/{name} not found"
        ref = schedule["spec"]["targetRef"]
        target_kind = KINDS[ref["kind"]]
        target = self.controller.get(
            target_kind, ref.get("namespace") or self.namespace, ref["name"]
        )
        assert target is not None, f"target {ref['kind']} {ref['name']} not found"
        manifest = schedule_run_manifest(schedule, target)
        labels = {"schedules.proompteng.ai/schedule": name}
        owner = owner_references(schedule)
        config = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"{name}-template",
                "namespace": self.namespace,
                "labels": labels,
                "ownerReferences": owner,
            },
            "data": {"run.json": json.dumps(manifest, indent=2)},
        }
        applied = self.controller.apply(config)
        assert applied.ok, str(applied)
        cron = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {
                "name": f"{name}-cron",
                "namespace": self.namespace,
                "labels": labels,
                "ownerReferences": owner,
            },
            "spec": {
                "schedule": schedule["spec"]["cron"],
                "concurrencyPolicy": "Forbid",
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 1,
                "jobTemplate": {
                    "spec": {
                        "backoffLimit": 1,
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": {
                                "serviceAccountName": RUNNER_ACCOUNT,
                                "restartPolicy": "Never",
                                "containers": [
                                    {
                                        "name": "schedule-runner",
                                        "image": "registry.invalid/agents:e2e",
                                        "command": [
                                            "bun",
                                            "run",
                                            "/app/services/agents/src/server/"
                                            "supporting-schedule-runner.ts",
                                        ],
                                        "volumeMounts": [
                                            {"name": "schedule-template", "mountPath": "/config"}
                                        ],
                                    }
                                ],
                                "volumes": [
                                    {
                                        "name": "schedule-template",
                                        "configMap": {"name": f"{name}-template"},
                                    }
                                ],
                            },
                        },
                    }
                },
            },
        }
        if schedule["spec"].get("timezone"):
            cron["spec"]["timeZone"] = schedule["spec"]["timezone"]
        applied_cron = self.controller.apply(cron)
        assert applied_cron.ok, str(applied_cron)
        return applied.body

    def fire(self, schedule: str, dry_run: bool = False) -> Answer:
        """One fire of the CronJob: a new pod of it (a fresh token bound to that pod) runs
        runSupportingScheduleRunner on the mounted run.json. ``dry_run``: the same create as
        a server-side dry run (judged by the webhook, nothing stored), by one pod kept for
        dry runs."""
        config = self.kubelet.get(CONFIG_MAP, self.namespace, f"{schedule}-template")
        assert config is not None, f"ConfigMap {schedule}-template not found: reconcile first"
        manifest = materialize(config["data"]["run.json"])
        if dry_run:
            if schedule not in self._dry_runners:
                self._dry_runners[schedule] = service_account(
                    self.plane, self.namespace, RUNNER_ACCOUNT, f"{schedule}-cron-dry"[:63]
                )
            return self._dry_runners[schedule].create(manifest, dry_run=True)
        runner = service_account(
            self.plane,
            self.namespace,
            RUNNER_ACCOUNT,
            f"{schedule}-cron-{secrets.token_hex(3)}"[:63],
        )
        return runner.apply(manifest)

    # -- orchestrations -----------------------------------------------------------------------

    def reconcile_orchestration_run(self, name: str, dry_run: bool = False) -> dict[str, Answer]:
        """reconcileOrchestrationRun: one AgentRun per AgentRun step (submitAgentRunStep), as
        the control plane; step name -> the API server's answer. ``dry_run``: the creates as
        server-side dry runs."""
        orun = self.controller.get(ORCHESTRATION_RUN, self.namespace, name)
        assert orun is not None, f"OrchestrationRun {self.namespace}/{name} not found"
        orchestration = self.controller.get(
            ORCHESTRATION, self.namespace, orun["spec"]["orchestrationRef"]["name"]
        )
        assert orchestration is not None, "the OrchestrationRun's Orchestration is missing"
        answers: dict[str, Answer] = {}
        for step in orchestration["spec"].get("steps") or []:
            if step.get("kind") != "AgentRun":
                continue
            run = step_run(orchestration["spec"], orun, step["name"], self.namespace)
            answers[step["name"]] = (
                self.controller.create(run, dry_run=True) if dry_run else self.controller.apply(run)
            )
        return answers

    # -- swarms -------------------------------------------------------------------------------

    def reconcile_swarm(self, name: str, dry_run: bool = False) -> dict[str, Answer]:
        """reconcileSwarm: apply the Schedule of every enabled stage; stage -> answer.
        ``dry_run``: as server-side dry runs."""
        swarm = self.controller.get(SWARM, self.namespace, name)
        assert swarm is not None, f"Swarm {self.namespace}/{name} not found"
        answers: dict[str, Answer] = {}
        for stage in STAGES:
            wanted = swarm_schedule(swarm, stage)
            if wanted is not None:
                answers[stage] = self.controller.apply(wanted, dry_run)
        return answers


def materialize(raw: str) -> dict[str, Any]:
    """supporting-schedule-runner.ts materializeManifest: every placeholder -> one UUID."""
    delivery = str(uuid.uuid4())
    manifest: dict[str, Any] = json.loads(raw.replace(DELIVERY_PLACEHOLDER, delivery))
    return manifest


def owner_references(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """buildOwnerRefs: the object as the controller owner of what it makes."""
    meta = obj["metadata"]
    return [
        {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


# --- what the platform makes -------------------------------------------------------------------


def schedule_run_manifest(schedule: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
    """buildScheduleRunTemplate (placeholders kept)."""
    return parents.schedule_run_manifest(schedule, target)


def step_run(
    orchestration_spec: Mapping[str, Any],
    orun: Mapping[str, Any],
    step_name: str,
    namespace: str,
) -> dict[str, Any]:
    """submitAgentRunStep's AgentRun for step ``step_name`` of ``orun``."""
    spec = parents.step_run_spec(orchestration_spec, orun["spec"], step_name)
    assert spec is not None, f"step {step_name} is not an AgentRun step upstream would submit"
    return {
        "apiVersion": AGENT_RUN.api_version,
        "kind": "AgentRun",
        "metadata": parents.step_run_metadata(str(orun["metadata"]["name"]), step_name, namespace),
        "spec": spec,
    }


def swarm_schedule(swarm: Mapping[str, Any], stage: str) -> dict[str, Any] | None:
    """reconcileSwarm's Schedule for ``stage``."""
    return parents.swarm_schedule(swarm, stage)


# --- an independent transcription of the TypeScript ----------------------------------------------


def upstream_string_parameters(value: object) -> dict[str, str]:
    """supporting-primitives-controller.ts normalizeParameterMap: string values only."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def upstream_schedule_run_manifest(
    schedule: Mapping[str, Any], target: Mapping[str, Any]
) -> dict[str, Any]:
    """buildScheduleRunTemplate for an AgentRun target (placeholders kept)."""
    meta = schedule["metadata"]
    name = str(meta.get("name") or "schedule")
    target_ns = (target.get("metadata") or {}).get("namespace") or meta.get("namespace")
    inherited = {
        k: v
        for k, v in (meta.get("labels") or {}).items()
        if isinstance(v, str)
        and k not in ("schedules.proompteng.ai/schedule", "agents.proompteng.ai/delivery-id")
    }
    spec = dict(target.get("spec") or {})
    return {
        "apiVersion": "agents.proompteng.ai/v1alpha1",
        "kind": "AgentRun",
        "metadata": {
            "generateName": f"{name}-",
            "namespace": target_ns,
            "labels": {
                **inherited,
                "schedules.proompteng.ai/schedule": name,
                "agents.proompteng.ai/delivery-id": DELIVERY_PLACEHOLDER,
            },
        },
        "spec": {
            **spec,
            "idempotencyKey": DELIVERY_PLACEHOLDER,
            "parameters": upstream_string_parameters(spec.get("parameters")),
        },
    }


_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def _trim_invalid_label_edges(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+$", "", re.sub(r"^[^A-Za-z0-9]+", "", value))


def upstream_label_value(value: str) -> str:
    """kubernetes-labels.ts normalizeKubernetesLabelValue."""
    trimmed = value.strip()
    if len(trimmed) <= 63 and _LABEL_VALUE.search(trimmed):
        return trimmed
    digest = hashlib.sha256(value.encode()).hexdigest()[:12]
    sanitized = _trim_invalid_label_edges(re.sub(r"[^A-Za-z0-9_.-]+", "-", trimmed))
    stem = _trim_invalid_label_edges(sanitized[: 63 - len(digest) - 1]) or "delivery"
    return f"{stem}-{digest}"


def upstream_make_name(base: str, suffix: str) -> str:
    """orchestration-controller.ts makeName."""
    cleaned = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", base.lower()))[:50]
    return f"{cleaned}-{suffix}"


def _string_map(value: object) -> dict[str, str]:
    """orchestration-controller.ts normalizeStringMap: ``typeof raw === 'string' ? raw :
    JSON.stringify(raw)``."""
    if not isinstance(value, Mapping):
        return {}
    return {
        str(k): v if isinstance(v, str) else _stringify(v)
        for k, v in value.items()
        if v is not None
    }


def _stringify(value: object) -> str:
    """JSON.stringify (ECMA-262 SerializeJSONProperty), transcribed apart from the gate's:
    an object's integer keys below 2^32 - 1 first, ascending (OrdinaryOwnPropertyKeys), then
    the rest in insertion order; numbers by Number::toString."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int | float):
        return _number_to_string(float(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(_stringify(v) for v in value) + "]"
    assert isinstance(value, Mapping)
    ordered = sorted(
        (k for k in value if re.fullmatch(r"0|[1-9][0-9]*", k) and int(k) < 2**32 - 1), key=int
    )
    ordered += [k for k in value if k not in ordered]
    return (
        "{"
        + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _stringify(value[k]) for k in ordered)
        + "}"
    )


def _number_to_string(x: float) -> str:
    """Number::toString(10): the fewest significant digits k that read back as x, then the
    decimal point placed by n (x = s * 10^(n - k)) as ECMA-262 6.1.6.1.20 says."""
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "0"
    if x < 0:
        return "-" + _number_to_string(-x)
    for k in range(1, 18):
        text = f"{x:.{k - 1}e}"
        if float(text) == x:
            break
    mantissa, exponent = text.split("e")
    s = mantissa.replace(".", "").rstrip("0") or "0"
    k = len(s)
    n = int(exponent) + 1
    if k <= n <= 21:
        return s + "0" * (n - k)
    if 0 < n <= 21:
        return s[:n] + "." + s[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + s
    e = f"{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return (s if k == 1 else s[0] + "." + s[1:]) + "e" + e


def _name_of(step: Mapping[str, Any], key: str) -> str | None:
    ref = step.get(key)
    if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
        return str(ref["name"])
    if isinstance(ref, str):
        return ref
    with_ = step.get("with")
    if isinstance(with_, Mapping) and isinstance(with_.get(key), str):
        return str(with_[key])
    return None


def upstream_step_run_spec(
    orchestration_spec: Mapping[str, Any], orun_spec: Mapping[str, Any], step_name: str
) -> dict[str, Any] | None:
    """submitAgentRunStep's spec for step ``step_name`` (None: no such AgentRun step)."""
    steps = [s for s in orchestration_spec.get("steps") or [] if isinstance(s, Mapping)]
    found = [s for s in steps if s.get("name") == step_name and s.get("kind") == "AgentRun"]
    if not found:
        return None
    step = found[0]
    with_ = step.get("with") if isinstance(step.get("with"), Mapping) else {}
    parameters = {**_string_map(orun_spec.get("parameters")), **_string_map(with_)}
    agent = _name_of(step, "agentRef")
    implementation_ref = _name_of(step, "implementationSpecRef")
    implementation = step.get("implementation")
    runtime = step.get("runtime") if isinstance(step.get("runtime"), Mapping) else None
    if runtime is None and isinstance(with_.get("runtime"), Mapping):
        runtime = with_["runtime"]
    runtime = runtime or {}
    runtime_type = runtime.get("type") if isinstance(runtime.get("type"), str) else "job"
    config = runtime.get("config") if isinstance(runtime.get("config"), Mapping) else {}
    workflow = step.get("workflow") if isinstance(step.get("workflow"), Mapping) else None
    if workflow is None and isinstance(with_.get("workflow"), Mapping):
        workflow = with_["workflow"]
    memory = _name_of({"memoryRef": step.get("memoryRef")}, "memoryRef")
    secrets_ = [s for s in step.get("secrets") or [] if isinstance(s, str)]
    spec: dict[str, Any] = {"agentRef": {"name": agent}}
    if implementation_ref:
        spec["implementationSpecRef"] = {"name": implementation_ref}
    if isinstance(implementation, Mapping):
        spec["implementation"] = dict(implementation)
    spec["parameters"] = parameters
    if memory:
        spec["memoryRef"] = {"name": memory}
    if secrets_:
        spec["secrets"] = secrets_
    spec["runtime"] = {"type": runtime_type, **({"config": dict(config)} if config else {})}
    if runtime_type == "workflow":
        spec["workflow"] = (
            dict(workflow)
            if workflow is not None and "steps" in workflow
            else {**(workflow or {}), "steps": [{"name": "main"}]}
        )
    if isinstance(step.get("workload"), Mapping):
        spec["workload"] = dict(step["workload"])
    return spec


def upstream_step_run_metadata(orun_name: str, step_name: str, namespace: str) -> dict[str, Any]:
    """submitAgentRunStep's metadata (buildOrchestrationChildLabels)."""
    return {
        "generateName": f"{upstream_make_name(orun_name, step_name)}-",
        "namespace": namespace,
        "labels": {
            "agents.proompteng.ai/orchestration-run": upstream_label_value(orun_name),
            "agents.proompteng.ai/orchestration-step": upstream_label_value(step_name),
        },
    }


def upstream_swarm_schedule(swarm: Mapping[str, Any], stage: str) -> dict[str, Any] | None:
    """reconcileSwarm's Schedule for ``stage`` (None: stage disabled or without target), for
    a short Swarm name (stageScheduleName's hashing of long ones is not transcribed, nor
    cadenceToCron: ``spec.cron`` is left out)."""
    meta, spec = swarm["metadata"], swarm.get("spec") or {}
    stage_spec = (spec.get("execution") or {}).get(stage) or {}
    ref = stage_spec.get("targetRef")
    if stage_spec.get("enabled") is False or not isinstance(ref, Mapping):
        return None
    name = str(meta["name"])
    namespace = str(meta.get("namespace"))
    api_version = {
        "AgentRun": "agents.proompteng.ai/v1alpha1",
        "OrchestrationRun": "orchestration.proompteng.ai/v1alpha1",
    }.get(str(ref.get("kind")), "")
    return {
        "apiVersion": SCHEDULE.api_version,
        "kind": "Schedule",
        "metadata": {
            "name": f"{name}-{stage}-sched",
            "namespace": namespace,
            "labels": {
                "swarm.proompteng.ai/name": upstream_label_value(name),
                "swarm.proompteng.ai/stage": upstream_label_value(stage),
                "swarm.proompteng.ai/mode": str(spec.get("mode") or ""),
            },
            "ownerReferences": owner_references(swarm),
        },
        "spec": {
            "timezone": spec.get("timezone") or "UTC",
            "targetRef": {
                "apiVersion": api_version,
                "kind": ref.get("kind"),
                "name": ref.get("name"),
                "namespace": ref.get("namespace") or namespace,
            },
        },
    }
