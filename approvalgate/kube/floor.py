"""The bundle revision floor in its ConfigMap (:mod:`approvals.bundle_floor` says why).

:class:`ConfigMapFloor` reads the floor (the webhook and the controller, each time they open
a new content of the bundle) and raises it (the controller, after a signed bundle is in
force): a read-modify-write on the ConfigMap's resourceVersion, so two controller replicas
raising at once never lower it. The ConfigMap is created by the controller, not by the
chart: a rendered object would be the compiled values' to write, and Argo CD's self-heal
would reset it. It carries no ``app.kubernetes.io/instance`` label (Argo CD's default
tracking label), so a prune of the release never deletes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from approvalgate.approvals.bundle_floor import parse_reference, raised, read_floor
from approvalgate.approvals.bundle_trust import FLOOR_UNKNOWN, BundleRefused
from approvalgate.approvals.errors import ApprovalgateError
from approvalgate.kube.client import Client
from approvalgate.kube.errors import KubeError

COMPONENT: Final = "bundle-floor"
ATTEMPTS: Final = 5  # conflicts in a row before a raise gives up (retried by the caller)


class ConfigMapFloor:
    """The floor in ConfigMap ``namespace/name``, through ``client``."""

    def __init__(self, client: Client, namespace: str, name: str) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.where = f"ConfigMap/{namespace}/{name}"
        self._path = f"/api/v1/namespaces/{namespace}/configmaps"

    def _get(self) -> dict[str, Any] | None:
        obj: dict[str, Any] | None = self.client.request(
            f"reading the bundle revision floor {self.where}",
            "GET",
            f"{self._path}/{self.name}",
            missing_ok=True,
        )
        return obj

    def read(self, environment: str) -> int:
        """The floor of ``environment`` now (0: none recorded); refused when unreadable."""
        try:
            obj = self._get()
        except KubeError as exc:
            raise BundleRefused(
                FLOOR_UNKNOWN,
                f"the bundle revision floor cannot be read: {exc.message}",
                advice=exc.advice or "the process retries; check that the API server is reachable",
            ) from exc
        return read_floor(_data(obj), environment, self.where)

    def raise_to(self, environment: str, revision: int) -> int:
        """Raise ``environment``'s floor to ``revision`` (never lower it); the floor now.
        A :class:`KubeError` when the API server refuses or conflicts persist."""
        for _ in range(ATTEMPTS):
            obj = self._get()
            data = _data(obj)
            new = raised(data, environment, revision)
            if obj is not None and new == data:
                return read_floor(data, environment, self.where)
            try:
                if obj is None:
                    self.client.request(
                        f"creating the bundle revision floor {self.where}",
                        "POST",
                        self._path,
                        body=self._new_object(new),
                    )
                else:
                    obj["data"] = new
                    self.client.request(
                        f"raising the bundle revision floor {self.where}",
                        "PUT",
                        f"{self._path}/{self.name}",
                        body=obj,
                    )
            except KubeError as exc:
                if exc.status == 409:  # created or raised meanwhile: read again
                    continue
                raise
            return read_floor(new, environment, self.where)
        raise KubeError(
            f"the bundle revision floor {self.where} kept changing while it was raised "
            f"({ATTEMPTS} conflicts)"
        )

    def _new_object(self, data: Mapping[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {
                    "app.kubernetes.io/name": "approvalgate",
                    "app.kubernetes.io/component": COMPONENT,
                    "app.kubernetes.io/managed-by": "approvalgate-controller",
                },
                "annotations": {
                    "gates.proompteng.ai/description": "the highest signed bundle revision "
                    "each environment has enforced; only the approvalgate controller raises "
                    "it, pods refuse older bundles (docs/deploy.md, bundle signing)",
                },
            },
            "data": dict(data),
        }


def _data(obj: Mapping[str, Any] | None) -> dict[str, str] | None:
    if obj is None:
        return None
    data = obj.get("data") or {}
    return dict(data) if isinstance(data, dict) else {}


class ConnectingFloor:
    """The floor of ConfigMap ``namespace/name`` whose client is made at the first read
    that can make it (``connect``), then kept.

    A process that could not load its credentials at start (the ServiceAccount token not
    yet mounted, an exec plugin that could not reach its issuer) refuses every read
    (:data:`FLOOR_UNKNOWN`, fail closed) and tries to connect again at the next one: reads
    come once per new content of the bundle and, while one is refused for this, at the
    bundle state's retry interval (10 s), so the attempts are bounded by that interval and
    the pod becomes ready without a restart once the credentials load."""

    def __init__(
        self, namespace: str, name: str, connect: Callable[[], Client], advice: str
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.where = f"ConfigMap/{namespace}/{name}"
        self._connect = connect
        self._advice = advice
        self._floor: ConfigMapFloor | None = None

    def read(self, environment: str) -> int:
        floor = self._floor
        if floor is None:
            try:
                client = self._connect()
            except ApprovalgateError as exc:
                raise BundleRefused(
                    FLOOR_UNKNOWN,
                    f"the bundle revision floor {self.where} cannot be read: {exc.message}",
                    advice=f"{exc.advice or self._advice}; the process connects again "
                    "at its next try",
                ) from exc
            floor = self._floor = ConfigMapFloor(client, self.namespace, self.name)
        return floor.read(environment)


def connect_floor(
    reference: str, kubeconfig: Path | None = None, context: str | None = None
) -> ConnectingFloor:
    """The floor of ``--bundle-floor NAMESPACE/NAME`` read with those credentials, loaded at
    the first read that can load them."""
    namespace, name = parse_reference(reference)
    return ConnectingFloor(
        namespace,
        name,
        lambda: Client.connect(kubeconfig, context),
        "pass --kubeconfig FILE (and --context NAME)",
    )
