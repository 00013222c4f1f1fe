"""argocd/: what each AppProject lets its Applications write, read as Argo CD reads it, and
what the chart Application pins beside the bundle-signing keys (a sixth red-team pass: the
delivery path of the gate).

Argo CD applies an Application's objects only where its AppProject permits them: the source
repository (`sourceRepos`), the cluster and namespace of each namespaced object
(`destinations`, where a pattern starting with `!` denies), and the object's group and kind
(`namespaceResourceWhitelist`/`Blacklist`, `clusterResourceWhitelist`/`Blacklist`, a cluster
entry optionally restricted by `name`). :func:`permitted` is that reading, from Argo CD
v3.5's `AppProject.IsGroupKindPermitted`, `isDestinationMatched` and the CRD's documentation
of `ClusterResourceRestrictionItem.name` (third_party/crds/argocd, v3.5.1): an unset
namespaced whitelist permits every kind, an empty one none; a cluster-scoped kind needs a
whitelist entry; patterns are Go's filepath.Match (here only `*`).

Whoever may add an Application to a project (Argo CD RBAC `applications, create, PROJECT/*`),
or edit one of its sources, writes what the project permits. So no project here may permit
the gate's objects except the gate's own, and the gate's own permits nothing else.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.argocd_apps import (
    APP,
    MANIFESTS,
    PLACEHOLDER,
    PROJECT,
    generated_applications,
    repo_path,
)
from tests.chart.support import ENVIRONMENTS, EXAMPLE_REPO, RENDERS, documents, render

GATE_NAMESPACE = APP["spec"]["destination"]["namespace"]
PROJECTS = {
    obj["metadata"]["name"]: obj for obj in MANIFESTS.values() if obj["kind"] == "AppProject"
}
APPLICATIONS = [APP, *generated_applications().values()]


def _match(pattern: str, value: str) -> bool:
    return pattern == "*" or fnmatch.fnmatchcase(value, pattern)


def _dest_match(pattern: str, value: str) -> bool:
    """A destination field's pattern; `!x` matches what `x` does not."""
    if pattern.startswith("!"):
        return not _match(pattern[1:], value)
    return _match(pattern, value)


def _in_list(entries: list[dict[str, str]], group: str, kind: str, name: str | None) -> bool:
    return any(
        _match(entry["kind"], kind)
        and _match(entry["group"], group)
        and (name is None or "name" not in entry or _match(entry["name"], name))
        for entry in entries
    )


def permitted(
    project: dict[str, Any],
    group: str,
    kind: str,
    *,
    namespace: str | None,
    name: str,
    cluster: str = "prod",
) -> bool:
    """Whether Argo CD syncs this object for an Application of ``project`` whose destination
    is the cluster named ``cluster`` (``namespace`` None: cluster-scoped)."""
    spec = project["spec"]
    if namespace is not None:
        white = spec.get("namespaceResourceWhitelist")
        listed = white is None or _in_list(white, group, kind, None)
        if not listed or _in_list(spec.get("namespaceResourceBlacklist") or [], group, kind, None):
            return False
        matched, denied = False, False
        for item in spec.get("destinations") or []:
            name_ok = "name" in item and _dest_match(item["name"], cluster)
            ns_ok = _dest_match(item.get("namespace", ""), namespace)
            if name_ok and ns_ok:
                matched = True
            elif (not name_ok and item.get("name", "").startswith("!")) or (
                not ns_ok and item.get("namespace", "").startswith("!")
            ):
                denied = True
        return matched and not denied
    white = spec.get("clusterResourceWhitelist") or []
    black = spec.get("clusterResourceBlacklist") or []
    return _in_list(white, group, kind, name) and not _in_list(black, group, kind, name)


def permits(project: dict[str, Any], obj: dict[str, Any], namespace: str | None) -> bool:
    return permitted(
        project,
        obj["apiVersion"].rpartition("/")[0],
        obj["kind"],
        namespace=namespace,
        name=obj["metadata"]["name"],
    )


def _namespaced(obj: dict[str, Any]) -> bool:
    return "namespace" in obj["metadata"]


def _every_chart_object(helm: Path) -> list[dict[str, Any]]:
    """Every object any known render of the chart makes (tests/chart/support.RENDERS)."""
    out = []
    for files, sets in RENDERS.values():
        out += render(helm, *files, sets=sets)
    return out


def _application_render(helm: Path, compiled: Path | None = None) -> list[dict[str, Any]]:
    """The chart as the Application renders it: its value file (the compiled values, or
    ``compiled`` in their place), then its valuesObject, which Argo CD applies last."""
    source = APP["spec"]["sources"][0]
    values = compiled or repo_path(source["helm"]["valueFiles"][0].removeprefix("$values/"))
    pinned = Path(str(values) + ".valuesObject.yaml")
    pinned.write_text(yaml.safe_dump(source["helm"]["valuesObject"]), encoding="utf-8")
    try:
        return render(
            helm,
            values,
            pinned,
            release=source["helm"]["releaseName"],
            namespace=GATE_NAMESPACE,
            chart=repo_path(source["path"]),
        )
    finally:
        pinned.unlink()


# --- the model of Argo CD's reading -----------------------------------------------------------


def test_the_reading_of_a_project_is_argo_cds() -> None:
    none: dict[str, Any] = {"spec": {"destinations": [{"name": "*", "namespace": "*"}]}}
    empty = {"spec": {**none["spec"], "namespaceResourceWhitelist": []}}
    assert permitted(none, "", "ConfigMap", namespace="a", name="x")  # unset: every kind
    assert not permitted(empty, "", "ConfigMap", namespace="a", name="x")  # []: none
    assert not permitted(none, "", "Namespace", namespace=None, name="a")  # cluster: listed only
    deny = {"spec": {"destinations": [{"name": "*", "namespace": "!gate"}]}}
    assert permitted(deny, "", "ConfigMap", namespace="agents", name="x")
    assert not permitted(deny, "", "ConfigMap", namespace="gate", name="x")
    both = {
        "spec": {"destinations": [*none["spec"]["destinations"], *deny["spec"]["destinations"]]}
    }
    assert not permitted(both, "", "ConfigMap", namespace="gate", name="x")  # a deny wins
    named = {
        "spec": {"clusterResourceWhitelist": [{"group": "", "kind": "Namespace", "name": "g-*"}]}
    }
    assert permitted(named, "", "Namespace", namespace=None, name="g-1")
    assert not permitted(named, "", "Namespace", namespace=None, name="kube-system")


# --- the gate's own project -------------------------------------------------------------------


def test_the_chart_application_has_a_project_of_its_own() -> None:
    """Not `default`, which Argo CD creates permitting every repository, destination and kind,
    cluster-scoped included: whoever may create any Application there (often everyone with
    Argo CD access) could write the webhook configuration, the bundle ConfigMap or the CRDs.
    The gate's project is defined here and is no other Application's."""
    project = APP["spec"]["project"]
    assert project != "default" and project in PROJECTS
    assert project != PROJECT["metadata"]["name"]
    others = [app for app in APPLICATIONS if app is not APP]
    assert all(app["spec"]["project"] != project for app in others)
    spec = PROJECTS[project]["spec"]
    assert spec["sourceRepos"] == [PLACEHOLDER]
    assert spec["destinations"] == [{"name": "*", "namespace": GATE_NAMESPACE}]
    # Applications in other namespaces (apps-in-any-namespace) may not use either project
    assert all("sourceNamespaces" not in p["spec"] for p in PROJECTS.values())
    wave = int(PROJECTS[project]["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
    assert wave < int(APP["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])


@pytest.mark.helm
def test_the_gates_project_permits_what_the_application_renders(helm: Path) -> None:
    project = PROJECTS[APP["spec"]["project"]]
    objects = _application_render(helm)
    refused = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objects
        if not permits(project, o, o["metadata"].get("namespace"))
    ]
    assert refused == []
    # CreateNamespace=true: Argo CD creates the namespace as an object of the project
    assert "CreateNamespace=true" in APP["spec"]["syncPolicy"]["syncOptions"]
    assert permitted(project, "", "Namespace", namespace=None, name=GATE_NAMESPACE)


@pytest.mark.helm
def test_the_gates_project_permits_only_the_kinds_the_chart_renders(helm: Path) -> None:
    """Exactly the namespaced kinds some render of the chart makes, and cluster-scoped objects
    only by the names the chart gives them."""
    project = PROJECTS[APP["spec"]["project"]]
    rendered = {
        (o["apiVersion"].rpartition("/")[0], o["kind"])
        for o in _every_chart_object(helm)
        if _namespaced(o)
    }
    listed = {(e["group"], e["kind"]) for e in project["spec"]["namespaceResourceWhitelist"]}
    assert listed == rendered
    for group, kind, name in [
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", "kyverno-resource"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration", "approvalgate"),
        ("apiextensions.k8s.io", "CustomResourceDefinition", "agentruns.agents.proompteng.ai"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding", "cluster-admin"),
        ("rbac.authorization.k8s.io", "ClusterRole", "edit-extra"),
        ("", "Namespace", "kube-system"),
        ("apiregistration.k8s.io", "APIService", "v1alpha1.gates.proompteng.ai"),
    ]:
        assert not permitted(project, group, kind, namespace=None, name=name), (kind, name)
    for namespace in ("kube-system", "agents", "argocd"):
        assert not permitted(project, "", "ConfigMap", namespace=namespace, name="x")


# --- every other project ----------------------------------------------------------------------


@pytest.mark.helm
def test_no_other_project_may_write_the_gates_objects(helm: Path) -> None:
    """Whoever may add an Application to the policies' project, or steer its generator (a
    folder of `rendered/`), could otherwise replace the bundle ConfigMap, the floor, the
    serving Secret, the webhook's Deployment or RBAC in the gate's namespace, or the webhook
    configuration itself. That project may write only the kinds the compiler renders, never
    in the gate's namespace, and nothing cluster-scoped."""
    gates = APP["spec"]["project"]
    objects = _every_chart_object(helm)
    extra = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "approvalgate-bundle-floor"},
        },
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "approvalgate-tls"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GATE_NAMESPACE}},
        {
            "apiVersion": "agents.proompteng.ai/v1alpha1",
            "kind": "AgentRun",
            "metadata": {"name": "r"},
        },
    ]
    for name, project in PROJECTS.items():
        if name == gates:
            continue
        allowed = [
            f"{name}: {o['kind']}/{o['metadata']['name']}"
            for o in objects
            if permits(project, o, GATE_NAMESPACE if _namespaced(o) else None)
        ]
        allowed += [
            f"{name}: {o['kind']}/{o['metadata']['name']} in {GATE_NAMESPACE}"
            for o in extra
            if permits(project, o, None if o["kind"] == "Namespace" else GATE_NAMESPACE)
        ]
        assert allowed == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_policies_project_permits_what_the_compiler_renders(env: str) -> None:
    folder = EXAMPLE_REPO / "rendered" / env
    listed = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    objects = [doc for item in listed for doc in documents((folder / item).read_text())]
    assert objects
    refused = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objects
        if not permits(PROJECT, o, o["metadata"]["namespace"])
    ]
    assert refused == []


def test_the_policies_project_permits_only_the_kinds_the_compiler_renders() -> None:
    """ApprovalPolicies, AgentRuns and the egress flavors' NetworkPolicies and
    CiliumNetworkPolicies: not a ConfigMap, Secret, Role or Deployment anywhere."""
    listed = sorted((e["group"], e["kind"]) for e in PROJECT["spec"]["namespaceResourceWhitelist"])
    assert listed == [
        ("agents.proompteng.ai", "AgentRun"),
        ("approvals.proompteng.ai", "ApprovalPolicy"),
        ("cilium.io", "CiliumNetworkPolicy"),
        ("networking.k8s.io", "NetworkPolicy"),
    ]
    for kind in ("ConfigMap", "Secret", "ServiceAccount"):
        assert not permitted(PROJECT, "", kind, namespace="agents", name="x")
    assert not permitted(
        PROJECT, "rbac.authorization.k8s.io", "RoleBinding", namespace="agents", name="x"
    )


# --- what the chart Application pins beside the keys -------------------------------------------


@pytest.mark.helm
def test_the_compiled_values_cannot_choose_the_image(helm: Path, tmp_path: Path) -> None:
    """The compiled values are a file of the policy repo, edited by whoever edits policies
    (the keys are pinned apart from it for that reason). A change there reading
    `image: {tag: 0.1.1}` looks harmless, and an image of someone else's verifies no
    signature at all. The Application pins the image beside the keys (valuesObject, applied
    after the value file), so the pods run the Application's image whatever the compiled
    values say."""
    source = APP["spec"]["sources"][0]
    compiled = repo_path(source["helm"]["valueFiles"][0].removeprefix("$values/"))
    values = yaml.safe_load(compiled.read_text(encoding="utf-8"))
    values["image"] = {
        "repository": "registry.example/not-approvalgate",
        "tag": "0.1.1",
        "digest": "sha256:" + "e" * 64,
    }
    forged = tmp_path / "approvalgate-values.yaml"
    forged.write_text(yaml.safe_dump(values), encoding="utf-8")
    images = {
        c["image"]
        for o in _application_render(helm, forged)
        if o["kind"] in ("Deployment", "CronJob")
        for c in (
            o["spec"]["template"]["spec"]["containers"]
            if o["kind"] == "Deployment"
            else o["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        )
    }
    assert not any("not-approvalgate" in image for image in images), images
    pinned = source["helm"]["valuesObject"]["image"]
    assert set(pinned) == {"repository", "tag", "digest"}
    want = f"{pinned['repository']}:{pinned['tag']}"
    if pinned["digest"]:
        want = f"{want}@{pinned['digest']}"
    assert images == {want}


def test_the_application_pins_the_controller_beside_the_keys() -> None:
    """The revision floor is raised by the controller: compiled values switching it off
    (`controller.enabled: false`, `controller.replicas: 0`) opened a window for a rollback
    ("What remains"). The Application pins both."""
    pinned = APP["spec"]["sources"][0]["helm"]["valuesObject"]["controller"]
    assert pinned["enabled"] is True and pinned["replicas"] >= 1


@pytest.mark.helm
def test_the_gates_project_flags_what_someone_added_beside_the_gate(helm: Path) -> None:
    """A sync neither removes nor shows an object in the release namespace that no
    Application holds (a RoleBinding granting configmap writes, a second Deployment): Argo
    CD's orphaned-resource monitoring of the gate's project does, ignoring only what lives
    there without being in git: the floor the controller writes, the Secrets cert-manager
    issues, the controller's Lease, and what every namespace holds."""
    project = PROJECTS[APP["spec"]["project"]]
    orphans = project["spec"]["orphanedResources"]
    assert orphans["warn"] is True
    objects = _application_render(helm)
    secrets = {
        o["spec"]["secretName"]
        for o in objects
        if o["kind"] == "Certificate" and "secretName" in o["spec"]
    }
    (controller,) = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-controller")
    ]
    args = controller["spec"]["template"]["spec"]["containers"][0]["args"]
    lease = args[args.index("--lease-name") + 1]
    floor = args[args.index("--bundle-floor") + 1].split("/")[1]
    ignored = {(e["group"], e["kind"], e["name"]) for e in orphans["ignore"]}
    assert ignored == {
        ("", "ConfigMap", floor),
        ("", "ConfigMap", "kube-root-ca.crt"),
        ("", "ServiceAccount", "default"),
        *(("", "Secret", name) for name in secrets),
        ("coordination.k8s.io", "Lease", lease),
    }
    assert len(secrets) == 2


def test_the_application_pins_the_guard_beside_the_keys() -> None:
    """The guard refuses weakening the webhook configuration; compiled values switching it
    off (`guard.enabled: false`) or exempting everyone (`guard.deployers.groups:
    [system:authenticated]`) would undo it. The Application pins both, and names Argo CD's
    application controller as the one deployer."""
    pinned = APP["spec"]["sources"][0]["helm"]["valuesObject"]["guard"]
    assert pinned == {
        "enabled": True,
        "deployers": {
            "users": ["system:serviceaccount:argocd:argocd-application-controller"],
            "groups": [],
        },
    }
