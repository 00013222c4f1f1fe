"""The API server, through the official ``kubernetes`` client. The only module that imports it.

Reads are paginated lists (``limit`` / ``_continue``) and gets by name; nothing watches.
Objects come back as the server's JSON (``_preload_content=False``), never as the client's
models, so comparisons see exactly what is stored. PolicyReports are written with
server-side apply under one field manager, so a re-run updates them in place.

Credentials: ``--kubeconfig``/``--context`` (or ``$KUBECONFIG``, ``~/.kube/config``), else the
pod's service account when running in a cluster. ``--as``/``--as-group`` impersonate another
identity (the API server checks the caller's ``impersonate`` permission and then authorizes
every request as that identity, exactly as for the real one).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from kubernetes import client, config  # type: ignore[import-untyped]
from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped]
from urllib3.exceptions import HTTPError

from approvalgate.approvals.errors import ApprovalgateError, InputError

FIELD_MANAGER: Final = "approvalgate-audit"
RBAC_HINT: Final = (
    "grant the audit's identity this permission; the chart's audit ClusterRole "
    "(charts/approvalgate/templates/audit-clusterrole.yaml) lists exactly what the audit needs"
)


class ClusterError(ApprovalgateError):
    """The audit could not read or write what it needs; the message says which request."""


def impersonation_headers(user: str | None, groups: Sequence[str]) -> dict[str, str]:
    """Impersonate-User / Impersonate-Group headers, one header per group.

    The client sends a dict of headers, so the repeated ``Impersonate-Group`` header is spelt
    with a different letter case each time; HTTP header names are case-insensitive and the API
    server reads every value.
    """
    headers: dict[str, str] = {}
    if user:
        headers["Impersonate-User"] = user
    base = "impersonate-group"
    letters = [i for i, c in enumerate(base) if c.isalpha()]
    if len(groups) > 2 ** len(letters):
        raise InputError(f"at most {2 ** len(letters)} --as-group values")
    for number, group in enumerate(groups):
        name = list(base)
        for bit, position in enumerate(letters):
            if number >> bit & 1:
                name[position] = name[position].upper()
        headers["".join(name)] = group
    return headers


class Cluster:
    """One API server connection with the audit's credentials."""

    def __init__(
        self,
        kubeconfig: Path | None = None,
        context: str | None = None,
        *,
        as_user: str | None = None,
        as_groups: Sequence[str] = (),
        page_size: int = 500,
        timeout: float = 30,
    ) -> None:
        if as_groups and not as_user:
            raise InputError("--as-group needs --as USER")
        configuration = client.Configuration()
        try:
            if kubeconfig is None and context is None and _in_cluster():
                config.load_incluster_config(client_configuration=configuration)
            else:
                config.load_kube_config(
                    config_file=str(kubeconfig) if kubeconfig else None,
                    context=context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (config.ConfigException, OSError, ValueError, TypeError) as exc:
            raise InputError(
                f"cannot load Kubernetes credentials: {exc}",
                advice="pass --kubeconfig FILE (and --context NAME), or run in a pod with a "
                "service account token",
            ) from exc
        self.server: str = configuration.host
        self.page_size = page_size
        self.timeout = timeout
        self.api = client.ApiClient(configuration)
        for name, value in impersonation_headers(as_user, as_groups).items():
            self.api.set_default_header(name, value)
        self._custom = client.CustomObjectsApi(self.api)

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reads --------------------------------------------------------------------------

    def identity(self) -> str:
        """``username (groups)`` as the API server sees us, or "" if it cannot say."""
        try:
            response = client.AuthenticationV1Api(self.api).create_self_subject_review(
                client.V1SelfSubjectReview(), _preload_content=False, _request_timeout=self.timeout
            )
            user = json.loads(response.data).get("status", {}).get("userInfo", {})
        except (ApiException, HTTPError, ValueError):
            return ""
        groups = [g for g in user.get("groups") or [] if g != "system:authenticated"]
        return str(user.get("username", "")) + (f" (groups {', '.join(groups)})" if groups else "")

    def list_objects(
        self, group: str, version: str, plural: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """Every object of a custom resource, page by page (``limit`` and ``_continue``)."""
        where = f"in namespace {namespace}" if namespace else "in all namespaces"
        what = f"listing {plural}.{group} {where}"
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            kwargs: dict[str, Any] = {
                "limit": self.page_size,
                "_preload_content": False,
                "_request_timeout": self.timeout,
            }
            if token:
                kwargs["_continue"] = token
            page = self._call(
                what, functools.partial(self._list_page, group, version, plural, namespace, kwargs)
            )
            items += page.get("items") or []
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return items

    def _list_page(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        kwargs: dict[str, Any],
    ) -> Any:
        if namespace:
            return self._custom.list_namespaced_custom_object(
                group, version, namespace, plural, **kwargs
            )
        return self._custom.list_cluster_custom_object(group, version, plural, **kwargs)

    def webhook_configuration(self, name: str) -> dict[str, Any] | None:
        """The ValidatingWebhookConfiguration ``name``, or None when it does not exist."""
        api = client.AdmissionregistrationV1Api(self.api)
        found: dict[str, Any] | None = self._call(
            f"getting validatingwebhookconfiguration {name}",
            lambda: api.read_validating_webhook_configuration(
                name, _preload_content=False, _request_timeout=self.timeout
            ),
            missing_ok=True,
        )
        return found

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        api = client.CoreV1Api(self.api)
        found: dict[str, Any] | None = self._call(
            f"getting configmap {namespace}/{name}",
            lambda: api.read_namespaced_config_map(
                name, namespace, _preload_content=False, _request_timeout=self.timeout
            ),
            missing_ok=True,
        )
        return found

    def served_versions(self, group: str) -> list[str] | None:
        """Versions of ``group`` the API server serves (discovery), the preferred one first;
        None if it serves no such group."""
        api = client.ApisApi(self.api)
        groups = self._call(
            "reading API discovery (/apis)",
            lambda: api.get_api_versions(_preload_content=False, _request_timeout=self.timeout),
        )
        for entry in groups.get("groups") or []:
            if entry.get("name") == group:
                preferred = str((entry.get("preferredVersion") or {}).get("version") or "")
                versions = [str(v["version"]) for v in entry.get("versions") or []]
                return sorted(versions, key=lambda v: v != preferred)
        return None

    # --- writes -------------------------------------------------------------------------

    def apply(self, obj: Mapping[str, Any], plural: str) -> dict[str, Any]:
        """Server-side apply of a namespaced custom object, field manager ``approvalgate-audit``.

        The generated client sends PATCH bodies as merge patches only, so the apply patch goes
        through its generic ``call_api`` with the ``application/apply-patch+yaml`` type. Field
        validation is strict: a field the CRD does not know is an error, never silently dropped.
        """
        group, _, version = str(obj["apiVersion"]).partition("/")
        meta = obj["metadata"]
        path = f"/apis/{group}/{version}/namespaces/{{namespace}}/{plural}/{{name}}"
        applied: dict[str, Any] = self._call(
            f"applying {plural}.{group} {meta['namespace']}/{meta['name']}",
            lambda: self.api.call_api(
                path,
                "PATCH",
                path_params={"namespace": meta["namespace"], "name": meta["name"]},
                query_params=[
                    ("fieldManager", FIELD_MANAGER),
                    ("fieldValidation", "Strict"),
                    ("force", "true"),
                ],
                header_params={
                    "Content-Type": "application/apply-patch+yaml",
                    "Accept": "application/json",
                },
                body=dict(obj),
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=self.timeout,
            ),
        )
        return applied

    # --- errors -------------------------------------------------------------------------

    def _call(self, what: str, request: Any, *, missing_ok: bool = False) -> Any:
        try:
            response = request()
        except ApiException as exc:
            if exc.status == 404 and missing_ok:
                return None
            raise self._api_error(what, exc) from exc
        except HTTPError as exc:
            raise ClusterError(
                f"cannot reach the API server at {self.server} while {what}: {exc}",
                advice="check the kubeconfig's server address and your network",
            ) from exc
        try:
            return json.loads(response.data)
        except ValueError as exc:
            raise ClusterError(f"the API server sent invalid JSON while {what}") from exc

    def _api_error(self, what: str, exc: ApiException) -> ClusterError:
        detail = exc.reason or ""
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            detail = json.loads(exc.body).get("message") or detail
        if exc.status == 401:
            return ClusterError(
                f"the API server refused the credentials (HTTP 401) while {what}",
                advice="check --kubeconfig and --context, or that the token has not expired",
            )
        if exc.status == 403:
            return ClusterError(f"forbidden while {what}: {detail}", advice=RBAC_HINT)
        if exc.status == 410:
            return ClusterError(
                f"the list expired while paging ({what}): too many changes between pages",
                advice="run the audit again (or with a larger --page-size)",
            )
        return ClusterError(f"the API server answered HTTP {exc.status} while {what}: {detail}")


def _in_cluster() -> bool:
    """Running in a pod with no kubeconfig of our own: use the service account."""
    if not os.environ.get("KUBERNETES_SERVICE_HOST") or os.environ.get("KUBECONFIG"):
        return False
    return not (Path.home() / ".kube" / "config").exists()
