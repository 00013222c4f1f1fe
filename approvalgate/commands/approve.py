"""Add a signed approval record to every AgentRun in a manifest.

The record binds the run (namespace/name, or the generateName prefix), the SHA-256
digest of its spec exactly as the API server will see it, and the environment it may run
in (--env, or the environment of --bundle): a record counts only where the webhook
enforces the bundle of that environment. The record goes into the annotation
approvals.proompteng.ai/approvals next to any records already there. Other documents of
the file and all comments and formatting are kept.

Output goes to stdout unless --in-place or -o FILE; what was signed is printed on stderr.

Where the environment binds referenced content (referencedContent: bind, approvalgate.yaml's
default), the record also names the sha256 of every ImplementationSpec and Agent the run
references, and of the AgentProvider that Agent names (the runner), as the manifest itself
holds them, given with --content FILE or read from the cluster with --cluster (which
follows the Agent's spec.providerRef); the first lines of each ImplementationSpec's text
are shown on stderr: that is what you sign. A Schedule's target may be in the manifest too.

A Schedule, OrchestrationRun or Swarm (a parent) is approved for the runs it will create:
  Schedule          the run template made from its spec.targetRef (--target FILE, or read
                    from the cluster with --cluster), written on the Schedule as the
                    annotation gates.proompteng.ai/run-template
  OrchestrationRun  the AgentRun steps of its Orchestration (--orchestration FILE, or
                    --cluster)
  Swarm             one template per enabled stage (--target STAGE=FILE for each, or
                    --cluster), written as gates.proompteng.ai/run-templates
The record's subject is the parent (e.g. schedules.proompteng.ai/Schedule/agents/nightly) and
its digest the coverage of those templates; it lives at most the policies' parents.maxTTL.

examples:
  approvalgate approve run.yaml --env prod --key alice.key --approver alice --in-place
  approvalgate approve run.yaml --bundle rendered/prod/bundle.json --key bob.key \\
      --approver bob --ttl 2h -o approved.yaml
  approvalgate approve run.yaml --env prod --key root.key --approver oncall --bypass \\
      --reason "INC-42 checkout down"

--signer REF is where the private key is: a key file (`approvalgate keygen`), or a key that
never leaves a PKCS#11 token or a KMS (`approvalgate keygen NAME --import REF` writes the
Approver document from its public key):
  export APPROVALGATE_PKCS11_MODULE=/usr/lib/x86_64-linux-gnu/libykcs11.so  # PIN: asked
  approvalgate approve run.yaml --env prod --signer 'hsm:2?label=carol-yubikey' \\
      --approver carol --in-place
  approvalgate approve run.yaml --env prod --approver dave --in-place --signer \\
      gcpkms:projects/acme/locations/global/keyRings/ring/cryptoKeys/dave/cryptoKeyVersions/1
  approvalgate approve run.yaml --env prod --signer awskms:alias/approvals-erin \\
      --approver erin --public-key approvers/erin.yaml --in-place
KMS REFs (gcpkms:, awskms:, azurekms:, hv:) need the service's client library (the error
says which) and your credentials; with --public-key FILE or --bundle (the approver's one
key) the public key is not fetched from the service.
An SSH key in your ssh-agent signs too, a security key (sk-ssh-ed25519@openssh.com) included
(touch it when asked); its Approver document holds the .pub line (keygen NAME --import
KEY.pub; pip install 'approvalgate[ssh]'):
  approvalgate approve run.yaml --env prod --signer ssh-agent:~/.ssh/id_ed25519_sk.pub \\
      --approver frank --in-place
Every provider's signature is checked offline by the webhook, like a key file's
(docs/signers.md).

With --request NS/NAME the run comes from an ApprovalRequest in the cluster instead (see
`approvalgate pending`): its spec digest is checked against the run it embeds, the record
is signed here, for the request's run and environment, and filed as an ApprovalDecision
(the key never leaves this machine). `approvalgate reject` and `approvalgate withdraw`
file the other decisions the same way. --expect PIN (the pin `approvalgate status NS/NAME`
prints) signs only the request and the content you read: another request made under the
name, or content changed since, is refused and nothing is signed. On a terminal without it
the request and its content are shown and you are asked; without a terminal an approval
needs it (a reject or withdrawal does not).

In an environment whose bundle has clusterView: required (approvalgate.yaml's default) an
approval admits one run: approve gives a generateName run its name now (generateName + 5
random characters, said on stderr) and adds the finalizer gates.proompteng.ai/approval-use,
which the webhook requires there. Only --bundle tells the environment's setting; without it
the default is assumed (said on stderr): pass the bundle of an environment with
clusterView: off to leave the file as it was. With --request the referenced content is read
from the cluster: with --bundle, where it binds, an object that cannot be read is an error;
without, what can be read is bound and stderr names the rest.

examples (parents, content):
  approvalgate approve run.yaml --env prod --key alice.key --approver alice \\
      --content impl.yaml agent.yaml --in-place
  approvalgate approve schedule.yaml --target nightly-run.yaml --content impl.yaml \\
      --bundle rendered/prod/bundle.json --key alice.key --approver alice --in-place
  approvalgate approve schedule.yaml --cluster --context prod --env prod --key alice.key \\
      --approver alice --in-place
  approvalgate approve orchestrationrun.yaml --orchestration orchestration.yaml --cluster \\
      --env prod --key alice.key --approver alice --in-place
  approvalgate approve swarm.yaml --target implement=impl-run.yaml \\
      --target verify=verify-run.yaml --content impl.yaml --env prod --key alice.key \\
      --approver alice --in-place

--cluster reads the cluster when it signs: on a terminal what it read is shown whole and you
are asked; without a terminal an approval (or bypass) needs --expect PIN, the pin the same
command prints with --dry-run (which reads as signing would, prints what the records would
bind and the pin last, and signs and writes nothing). Content, a target or the file
changed since is refused and nothing is signed:
  approvalgate approve schedule.yaml --cluster --env prod --key alice.key \\
      --approver alice --dry-run                  # read it; the last line is the pin
  approvalgate approve schedule.yaml --cluster --env prod --key alice.key \\
      --approver alice --in-place --expect 3f9a0c2e71d4b865

examples (a request in the cluster):
  approvalgate status agents/nightly-report     # read it; it prints the pin
  approvalgate approve --request agents/nightly-report --expect 7765fb419df1382f \\
      --key alice.key --approver alice
  approvalgate approve --request agents/nightly-report --key bob.key --approver bob \\
      --reason "checked the diff" --expires-in 4h
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from approvalgate.commands import _signer
from approvalgate.commands._args import add_environment, add_namespace
from approvalgate.commands._cluster import add_cluster

if TYPE_CHECKING:
    from datetime import datetime

    from securesystemslib.signer import Signer

    from approvalgate.approvals.bundle import Bundle
    from approvalgate.approvals.errors import ApprovalgateError
    from approvalgate.approvals.records import Claim
    from approvalgate.kube.client import Client


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "manifest",
        metavar="MANIFEST",
        type=Path,
        nargs="?",
        help="YAML file with AgentRuns, Schedules, OrchestrationRuns or Swarms (- for "
        "standard input); or use --request",
    )
    parser.add_argument(
        "--request",
        metavar="NS/NAME",
        help="decide on this ApprovalRequest in the cluster (files an ApprovalDecision)",
    )
    add_environment(
        parser,
        "the environment the approval holds in, as named in approvalgate.yaml (required "
        "unless --bundle names it)",
    )
    _add_signer(parser)
    parser.add_argument(
        "--ttl",
        "--expires-in",
        metavar="DURATION",
        help="how long the record is valid, e.g. 30m, 4h, 1d (default: the "
        "matching policies' timeoutSeconds with --policies or --bundle, for a Schedule, "
        "OrchestrationRun or Swarm their parents.maxTTL; else 24h)",
    )
    parser.add_argument(
        "--reason",
        metavar="TEXT",
        default="",
        help="why (required with --bypass: at least 8 visible characters)",
    )
    decision = parser.add_mutually_exclusive_group()
    decision.add_argument("--reject", action="store_true", help="record a rejection")
    decision.add_argument(
        "--bypass",
        action="store_true",
        help="record a break-glass bypass (needs --reason, audited)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--in-place", action="store_true", help="rewrite MANIFEST")
    where.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        type=Path,
        help="write to FILE; with --request: the output format, text (default) or json",
    )
    add_namespace(parser)
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--policies",
        metavar="PATH",
        type=Path,
        nargs="+",
        help="policies to bound the TTL by (their timeoutSeconds / parents.maxTTL / bypass "
        "maxTTL) and whose per-run fields a run template leaves out",
    )
    source.add_argument(
        "--bundle",
        metavar="FILE",
        type=Path,
        help="a compiled bundle.json: its environment, whether it binds referenced content "
        "and needs one run per approval, and its policies bound the TTL",
    )
    parser.add_argument(
        "--now", metavar="RFC3339", help="sign as of this time (testing, backdating)"
    )
    add_accept_hidden_text(parser)
    add_expect(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="with MANIFEST --cluster: read the file and the cluster as signing would, print "
        "what the records would bind (what was read from the cluster whole) and its pin on "
        "stdout, and sign and write nothing (no key is used); then sign with the same "
        "arguments and --expect PIN",
    )
    _add_bound(parser)
    add_cluster(parser)


def add_accept_hidden_text(parser: argparse.ArgumentParser) -> None:
    """--accept-hidden-text: sign text holding characters that show as nothing."""
    parser.add_argument(
        "--accept-hidden-text",
        action="store_true",
        help="approve even though the run's spec or the content it binds holds characters "
        "a screen does not show (tag characters, bidi overrides, zero-width or control "
        "characters), which the agent reads: refused without it, and each one is listed",
    )


def _add_bound(parser: argparse.ArgumentParser) -> None:
    """--content, --target, --orchestration and --cluster: what a record binds besides the
    manifest (referenced content, a parent's target)."""
    bound = parser.add_argument_group("what the approval binds besides the manifest")
    bound.add_argument(
        "--content",
        metavar="FILE",
        type=Path,
        nargs="+",
        action="extend",
        help="ImplementationSpec and Agent manifests (several documents allowed) the runs "
        "reference, and the AgentProvider each Agent names: the record binds the sha256 of "
        "each one's spec (needed where the environment has referencedContent: bind, the "
        "default)",
    )
    bound.add_argument(
        "--target",
        metavar="[STAGE=]FILE",
        action="append",
        help="a Schedule's target (the AgentRun or OrchestrationRun its spec.targetRef "
        "names): the run template is made from it; for a Swarm STAGE=FILE, once per enabled "
        "stage (discover, plan, implement, verify)",
    )
    bound.add_argument(
        "--orchestration",
        metavar="FILE",
        type=Path,
        action="append",
        help="an OrchestrationRun's Orchestration (its spec.orchestrationRef): the AgentRun "
        "steps are what is approved",
    )
    bound.add_argument(
        "--cluster",
        action="store_true",
        help="read what --content, --target and --orchestration would give from the cluster "
        "(the user's kubeconfig; --kubeconfig, --context): the referenced ImplementationSpecs "
        "and Agents and the AgentProviders the Agents name, a Schedule's target, an "
        "OrchestrationRun's Orchestration",
    )


def run(args: argparse.Namespace) -> int:
    from approvalgate.approvals.errors import UsageError

    if args.request:
        if args.manifest is not None:
            raise UsageError("give a MANIFEST or --request NS/NAME, not both")
        if args.dry_run:
            raise UsageError(
                "--dry-run is for MANIFEST --cluster",
                advice=f"approvalgate status {args.request} shows the request and its pin",
            )
        if args.in_place or args.policies:
            raise UsageError(
                "--in-place and --policies are for a MANIFEST; with --request the decision "
                "goes to the cluster (--bundle bounds its TTL)"
            )
        if args.content or args.target or args.orchestration or args.cluster:
            raise UsageError(
                "--content, --target, --orchestration and --cluster are for a MANIFEST; "
                "with --request the referenced content is read from the cluster"
            )
        if str(args.output or "text") not in ("text", "json"):
            raise UsageError("with --request, -o/--output is the format: text or json")
        args.output = str(args.output or "text")
        decision = "reject" if args.reject else "bypass" if args.bypass else "approve"
        return decide_on_request(args, decision)
    if args.manifest is None:
        raise UsageError(
            "approve needs a MANIFEST or --request NS/NAME",
            advice="approvalgate approve run.yaml --env prod --key KEY --approver NAME, or "
            "approvalgate approve --request NS/NAME --key KEY --approver NAME",
        )
    if (args.expect is not None or args.dry_run) and not args.cluster:
        raise UsageError(
            f"{'--expect' if args.expect is not None else '--dry-run'} is for --request "
            "NS/NAME (the pin `approvalgate status` prints) or MANIFEST --cluster (the pin "
            "`approvalgate approve MANIFEST --cluster --dry-run` prints): files given with "
            "--content, --target and --orchestration are what you read",
        )
    if (args.kubeconfig is not None or args.context is not None) and not args.cluster:
        raise UsageError("--kubeconfig and --context are for --request NS/NAME or --cluster")
    if args.cluster and (args.content or args.target or args.orchestration):
        raise UsageError(
            "--cluster reads the content and targets from the cluster: give it, or "
            "--content/--target/--orchestration, not both"
        )
    if args.cluster:
        args.expect = check_pin(args.expect)
        if args.expect is not None and args.dry_run:
            raise UsageError("--dry-run prints the pin; --expect PIN signs with it: not both")
        decision = "reject" if args.reject else "bypass" if args.bypass else "approve"
        if not (args.dry_run or args.expect or decision == "reject" or _interactive()):
            raise UsageError(
                f"{decision} {args.manifest} --cluster needs --expect PIN when not run on a "
                "terminal: the pin of what you read from the cluster, so that nothing else "
                "is signed (content or a target changed since)",
                advice=f"approvalgate approve {args.manifest} --cluster --dry-run (with the "
                "same arguments) shows what it would sign and prints the pin; then the same "
                "command with --expect PIN",
            )
    return _approve_file(args)


def _approve_file(args: argparse.Namespace) -> int:
    import contextlib

    from approvalgate import manifests
    from approvalgate.approvals.errors import ApprovalgateError, InputError
    from approvalgate.approvals.policy import BundleSettings
    from approvalgate.approvals.view import StaticView
    from approvalgate.commands import _cluster, _content, _parents
    from approvalgate.compiler.sources import load_text
    from approvalgate.output import write_text
    from approvalgate.policies import (
        bundle_environment,
        bundle_from_file,
        bundle_from_paths,
        required_environment,
    )

    decision = "reject" if args.reject else "bypass" if args.bypass else "approve"
    check_reason(decision, args.reason)
    now = manifests.parse_now(args.now)
    bundle = bundle_from_file(args.bundle) if args.bundle else None
    if bundle is not None:
        environment = bundle_environment(bundle, args.bundle, args.env)
    else:
        environment = required_environment(
            args.env, "approve needs --env NAME: the record must say where it holds"
        )
    dry_run = bool(args.cluster and args.dry_run)
    signer = (
        None
        if dry_run  # signs nothing: no key is used (nor a token's PIN asked)
        else _signer.load(args.key, args.public_key, bundle=bundle, approver=args.approver)
    )
    text = manifests.read_manifest(args.manifest)
    display = str(args.manifest)
    documents = load_text(text, display)
    has_runs = any(manifests.is_agent_run(s.obj) for s in documents)
    parents = _parents.read(text, display, args.namespace)
    if not has_runs and not parents:
        raise InputError(
            f"{display}: no AgentRun (agents.proompteng.ai), Schedule, OrchestrationRun or "
            "Swarm in this file"
        )
    _check_parent_options(args, parents)
    runs = manifests.agent_runs(text, display, args.namespace) if has_runs else []
    if args.policies:
        bundle = bundle_from_paths(args.policies, BundleSettings(environment=environment))
        if signer is not None:  # the policies' Approvers may require user verification
            signer = _signer.user_verification_of(signer, bundle)
    # A compiled bundle says whether the environment records each approval's one use and
    # binds referenced content; policy files and --env do not, and then approvalgate.yaml's
    # defaults (clusterView: required, referencedContent: bind) are assumed: the content
    # given is bound, and when none is given stderr says the record binds none.
    assumed = args.bundle is None
    binding = decision != "reject" and bool(
        args.content or args.cluster or _content.binds(bundle, assumed)
    )
    advice = (
        "approve --cluster reads the referenced ImplementationSpecs and Agents (and the "
        "AgentProviders the Agents name), a Schedule's "
        "target and an OrchestrationRun's Orchestration: you need get on them in the "
        "namespace (or give them with --content, --target, --orchestration)"
    )
    connection = _cluster.connect(args, advice) if args.cluster else contextlib.nullcontext()
    # the manifest's own ImplementationSpecs, Agents, targets and Orchestrations count too
    own = _content.of_documents([d.obj for d in documents], args.namespace)
    with connection as client:
        given = _content.read_files(args.content, args.namespace) if args.content else []
        sources = _parents.Sources.of(args.target or [], args.orchestration or [], client)
        sources.add_manifest([d.obj for d in documents], args.namespace)
        objects = [*given, *own]
        prepared = [_parents.prepare(p, sources, bundle, objects) for p in parents]
        for stray in sources.unused():
            print(
                f"note: --target: {stray} is the target of no Schedule or Swarm in "
                f"{display}: it was not used",
                file=sys.stderr,
            )
        if client is not None and binding:
            wanted = [(r.namespace, k) for r in runs for k in _content_refs(r.obj)]
            wanted += [(p.parent.namespace, k) for p in prepared for k in p.coverage.references]
            # the manifest's win (and the providers their Agents name are not read then)
            objects = [*_content.read_cluster(client, wanted, objects), *objects]
    view = StaticView.build(objects=objects)
    source = " and ".join(
        [
            *([display] if own else []),
            *(["--content " + " ".join(str(p) for p in args.content)] if args.content else []),
            *(["the cluster"] if args.cluster else []),
        ]
    )

    notes: dict[str, str] = {}  # said once the record is made, after "signed ..."

    def bound(refs: tuple[str, ...], namespace: str, what: str) -> dict[str, str]:
        if not binding or not refs:
            return {}
        if not source and assumed:  # the environment's setting is not known here
            notes[what] = _content.unbound_note(refs, namespace, what, environment)
            return {}
        if not source:
            raise _content.missing_source(refs, namespace, what)
        return _content.bind(refs, namespace, view, what, source)

    # everything checked before anything is signed
    run_ttl = ttl_seconds(args.ttl, manifests.ttl_cap(bundle, runs, decision) if bundle else None)
    parent_ttl = ttl_seconds(args.ttl, _parents.ttl_cap(prepared, decision))
    run_refs = {r.ref: bound(_content_refs(r.obj), r.namespace, f"AgentRun {r.ref}") for r in runs}
    parent_refs = [
        bound(p.coverage.references, p.parent.namespace, p.parent.what) for p in prepared
    ]
    if decision != "reject":
        for run in runs:
            refuse_hidden_text(
                [(f"AgentRun {run.ref} spec", _spec(run.obj))],
                run_refs[run.ref],
                run.namespace,
                objects,
                args.accept_hidden_text,
                _say,
            )
        for item, references in zip(prepared, parent_refs, strict=True):
            templates = item.coverage.templates
            refuse_hidden_text(
                [
                    (f"{item.parent.what} spec", _spec(item.obj)),
                    *((f"{item.parent.what} {_template(k)} spec", templates[k]) for k in templates),
                ],
                references,
                item.parent.namespace,
                objects,
                args.accept_hidden_text,
                _say,
            )
    if args.cluster:
        # read from the cluster now, not from a file the approver holds: what was read is
        # shown whole (--dry-run, the terminal's question) and pinned; --expect signs that
        # reading or nothing
        shown = _cluster_reads_text(display, runs, run_refs, prepared, parent_refs, objects)
        pinned = file_pin(text, environment, runs, run_refs, prepared, parent_refs)
        shown += f"pin: {pinned}\n"
        if dry_run:
            sys.stdout.write(shown)
            return 0
        if args.expect is not None and args.expect != pinned:
            raise ApprovalgateError(
                f"{display} and what it binds in the cluster are not as you read them: you "
                f"were shown pin {args.expect}, they have pin {pinned} now (content, a target "
                "or an Orchestration changed in the cluster, or the file changed); nothing "
                "was signed",
                advice=f"read it again: approvalgate approve {display} --cluster --dry-run "
                "(with the same arguments), then sign with the pin it prints",
            )
        if args.expect is None and decision != "reject" and _interactive():
            _confirm(display, shown)
    result = (
        _sign_runs(
            args,
            text,
            runs,
            bundle,
            assumed,
            decision,
            environment,
            now,
            run_ttl,
            signer,
            run_refs,
            objects,
            notes,
        )
        if runs
        else text
    )
    if prepared:
        edits = {}
        for item, references in zip(prepared, parent_refs, strict=True):
            edits[item.parent.source.document.index] = _sign_parent(
                args, item, decision, environment, now, parent_ttl, signer, references, objects
            )
            if item.parent.what in notes:
                print(notes[item.parent.what], file=sys.stderr)
        result = _parents.stamp(result, edits)
    if args.in_place:
        write_text(args.manifest, result)
    elif args.output:
        write_text(args.output, result)
    else:
        sys.stdout.write(result)
    return 0


def _cluster_reads_text(
    display: str,
    runs: Sequence[Any],
    run_refs: Mapping[str, Mapping[str, str]],
    prepared: Sequence[Any],
    parent_refs: Sequence[Mapping[str, str]],
    objects: Sequence[Mapping[str, Any]],
) -> str:
    """What ``approve FILE --cluster`` shows before signing (``--dry-run``, the terminal's
    question): the records' subjects and digests and, whole, what they bind that was read
    from the cluster (each bound object's spec, each parent's run templates), everything
    read behind ``|``."""
    from approvalgate.commands import _content
    from approvalgate.commands.status import quoted

    lines = [f"what the records for {display} bind, as read now (the cluster's part whole):"]

    def bound(refs: Mapping[str, str], namespace: str) -> None:
        for key, digest in sorted(refs.items()):
            kind, _, name = key.partition("/")
            lines.append(f"  it binds {kind} {namespace}/{name} spec sha256:{digest}:")
            lines.extend(quoted(_spec(_content.find(objects, kind, namespace, name))))

    for run in runs:
        lines.append(f"AgentRun {run.ref} spec sha256:{run.digest}")
        bound(run_refs.get(run.ref) or {}, run.namespace)
    for item, refs in zip(prepared, parent_refs, strict=True):
        lines.append(f"{item.parent.what} coverage sha256:{item.coverage.digest}")
        for key, template in sorted(item.coverage.templates.items()):
            lines.append(f"  its {_template(key)}:")
            lines.extend(quoted(template))
        bound(refs, item.parent.namespace)
    return "\n".join(lines) + "\n"


def file_pin(
    text: str,
    environment: str,
    runs: Sequence[Any],
    run_refs: Mapping[str, Mapping[str, str]],
    prepared: Sequence[Any],
    parent_refs: Sequence[Mapping[str, str]],
) -> str:
    """The pin of ``approve FILE --cluster`` as read: the first :data:`_queue.PIN_CHARS` hex
    digits of the sha256 of the manifest's text, the environment, and each record's subject
    (a run before it is named), digest (a run's spec, a parent's coverage: its run templates)
    and the content it binds (``Kind/name`` -> spec sha256). Content, a target or an
    Orchestration changed in the cluster, or the file changed, give another pin."""
    import hashlib
    import json

    from approvalgate.commands._queue import PIN_CHARS

    body = {
        "pin": "approvalgate approve FILE --cluster",  # never a request's pin
        "manifest": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
        "environment": environment,
        "runs": [
            [run.ref, run.digest, dict(sorted((run_refs.get(run.ref) or {}).items()))]
            for run in runs
        ],
        "parents": [
            [item.parent.what, item.coverage.digest, dict(sorted(refs.items()))]
            for item, refs in zip(prepared, parent_refs, strict=True)
        ],
    }
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()[:PIN_CHARS]


def _confirm(display: str, shown: str) -> None:
    """``approve FILE --cluster`` on a terminal without ``--expect``: show ``shown`` on
    stderr and ask; anything but yes signs nothing."""
    from approvalgate.approvals.errors import ApprovalgateError

    sys.stderr.write(shown + "sign these? [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise ApprovalgateError(
            f"not confirmed: nothing was signed for {display}",
            advice="read what the cluster holds, or give it as files you read and keep "
            "(--content, --target, --orchestration)",
        )


def refuse_hidden_text(
    signed: Sequence[tuple[str, object]],
    bound: Mapping[str, str],
    namespace: str,
    objects: Sequence[Mapping[str, Any]],
    accepted: bool,
    say: Callable[[str], None],
) -> None:
    """Refuse to approve text the approver cannot see (:mod:`hidden_text`): ``signed`` are
    (what, value) pairs of what the record binds (a run's spec, a parent's spec and run
    templates), ``bound`` the referenced content's
    keys (found among ``objects`` in ``namespace``). With ``accepted``
    (``--accept-hidden-text``) each finding is only said."""
    from approvalgate.approvals import hidden_text
    from approvalgate.approvals.errors import ApprovalgateError
    from approvalgate.commands import _content

    found = [f for what, value in signed for f in hidden_text.scan(what, value)]
    for key in sorted(bound):
        kind, _, name = key.partition("/")
        obj = _content.find(objects, kind, namespace, name)
        found += hidden_text.scan(f"{kind} {namespace}/{name} spec", _spec(obj))
    if not found:
        return
    lines = "\n".join(f"  - {f.describe()}" for f in found)
    if accepted:
        say(f"note: --accept-hidden-text: signing text that holds hidden characters:\n{lines}")
        return
    raise ApprovalgateError(
        "refusing to approve text you cannot see: the agent reads every character below, a "
        f"screen shows none of them; nothing was signed\n{lines}",
        advice=(
            "ask the requester what they are for, and for text without them; to sign anyway, "
            "after reading them, pass --accept-hidden-text to `approvalgate approve` (the "
            "console never signs such text)"
        ),
    )


def _template(key: str) -> str:
    """A parent's run template, named by its key (a step, a stage; a Schedule's is "")."""
    return f"run template {key!r}" if key else "run template"


def _spec(obj: Mapping[str, Any] | None) -> object:
    return (obj or {}).get("spec")


def _content_refs(obj: dict[str, Any]) -> tuple[str, ...]:
    from approvalgate.approvals import content

    return tuple(content.refs(obj.get("spec")))


def _check_parent_options(args: argparse.Namespace, parents: list[Any]) -> None:
    """--target and --orchestration only where the manifest has what they are for."""
    from approvalgate.approvals.errors import UsageError

    kinds = {p.kind for p in parents}
    if args.target and not kinds & {"Schedule", "Swarm"}:
        raise UsageError(
            f"--target is for a Schedule or Swarm, and {args.manifest} has none",
            advice="approve the run itself: approvalgate approve run.yaml ...",
        )
    if args.orchestration and "OrchestrationRun" not in kinds:
        raise UsageError(
            f"--orchestration is for an OrchestrationRun, and {args.manifest} has none"
        )


def _sign_runs(
    args: argparse.Namespace,
    text: str,
    runs: list[Any],
    bundle: Any,
    assumed: bool,
    decision: str,
    environment: str,
    now: Any,
    ttl: int,
    signer: Any,
    references: dict[str, dict[str, str]],
    objects: list[dict[str, Any]],
    notes: dict[str, str],
) -> str:
    """``text`` with a record signed into each of ``runs`` (and, where an approval admits one
    run, each named and given the approval-use finalizer)."""
    from approvalgate import manifests
    from approvalgate.approvals import records
    from approvalgate.approvals.decide import shown_claim
    from approvalgate.approvals.view import USE_FINALIZER
    from approvalgate.commands import _content

    one_use = bundle.needs_view if bundle is not None and not assumed else True
    unfinalized: set[str] = set()
    bound = references
    named_from = {run.ref: run.ref for run in runs}  # a run named now: its ref before
    if one_use:
        named = [_named(run, environment, assumed) for run in runs]
        bound = {new.ref: references[old.ref] for old, new in zip(runs, named, strict=True)}
        named_from = {new.ref: old.ref for old, new in zip(runs, named, strict=True)}
        runs = named
        unfinalized = {
            run.ref
            for run in runs
            if USE_FINALIZER not in ((run.obj.get("metadata") or {}).get("finalizers") or [])
        }

    def sign(run: manifests.Run) -> str:
        claim = _claim_of(
            args.approver, args.reason, run, decision, environment, now, ttl, bound.get(run.ref)
        )
        value = _appended(run.source, run.envelopes, claim, signer)
        old, _ = records.parse_annotation(records.dump_annotation(run.envelopes))
        for record in old:
            if record.claim.version != records.FORMAT_VERSION:
                print(
                    f"note: AgentRun {run.ref}: record {record.index} by "
                    f"{shown_claim(record.claim.approver)} is of format v{record.claim.version} "
                    "(it names "
                    "no environment) and counts in none; remove it from the annotation",
                    file=sys.stderr,
                )
        print(
            f"signed {decision} of AgentRun {run.ref} spec sha256:{run.digest} for "
            f"environment {environment} as {args.approver}, expires "
            f"{records.format_time(claim.expires_at)}",
            file=sys.stderr,
        )
        _content.show(bound.get(run.ref) or {}, run.namespace, objects)
        note = notes.get(f"AgentRun {run.ref}") or notes.get(f"AgentRun {named_from[run.ref]}")
        if note:
            print(note, file=sys.stderr)
        if run.ref in unfinalized:  # said once the record is made, never for a refusal
            print(
                f"note: AgentRun {run.ref}: added the finalizer {USE_FINALIZER} "
                f"({_why(environment, assumed)}: the controller removes it once the run's "
                "use of the approval is recorded)",
                file=sys.stderr,
            )
        return value

    def finalizer(run: manifests.Run) -> str:
        return USE_FINALIZER if one_use else ""

    return manifests.stamp(text, runs, sign, finalizer)


def _appended(source: Any, envelopes: Sequence[dict[str, Any]], claim: Any, signer: Any) -> str:
    """The approvals annotation with ``claim`` signed and appended; a manifest error at
    ``source`` when the webhook would not read an annotation that large."""
    from approvalgate.approvals import records
    from approvalgate.approvals.errors import Finding

    value = records.dump_annotation([*envelopes, records.sign(claim, signer)])
    size = records.annotation_overflow(value)
    if size is not None:
        raise source.error(
            Finding(
                ("metadata", "annotations", records.ANNOTATION),
                f"with this record the approvals annotation would be {size} bytes, over"
                f" the {records.MAX_ANNOTATION_BYTES} bytes the webhook reads",
                "remove expired or superseded records from the annotation first",
            )
        )
    return value


def _sign_parent(
    args: argparse.Namespace,
    item: Any,
    decision: str,
    environment: str,
    now: Any,
    ttl: int,
    signer: Any,
    references: dict[str, str],
    objects: list[dict[str, Any]],
) -> dict[str, str]:
    """The annotations of the parent ``item`` (a :class:`_parents.Prepared`) with a record
    signed for its coverage, said on stderr."""
    from approvalgate.approvals import records
    from approvalgate.commands import _content

    parent = item.parent
    claim = _claim_of(
        args.approver, args.reason, item.coverage, decision, environment, now, ttl, references
    )
    value = _appended(parent.source, parent.envelopes, claim, signer)
    if item.stale and parent.envelopes:
        print(
            f"note: {parent.what}: its run template changed; the {len(parent.envelopes)} "
            "record(s) already on it were signed for the old one and no longer count",
            file=sys.stderr,
        )
    print(
        f"signed {decision} of {parent.what} coverage sha256:{item.coverage.digest} "
        f"(from {', '.join(item.targets)}) for environment {environment} as {args.approver}, "
        f"expires {records.format_time(claim.expires_at)}",
        file=sys.stderr,
    )
    _content.show(references, parent.namespace, objects)
    return {**item.annotations, records.ANNOTATION: value}


def _claim_of(
    approver: str,
    reason: str,
    run: Any,
    decision: str,
    environment: str,
    now: Any,
    ttl: int,
    references: Any = None,
) -> Any:
    """The claim ``approver`` signs about ``run`` (a :class:`manifests.Run`, or a parent's
    :class:`approvals.parents.Coverage`: what has ``subject`` and ``digest``) and the
    referenced content it binds: every mode of approve, reject and withdraw (and the
    console) makes it the same way."""
    from approvalgate import manifests
    from approvalgate.approvals import records

    return records.Claim(
        subject=run.subject,
        digest=run.digest,
        decision=decision,  # type: ignore[arg-type]
        approver=approver,
        reason=reason,
        issued_at=now,
        expires_at=now + manifests.seconds(ttl),
        nonce=records.new_nonce(),
        environment=environment,
        references=dict(references or {}),
    )


def _add_signer(parser: argparse.ArgumentParser) -> None:
    """--signer (--key) and --approver: who signs (approve, and reject and withdraw)."""
    _signer.add_signer(parser)
    parser.add_argument(
        "--approver",
        metavar="NAME",
        required=True,
        help="the approver's name, as in their Approver document",
    )


def check_reason(decision: str, reason: str) -> None:
    """A bypass must say why in words (as the webhook requires); a reject must say why."""
    from approvalgate.approvals import reasons
    from approvalgate.approvals.errors import UsageError

    if decision == "bypass" and not reason.strip():
        raise UsageError("--bypass needs --reason: a break-glass record must say why")
    if decision == "bypass" and (problem := reasons.reason_problem(reason)):
        raise UsageError(
            f"--reason: {problem}; the webhook would not count this bypass. "
            "Say why in words, e.g. --reason 'INC-4711 checkout outage'"
        )


def ttl_seconds(text: str | None, cap: int | None) -> int:
    """--ttl in seconds, at most ``cap`` (the policies' bound); default the cap, else 24h."""
    from approvalgate.approvals.durations import format_duration, parse_duration
    from approvalgate.approvals.errors import UsageError

    if not text:
        return cap if cap is not None else 86400
    try:
        ttl = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--ttl: {exc}") from exc
    if ttl <= 0:  # decide() counts no record with expiresAt <= issuedAt
        raise UsageError(
            f"--ttl: {text!r} is no lifetime: a record that expires when it is issued never counts",
            advice="give a lifetime like 4h",
        )
    if cap is not None and ttl > cap:
        raise UsageError(
            f"--ttl {text} is longer than the policies allow ({format_duration(cap)})",
            advice=f"use --ttl {format_duration(cap)}",
        )
    return ttl


def _why(environment: str, assumed: bool) -> str:
    if assumed:
        return (
            f"clusterView: required assumed for environment {environment}, approvalgate.yaml's "
            f"default; approve with --bundle rendered/{environment}/bundle.json to use its "
            "setting"
        )
    return f"environment {environment} has clusterView: required"


def _named(run: Any, environment: str, assumed: bool) -> Any:
    """``run`` with a name of its own when it has only generateName (an approval names one
    run where the environment requires the cluster view), said on stderr."""
    import dataclasses

    from approvalgate.commands._queue import fixed_name

    if run.name:
        return run
    name = fixed_name(run.generate_name)
    why = _why(environment, assumed)
    print(
        f"note: AgentRun {run.ref} has only generateName: named it {name}, since an approval "
        f"admits one run ({why})",
        file=sys.stderr,
    )
    return dataclasses.replace(run, name=name, generate_name="")


def add_request_arguments(parser: argparse.ArgumentParser, decision: str) -> None:
    """The arguments of ``reject`` and ``withdraw`` (``approve --request`` has the same)."""
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--request",
        metavar="NS/NAME",
        help="the ApprovalRequest (approvalgate pending lists them)",
    )
    target.add_argument(
        "--run",
        metavar="MANIFEST",
        type=Path,
        help="an AgentRun manifest that is (or will be) applied directly, not requested: the "
        "record is filed in the cluster for that run's name and spec (needs --env or "
        "--bundle), so it counts whether or not the run carries it; a Schedule, "
        "OrchestrationRun or Swarm (as approve wrote it) the same way, for its coverage",
    )
    _add_signer(parser)
    parser.add_argument(
        "--reason",
        metavar="TEXT",
        required=decision == "reject",
        default="",
        help="why (required: the requester reads it)" if decision == "reject" else "why",
    )
    parser.add_argument(
        "--ttl",
        "--expires-in",
        metavar="DURATION",
        help="how long the record counts, e.g. 4h (default: the policies' timeoutSeconds "
        "with --bundle, else 24h)",
    )
    add_environment(parser, "the environment, to check it is the request's (optional)")
    parser.add_argument(
        "--bundle",
        metavar="FILE",
        type=Path,
        help="a compiled bundle.json of the request's environment: its policies bound the TTL",
    )
    parser.add_argument(
        "--now", metavar="RFC3339", help="sign as of this time (testing, backdating)"
    )
    add_expect(parser, files=False)
    add_cluster(parser)
    parser.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="output format"
    )


def decide_on_request(args: argparse.Namespace, decision: str) -> int:
    """Sign ``decision`` about the ApprovalRequest ``args.request`` and file it as an
    ApprovalDecision created by us (the key stays here; the record goes to the cluster)."""
    import json

    from approvalgate import manifests
    from approvalgate.approvals.errors import UsageError
    from approvalgate.commands import _cluster, _content
    from approvalgate.policies import bundle_from_file

    check_reason(decision, args.reason)
    expect = check_pin(args.expect)
    if getattr(args, "run", None) is not None:
        if expect is not None:
            raise UsageError("--expect is for --request NS/NAME, not --run")
        return _decide_on_run(args, decision)
    ref_namespace, name = _cluster.request_ref(args.request, "--request")
    confirm = None
    if expect is None and decision in ("approve", "bypass"):
        if not _interactive():
            raise UsageError(
                f"{decision} --request needs --expect PIN when not run on a terminal: the pin "
                "of the request as you read it, so that nothing else is signed (a request "
                "made again under its name, content changed since)",
                advice=f"approvalgate status {args.request} prints it (-o json: .pin); then "
                f"approvalgate approve --request {args.request} --expect PIN ...",
            )
        confirm = _ask
    now = manifests.parse_now(args.now)
    bundle = bundle_from_file(args.bundle) if args.bundle else None
    signer = _signer.load(args.key, args.public_key, bundle=bundle, approver=args.approver)
    namespace = _cluster.namespace_of(args, ref_namespace)
    with _cluster.connect(args, decide_advice(namespace)) as client:
        filed = file_decision(
            client,
            namespace=namespace,
            name=name,
            decision=decision,
            approver=args.approver,
            signer=signer,
            reason=args.reason,
            ttl=args.ttl,
            bundle=bundle,
            bundle_file=args.bundle or "--bundle",
            env=args.env,
            now=now,
            note=_say,
            accept_hidden_text=getattr(args, "accept_hidden_text", False),
            expect=expect,
            confirm=confirm,
        )
    _content.show(filed.references, namespace, filed.read)
    if args.output == "json":
        print(json.dumps(filed.created, indent=2, sort_keys=True))
        return 0
    print(filed.message)
    return 0


def _interactive() -> bool:
    """Whether a person answers on standard input (a terminal)."""
    return sys.stdin is not None and sys.stdin.isatty()


def _ask(shown: Shown) -> bool:
    """Show on stderr what is about to be signed, as ``status`` shows it, and ask: only
    "y" or "yes" signs (a terminal without ``--expect``: the approver reads it here, in
    the same reading that is signed)."""
    from approvalgate.commands.status import shown_text

    sys.stderr.write(shown_text(shown))
    sys.stderr.write("sign your approval of exactly this? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def _say(text: str) -> None:
    """A note on stderr (looked up when called: tests capture sys.stderr)."""
    print(text, file=sys.stderr)


def decide_advice(namespace: str) -> str:
    """What a 403 while deciding on a request in ``namespace`` means."""
    from approvalgate.commands import _cluster

    return _cluster.rbac_advice(
        "get on approvalrequests and create on approvaldecisions",
        "approvaldecisions",
        namespace,
        "approvalgate-approver",
    )


@dataclass(frozen=True)
class FiledDecision:
    """An ApprovalDecision filed about an ApprovalRequest (:func:`file_decision`)."""

    created: dict[str, Any]
    """The ApprovalDecision as the API server created it."""
    claim: Claim
    """The signed claim it carries."""
    references: dict[str, str]
    """The referenced content the record binds (``Kind/name`` -> spec sha256)."""
    read: list[dict[str, Any]]
    """The ImplementationSpecs and Agents read from the cluster (to show what was signed)."""
    digest: str
    """The sha256 of the request's run spec (hex)."""
    environment: str
    namespace: str
    request: str
    """The request's name."""
    decision: str
    approver: str
    user: str
    """Who created the decision, as the API server authenticated us."""
    notes: tuple[str, ...] = ()
    """The notes said while filing it (each ``note: ...``), in order."""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.request}"

    @property
    def name(self) -> str:
        """The ApprovalDecision's name (generated by the API server)."""
        return str((self.created.get("metadata") or {}).get("name", ""))

    @property
    def message(self) -> str:
        """What ``approve|reject|withdraw --request`` prints: what was filed, then how to
        follow it."""
        from approvalgate.approvals import records

        return (
            f"created ApprovalDecision {self.namespace}/{self.name}: {self.decision} of "
            f"ApprovalRequest {self.ref} (AgentRun spec sha256:{self.digest}, environment "
            f"{self.environment}) as approver {self.approver}, user {self.user}, expires "
            f"{records.format_time(self.claim.expires_at)}\n"
            f"  follow it: approvalgate status {self.ref}"
        )


def eligibility_note(approver: str, ref: str, eligible: Sequence[str]) -> str:
    """Why an approval of request ``ref`` by ``approver`` may not count ("" when it may):
    they are not among those who may still approve it (status.eligible, when known)."""
    if not eligible or approver in eligible:
        return ""
    return (
        f"{approver} is not among those who may still approve {ref} "
        f"({', '.join(eligible)}): this approval may not count"
    )


def not_pending(item: Mapping[str, Any]) -> tuple[str, str] | None:
    """Why a decision on request ``item`` (a :func:`_queue.summary`) would change nothing,
    with advice; None while it can still be decided."""
    from approvalgate.approvals.queue import TERMINAL

    if item["phase"] not in TERMINAL and not item["cancelled"]:
        return None
    ref = f"{item['namespace']}/{item['name']}"
    phase = item["phase"] or "Cancelled"
    return (
        f"ApprovalRequest {ref} is {phase}: a decision would change nothing",
        f"approvalgate status {ref} tells its story",
    )


def file_decision(
    client: Client,
    *,
    namespace: str,
    name: str,
    decision: str,
    approver: str,
    signer: Signer,
    reason: str = "",
    ttl: str | None = None,
    bundle: Bundle | None = None,
    bundle_file: Path | str = "--bundle",
    env: str | None = None,
    now: datetime | None = None,
    request: Mapping[str, Any] | None = None,
    note: Callable[[str], None] | None = None,
    accept_hidden_text: bool = False,
    expect: str | None = None,
    confirm: Callable[[Shown], bool] | None = None,
) -> FiledDecision:
    """Sign ``decision`` (approve, reject, withdraw, bypass) by ``approver`` about the
    ApprovalRequest ``namespace/name`` with ``signer`` and file it as an ApprovalDecision
    created by the user of ``client``: what ``approve|reject|withdraw --request`` do, without
    printing. ``request``: the request as already read (else it is read here); ``ttl``: as
    ``--ttl`` gives it (default: the bundle's bound, else 24h); ``bundle_file``: how messages
    name ``bundle``; ``now``: the signing time (default: now). Each note (``note: ...``) goes
    to ``note`` when it is said and into :attr:`FiledDecision.notes`. An approval of text
    holding hidden characters is refused unless ``accept_hidden_text``
    (:func:`refuse_hidden_text`). ``expect``: the pin of the request as the approver read it
    (``status``, the console's page): a request or content that no longer has it is refused.
    ``confirm``: asked last, with what is about to be signed; False signs nothing.

    Every refusal is an :class:`ApprovalgateError` with advice, raised before anything is
    signed (or, for the API server's, before anything is created)."""
    from approvalgate import manifests
    from approvalgate.approvals import records
    from approvalgate.approvals.errors import ApprovalgateError, UsageError
    from approvalgate.commands import _cluster, _content, _queue
    from approvalgate.kube import objects
    from approvalgate.kube.errors import KubeError
    from approvalgate.kube.resources import APPROVAL_DECISIONS
    from approvalgate.policies import bundle_environment, checked_environment

    said: list[str] = []

    def say(text: str) -> None:
        said.append(text)
        if note is not None:
            note(text)

    check_reason(decision, reason)
    if decision == "reject" and not reason.strip():
        raise UsageError("reject needs --reason: the requester must learn why")
    now = now if now is not None else manifests.parse_now(None)
    if request is None:
        request = _cluster.get_request(client, namespace, name)
    item = _queue.summary(request)
    ref = f"{namespace}/{name}"
    environment = item["environment"]
    if env is not None and checked_environment(env) != environment:
        raise UsageError(f"--env {env}: request {ref} is for environment {environment}")
    if bundle is not None:
        bundle_environment(bundle, Path(bundle_file), environment)
    refused = not_pending(item)
    if refused is not None:
        raise ApprovalgateError(refused[0], advice=refused[1])
    run = _request_run(dict(request), namespace, ref)
    if run.digest != item["specDigest"]:
        raise ApprovalgateError(
            f"ApprovalRequest {ref}: spec.specDigest {item['specDigest'] or '(none)'} is not "
            f"the digest of the run it embeds (sha256:{run.digest}); nothing was signed",
            advice="do not approve it: ask the requester to make a new request",
        )
    if decision == "approve" and (ineligible := eligibility_note(approver, ref, item["eligible"])):
        say(f"note: {ineligible}")
    cap = manifests.ttl_cap(bundle, [run], decision) if bundle is not None else None
    seconds = ttl_seconds(ttl, cap)
    # the content is read once: what the pin covers is what the record binds
    reading = _content.read_run(client, namespace, _spec(run.obj))
    if reading.invalid is not None:  # names the platform would not read: nothing to show
        raise reading.invalid
    content_read, unread = reading.objects, reading.unread
    pinned = _queue.pin(request, content_read)
    if unread is not None and binds_content(decision, bundle):
        # said as itself, before the pin: a refusal to read is not a change since
        raise unreadable_content(ref, unread)
    if expect is not None and expect != pinned:
        raise changed_since_read(item, ref, expect, pinned)
    references, read = _request_content(run, decision, bundle, ref, say, content_read, unread)
    if decision in ("approve", "bypass"):
        refuse_hidden_text(
            [(f"AgentRun {run.ref} spec", _spec(run.obj))],
            references,
            namespace,
            read,
            accept_hidden_text,
            say,
        )
    claim = _claim_of(approver, reason, run, decision, environment, now, seconds, references)
    if confirm is not None and not confirm(Shown(request, content_read, unread, pinned)):
        raise ApprovalgateError(
            f"not confirmed: nothing was signed for ApprovalRequest {ref}",
            advice=f"approvalgate status {ref} shows it again, with its pin",
        )
    envelope = records.sign(claim, signer)
    me = _cluster.whoami(client)
    obj = _queue.decision_object(
        request=name,
        namespace=namespace,
        decision=decision,
        approver=approver,
        envelope=envelope,
        created_by=me,
        created_by_annotation=_cluster.CREATED_BY,
    )
    try:
        created = objects.create(client, APPROVAL_DECISIONS, obj, namespace)
    except KubeError as exc:
        raise _cluster.not_served(exc, APPROVAL_DECISIONS.plural) from exc
    return FiledDecision(
        created=created,
        claim=claim,
        references=references,
        read=read,
        digest=run.digest,
        environment=environment,
        namespace=namespace,
        request=name,
        decision=decision,
        approver=approver,
        user=me,
        notes=tuple(said),
    )


def binds_content(decision: str, bundle: Any) -> bool:
    """Whether ``decision`` on a request binds the content its run references, as far as
    known here: all but a reject, where the bundle binds it (without a bundle the setting
    is unknown: :func:`_request_content` binds what could be read and says what could not)."""
    return decision != "reject" and bundle is not None and bool(bundle.binds_content)


def unreadable_content(ref: str, unread: ApprovalgateError) -> ApprovalgateError:
    """The refusal when request ``ref``'s content, which the approval must bind, could not
    be read (``unread``: why; its status kept, a 403 stays a 403): nothing is signed."""
    from approvalgate.kube.errors import KubeError

    advice = unread.advice or (
        "you need get on implementationspecs, agents and agentproviders to read them"
    )
    return KubeError(
        f"ApprovalRequest {ref}: the content its AgentRun references could not be read: "
        f"{unread.message}; an approval must bind it (referencedContent: bind), so nothing "
        "was signed",
        status=getattr(unread, "status", None),
        advice=advice,
    )


@dataclass(frozen=True)
class Shown:
    """An ApprovalRequest as read to be decided on: what ``status`` shows of it and what
    :func:`file_decision` asks ``confirm`` about."""

    request: Mapping[str, Any]
    content: list[dict[str, Any]]
    """The ImplementationSpecs, Agents and AgentProviders its run references, read now."""
    unread: ApprovalgateError | None
    """Why the content could not be read (None: all that exists was)."""
    pin: str
    unread_all: tuple[ApprovalgateError, ...] = ()
    """Why each object that could not be read was not (``status`` lists every one; the
    first is :attr:`unread`)."""


def changed_since_read(
    item: Mapping[str, Any], ref: str, expect: str, pinned: str
) -> ApprovalgateError:
    """The refusal when request ``ref`` (a :func:`_queue.summary`) no longer has the pin
    the approver read (``expect``): nothing is signed."""
    from approvalgate.approvals.errors import ApprovalgateError

    return ApprovalgateError(
        f"ApprovalRequest {ref} is not as you read it: you were shown pin {expect}, it has "
        f"pin {pinned} now (uid {item['uid'] or '?'}, created {item['created'] or '?'}, run "
        f"spec sha256:{item['specDigest'][:12]}): deleted and made again, or the content its "
        "run references changed; nothing was signed",
        advice=f"read it again: approvalgate status {ref}, then decide with the pin it prints",
    )


def check_pin(text: str | None) -> str | None:
    """``--expect`` as given: a pin (:data:`_queue.PIN_CHARS` lowercase hex digits)."""
    import re

    from approvalgate.approvals.errors import UsageError
    from approvalgate.commands._queue import PIN_CHARS

    if text is None:
        return None
    pin = text.strip().lower()
    if not re.fullmatch(f"[0-9a-f]{{{PIN_CHARS}}}", pin):
        raise UsageError(
            f"--expect {text!r} is not a pin ({PIN_CHARS} hex digits)",
            advice="approvalgate status NS/NAME prints the pin of the request it shows",
        )
    return pin


def add_expect(parser: argparse.ArgumentParser, *, files: bool = True) -> None:
    """--expect PIN: decide only on the request (or, with ``files``, the file and the
    cluster) as it was read."""
    parser.add_argument(
        "--expect",
        metavar="PIN",
        help="with --request: the pin `approvalgate status` printed for the request you "
        "read; a request made again under the name, or whose content changed since, is "
        "refused (nothing signed)"
        + (
            "; with MANIFEST --cluster: the pin --dry-run printed (content, a target or an "
            "Orchestration changed in the cluster since is refused)"
            if files
            else ""
        )
        + ". Approving without a terminal needs it; on a terminal without it what would be "
        "signed is shown and you are asked",
    )


def _request_content(
    run: Any,
    decision: str,
    bundle: Any,
    ref: str,
    say: Callable[[str], None],
    read: list[dict[str, Any]],
    unread: ApprovalgateError | None,
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """What an approval of request ``ref``'s run binds: the referenced ImplementationSpecs
    and Agent, and the AgentProvider the Agent names, as ``read`` from the cluster (once,
    for the pin too; ``unread``: the error that stopped the reading), and the objects read
    (to show them).

    With ``--bundle`` its setting decides: where it binds, an object that cannot be read is
    an error (nothing signed). Without it the environment's setting is unknown here: what
    can be read is bound, and stderr says what could not be and what that means."""
    from approvalgate.approvals import content
    from approvalgate.approvals.errors import ApprovalgateError
    from approvalgate.approvals.view import StaticView
    from approvalgate.commands import _content

    if decision == "reject" or (bundle is not None and not bundle.binds_content):
        return {}, []
    refs = _content_refs(run.obj)
    what = f"ApprovalRequest {ref}: its AgentRun"
    advice = (
        "the run cannot start without it either: ask the requester to apply it (or cancel "
        "the request); you need get on implementationspecs, agents and agentproviders to "
        "read them"
    )
    view = StaticView()
    try:
        if unread is not None:
            raise unread
        view = StaticView.build(objects=read)
        if bundle is not None:
            return _content.bind(refs, run.namespace, view, what, "the cluster", advice), read
        bound = _content.binding_of(refs, run.namespace, view)
    except ApprovalgateError as exc:
        if bundle is not None:
            raise
        read, bound = [], {}
        say(f"note: {what}: its content could not be read: {exc.message}")
    missing = [key for key in content.required(refs, run.namespace, view) if key not in bound]
    if missing:
        names = ", ".join(_content.name_of(key, run.namespace) for key in missing)
        say(
            f"note: {what} references {names}, not bound by this record (not read from the "
            "cluster): where the environment binds referenced content (referencedContent: "
            "bind, the default where clusterView: required) the record will not count; "
            f"{advice}, or approve with --bundle of the environment to make this an error"
        )
    return bound, read


@dataclass(frozen=True)
class _Decided:
    """What a decision filed with --run is about: an AgentRun or a parent."""

    what: str
    namespace: str
    name: str
    subject: str
    digest: str
    cap: int | None


def _decide_on_run(args: argparse.Namespace, decision: str) -> int:
    """Sign ``decision`` about each AgentRun, Schedule, OrchestrationRun and Swarm of
    ``args.run`` (a manifest applied directly) and file it as an ApprovalDecision for that
    object's name: a reject or withdrawal the requester cannot leave out of the annotation."""
    import json

    from approvalgate import manifests
    from approvalgate.approvals import records
    from approvalgate.approvals.errors import InputError
    from approvalgate.commands import _cluster, _parents, _queue
    from approvalgate.compiler.sources import load_text
    from approvalgate.kube import objects
    from approvalgate.kube.errors import KubeError
    from approvalgate.kube.resources import APPROVAL_DECISIONS
    from approvalgate.policies import bundle_environment, bundle_from_file, required_environment

    now = manifests.parse_now(args.now)
    bundle = bundle_from_file(args.bundle) if args.bundle else None
    if bundle is not None:
        environment = bundle_environment(bundle, args.bundle, args.env)
    else:
        environment = required_environment(
            args.env, f"{decision} --run needs --env NAME (or --bundle): the record names it"
        )
    signer = _signer.load(args.key, args.public_key, bundle=bundle, approver=args.approver)
    text = manifests.read_manifest(args.run)
    display = str(args.run)
    default_namespace = getattr(args, "namespace", None) or "default"
    found = _parents.read(text, display, default_namespace)
    has_runs = any(manifests.is_agent_run(d.obj) for d in load_text(text, display))
    runs = manifests.agent_runs(text, display, default_namespace) if has_runs or not found else []
    unnamed = [run.ref for run in runs if not run.name]
    if unnamed:
        raise InputError(
            f"{args.run}: {', '.join(unnamed)} has only generateName: a decision in the "
            "cluster names one run; give it metadata.name (`approvalgate approve` does)"
        )
    cap = manifests.ttl_cap(bundle, runs, decision) if bundle is not None and runs else None
    decided = [
        _Decided(f"AgentRun {r.ref}", r.namespace, r.name, r.subject, r.digest, cap) for r in runs
    ]
    first = decided[0].namespace if decided else found[0].namespace
    advice = _cluster.rbac_advice(
        "create on approvaldecisions", "approvaldecisions", first, "approvalgate-approver"
    )
    created_all: list[dict[str, Any]] = []
    with _cluster.connect(args, advice) as client:
        decided += [d for p in found for d in _parent_decided(p, client, bundle, decision)]
        ttls = {id(d): ttl_seconds(args.ttl, d.cap) for d in decided}  # all checked first
        me = _cluster.whoami(client)
        for item in decided:
            claim = _claim_of(
                args.approver, args.reason, item, decision, environment, now, ttls[id(item)]
            )
            obj = _queue.decision_object(
                request=item.name,
                namespace=item.namespace,
                decision=decision,
                approver=args.approver,
                envelope=records.sign(claim, signer),
                created_by=me,
                created_by_annotation=_cluster.CREATED_BY,
            )
            try:
                created = objects.create(client, APPROVAL_DECISIONS, obj, item.namespace)
            except KubeError as exc:
                raise _cluster.not_served(exc, APPROVAL_DECISIONS.plural) from exc
            created_all.append(created)
            if args.output != "json":
                what = "spec" if item.what.startswith("AgentRun ") else "coverage"
                print(
                    f"created ApprovalDecision {item.namespace}/"
                    f"{(created.get('metadata') or {}).get('name', '')}: {decision} of "
                    f"{item.what} ({what} sha256:{item.digest}, environment {environment}) "
                    f"as approver {args.approver}, user {me}, expires "
                    f"{records.format_time(claim.expires_at)}; it counts whether or not the "
                    f"{item.what.split()[0]} carries it"
                )
    if args.output == "json":
        print(json.dumps(created_all, indent=2, sort_keys=True))
    return 0


def _parent_decided(parent: Any, client: Any, bundle: Any, decision: str) -> list[_Decided]:
    """A parent of a --run manifest as decisions name it: its coverage as the file has it
    (an OrchestrationRun's Orchestration read from the cluster) and, for an
    OrchestrationRun, each other coverage the approvals on the file were signed for: a
    reject or withdrawal counts only for the coverage it names, and the Orchestration read
    now may not be the one approved (rewritten since, or meanwhile and put back after)."""
    import dataclasses

    from approvalgate.approvals import records
    from approvalgate.approvals.errors import ApprovalgateError
    from approvalgate.approvals.view import StaticView
    from approvalgate.commands import _parents

    extra = []
    if parent.kind == "OrchestrationRun":
        extra.append(_parents.Sources(client=client).orchestration(parent))
    view = StaticView.build(objects=extra)
    covered = _parents.coverage_of(parent, view, bundle)
    if isinstance(covered, str):
        raise ApprovalgateError(
            covered,
            advice="give the approved manifest (with its run-template annotation, as "
            "`approvalgate approve` writes it)",
        )
    cap = _parents.policies_cap(_parents.policies_of(parent, view, bundle), decision)
    now = _Decided(parent.what, parent.namespace, parent.name, covered.subject, covered.digest, cap)
    if parent.kind != "OrchestrationRun" or not parent.envelopes:
        return [now]
    signed, _ = records.parse_annotation(records.dump_annotation(parent.envelopes))
    earlier = sorted(
        {
            r.claim.digest
            for r in signed
            if r.claim.subject == covered.subject
            and r.claim.decision in ("approve", "bypass")
            and r.claim.digest != covered.digest
        }
    )
    for digest in earlier:
        print(
            f"note: {parent.what}: its Orchestration in the cluster (coverage "
            f"sha256:{covered.digest}) is not the one the approvals on {parent.source.display} "
            f"were signed for (coverage sha256:{digest}): the {decision} is filed for both",
            file=sys.stderr,
        )
    return [now, *(dataclasses.replace(now, digest=digest) for digest in earlier)]


def _request_run(request: dict[str, Any], namespace: str, ref: str) -> Any:
    """The run an ApprovalRequest embeds, read as `approve` reads a manifest (its digest
    computed the same way)."""
    import json

    from approvalgate import manifests
    from approvalgate.approvals.errors import ApprovalgateError

    embedded = (request.get("spec") or {}).get("run")
    if not isinstance(embedded, dict):
        raise ApprovalgateError(f"ApprovalRequest {ref} embeds no run (spec.run)")
    meta = dict(embedded.get("metadata") or {})
    meta["namespace"] = namespace
    # raw characters: YAML reads no JSON surrogate pair (an emoji as \ud83d\ude00)
    text = json.dumps({**embedded, "metadata": meta}, indent=1, ensure_ascii=False)
    runs = manifests.agent_runs(text, f"ApprovalRequest {ref} spec.run", namespace)
    if len(runs) != 1 or runs[0].name != (request.get("metadata") or {}).get("name"):
        raise ApprovalgateError(
            f"ApprovalRequest {ref}: spec.run is not one AgentRun named like the request"
        )
    return runs[0]
