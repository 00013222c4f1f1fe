"""Run the validating admission webhook that enforces recorded approvals.

`webhook serve` answers AdmissionReviews (admission.k8s.io/v1 and v1beta1) on
POST /validate over HTTPS with the verdict of the same decide() as `approvalgate verify`.
The bundle, its signatures (bundle.sig.json) and the TLS certificate/key are re-read when
their files change (ConfigMap and Secret volume updates included); a broken new bundle, or
one the pinned --bundle-key keys did not sign, or an older revision, keeps the last good one
(metric approvalgate_bundle_rejected_total{reason}, one log line per content). With
--bundle-floor a signed bundle below the revision floor the controller keeps in the cluster
is refused too (below-floor; read when the files change, never per admission). Without a
bundle the webhook is not ready and denies everything. /healthz and /readyz are on the
HTTPS port, /metrics (Prometheus) on --metrics-port. SIGTERM drains: no new connections,
requests in flight finish within --grace-period, exit 0. Logs are JSON lines on stderr.

Cluster view: where the bundle has clusterView: required (the default), decide() also reads
the ApprovalRequests, ApprovalDecisions and ApprovalUses of every namespace from a watch-fed
cache in memory (never a call to the API server per admission): a reject or withdrawal
recorded in the cluster counts, and an approval admits one run. The same cache holds the
agents platform's Schedules, OrchestrationRuns, Orchestrations and Swarms (the parents a run
derives from) and the digests of its ImplementationSpecs and Agents (the content a run
references). The webhook is not ready until every kind is listed once; a watch silent for
longer than --view-max-age denies what needs the view, with the reason. Its identity needs
get/list/watch on those nine kinds.

--dev makes a throwaway CA and a certificate for localhost/127.0.0.1 in memory, prints the
CA (PEM, and base64 for a caBundle) and listens on 127.0.0.1 unless --host says otherwise.

examples:
  approvalgate webhook serve --bundle rendered/dev/bundle.json --dev --dev-ca-out ca.pem \\
      --allow-unsigned-bundle
  approvalgate webhook serve --bundle /etc/approvalgate/bundle.json \\
      --bundle-key /etc/approvalgate-keys/bundle-signing.pub --bundle-min-revision 7 \\
      --tls-cert /tls/tls.crt --tls-key /tls/tls.key --workers 2
  approvalgate webhook serve --bundle rendered/prod/bundle.json --dev \\
      --bundle-key keys/ci.pub --bundle-key keys/release.pub --bundle-threshold 2 \\
      --kubeconfig ~/.kube/config --context staging --view-max-age 60
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from approvalgate.commands._runtime_trust import add_bundle_trust, trust_args

# the defaults of webhook.config.ServeConfig, not imported (that would load aiohttp for every
# command); tests/unit/test_cli.py keeps them in step
DEFAULT_MAX_BODY_BYTES = 3 * 1024 * 1024
DEFAULT_IDLE_TIMEOUT = 120.0
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_VIEW_MAX_AGE = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="webhook_command", metavar="SUBCOMMAND", required=True)
    serve = sub.add_parser(
        "serve",
        allow_abbrev=False,
        help="serve POST /validate over HTTPS until SIGTERM",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--bundle",
        metavar="FILE",
        type=Path,
        required=True,
        help="the compiled bundle.json to enforce (watched for changes)",
    )
    add_bundle_trust(
        serve,
        who="the webhook",
        floor="read (with --kubeconfig/--context, or the pod's service account) each time the"
        " bundle's files change, never per admission",
    )
    tls = serve.add_argument_group("TLS (--tls-cert and --tls-key, or --dev)")
    tls.add_argument("--tls-cert", metavar="FILE", type=Path, help="PEM certificate (chain)")
    tls.add_argument("--tls-key", metavar="FILE", type=Path, help="PEM private key")
    tls.add_argument(
        "--dev",
        action="store_true",
        help="self-signed CA and certificate for localhost, made in memory (not for production)",
    )
    tls.add_argument(
        "--dev-ca-out", metavar="FILE", type=Path, help="with --dev: also write the CA PEM here"
    )
    serve.add_argument(
        "--host", help="address to listen on (default: 0.0.0.0; 127.0.0.1 with --dev)"
    )
    serve.add_argument("--port", type=_port, default=8443, help="HTTPS port (default: 8443)")
    serve.add_argument(
        "--metrics-port",
        type=_port,
        default=9090,
        help="plain-HTTP port of /metrics; 0 turns it off (default: 9090)",
    )
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="worker processes sharing the port with SO_REUSEPORT (default: 1)",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="N",
        help=f"largest request body accepted (default: {DEFAULT_MAX_BODY_BYTES}, 3 MiB)",
    )
    serve.add_argument(
        "--reload-interval",
        type=_positive_float,
        default=2.0,
        metavar="SECONDS",
        help="how often the bundle and certificate files are checked (default: 2)",
    )
    serve.add_argument(
        "--read-timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="longest time a request body may take to arrive (default: 10)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=_positive_float,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help="close a connection that has not sent a whole request head this long after its"
        f" TLS handshake or its last answer (default: {DEFAULT_IDLE_TIMEOUT:g})",
    )
    serve.add_argument(
        "--max-connections",
        type=_positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="open connections per worker; when full, the one waiting longest for its request,"
        " from the client address holding the most, is closed to make room (default:"
        f" {DEFAULT_MAX_CONNECTIONS}, about 330 KiB each)",
    )
    serve.add_argument(
        "--grace-period",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM, how long requests in flight may take to finish (default: 10)",
    )
    view = serve.add_argument_group("cluster view (bundles with clusterView: required)")
    view.add_argument(
        "--cluster-view",
        choices=("auto", "off"),
        default="auto",
        help="auto (default): watch ApprovalRequests, ApprovalDecisions and ApprovalUses, and"
        " the agents platform's Schedules, OrchestrationRuns, Orchestrations, Swarms,"
        " ImplementationSpecs and Agents, in all namespaces once the bundle requires it, and"
        " stay unready until they are listed;"
        " off: never, so where the bundle requires the view, CREATEs judged by records,"
        " ApprovalDecision CREATEs and removals of the approval-use finalizer are denied"
        " (reason cluster-view-unavailable)",
    )
    view.add_argument(
        "--kubeconfig",
        metavar="FILE",
        type=Path,
        help="credentials for the view and the --bundle-floor (default: the pod's service"
        " account when KUBERNETES_SERVICE_HOST is set, else $KUBECONFIG or ~/.kube/config)",
    )
    view.add_argument("--context", metavar="NAME", help="the kubeconfig context to use")
    view.add_argument(
        "--view-max-age",
        type=_positive_float,
        default=DEFAULT_VIEW_MAX_AGE,
        metavar="SECONDS",
        help="longest a watch may go without hearing from the API server before what needs"
        f" the view is denied (default: {DEFAULT_VIEW_MAX_AGE:g})",
    )
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")


def run(args: argparse.Namespace) -> int:
    import asyncio

    from approvalgate.approvals.errors import UsageError
    from approvalgate.webhook import logs
    from approvalgate.webhook.config import ServeConfig
    from approvalgate.webhook.server import run_worker, supervise

    if args.dev and (args.tls_cert or args.tls_key):
        raise UsageError("--dev makes its own certificate: drop --tls-cert/--tls-key")
    if not args.dev and not (args.tls_cert and args.tls_key):
        raise UsageError(
            "HTTPS needs --tls-cert FILE and --tls-key FILE",
            advice="or try it locally with --dev (a throwaway self-signed certificate)",
        )
    if args.dev_ca_out and not args.dev:
        raise UsageError("--dev-ca-out only goes with --dev")
    if args.cluster_view == "off" and (args.kubeconfig or args.context) and not args.bundle_floor:
        raise UsageError(
            "--kubeconfig and --context are for the cluster view and --bundle-floor, and"
            " --cluster-view is off without --bundle-floor",
            advice="drop them, use --cluster-view auto, or pass --bundle-floor NAMESPACE/NAME",
        )
    if args.workers > 1 and args.port == 0:
        raise UsageError("--workers needs a fixed --port: each worker would pick its own port")
    trust = trust_args(args)
    logs.configure(args.log_level)
    with _tls_files(args) as (cert, key):
        config = ServeConfig(
            bundle=args.bundle,
            tls_cert=cert,
            tls_key=key,
            host=args.host or ("127.0.0.1" if args.dev else "0.0.0.0"),  # noqa: S104
            port=args.port,
            metrics_port=args.metrics_port,
            workers=args.workers,
            max_body_bytes=args.max_body_bytes,
            reload_interval=args.reload_interval,
            read_timeout=args.read_timeout,
            idle_timeout=args.idle_timeout,
            max_connections=args.max_connections,
            grace_period=args.grace_period,
            log_level=args.log_level,
            cluster_view=args.cluster_view,
            kubeconfig=args.kubeconfig,
            context=args.context,
            view_max_age=args.view_max_age,
            **trust.flags(args.bundle_signatures),
        )
        if config.workers == 1:
            return asyncio.run(run_worker(config))
        return asyncio.run(supervise(config))


@contextlib.contextmanager
def _tls_files(args: argparse.Namespace) -> Iterator[tuple[Path, Path]]:
    """The certificate and key paths; with --dev, made now and removed on exit.

    Python's ssl module loads certificates only from files, so the --dev pair is written to
    a private temporary folder (mode 0700, key 0600) that lives as long as the server.
    """
    if not args.dev:
        yield args.tls_cert, args.tls_key
        return
    from approvalgate.webhook.devcert import DEV_HOSTS, CertificateAuthority

    authority = CertificateAuthority.generate()
    issued = authority.issue(DEV_HOSTS)
    _print_dev_ca(authority.cert_pem, authority.ca_bundle, args)
    with tempfile.TemporaryDirectory(prefix="approvalgate-dev-") as folder:
        cert, key = Path(folder, "tls.crt"), Path(folder, "tls.key")
        cert.write_bytes(issued.cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(issued.key_pem)
        yield cert, key


def _print_dev_ca(pem: bytes, ca_bundle: str, args: argparse.Namespace) -> None:
    if args.dev_ca_out:
        args.dev_ca_out.write_bytes(pem)
    host = args.host or "127.0.0.1"
    ca_file = str(args.dev_ca_out) if args.dev_ca_out else "ca.pem"
    print("# approvalgate --dev: a throwaway CA made in memory for this run (not for production)")
    print(f"# trust it with `curl --cacert {ca_file}` (the PEM below) or as a caBundle")
    print(pem.decode("ascii"), end="")
    print(f"# caBundle: {ca_bundle}")
    print(f"# curl --cacert {ca_file} https://{host}:{args.port}/readyz")
    sys.stdout.flush()


def _port(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0-65535)")
    return value


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of seconds")
    return value
