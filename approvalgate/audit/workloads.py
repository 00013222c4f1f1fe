"""The gate's own workloads (its Deployments, the audit CronJob, the webhook's Service) against
what the chart renders.

The rule (docs/design.md, "The gate's workloads"): anything that changes which code runs,
with which arguments, files, environment, identity, privileges or image is a *finding*; so is
anything the comparison does not know (a field the chart does not render and the API server
does not default is someone's addition). What only moves the pods, sizes them, probes them or
counts them is a *note*; what a rollout restart, an autoscaler or a resource recommender
writes (pod template annotations, ``resources``, the rollout strategy) is ignored. A
Service the webhook configuration points at is a finding when its selector, ports or type
differ: admission requests then reach other pods; so is a pod that Service selects whose
spec is not the chart's webhook pod template (made by hand with its labels, patched in
place, given an ephemeral container).

The comparison is pure: :func:`compare_workload` and :func:`compare_service` take both
objects as plain dicts (the chart's rendering, e.g. ``helm template``, and the live object).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from approvalgate.audit.findings import Finding

AREA: Final = "workloads"
KINDS: Final = ("Deployment", "CronJob")

RESTORE: Final = (
    "restore it from the chart (`helm upgrade`, or sync the approvalgate Argo CD application "
    "with Replace=true for this object: a server-side apply sync leaves another manager's "
    "additions), find who changed it (`kubectl get -o yaml --show-managed-fields`, the API "
    "server's audit log), and allow only the deployer to patch deployments, cronjobs, services "
    "and configmaps in the release namespace"
)

# Pod spec fields that only place, schedule or stop the pods: notes.
_POD_NOTES: Final = frozenset(
    {
        "nodeSelector",
        "nodeName",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
        "priority",
        "preemptionPolicy",
        "schedulerName",
        "terminationGracePeriodSeconds",
        "activeDeadlineSeconds",
        "readinessGates",
        "overhead",
        "imagePullSecrets",
        "schedulingGates",
    }
)
# Container fields that only probe, size or expose it: notes (resources: ignored).
_CONTAINER_NOTES: Final = frozenset(
    {
        "ports",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "imagePullPolicy",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "resizePolicy",
    }
)
_CONTAINER_IGNORED: Final = frozenset({"resources"})
_CONTAINER_LISTS: Final = ("initContainers", "containers", "ephemeralContainers")

# What the API server writes into a pod template the chart leaves out (apps/v1, batch/v1).
_POD_DEFAULTS: Final[Mapping[str, Any]] = {
    "restartPolicy": "Always",
    "dnsPolicy": "ClusterFirst",
    "schedulerName": "default-scheduler",
    "terminationGracePeriodSeconds": 30,
    "securityContext": {},
    "enableServiceLinks": True,
}
_CONTAINER_DEFAULTS: Final[Mapping[str, Any]] = {
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
}
_PROBE_DEFAULTS: Final[Mapping[str, Any]] = {
    "timeoutSeconds": 1,
    "periodSeconds": 10,
    "successThreshold": 1,
    "failureThreshold": 3,
}
_VOLUME_MODE: Final = 0o644  # configMap, secret, projected, downwardAPI defaultMode


def pick_workloads(documents: Iterable[Any]) -> list[dict[str, Any]]:
    """The Deployments, CronJobs and Services among ``documents`` (``helm template`` output)."""
    return [
        d
        for d in documents
        if isinstance(d, dict) and d.get("kind") in (*KINDS, "Service") and _name(d)
    ]


def mounted_config_maps(obj: Mapping[str, Any]) -> list[str]:
    """The ConfigMaps a Deployment's or CronJob's pod template mounts or reads env from."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    names: list[str] = []
    for volume in pod.get("volumes") or []:
        names.append(str((volume.get("configMap") or {}).get("name") or ""))
        for source in (volume.get("projected") or {}).get("sources") or []:
            names.append(str((source.get("configMap") or {}).get("name") or ""))
    for container in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
        for ref in container.get("envFrom") or []:
            names.append(str((ref.get("configMapRef") or {}).get("name") or ""))
        for env in container.get("env") or []:
            key = ((env.get("valueFrom") or {}).get("configMapKeyRef")) or {}
            names.append(str(key.get("name") or ""))
    return sorted({n for n in names if n})


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def subject(obj: Mapping[str, Any], namespace: str = "") -> str:
    namespace = namespace or str((obj.get("metadata") or {}).get("namespace") or "")
    return f"{obj.get('kind')}/{namespace + '/' if namespace else ''}{_name(obj)}"


def _where(who: str, field: str) -> str:
    return f"{who} {field}: " if field else f"{who}: "


def _finding(who: str, field: str, message: str) -> Finding:
    return Finding(AREA, "finding", who, _where(who, field) + message, RESTORE, field)


def _note(who: str, field: str, message: str, advice: str = "") -> Finding:
    return Finding(AREA, "note", who, _where(who, field) + message, advice, field)


# --- normal forms -------------------------------------------------------------------------


def _pruned(value: Any) -> Any:
    """``value`` without empty maps, lists and nulls (the API server drops them)."""
    if isinstance(value, Mapping):
        out = {str(k): _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _probe(probe: Mapping[str, Any]) -> dict[str, Any]:
    out = {**_PROBE_DEFAULTS, **probe}
    if "httpGet" in out:
        out["httpGet"] = {"scheme": "HTTP", **out["httpGet"]}
    return out


def _container(container: Mapping[str, Any]) -> dict[str, Any]:
    out = {**_CONTAINER_DEFAULTS, **container}
    if "imagePullPolicy" not in out:
        image = str(out.get("image") or "")
        tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
        latest = not tagged or image.endswith(":latest")
        out["imagePullPolicy"] = "Always" if latest else "IfNotPresent"
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        if isinstance(out.get(key), Mapping):
            out[key] = _probe(out[key])
    out["ports"] = [{"protocol": "TCP", **p} for p in out.get("ports") or []]
    env = []
    for entry in out.get("env") or []:
        ref = (entry.get("valueFrom") or {}).get("fieldRef")
        env.append(
            {**entry, "valueFrom": {"fieldRef": {"apiVersion": "v1", **ref}}} if ref else entry
        )
    out["env"] = env
    return out


def _volume(volume: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(volume)
    for source in ("configMap", "secret", "projected", "downwardAPI"):
        if isinstance(out.get(source), Mapping):
            out[source] = {"defaultMode": _VOLUME_MODE, **out[source]}
    return out


def _pod_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A pod spec with the API server's defaults filled in."""
    out = {**_POD_DEFAULTS, **spec}
    if out.get("serviceAccountName") and not out.get("serviceAccount"):
        out["serviceAccount"] = out["serviceAccountName"]  # the deprecated alias, kept equal
    for key in _CONTAINER_LISTS:
        out[key] = [_container(c) for c in out.get(key) or []]
    out["volumes"] = [_volume(v) for v in out.get("volumes") or []]
    return _pruned(out)  # type: ignore[no-any-return]


def _keyed(items: Sequence[Any], key: str) -> dict[str, Any] | None:
    """A list of objects by ``key`` (None when some item lacks it: compared whole)."""
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, Mapping) or key not in item:
            return None
        out[str(item[key])] = item
    return out


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


# --- the comparison -----------------------------------------------------------------------


def _template(obj: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        return "spec.jobTemplate.spec.template", (
            ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        )
    return "spec.template", spec.get("template") or {}


def compare_workload(
    expected: Mapping[str, Any], live: Mapping[str, Any] | None, namespace: str = ""
) -> list[Finding]:
    """Findings (what changes the code, its inputs or its identity) and notes (placement,
    probes, counts) of a live Deployment or CronJob against the chart's rendering."""
    who = subject(expected, namespace)
    if live is None:
        return [
            _finding(
                who,
                "",
                f"the {expected.get('kind')} the chart renders does not exist: "
                + (
                    "the audit does not run on schedule"
                    if expected.get("kind") == "CronJob"
                    else "its pods do not run (the webhook's absence denies every gated request; "
                    "the controller's leaves runs unrecorded and the bundle floor unraised)"
                ),
            )
        ]
    out: list[Finding] = []
    path, want_template = _template(expected)
    _, have_template = _template(live)
    out += _compare_counts(who, expected, live)
    want_labels = (want_template.get("metadata") or {}).get("labels") or {}
    have_labels = (have_template.get("metadata") or {}).get("labels") or {}
    changed = sorted(k for k in want_labels if have_labels.get(k) != want_labels[k])
    if changed:
        out.append(
            _note(
                who,
                f"{path}.metadata.labels",
                f"the pod labels {', '.join(changed)} differ from the chart's: its Service, "
                "NetworkPolicy and PodDisruptionBudget may no longer select the pods",
                "restore the labels from the chart",
            )
        )
    # defaults on both sides: a field left out is the API server's default either way
    want = _pod_spec(want_template.get("spec") or {})
    have = _pod_spec(have_template.get("spec") or {})
    out += _compare_pod(who, f"{path}.spec", want, have)
    return out


def _compare_counts(
    who: str, expected: Mapping[str, Any], live: Mapping[str, Any]
) -> list[Finding]:
    out: list[Finding] = []
    want_spec = expected.get("spec") or {}
    have_spec = live.get("spec") or {}
    if expected.get("kind") == "CronJob":
        if bool(have_spec.get("suspend")) != bool(want_spec.get("suspend")):
            out.append(
                _note(
                    who,
                    "spec.suspend",
                    f"suspend is {bool(have_spec.get('suspend'))} "
                    f"(the chart sets {bool(want_spec.get('suspend'))})",
                    "restore it from the chart",
                )
            )
        if have_spec.get("schedule") != want_spec.get("schedule"):
            out.append(
                _note(
                    who,
                    "spec.schedule",
                    f"the schedule is {have_spec.get('schedule')!r} "
                    f"(the chart sets {want_spec.get('schedule')!r})",
                    "restore it from the chart",
                )
            )
        return out
    want_replicas = want_spec.get("replicas", 1)
    have_replicas = have_spec.get("replicas", 1)
    if have_replicas != want_replicas:
        out.append(
            _note(
                who,
                "spec.replicas",
                f"replicas is {have_replicas} (the chart sets {want_replicas})"
                + (": no pod runs" if have_replicas == 0 else ""),
                "set the replicas in the chart values if the change is wanted "
                "(an autoscaler's change is expected)",
            )
        )
    if have_spec.get("paused") and not want_spec.get("paused"):
        out.append(
            _note(
                who,
                "spec.paused",
                "the rollout is paused: a chart upgrade does not reach "
                "the pods until it is resumed",
                "`kubectl rollout resume` it",
            )
        )
    return out


def _compare_pod(
    who: str, prefix: str, want: Mapping[str, Any], have: Mapping[str, Any]
) -> list[Finding]:
    out: list[Finding] = []
    for key in sorted(set(want) | set(have)):
        field = f"{prefix}.{key}"
        if key in _CONTAINER_LISTS:
            out += _compare_containers(who, field, want.get(key) or [], have.get(key) or [])
        elif key == "volumes":
            out += _compare_named(
                who,
                field,
                "volume",
                want.get(key) or [],
                have.get(key) or [],
                "name",
                "a volume (with a mount, files the code reads, or a package it imports)",
            )
        elif want.get(key) != have.get(key):
            message = f"{key} is {_show(have.get(key))}, the chart renders {_show(want.get(key))}"
            if key in _POD_NOTES:
                out.append(
                    _note(
                        who,
                        field,
                        message + ": this moves or stops the pods, it does "
                        "not change what they run",
                        "restore it from the chart if unwanted",
                    )
                )
            else:
                out.append(
                    _finding(
                        who,
                        field,
                        message + ": this changes the pods' identity, privileges, network or "
                        "processes (who runs the gate, with what), not as the chart renders it",
                    )
                )
    return out


def _compare_named(
    who: str,
    field: str,
    what: str,
    want: Sequence[Any],
    have: Sequence[Any],
    key: str,
    why: str,
) -> list[Finding]:
    want_by = _keyed(want, key)
    have_by = _keyed(have, key)
    if want_by is None or have_by is None:
        if list(want) != list(have):
            return [_finding(who, field, f"the {what}s differ from the chart's: {_show(have)}")]
        return []
    out: list[Finding] = []
    for name in sorted(set(want_by) | set(have_by)):
        at = f"{field}[{name}]"
        if name not in want_by:
            out.append(
                _finding(
                    who,
                    at,
                    f"{what} {name} is not in the chart ({_show(have_by[name])}): "
                    f"{why}, added by someone else",
                )
            )
        elif name not in have_by:
            out.append(_finding(who, at, f"{what} {name} of the chart was removed"))
        elif want_by[name] != have_by[name]:
            out.append(
                _finding(
                    who,
                    at,
                    f"{what} {name} is {_show(have_by[name])}, the chart renders "
                    f"{_show(want_by[name])}",
                )
            )
    return out


def _compare_containers(
    who: str, field: str, want: Sequence[Any], have: Sequence[Any]
) -> list[Finding]:
    want_by = _keyed(want, "name") or {}
    have_by = _keyed(have, "name") or {}
    out: list[Finding] = []
    for name in sorted(set(want_by) | set(have_by)):
        at = f"{field}[{name}]"
        if name not in want_by:
            image = have_by[name].get("image") if isinstance(have_by[name], Mapping) else None
            out.append(
                _finding(
                    who,
                    at,
                    f"container {name} (image {image}) is not in the chart: it "
                    "runs in the gate's pod, with its service account token, volumes "
                    "and network, added by someone else",
                )
            )
            continue
        if name not in have_by:
            out.append(_finding(who, at, f"container {name} of the chart was removed"))
            continue
        out += _compare_container(who, at, want_by[name], have_by[name])
    return out


def _compare_container(
    who: str, prefix: str, want: Mapping[str, Any], have: Mapping[str, Any]
) -> list[Finding]:
    out: list[Finding] = []
    for key in sorted(set(want) | set(have)):
        field = f"{prefix}.{key}"
        if key in _CONTAINER_IGNORED or want.get(key) == have.get(key):
            continue
        if key == "env":
            out += _compare_named(
                who,
                field,
                "environment variable",
                want.get(key) or [],
                have.get(key) or [],
                "name",
                "an environment variable (PYTHONPATH, KUBECONFIG... change which code "
                "runs and which cluster it reads)",
            )
        elif key == "volumeMounts":
            out += _compare_named(
                who,
                field,
                "mount",
                want.get(key) or [],
                have.get(key) or [],
                "mountPath",
                "a mount (over the bundle, the certificates or the code's own files)",
            )
        elif key in _CONTAINER_NOTES:
            out.append(
                _note(
                    who,
                    field,
                    f"{key} is {_show(have.get(key))}, the chart renders "
                    f"{_show(want.get(key))}: this changes how the pod is probed or "
                    "exposed, not what it runs",
                    "restore it from the chart if unwanted",
                )
            )
        else:
            out.append(
                _finding(
                    who,
                    field,
                    f"{key} is {_show(have.get(key))}, the chart renders {_show(want.get(key))}: "
                    "the container runs other code, arguments or privileges than the chart's",
                )
            )
    return out


def compare_service(
    expected: Mapping[str, Any],
    live: Mapping[str, Any] | None,
    *,
    admission: bool,
    namespace: str = "",
) -> list[Finding]:
    """A Service's selector, ports and type; ``admission``: the webhook configuration sends
    admission requests to it (drift is then a finding, else a note)."""
    who = subject(expected, namespace)
    report = _finding if admission else _note
    why = (
        ": admission requests reach other pods, which decide every AgentRun"
        if admission
        else ": it reaches other pods"
    )
    if live is None:
        if admission:
            return [
                _note(
                    who,
                    "",
                    "the Service the webhook configuration points at does not "
                    "exist: every gated request is denied (fail closed)",
                    "restore it from the chart",
                )
            ]
        return [_note(who, "", "the Service does not exist", "restore it from the chart")]
    want_spec = expected.get("spec") or {}
    have_spec = live.get("spec") or {}
    out: list[Finding] = []
    if (want_spec.get("selector") or {}) != (have_spec.get("selector") or {}):
        out.append(
            report(
                who,
                "spec.selector",
                f"the selector is {_show(have_spec.get('selector'))}, "
                f"the chart renders {_show(want_spec.get('selector'))}{why}",
            )
        )
    if (want_spec.get("type") or "ClusterIP") != (have_spec.get("type") or "ClusterIP"):
        out.append(
            report(
                who,
                "spec.type",
                f"the type is {have_spec.get('type')}, the chart "
                f"renders {want_spec.get('type') or 'ClusterIP'}{why}",
            )
        )
    if have_spec.get("externalName"):
        out.append(
            report(who, "spec.externalName", f"externalName is {have_spec['externalName']}{why}")
        )

    def ports(spec: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return sorted(
            (
                str(p.get("name") or ""),
                p.get("port"),
                str(p.get("targetPort", p.get("port"))),
                p.get("protocol") or "TCP",
            )
            for p in spec.get("ports") or []
        )

    if ports(want_spec) != ports(have_spec):
        out.append(
            report(
                who,
                "spec.ports",
                f"the ports are {ports(have_spec)}, the chart renders {ports(want_spec)}{why}",
            )
        )
    return out


# --- the pods admission reaches -----------------------------------------------------------

SA_MOUNT_PATH: Final = "/var/run/secrets/kubernetes.io/serviceaccount"
_INJECTED_VOLUME: Final = "kube-api-access-"


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, Any] | None) -> bool:
    """A Service's selector (equality only) matches ``labels``; an empty one selects nothing
    (the Service's endpoints are then whoever writes them)."""
    if not selector:
        return False
    have = labels or {}
    return all(have.get(k) == v for k, v in selector.items())


def _injected_token(volume: Mapping[str, Any]) -> bool:
    """The projected token volume the ServiceAccount admission plugin adds to a pod."""
    sources = (volume.get("projected") or {}).get("sources") or []
    return str(volume.get("name", "")).startswith(_INJECTED_VOLUME) and any(
        "serviceAccountToken" in s for s in sources
    )


def _as_created(spec: Mapping[str, Any], automount: bool) -> dict[str, Any]:
    """A pod's spec without what the API server adds to every pod made from a template: the
    token volume and its mounts where the template mounts the token, and the node it runs on."""
    out = {k: v for k, v in spec.items() if k != "nodeName"}
    if not automount:
        return out
    token = {str(v.get("name")) for v in out.get("volumes") or [] if _injected_token(v)}
    out["volumes"] = [v for v in out.get("volumes") or [] if str(v.get("name")) not in token]
    for key in _CONTAINER_LISTS:
        out[key] = [
            {
                **c,
                "volumeMounts": [
                    m
                    for m in c.get("volumeMounts") or []
                    if not (m.get("name") in token and m.get("mountPath") == SA_MOUNT_PATH)
                ],
            }
            for c in out.get(key) or []
        ]
    return out


def rolling(live: Mapping[str, Any] | None) -> bool:
    """The live Deployment is between two templates (its pods are not all the new one's)."""
    if live is None:
        return False
    status = live.get("status") or {}
    generation = (live.get("metadata") or {}).get("generation", 0)
    return bool(
        status.get("observedGeneration", 0) < generation
        or status.get("updatedReplicas", 0) != status.get("replicas", 0)
    )


def compare_pods(
    expected: Mapping[str, Any],
    service: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    namespace: str = "",
) -> list[Finding]:
    """The pods the live webhook ``service`` selects (None: the pods the Deployment
    ``expected`` selects), each against the pod template the chart renders in ``expected``:
    a pod made by hand with the selector's labels, or a pod patched in place (its image) or
    given an ephemeral container, runs other code as the gate (answering admission requests,
    or as the controller, with its identity) without any Deployment changing. Only findings:
    a pod's placement is the scheduler's."""
    if service is not None:
        selector = (service.get("spec") or {}).get("selector") or {}
        why = f"selected by {subject(service, namespace)}: it answers admission requests"
    else:
        selector = ((expected.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        why = f"selected by {subject(expected, namespace)}: it runs as its pods do"
    _, template = _template(expected)
    spec = template.get("spec") or {}
    automount = spec.get("automountServiceAccountToken") is not False
    want = _pod_spec(spec)
    out: list[Finding] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        phase = (pod.get("status") or {}).get("phase")
        if not selects(selector, meta.get("labels")) or phase in ("Succeeded", "Failed"):
            continue
        who = f"Pod/{meta.get('namespace') or namespace}/{meta.get('name')}"
        have = _pod_spec(_as_created(pod.get("spec") or {}, automount))
        for drift in _compare_pod(who, "spec", want, have):
            if drift.failing:
                out.append(
                    Finding(
                        AREA,
                        "finding",
                        who,
                        drift.message + f" (the pod is {why})",
                        "delete the pod (its Deployment makes a new one from the template), "
                        + RESTORE.replace("deployments, cronjobs", "pods, deployments, cronjobs"),
                        drift.field,
                    )
                )
    return out


SERVICE_NAME_LABEL: Final = "kubernetes.io/service-name"


def _pod_ips(pod: Mapping[str, Any]) -> set[str]:
    status = pod.get("status") or {}
    ips = {str(p.get("ip")) for p in status.get("podIPs") or [] if p.get("ip")}
    return ips | ({str(status["podIP"])} if status.get("podIP") else set())


def compare_routes(
    service: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    slices: Sequence[Mapping[str, Any]],
    endpoints: Mapping[str, Any] | None,
    namespace: str = "",
) -> list[Finding]:
    """Every address the webhook's ``service`` routes to (its EndpointSlices, and its legacy
    Endpoints object, which the API server reads when it resolves endpoints itself) must be
    a pod the Service selects, at that pod's IP: a slice written by hand for the Service adds
    an address that kube-proxy, and so the API server, sends admission requests to."""
    selector = (service.get("spec") or {}).get("selector") or {}
    name = _name(service)
    who = subject(service, namespace)
    allowed = {
        str((p.get("metadata") or {}).get("name")): _pod_ips(p)
        for p in pods
        if selects(selector, (p.get("metadata") or {}).get("labels"))
    }

    def stray(ref: Mapping[str, Any] | None, addresses: Iterable[str]) -> list[str]:
        ref = ref or {}
        pod = str(ref.get("name") or "") if ref.get("kind") == "Pod" else ""
        return [a for a in addresses if pod not in allowed or a not in allowed[pod]]

    out: list[Finding] = []
    for piece in slices:
        meta = piece.get("metadata") or {}
        labels = meta.get("labels") or {}
        if labels.get(SERVICE_NAME_LABEL) != name:
            continue
        manager = labels.get("endpointslice.kubernetes.io/managed-by")
        for endpoint in piece.get("endpoints") or []:
            bad = stray(
                endpoint.get("targetRef"), [str(a) for a in endpoint.get("addresses") or []]
            )
            if bad:
                out.append(
                    _finding(
                        who,
                        f"EndpointSlice/{meta.get('name')}",
                        f"the EndpointSlice {meta.get('name')} (managed by {manager}) "
                        f"routes the Service to {', '.join(bad)}, which is not a pod it selects "
                        f"(targetRef {_show(endpoint.get('targetRef'))}): admission requests "
                        "reach that address, which decides every AgentRun",
                    )
                )
    for subset in (endpoints or {}).get("subsets") or []:
        for address in [*(subset.get("addresses") or []), *(subset.get("notReadyAddresses") or [])]:
            bad = stray(address.get("targetRef"), [str(address.get("ip"))])
            if bad:
                out.append(
                    _finding(
                        who,
                        f"Endpoints/{name}",
                        f"the Endpoints object {name} routes the Service to {', '.join(bad)}, "
                        "which is not a pod it selects: an API server resolving endpoints "
                        "itself sends admission requests there",
                    )
                )
    return out
