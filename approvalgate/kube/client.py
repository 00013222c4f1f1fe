"""One connection to the API server: every request goes through :meth:`Client.request`.

Built on the official ``kubernetes`` client's ``ApiClient`` (TLS, auth plugins, token refresh,
connection pool), but objects travel as the server's JSON (``_preload_content=False``), never
as the client's generated models: comparisons see exactly what is stored, and one generic
request works for every kind, core or custom. Every failure becomes a :class:`KubeError` that
names the request; 401, 403 and 410 get their own advice.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from kubernetes import client  # type: ignore[import-untyped]
from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped]
from urllib3.exceptions import HTTPError

from approvalgate.kube.credentials import impersonation_headers, load_configuration
from approvalgate.kube.errors import (
    ApiError,
    DeniedError,
    GoneError,
    KubeError,
    UnreachableError,
)

Query = Sequence[tuple[str, str]]

DEFAULT_TIMEOUT: Final = 30.0
FORBIDDEN_ADVICE: Final = (
    "grant this identity the permission (kubectl auth can-i tells what it may do)"
)
UNAUTHORIZED_ADVICE: Final = "check --kubeconfig and --context, or that the token has not expired"
API_SERVER_MAX_DEPTH: Final = 10_000
"""How deeply the API server lets an object nest (its JSON decoder's limit): a custom
resource keeping unknown fields (an Agent's ``spec.config``) may be that deep, in any
namespace anyone may write."""


def allow_api_server_depth() -> None:
    """Let this process decode and digest anything the API server stores.

    Python's recursion limit (1,000 by default) also bounds its C JSON decoder and our own
    recursive walks (RFC 8785, digests): an object nested deeper would stop the watch of its
    kind, and with it every decision that needs the view (a denial of service by anyone who
    may create one Agent). Three times the server's depth leaves room for the envelope and
    the walks; at that depth CPython's C decoder stays well within a thread's 8 MiB stack."""
    needed = 3 * API_SERVER_MAX_DEPTH
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


class Client:
    """The API server at :attr:`server`, with one identity (optionally impersonated).

    Thread-safe: the underlying urllib3 pool serves concurrent requests (an informer's watch
    thread and a caller's reads share one client).
    """

    def __init__(
        self,
        api: client.ApiClient,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        forbidden_advice: str = FORBIDDEN_ADVICE,
    ) -> None:
        allow_api_server_depth()
        self.api = api
        self.server: str = api.configuration.host
        self.timeout = timeout
        self.forbidden_advice = forbidden_advice

    @classmethod
    def connect(
        cls,
        kubeconfig: Path | None = None,
        context: str | None = None,
        *,
        as_user: str | None = None,
        as_groups: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
        forbidden_advice: str = FORBIDDEN_ADVICE,
    ) -> Client:
        """A client from a kubeconfig (``kubeconfig``/``context``, ``$KUBECONFIG``,
        ``~/.kube/config``) or the pod's service account; see :mod:`kube.credentials`."""
        headers = impersonation_headers(as_user, as_groups)  # usage errors before any file
        api = client.ApiClient(load_configuration(kubeconfig, context))
        for name, value in headers.items():
            api.set_default_header(name, value)
        return cls(api, timeout=timeout, forbidden_advice=forbidden_advice)

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests -----------------------------------------------------------------------

    def request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        query: Query = (),
        body: Any = None,
        content_type: str = "application/json",
        missing_ok: bool = False,
    ) -> Any:
        """Send one request and return the decoded JSON answer.

        ``what`` says what the request does ("listing configmaps in all namespaces") and
        appears in every error. With ``missing_ok`` a 404 returns None.
        """
        try:
            response = self.send(method, path, query=query, body=body, content_type=content_type)
        except KubeError as exc:
            if exc.status == 404 and missing_ok:
                return None
            raise self.error(what, exc) from exc
        try:
            return json.loads(response.data)
        except ValueError as exc:
            raise KubeError(f"the API server sent invalid JSON while {what}") from exc

    def send(
        self,
        method: str,
        path: str,
        *,
        query: Query = (),
        body: Any = None,
        content_type: str = "application/json",
        read_timeout: float | None = None,
    ) -> Any:
        """The raw urllib3 response (unread), for streams; errors are bare :class:`KubeError`
        with :attr:`KubeError.status` (re-worded by :meth:`error`)."""
        timeout = self.timeout if read_timeout is None else (self.timeout, read_timeout)
        try:
            return self.api.call_api(
                path,
                method,
                query_params=list(query),
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=timeout,
            )
        except ApiException as exc:
            raise ApiError(_detail(exc), status=exc.status) from exc
        except HTTPError as exc:
            raise UnreachableError(str(exc)) from exc

    # --- errors -------------------------------------------------------------------------

    def error(self, what: str, exc: KubeError) -> KubeError:
        """``exc`` (from :meth:`send` or a watch) re-worded for the request ``what``."""
        detail = exc.message
        if isinstance(exc, UnreachableError):
            return UnreachableError(
                f"cannot reach the API server at {self.server} while {what}: {detail}",
                advice="check the kubeconfig's server address and your network",
            )
        if exc.status == 401:
            return ApiError(
                f"the API server refused the credentials (HTTP 401) while {what}",
                status=401,
                advice=UNAUTHORIZED_ADVICE,
            )
        if exc.status is not None and _admission_denial(detail):
            return DeniedError(f"denied while {what}: {detail}", status=exc.status)
        if exc.status == 403:
            return ApiError(
                f"forbidden while {what}: {detail}", status=403, advice=self.forbidden_advice
            )
        if exc.status == 410:
            return GoneError(
                f"the resource version expired (HTTP 410) while {what}: {detail}",
                status=410,
                advice="list again (the remedy for an expired continue token or watch)",
            )
        return ApiError(
            f"the API server answered HTTP {exc.status} while {what}: {detail}",
            status=exc.status,
        )


def _admission_denial(detail: str) -> bool:
    """The API server's wording when admission (not authorization) refused the request."""
    return detail.startswith("admission webhook ") or " denied request: " in detail


def _detail(exc: ApiException) -> str:
    """The Status message the API server sent, else the HTTP reason."""
    detail = str(exc.reason or "")
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        detail = json.loads(exc.body).get("message") or detail
    return detail
