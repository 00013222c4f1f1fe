"""Who the console acts as: one console process is one user (their kubeconfig credentials,
their signer). Built once at start by ``approvalgate console``; read by every handler."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from securesystemslib.signer import Signer

    from approvalgate.approvals.bundle import Bundle
    from approvalgate.kube.client import Client


@dataclass(frozen=True)
class Me:
    """The console's user.

    ``user``: the Kubernetes username the API server authenticates us as (a
    SelfSubjectReview, ``commands._cluster.whoami``); the decisions the console files are
    created as this user. ``groups``: that review's groups (without system:authenticated).
    ``approver``: the ``--approver NAME`` we sign as ("" when the console only shows).
    ``signer_ref``: the ``--signer REF`` ("" when none); ``signer``: it, loaded (None when
    none: the pages say how to start the console to decide). ``public_key``: the
    ``--public-key FILE`` given with it. ``bundle``/``bundle_path``: the ``--bundle FILE``
    (None when not given: the request page says how to see the policies).
    """

    user: str
    approver: str = ""
    signer_ref: str = ""
    signer: Signer | None = None
    public_key: Path | None = None
    bundle: Bundle | None = None
    bundle_path: Path | None = None
    groups: tuple[str, ...] = ()

    @property
    def can_sign(self) -> bool:
        """Whether this console can decide: it has a signer and an approver name."""
        return self.signer is not None and bool(self.approver)


def who(client: Client) -> tuple[str, tuple[str, ...]]:
    """Our username and groups (less system:authenticated) as the API server authenticates
    us (a SelfSubjectReview: :func:`approvalgate.kube.discovery.self_review`)."""
    from approvalgate.kube.discovery import self_review

    return self_review(client)


def may_list_everywhere(client: Client) -> bool:
    """Whether we may list and watch ApprovalRequests and ApprovalDecisions in every
    namespace (SelfSubjectAccessReviews): then the console shows every namespace."""
    from approvalgate.kube.resources import APPROVAL_DECISIONS, APPROVAL_REQUESTS

    for resource in (APPROVAL_REQUESTS, APPROVAL_DECISIONS):
        for verb in ("list", "watch"):
            review = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "group": resource.group,
                        "resource": resource.plural,
                        "verb": verb,
                    }
                },
            }
            answer = client.request(
                f"asking whether we may {verb} {resource.plural} in every namespace",
                "POST",
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                body=review,
            )
            status = answer.get("status") if isinstance(answer, dict) else None
            if not isinstance(status, dict) or status.get("allowed") is not True:
                return False
    return True
