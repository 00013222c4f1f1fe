"""``--cluster`` for ``verify`` and ``explain``: decide with the cluster view the webhook has.

With ``--cluster`` the ApprovalRequests, ApprovalDecisions and ApprovalUses are listed once
(:func:`kube.view.list_view`) and decide() reads them as the webhook reads its watch-fed copy:
a reject or withdrawal recorded in the cluster counts, an approval another run used does not.
Without it decide() gets :data:`approvals.view.OFFLINE` and says which checks it could not make.

The view is listed in all namespaces, as the webhook sees it. An identity that may not list
them cluster-wide (a requester) falls back to the namespaces of the runs being decided, and
stderr says so: uses recorded in other namespaces are then not seen.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from approvalgate.approvals.errors import ApprovalgateError, UsageError

if TYPE_CHECKING:
    from approvalgate.approvals.view import ClusterView


class ClusterReadError(ApprovalgateError):
    """The cluster view could not be read (exit 2: nothing was decided)."""

    exit_code = 2


def add_cluster(parser: argparse.ArgumentParser, what: str = "decide") -> None:
    cluster = parser.add_argument_group("cluster view")
    cluster.add_argument(
        "--cluster",
        action="store_true",
        help=f"{what} with the ApprovalRequests, ApprovalDecisions and ApprovalUses of the "
        "cluster, as the webhook does: rejections and withdrawals recorded there count, and "
        "an approval another run used does not (without --cluster those checks are not made, "
        "and the output says so)",
    )
    cluster.add_argument(
        "--kubeconfig",
        metavar="FILE",
        type=Path,
        help="with --cluster: kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the "
        "pod's service account in a cluster)",
    )
    cluster.add_argument("--context", metavar="NAME", help="with --cluster: kubeconfig context")


def load_view(args: argparse.Namespace, namespaces: Iterable[str]) -> ClusterView:
    """The view ``decide()`` gets: listed from the cluster with ``--cluster``, else OFFLINE."""
    from approvalgate.approvals.view import OFFLINE

    if not args.cluster:
        if args.kubeconfig is not None or args.context is not None:
            raise UsageError(
                "--kubeconfig and --context only go with --cluster",
                advice="add --cluster to read the approvals recorded in the cluster",
            )
        return OFFLINE
    from approvalgate.kube.client import Client
    from approvalgate.kube.errors import KubeError
    from approvalgate.kube.view import list_view

    try:
        with Client.connect(args.kubeconfig, args.context) as client:
            try:
                return list_view(client)
            except KubeError as exc:
                if exc.status != 403:
                    raise
                scoped = sorted(set(namespaces))
                view = list_view(client, scoped)
                print(
                    f"note: {exc.message}; read namespaces {', '.join(scoped)} only (uses "
                    "recorded in other namespaces are not seen)",
                    file=sys.stderr,
                )
                return view
    except ApprovalgateError as exc:
        if exc.exit_code == 2:
            raise
        raise ClusterReadError(exc.message, advice=exc.advice) from exc
