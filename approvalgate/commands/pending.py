"""List the ApprovalRequests waiting for approvers (phase Pending, or New: not evaluated by
the controller yet), from their status: approvals counted and required, who may still
approve, when the request expires.

--watch keeps the connection open (a Kubernetes watch, resumed when it ends: the long-poll)
and prints one line per change until interrupted (Ctrl-C ends it with exit 0): ADDED when
a request starts waiting, MODIFIED when it changes while waiting, REMOVED when it stops
waiting (decided, expired, cancelled or deleted; its phase says which). With -o json each
line is one JSON object {"event": ..., "request": {...}}.

--needs APPROVER keeps the requests that APPROVER may still approve (status.eligible);
--exclude leaves out requests by name (NAME or NS/NAME, comma-separated), e.g. the ones a
bot has already handled.

examples:
  approvalgate pending -A
  approvalgate pending -n agents --needs alice
  approvalgate pending -A --watch --needs alice -o json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from approvalgate.commands._cluster import add_cluster, add_output

if TYPE_CHECKING:
    from approvalgate.kube.client import Client


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="requests in every namespace"
    )
    scope.add_argument(
        "-n", "--namespace", metavar="NS", help="namespace (default: the kubeconfig context's)"
    )
    parser.add_argument(
        "-w", "--watch", action="store_true", help="then print each change until interrupted"
    )
    parser.add_argument(
        "--needs",
        metavar="APPROVER",
        help="only requests APPROVER may still approve (status.eligible)",
    )
    parser.add_argument(
        "--exclude",
        metavar="NAME,...",
        default="",
        help="leave out these requests (NAME or NS/NAME, comma-separated)",
    )
    add_output(parser, "table", "json")
    add_cluster(parser)


class Filter:
    """Which requests the command shows."""

    def __init__(self, needs: str | None, exclude: str) -> None:
        self.needs = needs
        self.exclude = {e.strip() for e in exclude.split(",") if e.strip()}

    def __call__(self, item: Mapping[str, Any]) -> bool:
        from approvalgate.commands._queue import is_pending

        if not is_pending(item):
            return False
        if item["name"] in self.exclude or f"{item['namespace']}/{item['name']}" in self.exclude:
            return False
        return self.needs is None or self.needs in item["eligible"]


def run(args: argparse.Namespace) -> int:
    from approvalgate.commands import _cluster, _queue
    from approvalgate.kube.errors import KubeError
    from approvalgate.kube.lists import list_all
    from approvalgate.kube.resources import APPROVAL_REQUESTS

    namespace = None if args.all_namespaces else _cluster.namespace_of(args, args.namespace)
    shows = Filter(args.needs, args.exclude)
    advice = _cluster.rbac_advice(
        "list and watch", APPROVAL_REQUESTS.plural, namespace, "approvalgate-approver"
    )
    with _cluster.connect(args, advice) as client:
        try:
            listing = list_all(client, APPROVAL_REQUESTS, namespace)
        except KubeError as exc:
            raise _cluster.not_served(exc, APPROVAL_REQUESTS.plural) from exc
        items = sorted(
            (_queue.summary(o) for o in listing.items),
            key=lambda i: (i["namespace"], i["created"], i["name"]),
        )
        shown = [i for i in items if shows(i)]
        if not args.watch:
            _print_list(shown, args.output, namespace is None)
            return 0
        printer = _Printer(args.output, namespace is None)
        for item in shown:
            printer.event("ADDED", item)
        try:
            _watch(client, namespace, listing.resource_version, shows, printer, items)
        except KeyboardInterrupt:
            return 0
    return 0


def _print_list(items: list[dict[str, Any]], output: str, all_namespaces: bool) -> None:
    from approvalgate.approvals.records import now_utc
    from approvalgate.commands._queue import pending_header, pending_row, table

    if output == "json":
        print(json.dumps(items, indent=2, sort_keys=True))
        return
    if not items:
        print("no pending approval requests", file=sys.stderr)
        return
    now = now_utc()
    rows = [pending_row(i, now, all_namespaces) for i in items]
    sys.stdout.write(table(pending_header(all_namespaces), rows))


class _Printer:
    """One line per change, flushed at once (a pipe reader sees it immediately)."""

    def __init__(self, output: str, all_namespaces: bool) -> None:
        self.output = output
        self.all_namespaces = all_namespaces
        self.header = False

    def event(self, kind: str, item: Mapping[str, Any]) -> None:
        from approvalgate.approvals.records import now_utc
        from approvalgate.commands._queue import pending_header, pending_row

        if self.output == "json":
            print(json.dumps({"event": kind, "request": item}, sort_keys=True), flush=True)
            return
        if not self.header:
            print("   ".join(["EVENT", *pending_header(self.all_namespaces)]), flush=True)
            self.header = True
        row = pending_row(item, now_utc(), self.all_namespaces)
        print("   ".join([kind, *row]), flush=True)


def _watch(
    client: Client,
    namespace: str | None,
    version: str,
    shows: Filter,
    printer: _Printer,
    items: list[dict[str, Any]],
) -> None:
    """Print every change of what is shown, from ``version`` on, until interrupted."""
    from approvalgate.commands._queue import summary
    from approvalgate.kube.errors import GoneError
    from approvalgate.kube.lists import list_all
    from approvalgate.kube.resources import APPROVAL_REQUESTS
    from approvalgate.kube.watches import Watcher, WatchEvent

    shown: dict[str, dict[str, Any]] = {_key(i): i for i in items if shows(i)}

    def update(item: dict[str, Any], deleted: bool = False) -> None:
        key = _key(item)
        before = shown.get(key)
        if not deleted and shows(item):
            shown[key] = item
            if before is None:
                printer.event("ADDED", item)
            elif before != item:
                printer.event("MODIFIED", item)
        elif before is not None:
            del shown[key]
            printer.event("REMOVED", {**item, "phase": "Deleted"} if deleted else item)

    def on_event(event: WatchEvent) -> None:
        update(summary(event.object), deleted=event.type == "DELETED")

    watcher = Watcher(client, APPROVAL_REQUESTS, namespace)
    try:
        while True:
            try:
                watcher.run(version, on_event)
                return
            except GoneError:  # the server no longer has the history: list again, diff
                listing = list_all(client, APPROVAL_REQUESTS, namespace)
                fresh = {_key(i): i for i in (summary(o) for o in listing.items)}
                for key, item in list(shown.items()):
                    if key not in fresh:
                        update(item, deleted=True)
                for item in fresh.values():
                    update(item)
                version = listing.resource_version
    finally:
        watcher.stop()


def _key(item: Mapping[str, Any]) -> str:
    return f"{item['namespace']}/{item['name']}"
