"""One audit from start to end: read what git says, read the cluster, compare, report."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from approvalgate.approvals import content, parents, records
from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.bundle_floor import check_floor, read_floor
from approvalgate.approvals.bundle_trust import (
    INVALID,
    SIGNATURES_FILE,
    BundleRefused,
    BundleTrust,
    open_bundle,
)
from approvalgate.approvals.errors import BundleError, InputError, UsageError
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.policy import ALL, OPT_IN_LABEL, POLICY_API
from approvalgate.approvals.view import DECISIONS, OFFLINE, REQUESTS, USES, ClusterView, StaticView
from approvalgate.approvals.view import GROUP as GATES_GROUP
from approvalgate.approvals.view import VERSION as GATES_VERSION
from approvalgate.audit import guard, policies, rbac, reports, runs, webhook, workloads
from approvalgate.audit.cluster import RBAC_HINT, Cluster, ClusterError
from approvalgate.audit.findings import AuditResult, Finding, ReportWrite, RunResult

AGENTRUN_VERSION: Final = "v1alpha1"
POLICY_GROUP, _, POLICY_VERSION = POLICY_API.partition("/")
MAX_INPUT_BYTES: Final = 8 * 1024 * 1024


@dataclass(frozen=True)
class Options:
    now: datetime
    bundle: Path | None = None
    repo: Path | None = None
    env: str | None = None
    namespaces: tuple[str, ...] = ()
    webhook_manifest: Path | None = None
    webhook_name: str = webhook.DEFAULT_RELEASE
    bundle_configmap: str | None = None
    expect_generation: str | None = None
    write_reports: bool = False
    report_name: str = reports.REPORT_NAME
    bundle_floor: str = ""
    """``NAMESPACE/NAME`` of the bundle revision floor (--bundle-floor): who may lower it."""
    floor_writer: str = ""
    """The floor's one writer (the controller's username): it may update it."""
    trust: BundleTrust | None = None
    """The pinned bundle-signing keys (--bundle-key): a bundle they refuse is a finding. None:
    signatures are not checked (said in a note where a bundle ConfigMap is audited)."""


@dataclass
class Expectations:
    """What git (or the chart) says the cluster should hold."""

    bundle: Bundle
    bundle_object: dict[str, Any]
    source: str
    compiled_policies: list[dict[str, Any]] | None = None
    policies_source: str = ""
    webhook: dict[str, Any] | None = None
    webhook_source: str = ""
    workloads: list[dict[str, Any]] | None = None
    """The chart's Deployments, CronJobs and Services in --webhook-manifest (None: not given)."""
    guard: list[dict[str, Any]] = field(default_factory=list)
    """The chart's guard policies and bindings in the --webhook-manifest render."""
    refused: BundleRefused | None = None
    """Why the pinned keys refuse the --bundle file (its bundle.sig.json beside it)."""


# --- inputs -------------------------------------------------------------------------------


def _read(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"{path} is larger than {MAX_INPUT_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8: {exc}") from exc


def _policy_objects(text: str, source: str) -> list[dict[str, Any]]:
    return [
        dict(d.obj) for d in load_manifests(text, source) if d.obj.get("kind") == "ApprovalPolicy"
    ]


def load_expectations(
    options: Options, compile_env: Callable[[Path, str], Mapping[str, str]] | None = None
) -> Expectations:
    """The bundle, the compiled ApprovalPolicies when known, and the expected webhook.

    With ``--repo DIR --env ENV`` the caller (the CLI) passes ``compile_env``, which compiles
    one environment in memory into ``{relative path: text}``: the audit sits beside the
    compiler, not above it (the distribution's layers contract).
    """
    if options.bundle is not None:
        text = _read(options.bundle)
        source = str(options.bundle)
        compiled: list[dict[str, Any]] | None = None
        policies_source = ""
        folder = options.bundle.parent / "approvalpolicies"
        if str(options.bundle) != "-" and folder.is_dir():
            compiled = []
            for path in sorted(folder.glob("*.y*ml")):
                compiled += _policy_objects(_read(path), str(path))
            policies_source = str(folder)
    elif options.repo is not None and options.env and compile_env is not None:
        files = compile_env(options.repo, options.env)
        text = files["bundle.json"]
        source = f"{options.repo} environment {options.env} (compiled in memory)"
        compiled = []
        for name in sorted(files):
            if name.startswith("approvalpolicies/"):
                compiled += _policy_objects(files[name], name)
        policies_source = f"{options.repo}, environment {options.env}"
    else:
        raise UsageError("give --bundle FILE, or --repo DIR with --env ENV")
    bundle = parse_bundle_text(text, source)
    expectations = Expectations(
        bundle, json.loads(text), source, compiled, policies_source or "the bundle"
    )
    if options.bundle is not None and str(options.bundle) != "-" and options.trust is not None:
        signatures_path = options.bundle.parent / SIGNATURES_FILE
        signatures = _read(signatures_path) if signatures_path.is_file() else None
        expectations.refused = refusal(text, signatures, options.trust, None, source)
    if options.webhook_manifest is not None:
        shown = str(options.webhook_manifest)
        docs = [d.obj for d in load_manifests(_read(options.webhook_manifest), shown)]
        expectations.webhook = webhook.pick_configuration(docs, shown)
        expectations.guard = guard.rendered_guard(docs)
        expectations.webhook_source = shown
        expectations.workloads = workloads.pick_workloads(docs)
    return expectations


# --- the audit ----------------------------------------------------------------------------


def audited_namespaces(
    bundle: Bundle, requested: Sequence[str]
) -> tuple[tuple[str, ...], list[Finding]]:
    """The namespaces to audit (``("*",)``: all, the default) and notes about requested ones.

    Every namespace is listed unless some are requested: runs in a namespace the bundle does
    not enforce are findings (:func:`unenforced_namespaces`), so they must be seen too.
    """
    notes: list[Finding] = []
    for namespace in sorted(set(requested) & bundle.exclude_namespaces):
        notes.append(
            Finding(
                "cluster",
                "note",
                f"Namespace/{namespace}",
                f"namespace {namespace} is excluded by name in environment "
                f"{bundle.environment}: the webhook admits its AgentRuns without a decision",
                "remove it from excludeNamespaces in approvalgate.yaml unless that is wanted",
            )
        )
    return (tuple(sorted(set(requested))) or (ALL,)), notes


def unenforced_namespaces(
    run_objects: Sequence[Mapping[str, Any]],
    bundle: Bundle,
    labels: Mapping[str, Mapping[str, str]] | None = None,
) -> list[Finding]:
    """A finding for every namespace holding AgentRuns that the gate does not enforce.

    Excluded by name in the bundle, or (``namespaceSelection: optInLabel``, with the
    namespaces' ``labels`` known) missing the opt-in label. ``labels`` None in label mode:
    the labels could not be read, said by one note.
    """
    held: dict[str, int] = {}
    for obj in run_objects:
        namespace = str((obj.get("metadata") or {}).get("namespace") or "")
        held[namespace] = held.get(namespace, 0) + 1
    out: list[Finding] = []
    label_mode = bundle.namespace_selection == "optInLabel"
    for namespace, count in sorted(held.items()):
        runs_there = f"{count} AgentRun{'s' if count != 1 else ''}"
        if not bundle.enforces(namespace):
            why = f"is excluded by name in environment {bundle.environment} (excludeNamespaces)"
            advice = "remove it from excludeNamespaces in approvalgate.yaml, recompile and deploy"
        elif (
            label_mode
            and labels is not None
            and (labels.get(namespace, {}).get(OPT_IN_LABEL) != "true")
        ):
            why = (
                f"lacks the label {OPT_IN_LABEL}=true that namespaceSelection: optInLabel "
                "needs (whoever may label namespaces can turn enforcement off)"
            )
            advice = (
                f"label it (`kubectl label namespace {namespace} {OPT_IN_LABEL}=true`), or "
                "use namespaceSelection: all with excludeNamespaces"
            )
        else:
            continue
        out.append(
            Finding(
                "cluster",
                "finding",
                f"Namespace/{namespace}",
                f"namespace {namespace} holds {runs_there} but {why}: the webhook admits "
                "its AgentRuns without any approval check",
                advice,
            )
        )
    if label_mode and labels is None and held:
        out.append(
            Finding(
                "cluster",
                "note",
                "Namespace",
                "namespaceSelection is optInLabel but the namespaces' labels could not be "
                "read: namespaces without the opt-in label were not looked for",
                "grant the audit `list namespaces` to check them",
            )
        )
    return out


def run_audit(cluster: Cluster, options: Options, expectations: Expectations) -> AuditResult:
    bundle = expectations.bundle
    namespaces, notes = audited_namespaces(bundle, options.namespaces)
    identity = cluster.identity()
    result = AuditResult(
        environment=bundle.environment,
        generation=bundle.generation,
        now=records.format_time(options.now),
        server=cluster.server + (f" as {identity}" if identity else ""),
        namespaces=namespaces,
        findings=notes,
    )
    served = cluster.served_versions(webhook.AGENTS_GROUP)
    version = served[0] if served else AGENTRUN_VERSION  # the preferred version first
    run_objects = _agent_runs(cluster, namespaces, version)
    enforced = [
        o for o in run_objects if bundle.enforces(str((o.get("metadata") or {}).get("namespace")))
    ]
    holding = {str((o.get("metadata") or {}).get("namespace")) for o in enforced}
    result.findings += _audit_webhook(cluster, options, expectations, served, holding)
    result.findings += _audit_workloads(cluster, options, expectations)
    result.findings += _audit_bundle(cluster, options, expectations)
    result.findings += _audit_policies(cluster, namespaces, expectations)
    with cluster.one_reading_of_rbac():
        result.findings += _audit_rbac(
            cluster, bundle, options.bundle_configmap or "", releases(options, expectations)
        )
        if options.bundle_floor:
            result.findings += _audit_floor(cluster, options, expectations)
    labels = _namespace_labels(cluster) if bundle.namespace_selection == "optInLabel" else None
    result.findings += unenforced_namespaces(run_objects, bundle, labels)
    view, view_notes = _cluster_view(cluster, bundle)
    result.findings += view_notes
    result.runs = runs.audit_runs(enforced, bundle, options.now, view)
    if options.write_reports:
        result.reports, skipped = _write_reports(cluster, options, namespaces, result.runs, bundle)
        result.findings += skipped
    return result


def _audit_webhook(
    cluster: Cluster,
    options: Options,
    exp: Expectations,
    served: list[str] | None,
    holding: set[str],
) -> list[Finding]:
    """``holding``: the enforced namespaces that hold AgentRuns (named when drift skips them)."""
    out: list[Finding] = []
    expected = exp.webhook
    name = str(expected["metadata"]["name"]) if expected is not None else options.webhook_name
    live = cluster.webhook_configuration(name)
    if expected is None:
        namespace = webhook.DEFAULT_NAMESPACE
        for entry in (live or {}).get("webhooks") or []:
            service = (entry.get("clientConfig") or {}).get("service") or {}
            if entry.get("name") == webhook.WEBHOOK_ENTRY and service.get("namespace"):
                namespace = str(service["namespace"])
        expected = webhook.chart_defaults(
            name,
            namespace,
            # with pinned keys the chart sends every namespace (Helm cannot check a signature)
            exclude=()
            if options.trust and options.trust.signed
            else sorted(exp.bundle.exclude_namespaces),
            opt_in=exp.bundle.namespace_selection == "optInLabel",
        )
        out.append(
            Finding(
                "webhook",
                "note",
                f"ValidatingWebhookConfiguration/{name}",
                f"compared with what the chart renders with its default values (release {name} "
                f"in namespace {namespace}, taken from the live configuration)",
                "pass --webhook-manifest with the output of `helm template` for your values to "
                "compare with them, endpoint included",
            )
        )
    if served is None:
        out.append(
            Finding(
                "webhook",
                "note",
                f"ValidatingWebhookConfiguration/{name}",
                f"the API server serves no {webhook.AGENTS_GROUP} API (is the AgentRun CRD "
                "installed?): rule versions were checked without knowing the served versions",
            )
        )
    out += webhook.compare_webhook(
        expected,
        live,
        served_versions=served,
        enforced_namespaces=holding,
    )
    out += guard.audit_guard(
        cluster.get_cluster_scoped,
        name,
        exp.bundle.namespace_selection == "optInLabel",
        exp.guard,
    )
    return out


def _admission_services(exp: Expectations) -> set[tuple[str, str]]:
    """(namespace, name) of each Service the expected webhook configuration sends to."""
    admission = set()
    for entry in (exp.webhook or {}).get("webhooks") or []:
        service = (entry.get("clientConfig") or {}).get("service") or {}
        admission.add((str(service.get("namespace") or ""), str(service.get("name") or "")))
    return admission


def _default_namespace(exp: Expectations) -> str:
    """Where a rendered object with no namespace lives: the namespace the webhook
    configuration sends to (the release's), else the chart's default."""
    return next(iter(sorted(_admission_services(exp))), ("", ""))[0] or webhook.DEFAULT_NAMESPACE


def releases(options: Options, exp: Expectations) -> list[rbac.Release]:
    """The gate's objects per namespace as --webhook-manifest renders them (its Deployments,
    Services, CronJob and the ConfigMaps they mount), for who may change them (rbac); none
    without one. The --bundle-configmap is named as a switch already: not again here."""
    bundle_ns, _, bundle_name = (options.bundle_configmap or "").partition("/")
    found: dict[str, dict[str, set[str]]] = {}
    for obj in exp.workloads or []:
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or _default_namespace(exp))
        kinds = found.setdefault(namespace, {})
        kinds.setdefault(str(obj["kind"]), set()).add(str(meta["name"]))
        maps = kinds.setdefault("ConfigMap", set())
        maps.update(workloads.mounted_config_maps(obj))
        if namespace == bundle_ns:
            maps.discard(bundle_name)
    return [
        rbac.Release(
            namespace,
            tuple(sorted(kinds.get("Deployment", ()))),
            tuple(sorted(kinds.get("Service", ()))),
            tuple(sorted(kinds.get("CronJob", ()))),
            tuple(sorted(kinds.get("ConfigMap", ()))),
        )
        for namespace, kinds in sorted(found.items())
    ]


def _audit_workloads(cluster: Cluster, options: Options, exp: Expectations) -> list[Finding]:
    """The gate's Deployments, audit CronJob and Services against the chart's rendering in
    --webhook-manifest (audit/workloads.py); without one, a note says they were not compared."""
    rendered = exp.workloads
    if not rendered:
        name = (exp.webhook or {}).get("metadata", {}).get("name") or options.webhook_name
        return [
            Finding(
                workloads.AREA,
                "note",
                f"Deployment/{name}",
                "the gate's Deployments and Service were not compared with the chart"
                + (
                    f" ({exp.webhook_source} holds none)"
                    if exp.webhook_source
                    else " (no --webhook-manifest)"
                ),
                "pass --webhook-manifest with the whole output of `helm template RELEASE "
                "charts/approvalgate -n NAMESPACE -f rendered/ENV/approvalgate-values.yaml` "
                "(the chart is in the repo): an env entry, a volume or a container added to "
                "them outlives every server-side apply sync",
            )
        ]
    # the Service the webhook configuration sends to, and the one named as it (the chart's)
    config = str((exp.webhook or {}).get("metadata", {}).get("name") or options.webhook_name)
    admission = _admission_services(exp)
    default_ns = _default_namespace(exp)
    out: list[Finding] = []
    live_objects: dict[tuple[str, str, str], dict[str, Any] | None] = {}
    for obj in rendered:
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or default_ns)
        kind, name = str(obj["kind"]), str(meta["name"])
        try:
            live = cluster.workload(kind, namespace, name)
        except ClusterError as exc:
            if exc.status != 403:
                raise
            out.append(
                Finding(
                    workloads.AREA,
                    "finding",
                    workloads.subject(obj, namespace),
                    f"cannot compare it with the chart ({exc.message})",
                    f"grant the audit's identity get on {kind.lower()}s named {name} in "
                    f"{namespace} (the chart's audit-workloads-role.yaml grants exactly the "
                    "objects it embeds)",
                )
            )
            continue
        live_objects[(kind, namespace, name)] = live
        if kind == "Service":
            out += workloads.compare_service(
                obj,
                live,
                admission=(namespace, name) in admission or name == config,
                namespace=namespace,
            )
        else:
            out += workloads.compare_workload(obj, live, namespace)
    compared: set[str] = set()
    for (kind, namespace, name), live in live_objects.items():
        if (
            kind == "Service"
            and live is not None
            and (namespace, name) in admission | {(namespace, config)}
        ):
            found, deployment = _audit_admission_pods(
                cluster, rendered, live_objects, live, namespace
            )
            out += found
            compared.add(deployment)
    for obj in rendered:  # the other Deployments' pods (the controller's): its identity
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or default_ns)
        key = ("Deployment", namespace, str(meta.get("name")))
        if obj["kind"] == "Deployment" and key[2] not in compared and live_objects.get(key):
            out += _audit_deployment_pods(cluster, obj, live_objects.get(key), namespace)
    return out


def _rolling_note(subject: str, live: Mapping[str, Any] | None) -> list[Finding]:
    """Pods are compared even while their Deployment rolls out (a rollout held forever by a
    placement change, a note, must not hide a pod made by hand): this says why the previous
    template's pods differ until it ends."""
    if not workloads.rolling(live):
        return []
    return [
        Finding(
            workloads.AREA,
            "note",
            subject,
            f"{subject}: the Deployment is rolling out: the pods of its previous template "
            "differ from the chart's until the rollout ends",
            "run the audit again once the rollout is done; a pod that still differs then "
            "was not made from the chart",
        )
    ]


def _audit_deployment_pods(
    cluster: Cluster, expected: dict[str, Any], live: Mapping[str, Any] | None, namespace: str
) -> list[Finding]:
    subject = workloads.subject(expected, namespace)
    try:
        pods = cluster.pods(namespace)
    except ClusterError as exc:
        if exc.status != 403:
            raise
        return [
            Finding(
                workloads.AREA,
                "finding",
                subject,
                f"{subject}: cannot tell which pods run as it ({exc.message})",
                f"grant the audit's identity list on pods in {namespace} (the chart's "
                "audit-workloads-role.yaml grants it)",
            )
        ]
    return _rolling_note(subject, live) + workloads.compare_pods(expected, None, pods, namespace)


def _audit_admission_pods(
    cluster: Cluster,
    rendered: list[dict[str, Any]],
    live_objects: Mapping[tuple[str, str, str], dict[str, Any] | None],
    service: dict[str, Any],
    namespace: str,
) -> tuple[list[Finding], str]:
    """The pods the webhook's live Service selects, each against the chart's webhook pod
    template (the rendered Deployment whose pods the rendered Service selects), and the
    addresses the Service routes to; and that Deployment's name."""
    name = str(service["metadata"]["name"])
    want = next(
        (o for o in rendered if o["kind"] == "Service" and o["metadata"]["name"] == name), {}
    )
    selector = (want.get("spec") or {}).get("selector")
    deployments = [
        o
        for o in rendered
        if o["kind"] == "Deployment"
        and workloads.selects(
            selector, ((o["spec"].get("template") or {}).get("metadata") or {}).get("labels")
        )
    ]
    if len(deployments) != 1:
        return [], ""
    deployment = deployments[0]
    subject = f"Service/{namespace}/{name}"
    deployment_name = str(deployment["metadata"]["name"])
    out = _rolling_note(
        workloads.subject(deployment, namespace),
        live_objects.get(("Deployment", namespace, deployment_name)),
    )
    try:
        pods = cluster.pods(namespace)
        slices, endpoints = cluster.routes(namespace, name)
    except ClusterError as exc:
        if exc.status != 403:
            raise
        return [
            *out,
            Finding(
                workloads.AREA,
                "finding",
                subject,
                f"{subject}: cannot tell which pods answer admission requests ({exc.message})",
                f"grant the audit's identity list on pods and endpointslices, and get on the "
                f"endpoints {name}, in {namespace} (the chart's audit-workloads-role.yaml "
                "grants them)",
            ),
        ], deployment_name
    return (
        out
        + workloads.compare_pods(deployment, service, pods, namespace)
        + workloads.compare_routes(service, pods, slices, endpoints, namespace)
    ), deployment_name


def refusal(
    text: str, signatures: str | None, trust: BundleTrust, in_force: Bundle | None, source: str
) -> BundleRefused | None:
    """Why the webhook and the controller would refuse this bundle (None: they enforce it)."""
    try:
        open_bundle(text.encode("utf-8"), signatures, trust, in_force=in_force, source=source)
    except BundleRefused as exc:
        return exc
    return None


REDEPLOY: Final = (
    "deploy the signed bundle again: sync the Argo CD application or `helm upgrade` with the"
    " compiled approvalgate-values.yaml (signed with `approvalgate compile --sign REF`)"
)


def _refused_finding(subject: str, refused: BundleRefused, config_map: str = "") -> Finding:
    if config_map:
        namespace, _, name = config_map.partition("/")
        advice = (
            f"find who changed it (`kubectl get configmap -n {namespace} {name} "
            "--show-managed-fields`, the API server's audit log), allow only the chart's "
            f"deployer to edit it, and {REDEPLOY}"
        )
    else:
        advice = (
            "if this is the bundle ConfigMap the chart mounts (the audit CronJob), find who "
            f"changed it and allow only the chart's deployer to edit it; {REDEPLOY}"
        )
    return Finding(
        "bundle",
        "finding",
        subject,
        f"the pinned bundle-signing keys refuse the bundle in {subject} ({refused.reason}: "
        f"{refused.message}): the webhook and the controller keep their last good bundle, or, "
        "with none (a restarted pod), are not ready and deny every AgentRun",
        advice,
    )


def _audit_bundle(cluster: Cluster, options: Options, exp: Expectations) -> list[Finding]:
    out: list[Finding] = []
    generation = exp.bundle.generation
    if exp.refused is not None:
        out.append(_refused_finding(exp.source, exp.refused))
    if options.expect_generation and options.expect_generation != generation:
        out.append(
            Finding(
                "bundle",
                "finding",
                exp.source,
                f"the bundle has generation {generation}, not {options.expect_generation} as "
                "rendered with the chart: the webhook's bundle ConfigMap was changed outside "
                "the chart",
                "re-deploy the chart (or sync its Argo CD application) with the compiled "
                "approvalgate-values.yaml, and restrict who may edit that ConfigMap",
            )
        )
    if options.bundle_configmap:
        namespace, _, name = options.bundle_configmap.partition("/")
        subject = f"ConfigMap/{namespace}/{name}"
        live = cluster.config_map(namespace, name)
        content = ((live or {}).get("data") or {}).get("bundle.json")
        if content is None:
            out.append(
                Finding(
                    "bundle",
                    "note",
                    subject,
                    f"{subject} or its bundle.json does not exist: the webhook has no bundle "
                    "and denies every AgentRun (fail closed)",
                    "deploy the chart with the compiled approvalgate-values.yaml",
                )
            )
            return out
        if options.trust is None:
            out.append(
                Finding(
                    "bundle",
                    "note",
                    subject,
                    f"the signatures of {subject} were not checked: no bundle-signing key was "
                    "given",
                    "pass the keys the chart pins (bundleSigning.publicKeys) with --bundle-key",
                )
            )
        elif options.trust.signed:
            signatures = ((live or {}).get("data") or {}).get(SIGNATURES_FILE)
            refused = refusal(content, signatures, options.trust, exp.bundle, subject)
            if refused is not None and refused.reason != INVALID:
                out.append(_refused_finding(subject, refused, options.bundle_configmap))
                return out
        try:
            live_generation = parse_bundle_text(content, subject).generation
        except BundleError as exc:
            out.append(
                Finding(
                    "bundle",
                    "note",
                    subject,
                    f"the webhook's bundle is unusable ({exc.message}): the webhook keeps its "
                    "last good bundle, or denies everything (fail closed)",
                    "deploy the chart with the compiled approvalgate-values.yaml",
                )
            )
            return out
        if live_generation != generation:
            out.append(
                Finding(
                    "bundle",
                    "finding",
                    subject,
                    f"the webhook enforces bundle generation {live_generation}, not "
                    f"{generation} ({exp.source}): it decides by rules that are not these",
                    "deploy the chart with this environment's approvalgate-values.yaml (or sync "
                    "its Argo CD application); if git is behind, compile and commit first",
                )
            )
    return out


def _in_scope(namespaces: Sequence[str], expected: Sequence[str]) -> Callable[[str], bool]:
    if namespaces == (ALL,):
        return lambda _ns: True
    known = set(namespaces) | set(expected)
    return lambda ns: ns in known


def _audit_policies(
    cluster: Cluster, namespaces: tuple[str, ...], exp: Expectations
) -> list[Finding]:
    live = cluster.list_objects(POLICY_GROUP, POLICY_VERSION, "approvalpolicies")
    if exp.compiled_policies is not None:
        expected_ns = [
            str((p.get("metadata") or {}).get("namespace") or "") for p in exp.compiled_policies
        ]
        return policies.compare_with_compiled(
            live, exp.compiled_policies, _in_scope(namespaces, expected_ns), exp.policies_source
        )
    expected_ns = [str(p.get("namespace") or "") for p in exp.bundle_object.get("policies") or []]
    found = policies.compare_with_bundle(
        live, exp.bundle_object, _in_scope(namespaces, expected_ns), exp.policies_source
    )
    return [
        Finding(
            "policies",
            "note",
            "ApprovalPolicies",
            "compared by meaning with the bundle (each live policy compiled again with the "
            "bundle's approvers); exact spec differences that compile the same are not shown",
            "audit with --repo DIR --env ENV, or a bundle.json inside its rendered/ENV folder, "
            "to compare the specs exactly",
        ),
        *found,
    ]


def _namespace_labels(cluster: Cluster) -> dict[str, dict[str, str]] | None:
    """Every namespace's labels (label mode only), None when they cannot be listed."""
    try:
        listed = cluster.list_objects("", "v1", "namespaces")
    except ClusterError:
        return None
    return {
        str((n.get("metadata") or {}).get("name")): dict(
            (n.get("metadata") or {}).get("labels") or {}
        )
        for n in listed
    }


def _audit_rbac(
    cluster: Cluster,
    bundle: Bundle,
    bundle_configmap: str = "",
    releases: Sequence[rbac.Release] = (),
) -> list[Finding]:
    """Whether the roles requesters hold can switch the gate off, who else may, who may
    change what the gate runs in its release namespace(s) (``releases``), and who can act
    as the bundle's trusted ServiceAccounts; a permission the audit lacks is a finding (it
    could not tell), not a crash."""
    label_mode = bundle.namespace_selection == "optInLabel"
    try:
        holders = rbac.audit_holder_roles(cluster.list_rbac("clusterroles"), label_mode=label_mode)
    except ClusterError as exc:
        if exc.status != 403:
            raise
        holders = [
            Finding(
                rbac.AREA,
                "finding",
                "RBAC",
                f"cannot tell whether the edit and admin roles can switch the gate off "
                f"({exc.message})",
                f"{RBAC_HINT} (list on clusterroles)",
            )
        ]
    return holders + _audit_trusted_rbac(cluster, bundle, label_mode, bundle_configmap, releases)


def _audit_floor(cluster: Cluster, options: Options, exp: Expectations) -> list[Finding]:
    """The mounted bundle against the bundle revision floor, and who may lower the floor
    (rbac.audit_floor_writers)."""
    namespace, _, name = options.bundle_floor.partition("/")
    return _mounted_below_floor(cluster, options, exp) + _floor_writers(
        cluster, options, namespace, name
    )


def _mounted_below_floor(cluster: Cluster, options: Options, exp: Expectations) -> list[Finding]:
    """A finding when the pods would refuse the mounted bundle (--bundle FILE, accepted by
    the pinned keys) as below the floor: the compiled values put an older one back."""
    opened = options.bundle is not None and str(options.bundle) != "-"
    if not (opened and options.trust is not None and options.trust.signed) or exp.refused:
        return []  # unsigned mode has no floor; a refused bundle is a finding already
    namespace, _, name = options.bundle_floor.partition("/")
    where = f"ConfigMap/{namespace}/{name}"
    try:
        live = cluster.config_map(namespace, name)
        floor = read_floor(_config_map_data(live), exp.bundle.environment, where)
        check_floor(exp.bundle, floor, exp.source, where)
    except ClusterError as exc:
        if exc.status != 403:
            raise
        return [
            Finding(
                "bundle",
                "finding",
                where,
                f"cannot compare the mounted bundle with the revision floor ({exc.message})",
                f"{RBAC_HINT} (get on configmaps named {name} in {namespace}; the chart's "
                "audit Role grants it)",
            )
        ]
    except BundleRefused as refused:
        return [
            Finding(
                "bundle",
                "finding",
                exp.source,
                f"the webhook and the controller refuse the bundle in {exp.source} "
                f"({refused.reason}: {refused.message}): they keep their last good bundle, "
                "or, with none (a restarted pod), are not ready and deny every AgentRun",
                refused.advice,
            )
        ]
    return []


def _config_map_data(obj: Mapping[str, Any] | None) -> dict[str, str] | None:
    if obj is None:
        return None
    data = obj.get("data") or {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, Mapping) else {}


def _floor_writers(cluster: Cluster, options: Options, namespace: str, name: str) -> list[Finding]:
    # every namespace: who may act as the writer, or as someone who may, may lower the floor
    try:
        listed = {plural: cluster.list_rbac(plural) for plural in RBAC_PLURALS}
    except ClusterError as exc:
        if exc.status != 403:
            raise
        return [
            Finding(
                rbac.AREA,
                "finding",
                f"ConfigMap/{options.bundle_floor}",
                f"cannot tell who may lower the bundle revision floor ({exc.message})",
                f"{RBAC_HINT} (list on roles, rolebindings, clusterroles, clusterrolebindings)",
            )
        ]
    return rbac.audit_floor_writers(
        namespace,
        name,
        options.floor_writer,
        roles=listed["roles"],
        cluster_roles=listed["clusterroles"],
        role_bindings=listed["rolebindings"],
        cluster_role_bindings=listed["clusterrolebindings"],
    )


RBAC_PLURALS: Final = ("clusterroles", "clusterrolebindings", "roles", "rolebindings")


def _audit_trusted_rbac(
    cluster: Cluster,
    bundle: Bundle,
    label_mode: bool,
    bundle_configmap: str,
    releases: Sequence[rbac.Release] = (),
) -> list[Finding]:
    found = rbac.targets(bundle)
    # every namespace: a chain (who may act as someone who may act as it) passes through any
    try:
        listed = {plural: cluster.list_rbac(plural) for plural in RBAC_PLURALS}
    except ClusterError as exc:
        if exc.status != 403:
            raise
        return [
            Finding(
                rbac.AREA,
                "finding",
                "RBAC",
                f"cannot tell who can act as the trusted ServiceAccounts ({exc.message}): "
                "impersonating one, minting its token or running a pod as it admits runs "
                "without approvals",
                f"{RBAC_HINT} (list on roles, rolebindings, clusterroles, clusterrolebindings)",
            )
        ]
    objects = {
        "roles": listed["roles"],
        "cluster_roles": listed["clusterroles"],
        "role_bindings": listed["rolebindings"],
        "cluster_role_bindings": listed["clusterrolebindings"],
    }
    acting = rbac.audit_rbac(found, **objects) if found else []
    changers = [f for r in releases for f in rbac.audit_release_holders(**objects, release=r)]
    return (
        acting
        + rbac.audit_switch_holders(
            **objects, label_mode=label_mode, bundle_configmap=bundle_configmap
        )
        + changers
    )


def _cluster_view(cluster: Cluster, bundle: Bundle) -> tuple[ClusterView, list[Finding]]:
    """The queue's objects as one listed view (decisions, uses, requests): the audit judges
    stored runs with what the webhook's watch-fed view holds. OFFLINE, with a note, when the
    bundle does not require the view or the objects cannot be read."""
    if not bundle.needs_view:
        return OFFLINE, []
    try:
        listed = {
            plural: cluster.list_objects(GATES_GROUP, GATES_VERSION, plural)
            for plural in (REQUESTS, DECISIONS, USES)
        }
    except ClusterError as exc:
        return OFFLINE, [
            Finding(
                "runs",
                "note",
                f"{GATES_GROUP} objects",
                "the approval queue's objects (ApprovalRequests, ApprovalDecisions, "
                f"ApprovalUses) could not be read: {exc.message}; runs were judged without "
                "them (rejections and withdrawals recorded in the cluster and uses of "
                "approvals not checked)",
                "install the chart's CRDs, or grant this identity get/list on "
                f"{GATES_GROUP} (the chart's viewer ClusterRole)",
            )
        ]
    objects, notes = _platform_objects(cluster)
    view = StaticView.build(
        requests=listed[REQUESTS], decisions=listed[DECISIONS], uses=listed[USES], objects=objects
    )
    return view, notes


def _platform_objects(cluster: Cluster) -> tuple[list[dict[str, Any]], list[Finding]]:
    """Parents (Schedules, OrchestrationRuns, Orchestrations, Swarms) and referenced content
    (ImplementationSpecs, Agents, AgentProviders): what runs the platform made derive from,
    and what runs execute. A kind that cannot be read is a note (its runs then fail, as the
    webhook's)."""
    kinds = [
        *((k.group, k.version, k.resource) for k in parents.KINDS.values()),
        (
            parents.ORCHESTRATION.group,
            parents.ORCHESTRATION.version,
            parents.ORCHESTRATION.resource,
        ),
        *((content.GROUP, "v1alpha1", plural) for plural in content.RESOURCES),
    ]
    found: list[dict[str, Any]] = []
    missing: list[str] = []
    for group, version, plural in kinds:
        try:
            found += cluster.list_objects(group, version, plural)
        except ClusterError:
            missing.append(f"{plural}.{group}")
    if not missing:
        return found, []
    return found, [
        Finding(
            "runs",
            "note",
            "platform objects",
            f"{', '.join(missing)} could not be read: runs the platform made from parents, and "
            "approvals binding referenced content, were judged without them",
            "install the agents platform's CRDs, or grant this identity get/list on them "
            "(the chart's audit ClusterRole)",
        )
    ]


def _agent_runs(
    cluster: Cluster, namespaces: tuple[str, ...], version: str
) -> list[dict[str, Any]]:
    group = webhook.AGENTS_GROUP
    if namespaces == (ALL,):
        return cluster.list_objects(group, version, "agentruns")
    found: list[dict[str, Any]] = []
    for namespace in namespaces:
        found += cluster.list_objects(group, version, "agentruns", namespace)
    return found


def _write_reports(
    cluster: Cluster,
    options: Options,
    namespaces: tuple[str, ...],
    results: Sequence[RunResult],
    bundle: Bundle,
) -> tuple[list[ReportWrite], list[Finding]]:
    """Apply one PolicyReport per namespace (an empty one where no run is left)."""
    by_namespace: dict[str, list[RunResult]] = {ns: [] for ns in namespaces if ns != ALL}
    for run in results:
        by_namespace.setdefault(run.namespace, []).append(run)
    writes: list[ReportWrite] = []
    skipped: list[Finding] = []
    for namespace, found in sorted(by_namespace.items()):
        report = reports.policy_report(
            namespace,
            found,
            now=options.now,
            environment=bundle.environment,
            generation=bundle.generation,
            name=options.report_name,
        )
        try:
            cluster.apply(report, reports.REPORT_PLURAL)
        except ClusterError as exc:
            # A namespace with runs exists, so a 404 there means no PolicyReport CRD.
            if found or "HTTP 404" not in exc.message:
                raise
            skipped.append(
                Finding(
                    "cluster",
                    "note",
                    f"Namespace/{namespace}",
                    f"no PolicyReport written in {namespace}: {exc.message}",
                    "create the namespace, or check that the PolicyReport CRD is installed",
                )
            )
            continue
        writes.append(ReportWrite(namespace, options.report_name, len(found)))
    return writes, skipped


__all__ = [
    "Expectations",
    "Options",
    "audited_namespaces",
    "load_expectations",
    "run_audit",
]
