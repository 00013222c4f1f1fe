"""The decision corpus: one folder per case, no code per case.

A case folder holds ``case.yaml`` and optionally ``run.yaml``, ``old.yaml``,
``policies.yaml``, ``approvers.yaml`` (each defaults to ``_base/``). ``case.yaml``::

    description: what the case shows
    operation: CREATE            # CREATE | UPDATE | DELETE (default CREATE)
    user: requester              # userInfo.username (default requester)
    groups: [agents-users]
    extra: {authentication.kubernetes.io/pod-name: [p]}   # userInfo.extra (token bound to a pod)
    now: 2026-11-21T12:00:00Z    # default
    namespace: agents            # request namespace (default: the run's)
    subResource: status          # optional
    records:                     # signed at test time with tests/corpus/keys/KEY.key, or
                                 # the security key file KEY (sk-dummy, ssh-keygen -Y sign)
      - key: alice               # also the approver name unless `approver:` is given
        skFlags: 1               # a security key's flags (the key file's) for this record:
                                 # 1 = touch without the PIN (user verification, 4)
        decision: approve        # approve | reject | bypass
        reason: ""
        issuedAt: ...            # default now - 1h
        ttl: 2h                  # default 2h
        environment: staging     # default: the bundle's environment (settings.environment)
        format: v1               # sign another record format instead: see FORMATS
        subject: agents/other    # attack knobs: another subject, another spec, tampering
        specFrom: other.yaml
        tamper: [no-signatures]  # see TAMPERS
        signedTimes: {issuedAt: "2026-W47-6T11:00:00Z"}   # literal texts signed in the
                                 # predicate instead of the record's times (validly signed)
    oldRecords: [...]            # the same, put on old.yaml
    annotation: "..."            # a literal annotation value instead of records
    repeat: 5000                 # the records list repeated (bounds tests)
    dryRun: true
    keysAlsoOf: {carol: bob}     # the compiled bundle edited as one compiled before the
                                 # compiler's key check (or made by hand and signed): carol
                                 # also holds bob's keys
    keysAlsoOfWithout: [userVerification]  # ... without these fields of bob's entries
    settings: {enforcement: warn, no_match: allow, exclude_namespaces: [sandbox]}
                                 # environment: default prod (CORPUS_ENVIRONMENT);
                                 # cluster_view: default off (cases of records alone)
    uid: run-uid-1               # metadata.uid of the run (and of old.yaml)
    finalizers: [...]            # metadata.finalizers of the run; default: the use finalizer
                                 # where settings say cluster_view: required, else none
    oldFinalizers: [...]         # the same for old.yaml (default: as finalizers)
    deleting: true               # old.yaml (and the run) carry a deletionTimestamp
    created: 2026-11-21T11:00:00Z  # the run's (and old.yaml's) creationTimestamp
    runAnnotations: {k: v}       # more annotations on the run (and old.yaml)
    view:                        # the cluster view decide() gets (absent: none at all)
      decisions:                 # ApprovalDecisions, records signed as in `records:`
        - key: bob
          decision: reject
          name: bob-reject       # any record recipe may be named, for `uses:`
          requestName: other     # default: the run's name
          created: ...           # creationTimestamp, default: the record's issuedAt
      uses:                      # ApprovalUses: the named records' statements
        - records: [alice, bob-reject]   # names of records of `records:` or `view.decisions:`
          runUid: uid-earlier
          runName: ...           # default: the run's name
          namespace: ...         # default: the run's namespace
          created: ...           # default: now - 1h
          expiresAt: ...         # default: now + 1h
      requests:                  # ApprovalRequests (for runs made from them)
        - uid: request-uid-1     # metadata.uid
          requester: alice       # spec.requester
          name: ...              # default: the run's name
          environment: ...       # default: the bundle's
          specDigest: ...        # default: the run's spec digest
          cancelled: true
          created: ...           # creationTimestamp, default: now - 1h
      problem: "watch lost 120s ago"   # the view is not usable
      offline: true              # OFFLINE (verify without --cluster)
    expect:
      allowed: false
      reason: missing-approvals
      message: |                 # exact text, optional
      warnings: [...]            # exact, optional
      contains: [...]            # substrings of the message, optional
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import yaml

from approvalgate.approvals import keys, records
from approvalgate.approvals.admission import request_for_manifest
from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.digest import spec_digest
from approvalgate.approvals.durations import parse_duration
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.policy import (
    BundleSettings,
    bundle_generation,
    compile_bundle,
    dump_bundle,
)
from approvalgate.approvals.view import OFFLINE, USE_FINALIZER, ClusterView, StaticView

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "decide"
KEYS = CORPUS.parent / "keys"
BASE = CORPUS / "_base"
DEFAULT_NOW = "2026-11-21T12:00:00Z"
CORPUS_ENVIRONMENT = "prod"
"""The environment of a case's bundle unless its settings name another."""
FORMATS = ("v1", "v2-without-environment")
"""Records signed (validly) in a format approvalgate no longer writes."""
TAMPERS = (
    "no-signatures",
    "payload-type",
    "predicate-type",
    "duplicate-signature",
    "keyid-of:NAME",
    "flip-payload",
    "second-signature:NAME",
    "garbage-signature",
    "signed-duplicate:FIELD=VALUE",
    "reencode-base64",
)


def case_names() -> list[str]:
    return sorted(p.name for p in CORPUS.iterdir() if p.is_dir() and not p.name.startswith("_"))


@dataclass
class Case:
    name: str
    folder: Path
    spec: dict[str, Any]
    request: dict[str, Any]
    bundle: Bundle
    now: datetime
    run_text: str  # the run manifest with the annotation, for the CLI
    old_text: str | None
    view: ClusterView | None = None
    """The cluster view of ``view:`` (None: the case gives decide() no view)."""

    @property
    def expect(self) -> dict[str, Any]:
        return dict(self.spec["expect"])


def _file(folder: Path, name: str) -> Path:
    own = folder / name
    return own if own.exists() else BASE / name


def _load_one(path: Path) -> dict[str, Any]:
    json_twin = path.with_suffix(".json")
    if json_twin.exists():  # what only JSON can say (e.g. integers beyond 2^53)
        return dict(json.loads(json_twin.read_text()))
    docs = [d.obj for d in load_manifests(path.read_text(), str(path)) if d.obj is not None]
    assert len(docs) == 1, f"{path} must hold one document"
    return dict(docs[0])


def compile_case_bundle(folder: Path, settings: BundleSettings | None = None) -> str:
    docs = []
    for name in ("policies.yaml", "approvers.yaml"):
        text = _file(folder, name).read_text()
        docs += [d.obj for d in load_manifests(text, name) if d.obj is not None]
    bundle, problems = compile_bundle(
        docs, settings or BundleSettings(environment=CORPUS_ENVIRONMENT, cluster_view="off")
    )
    errors = [p for p in problems if p.finding.severity == "error"]
    assert bundle is not None, f"{folder.name}: policies do not compile: {errors}"
    spec = yaml.safe_load(case.read_text()) if (case := folder / "case.yaml").exists() else {}
    also = (spec or {}).get("keysAlsoOf", {})
    if also:
        held = {a["name"]: a for a in bundle["approvers"]}
        dropped = (spec or {}).get("keysAlsoOfWithout", [])
        for name, owner in also.items():
            added = [{k: v for k, v in e.items() if k not in dropped} for e in held[owner]["keys"]]
            held[name]["keys"] = [*held[name]["keys"], *added]
        bundle["generation"] = bundle_generation(bundle)
    return dump_bundle(bundle)


def load_case(name: str) -> Case:
    folder = CORPUS / name
    spec = yaml.safe_load((folder / "case.yaml").read_text())
    now = records.parse_time(time_text(spec.get("now", DEFAULT_NOW)))
    settings = case_settings(spec)
    bundle_text = compile_case_bundle(folder, settings)
    run = _load_one(
        folder / "run.yaml" if (folder / "run.json").exists() else _file(folder, "run.yaml")
    )
    default_finalizers = [USE_FINALIZER] if settings.cluster_view == "required" else []
    finalizers = spec.get("finalizers", default_finalizers)
    _shape(run, spec, finalizers)
    named = _annotate(run, spec, "records", folder, now, settings.environment)
    old = None
    if (folder / "old.yaml").exists() or spec.get("operation") == "UPDATE":
        old = _load_one(
            _file(folder, "old.yaml")
            if (folder / "old.yaml").exists()
            else _file(folder, "run.yaml")
        )
        _shape(old, spec, spec.get("oldFinalizers", finalizers))
        named.update(_annotate(old, spec, "oldRecords", folder, now, settings.environment))
    view = (
        build_view(spec["view"], run, folder, now, settings.environment, named)
        if "view" in spec
        else None
    )
    request = dict(
        request_for_manifest(
            run,
            operation=spec.get("operation", "CREATE"),
            username=spec.get("user", "requester"),
            groups=spec.get("groups", ["agents-users"]),
            old=old,
        )
    )
    if "namespace" in spec:
        request["namespace"] = spec["namespace"]
    if "dryRun" in spec:
        request["dryRun"] = bool(spec["dryRun"])
    if "subResource" in spec:
        request["subResource"] = spec["subResource"]
    if "extra" in spec:
        request["userInfo"]["extra"] = {str(k): list(v) for k, v in spec["extra"].items()}
    return Case(
        name,
        folder,
        spec,
        request,
        parse_bundle_text(bundle_text),
        now,
        yaml.safe_dump(request["object"], sort_keys=False),
        yaml.safe_dump(request["oldObject"], sort_keys=False) if old else None,
        view,
    )


def is_view_case(spec: dict[str, Any]) -> bool:
    """A case judged with a cluster view, or where the bundle requires one."""
    return "view" in spec or spec.get("settings", {}).get("cluster_view") == "required"


def _shape(obj: dict[str, Any], spec: dict[str, Any], finalizers: list[str]) -> None:
    """The metadata knobs of a case: uid, finalizers, deletionTimestamp, annotations."""
    meta = obj.setdefault("metadata", {})
    if "uid" in spec:
        meta["uid"] = spec["uid"]
    if "created" in spec:
        meta["creationTimestamp"] = time_text(spec["created"])
    if finalizers:
        meta["finalizers"] = list(finalizers)
    if spec.get("deleting"):
        meta["deletionTimestamp"] = time_text(spec.get("now", DEFAULT_NOW))
    if spec.get("runAnnotations"):
        meta.setdefault("annotations", {}).update(
            {str(k): str(v) for k, v in spec["runAnnotations"].items()}
        )


def build_view(
    recipe: dict[str, Any],
    run: dict[str, Any],
    folder: Path,
    now: datetime,
    environment: str,
    named: dict[str, dict[str, Any]],
) -> ClusterView:
    """The StaticView of a case's ``view:`` (see the module docstring)."""
    if recipe.get("offline"):
        return OFFLINE
    meta = run["metadata"]
    namespace = meta.get("namespace", "default")
    named = dict(named)
    decisions = []
    for index, entry in enumerate(recipe.get("decisions", [])):
        request_name = entry.get("requestName", meta.get("name", ""))
        envelope = make_record(entry, run, folder, now, environment)
        if "name" in entry:
            named[entry["name"]] = envelope
        issued = (
            time_text(entry["issuedAt"])
            if "issuedAt" in entry
            else records.format_time(now - timedelta(hours=1))
        )
        decisions.append(
            {
                "apiVersion": "gates.proompteng.ai/v1alpha1",
                "kind": "ApprovalDecision",
                "metadata": {
                    "name": f"{request_name}-{index}",
                    "namespace": namespace,
                    "creationTimestamp": time_text(entry.get("created", issued)),
                },
                "spec": {
                    "requestName": request_name,
                    "decision": entry.get("decision", "approve"),
                    "approver": entry.get("approver", entry["key"]),
                    "record": envelope,
                },
            }
        )
    uses = []
    for entry in recipe.get("uses", []):
        statements = [_statement(named[name]) for name in entry.get("records", [])]
        uid = str(entry["runUid"])
        uses.append(
            {
                "apiVersion": "gates.proompteng.ai/v1alpha1",
                "kind": "ApprovalUse",
                "metadata": {
                    "name": uid,
                    "namespace": str(entry.get("namespace", namespace)),
                    "creationTimestamp": time_text(
                        entry.get("created", records.format_time(now - timedelta(hours=1)))
                    ),
                },
                "spec": {
                    "run": {"name": entry.get("runName", meta.get("name", "")), "uid": uid},
                    "environment": environment,
                    "statements": statements,
                    "expiresAt": time_text(
                        entry.get("expiresAt", records.format_time(now + timedelta(hours=1)))
                    ),
                },
            }
        )
    requests = []
    for entry in recipe.get("requests", []):
        spec_run = {
            "apiVersion": run.get("apiVersion"),
            "kind": "AgentRun",
            "metadata": {"name": entry.get("name", meta.get("name", ""))},
            "spec": run.get("spec"),
        }
        requests.append(
            {
                "apiVersion": "gates.proompteng.ai/v1alpha1",
                "kind": "ApprovalRequest",
                "metadata": {
                    "name": entry.get("name", meta.get("name", "")),
                    "namespace": namespace,
                    "uid": str(entry["uid"]),
                    "creationTimestamp": time_text(
                        entry.get("created", records.format_time(now - timedelta(hours=1)))
                    ),
                },
                "spec": {
                    "requester": entry["requester"],
                    "environment": entry.get("environment", environment),
                    "specDigest": entry.get("specDigest", spec_digest(run.get("spec"))),
                    "cancelled": bool(entry.get("cancelled", False)),
                    "run": spec_run,
                },
            }
        )
    return StaticView.build(
        requests=requests, decisions=decisions, uses=uses, problem=recipe.get("problem", "")
    )


def _statement(envelope: dict[str, Any]) -> str:
    """sha256 of an envelope's payload bytes (view.statement_digest of the parsed record)."""
    payload = str(envelope["payload"])
    raw = base64.urlsafe_b64decode(payload.translate(str.maketrans("+/", "-_")) + "==")
    return hashlib.sha256(raw).hexdigest()


def case_settings(spec: dict[str, Any]) -> BundleSettings:
    """The bundle settings of a case (``settings:``), in environment prod unless it says."""
    defaults = {
        "environment": CORPUS_ENVIRONMENT,
        "cluster_view": "off",
        "referenced_content": "off",
    }
    return BundleSettings(**{**defaults, **spec.get("settings", {})})


def _annotate(
    obj: dict[str, Any],
    spec: dict[str, Any],
    key: str,
    folder: Path,
    now: datetime,
    environment: str,
) -> dict[str, dict[str, Any]]:
    """Put the records of ``spec[key]`` on ``obj``; return the named ones (``name:``)."""
    named: dict[str, dict[str, Any]] = {}
    if key == "records" and "annotation" in spec:
        value = spec["annotation"]
    elif spec.get(key):
        envelopes = [make_record(r, obj, folder, now, environment) for r in spec[key]]
        named = {r["name"]: e for r, e in zip(spec[key], envelopes, strict=True) if "name" in r}
        value = json.dumps(envelopes * int(spec.get("repeat", 1)))
    else:
        return named
    obj.setdefault("metadata", {}).setdefault("annotations", {})[records.ANNOTATION] = value
    return named


def time_text(value: object) -> str:
    """A time of a case as the API server writes it (``2026-11-21T11:00:00Z``): YAML reads an
    unquoted time as a datetime, whose ``str`` (a space for the ``T``) is no RFC 3339."""
    if isinstance(value, datetime):
        assert value.tzinfo is not None, f"a time in the corpus must say its zone: {value}"
        return records.format_time(value)
    return str(value)


def signer(name: str, sk_flags: int | None = None) -> Any:
    """tests/corpus/keys/NAME.key (PEM), or the security key file NAME (sk-dummy, signed
    with ``ssh-keygen -Y sign``; ``sk_flags``: with the key file's flags set to these)."""
    if (KEYS / f"{name}.key").exists():
        assert sk_flags is None, f"{name} is no security key: skFlags is for sk keys"
        return keys.signer_from_pem((KEYS / f"{name}.key").read_bytes())
    from tests.support import ssh as ssh_tools

    ssh_tools.require_tools()
    return ssh_tools.KeygenSigner(KEYS / name, sk_flags)


def make_record(
    recipe: dict[str, Any],
    run: dict[str, Any],
    folder: Path,
    now: datetime,
    environment: str = CORPUS_ENVIRONMENT,
) -> dict[str, Any]:
    meta = run["metadata"]
    namespace = meta.get("namespace", "default")
    subject = records.subject_name(namespace, meta.get("name", ""), meta.get("generateName", ""))
    if "subject" in recipe:
        subject = records.SUBJECT_PREFIX + recipe["subject"]
    spec_obj = (
        _load_one(folder / recipe["specFrom"])["spec"] if "specFrom" in recipe else run.get("spec")
    )
    issued = (
        records.parse_time(time_text(recipe["issuedAt"]))
        if "issuedAt" in recipe
        else now - timedelta(hours=1)
    )
    claim = records.Claim(
        subject=subject,
        digest=spec_digest(spec_obj),
        decision=recipe.get("decision", "approve"),
        approver=recipe.get("approver", recipe["key"]),
        reason=recipe.get("reason", ""),
        issued_at=issued,
        expires_at=issued + timedelta(seconds=parse_duration(recipe.get("ttl", "2h"))),
        nonce=f"nonce-{recipe['key']}",
        environment=str(recipe.get("environment", environment)),
    )
    key = signer(recipe["key"], recipe.get("skFlags"))
    if "format" in recipe:
        envelope = sign_statement(_old_format(claim, recipe["format"]), key)
    elif "signedTimes" in recipe:
        statement = claim.statement()
        statement["predicate"].update({str(k): str(v) for k, v in recipe["signedTimes"].items()})
        envelope = sign_statement(statement, key)
    else:
        envelope = records.sign(claim, key)
    for tamper in recipe.get("tamper", []):
        envelope = _tamper(envelope, tamper, claim)
    return envelope


def _old_format(claim: records.Claim, name: str) -> dict[str, Any]:
    """The statement of ``claim`` in a format approvalgate reads but no longer signs."""
    statement = claim.statement()
    del statement["predicate"]["environment"]
    if name == "v1":
        statement["predicateType"] = records.PREDICATE_TYPE_V1
    elif name != "v2-without-environment":
        raise AssertionError(f"unknown format {name!r}; known: {FORMATS}")
    return statement


def sign_statement(statement: dict[str, Any], key: Any) -> dict[str, Any]:
    """A validly signed envelope around any statement (records.sign signs only v2)."""
    from securesystemslib.dsse import Envelope

    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    envelope = Envelope(payload=payload, payload_type=records.PAYLOAD_TYPE, signatures={})
    envelope.sign(key)
    return dict(envelope.to_dict())


def _tamper(envelope: dict[str, Any], how: str, claim: records.Claim) -> dict[str, Any]:
    env = copy.deepcopy(envelope)
    kind, _, arg = how.partition(":")
    if kind == "no-signatures":
        env["signatures"] = []
    elif kind == "payload-type":
        env["payloadType"] = "application/json"
    elif kind == "predicate-type":
        statement = claim.statement()
        statement["predicateType"] = "https://slsa.dev/provenance/v1"
        env["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    elif kind == "duplicate-signature":
        env["signatures"].append(dict(env["signatures"][0]))
    elif kind == "keyid-of":
        env["signatures"][0]["keyid"] = signer(arg).public_key.keyid
    elif kind == "flip-payload":
        statement = json.loads(base64.b64decode(env["payload"]))
        statement["predicate"]["expiresAt"] = "2099-01-01T00:00:00Z"
        env["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    elif kind == "garbage-signature":  # the same payload, a signature nobody made
        env["signatures"][0]["sig"] = base64.b64encode(bytes(64)).decode()
    elif kind == "signed-duplicate":  # the key signs a predicate holding FIELD twice:
        # VALUE first, the record's own last (what Python, Go and JavaScript keep)
        field_name, _, value = arg.partition("=")
        payload = json.dumps(claim.statement(), sort_keys=True, separators=(",", ":"))
        payload = payload.replace(
            '"predicate":{',
            '"predicate":{' + json.dumps(field_name) + ":" + json.dumps(value) + ",",
            1,
        )
        from securesystemslib.dsse import Envelope

        dsse = Envelope(payload=payload.encode(), payload_type=records.PAYLOAD_TYPE, signatures={})
        dsse.sign(signer(claim.approver))
        env = dict(dsse.to_dict())
    elif kind == "reencode-base64":  # the same bytes: URL-safe alphabet, no padding, and the
        # payload's unused trailing bits set (a decoder that ignores them reads the same bytes)
        env["payload"] = _noncanonical(env["payload"])
        for sig in env["signatures"]:
            sig["sig"] = _noncanonical(sig["sig"])
        assert all(  # a 64-byte signature has spare bits: its text always changes
            a["sig"] != b["sig"]
            for a, b in zip(env["signatures"], envelope["signatures"], strict=True)
        )
    elif kind == "second-signature":
        from securesystemslib.dsse import Envelope

        dsse = Envelope.from_dict(copy.deepcopy(env))
        key = signer(arg)
        dsse.sign(key)
        env = dsse.to_dict()
    else:
        raise AssertionError(f"unknown tamper {how!r}; known: {TAMPERS}")
    return env


_B64: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _noncanonical(text: str) -> str:
    """``text`` (standard base64) in the URL-safe alphabet without padding, its last
    character's unused low bits set where it has any: other text, the same bytes."""
    raw = base64.b64decode(text)
    out = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    spare = {1: 0b1111, 2: 0b11}.get(len(raw) % 3, 0)
    if spare:
        out = out[:-1] + _B64[_B64.index(out[-1]) | spare]
    assert base64.urlsafe_b64decode(out + "=" * (-len(out) % 4)) == raw
    return out
