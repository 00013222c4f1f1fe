"""``--cluster`` for ``verify`` and ``explain``: decide with the cluster view the webhook has.

With ``--cluster`` the ApprovalRequests, ApprovalDecisions and ApprovalUses are listed once
(:func:`kube.view.list_view`) and decide() reads them as the webhook reads its watch-fed copy:
a reject or withdrawal recorded in the cluster counts, an approval another run used does not.
Without it decide() gets :data:`approvals.view.OFFLINE` and says which checks it could not make.

The view is listed in all namespaces, as the webhook sees it. An identity that may not list
them cluster-wide (a requester) falls back to the namespaces of the runs being decided, and
stderr says so: uses recorded in other namespaces are then not seen.

decide() also reads parents (Schedules, OrchestrationRuns, Swarms), Orchestrations and the
referenced content (ImplementationSpecs, Agents, AgentProviders) from the view: with
``--cluster`` they are listed in the namespaces being decided; objects the command was given
(the manifest's other documents, ``--content`` files) are added to the view and win over the
cluster's copies.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from approvalgate.approvals.errors import ApprovalgateError, UsageError

if TYPE_CHECKING:
    from approvalgate.approvals.view import ClusterView, StaticView
    from approvalgate.kube.client import Client
    from approvalgate.kube.resources import Resource


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
        "and the output says so); the Schedules, OrchestrationRuns, Orchestrations, Swarms, "
        "ImplementationSpecs and Agents of the namespaces decided are read too",
    )
    cluster.add_argument(
        "--kubeconfig",
        metavar="FILE",
        type=Path,
        help="with --cluster: kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the "
        "pod's service account in a cluster)",
    )
    cluster.add_argument("--context", metavar="NAME", help="with --cluster: kubeconfig context")


def load_view(
    args: argparse.Namespace,
    namespaces: Iterable[str],
    objects: Sequence[Mapping[str, Any]] = (),
) -> ClusterView:
    """The view ``decide()`` gets: listed from the cluster with ``--cluster``, else OFFLINE;
    with ``objects`` (parents, Orchestrations, content) added. Without ``--cluster`` a view
    of ``objects`` alone is a view all the same (decide() judges a platform-made run by its
    parent only in a view), said on stderr."""
    from approvalgate.approvals.view import OFFLINE, StaticView

    if not args.cluster:
        if args.kubeconfig is not None or args.context is not None:
            raise UsageError(
                "--kubeconfig and --context only go with --cluster",
                advice="add --cluster to read the approvals recorded in the cluster",
            )
        if not objects:
            return OFFLINE
        print(
            "note: without --cluster the view holds only the objects given (the manifest's "
            "documents, --content files): approvals recorded in the cluster and uses of "
            "approvals are not seen; add --cluster to read them",
            file=sys.stderr,
        )
        return with_objects(StaticView(), objects)
    from approvalgate.kube.client import Client
    from approvalgate.kube.errors import KubeError
    from approvalgate.kube.view import list_view

    scoped = sorted(set(namespaces))
    try:
        with Client.connect(args.kubeconfig, args.context) as client:
            try:
                view = list_view(client)
            except KubeError as exc:
                if exc.status != 403:
                    raise
                view = list_view(client, scoped)
                print(
                    f"note: {exc.message}; read namespaces {', '.join(scoped)} only (uses "
                    "recorded in other namespaces are not seen)",
                    file=sys.stderr,
                )
            listed = list_objects(client, scoped)
    except ApprovalgateError as exc:
        if exc.exit_code == 2:
            raise
        raise ClusterReadError(exc.message, advice=exc.advice) from exc
    return with_objects(view, [*listed, *objects])


def resources() -> dict[str, Resource]:
    """The API resource of each kind decide() reads from the view besides the queue's (the
    cluster view's own table), and of AgentRuns."""
    from approvalgate.kube.resources import AGENT_RUNS
    from approvalgate.kube.view import OBJECT_RESOURCES

    return {**OBJECT_RESOURCES, "AgentRun": AGENT_RUNS}


def objects_of(objs: Iterable[Mapping[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """Those of ``objs`` the view holds (parents, Orchestrations, ImplementationSpecs, Agents
    and AgentProviders, of their API group), placed in ``namespace`` when they name none."""
    from approvalgate.approvals import content, parents

    groups = {k.kind: k.group for k in (*parents.KINDS.values(), parents.ORCHESTRATION)}
    groups.update((kind, content.GROUP) for kind in content.KINDS)
    found = []
    for obj in objs:
        kind = str(obj.get("kind") or "")
        group = str(obj.get("apiVersion") or "").partition("/")[0]
        if groups.get(kind) == group:
            meta = dict(obj.get("metadata") or {})
            meta["namespace"] = meta.get("namespace") or namespace
            found.append({**obj, "metadata": meta})
    return found


def list_objects(client: Client, namespaces: Sequence[str]) -> list[dict[str, Any]]:
    """Every parent, Orchestration, ImplementationSpec, Agent and AgentProvider in
    ``namespaces`` (a kind
    the API server does not serve has none: its CRD is not installed). A kind this identity
    may not list is left out with a note on stderr: what needs it is then judged without it
    (a platform-made run or a parent is denied, a binding record does not count)."""
    from approvalgate.kube.errors import KubeError
    from approvalgate.kube.lists import list_all
    from approvalgate.kube.view import OBJECT_RESOURCES

    found: list[dict[str, Any]] = []
    for kind, resource in OBJECT_RESOURCES.items():
        for namespace in namespaces:
            try:
                items = list_all(client, resource, namespace).items
            except KubeError as exc:
                if exc.status == 404:
                    break
                if exc.status != 403:
                    raise
                print(
                    f"note: {exc.message}; {kind}s are judged without it (runs the platform "
                    "made from them, and approvals binding them, do not pass)",
                    file=sys.stderr,
                )
                break
            found.extend({**item, "kind": kind} for item in items)
    return found


def with_objects(view: StaticView, objects: Sequence[Mapping[str, Any]]) -> StaticView:
    """``view`` (decisions, uses, requests) holding ``objects`` too (later ones win)."""
    import dataclasses

    from approvalgate.approvals.view import StaticView

    built = StaticView.build(objects=objects)
    empty = StaticView()
    changed = {
        f.name: getattr(built, f.name)
        for f in dataclasses.fields(StaticView)
        if f.init and getattr(built, f.name) != getattr(empty, f.name)
    }
    return dataclasses.replace(view, **changed)
