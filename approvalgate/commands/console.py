"""Open the approval console: a local web page with the queue, the story of each request,
and approve / reject / withdraw in one click (issue 19).

The console is a server on 127.0.0.1 only (like `kubectl proxy`) that acts with YOUR
kubeconfig credentials and YOUR signer: nothing is hosted, and the private key never
reaches the browser. It prints a link with a token made for this launch; opening it signs
the browser in (a session cookie) and the token leaves the address bar. On Linux it answers
only connections from your own user (another user of the machine who learns the link is
refused). Pages update live from the cluster's watches; a page whose request or content
changed since you opened it says so and signs nothing until you reload it. Two approvers on
one machine run two consoles.

Which requests: every namespace with -A; the namespaces given with -n (repeatable); by
default every namespace when you may list approval requests cluster-wide, else the
kubeconfig context's namespace. A namespace you may not read is named on the page.

To decide, give --signer REF (a key file, or a signer like hsm:, ssh-agent:, a KMS) and
--approver NAME (your name in the policies); without them the console only shows. With
--bundle FILE (a compiled bundle.json) the request page shows the policies that match a
run and what each requires.

Ctrl-C stops the console (exit 0).

examples:
  approvalgate console
  approvalgate console -n agents --signer ~/.approvalgate/alice.key --approver alice
  approvalgate console -A --signer ssh-agent: --approver alice --bundle out/prod/bundle.json
  approvalgate console --no-open --port 8765
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from approvalgate.approvals.errors import UsageError
from approvalgate.commands import _cluster, _signer

if TYPE_CHECKING:
    from approvalgate.console.identity import Me
    from approvalgate.kube.client import Client

LOOPBACK = "127.0.0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="requests in every namespace"
    )
    scope.add_argument(
        "-n",
        "--namespace",
        metavar="NS",
        action="append",
        default=[],
        help="a namespace to show (repeatable; default: every namespace when you may list "
        "them all, else the kubeconfig context's)",
    )
    _signer.add_signer(parser, required=False)
    parser.add_argument(
        "--approver",
        metavar="NAME",
        default="",
        help="your approver name in the policies: the decisions you sign carry it, and the "
        "queue's 'needs me' view shows what waits for you (needs --signer to decide)",
    )
    parser.add_argument(
        "--bundle",
        metavar="FILE",
        type=Path,
        help="a compiled bundle.json: the request page shows the policies matching a run "
        "and what each requires, and bounds your decisions' TTL",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="the port on 127.0.0.1 (default 0: any free port)",
    )
    parser.add_argument(
        "--host",
        default=LOOPBACK,
        help="where to listen: only 127.0.0.1 is accepted (the console acts with your "
        "credentials: it is never reachable from another machine)",
    )
    parser.add_argument(
        "--no-open", action="store_true", help="print the link only; do not open a browser"
    )
    _cluster.add_cluster(parser)


def check_arguments(args: argparse.Namespace) -> None:
    """Usage errors (exit 2), before anything is read or bound."""
    if args.host != LOOPBACK:
        raise UsageError(
            f"--host {args.host}: the console listens on {LOOPBACK} only (it acts with your "
            "credentials and signer)",
            advice="drop --host; to use it from another machine, forward the port over ssh "
            f"(ssh -L PORT:{LOOPBACK}:PORT)",
        )
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: a port is 0 to 65535 (0: any free port)")
    if args.key and not args.approver:
        raise UsageError(
            "--signer needs --approver NAME: the name the policies know you by",
            advice="add --approver NAME (your Approver document's name)",
        )
    if args.public_key is not None and not args.key:
        raise UsageError("--public-key goes with --signer", advice="add --signer REF")


def run(args: argparse.Namespace) -> int:
    from approvalgate.policies import bundle_from_file

    check_arguments(args)
    bundle = bundle_from_file(args.bundle) if args.bundle else None
    signer = None
    if args.key:
        signer = _signer.load(args.key, args.public_key, bundle=bundle, approver=args.approver)
    client = _cluster.connect(
        args,
        _cluster.rbac_advice(
            "get, list and watch on approvalrequests and approvaldecisions",
            "approvalrequests",
            None if args.all_namespaces else (args.namespace or [None])[0],
            "approvalgate-approver",
        ),
    )
    with client:
        import asyncio  # not at the top: every command's start-up imports this module

        from approvalgate.console.identity import Me, who

        user, groups = who(client)
        me = Me(
            user=user,
            approver=args.approver,
            signer_ref=args.key or "",
            signer=signer,
            public_key=args.public_key,
            bundle=bundle,
            bundle_path=args.bundle,
            groups=groups,
        )
        namespaces = _namespaces(args, client)
        return asyncio.run(_serve(args, client, me, namespaces))


def _namespaces(args: argparse.Namespace, client: Client) -> list[str]:
    """[] for every namespace, else the namespaces to watch."""
    if args.all_namespaces:
        return []
    if args.namespace:
        return list(dict.fromkeys(args.namespace))
    from approvalgate.console.identity import may_list_everywhere

    if may_list_everywhere(client):
        return []
    return [_cluster.namespace_of(args, None)]


async def _serve(args: argparse.Namespace, client: Client, me: Me, namespaces: list[str]) -> int:
    import asyncio

    from approvalgate.console import app
    from approvalgate.console.state import ConsoleState
    from approvalgate.runtime.drain import stop_on_signals

    stop = stop_on_signals()
    state = ConsoleState(client, namespaces)
    console = app.Console(state=state, client=client, me=me)
    runner = await app.start(console, args.port)
    state.start()
    try:
        print(f"console: {console.url}", flush=True)
        where = "every namespace" if not namespaces else "namespace " + ", ".join(namespaces)
        acting = f"user {me.user}" + (
            f", approver {me.approver}" if me.approver else " (no --approver: view only)"
        )
        if me.approver and me.signer is None:
            acting += " (no --signer: cannot decide)"
        print(
            f"console: showing {where} as {acting}; Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        if not args.no_open:
            await asyncio.to_thread(_open_browser, console.url)
        await stop.wait()
    finally:
        await runner.cleanup()
        await asyncio.to_thread(state.stop)
    print("console: stopped", file=sys.stderr)
    return 0


def _open_browser(url: str) -> None:
    """The default browser, if there is a graphical one: without a display, Python's
    webbrowser would run a text browser (lynx, w3m) in this terminal and wait for it."""
    import webbrowser

    graphical = sys.platform in ("darwin", "win32") or any(
        os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY")
    )
    opened = False
    if graphical:
        try:
            opened = webbrowser.open(url)
        except webbrowser.Error:
            opened = False
    if not opened:
        print("console: no browser to open here: open the link above", file=sys.stderr, flush=True)
