"""`approvalgate audit`'s reading of RBAC against the API server's own authorizer.

For each path to a trusted ServiceAccount's powers, the RBAC is built on the real API server,
the API server is asked (SubjectAccessReview through ``kubectl auth can-i --as``, and where
it can be done without a kubelet, the act itself) whether the subject really has the power,
and the audit, reading the cluster through its own client, must name the subject. The
trusted submitter is the corpus's: ``system:serviceaccount:agents-system:submission-api``.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.policy import BundleSettings
from approvalgate.audit import rbac
from approvalgate.audit.cluster import Cluster
from approvalgate.audit.findings import Finding
from approvalgate.audit.runner import _audit_rbac
from tests.e2e.controlplane import ControlPlane
from tests.support.corpus import BASE, compile_case_bundle

pytestmark = pytest.mark.e2e

NS, NAME = "agents-system", "submission-api"
TRUSTED = f"system:serviceaccount:{NS}:{NAME}"
RBAC = "rbac.authorization.k8s.io"
DEFAULTS = {"kubernetes.io/bootstrapping": "rbac-defaults"}


@pytest.fixture(scope="module")
def plane(control_plane: ControlPlane) -> ControlPlane:
    control_plane.kubectl("admin", "create", "namespace", NS, check=False)
    control_plane.kubectl("admin", "create", "serviceaccount", NAME, "-n", NS, check=False)
    return control_plane


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return parse_bundle_text(compile_case_bundle(BASE, BundleSettings(environment="t")))


def audited(plane: ControlPlane, bundle: Bundle) -> dict[str, Finding]:
    """The audit's rbac area, read from the API server with the audit's own client."""
    with Cluster(plane.kubeconfig("admin")) as cluster:
        found = _audit_rbac(cluster, bundle)
    return {f.subject: f for f in found if f.severity == "finding" and f.field == TRUSTED}


def can(plane: ControlPlane, user: str, *args: str, groups: tuple[str, ...] = ()) -> bool:
    """The API server's answer (a SubjectAccessReview), once its RBAC cache has the objects."""
    extra = [f"--as-group={g}" for g in groups]
    deadline = time.monotonic() + 10
    while True:
        done = plane.kubectl("admin", "auth", "can-i", *args, f"--as={user}", *extra, check=False)
        if done.stdout.strip() == "yes" or time.monotonic() > deadline:
            return done.stdout.strip() == "yes"
        time.sleep(0.2)


def apply(plane: ControlPlane, *objects: dict[str, Any]) -> None:
    plane.kubectl(
        "admin",
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
    )


def delete(plane: ControlPlane, *objects: dict[str, Any]) -> None:
    for obj in objects:
        meta = obj["metadata"]
        where = ["-n", meta["namespace"]] if "namespace" in meta else []
        plane.kubectl(
            "admin",
            "delete",
            obj["kind"].lower(),
            meta["name"],
            *where,
            "--wait=false",
            check=False,
        )


def role(name: str, rules: list[dict[str, Any]], namespace: str | None = NS) -> dict[str, Any]:
    kind = "Role" if namespace else "ClusterRole"
    meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": f"{RBAC}/v1", "kind": kind, "metadata": meta, "rules": rules}


def bind(
    name: str,
    role_kind: str,
    role_name: str,
    subject: dict[str, str],
    namespace: str | None = NS,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    meta: dict[str, Any] = {"name": name, "labels": labels or {}}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role_name},
        "subjects": [subject],
    }


def user(name: str) -> dict[str, str]:
    return {"kind": "User", "apiGroup": RBAC, "name": name}


def group(name: str) -> dict[str, str]:
    return {"kind": "Group", "apiGroup": RBAC, "name": name}


def rule(api: str, resources: list[str], verbs: list[str], **more: Any) -> dict[str, Any]:
    return {"apiGroups": [api], "resources": resources, "verbs": verbs, **more}


def test_the_audit_sees_only_the_control_plane_to_begin_with(
    plane: ControlPlane, bundle: Bundle
) -> None:
    assert audited(plane, bundle) == {}


def test_escalation_split_across_two_bindings(plane: ControlPlane, bundle: Bundle) -> None:
    """escalate from one RoleBinding, create on roles from another: the API server lets the
    holder create a Role granting what it does not hold (pods/exec here)."""
    objs = [
        role("e2e-escalate", [rule(RBAC, ["roles"], ["escalate"])]),
        role("e2e-role-writes", [rule(RBAC, ["roles"], ["create", "delete"])]),
        bind("e2e-escalate", "Role", "e2e-escalate", user("esme")),
        bind("e2e-role-writes", "Role", "e2e-role-writes", user("esme")),
    ]
    apply(plane, *objs)
    try:
        assert can(plane, "esme", "escalate", "roles", "-n", NS)
        assert not can(plane, "esme", "create", "pods", "--subresource=exec", "-n", NS)
        made = plane.kubectl(
            "admin", "--as=esme", "create", "role", "e2e-esme-exec", "--verb=create",
            "--resource=pods/exec", "-n", NS, check=False,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr  # escalation: the API server allowed it
        plane.kubectl("admin", "delete", "role", "e2e-esme-exec", "-n", NS)
        finding = audited(plane, bundle)["User/esme"]
        assert (
            "grant itself these (RBAC escalation) via RoleBinding agents-system/e2e-escalate"
            in (finding.message)
        )
        assert "together with RoleBinding agents-system/e2e-role-writes" in finding.message
    finally:
        delete(plane, *objs)


def test_patching_the_submitters_pod_swaps_its_image(plane: ControlPlane, bundle: Bundle) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "e2e-submitter-pod", "namespace": NS},
        "spec": {
            "serviceAccountName": NAME,
            "automountServiceAccountToken": False,
            "containers": [{"name": "main", "image": "registry.invalid/submitter:1"}],
        },
    }
    objs = [
        role("e2e-pod-patch", [rule("", ["pods"], ["get", "patch"])]),
        bind("e2e-pod-patch", "Role", "e2e-pod-patch", user("pia")),
    ]
    apply(plane, pod, *objs)
    try:
        assert can(plane, "pia", "patch", "pods/e2e-submitter-pod", "-n", NS)
        image = [{"op": "replace", "path": "/spec/containers/0/image", "value": "x.invalid/m:1"}]
        patched = plane.kubectl(
            "admin", "--as=pia", "patch", "pod", "e2e-submitter-pod", "-n", NS,
            "--type=json", "-p", json.dumps(image), check=False,
        )  # fmt: skip
        assert patched.returncode == 0, patched.stderr  # its pod-bound token, other code
        finding = audited(plane, bundle)["User/pia"]
        assert "run pods as it via RoleBinding agents-system/e2e-pod-patch" in finding.message
    finally:
        delete(plane, pod, *objs)


def test_nodes_proxy_reaches_the_kubelets_exec(plane: ControlPlane, bundle: Bundle) -> None:
    objs = [
        role("e2e-nodes-proxy", [rule("", ["nodes/proxy"], ["get"])], namespace=None),
        bind("e2e-nodes-proxy", "ClusterRole", "e2e-nodes-proxy", user("nora"), namespace=None),
    ]
    apply(plane, *objs)
    try:
        assert can(plane, "nora", "get", "nodes", "--subresource=proxy")
        finding = audited(plane, bundle)["User/nora"]
        assert "enter its running pods via ClusterRoleBinding e2e-nodes-proxy" in finding.message
    finally:
        delete(plane, *objs)


def _csr(name: str, cn: str, *orgs: str) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    subject += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(request).decode(),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"],
        },
    }


def test_a_client_certificate_borrows_a_group_that_holds_a_way(
    plane: ControlPlane, bundle: Bundle
) -> None:
    """Class 17: create and approve a CSR for the kube-apiserver-client signer, and the
    signer issues a certificate naming any group (system:masters excepted, by admission)."""
    certs = "certificates.k8s.io"
    objs = [
        role(
            "e2e-csr",
            [
                rule(certs, ["certificatesigningrequests"], ["create", "get", "delete"]),
                rule(certs, ["certificatesigningrequests/approval"], ["update"]),
                rule(
                    certs,
                    ["signers"],
                    ["approve"],
                    resourceNames=["kubernetes.io/kube-apiserver-client"],
                ),
            ],
            namespace=None,
        ),
        bind("e2e-csr", "ClusterRole", "e2e-csr", user("cera"), namespace=None),
        bind("e2e-ops-edit", "ClusterRole", "system:aggregate-to-edit", group("ops")),
    ]
    apply(plane, *objs)
    try:
        assert can(plane, "somebody", "create", "pods", "-n", NS, groups=("ops",))
        made = plane.kubectl(
            "admin", "--as=cera", "create", "-f", "-", check=False,
            input=json.dumps(_csr("e2e-cera-ops", "cera-minted", "ops")),
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        approved = plane.kubectl(
            "admin", "--as=cera", "certificate", "approve", "e2e-cera-ops", check=False
        )
        assert approved.returncode == 0, approved.stderr  # the signer issues it as approved
        masters = plane.kubectl(
            "admin", "--as=cera", "create", "-f", "-", check=False,
            input=json.dumps(_csr("e2e-cera-masters", "cera-root", "system:masters")),
        )  # fmt: skip
        assert masters.returncode != 0 and "system:masters" in masters.stderr
        found = audited(plane, bundle)
        assert "Group/ops" in found
        assert "act as Group ops (mint a client certificate naming it via ClusterRoleBinding " in (
            found["User/cera"].message
        )
    finally:
        plane.kubectl("admin", "delete", "csr", "e2e-cera-ops", "--wait=false", check=False)
        delete(plane, *objs)


def test_impersonating_a_user_or_group_that_holds_a_way(
    plane: ControlPlane, bundle: Bundle
) -> None:
    objs = [
        role(
            "e2e-impersonate",
            [rule("", ["users", "groups"], ["impersonate"], resourceNames=["ed", "ops"])],
            namespace=None,
        ),
        bind("e2e-impersonate", "ClusterRole", "e2e-impersonate", user("ivan"), namespace=None),
        bind("e2e-ed-edit", "ClusterRole", "system:aggregate-to-edit", user("ed")),
    ]
    apply(plane, *objs)
    try:
        assert can(plane, "ivan", "impersonate", "users/ed")
        assert can(plane, "ed", "create", "pods", "-n", NS)
        assert not can(plane, "ivan", "create", "pods", "-n", NS)
        finding = audited(plane, bundle)["User/ivan"]
        assert "act as User ed (impersonate it via ClusterRoleBinding e2e-impersonate" in (
            finding.message
        )
    finally:
        delete(plane, *objs)


def test_a_default_labelled_binding_to_everyone_is_a_finding(
    plane: ControlPlane, bundle: Bundle
) -> None:
    """The bootstrap label is anyone's to set: bound to system:authenticated it hands every
    user the power, and the audit must not file it as the control plane's."""
    objs = [
        role("e2e-everyone-pods", [rule("", ["pods"], ["create"])]),
        bind(
            "e2e-everyone-pods",
            "Role",
            "e2e-everyone-pods",
            group("system:authenticated"),
            labels=DEFAULTS,
        ),
    ]
    apply(plane, *objs)
    try:
        assert can(plane, "anyone", "create", "pods", "-n", NS, groups=("system:authenticated",))
        finding = audited(plane, bundle)["Group/system:authenticated"]
        assert finding.severity == "finding"
        assert "run pods as it via RoleBinding agents-system/e2e-everyone-pods" in finding.message
    finally:
        delete(plane, *objs)


def test_whoever_may_edit_the_webhook_configuration_is_named(
    plane: ControlPlane, bundle: Bundle
) -> None:
    """The audit named only the edit and admin roles widened: a ClusterRoleBinding of a role
    that patches ValidatingWebhookConfigurations (the gate off) went unreported."""
    objs = [
        role(
            "e2e-webhook-patch",
            [rule("admissionregistration.k8s.io", ["validatingwebhookconfigurations"], ["patch"])],
            namespace=None,
        ),
        bind(
            "e2e-webhook-patch", "ClusterRole", "e2e-webhook-patch", user("wendy"), namespace=None
        ),
    ]
    apply(plane, *objs)
    try:
        assert can(plane, "wendy", "patch", "validatingwebhookconfigurations")
        with Cluster(plane.kubeconfig("admin")) as cluster:
            found = {f.subject: f for f in _audit_rbac(cluster, bundle)}
        assert found["User/wendy"].message == (
            "User wendy can switch approvalgate off: edit or delete the "
            "ValidatingWebhookConfiguration (the gate off) via ClusterRoleBinding "
            "e2e-webhook-patch -> ClusterRole e2e-webhook-patch"
        )
    finally:
        delete(plane, *objs)


def test_whoever_may_edit_the_guard_is_named(plane: ControlPlane, bundle: Bundle) -> None:
    """The chart's guard (a ValidatingAdmissionPolicy and its binding) keeps the webhook
    configuration as rendered; whoever may switch its binding to Audit or delete it can then
    weaken the configuration, so the audit names them as it names who may edit the
    configuration (seventh pass)."""
    objs = [
        role(
            "e2e-guard-patch",
            [
                rule(
                    "admissionregistration.k8s.io",
                    ["validatingadmissionpolicybindings"],
                    ["patch", "delete"],
                )
            ],
            namespace=None,
        ),
        bind("e2e-guard-patch", "ClusterRole", "e2e-guard-patch", user("gina"), namespace=None),
    ]
    apply(plane, *objs)
    try:
        assert can(plane, "gina", "patch", "validatingadmissionpolicybindings")
        with Cluster(plane.kubeconfig("admin")) as cluster:
            found = {f.subject: f for f in _audit_rbac(cluster, bundle)}
        assert found["User/gina"].severity == "note"
        assert found["User/gina"].message == (
            "User gina can switch approvalgate off: edit or delete the "
            "ValidatingAdmissionPolicyBindings of the chart's guard (switched to Audit, "
            "narrowed or deleted: the guard off) via ClusterRoleBinding e2e-guard-patch -> "
            "ClusterRole e2e-guard-patch"
        )
    finally:
        delete(plane, *objs)


def test_a_mutating_webhook_or_a_nodes_certificate_reaches_the_submitters_pods(
    plane: ControlPlane, bundle: Bundle
) -> None:
    """create on mutatingwebhookconfigurations: a webhook of one's own adds a container to
    the submitter's next pod. CSR approval for the kubelet signer: a node's identity, whose
    Node authorizer mints the tokens of its pods. The CSR is created and approved here
    (no signer runs, and the e2e API server runs RBAC alone, so the rest is not shown)."""
    certs = "certificates.k8s.io"
    objs = [
        role(
            "e2e-mwc",
            [rule("admissionregistration.k8s.io", ["mutatingwebhookconfigurations"], ["create"])],
            namespace=None,
        ),
        bind("e2e-mwc", "ClusterRole", "e2e-mwc", user("mia"), namespace=None),
        role(
            "e2e-kubelet-csr",
            [
                rule(certs, ["certificatesigningrequests"], ["create", "get"]),
                rule(certs, ["certificatesigningrequests/approval"], ["update"]),
                rule(
                    certs,
                    ["signers"],
                    ["approve"],
                    resourceNames=["kubernetes.io/kube-apiserver-client-kubelet"],
                ),
            ],
            namespace=None,
        ),
        bind("e2e-kubelet-csr", "ClusterRole", "e2e-kubelet-csr", user("ken"), namespace=None),
    ]
    apply(plane, *objs)
    csr = _csr("e2e-ken-node", "system:node:worker-1", "system:nodes")
    csr["spec"]["signerName"] = "kubernetes.io/kube-apiserver-client-kubelet"
    csr["spec"]["usages"] = ["digital signature", "client auth"]
    try:
        assert can(plane, "mia", "create", "mutatingwebhookconfigurations")
        made = plane.kubectl(
            "admin", "--as=ken", "create", "-f", "-", check=False, input=json.dumps(csr)
        )
        assert made.returncode == 0, made.stderr
        approved = plane.kubectl(
            "admin", "--as=ken", "certificate", "approve", "e2e-ken-node", check=False
        )
        assert approved.returncode == 0, approved.stderr
        found = audited(plane, bundle)
        assert "run pods as it via ClusterRoleBinding e2e-mwc -> ClusterRole e2e-mwc" in (
            found["User/mia"].message
        )
        assert "mint a node's client certificate (its pods' tokens) via ClusterRoleBinding " in (
            found["User/ken"].message
        )
    finally:
        plane.kubectl("admin", "delete", "csr", "e2e-ken-node", "--wait=false", check=False)
        delete(plane, *objs)


def test_a_user_subject_spelling_a_service_accounts_username_is_that_account(
    plane: ControlPlane, bundle: Bundle
) -> None:
    """A User subject named system:serviceaccount:ci:d applies to that ServiceAccount (the
    authorizer compares usernames): escalate granted that way and create on roles granted
    to the ServiceAccount are one subject's, and escalation."""
    account = "system:serviceaccount:ci:d"
    plane.kubectl("admin", "create", "namespace", "ci", check=False)
    objs = [
        role("e2e-escalate", [rule(RBAC, ["roles"], ["escalate"])]),
        role("e2e-role-writes", [rule(RBAC, ["roles"], ["create"])]),
        bind("e2e-escalate-user", "Role", "e2e-escalate", user(account)),
        bind(
            "e2e-role-writes-sa",
            "Role",
            "e2e-role-writes",
            {"kind": "ServiceAccount", "name": "d", "namespace": "ci"},
        ),
    ]
    apply(plane, *objs)
    try:
        assert can(plane, account, "escalate", "roles", "-n", NS)
        assert can(plane, account, "create", "roles", "-n", NS)
        finding = audited(plane, bundle)["ServiceAccount/ci/d"]
        assert "RBAC escalation" in finding.message
    finally:
        delete(plane, *objs)


RELEASE_NS = "approvalgate-system"
#: The gate's objects as the chart renders them for release approvalgate (tests/chart checks
#: runner.releases reads exactly these from the audit ConfigMap's webhook.yaml).
RELEASE = rbac.Release(
    RELEASE_NS,
    deployments=("approvalgate", "approvalgate-controller"),
    services=("approvalgate",),
    cronjobs=("approvalgate-audit",),
    configmaps=("approvalgate-audit", "approvalgate-bundle"),
)


def changers(plane: ControlPlane, bundle: Bundle) -> dict[str, Finding]:
    """Who the audit names as able to change what the gate runs in its release namespace."""
    with Cluster(plane.kubeconfig("admin")) as cluster:
        found = _audit_rbac(cluster, bundle, "", [RELEASE])
    return {f.subject: f for f in found if f.field == "release"}


def test_whoever_may_patch_the_gates_deployments_is_named(
    plane: ControlPlane, bundle: Bundle
) -> None:
    """A Role allowing patch on deployments in the release namespace lets its holder give the
    webhook another image, container or env (what judges AgentRuns): the audit's workloads
    area finds it only afterwards, and the rbac area named nobody (seventh pass). Named now,
    a note, with the binding; a Role patching only another Deployment, or the same Role
    bound in another namespace, is not a holder (the API server agrees)."""
    plane.kubectl("admin", "create", "namespace", RELEASE_NS, check=False)
    plane.kubectl("admin", "create", "namespace", "elsewhere", check=False)
    patch = rule("apps", ["deployments"], ["patch"])
    other = rule("apps", ["deployments"], ["patch"], resourceNames=["unrelated"])
    objs = [
        role("e2e-deploy-patch", [patch], namespace=RELEASE_NS),
        bind("e2e-deploy-patch", "Role", "e2e-deploy-patch", user("dora"), namespace=RELEASE_NS),
        role("e2e-deploy-other", [other], namespace=RELEASE_NS),
        bind("e2e-deploy-other", "Role", "e2e-deploy-other", user("otto"), namespace=RELEASE_NS),
        role("e2e-deploy-patch", [patch], namespace="elsewhere"),
        bind("e2e-deploy-patch", "Role", "e2e-deploy-patch", user("ella"), namespace="elsewhere"),
    ]
    apply(plane, *objs)
    try:
        assert can(plane, "dora", "patch", "deployments/approvalgate", "-n", RELEASE_NS)
        assert can(plane, "otto", "patch", "deployments/unrelated", "-n", RELEASE_NS)
        assert not can(plane, "otto", "patch", "deployments/approvalgate", "-n", RELEASE_NS)
        assert not can(plane, "ella", "patch", "deployments/approvalgate", "-n", RELEASE_NS)
        found = changers(plane, bundle)
        assert found["User/dora"].severity == "note"
        assert found["User/dora"].message == (
            f"User dora can change what approvalgate runs in namespace {RELEASE_NS}: edit or "
            "delete Deployment approvalgate, approvalgate-controller (another image, "
            "container, env or volume: other code judges AgentRuns) via RoleBinding "
            f"{RELEASE_NS}/e2e-deploy-patch -> Role e2e-deploy-patch"
        )
        assert "User/otto" not in found
        assert "User/ella" not in found
    finally:
        delete(plane, *objs)


def test_whoever_may_enter_the_gates_pods_or_route_its_service_is_named(
    plane: ControlPlane, bundle: Bundle
) -> None:
    """A ClusterRoleBinding granting pods/exec reaches the gate's pods (a note); EndpointSlices
    created in the release namespace by every authenticated user is a finding."""
    plane.kubectl("admin", "create", "namespace", RELEASE_NS, check=False)
    objs = [
        role("e2e-exec", [rule("", ["pods/exec"], ["create"])], namespace=None),
        bind("e2e-exec", "ClusterRole", "e2e-exec", user("eve"), namespace=None),
        role(
            "e2e-slices",
            [rule("discovery.k8s.io", ["endpointslices"], ["create"])],
            namespace=RELEASE_NS,
        ),
        bind(
            "e2e-slices",
            "Role",
            "e2e-slices",
            group("system:authenticated"),
            namespace=RELEASE_NS,
        ),
    ]
    apply(plane, *objs)
    try:
        assert can(plane, "eve", "create", "pods", "--subresource=exec", "-n", RELEASE_NS)
        assert can(plane, "anyone", "create", "endpointslices.discovery.k8s.io", "-n", RELEASE_NS)
        found = changers(plane, bundle)
        assert found["User/eve"].severity == "note"
        assert "enter the gate's pods" in found["User/eve"].message
        assert "via ClusterRoleBinding e2e-exec -> ClusterRole e2e-exec" in (
            found["User/eve"].message
        )
        everyone = found["Group/system:authenticated"]
        assert everyone.severity == "finding"
        assert "write EndpointSlices or Endpoints there" in everyone.message
    finally:
        delete(plane, *objs)
