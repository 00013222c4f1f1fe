#!/usr/bin/env python3
"""Signature verification cost per key type, and admission CPU with approvals of each type.

    python bench/signatures.py [--signatures 200] [--runs 200] [--rounds 5] [--quick] [--json]

Issue 17 lets approvers hold keys of several types (key files, PKCS#11 tokens and cloud
KMSs make the same ECDSA/RSA signatures; SSH keys sign SSHSIG blobs). Two figures, both
with the verified-signature memo **off** (every signature checked, as the first admission
of a record is), CPU time (``time.process_time()``), ways interleaved item by item after
a warm-up round, ratios to the Ed25519 baseline of the same run:

- **verification**: one signature over a record's DSSE PAE checked by the one verifier
  (``approvals.keys.SignatureVerifier(0).first_signer``: the key's check is built once,
  as a loaded bundle keeps it), per key type;
- **admission**: ``decide()`` on a prepared AdmissionReview (a CREATE of a run carrying
  two signed approvals, the decision corpus' two-person policy, memo off:
  ``Bundle(caches=False)``) with both approvers holding keys of one type, against two
  Ed25519 approvals.

Every signature must verify and every admission must be allowed (the script stops
otherwise): a fast refusal is no figure. SSH keys (ed25519, and sk-ed25519 on OpenSSH's
software security key) are made by ``ssh-keygen`` and sign through a real ``ssh-agent``
this script starts; they are verified in process like every other type.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import copy
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from securesystemslib.dsse import Envelope  # noqa: E402
from securesystemslib.signer import Signature, Signer  # noqa: E402

from approvalgate.approvals import keys, records  # noqa: E402
from approvalgate.approvals.admission import request_for_manifest  # noqa: E402
from approvalgate.approvals.bundle import Bundle, parse_bundle_text  # noqa: E402
from approvalgate.approvals.decide import decide  # noqa: E402
from approvalgate.approvals.digest import spec_digest  # noqa: E402
from approvalgate.approvals.kubeyaml import load_manifests  # noqa: E402
from approvalgate.approvals.policy import BundleSettings, compile_bundle, dump_bundle  # noqa: E402

BASE = REPO / "tests" / "corpus" / "decide" / "_base"
ENV = "prod"
QUICK = {"signatures": 5, "runs": 5, "rounds": 2}


def log(message: str) -> None:
    print(f"[signatures] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Kind:
    """One key type as the bench measures it: its name and a way to get a signer."""

    name: str
    make: Callable[[], Signer]


_KINDS: list[Kind] = []


def kinds() -> list[Kind]:
    """The key-file types (Ed25519 first: the baseline), then the SSH kinds (once)."""
    if _KINDS:
        return _KINDS
    _KINDS[:] = [
        Kind("Ed25519", lambda: keys.generate("ed25519")),
        Kind("ECDSA P-256", lambda: keys.generate("ecdsa-p256")),
        Kind("ECDSA P-384", lambda: keys.generate("ecdsa-p384")),
        Kind("RSA-3072 (PSS)", lambda: keys.generate("rsa")),
        *ssh_kinds(),
    ]
    return _KINDS


SSH_KINDS = {"SSH ed25519": "ssh-ed25519", "SSH sk-ed25519": "sk-ssh-ed25519@openssh.com"}
"""The SSH key types measured: a plain key and a security key (OpenSSH's sk-dummy)."""


def ssh_kinds() -> list[Kind]:
    """SSH keys in a real ssh-agent (started here, stopped at exit), signing through
    approvalgate's ``ssh-agent:`` signer; none where ssh-agent or sk-dummy is missing."""
    from tests.support import ssh

    if not (all(shutil.which(t) for t in ("ssh-agent", "ssh-keygen")) and ssh.SK_DUMMY.exists()):
        log("no ssh-agent or sk-dummy (make system-packages): SSH keys not measured")
        return []
    from approvalgate.signers import sshagent

    folder = Path(tempfile.mkdtemp(prefix="bench-ssh-"))
    running = contextlib.ExitStack()
    agent = running.enter_context(ssh.agent(folder))
    atexit.register(running.close)
    os.environ.update(agent.env())

    def maker(keytype: str) -> Callable[[], Signer]:
        def make() -> Signer:
            path = ssh.keygen(folder, f"key-{len(agent.added)}", keytype)
            agent.add(path)
            return sshagent.load(f"{path}.pub", lambda name: Path(name).read_bytes())

        return make

    return [Kind(name, maker(keytype)) for name, keytype in SSH_KINDS.items()]


# --- verification per signature ------------------------------------------------------------


@dataclass
class Verification:
    kind: Kind
    key: Any
    items: list[tuple[bytes, dict[str, Signature]]]
    verifier: keys.SignatureVerifier = field(default_factory=lambda: keys.SignatureVerifier(0))
    cpu_s: list[float] = field(default_factory=list)


def pae(number: int) -> bytes:
    """A record-sized DSSE PAE (what records.sign signs), distinct per number."""
    payload = json.dumps(
        {"_type": "https://in-toto.io/Statement/v1", "n": number, "pad": "x" * 600}
    ).encode()
    return Envelope(payload, records.PAYLOAD_TYPE, {}).pae()


def build_verifications(count: int) -> list[Verification]:
    out = []
    for kind in kinds():
        signer = kind.make()
        items = []
        for number in range(count):
            data = pae(number)
            signature = signer.sign(data)
            items.append((data, {signature.keyid: signature}))
        out.append(Verification(kind, signer.public_key, items))
    return out


def measure_verifications(
    ways: Sequence[Verification], rounds: int, clock: Callable[[], float]
) -> None:
    """Signature i of every type, interleaved (the order rotates); one warm-up round first."""
    count = len(ways[0].items)
    for round_number in range(rounds + 1):
        for index in range(count):
            shift = (round_number + index) % len(ways)
            for position in range(len(ways)):
                way = ways[(position + shift) % len(ways)]
                data, signatures = way.items[index]
                started = clock()
                found = way.verifier.first_signer(data, signatures, [way.key])
                spent = clock() - started
                if found is not way.key:
                    raise SystemExit(f"{way.kind.name}: a genuine signature did not verify")
                if round_number:
                    way.cpu_s.append(spent)


# --- admission with two approvals of one type ----------------------------------------------


@dataclass
class Admission:
    name: str
    bundle: Bundle
    reviews: list[dict[str, Any]]
    cpu_s: list[float] = field(default_factory=list)


def bundle_for(alice: Signer, bob: Signer) -> Bundle:
    """The decision corpus' policy and approvers, alice and bob holding these keys; memo off."""
    docs = [
        d.obj
        for name in ("policies.yaml", "approvers.yaml")
        for d in load_manifests((BASE / name).read_text(), name)
        if d.obj is not None
    ]
    held = {"alice": alice, "bob": bob}
    for doc in docs:
        if doc.get("kind") == "Approver" and doc["metadata"]["name"] in held:
            public = keys.public_key_pem(held[doc["metadata"]["name"]].public_key)
            doc["spec"]["keys"] = [{"publicKey": public}]
    compiled, problems = compile_bundle(docs, BundleSettings(environment=ENV, cluster_view="off"))
    assert compiled is not None, problems
    return dataclasses.replace(parse_bundle_text(dump_bundle(compiled)), caches=False)


def the_run() -> dict[str, Any]:
    docs = [d.obj for d in load_manifests((BASE / "run.yaml").read_text(), "run.yaml")]
    return dict(copy.deepcopy(docs[0]))


def approved_review(number: int, signers: Mapping[str, Signer], now: datetime) -> dict[str, Any]:
    run = the_run()
    run["metadata"]["name"] = f"run-{number}"
    run["spec"]["parameters"]["task"] = f"task {number}"
    envelopes = []
    for who, signer in signers.items():
        claim = records.Claim(
            subject=records.subject_name("agents", f"run-{number}"),
            digest=spec_digest(run["spec"]),
            decision="approve",
            approver=who,
            reason="",
            issued_at=now - timedelta(minutes=5),
            expires_at=now + timedelta(hours=12),
            nonce=f"{who}-{number}",
            environment=ENV,
        )
        envelopes.append(records.sign(claim, signer))
    run["metadata"]["annotations"] = {records.ANNOTATION: records.dump_annotation(envelopes)}
    return dict(request_for_manifest(run, username="requester", groups=["agents-users"]))


def build_admissions(runs: int, now: datetime) -> list[Admission]:
    out = []
    for kind in kinds():
        signers = {"alice": kind.make(), "bob": kind.make()}
        reviews = [approved_review(n, signers, now) for n in range(runs)]
        name = f"2 x {kind.name}" if kind.name != "Ed25519" else "2 x Ed25519 (baseline)"
        out.append(Admission(name, bundle_for(signers["alice"], signers["bob"]), reviews))
    return out


def measure_admissions(
    ways: Sequence[Admission], rounds: int, now: datetime, clock: Callable[[], float]
) -> None:
    """Review i of every way, interleaved (the order rotates); one warm-up round first."""
    count = len(ways[0].reviews)
    for round_number in range(rounds + 1):
        for index in range(count):
            shift = (round_number + index) % len(ways)
            for position in range(len(ways)):
                way = ways[(position + shift) % len(ways)]
                started = clock()
                decision = decide(way.reviews[index], way.bundle, now)
                spent = clock() - started
                if not decision.allowed:
                    raise SystemExit(f"{way.name}: denied ({decision.reason}): {decision.message}")
                if round_number:
                    way.cpu_s.append(spent)


# --- the figures ---------------------------------------------------------------------------


def summary(named: Sequence[tuple[str, list[float]]]) -> dict[str, Any]:
    base = named[0][1]
    out: dict[str, Any] = {}
    for name, cpu_s in named:
        us = sorted(1e6 * s for s in cpu_s)
        out[name] = {
            "count": len(us),
            "p50_us": statistics.median(us),
            "p90_us": us[int(0.90 * (len(us) - 1))],
            "mean_us": statistics.fmean(us),
            "ratio_p50": statistics.median(cpu_s) / statistics.median(base),
            "ratio_mean": statistics.fmean(cpu_s) / statistics.fmean(base),
        }
    return out


def _table(rows: Mapping[str, Any], first: str, count: str, baseline: str) -> list[str]:
    lines = [
        f"| {first} | {count} | p50 µs | p90 µs | mean µs | p50 vs {baseline} | "
        f"mean vs {baseline} |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['count']} | {row['p50_us']:.1f} | {row['p90_us']:.1f} | "
            f"{row['mean_us']:.1f} | {row['ratio_p50']:.2f}x | {row['ratio_mean']:.2f}x |"
        )
    return lines


def markdown(result: Mapping[str, Any]) -> str:
    setup = result["setup"]
    return "\n".join(
        [
            "## Signature verification per key type (bench/signatures.py)",
            "",
            f"{setup['signatures']} signatures per type over record-sized DSSE PAEs, checked "
            f"by approvalgate's one verifier with the verified-signature memo off (cold: every "
            f"signature checked), {setup['rounds']} rounds after a warm-up, types interleaved "
            "signature by signature. CPU per check (`time.process_time()`); ratios to "
            "**Ed25519** of the same run. PKCS#11 tokens and cloud KMSs make ECDSA/RSA "
            "signatures: verifying theirs costs what the key file of the same type costs. SSH "
            "keys' signatures are SSHSIG blobs made by a real `ssh-agent` (sk-ed25519: "
            "OpenSSH's software security key), checked in process like the others.",
            "",
            *_table(result["verification"], "key type", "checks", "Ed25519"),
            "",
            f"Admission: {setup['runs']} CREATE reviews per way judged by `decide()` in "
            "process, each run carrying two signed approvals (the decision corpus' "
            "two-person policy), memo off (`Bundle(caches=False)`: both signatures checked "
            "on every review); ratios to two **Ed25519** approvals of the same run.",
            "",
            *_table(result["admission"], "approvals", "admissions", "2 x Ed25519"),
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signatures", type=int, default=200, help="signatures per type")
    parser.add_argument("--runs", type=int, default=200, help="reviews per way and round")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (after warm-up)")
    parser.add_argument("--quick", action="store_true", help="smoke: 5 of each, 2 rounds")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.signatures, args.runs = QUICK["signatures"], QUICK["runs"]
        args.rounds = QUICK["rounds"]
    now = records.now_utc()
    started = time.perf_counter()
    log(f"signing {args.signatures} PAEs per type")
    verifications = build_verifications(args.signatures)
    log(f"signing {args.runs} runs per way")
    admissions = build_admissions(args.runs, now)
    log(f"measuring {args.rounds} rounds")
    measure_verifications(verifications, args.rounds, time.process_time)
    measure_admissions(admissions, args.rounds, now, time.process_time)
    result = {
        "setup": {
            "signatures": args.signatures,
            "runs": args.runs,
            "rounds": args.rounds,
            "memo": "off",
            "wall_s": time.perf_counter() - started,
        },
        "verification": summary([(w.kind.name, w.cpu_s) for w in verifications]),
        "admission": summary([(w.name, w.cpu_s) for w in admissions]),
    }
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
