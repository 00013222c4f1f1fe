"""What can go wrong when talking to the Kubernetes API, as :class:`ApprovalgateError` subclasses.

Nothing here imports the ``kubernetes`` client, so callers can catch these errors without
loading it. Every message names the request (``while listing configmaps in all namespaces``)
and, where the reader can act, carries advice.
"""

from __future__ import annotations

from approvalgate.approvals.errors import ApprovalgateError, InputError


class KubeError(ApprovalgateError):
    """A request to the API server failed; the message says which request and why."""

    def __init__(self, message: str, *, status: int | None = None, advice: str = "") -> None:
        super().__init__(message, advice=advice)
        self.status = status


class CredentialsError(InputError):
    """No usable kubeconfig or in-cluster service account: nothing was sent."""


class UnreachableError(KubeError):
    """The API server could not be reached or the connection broke (no HTTP status)."""


class ApiError(KubeError):
    """The API server answered with an HTTP error status (in :attr:`status`)."""


class DeniedError(ApiError):
    """An admission webhook (or a validating admission policy) denied the request: its
    message says why, and what to do; no permission is missing."""


class GoneError(ApiError):
    """HTTP 410 Gone: a ``continue`` token or a watch's resourceVersion is too old.

    The remedy is always the same: list again from scratch and watch from the new list's
    resourceVersion.
    """
