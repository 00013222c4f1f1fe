"""Run the approval queue's controller until SIGTERM.

It watches ApprovalRequests, ApprovalDecisions, ApprovalUses and AgentRuns (in every
namespace, or those --namespace names) and, on the replica holding the Lease
(--lease-namespace/--lease-name), reconciles each request with the same decide() the webhook
uses: status (phase Pending, Approved, Submitted, Rejected, Expired, Failed, Cancelled, with
the reason, who approved and who may still approve), an Event per transition, and at quorum
the AgentRun, created exactly once (named like the request, carrying the records and the
request's uid). Where the bundle requires the cluster view it also records each run's
ApprovalUse and removes the gates.proompteng.ai/approval-use finalizer once the use has
settled, and collects expired decisions and uses (--no-gc turns that off).

Its ServiceAccount is not trusted by the webhook: the runs it creates pass on their records.
/healthz and /readyz on --health-port (ready: a bundle loaded and every watch listed),
/metrics on --metrics-port. Logs are JSON lines on stderr. The bundle file and its signatures
(bundle.sig.json) are re-read when they change; a broken new bundle, one the pinned
--bundle-key keys did not sign, or an older revision keeps the last good one. With
--bundle-floor it also keeps the revision floor: each signed revision put in force raises
this environment's entry of that ConfigMap (never lowers it), and a bundle below it is
refused (below-floor), as the webhook refuses it (docs/deploy.md, "The revision floor").

examples:
  approvalgate controller --bundle /etc/approvalgate/bundle.json \\
      --bundle-key /etc/approvalgate-keys/bundle-signing.pub --bundle-min-revision 7 \\
      --bundle-environment prod --bundle-floor approvalgate-system/approvalgate-bundle-floor \\
      --lease-namespace approvalgate-system --identity "$POD_NAME"
  approvalgate controller --bundle rendered/staging/bundle.json --kubeconfig ~/.kube/config \\
      --bundle-key keys/bundle-signing.pub \\
      --namespace agents --lease-namespace agents --notify-url-file /secrets/slack-url
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

from approvalgate.commands._runtime_trust import add_bundle_trust, trust_args
from approvalgate.commands.webhook import _port, _positive_float, _positive_int

NOTIFY_URL_ENV = "APPROVALGATE_NOTIFY_URL"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bundle",
        metavar="FILE",
        type=Path,
        required=True,
        help="the compiled bundle.json of this environment (watched for changes)",
    )
    add_bundle_trust(
        parser,
        who="the controller",
        floor="read each time the bundle's files change, and raised (never lowered) to each"
        " signed revision put in force; its ServiceAccount alone may write it",
    )
    kube = parser.add_argument_group("cluster")
    kube.add_argument(
        "--kubeconfig",
        metavar="FILE",
        type=Path,
        help="kubeconfig (default: $KUBECONFIG, ~/.kube/config, else the pod's service account)",
    )
    kube.add_argument("--context", metavar="NAME", help="kubeconfig context")
    kube.add_argument(
        "--namespace",
        metavar="NS",
        action="append",
        default=[],
        help="watch only this namespace (repeat for several; default: every namespace)",
    )
    lease = parser.add_argument_group("leader election (one replica writes)")
    lease.add_argument(
        "--lease-namespace",
        metavar="NS",
        help="namespace of the Lease (default: $POD_NAMESPACE, else the pod's own namespace)",
    )
    lease.add_argument(
        "--lease-name",
        metavar="NAME",
        default="approvalgate-controller",
        help="the coordination.k8s.io Lease (default: approvalgate-controller)",
    )
    lease.add_argument(
        "--identity",
        metavar="ID",
        help="this replica's name in the Lease (default: $POD_NAME, else the host name)",
    )
    lease.add_argument("--lease-duration", type=_positive_float, default=15.0, metavar="SECONDS")
    lease.add_argument("--renew-deadline", type=_positive_float, default=10.0, metavar="SECONDS")
    lease.add_argument("--retry-period", type=_positive_float, default=2.0, metavar="SECONDS")
    ports = parser.add_argument_group("ports")
    ports.add_argument("--host", default="0.0.0.0", help="address of both ports (default: all)")  # noqa: S104
    ports.add_argument(
        "--metrics-port",
        type=_port,
        default=9090,
        help="plain-HTTP /metrics; 0 turns it off (default: 9090)",
    )
    ports.add_argument(
        "--health-port",
        type=_port,
        default=8081,
        help="plain-HTTP /healthz and /readyz; 0 turns it off (default: 8081)",
    )
    out = parser.add_argument_group("announcements")
    out.add_argument(
        "--signal-deliveries",
        action="store_true",
        help="also create a signals.proompteng.ai SignalDelivery per transition",
    )
    out.add_argument(
        "--signal-name",
        default="approvalgate",
        metavar="NAME",
        help="the Signal the deliveries name (spec.signalRef.name; default: approvalgate)",
    )
    notify = out.add_mutually_exclusive_group()
    notify.add_argument(
        "--notify-url",
        metavar="URL",
        help=f"POST Slack-compatible JSON here (also ${NOTIFY_URL_ENV}; a URL is a secret: "
        "prefer --notify-url-file)",
    )
    notify.add_argument(
        "--notify-url-file", metavar="FILE", type=Path, help="read the notification URL from FILE"
    )
    out.add_argument(
        "--notify-expiring-before",
        type=_positive_float,
        default=3600.0,
        metavar="SECONDS",
        help='say "expiring" this long before a pending request expires (default: 3600)',
    )
    loop = parser.add_argument_group("reconciliation")
    loop.add_argument(
        "--resync",
        "--resync-seconds",
        dest="resync",
        type=_positive_float,
        default=300.0,
        metavar="SECONDS",
        help="look at every request again this often, behind the changes (a safety net: "
        "changes and expiry timers queue what they touch; default: 300)",
    )
    loop.add_argument(
        "--no-gc",
        dest="gc",
        action="store_false",
        help="do not delete expired ApprovalDecisions and ApprovalUses",
    )
    loop.add_argument(
        "--gc-interval", type=_positive_float, default=300.0, metavar="SECONDS", help="(300)"
    )
    loop.add_argument(
        "--gc-max-deletes",
        type=_positive_int,
        default=50,
        metavar="N",
        help="deletes per collection at most (default: 50)",
    )
    loop.add_argument(
        "--view-max-age",
        type=_positive_float,
        default=90.0,
        metavar="SECONDS",
        help="write nothing after this long without contact with the API server (default: 90)",
    )
    loop.add_argument(
        "--reload-interval",
        type=_positive_float,
        default=2.0,
        metavar="SECONDS",
        help="how often the bundle file is checked (default: 2)",
    )
    loop.add_argument(
        "--grace-period",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM, how long the reconcile in flight may take (default: 10)",
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info"
    )


def run(args: argparse.Namespace) -> int:
    import asyncio

    from approvalgate.approvals.errors import UsageError
    from approvalgate.controller.config import ControllerConfig
    from approvalgate.controller.service import run as serve
    from approvalgate.kube.client import Client
    from approvalgate.kube.leader import check_timing
    from approvalgate.runtime import logs

    check_timing(args.lease_duration, args.renew_deadline, args.retry_period)
    trust = trust_args(args)
    lease_namespace = args.lease_namespace or os.environ.get("POD_NAMESPACE") or _own_namespace()
    if not lease_namespace:
        raise UsageError(
            "the Lease needs a namespace",
            advice="pass --lease-namespace NS (in a pod, set POD_NAMESPACE from the downward API)",
        )
    identity = args.identity or os.environ.get("POD_NAME") or socket.gethostname()
    notify_url = _notify_url(args)
    logs.configure(["approvalgate", "aiohttp"], args.log_level)
    # the client's elector logs every retry at info: its warnings only (transitions are ours)
    logs.configure(["leaderelection"], "warning")
    config = ControllerConfig(
        bundle=args.bundle,
        identity=identity,
        lease_namespace=lease_namespace,
        lease_name=args.lease_name,
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespaces=tuple(dict.fromkeys(args.namespace)),
        host=args.host,
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        signal_deliveries=args.signal_deliveries,
        signal_name=args.signal_name,
        notify_url=notify_url,
        notify_expiring_before=args.notify_expiring_before,
        resync_seconds=args.resync,
        gc=args.gc,
        gc_interval=args.gc_interval,
        gc_max_deletes=args.gc_max_deletes,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
        view_max_age=args.view_max_age,
        reload_interval=args.reload_interval,
        grace_period=args.grace_period,
        log_level=args.log_level,
        **trust.flags(args.bundle_signatures),
    )
    client = Client.connect(args.kubeconfig, args.context)
    try:
        return asyncio.run(serve(config, client))
    finally:
        client.close()


def _own_namespace() -> str:
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return ""


def _notify_url(args: argparse.Namespace) -> str:
    from approvalgate.approvals.errors import InputError, UsageError

    url = args.notify_url or ""
    if args.notify_url_file is not None:
        try:
            url = args.notify_url_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(
                f"{args.notify_url_file}: cannot read the notification URL: {exc.strerror}"
            ) from None
    url = url or os.environ.get(NOTIFY_URL_ENV, "").strip()
    if url and not url.startswith(("https://", "http://")):
        raise UsageError(
            "the notification URL must start with https:// or http://",
            advice="check --notify-url, --notify-url-file or $" + NOTIFY_URL_ENV,
        )
    return url
