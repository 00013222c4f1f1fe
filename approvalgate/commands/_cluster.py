"""What the approval queue's commands share: the cluster to talk to, who we are there, and
the ApprovalRequest a command names (``NS/NAME``), with errors a user can act on.

Every request goes through :mod:`approvalgate.kube` (imported when a command runs, so
``--help`` never loads the Kubernetes client).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from approvalgate.approvals.errors import ApprovalgateError, UsageError

if TYPE_CHECKING:
    from approvalgate.kube.client import Client

GROUP = "gates.proompteng.ai"
CRD_ADVICE = (
    "install the approvalgate CRDs (the chart's files/crds/) or check --context: this API "
    "server does not serve {plural}." + GROUP
)
CREATED_BY = "gates.proompteng.ai/created-by"
"""Annotation the CLI sets on an ApprovalDecision: the username that created it (the webhook
checks it against userInfo.username)."""


def add_cluster(parser: argparse.ArgumentParser) -> None:
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument(
        "--kubeconfig",
        metavar="FILE",
        type=Path,
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the pod's service "
        "account in a cluster)",
    )
    cluster.add_argument("--context", metavar="NAME", help="kubeconfig context")


def add_output(parser: argparse.ArgumentParser, *choices: str) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=choices,
        default=choices[0],
        help=f"output format (default: {choices[0]})",
    )


def connect(args: argparse.Namespace, forbidden_advice: str) -> Client:
    """A client for ``--kubeconfig``/``--context``; a 403 carries ``forbidden_advice``."""
    from approvalgate.kube.client import Client

    return Client.connect(args.kubeconfig, args.context, forbidden_advice=forbidden_advice)


def namespace_of(args: argparse.Namespace, given: str | None) -> str:
    """``given``, else the kubeconfig context's namespace (as kubectl), else default."""
    if given:
        return given
    from approvalgate.kube.credentials import default_namespace

    return default_namespace(args.kubeconfig, args.context)


def request_ref(text: str, option: str = "NS/NAME") -> tuple[str | None, str]:
    """``NS/NAME`` (or ``NAME``: the namespace comes from the context) of a request."""
    namespace, slash, name = text.rpartition("/")
    if (slash and not namespace) or not name or "/" in namespace:
        raise UsageError(
            f"{option}: {text!r} is not NAMESPACE/NAME",
            advice="name the request like agents/nightly-report (approvalgate pending lists them)",
        )
    return (namespace or None), name


def whoami(client: Client) -> str:
    """Our username as the API server sees it (a SelfSubjectReview)."""
    from approvalgate.kube import discovery

    return discovery.username(client)


def get_request(client: Client, namespace: str, name: str) -> dict[str, Any]:
    """The ApprovalRequest ``namespace/name``; a clear error when it or its kind is missing."""
    from approvalgate.kube import objects
    from approvalgate.kube.errors import KubeError
    from approvalgate.kube.resources import APPROVAL_REQUESTS

    try:
        found = objects.get(client, APPROVAL_REQUESTS, name, namespace)
    except KubeError as exc:
        raise not_served(exc, APPROVAL_REQUESTS.plural) from exc
    if found is None:
        raise ApprovalgateError(
            f"ApprovalRequest {namespace}/{name} not found",
            advice=f"approvalgate pending -n {namespace} lists the pending requests "
            "(a request is named after its run)",
        )
    return found


def not_served(exc: ApprovalgateError, plural: str) -> ApprovalgateError:
    """``exc``, with the advice to install the CRDs when the kind itself is unknown (404)."""
    status = getattr(exc, "status", None)
    if status == 404 and "could not find the requested resource" in exc.message:
        return type(exc)(exc.message, advice=CRD_ADVICE.format(plural=plural))
    return exc


def platform_not_served(exc: ApprovalgateError, plural: str, group: str) -> ApprovalgateError:
    """``exc``, with the advice to check the platform's CRDs when the API server does not
    serve ``plural.group`` (agents, schedules, orchestrations, swarms: not ours to install)."""
    status = getattr(exc, "status", None)
    if status == 404 and "could not find the requested resource" in exc.message:
        return type(exc)(
            exc.message,
            advice=f"this API server does not serve {plural}.{group}: check --context, or "
            "install the agents platform's CRDs (or give the objects as files instead of "
            "--cluster)",
        )
    return exc


def rbac_advice(verbs: str, plural: str, namespace: str | None, role: str) -> str:
    where = f"in namespace {namespace}" if namespace else "in every namespace (-A)"
    return (
        f"you need {verbs} on {plural}.{GROUP} {where}: ask an admin to bind the chart's "
        f"{role} ClusterRole to you (docs/queue.md, RBAC to grant; kubectl auth can-i --list "
        "shows what you may do)"
    )
