"""Key rotation, notBefore and notAfter for every key type, through ``decide()`` (issue 17).

Every accepted key type, each made by the provider that holds it: key files (Ed25519,
ECDSA P-256/P-384, RSA-PSS), ECDSA keys generated inside a real SoftHSM2 token and signing
through ``hsm:`` (the types HSMs and cloud KMSs sign with), and every OpenSSH key type in a
real ssh-agent signing through ``ssh-agent:`` (security keys through OpenSSH's sk-dummy).

An approver holds an old key (its ``notAfter`` set when it was retired) and a new one (its
``notBefore`` where the rotation starts, overlapping the old key's last weeks), both of the
type under test; the bundle is compiled from Approver documents the way tests/support
compiles the decision corpus', the run is the corpus' base run, the policy its two-person
rule. For each type:

- a record the old key signed after its ``notAfter`` is refused with the message users
  see, the same record signed by the new key is admitted;
- a record the old key signed inside its window but back-dated past it (so that it would
  still be "valid") is refused: a key counts only while it is valid, now too;
- a record the new key signed before its ``notBefore`` is refused;
- during the overlap both keys count; removing the old key revokes it at once;
- two approvers holding keys of two different types (every pair) approve the same run:
  admitted; either signature tampered: denied, naming the record.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import Signer

from approvalgate.approvals import keys, records
from approvalgate.approvals.admission import request_for_manifest
from approvalgate.approvals.bundle import Bundle, parse_bundle_text
from approvalgate.approvals.decide import Decision, decide
from approvalgate.approvals.digest import spec_digest
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.policy import BundleSettings, compile_bundle, dump_bundle
from tests.support import softhsm, ssh
from tests.support.corpus import BASE, CORPUS_ENVIRONMENT

# --- the key types: one factory each (a new provider's signer is one more entry) -----------


class _Providers:
    """The module's real ssh-agent and SoftHSM2 token (the ``providers`` fixture)."""

    agent: ssh.Agent
    folder: Path
    token: softhsm.SoftHSM
    token_keys: int = 1


_live = _Providers()


@pytest.fixture(scope="module", autouse=True)
def providers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A real ssh-agent (security keys through OpenSSH's sk-dummy) and a SoftHSM2 token, with
    the environment an approver sets to sign with them, for the whole module."""
    folder = tmp_path_factory.mktemp("providers")
    with pytest.MonkeyPatch.context() as env, ssh.agent(folder) as agent:
        token = softhsm.SoftHSM.create(folder / "softhsm2", "rotation", env.setenv)
        for name, value in {**token.signer_env(), **agent.env()}.items():
            env.setenv(name, value)
        _live.agent, _live.folder, _live.token = agent, folder, token
        yield
    _made.clear()  # their agent and token are gone


def _ssh_signer(keytype: str) -> Callable[[], Signer]:
    """A new key of an OpenSSH ``keytype`` made by ssh-keygen, held by the real ssh-agent,
    signing through approvalgate's ``ssh-agent:`` signer."""

    def make() -> Signer:
        from approvalgate.signers import sshagent

        path = ssh.keygen(_live.folder, f"key-{len(_live.agent.added)}", keytype)
        _live.agent.add(path)
        return sshagent.load(f"{path}.pub", lambda name: Path(name).read_bytes())

    return make


def _token_signer(curve: str) -> Callable[[], Signer]:
    """A new ECDSA key generated inside the SoftHSM2 token, signing through ``hsm:``."""

    def make() -> Signer:
        from approvalgate.signers import pkcs11

        _live.token_keys += 1
        _live.token.generate_ec(_live.token_keys, curve)
        return pkcs11.load(_live.token.ref(_live.token_keys).partition(":")[2], _no_read)

    return make


def _no_read(path: str) -> bytes:
    raise AssertionError(f"an hsm: signer read {path}")


SIGNERS: dict[str, Callable[[], Signer]] = {
    "ed25519": lambda: keys.generate("ed25519"),
    "ecdsa-p256": lambda: keys.generate("ecdsa-p256"),
    "ecdsa-p384": lambda: keys.generate("ecdsa-p384"),
    "rsa": lambda: keys.generate("rsa"),
    "hsm-ecdsa-p256": _token_signer("secp256r1"),
    "hsm-ecdsa-p384": _token_signer("secp384r1"),
    **{keytype: _ssh_signer(keytype) for keytype in ssh.KEY_TYPES},
}
"""Every accepted key type, from the provider that makes it: key files, a PKCS#11 token
(ECDSA, the types HSMs and KMSs sign with), an ssh-agent (OpenSSH keys, security keys too)."""
TYPES = list(SIGNERS)

RETIRED = datetime(2026, 6, 1, tzinfo=UTC)
"""The old key's notAfter."""
ROTATION = datetime(2026, 5, 1, tzinfo=UTC)
"""The new key's notBefore: May 2026 is the overlap, both keys valid."""
OLD_SINCE = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
IN_OVERLAP = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)
BEFORE_ROTATION = datetime(2026, 4, 15, 12, 0, tzinfo=UTC)


_made: dict[tuple[str, str], Signer] = {}


def held(type_name: str, who: str) -> Signer:
    """``who``'s key of type ``type_name``, made once per test session (RSA takes a while)."""
    if (type_name, who) not in _made:
        _made[type_name, who] = SIGNERS[type_name]()
    return _made[type_name, who]


# --- the bundle, the run, the records ------------------------------------------------------


def _key_entry(signer: Signer, not_before: datetime | None, not_after: datetime | None) -> Any:
    entry: dict[str, Any] = {"publicKey": keys.public_key_pem(signer.public_key)}
    if not_before is not None:
        entry["notBefore"] = records.format_time(not_before)
    if not_after is not None:
        entry["notAfter"] = records.format_time(not_after)
    return entry


def approver(name: str, *key_entries: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gates.proompteng.ai/v1alpha1",
        "kind": "Approver",
        "metadata": {"name": name},
        "spec": {"usernames": [name], "groups": ["platform-leads"], "keys": list(key_entries)},
    }


def bundle_of(*approvers: dict[str, Any]) -> Bundle:
    """The corpus' base policy (two of the platform leads) and its Approvers, these instead
    of the base's of the same names, compiled."""
    names = {a["metadata"]["name"] for a in approvers}
    base = [
        d.obj
        for name in ("policies.yaml", "approvers.yaml")
        for d in load_manifests((BASE / name).read_text(), name)
        if d.obj is not None and d.obj["metadata"]["name"] not in names
    ]
    settings = BundleSettings(environment=CORPUS_ENVIRONMENT, cluster_view="off")
    compiled, problems = compile_bundle([*base, *approvers], settings)
    assert compiled is not None, problems
    return parse_bundle_text(dump_bundle(compiled))


def rotated(type_name: str) -> dict[str, Any]:
    """alice: her old key (retired at RETIRED) and her new key (from ROTATION)."""
    return approver(
        "alice",
        _key_entry(held(type_name, "alice-old"), OLD_SINCE, RETIRED),
        _key_entry(held(type_name, "alice-new"), ROTATION, None),
    )


def bob(type_name: str = "ed25519") -> dict[str, Any]:
    return approver("bob", _key_entry(held(type_name, "bob"), None, None))


def the_run() -> dict[str, Any]:
    docs = [d.obj for d in load_manifests((BASE / "run.yaml").read_text(), "run.yaml")]
    return dict(copy.deepcopy(docs[0]))


def record(run: dict[str, Any], who: str, signer: Signer, issued: datetime) -> dict[str, Any]:
    meta = run["metadata"]
    claim = records.Claim(
        subject=records.subject_name(meta["namespace"], meta["name"]),
        digest=spec_digest(run["spec"]),
        decision="approve",
        approver=who,
        reason="",
        issued_at=issued,
        expires_at=issued + timedelta(hours=2),
        nonce=f"nonce-{who}-{signer.public_key.keyid[:8]}",
        environment=CORPUS_ENVIRONMENT,
    )
    return records.sign(claim, signer)


def judged(bundle: Bundle, now: datetime, *envelopes: dict[str, Any]) -> Decision:
    run = the_run()
    run["metadata"]["annotations"] = {records.ANNOTATION: json.dumps(list(envelopes))}
    request = request_for_manifest(run, username="requester", groups=["agents-users"])
    decision = decide(request, bundle, now)
    assert decision.internal_error == ""
    return decision


def approvals_at(
    bundle: Bundle, now: datetime, alice_key: Signer, issued: datetime | None = None
) -> Decision:
    """alice (with ``alice_key``) and bob approve at ``issued`` (default: an hour before)."""
    at = issued or now - timedelta(hours=1)
    run = the_run()
    return judged(
        bundle,
        now,
        record(run, "alice", alice_key, at),
        record(run, "bob", held("ed25519", "bob"), now - timedelta(hours=1)),
    )


def lines(decision: Decision) -> list[str]:
    return [line.strip() for line in decision.message.splitlines()]


# --- rotation and the validity window, per type --------------------------------------------


@pytest.mark.parametrize("type_name", TYPES)
def test_after_notafter_the_old_key_is_refused_and_the_new_key_admitted(type_name: str) -> None:
    bundle = bundle_of(rotated(type_name), bob())
    old = approvals_at(bundle, NOW, held(type_name, "alice-old"))
    assert (old.allowed, old.reason) == (False, "missing-approvals")
    assert (
        "- record 0 by alice: signature does not verify with a key of alice valid at "
        "2026-11-21T11:00:00Z"
    ) in lines(old)
    assert "still needed: 1 more approval(s) from alice, carol" in lines(old)
    new = approvals_at(bundle, NOW, held(type_name, "alice-new"))
    assert (new.allowed, new.reason) == (True, "approved"), new.message


@pytest.mark.parametrize("type_name", TYPES)
def test_a_record_back_dated_into_the_old_keys_window_is_refused(type_name: str) -> None:
    """Signed (by whoever still holds the retired key) with an issuedAt before notAfter and
    a lifetime reaching now: the key was valid when the record says it was issued, not now."""
    bundle = bundle_of(rotated(type_name), bob())
    run = the_run()
    issued = RETIRED - timedelta(days=1)
    long_lived = records.Claim(
        subject=records.subject_name("agents", "codex-run-sample"),
        digest=spec_digest(run["spec"]),
        decision="approve",
        approver="alice",
        reason="",
        issued_at=issued,
        expires_at=NOW + timedelta(days=30),
        nonce="back-dated",
        environment=CORPUS_ENVIRONMENT,
    )
    envelope = records.sign(long_lived, held(type_name, "alice-old"))
    bobs = record(run, "bob", held("ed25519", "bob"), NOW - timedelta(hours=1))
    decision = judged(bundle, NOW, envelope, bobs)
    assert (decision.allowed, decision.reason) == (False, "missing-approvals")
    assert (
        "- record 0 by alice: signed with a key of alice that is expired (retired) at "
        "2026-06-01T00:00:00Z: a key counts only while it is valid, at the record's issuedAt "
        "and at admission time (removing a key or setting its notAfter revokes it)"
    ) in lines(decision)


@pytest.mark.parametrize("type_name", TYPES)
def test_before_its_notbefore_the_new_key_is_refused(type_name: str) -> None:
    bundle = bundle_of(rotated(type_name), bob())
    early = approvals_at(bundle, BEFORE_ROTATION, held(type_name, "alice-new"))
    assert (early.allowed, early.reason) == (False, "missing-approvals")
    assert (
        "- record 0 by alice: signature does not verify with a key of alice valid at "
        "2026-04-15T11:00:00Z"
    ) in lines(early)
    still_old = approvals_at(bundle, BEFORE_ROTATION, held(type_name, "alice-old"))
    assert (still_old.allowed, still_old.reason) == (True, "approved"), still_old.message


@pytest.mark.parametrize("type_name", TYPES)
def test_during_the_overlap_both_keys_count(type_name: str) -> None:
    bundle = bundle_of(rotated(type_name), bob())
    for who in ("alice-old", "alice-new"):
        decision = approvals_at(bundle, IN_OVERLAP, held(type_name, who))
        assert (decision.allowed, decision.reason) == (True, "approved"), (who, decision.message)


@pytest.mark.parametrize("type_name", TYPES)
def test_removing_the_old_key_revokes_it_at_once(type_name: str) -> None:
    """The other way to retire a key: drop it from the Approver (then recompile)."""
    only_new = approver("alice", _key_entry(held(type_name, "alice-new"), ROTATION, None))
    bundle = bundle_of(only_new, bob())
    decision = approvals_at(bundle, IN_OVERLAP, held(type_name, "alice-old"))
    assert (decision.allowed, decision.reason) == (False, "missing-approvals")
    assert (
        "- record 0 by alice: signature does not verify with a key of alice valid at "
        "2026-05-15T11:00:00Z"
    ) in lines(decision)


# --- two approvers, two key types, one run -------------------------------------------------

PAIRS = list(itertools.combinations(TYPES, 2))


def _flip_signature(envelope: dict[str, Any]) -> dict[str, Any]:
    tampered = copy.deepcopy(envelope)
    sig = bytearray(base64.b64decode(tampered["signatures"][0]["sig"]))
    sig[len(sig) // 2] ^= 0x01
    tampered["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    return tampered


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}+{b}" for a, b in PAIRS])
def test_two_approvers_with_different_key_types_admit_and_a_tampered_one_denies(
    first: str, second: str
) -> None:
    alice = approver("alice", _key_entry(held(first, "alice-new"), None, None))
    bundle = bundle_of(alice, bob(second))
    run = the_run()
    at = NOW - timedelta(hours=1)
    hers = record(run, "alice", held(first, "alice-new"), at)
    his = record(run, "bob", held(second, "bob"), at)
    admitted = judged(bundle, NOW, hers, his)
    assert (admitted.allowed, admitted.reason) == (True, "approved"), admitted.message
    for index, envelopes in enumerate(((_flip_signature(hers), his), (hers, _flip_signature(his)))):
        denied = judged(bundle, NOW, *envelopes)
        assert (denied.allowed, denied.reason) == (False, "missing-approvals")
        who = ("alice", "bob")[index]
        assert (
            f"- record {index} by {who}: signature does not verify with a key of {who} valid "
            "at 2026-11-21T11:00:00Z"
        ) in lines(denied)
        # and with the signature cold (no memo): the same verdict
        assert not judged(bundle_of(alice, bob(second)), NOW, *envelopes).allowed


def test_every_registered_key_type_is_covered() -> None:
    """A key type registered later (SSH, ...) needs a signer here, or this fails."""
    covered = {
        (held(t, "probe").public_key.keytype, held(t, "probe").public_key.scheme) for t in TYPES
    }
    registered = {(t.keytype, t.scheme) for t in keys.key_types()}
    assert registered <= covered, registered - covered


def test_validity_windows_at_their_exact_edges_and_ahead_within_the_skew() -> None:
    """Half-open windows, at the second: a key counts from its notBefore and no longer at its
    notAfter, at issuedAt and now alike; the clock skew lets a record be issued ahead of
    the webhook's clock, never a key be used before its notBefore (class 20)."""
    bundle = bundle_of(rotated("ed25519"), bob())
    old, new = held("ed25519", "alice-old"), held("ed25519", "alice-new")
    second = timedelta(seconds=1)
    # the old key: admitted a second before its notAfter, refused at it (issued inside)
    assert approvals_at(bundle, RETIRED - second, old).allowed
    assert not approvals_at(bundle, RETIRED, old).allowed
    # the new key, before its notBefore: refused even for a record issued at it, ahead of
    # the clock by less than the skew (the key is not valid now)
    early = approvals_at(bundle, ROTATION - 30 * second, new, issued=ROTATION)
    assert (early.allowed, early.reason) == (False, "missing-approvals")
    assert "not valid before 2026-05-01T00:00:00Z" in early.message
    assert approvals_at(bundle, ROTATION, new, issued=ROTATION).allowed
    # a record (2 h) refused at its expiresAt, and issued at most the skew (60 s) ahead
    issued = NOW - timedelta(hours=1)
    at_expiry = issued + timedelta(hours=2)
    assert approvals_at(bundle, at_expiry - second, new, issued=issued).allowed
    expired = approvals_at(bundle, at_expiry, new, issued=issued)
    assert "record 0 by alice: expired at" in expired.message
    assert approvals_at(bundle, NOW, new, issued=NOW + bundle.clock_skew).allowed
    ahead = approvals_at(bundle, NOW, new, issued=NOW + bundle.clock_skew + second)
    assert "record 0 by alice: issued in the future" in ahead.message
