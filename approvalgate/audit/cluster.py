"""The audit's view of the API server, through :mod:`approvalgate.kube` (the only package that
imports the ``kubernetes`` client).

Reads are paginated lists (``limit`` / ``continue``) and gets by name; nothing watches.
Objects come back as the server's JSON, never as the client's models, so comparisons see
exactly what is stored. PolicyReports are written with server-side apply under one field
manager, so a re-run updates them in place.

Credentials: ``--kubeconfig``/``--context`` (or ``$KUBECONFIG``, ``~/.kube/config``), else the
pod's service account when running in a cluster. ``--as``/``--as-group`` impersonate another
identity (the API server checks the caller's ``impersonate`` permission and then authorizes
every request as that identity, exactly as for the real one).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from approvalgate.kube import discovery, lists, objects
from approvalgate.kube.client import Client
from approvalgate.kube.errors import GoneError, KubeError
from approvalgate.kube.resources import Resource

FIELD_MANAGER: Final = "approvalgate-audit"
RBAC_HINT: Final = (
    "grant the audit's identity this permission; the chart's audit ClusterRole "
    "(charts/approvalgate/templates/audit-clusterrole.yaml) lists exactly what the audit needs"
)
WEBHOOK_CONFIGURATIONS: Final = Resource(
    "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", namespaced=False
)
CONFIG_MAPS: Final = Resource("", "v1", "configmaps")
PODS: Final = Resource("", "v1", "pods")
ENDPOINT_SLICES: Final = Resource("discovery.k8s.io", "v1", "endpointslices")
ENDPOINTS: Final = Resource("", "v1", "endpoints")
#: The gate's own workloads, by kind (compared with the chart's rendering: audit/workloads.py).
WORKLOADS: Final = {
    "Deployment": Resource("apps", "v1", "deployments"),
    "CronJob": Resource("batch", "v1", "cronjobs"),
    "Service": Resource("", "v1", "services"),
}
RBAC_GROUP: Final = "rbac.authorization.k8s.io"

#: The audit could not read or write what it needs; the message says which request.
ClusterError = KubeError


class Cluster:
    """One API server connection with the audit's credentials."""

    def __init__(
        self,
        kubeconfig: Path | None = None,
        context: str | None = None,
        *,
        as_user: str | None = None,
        as_groups: Sequence[str] = (),
        page_size: int = lists.DEFAULT_PAGE_SIZE,
        timeout: float = 30,
    ) -> None:
        self.client = Client.connect(
            kubeconfig,
            context,
            as_user=as_user,
            as_groups=as_groups,
            timeout=timeout,
            forbidden_advice=RBAC_HINT,
        )
        self.server = self.client.server
        self.page_size = page_size
        self._rbac: dict[str, list[dict[str, Any]]] | None = None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reads --------------------------------------------------------------------------

    def identity(self) -> str:
        """``username (groups)`` as the API server sees us, or "" if it cannot say."""
        return discovery.identity(self.client)

    def list_objects(
        self, group: str, version: str, plural: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """Every object of a custom resource, page by page (``limit`` and ``continue``)."""
        return self._list(Resource(group, version, plural), namespace)

    def list_rbac(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every ``roles``, ``rolebindings`` (in ``namespace``, or all), ``clusterroles`` or
        ``clusterrolebindings`` object, page by page."""
        namespaced = plural in ("roles", "rolebindings")
        resource = Resource(RBAC_GROUP, "v1", plural, namespaced=namespaced)
        if namespace is not None or self._rbac is None:
            return self._list(resource, namespace)
        if plural not in self._rbac:  # a refusal is not kept: it raises again, as before
            self._rbac[plural] = self._list(resource, None)
        return self._rbac[plural]

    @contextmanager
    def one_reading_of_rbac(self) -> Iterator[None]:
        """Within it, each cluster-wide RBAC list is read from the API server once: the audit
        reads the same roles and bindings for who may switch the gate off, who may act as a
        trusted ServiceAccount and who may lower the floor."""
        self._rbac = {}
        try:
            yield
        finally:
            self._rbac = None

    def _list(self, resource: Resource, namespace: str | None) -> list[dict[str, Any]]:
        try:
            listing = lists.list_all(self.client, resource, namespace, page_size=self.page_size)
        except GoneError as exc:
            raise ClusterError(
                f"the list expired while paging (listing {resource.describe(namespace)}): "
                "too many changes between pages",
                status=exc.status,
                advice="run the audit again (or with a larger --page-size)",
            ) from exc
        return listing.items

    def webhook_configuration(self, name: str) -> dict[str, Any] | None:
        """The ValidatingWebhookConfiguration ``name``, or None when it does not exist."""
        return objects.get(self.client, WEBHOOK_CONFIGURATIONS, name)

    def get_cluster_scoped(self, resource: Resource, name: str) -> dict[str, Any] | None:
        """The cluster-scoped object ``name`` of ``resource``, or None when it does not exist
        (or the API server serves no such resource)."""
        return objects.get(self.client, resource, name)

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return objects.get(self.client, CONFIG_MAPS, name, namespace)

    def workload(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The Deployment, CronJob or Service ``name`` in ``namespace``, or None."""
        return objects.get(self.client, WORKLOADS[kind], name, namespace)

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        """Every pod in ``namespace`` (the release namespace: those a Service may select)."""
        return self._list(PODS, namespace)

    def routes(
        self, namespace: str, service: str
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The EndpointSlices labelled for ``service`` and its Endpoints object."""
        slices = lists.list_all(
            self.client,
            ENDPOINT_SLICES,
            namespace,
            page_size=self.page_size,
            label_selector=f"kubernetes.io/service-name={service}",
        ).items
        return slices, objects.get(self.client, ENDPOINTS, service, namespace)

    def served_versions(self, group: str) -> list[str] | None:
        """Versions of ``group`` the API server serves (discovery), the preferred one first;
        None if it serves no such group."""
        return discovery.served_versions(self.client, group)

    # --- writes -------------------------------------------------------------------------

    def apply(self, obj: Mapping[str, Any], plural: str) -> dict[str, Any]:
        """Server-side apply of a namespaced custom object, field manager ``approvalgate-audit``."""
        group, _, version = str(obj["apiVersion"]).partition("/")
        return objects.apply(self.client, Resource(group, version, plural), obj, FIELD_MANAGER)
