"""Every attack of security.md that kubectl can carry, against a real kube-apiserver.

The real webhook (``approvalgate webhook serve``) is registered the way the chart does it
(tests/e2e/gate.py). Records are signed in-process with the approvers' real keys (the Gate's
re-keyed example repo), so each attack costs one kubectl call. For a webhook denial the
whole kubectl error must be exactly the message decide() gives for the same object, bundle
and time: the API server showed the webhook what we think it did. Nothing denied may exist
afterwards.

Not applicable here (docs/reliability.md says where they are tested): key windows (the e2e
approvers have none), two keys of one approver, internal errors in decide(), and bodies the
API server never forwards (invalid UTF-8, duplicate keys, NaN are normalised or refused by
kube-apiserver itself, which is tested below too).
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from securesystemslib.dsse import Envelope

from approvalgate.approvals import keys, records
from approvalgate.approvals.admission import request_for_manifest
from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.decide import decide
from approvalgate.approvals.digest import MAX_SPEC_BYTES, spec_digest
from approvalgate.approvals.view import ClusterView
from approvalgate.kube.client import Client
from approvalgate.kube.view import list_view
from tests.e2e.controlplane import ControlPlane
from tests.e2e.gate import CLI, ENFORCED, ENV, NOT_ENFORCED, WEBHOOK_NAME, Gate, run_manifest
from tests.integration.harness import write_atomic

pytestmark = pytest.mark.e2e
REQUESTER = "requester"
ANNOTATION = records.ANNOTATION
CRD = "agentruns.agents.proompteng.ai"
EXTRA_VERSION = "attack1"
CALLS: Counter[str] = Counter()  # kubectl calls made by this module's tests


@pytest.fixture(scope="module")
def gate(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    gate = Gate(control_plane, tmp_path_factory.mktemp("attacks"))
    gate.prepare()
    for ns in (ENFORCED, NOT_ENFORCED, "agents-prod"):
        control_plane.kubectl("admin", "create", "namespace", ns, check=False)
    gate.start()
    gate.register()
    original = control_plane.kubectl

    def counting(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        CALLS["kubectl"] += 1
        return original(*args, **kwargs)

    control_plane.kubectl = counting  # type: ignore[method-assign]
    try:
        yield gate
    finally:
        control_plane.kubectl = original  # type: ignore[method-assign]
        print(f"\nattacks-e2e: {dict(CALLS)}")  # figures for docs/reliability.md
        gate.unregister()
        gate.stop()


@dataclass
class Signer:
    """Signs records with the Gate's approver keys (or a stranger's) at the real time."""

    gate: Gate

    def key(self, name: str) -> Any:
        return keys.signer_from_pem((self.gate.keys / f"{name}.key").read_bytes())

    @property
    def bundle(self) -> Bundle:
        return parse_bundle_text(self.gate.bundle.read_text())

    def claim(
        self,
        run: dict[str, Any],
        approver: str,
        *,
        decision: str = "approve",
        reason: str = "",
        issued: timedelta = timedelta(minutes=-5),
        ttl: timedelta = timedelta(hours=1),
        subject: str | None = None,
        spec: Any = None,
        environment: str = ENV,
    ) -> records.Claim:
        meta = run["metadata"]
        now = datetime.now(UTC).replace(microsecond=0)
        return records.Claim(
            subject=subject
            or records.subject_name(
                meta["namespace"], meta.get("name", ""), meta.get("generateName", "")
            ),
            digest=spec_digest(run["spec"] if spec is None else spec),
            decision=decision,  # type: ignore[arg-type]
            approver=approver,
            reason=reason,
            issued_at=now + issued,
            expires_at=now + issued + ttl,
            nonce=records.new_nonce(),
            environment=environment,
        )

    def record(self, run: dict[str, Any], approver: str, *, key: Any = None, **kw: Any) -> Any:
        return records.sign(self.claim(run, approver, **kw), key or self.key(approver))

    def raw(self, payload: bytes, payload_type: str, key: Any) -> dict[str, Any]:
        """A DSSE envelope really signed over ``payload`` as ``payload_type``."""
        envelope = Envelope(payload=payload, payload_type=payload_type, signatures={})
        envelope.sign(key)
        return dict(envelope.to_dict())


def run(name: str, namespace: str = ENFORCED, *, generate: bool = False) -> dict[str, Any]:
    """A run with the approval-use finalizer (as `approve` leaves it where the cluster view
    is required, which staging requires): what the attacks change is then what decides."""
    obj: dict[str, Any] = yaml.safe_load(
        run_manifest(name, namespace, generate=generate, finalizer=True)
    )
    return obj


def annotated(obj: dict[str, Any], value: str | list[Any], **extra: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    text = value if isinstance(value, str) else json.dumps(value)
    out["metadata"]["annotations"] = {ANNOTATION: text, **extra}
    return out


def create(gate: Gate, obj: dict[str, Any], user: str = REQUESTER, *args: str) -> Any:
    return gate.kubectl(user, "create", "-f", "-", *args, manifest=json.dumps(obj))


def denial(message: str) -> str:
    return (
        'Error from server (Forbidden): error when creating "STDIN": admission webhook '
        f'"{WEBHOOK_NAME}" denied the request: {message}'
    )


def cluster_view(gate: Gate) -> ClusterView:
    """The decisions and uses the webhook's view holds (listed once, as admin)."""
    with Client.connect(gate.plane.kubeconfig("admin")) as client:
        return list_view(client)


def stored_uid(gate: Gate, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with the uid of the stored run of its name, if there is one (an UPDATE is
    judged with it: a run's own use does not count against it)."""
    meta = obj["metadata"]
    if "uid" in meta or not meta.get("name"):
        return obj
    done = gate.kubectl(
        "admin", "get", "agentrun", meta["name"], "-n", meta["namespace"], "-o", "json"
    )
    if done.returncode != 0:
        return obj
    out = copy.deepcopy(obj)
    out["metadata"]["uid"] = json.loads(done.stdout)["metadata"]["uid"]
    return out


def expected_message(s: Signer, obj: dict[str, Any], user: str, stderr: str = "") -> str:
    """decide()'s message for ``obj`` as the API server sends it (a generateName run gets its
    name before admission: taken from the actual error)."""
    prefix = obj["metadata"].get("generateName")
    if prefix:
        obj = copy.deepcopy(obj)
        found = re.search(re.escape(prefix) + r"[a-z0-9]{5}", stderr)
        assert found, stderr
        obj["metadata"]["name"] = found.group(0)
    request = request_for_manifest(stored_uid(s.gate, obj), username=user, groups=["agents-users"])
    decision = decide(request, s.bundle, datetime.now(UTC), cluster_view(s.gate))
    assert not decision.allowed, decision
    return decision.message


# --- the attack table ------------------------------------------------------------------------

Build = Callable[[Signer], tuple[dict[str, Any], str]]


def _two(s: Signer, obj: dict[str, Any], **kw: Any) -> list[Any]:
    return [s.record(obj, "alice", **kw), s.record(obj, "bob", **kw)]


def _copied_name(s: Signer) -> tuple[dict[str, Any], str]:
    original = run("atk-original")
    copied = run("atk-copied-name")
    return annotated(copied, _two(s, original)), REQUESTER


def _copied_namespace(s: Signer) -> tuple[dict[str, Any], str]:
    there = run("atk-copied-ns", "agents-prod")
    here = run("atk-copied-ns")
    return annotated(here, _two(s, there)), REQUESTER


def _other_prefix(s: Signer) -> tuple[dict[str, Any], str]:
    other = run("atk-other", generate=True)
    mine = run("atk-prefix", generate=True)
    return annotated(mine, _two(s, other)), REQUESTER


def _changed(path: tuple[str, ...], value: Any) -> Build:
    def build(s: Signer) -> tuple[dict[str, Any], str]:
        approved = run(f"atk-changed-{path[-1].lower()}")
        envelopes = _two(s, approved)
        changed = copy.deepcopy(approved)
        target = changed["spec"]
        for step in path[:-1]:
            target = target.setdefault(step, {})
        target[path[-1]] = value
        return annotated(changed, envelopes), REQUESTER

    return build


def _with(
    name: str, make: Callable[[Signer, dict[str, Any]], list[Any]], user: str = REQUESTER
) -> Build:
    def build(s: Signer) -> tuple[dict[str, Any], str]:
        obj = run(name)
        return annotated(obj, make(s, obj)), user

    return build


def _literal(name: str, value: str) -> Build:
    return lambda s: (annotated(run(name), value), REQUESTER)


def _stranger_keyid(s: Signer, obj: dict[str, Any]) -> list[Any]:
    stranger = keys.generate()
    envelope = s.record(obj, "alice", key=stranger)
    envelope["signatures"][0]["keyid"] = s.key("alice").public_key.keyid
    return [envelope, s.record(obj, "bob")]


def _payload_type(s: Signer, obj: dict[str, Any]) -> list[Any]:
    statement = s.claim(obj, "alice").statement()
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    return [s.raw(payload, "application/json", s.key("alice")), s.record(obj, "bob")]


def _predicate_type(s: Signer, obj: dict[str, Any]) -> list[Any]:
    statement = s.claim(obj, "alice").statement()
    statement["predicateType"] = "https://slsa.dev/provenance/v1"
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    return [s.raw(payload, records.PAYLOAD_TYPE, s.key("alice")), s.record(obj, "bob")]


def _no_signatures(s: Signer, obj: dict[str, Any]) -> list[Any]:
    alice = s.record(obj, "alice")
    alice["signatures"] = []
    return [alice, s.record(obj, "bob")]


def _duplicate_signature(s: Signer, obj: dict[str, Any]) -> list[Any]:
    alice = s.record(obj, "alice")
    doubled = copy.deepcopy(alice)
    doubled["signatures"].append(dict(doubled["signatures"][0]))
    return [alice, doubled]


def _veto(s: Signer, obj: dict[str, Any]) -> list[Any]:
    return [
        *_two(s, obj, issued=timedelta(minutes=-10)),
        s.record(obj, "bob", decision="reject", reason="no", issued=timedelta(minutes=-5)),
    ]


def _author(s: Signer) -> tuple[dict[str, Any], str]:
    obj = run("atk-author")
    return annotated(
        obj, _two(s, obj), **{"approvals.proompteng.ai/requested-by": "alice"}
    ), REQUESTER


def _unknown_key(s: Signer, o: dict[str, Any]) -> list[Any]:
    return [s.record(o, "alice", key=keys.generate()), s.record(o, "bob")]


def _by(*approvers: str, **kw: Any) -> Callable[[Signer, dict[str, Any]], list[Any]]:
    return lambda s, o: [s.record(o, who, **kw) for who in approvers]


def _old_format(format_name: str) -> Callable[[Signer, dict[str, Any]], list[Any]]:
    """alice's record validly signed in a format approvalgate reads but no longer writes
    (class 21): v1 (no environment, the v1 predicate type) or v2 naming no environment; bob's
    as approve writes it."""

    def make(s: Signer, obj: dict[str, Any]) -> list[Any]:
        statement = s.claim(obj, "alice").statement()
        del statement["predicate"]["environment"]
        if format_name == "v1":
            statement["predicateType"] = records.PREDICATE_TYPE_V1
        payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
        return [s.raw(payload, records.PAYLOAD_TYPE, s.key("alice")), s.record(obj, "bob")]

    return make


def _without_finalizer(s: Signer) -> tuple[dict[str, Any], str]:
    """Approved by both, without the approval-use finalizer the view requires (class 21):
    its use could not hold it until recorded."""
    obj = run("atk-no-finalizer")
    del obj["metadata"]["finalizers"]
    return annotated(obj, _two(s, obj)), REQUESTER


SPEC = "approves another spec"
ONE_OF_TWO = "1 of 2"
SELF = "nobody approves their own run"
ATTACKS: dict[str, tuple[Build, str]] = {
    # 1
    "no-annotation": (lambda s: (run("atk-none"), REQUESTER), "is missing"),
    "empty-annotation": (_literal("atk-empty", ""), "annotation is empty"),
    "annotation-not-json": (_literal("atk-not-json", "approved by alice"), "not valid JSON"),
    "annotation-not-array": (_literal("atk-not-array", '{"approver": "alice"}'), "JSON array"),
    "annotation-10000-entries": (_literal("atk-10000", json.dumps([{}] * 10_000)), "10000 records"),
    # 2
    "copied-to-other-name": (_copied_name, "approves another run (agents/atk-original)"),
    "copied-to-other-namespace": (_copied_namespace, "approves another run (agents-prod/"),
    "generatename-other-prefix": (_other_prefix, "approves another run (agents/atk-other-*)"),
    # 3
    "spec-changed-parameters": (_changed(("parameters", "task"), "Delete it all"), SPEC),
    "spec-changed-runtime-config": (
        _changed(("runtime", "config", "ttlSecondsAfterFinished"), 1),
        SPEC,
    ),
    "spec-field-added-image": (_changed(("workload", "image"), "evil:latest"), SPEC),
    # 4
    "expired": (_with("atk-expired", _by("alice", "bob", issued=timedelta(hours=-3))), "expired"),
    "issued-in-future": (
        _with("atk-future", _by("alice", "bob", issued=timedelta(hours=1))),
        "issued in the future",
    ),
    # 5
    "unknown-key": (_with("atk-unknown-key", _unknown_key), ONE_OF_TWO),
    "approver-not-named-by-policy": (_with("atk-not-named", _by("alice", "dana")), ONE_OF_TWO),
    "keyid-points-at-real-key-wrong-signer": (_with("atk-keyid", _stranger_keyid), ONE_OF_TWO),
    # 6
    "payload-type-swapped": (_with("atk-payload-type", _payload_type), "payloadType"),
    "predicate-type-swapped": (_with("atk-predicate", _predicate_type), "predicateType"),
    "no-signatures": (_with("atk-no-sigs", _no_signatures), "no signatures"),
    "duplicate-signature": (_with("atk-dup-sig", _duplicate_signature), ONE_OF_TWO),
    "same-approver-twice": (_with("atk-twice", _by("alice", "alice")), ONE_OF_TWO),
    # 7
    "self-approval-requester": (_with("atk-self", _by("alice", "bob"), user="alice"), SELF),
    "self-approval-author": (_author, SELF),
    # 8
    "reject-veto": (_with("atk-veto", _veto), "rejected by bob"),
    # 9
    "bypass-without-reason": (
        _with("atk-bypass-noreason", _by("oncall", decision="bypass")),
        "a bypass needs a reason",
    ),
    "bypass-not-allowed": (
        _with("atk-bypass-alice", _by("alice", decision="bypass", reason="urgent")),
        "alice may not bypass",
    ),
    "bypass-ttl-over-cap": (
        _with(
            "atk-bypass-ttl",
            _by("oncall", decision="bypass", reason="incident", ttl=timedelta(hours=3)),
        ),
        "over the policy's cap",
    ),
    # 21 (seventh pass: at every level): records of another format, the use finalizer
    "record-format-v1": (_with("atk-format-v1", _old_format("v1")), "names no environment"),
    "record-without-environment": (
        _with("atk-no-environment", _old_format("v2-without-environment")),
        "predicate names no environment",
    ),
    "view-missing-finalizer": (_without_finalizer, "gates.proompteng.ai/approval-use"),
    # 14 (what the API server forwards)
    "annotation-deeply-nested": (
        _literal("atk-deep", "[" * 100_000 + "]" * 100_000),
        "not valid JSON",
    ),
    # past digest.MAX_SPEC_BYTES: the API server hands it over (up to 3 MiB), the webhook digests
    # no more than the bound of it and names the bound
    "one-mebibyte-spec": (
        _changed(("parameters", "task"), "x" * 2**20),
        f"larger than {MAX_SPEC_BYTES} bytes as RFC 8785 canonical JSON",
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attack_is_denied_by_the_webhook(gate: Gate, attack: str) -> None:
    build, expect = ATTACKS[attack]
    CALLS["attack-table creates"] += 1
    signer = Signer(gate)
    obj, user = build(signer)
    done = create(gate, obj, user)
    assert done.returncode == 1, done.stdout
    assert expect in done.stderr, done.stderr[:2000]
    assert done.stderr.strip() == denial(expected_message(signer, obj, user, done.stderr))


def test_nothing_denied_exists(gate: Gate) -> None:
    names = gate.kubectl("admin", "get", "agentruns", "-A", "-o", "name").stdout.split()
    assert [n for n in names if "/atk-" in n and "atk-ok" not in n] == []


# --- 10: UPDATEs, and /scale --------------------------------------------------------------------


def test_updates_that_change_the_spec_are_denied(gate: Gate) -> None:
    s = Signer(gate)
    approved = run("atk-update")
    done = create(gate, annotated(approved, _two(s, approved)))
    assert done.returncode == 0, done.stderr
    stored = json.loads(
        gate.kubectl("admin", "get", "agentrun", "atk-update", "-n", ENFORCED, "-o", "json").stdout
    )
    # keeps the annotation, changes the spec
    patched = gate.kubectl(
        REQUESTER,
        "patch",
        "agentrun",
        "atk-update",
        "-n",
        ENFORCED,
        "--type",
        "merge",
        "-p",
        '{"spec":{"parameters":{"task":"patched"}}}',
    )
    assert patched.returncode == 1 and "approves another spec" in patched.stderr, patched.stderr
    # swaps in real approvals of another spec
    other = copy.deepcopy(approved)
    other["spec"]["parameters"]["task"] = "other"
    third = copy.deepcopy(approved)
    third["spec"]["parameters"]["task"] = "third"
    swapped = annotated(third, _two(s, other))
    swapped["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
    replaced = gate.kubectl(REQUESTER, "replace", "-f", "-", manifest=json.dumps(swapped))
    assert replaced.returncode == 1 and "approves another spec" in replaced.stderr, replaced.stderr
    # even with real approvals of the new spec: where the view is required (here) an admitted
    # run keeps its spec, as its one ApprovalUse records what it was admitted on
    changed = "an admitted run keeps its spec"
    fresh = annotated(third, _two(s, third))
    fresh["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
    replaced = gate.kubectl(REQUESTER, "replace", "-f", "-", manifest=json.dumps(fresh))
    assert replaced.returncode == 1 and changed in replaced.stderr, replaced.stderr
    now = json.loads(
        gate.kubectl("admin", "get", "agentrun", "atk-update", "-n", ENFORCED, "-o", "json").stdout
    )
    assert now["spec"] == approved["spec"]
    # /scale: the CRD has no scale subresource, so there is nothing to go through
    scaled = gate.kubectl(
        "admin", "scale", "agentrun", "atk-update", "-n", ENFORCED, "--replicas=2"
    )
    assert scaled.returncode == 1 and "NotFound" in scaled.stderr, scaled.stderr


TEMPLATE = "agents.proompteng.ai/template"
TEMPLATE_POINTER = TEMPLATE.replace("/", "~1")  # JSON Pointer (RFC 6901) escape


def test_a_template_made_live_after_its_approvals_expired_is_denied(gate: Gate) -> None:
    """Removing the upstream template annotation makes the platform run a template: judged
    as an admission now, whichever spelling the platform reads as "true" (it trims the
    value as JavaScript does: a leading U+FEFF too, which Python's strip() keeps)."""
    s = Signer(gate)
    ttl = timedelta(minutes=5, seconds=12)  # issued 5 minutes ago: expires in 12 s
    names = {"atk-template-plain": "true", "atk-template-bom": "\ufefftrue"}
    for name, value in names.items():
        obj = run(name)
        done = create(gate, annotated(obj, _two(s, obj, ttl=ttl), **{TEMPLATE: value}))
        assert done.returncode == 0, done.stderr
    time.sleep(14)
    for name in names:
        live = gate.kubectl(
            REQUESTER,
            "patch",
            "agentrun",
            name,
            "-n",
            ENFORCED,
            "--type",
            "json",
            "-p",
            json.dumps([{"op": "remove", "path": "/metadata/annotations/" + TEMPLATE_POINTER}]),
        )
        assert live.returncode == 1, (name, live.stdout)
        assert "record 0 by alice: expired at" in live.stderr, (name, live.stderr)


def test_an_admitted_run_made_a_template_is_denied_where_approvals_are_used_once(
    gate: Gate,
) -> None:
    """The platform drops a template's runtime (status phase Template, no runtimeRef) and
    submits it again once the annotation is gone: live -> template -> live would execute one
    approved run twice. A template made live while its approvals hold is admitted (once)."""
    s = Signer(gate)
    for name, value in {"atk-made-template": "true", "atk-made-template-bom": "\ufefftrue"}.items():
        obj = run(name)
        assert create(gate, annotated(obj, _two(s, obj))).returncode == 0
        patch = {"metadata": {"annotations": {TEMPLATE: value}}}
        made = gate.kubectl(
            REQUESTER, "patch", "agentrun", name, "-n", ENFORCED, "--type", "merge",
            "-p", json.dumps(patch),
        )  # fmt: skip
        assert made.returncode == 1, (name, made.stdout)
        assert "an admitted run cannot be made a template" in made.stderr, (name, made.stderr)
    obj = run("atk-ok-template")
    assert create(gate, annotated(obj, _two(s, obj), **{TEMPLATE: "true"})).returncode == 0
    live = gate.kubectl(
        REQUESTER, "patch", "agentrun", "atk-ok-template", "-n", ENFORCED, "--type", "json",
        "-p", json.dumps([{"op": "remove", "path": "/metadata/annotations/" + TEMPLATE_POINTER}]),
    )  # fmt: skip
    assert live.returncode == 0, live.stderr


def _scale(gate: Gate, name: str, replicas: int) -> Any:
    return gate.kubectl(
        "admin", "scale", "agentrun", name, "-n", ENFORCED, f"--replicas={replicas}"
    )


def _until_scale(gate: Gate, name: str, served: bool) -> Any:
    """The API server serves a changed CRD's subresources asynchronously."""
    deadline = time.monotonic() + 30
    while True:
        done = _scale(gate, name, 5)
        if ("NotFound" not in done.stderr) == served or time.monotonic() > deadline:
            return done
        time.sleep(0.3)


def test_a_scale_subresource_the_crd_gains_later_is_judged(gate: Gate) -> None:
    """Classes 10 and 13 through the webhook configuration: a CRD that gains a scale
    subresource lets /scale write into the spec (specReplicasPath). The chart sends
    `agentruns/scale` (and the parents' and content's) from the start: the write is judged
    and denied, and the admitted run keeps its spec."""
    s = Signer(gate)
    approved = run("atk-scale")
    approved["spec"]["ttlSecondsAfterFinished"] = 600
    done = create(gate, annotated(approved, _two(s, approved)))
    assert done.returncode == 0, done.stderr
    crd = "agentruns.agents.proompteng.ai"
    path = "/spec/versions/0/subresources/scale"
    scale = {
        "specReplicasPath": ".spec.ttlSecondsAfterFinished",
        "statusReplicasPath": ".status.observedGeneration",
    }
    patch = json.dumps([{"op": "add", "path": path, "value": scale}])
    added = gate.kubectl("admin", "patch", "crd", crd, "--type", "json", "-p", patch)
    assert added.returncode == 0, added.stderr
    try:
        scaled = _until_scale(gate, "atk-scale", served=True)
        assert scaled.returncode == 1 and WEBHOOK_NAME in scaled.stderr, scaled.stderr
        stored = json.loads(
            gate.kubectl(
                "admin", "get", "agentrun", "atk-scale", "-n", ENFORCED, "-o", "json"
            ).stdout
        )
        assert stored["spec"]["ttlSecondsAfterFinished"] == 600
    finally:
        removed = json.dumps([{"op": "remove", "path": path}])
        gate.kubectl("admin", "patch", "crd", crd, "--type", "json", "-p", removed)
        _until_scale(gate, "atk-scale", served=False)


# --- 11: dry-run -------------------------------------------------------------------------------


def test_dry_run_gets_the_same_verdict_and_leaves_nothing(gate: Gate) -> None:
    s = Signer(gate)
    obj = run("atk-dry")
    real = create(gate, obj)
    dry = create(gate, obj, REQUESTER, "--dry-run=server")
    assert real.returncode == dry.returncode == 1
    assert dry.stderr == real.stderr
    ok = create(gate, annotated(obj, _two(s, obj)), REQUESTER, "--dry-run=server")
    assert ok.returncode == 0, ok.stderr
    assert "NotFound" in gate.kubectl("admin", "get", "agentrun", "atk-dry", "-n", ENFORCED).stderr


# --- 12: AdmissionReview v1beta1 -----------------------------------------------------------------


def _register(gate: Gate, versions: list[str]) -> None:
    config = gate.webhook_configuration()
    config["webhooks"][0]["admissionReviewVersions"] = versions
    gate.plane.kubectl("admin", "apply", "-f", "-", input=json.dumps(config))


def _seen_version(gate: Gate, version: str, timeout: float = 30) -> None:
    """Send probes until the webhook logs a review of ``version`` (registration is async)."""
    probe = json.dumps(run("atk-probe"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mark = _log_size(gate)
        gate.kubectl(REQUESTER, "create", "--dry-run=server", "-f", "-", manifest=probe)
        if f'"api_version": "{version}"' in _log_since(gate, mark):
            return
        time.sleep(0.2)
    raise AssertionError(f"the webhook never saw an {version} review")


def _log_size(gate: Gate) -> int:
    return (gate.work / "webhook.log").stat().st_size


def _log_since(gate: Gate, mark: int) -> str:
    with (gate.work / "webhook.log").open("rb") as log:
        log.seek(mark)
        return log.read().decode(errors="replace")


def test_admission_review_v1beta1_gets_the_same_verdict(gate: Gate) -> None:
    s = Signer(gate)
    obj = run("atk-beta")
    v1 = create(gate, obj, REQUESTER, "--dry-run=server")
    _register(gate, ["v1beta1"])
    try:
        _seen_version(gate, "admission.k8s.io/v1beta1")
        beta = create(gate, obj, REQUESTER, "--dry-run=server")
        assert beta.returncode == v1.returncode == 1
        assert beta.stderr == v1.stderr
        approved = create(gate, annotated(obj, _two(s, obj)), REQUESTER, "--dry-run=server")
        assert approved.returncode == 0, approved.stderr
    finally:
        _register(gate, ["v1"])
        _seen_version(gate, "admission.k8s.io/v1")


# --- 13: the same resource through another API version ------------------------------------------


def _crd(gate: Gate) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(gate.kubectl("admin", "get", "crd", CRD, "-o", "json").stdout)
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        out["metadata"].pop(key, None)
    out.pop("status", None)
    return out


def _wait_served(gate: Gate, version: str, present: bool) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = gate.kubectl(
            "admin", "get", f"agentruns.{version}.agents.proompteng.ai", "-n", ENFORCED
        )
        if (done.returncode == 0) == present:
            return
        time.sleep(0.2)
    raise AssertionError(f"{version} of agentruns never became {'served' if present else 'gone'}")


def test_another_served_version_of_agentruns_is_gated_the_same(gate: Gate) -> None:
    """A second served version, same schema, is added to the CRD for this test: the webhook's
    rule (``apiVersions: ["*"]``, matchPolicy Equivalent) sends it to us, and the approvals,
    which name the run and its spec but no version, apply unchanged. The version's name is
    not Kubernetes-like (``attack1``), so it never becomes the preferred version that other
    tests' cached kubectl discovery would then ask for after it is removed again."""
    s = Signer(gate)
    original = _crd(gate)
    extended = copy.deepcopy(original)
    served = copy.deepcopy(original["spec"]["versions"][0])
    served.update(name=EXTRA_VERSION, served=True, storage=False)
    extended["spec"]["versions"].append(served)
    gate.kubectl("admin", "replace", "-f", "-", manifest=json.dumps(extended))
    try:
        _wait_served(gate, EXTRA_VERSION, True)
        obj = run("atk-other-version")
        obj["apiVersion"] = f"agents.proompteng.ai/{EXTRA_VERSION}"
        denied = create(gate, obj)
        assert denied.returncode == 1, denied.stdout
        assert denied.stderr.strip() == denial(expected_message(s, obj, REQUESTER))
        admitted = create(gate, annotated(obj, _two(s, obj)))
        assert admitted.returncode == 0, admitted.stderr
    finally:
        current = _crd(gate)
        current["spec"]["versions"] = original["spec"]["versions"]
        gate.kubectl("admin", "replace", "-f", "-", manifest=json.dumps(current))
        _wait_served(gate, EXTRA_VERSION, False)


# --- 14: bodies kube-apiserver normalises or refuses before us ------------------------------------


def _raw_create(gate: Gate, body: bytes, user: str = REQUESTER) -> subprocess.CompletedProcess[str]:
    path = gate.work / f"raw-{secrets.token_hex(4)}.json"
    path.write_bytes(body)
    CALLS["kubectl --raw"] += 1
    plane = gate.plane
    return subprocess.run(
        [
            str(plane.binaries.kubectl),
            f"--kubeconfig={plane.kubeconfig(user)}",
            "create",
            "--raw",
            f"/apis/agents.proompteng.ai/v1alpha1/namespaces/{ENFORCED}/agentruns",
            "-f",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_duplicate_keys_nan_and_invalid_utf8_never_smuggle_a_spec(gate: Gate) -> None:
    """Raw bodies (kubectl create --raw, no client-side parsing): whatever kube-apiserver makes
    of them, what it stores is what was approved, or nothing."""
    s = Signer(gate)
    approved = run("atk-dup")
    text = json.dumps(annotated(approved, _two(s, approved)))
    task = '"task": "Update onboarding flow"'
    duplicate = text.replace(task, task + ', "task": "Delete everything"').encode()
    done = _raw_create(gate, duplicate)
    if done.returncode == 0:  # the API server kept one of the two values: it must be ours
        stored = json.loads(
            gate.kubectl("admin", "get", "agentrun", "atk-dup", "-n", ENFORCED, "-o", "json").stdout
        )
        assert spec_digest(stored["spec"]) == spec_digest(approved["spec"])
    else:
        assert "approves another spec" in done.stderr or "duplicate" in done.stderr, done.stderr
    nan = json.dumps(run("atk-nan")).replace(
        '"ttlSecondsAfterFinished": 600', '"ttlSecondsAfterFinished": NaN'
    )
    done = _raw_create(gate, nan.encode())
    assert done.returncode == 1 and WEBHOOK_NAME not in done.stderr  # refused by the API server
    utf8 = (
        json.dumps(run("atk-utf8"))
        .replace("Update onboarding flow", "Update \udcff")
        .encode("utf-8", "surrogateescape")
    )
    done = _raw_create(gate, utf8)
    assert done.returncode == 1, done.stdout  # refused, or forwarded as valid UTF-8 and denied
    assert WEBHOOK_NAME in done.stderr or "Invalid" in done.stderr or "invalid" in done.stderr, (
        done.stderr
    )
    big = annotated(run("atk-big-annotation"), "x" * (256 * 1024 + 1))
    done = create(gate, big)
    assert done.returncode == 1 and "Too long" in done.stderr, done.stderr  # kube-apiserver's limit
    for name in ("atk-nan", "atk-utf8", "atk-big-annotation"):
        assert "NotFound" in gate.kubectl("admin", "get", "agentrun", name, "-n", ENFORCED).stderr


def test_fields_spelt_in_another_case_or_numbers_spelt_otherwise_never_smuggle_a_spec(
    gate: Gate,
) -> None:
    """Go's encoding/json matches struct fields case-insensitively, but a custom resource is
    decoded as a map and pruned by its schema before the webhook sees it: a second ``Spec``,
    ``SPEC`` or ``Metadata`` beside the approved ones is dropped, never stored; a number
    spelt otherwise (``6e2``, ``600.0``) is stored as the approved value or refused."""
    s = Signer(gate)
    for name, change in {
        "atk-case-spec": lambda o: {**o, "Spec": {**o["spec"], "parameters": {"task": "x"}}},
        "atk-case-upper": lambda o: {**o, "SPEC": {"agentRef": {"name": "evil-agent"}}},
        "atk-case-meta": lambda o: {**o, "Metadata": {"name": "atk-other", "annotations": {}}},
    }.items():
        approved = run(name)
        body = change(annotated(approved, _two(s, approved)))
        done = _raw_create(gate, json.dumps(body).encode())
        assert done.returncode == 0, done.stderr  # admitted on the approved spec...
        stored = json.loads(
            gate.kubectl("admin", "get", "agentrun", name, "-n", ENFORCED, "-o", "json").stdout
        )
        assert spec_digest(stored["spec"]) == spec_digest(approved["spec"])
        assert not {"Spec", "SPEC", "Metadata"} & set(stored)  # ...and the rest was pruned
    only_upper = run("atk-case-only")
    body = annotated(only_upper, _two(s, only_upper))
    body["Spec"] = body.pop("spec")
    done = _raw_create(gate, json.dumps(body).encode())  # judged without a spec
    assert done.returncode == 1, done.stdout
    for spelling in ("6e2", "600.0"):
        name = f"atk-number-{spelling.replace('.', '-')}"
        approved = run(name)
        text = json.dumps(annotated(approved, _two(s, approved)))
        text = text.replace(
            '"ttlSecondsAfterFinished": 600', f'"ttlSecondsAfterFinished": {spelling}'
        )
        done = _raw_create(gate, text.encode())
        if done.returncode == 0:
            stored = json.loads(
                gate.kubectl("admin", "get", "agentrun", name, "-n", ENFORCED, "-o", "json").stdout
            )
            assert spec_digest(stored["spec"]) == spec_digest(approved["spec"])
            assert stored["spec"]["runtime"]["config"]["ttlSecondsAfterFinished"] == 600


# --- 15: bundle unreadable or missing -----------------------------------------------------------


def test_a_garbage_bundle_keeps_the_last_good_one(gate: Gate) -> None:
    s = Signer(gate)
    good = gate.bundle.read_text()
    obj = run("atk-garbage")
    write_atomic(gate.bundle, "{ this is not a bundle")
    try:
        deadline = time.monotonic() + 15
        while (
            "keeping the last good bundle" not in gate.log_tail(200) and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert "keeping the last good bundle" in gate.log_tail(200)
        denied = create(gate, obj, REQUESTER, "--dry-run=server")
        assert denied.returncode == 1 and "0 of 2 required approvals" in denied.stderr
        admitted = create(gate, annotated(obj, _two(s, obj)), REQUESTER, "--dry-run=server")
        assert admitted.returncode == 0, admitted.stderr
    finally:
        write_atomic(gate.bundle, good)


def test_no_bundle_at_start_denies_everything(gate: Gate) -> None:
    s = Signer(gate)
    saved = gate.bundle.with_suffix(".saved")
    gate.stop()
    shutil.move(gate.bundle, saved)
    process = subprocess.Popen(
        [
            *CLI,
            "webhook",
            "serve",
            "--bundle",
            str(gate.bundle),
            *gate.trust_args(),
            "--tls-cert",
            str(gate.work / "tls.crt"),
            "--tls-key",
            str(gate.work / "tls.key"),
            "--host",
            "127.0.0.1",
            "--port",
            str(gate.port),
            "--metrics-port",
            "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=gate.work,
    )
    try:
        obj = run("atk-no-bundle")
        deadline = time.monotonic() + 30
        while True:
            done = create(gate, annotated(obj, _two(s, obj)), REQUESTER, "--dry-run=server")
            if "no policy bundle" in done.stderr or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert done.returncode == 1 and "has no policy bundle loaded" in done.stderr, done.stderr
    finally:
        process.terminate()
        process.wait(15)
        shutil.move(saved, gate.bundle)
        gate.start()


# --- known limit: replay within an approval's lifetime -------------------------------------------


def test_replay_within_the_lifetime_is_denied_where_the_view_is_required(gate: Gate) -> None:
    """Issue 15 changed this: re-creating the same run with the same approvals within their
    lifetime used to be admitted (security.md "Known limits" of a stateless webhook). Where
    the cluster view is required the first run's ApprovalUse records that the approvals were
    used, and the re-creation is denied (class 21)."""
    s = Signer(gate)
    obj = run("atk-replay")
    approved = annotated(obj, _two(s, obj))
    assert create(gate, approved).returncode == 0
    gone = gate.kubectl(
        REQUESTER, "delete", "agentrun", "atk-replay", "-n", ENFORCED, "--wait=true"
    )
    assert gone.returncode == 0, gone.stderr
    again = create(gate, approved)
    assert again.returncode == 1, again.stdout
    assert "already used by run agents/atk-replay" in again.stderr, again.stderr
    assert again.stderr.strip() == denial(expected_message(s, approved, REQUESTER))


def test_a_valid_bypass_is_admitted_with_a_warning(gate: Gate) -> None:
    s = Signer(gate)
    obj = run("atk-ok-bypass")
    record = s.record(obj, "oncall", decision="bypass", reason="INC-1234", ttl=timedelta(hours=1))
    # the example's default-approval policy (no subjects) also selects codex runs and has no
    # bypass: an agents-admin's approval satisfies it (alice is one)
    done = create(gate, annotated(obj, [record, s.record(obj, "alice")]))
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        "Warning: approvalgate: policy agents/codex-two-person: bypassed by oncall: INC-1234 "
        "(break-glass, audited)\n"
    )
