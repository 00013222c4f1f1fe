"""The gate's Deployments, audit CronJob and Service against the chart's rendering
(approvalgate/audit/workloads.py): each kind of addition or change that alters which code
runs, with which arguments, files, environment, identity or image is a finding; placement,
probes and counts are notes; what a rollout restart or an autoscaler writes is ignored.

The live objects here are the chart's own rendering, edited; tests/e2e/test_audit.py
compares the objects a real API server stores (its defaults filled in) and finds nothing.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
import yaml

from approvalgate.audit.findings import Finding
from approvalgate.audit.workloads import (
    SA_MOUNT_PATH,
    compare_pods,
    compare_routes,
    compare_service,
    compare_workload,
    mounted_config_maps,
    pick_workloads,
)
from tests.support.tools import pinned_binary
from tests.unit.test_audit_webhook import CHART, RELEASE_KEY, VALUES

pytestmark = pytest.mark.helm

NS = "approvalgate-system"
POD = "spec.template.spec"


@cache
def _rendered() -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [
            str(pinned_binary("helm", "helm")),
            "template",
            "approvalgate",
            str(CHART),
            "-n",
            NS,
            "--set-file",
            f"bundleSigning.publicKeys[0]={RELEASE_KEY}",
            "--set",
            "bundleSigning.environment=staging",
            "-f",
            str(VALUES),
            "--set",
            "audit.enabled=true",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return tuple(pick_workloads(yaml.safe_load_all(out.stdout)))


def rendered(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in _rendered() if d["kind"] == kind and d["metadata"]["name"] == name]
    return copy.deepcopy(found)


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as the API server stores it: the defaults it writes, empty fields dropped."""
    live = copy.deepcopy(obj)
    pod = (
        live["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        if live["kind"] == "CronJob"
        else live["spec"]["template"]["spec"]
    )
    pod.update(
        restartPolicy=pod.get("restartPolicy", "Always"),
        dnsPolicy="ClusterFirst",
        schedulerName="default-scheduler",
        serviceAccount=pod["serviceAccountName"],
    )
    for container in pod["containers"]:
        container.update(
            terminationMessagePath="/dev/termination-log", terminationMessagePolicy="File"
        )
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")
        for key in ("livenessProbe", "readinessProbe", "startupProbe"):
            if key in container:
                container[key].setdefault("timeoutSeconds", 1)
                container[key].setdefault("successThreshold", 1)
    for volume in pod["volumes"]:
        for source in ("configMap", "secret"):
            if source in volume:
                volume[source].setdefault("defaultMode", 420)
    live["metadata"].update(uid="x", resourceVersion="1", generation=3)
    live["status"] = {"replicas": 2, "readyReplicas": 2}
    return live


def webhook_live(edit: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    live = stored(rendered("Deployment", "approvalgate"))
    edit(live["spec"]["template"]["spec"])
    return live


def compare(live: dict[str, Any] | None, name: str = "approvalgate") -> list[Finding]:
    return compare_workload(rendered("Deployment", name), live)


def fields(found: list[Finding], failing: bool = True) -> list[str]:
    return [f.field for f in found if f.failing is failing]


def container(pod: dict[str, Any], name: str = "webhook") -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in pod["containers"] if c["name"] == name)
    return found


def test_the_workloads_as_stored_have_no_drift() -> None:
    for obj in _rendered():
        if obj["kind"] == "Service":
            assert compare_service(obj, copy.deepcopy(obj), admission=True) == []
        else:
            assert compare_workload(obj, stored(obj)) == [], obj["metadata"]["name"]
            assert compare_workload(obj, copy.deepcopy(obj)) == []


def test_the_chart_renders_both_deployments_the_service_and_the_cronjob() -> None:
    names = sorted((d["kind"], d["metadata"]["name"]) for d in _rendered())
    assert ("Deployment", "approvalgate") in names
    assert ("Deployment", "approvalgate-controller") in names
    assert ("Service", "approvalgate") in names
    assert ("CronJob", "approvalgate-audit") in names


def _add_env(pod: dict[str, Any]) -> None:
    container(pod)["env"].append({"name": "PYTHONPATH", "value": "/opt/shadow"})


def _mount_shadow(pod: dict[str, Any]) -> None:
    pod["volumes"].append({"name": "shadow", "configMap": {"name": "shadow"}})
    container(pod)["volumeMounts"].append({"name": "shadow", "mountPath": "/opt/shadow"})


def _bundle_from_elsewhere(pod: dict[str, Any]) -> None:
    (bundle,) = [v for v in pod["volumes"] if v["name"] == "bundle"]
    bundle["configMap"]["name"] = "my-own-bundle"


def _host_path_over_bundle(pod: dict[str, Any]) -> None:
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/var/tmp/b"}})
    (mount,) = [m for m in container(pod)["volumeMounts"] if m["name"] == "bundle"]
    mount["name"] = "host"


ADDITIONS: dict[str, tuple[Callable[[dict[str, Any]], object], set[str]]] = {
    "env PYTHONPATH": (_add_env, {f"{POD}.containers[webhook].env[PYTHONPATH]"}),
    "env value changed": (
        lambda pod: container(pod)["env"][0].update(value="/elsewhere"),
        {f"{POD}.containers[webhook].env[HOME]"},
    ),
    "envFrom": (
        lambda pod: container(pod).update(envFrom=[{"configMapRef": {"name": "x"}}]),
        {f"{POD}.containers[webhook].envFrom"},
    ),
    "a ConfigMap mounted with PYTHONPATH": (
        lambda pod: (_add_env(pod), _mount_shadow(pod)),
        {
            f"{POD}.containers[webhook].env[PYTHONPATH]",
            f"{POD}.containers[webhook].volumeMounts[/opt/shadow]",
            f"{POD}.volumes[shadow]",
        },
    ),
    "the bundle from another ConfigMap": (_bundle_from_elsewhere, {f"{POD}.volumes[bundle]"}),
    "a hostPath over the bundle": (
        _host_path_over_bundle,
        {
            f"{POD}.volumes[host]",
            f"{POD}.containers[webhook].volumeMounts[/etc/approvalgate/bundle]",
        },
    ),
    "a sidecar": (
        lambda pod: pod["containers"].append({"name": "sidecar", "image": "evil:1"}),
        {f"{POD}.containers[sidecar]"},
    ),
    "an initContainer": (
        lambda pod: pod.update(initContainers=[{"name": "prime", "image": "evil:1"}]),
        {f"{POD}.initContainers[prime]"},
    ),
    "an ephemeral container": (
        lambda pod: pod.update(ephemeralContainers=[{"name": "debug", "image": "evil:1"}]),
        {f"{POD}.ephemeralContainers[debug]"},
    ),
    "the image": (
        lambda pod: container(pod).update(image="evil/approvalgate:1"),
        {f"{POD}.containers[webhook].image"},
    ),
    "an argument": (
        lambda pod: container(pod)["args"].append("--allow-unsigned-bundle"),
        {f"{POD}.containers[webhook].args"},
    ),
    "a command": (
        lambda pod: container(pod).update(command=["python", "-m", "shadow"]),
        {f"{POD}.containers[webhook].command"},
    ),
    "a lifecycle hook": (
        lambda pod: container(pod).update(lifecycle={"postStart": {"exec": {"command": ["sh"]}}}),
        {f"{POD}.containers[webhook].lifecycle"},
    ),
    "privileges": (
        lambda pod: container(pod)["securityContext"].update(runAsUser=0),
        {f"{POD}.containers[webhook].securityContext"},
    ),
    "the service account": (
        lambda pod: pod.update(serviceAccountName="default", serviceAccount="default"),
        {f"{POD}.serviceAccountName", f"{POD}.serviceAccount"},
    ),
    "the token mounted": (
        lambda pod: pod.update(
            automountServiceAccountToken=not pod["automountServiceAccountToken"]
        ),
        {f"{POD}.automountServiceAccountToken"},
    ),
    "hostNetwork": (lambda pod: pod.update(hostNetwork=True), {f"{POD}.hostNetwork"}),
    "hostAliases": (
        lambda pod: pod.update(hostAliases=[{"ip": "10.0.0.66", "hostnames": ["kubernetes"]}]),
        {f"{POD}.hostAliases"},
    ),
    "a field the comparison does not know": (
        lambda pod: pod.update(someFutureField={"x": 1}),
        {f"{POD}.someFutureField"},
    ),
    "the container removed": (
        lambda pod: pod.update(containers=[{**container(pod), "name": "renamed"}]),
        {f"{POD}.containers[webhook]", f"{POD}.containers[renamed]"},
    ),
}


@pytest.mark.parametrize("case", sorted(ADDITIONS))
def test_each_change_to_what_runs_is_a_finding(case: str) -> None:
    edit, expected = ADDITIONS[case]
    found = compare(webhook_live(edit))
    assert set(fields(found)) == expected, found
    for finding in found:
        assert finding.subject == f"Deployment/{NS}/approvalgate"
        assert finding.message.startswith(f"Deployment/{NS}/approvalgate {finding.field}: ")
        assert "helm upgrade" in finding.advice and "Replace=true" in finding.advice


NOTES: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "nodeSelector": (lambda pod: pod.update(nodeSelector={"pool": "b"}), f"{POD}.nodeSelector"),
    "tolerations": (
        lambda pod: pod.update(tolerations=[{"operator": "Exists"}]),
        f"{POD}.tolerations",
    ),
    "priorityClassName": (
        lambda pod: pod.update(priorityClassName="high"),
        f"{POD}.priorityClassName",
    ),
    "a probe": (
        lambda pod: container(pod)["readinessProbe"].update(periodSeconds=30),
        f"{POD}.containers[webhook].readinessProbe",
    ),
    "imagePullPolicy": (
        lambda pod: container(pod).update(imagePullPolicy="Never"),
        f"{POD}.containers[webhook].imagePullPolicy",
    ),
}


@pytest.mark.parametrize("case", sorted(NOTES))
def test_placement_probes_and_pull_policy_are_notes(case: str) -> None:
    edit, field = NOTES[case]
    found = compare(webhook_live(edit))
    assert fields(found) == [] and fields(found, failing=False) == [field]


def test_what_autoscalers_and_restarts_write_is_not_reported() -> None:
    live = webhook_live(lambda pod: container(pod).update(resources={"limits": {"cpu": "9"}}))
    live["spec"]["template"].setdefault("metadata", {}).setdefault("annotations", {})[
        "kubectl.kubernetes.io/restartedAt"
    ] = "2026-12-07T10:00:00Z"
    live["spec"]["strategy"] = {"type": "Recreate"}
    live["spec"]["revisionHistoryLimit"] = 1
    live["metadata"].setdefault("annotations", {})["argocd.argoproj.io/tracking-id"] = "x"
    assert compare(live) == []


def test_replicas_and_labels_are_notes() -> None:
    live = stored(rendered("Deployment", "approvalgate-controller"))
    live["spec"]["replicas"] = 0
    live["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = "other"
    found = compare(live, "approvalgate-controller")
    assert fields(found) == []
    assert fields(found, failing=False) == ["spec.replicas", "spec.template.metadata.labels"]
    assert "no pod runs" in found[0].message


def test_the_controllers_environment_is_compared_too() -> None:
    live = stored(rendered("Deployment", "approvalgate-controller"))
    pod = live["spec"]["template"]["spec"]
    pod["containers"][0].setdefault("env", []).append({"name": "KUBECONFIG", "value": "/x"})
    name = pod["containers"][0]["name"]
    found = compare(live, "approvalgate-controller")
    assert fields(found) == [f"{POD}.containers[{name}].env[KUBECONFIG]"]


def test_a_missing_deployment_is_a_finding() -> None:
    (finding,) = compare(None)
    assert finding.failing and "does not exist" in finding.message


def test_the_audit_cronjob_is_compared_in_its_job_template() -> None:
    expected = rendered("CronJob", "approvalgate-audit")
    live = stored(expected)
    live["spec"]["suspend"] = True
    pod = live["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    pod["containers"][0]["args"] = ["version"]
    found = compare_workload(expected, live)
    at = "spec.jobTemplate.spec.template.spec"
    assert fields(found) == [f"{at}.containers[audit].args"]
    assert fields(found, failing=False) == ["spec.suspend"]


def _service(edit: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    live = rendered("Service", "approvalgate")
    edit(live["spec"])
    live["spec"].update(clusterIP="10.96.0.10", sessionAffinity="None")
    return live


SERVICE: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "a selector key added": (lambda s: s["selector"].update(shadow="yes"), "spec.selector"),
    "the selector removed": (lambda s: s.pop("selector"), "spec.selector"),
    "the target port": (lambda s: s["ports"][0].update(targetPort=9443), "spec.ports"),
    "ExternalName": (
        lambda s: s.update(type="ExternalName", externalName="evil.example"),
        "spec.type",
    ),
}


@pytest.mark.parametrize("case", sorted(SERVICE))
def test_the_admission_services_routing_is_a_finding(case: str) -> None:
    edit, field = SERVICE[case]
    expected = rendered("Service", "approvalgate")
    found = compare_service(expected, _service(edit), admission=True)
    assert field in fields(found)
    assert all("admission requests reach other pods" in f.message for f in found)
    # the same drift on a Service no admission request goes to is a note
    other = compare_service(expected, _service(edit), admission=False)
    assert fields(other) == [] and field in fields(other, failing=False)


def test_a_missing_admission_service_fails_closed_and_is_a_note() -> None:
    (note,) = compare_service(rendered("Service", "approvalgate"), None, admission=True)
    assert not note.failing and "fail closed" in note.message


def webhook_pod(edit: Callable[[dict[str, Any]], object] = lambda pod: None) -> dict[str, Any]:
    """A pod its ReplicaSet made from the chart's template, as stored: the token volume the
    ServiceAccount admission plugin adds where the template mounts it, its node, the
    tolerations and priority admission adds."""
    template = stored(rendered("Deployment", "approvalgate"))["spec"]["template"]
    spec = copy.deepcopy(template["spec"])
    edit(spec)
    if spec.get("automountServiceAccountToken") is not False:
        spec["volumes"].append(
            {
                "name": "kube-api-access-x2x9q",
                "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
            }
        )
        for c in spec["containers"]:
            c["volumeMounts"].append(
                {"name": "kube-api-access-x2x9q", "mountPath": SA_MOUNT_PATH, "readOnly": True}
            )
    spec.update(
        nodeName="node-1",
        priority=0,
        tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}],
    )
    return {
        "metadata": {
            "name": "approvalgate-7d9f-abcde",
            "namespace": NS,
            "labels": dict(template["metadata"]["labels"], **{"pod-template-hash": "7d9f"}),
        },
        "spec": spec,
        "status": {"phase": "Running"},
    }


def pods_found(*pods: dict[str, Any]) -> list[Finding]:
    return compare_pods(
        rendered("Deployment", "approvalgate"), rendered("Service", "approvalgate"), list(pods)
    )


def test_the_pods_a_deployment_makes_are_not_reported() -> None:
    assert pods_found(webhook_pod()) == []


def test_a_pod_the_service_selects_that_runs_other_code_is_a_finding() -> None:
    patched = webhook_pod(lambda spec: spec["containers"][0].update(image="evil:1"))
    debugged = webhook_pod(
        lambda spec: spec.update(ephemeralContainers=[{"name": "debugger", "image": "busybox"}])
    )
    debugged["metadata"]["name"] = "approvalgate-7d9f-debug"
    found = pods_found(patched, debugged)
    assert [(f.subject, f.field) for f in found if f.failing] == [
        (f"Pod/{NS}/approvalgate-7d9f-abcde", "spec.containers[webhook].image"),
        (f"Pod/{NS}/approvalgate-7d9f-debug", "spec.ephemeralContainers[debugger]"),
    ]
    assert all("it answers admission requests" in f.message for f in found)


def test_pods_the_service_does_not_select_or_that_ended_are_not_compared() -> None:
    other = webhook_pod(lambda spec: spec["containers"][0].update(image="evil:1"))
    other["metadata"]["labels"] = {"app": "something-else"}
    done = webhook_pod(lambda spec: spec["containers"][0].update(image="evil:1"))
    done["status"]["phase"] = "Succeeded"
    assert pods_found(other, done) == []
    # a token volume where the template does not mount the token is not the plugin's
    expected = rendered("Deployment", "approvalgate")
    expected["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
    pod = webhook_pod(lambda spec: spec.update(automountServiceAccountToken=False))
    service = rendered("Service", "approvalgate")
    assert compare_pods(expected, service, [pod]) == []
    pod["spec"]["volumes"].append(
        {"name": "kube-api-access-zz", "projected": {"sources": [{"serviceAccountToken": {}}]}}
    )
    found = compare_pods(expected, service, [pod])
    assert [f.field for f in found] == ["spec.volumes[kube-api-access-zz]"]


def routed(slices: list[dict[str, Any]], endpoints: dict[str, Any] | None = None) -> list[str]:
    pod = webhook_pod()
    pod["status"]["podIPs"] = [{"ip": "10.1.0.5"}]
    service = rendered("Service", "approvalgate")
    return [f.field for f in compare_routes(service, [pod], slices, endpoints) if f.failing]


def _slice(name: str, manager: str, *endpoints: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/service-name": "approvalgate",
                "endpointslice.kubernetes.io/managed-by": manager,
            },
        },
        "endpoints": list(endpoints),
    }


CONTROLLER = "endpointslice-controller.k8s.io"
OURS = {"addresses": ["10.1.0.5"], "targetRef": {"kind": "Pod", "name": "approvalgate-7d9f-abcde"}}


def test_the_routes_the_endpointslice_controller_writes_are_not_reported() -> None:
    endpoints = {"subsets": [{"addresses": [{"ip": "10.1.0.5", "targetRef": OURS["targetRef"]}]}]}
    assert routed([_slice("approvalgate-abc", CONTROLLER, OURS)], endpoints) == []
    # a slice of another Service is not this one's
    other = _slice("x", "someone", {"addresses": ["10.0.0.66"]})
    other["metadata"]["labels"]["kubernetes.io/service-name"] = "other"
    assert routed([other]) == []


def test_an_address_that_is_not_a_selected_pod_is_a_finding() -> None:
    forged = {"addresses": ["10.0.0.66"]}
    claims_ours = {"addresses": ["10.0.0.66"], "targetRef": OURS["targetRef"]}
    assert routed([_slice("mine", "someone", forged)]) == ["EndpointSlice/mine"]
    # even labelled as the controller's, or naming a selected pod at another address
    assert routed([_slice("c", CONTROLLER, OURS, claims_ours)]) == ["EndpointSlice/c"]
    endpoints = {"subsets": [{"notReadyAddresses": [{"ip": "10.0.0.66"}]}]}
    assert routed([], endpoints) == ["Endpoints/approvalgate"]


def test_a_pod_the_controllers_deployment_selects_is_compared_with_its_template() -> None:
    expected = rendered("Deployment", "approvalgate-controller")
    template = stored(expected)["spec"]["template"]
    spec = copy.deepcopy(template["spec"])
    spec["containers"][0]["image"] = "evil:1"
    pod = {
        "metadata": {"name": "c", "namespace": NS, "labels": template["metadata"]["labels"]},
        "spec": spec,
        "status": {"phase": "Pending"},
    }
    (finding,) = compare_pods(expected, None, [pod])
    assert finding.field == f"spec.containers[{spec['containers'][0]['name']}].image"
    assert f"selected by Deployment/{NS}/approvalgate-controller" in finding.message
    pod["spec"] = copy.deepcopy(template["spec"])
    assert compare_pods(expected, None, [pod]) == []


def test_the_config_maps_a_workload_mounts_or_reads_are_its_own() -> None:
    """Who may write them changes what the gate runs (rbac, field release): a volume, a
    projected source, envFrom and an env entry, in a Deployment and in a CronJob's job."""
    pod = {
        "volumes": [
            {"name": "a", "configMap": {"name": "bundle"}},
            {"name": "b", "projected": {"sources": [{"configMap": {"name": "extra"}}, {}]}},
            {"name": "c", "secret": {"secretName": "tls"}},
        ],
        "containers": [
            {"name": "x", "envFrom": [{"configMapRef": {"name": "settings"}}]},
            {"name": "y", "env": [{"name": "E", "valueFrom": {"configMapKeyRef": {"name": "k"}}}]},
        ],
        "initContainers": [{"name": "z", "envFrom": [{"secretRef": {"name": "s"}}]}],
    }
    deployment = {"kind": "Deployment", "spec": {"template": {"spec": pod}}}
    cronjob = {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": pod}}}}}
    for obj in (deployment, cronjob):
        assert mounted_config_maps(obj) == ["bundle", "extra", "k", "settings"]
    assert mounted_config_maps({"kind": "Service", "spec": {}}) == []
