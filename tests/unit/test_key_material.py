"""One private key, one key material, whatever its form and whatever the installed
cryptography reads (fifth red-team pass, keys and signers).

"One key, one approver" (compile) and "one key, one person" (the bundle) compare
``keys.public.key_material``. It read OpenSSH lines with cryptography's
``load_ssh_public_key`` and, where that failed, compared the line's text: cryptography
reads security keys (``sk-*``) only from 43.0, and approvalgate allows 42, so there an
Ed25519 key written as ``ssh-ed25519`` and as ``sk-ssh-ed25519@openssh.com`` (or two
``sk-`` lines with two applications) were two keys. The material of an OpenSSH line is now
the gate's own parse of it (the key under the line), whatever cryptography reads; and an
SSH key's numbers must be written as OpenSSH writes them (no leading zero bytes), so one key
has one line, one key id and the fingerprint ``ssh-keygen -l`` prints.
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from securesystemslib.signer import CryptoSigner, Signature, SSlibKey

from approvalgate.approvals import keys, records
from approvalgate.approvals.admission import request_for_manifest
from approvalgate.approvals.bundle import parse_bundle_text
from approvalgate.approvals.decide import decide
from approvalgate.approvals.keys import public as public_keys
from approvalgate.approvals.keys.verifier import SignatureVerifier
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.policy import (
    BundleSettings,
    bundle_generation,
    compile_bundle,
    dump_bundle,
)
from approvalgate.cli import main
from tests.support import bundle_signing
from tests.support import ssh as ssh_tools
from tests.support.corpus import BASE, CORPUS_ENVIRONMENT
from tests.support.paths import ROOT
from tests.unit.test_ed25519_points import NOW, Holder, _approver, _base, _record, pem


def _string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _line(*fields: bytes) -> str:
    blob = b"".join(_string(f) for f in fields)
    return f"{fields[0].decode()} {base64.b64encode(blob).decode()}"


@pytest.fixture
def cryptography_42(monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_ssh_public_key`` as cryptography 42 has it: no security keys."""
    real = serialization.load_ssh_public_key

    def load(data: bytes, backend: Any = None) -> Any:
        if data.startswith(b"sk-"):
            raise UnsupportedAlgorithm("Key type is not supported.")
        return real(data)

    monkeypatch.setattr(serialization, "load_ssh_public_key", load)


def _forms(raw: bytes) -> dict[str, str]:
    return {
        "pem": pem(raw),
        "ssh-ed25519": _line(b"ssh-ed25519", raw),
        "sk ssh:": _line(b"sk-ssh-ed25519@openssh.com", raw, b"ssh:"),
        "sk ssh:other": _line(b"sk-ssh-ed25519@openssh.com", raw, b"ssh:other"),
    }


@pytest.mark.usefixtures("cryptography_42")
def test_every_form_of_one_ed25519_key_is_one_material() -> None:
    forms = _forms(Holder().public)
    materials = {name: public_keys.key_material(text) for name, text in forms.items()}
    assert len(set(materials.values())) == 1, materials
    assert len({keys.load_public_key(text).keyid for text in forms.values()}) == 4


@pytest.mark.usefixtures("cryptography_42")
def test_one_key_as_an_ssh_line_and_a_security_key_line_is_a_compile_error() -> None:
    raw = Holder().public
    forms = _forms(raw)
    approvers = [_approver("alice", forms["ssh-ed25519"]), _approver("bob", forms["sk ssh:"])]
    settings = BundleSettings(environment=CORPUS_ENVIRONMENT, cluster_view="off")
    compiled, problems = compile_bundle([*_base({"alice", "bob"}), *approvers], settings)
    assert compiled is None
    messages = [p.finding.message for p in problems]
    assert messages == ["this key already belongs to approver 'alice'"], messages


def test_an_ssh_key_with_a_number_not_written_as_openssh_writes_it_is_refused(
    tmp_path: Path,
) -> None:
    """An RSA key whose modulus or exponent carries a leading zero byte is the same key to
    ``ssh-keygen -l`` (it prints the fingerprint of the minimal form) but another line, key
    id and fingerprint here, and signatures made by ``ssh-keygen -Y sign`` embed the minimal
    form: refused, with the line to use."""
    ssh_tools.require_tools()
    private = ssh_tools.keygen(tmp_path, "rsa", "ssh-rsa")
    line = private.with_suffix(".pub").read_text().split()
    blob = base64.b64decode(line[1])
    fields = []
    at = 0
    while at < len(blob):
        (size,) = struct.unpack(">I", blob[at : at + 4])
        fields.append(blob[at + 4 : at + 4 + size])
        at += 4 + size
    keytype, e, n = fields
    for padded in (_line(keytype, b"\0" + e, n), _line(keytype, e, b"\0\0" + n)):
        (tmp_path / "padded.pub").write_text(padded + "\n")
        shown = ssh_tools.run(["ssh-keygen", "-l", "-f", str(tmp_path / "padded.pub")])
        assert keys.ssh.parse_line(" ".join(line[:2])).fingerprint in shown.decode()
        with pytest.raises(ValueError, match=r"leading zero bytes: not as OpenSSH writes it"):
            keys.load_public_key(padded)
    assert keys.load_public_key(" ".join(line[:2])).keyval["public"] == " ".join(line[:2])


@pytest.mark.parametrize("shape", ["two keys", "text after", "text before", "a line after"])
def test_a_public_key_text_holds_one_pem_block_and_nothing_else(shape: str) -> None:
    """cryptography reads the first PEM block and ignores the rest, so an Approver's
    ``publicKey`` (or a ``--bundle-key`` file) holding two keys, or a key and text, meant
    one key to the gate and something else to its reviewer: "bob's key" could be
    mallory's PEM with bob's under it, and a file pinning two keys pinned one. Refused."""
    first = keys.public_key_pem(keys.generate("ed25519").public_key)
    second = keys.public_key_pem(keys.generate("ecdsa-p256").public_key)
    text = {
        "two keys": first + second,
        "text after": first + "bob's key\n",
        "text before": "bob's key:\n" + first,
        "a line after": first + _line(b"ssh-ed25519", Holder().public),
    }[shape]
    with pytest.raises(ValueError, match=r"^one PEM public key block is expected, and nothing"):
        keys.load_public_key(text)
    assert keys.load_public_key("\n  " + first + "\n\n").keyval["public"]


def test_check_names_the_approver_whose_public_key_holds_two_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "gitops-repo", repo)
    path = repo / "approvers" / "bob.yaml"
    doc = load_manifests(path.read_text(), "bob.yaml")[0].obj
    assert doc is not None
    mallory = keys.public_key_pem(keys.generate("ed25519").public_key)
    doc["spec"]["keys"][0]["publicKey"] = mallory + doc["spec"]["keys"][0]["publicKey"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    code = main(["check", str(repo)])
    _, err = capsys.readouterr()
    assert code == 1, err
    assert "Traceback" not in err
    assert "approvers/bob.yaml:" in err and "$.spec.keys[0].publicKey" in err
    assert "one PEM public key block is expected, and nothing before or after it (found 2" in err


def test_an_openssh_certificate_is_no_approver_key_and_its_ca_approves_nothing(
    tmp_path: Path,
) -> None:
    """Tried, already refused: a user certificate (``-cert-v01``, principals and validity
    chosen by its CA) is not an accepted key type; an SSHSIG made with the certificate
    embeds the certificate, not the key under it, so the pinned plain key refuses it; and a
    CA's key pinned as an approver's verifies only what the CA key itself signed, never its
    users' signatures (no ``cert-authority`` semantics)."""
    ssh_tools.require_tools()
    ca = ssh_tools.keygen(tmp_path, "ca", "ssh-ed25519")
    user = ssh_tools.keygen(tmp_path, "user", "ssh-ed25519")
    certify = ["ssh-keygen", "-q", "-s", str(ca), "-I", "alice", "-n", "alice", "-V", "+1h"]
    ssh_tools.run([*certify, str(user.with_suffix(".pub"))])
    cert = tmp_path / "user-cert.pub"
    with pytest.raises(ValueError, match=r"^ssh-ed25519-cert-v01@openssh.com keys are not"):
        keys.load_public_key(cert.read_text())
    message = b"DSSEv1 the PAE of an approval"
    plain = keys.ssh.parse_line(user.with_suffix(".pub").read_text())
    with_cert = keys.ssh.dearmor(
        ssh_tools.run(
            ["ssh-keygen", "-Y", "sign", "-n", ssh_tools.NAMESPACE, "-f", str(cert)],
            data=message,
        ).decode()
    )
    with pytest.raises(keys.ssh.SSHSignatureError, match=r"made by another key than the pinned"):
        keys.ssh.verify_sshsig(plain, with_cert, message)
    by_user = keys.ssh.dearmor(ssh_tools.sign(user, message))
    keys.ssh.verify_sshsig(plain, by_user, message)  # the user's key: verifies
    authority = keys.ssh.parse_line(ca.with_suffix(".pub").read_text())
    for signature in (by_user, with_cert):
        with pytest.raises(keys.ssh.SSHSignatureError, match=r"another key than the pinned"):
            keys.ssh.verify_sshsig(authority, signature, message)


@dataclass
class RetiredInOneForm:
    """alice's stolen key, listed as its PEM (retired: a notAfter) and as its OpenSSH line
    (no window); a run carrying the thief's approval as alice (the line) and bob's."""

    approvers: list[dict[str, Any]]
    bundle_text: str
    """The bundle as the code before compiled those Approvers."""
    run: dict[str, Any]
    request: dict[str, Any]


def retired_in_one_form() -> RetiredInOneForm:
    stolen = bundle_signing.other_signer()
    as_ssh = bundle_signing.SSHForm(stolen)
    retired = {
        "publicKey": keys.public_key_pem(stolen.public_key),
        "notBefore": "2025-01-01T00:00:00Z",
        "notAfter": "2026-06-01T00:00:00Z",
    }
    alice = _approver("alice", "")
    alice["spec"]["keys"] = [retired, {"publicKey": as_ssh.line}]
    bob_key = bundle_signing.other_signer()
    bob = _approver("bob", keys.public_key_pem(bob_key.public_key))
    approvers = [*_base({"alice", "bob"}), alice, bob]
    # the bundle as the code before compiled it: alice's first key, then her second added
    only_first = copy.deepcopy(alice)
    only_first["spec"]["keys"] = [retired]
    settings = BundleSettings(environment=CORPUS_ENVIRONMENT, cluster_view="off")
    compiled, problems = compile_bundle([*_base({"alice", "bob"}), only_first, bob], settings)
    assert compiled is not None, problems
    for approver in compiled["approvers"]:
        if approver["name"] == "alice":
            approver["keys"].append({"keyid": as_ssh.public_key.keyid, "publicKey": as_ssh.line})
    compiled["generation"] = bundle_generation(compiled)
    run = dict(load_manifests((BASE / "run.yaml").read_text(), "run.yaml")[0].obj or {})
    envelopes = [_record(run, "alice", as_ssh), _record(run, "bob", bob_key)]
    run["metadata"]["annotations"] = {records.ANNOTATION: json.dumps(envelopes)}
    request = request_for_manifest(run, username="requester", groups=["agents-users"])
    return RetiredInOneForm(approvers, dump_bundle(compiled), run, request)


RETIRED_DENIAL = (
    "record 0 by alice: signature does not verify with a key of alice valid at 2026-11-21T11:00:00Z"
)


def test_a_key_retired_in_one_form_is_retired_in_every_form() -> None:
    """alice registered her key as PEM and as its OpenSSH line; it was stolen, and its PEM
    entry got a notAfter. The line, without one, still let the thief approve now. Compile
    refuses one key listed twice by an approver, and a bundle that lists it so (compiled
    before, or by hand) gives the key the window all its entries share."""
    case = retired_in_one_form()
    settings = BundleSettings(environment=CORPUS_ENVIRONMENT, cluster_view="off")
    compiled, problems = compile_bundle(case.approvers, settings)
    assert compiled is None
    messages = [(p.finding.path, p.finding.message) for p in problems]
    assert messages == [
        (
            ("spec", "keys", 1, "publicKey"),
            "this key is already keys[0] of approver 'alice' (in another form): list a key "
            "once, so that its notBefore and notAfter are its only window",
        )
    ], messages
    decision = decide(case.request, parse_bundle_text(case.bundle_text), NOW)
    assert (decision.allowed, decision.reason) == (False, "missing-approvals"), decision.message
    assert RETIRED_DENIAL in decision.message, decision.message


PEM_REFUSAL = "^Invalid key$"  # cryptography (OpenSSL) checks the point is on the curve
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def test_ecdsa_points_off_the_curve_and_signatures_out_of_range_are_refused() -> None:
    """Tried, already refused: an ECDSA public key that is no point of its curve (an
    invalid-curve key), the point at infinity, in the PEM and the OpenSSH forms; and
    signatures whose r or s is 0 or not below the group order (r, s + n is the same
    residue: OpenSSL checks the range, so no second spelling verifies)."""
    private = ec.generate_private_key(ec.SECP256R1())
    point = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    off_curve = point[:-1] + bytes([point[-1] ^ 1])
    for bad in (off_curve, b"\0", b"\4" + bytes(64)):
        line = _line(b"ecdsa-sha2-nistp256", b"nistp256", bad)
        with pytest.raises(ValueError, match=r"^not a point on nistp256"):
            keys.load_public_key(line)
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = base64.encodebytes(der[: -len(point)] + off_curve).decode()
    pem = f"-----BEGIN PUBLIC KEY-----\n{body}-----END PUBLIC KEY-----\n"
    with pytest.raises(ValueError, match=PEM_REFUSAL):
        keys.load_public_key(pem)
    signer = CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))
    public = signer.public_key
    data = b"DSSEv1 the PAE of an approval"
    r, s = decode_dss_signature(bytes.fromhex(signer.sign(data).signature))
    verifier = SignatureVerifier(0)

    def verifies(r: int, s: int) -> bool:
        sig = Signature(public.keyid, encode_dss_signature(r, s).hex())
        return verifier.first_signer(data, {public.keyid: sig}, [public]) is not None

    assert verifies(r, s)
    for odd in ((r, s + P256_ORDER), (r + P256_ORDER, s), (0, s), (r, 0)):
        assert not verifies(*odd), odd


def test_a_key_retired_in_one_approver_is_retired_in_every_approver() -> None:
    """A bundle compiled before "one key, one approver": the stolen key listed by alice
    (retired) and by alice-ops, another name of hers (no window). The two are one person
    (they share the key), and the key signed as alice-ops beside bob: admitted before. A
    key's window is the one all its entries share, in every approver."""
    stolen = bundle_signing.other_signer()
    pem_text = keys.public_key_pem(stolen.public_key)
    alice = _approver("alice", "")
    alice["spec"]["keys"] = [
        {
            "publicKey": pem_text,
            "notBefore": "2025-01-01T00:00:00Z",
            "notAfter": "2026-06-01T00:00:00Z",
        }
    ]
    ops = _approver("alice-ops", keys.public_key_pem(bundle_signing.other_signer().public_key))
    bob_key = bundle_signing.other_signer()
    bob = _approver("bob", keys.public_key_pem(bob_key.public_key))
    settings = BundleSettings(environment=CORPUS_ENVIRONMENT, cluster_view="off")
    compiled, problems = compile_bundle([*_base({"alice", "bob"}), alice, ops, bob], settings)
    assert compiled is not None, problems
    for approver in compiled["approvers"]:
        if approver["name"] == "alice-ops":
            approver["keys"] = [{"keyid": stolen.public_key.keyid, "publicKey": pem_text}]
    compiled["generation"] = bundle_generation(compiled)
    bundle = parse_bundle_text(dump_bundle(compiled))
    run = dict(load_manifests((BASE / "run.yaml").read_text(), "run.yaml")[0].obj or {})
    envelopes = [_record(run, "alice-ops", stolen), _record(run, "bob", bob_key)]
    run["metadata"]["annotations"] = {records.ANNOTATION: json.dumps(envelopes)}
    request = request_for_manifest(run, username="requester", groups=["agents-users"])
    decision = decide(request, bundle, NOW)
    assert (decision.allowed, decision.reason) == (False, "missing-approvals"), decision.message
    assert "record 0 by alice-ops: signature does not verify with a key of alice-ops valid" in (
        decision.message
    ), decision.message
