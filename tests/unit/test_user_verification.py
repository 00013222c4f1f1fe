"""A security key's user verification (its PIN), required per Approver key (sixth red-team
pass, keys: ``userVerification: required``).

The gate required the touch (user presence) in every ``sk-`` signature but could not require
the PIN: whoever held an approver's security key and its key handle file signed without it.
With the real OpenSSH tools and OpenSSH's software security key (sk-dummy, which sets a
signature's flags from the key file's as a security key does): a key made with ``ssh-keygen
-O verify-required`` signs with flags 0x05, one made without with 0x01, and the same key file
with its stored flags edited to 0x01 (what the holder of the file does to skip the PIN) signs
genuinely without user verification. Those signatures go through compile, the bundle,
decide(), ``approve`` and ``verify``.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner

from approvalgate.approvals import keys, records
from approvalgate.approvals.admission import request_for_manifest
from approvalgate.approvals.bundle import parse_bundle_text
from approvalgate.approvals.decide import decide
from approvalgate.approvals.errors import BundleError
from approvalgate.approvals.keys import ssh
from approvalgate.approvals.kubeyaml import load_manifests
from approvalgate.approvals.policy import (
    BundleSettings,
    bundle_generation,
    compile_bundle,
    dump_bundle,
)
from approvalgate.cli import main
from tests.support import ssh as tools
from tests.support.bundle_signing import SSHForm
from tests.support.corpus import BASE, CORPUS_ENVIRONMENT, KEYS
from tests.support.paths import ROOT
from tests.unit.test_ed25519_points import NOW, _approver, _base, _record

SK = "sk-ssh-ed25519@openssh.com"
ECDSA_SK = "sk-ecdsa-sha2-nistp256@openssh.com"
WITHOUT_PIN = (
    "without user verification (no PIN): its Approver entry says userVerification: required"
)


@dataclass(frozen=True)
class Made:
    """Security key files made through sk-dummy."""

    folder: Path
    verified: Path
    """``-O verify-required``: flags 0x05."""
    touch_only: Path
    """No option: flags 0x01."""
    verified_ecdsa: Path
    stolen: Path
    """``verified``'s file with its stored flags edited to 0x01: the same key, no PIN."""


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    tools.require_tools()
    folder = tmp_path_factory.mktemp("sk-uv")
    verified = tools.keygen(folder, "uv", SK, "-O", "verify-required")
    return Made(
        folder=folder,
        verified=verified,
        touch_only=tools.keygen(folder, "touch", SK),
        verified_ecdsa=tools.keygen(folder, "uv-ecdsa", ECDSA_SK, "-O", "verify-required"),
        stolen=tools.with_flags(verified, folder / "stolen", tools.SK_USER_PRESENCE),
    )


def _signature(private: Path, data: bytes, folder: Path) -> bytes:
    return ssh.dearmor(tools.sign(private, data, env=tools.pin_env(folder)))


def _flags(blob: bytes) -> int:
    return blob[-5]  # the flags byte, then the 4-byte counter, end the SSHSIG blob


# --- what sk-dummy and ssh-keygen make --------------------------------------------------------


def test_sk_dummy_sets_user_verification_for_keys_made_with_verify_required(made: Made) -> None:
    """Both kinds of signature, real: the key file's flags are what the signature carries;
    each verifies (the flags are signed), with the gate and with ``ssh-keygen -Y verify``;
    only the one made with the PIN is ``user_verified``."""
    data = b"DSSEv1 the PAE of an approval"
    for private, flags in (
        (made.verified, 0x05),
        (made.verified_ecdsa, 0x05),
        (made.touch_only, 0x01),
        (made.stolen, 0x01),
    ):
        assert tools.read_sk_private(private).flags == flags, private
        blob = _signature(private, data, made.folder)
        assert _flags(blob) == flags, private
        line = private.with_suffix(".pub").read_text()
        ssh.verify_sshsig(ssh.parse_line(line), blob, data)  # genuine
        assert tools.verify(made.folder, line, data, ssh.armor(blob)).returncode == 0
        assert ssh.user_verified(blob) is bool(flags & ssh.USER_VERIFICATION), private
    # the stolen file is the verified key: same line, its signatures verify with it
    assert (
        made.stolen.with_suffix(".pub").read_text() == made.verified.with_suffix(".pub").read_text()
    )
    # setting the flag in a signature made without it breaks the signature
    blob = bytearray(_signature(made.stolen, data, made.folder))
    blob[-5] |= ssh.USER_VERIFICATION
    with pytest.raises(ssh.SSHSignatureError, match=r"^the SSH signature does not verify$"):
        ssh.verify_sshsig(
            ssh.parse_line(made.verified.with_suffix(".pub").read_text()), bytes(blob), data
        )
    # and no other signature is user verified: a plain SSH key's, garbage
    plain = tools.keygen(made.folder, "plain", "ssh-ed25519")
    assert not ssh.user_verified(ssh.dearmor(tools.sign(plain, data)))
    assert not ssh.user_verified(b"SSHSIG")
    assert not ssh.user_verified(b"")


# --- compile ---------------------------------------------------------------------------------


def _approvers_with(bob_key: dict[str, Any]) -> list[dict[str, Any]]:
    bob = _approver("bob", "")
    bob["spec"]["keys"] = [bob_key]
    return [*_base({"bob"}), bob]


SETTINGS = BundleSettings(environment=CORPUS_ENVIRONMENT, cluster_view="off")


def test_compile_carries_user_verification_of_a_security_key_into_the_bundle(made: Made) -> None:
    line = made.verified.with_suffix(".pub").read_text().strip()
    compiled, problems = compile_bundle(
        _approvers_with({"publicKey": line, "userVerification": "required"}), SETTINGS
    )
    assert compiled is not None, problems
    (bob,) = [a for a in compiled["approvers"] if a["name"] == "bob"]
    assert bob["keys"][0]["userVerification"] == "required"
    loaded = parse_bundle_text(dump_bundle(compiled))
    assert [k.user_verification for k in loaded.approvers["bob"].keys] == [True]
    assert not any(k.user_verification for k in loaded.approvers["alice"].keys)
    # left out: not written, so every bundle compiled before is byte for byte the same
    compiled, problems = compile_bundle(_approvers_with({"publicKey": line}), SETTINGS)
    assert compiled is not None, problems
    assert "userVerification" not in json.dumps(compiled)


@pytest.mark.parametrize("form", ["pem", "ssh-ed25519", "ecdsa-sha2-nistp256"])
def test_user_verification_on_a_key_that_cannot_show_it_is_a_compile_error(
    made: Made, form: str
) -> None:
    if form == "pem":
        public = keys.public_key_pem(CryptoSigner.generate_ed25519().public_key)
    else:
        argv = {"ssh-ed25519": "ssh-ed25519", "ecdsa-sha2-nistp256": "ecdsa-sha2-nistp256"}
        public = tools.keygen(made.folder, f"c-{form}", argv[form]).with_suffix(".pub").read_text()
    compiled, problems = compile_bundle(
        _approvers_with({"publicKey": public, "userVerification": "required"}), SETTINGS
    )
    assert compiled is None
    (problem,) = problems
    assert problem.finding.path == ("spec", "keys", 0, "userVerification")
    assert problem.finding.message.startswith("userVerification is for security keys (sk-...)")
    assert "ssh-keygen -t ed25519-sk -O verify-required" in problem.finding.advice


def test_check_names_the_file_line_and_column_of_user_verification_on_another_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "gitops-repo", repo)
    path = repo / "approvers" / "bob.yaml"
    doc = load_manifests(path.read_text(), "bob.yaml")[0].obj
    assert doc is not None
    doc["spec"]["keys"][0]["userVerification"] = "required"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    code = main(["check", str(repo)])
    _, err = capsys.readouterr()
    assert code == 1, err
    assert "Traceback" not in err
    assert "approvers/bob.yaml:" in err
    assert ":$.spec.keys[0].userVerification" in err.replace(" ", ""), err
    assert "userVerification is for security keys" in err
    # a value other than `required` is the schema's, with what to write
    doc["spec"]["keys"][0]["userVerification"] = "preferred"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    code = main(["check", str(repo)])
    _, err = capsys.readouterr()
    assert code == 1, err
    assert "userVerification must be `required` (or left out: the touch only)" in err, err


def test_a_bundle_saying_user_verification_of_another_key_is_refused_whole(made: Made) -> None:
    """Compile never writes it; a bundle made by hand that does is refused, not read as
    "the touch only" (the requirement would be silently ignored)."""
    compiled, problems = compile_bundle(_approvers_with({"publicKey": _pem_of(made)}), SETTINGS)
    assert compiled is not None, problems
    (bob,) = [a for a in compiled["approvers"] if a["name"] == "bob"]
    bob["keys"][0]["userVerification"] = "required"
    compiled["generation"] = bundle_generation(compiled)
    with pytest.raises(
        BundleError, match=r"keys\[0\] of approver bob says userVerification"
    ) as caught:
        parse_bundle_text(dump_bundle(compiled))
    assert "recompile it" in caught.value.render()


# --- decide(), with a bundle compiled from the Approvers ----------------------------------


def _key_handle_signer(made: Made) -> CryptoSigner:
    """The verified key's private key as a plain Ed25519 key: sk-dummy's key handle is the
    libsodium secret key (seed, public key). A real security key never gives it out; sk-dummy
    lets the test sign in the forms that carry no flags (PEM, a plain OpenSSH line)."""
    handle = tools.read_sk_private(made.verified).key_handle
    private = Ed25519PrivateKey.from_private_bytes(handle[:32])
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signer = keys.signer_from_pem(pem)
    assert keys.ssh.parse_line(made.verified.with_suffix(".pub").read_text()).spki == (
        keys.public.key_material(keys.public_key_pem(signer.public_key))
    )
    return signer


def _pem_of(made: Made) -> str:
    return keys.public_key_pem(_key_handle_signer(made).public_key)


def _run() -> dict[str, Any]:
    return dict(load_manifests((BASE / "run.yaml").read_text(), "run.yaml")[0].obj or {})


def _judged(bundle_text: str, *envelopes: dict[str, Any]) -> Any:
    run = _run()
    run["metadata"]["annotations"] = {records.ANNOTATION: json.dumps(list(envelopes))}
    request = request_for_manifest(run, username="requester", groups=["agents-users"])
    return decide(request, parse_bundle_text(bundle_text), NOW)


def _compiled(bob_key: dict[str, Any]) -> dict[str, Any]:
    compiled, problems = compile_bundle(_approvers_with(bob_key), SETTINGS)
    assert compiled is not None, problems
    return compiled


def _alice() -> CryptoSigner:
    return keys.signer_from_pem((KEYS / "alice.key").read_bytes())


@pytest.fixture
def signers(made: Made) -> dict[str, Any]:
    return {
        "pin": tools.KeygenSigner(made.verified),
        "no-pin": tools.KeygenSigner(made.stolen),
        "touch-only": tools.KeygenSigner(made.touch_only),
    }


def test_a_record_without_user_verification_does_not_count_where_the_key_requires_it(
    made: Made, signers: dict[str, Any]
) -> None:
    line = made.verified.with_suffix(".pub").read_text().strip()
    required = dump_bundle(_compiled({"publicKey": line, "userVerification": "required"}))
    alice = _record(_run(), "alice", _alice())
    # with the PIN: counts
    decision = _judged(required, alice, _record(_run(), "bob", signers["pin"]))
    assert (decision.allowed, decision.reason) == (True, "approved"), decision.message
    # the same key without the PIN: refused, naming the key and what to do
    decision = _judged(required, alice, _record(_run(), "bob", signers["no-pin"]))
    assert (decision.allowed, decision.reason) == (False, "missing-approvals"), decision.message
    fingerprint = ssh.parse_line(line).fingerprint
    assert f"record 1 by bob: signed with bob's security key {SK} {fingerprint} {WITHOUT_PIN}" in (
        decision.message
    ), decision.message
    assert "`ssh-keygen -t ed25519-sk -O verify-required`" in decision.message
    # without the option, the touch alone counts, as before
    touch = dump_bundle(_compiled({"publicKey": line}))
    decision = _judged(touch, alice, _record(_run(), "bob", signers["no-pin"]))
    assert (decision.allowed, decision.reason) == (True, "approved"), decision.message
    # a key made without verify-required never shows it: its Approver cannot require it
    line = made.touch_only.with_suffix(".pub").read_text().strip()
    required = dump_bundle(_compiled({"publicKey": line, "userVerification": "required"}))
    decision = _judged(required, alice, _record(_run(), "bob", signers["touch-only"]))
    assert (decision.allowed, decision.reason) == (False, "missing-approvals"), decision.message
    assert WITHOUT_PIN in decision.message


def _listed_twice(made: Made, where: str, form: str) -> str:
    """A bundle made by hand (compile refuses one key listed twice): bob's security key
    with userVerification, and the same key again (``form``: the line without the option,
    a plain ssh-ed25519 line of its point, its PEM) under bob or under bob-ops."""
    line = made.verified.with_suffix(".pub").read_text().strip()
    compiled = _compiled({"publicKey": line, "userVerification": "required"})
    signer = _key_handle_signer(made)
    text = {
        "sk-line": line,
        "ssh-ed25519": SSHForm(signer).line.strip(),
        "pem": keys.public_key_pem(signer.public_key),
    }[form]
    loaded = keys.load_public_key(text)
    entry = {"keyid": loaded.keyid, "publicKey": text}
    held = {a["name"]: a for a in compiled["approvers"]}
    if where == "bob":
        held["bob"]["keys"].append(entry)
    else:
        ops = copy.deepcopy(held["bob"])
        ops.update(name="bob-ops", usernames=["bob-ops"], keys=[entry])
        compiled["approvers"].append(ops)
        compiled["approvers"].sort(key=lambda a: a["name"])
        for policy in compiled["policies"]:
            if "bob" in policy["approvers"]:
                policy["approvers"] = sorted([*policy["approvers"], "bob-ops"])
    compiled["generation"] = bundle_generation(compiled)
    return dump_bundle(compiled)


@pytest.mark.parametrize("where", ["bob", "bob-ops"])
@pytest.mark.parametrize("form", ["sk-line", "ssh-ed25519", "pem"])
def test_a_key_listed_twice_requires_user_verification_in_every_entry(
    made: Made, signers: dict[str, Any], where: str, form: str
) -> None:
    """The strictest rule of all a key's entries rules every entry: the key's security key
    signature without the PIN does not count through an entry without the option, and a
    signature in a form that cannot carry the flag (a raw Ed25519 signature for its PEM, a
    plain SSHSIG for an ssh-ed25519 line of its point) counts nowhere."""
    bundle = _listed_twice(made, where, form)
    if form == "sk-line":
        signer: Any = signers["no-pin"]
    elif form == "pem":
        signer = _key_handle_signer(made)
    else:
        signer = SSHForm(_key_handle_signer(made))
    alice = _record(_run(), "alice", _alice())
    decision = _judged(bundle, alice, _record(_run(), where, signer))
    assert (decision.allowed, decision.reason) == (False, "missing-approvals"), decision.message
    assert f"record 1 by {where}: signed with {where}'s" in decision.message, decision.message
    if form == "sk-line":
        assert WITHOUT_PIN in decision.message
    else:
        assert "in a form that cannot show user verification" in decision.message
    # and bob's security key with its PIN still counts (as whoever holds its line)
    holder = where if form == "sk-line" else "bob"
    decision = _judged(bundle, alice, _record(_run(), holder, signers["pin"]))
    assert (decision.allowed, decision.reason) == (True, "approved"), decision.message


# --- approve and verify, through a real ssh-agent --------------------------------------------


def _repo(tmp_path: Path, carol_line: str) -> Path:
    """The corpus base with carol's key a security key requiring user verification."""
    for name in ("policies.yaml", "run.yaml"):
        shutil.copy(BASE / name, tmp_path / name)
    shutil.copy(KEYS / "alice.key", tmp_path / "alice.key")
    docs = (BASE / "approvers.yaml").read_text().split("\n---\n")
    (index,) = [i for i, doc in enumerate(docs) if "\n  name: carol\n" in doc]
    docs[index] = (
        "apiVersion: gates.proompteng.ai/v1alpha1\nkind: Approver\nmetadata:\n  name: carol\n"
        'spec:\n  usernames:\n    - "carol"\n  groups:\n    - reviewers\n'
        f"  keys:\n    - publicKey: {carol_line.strip()}\n      userVerification: required"
    )
    (tmp_path / "approvers.yaml").write_text("\n---\n".join(docs))
    (tmp_path / "carol.yaml").write_text(docs[index] + "\n")
    return tmp_path


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def _approve(
    capsys: pytest.CaptureFixture[str], repo: Path, signer: str, approver: str, *more: str
) -> tuple[int, str]:
    return _cli(
        capsys,
        *("approve", str(repo / "run.yaml"), "--signer", signer, "--approver", approver),
        *("--in-place", "--now", "2026-11-21T11:00:00Z", "--env", "prod", *more),
    )


def _verify(capsys: pytest.CaptureFixture[str], repo: Path) -> tuple[int, str]:
    return _cli(
        capsys,
        *("verify", str(repo / "run.yaml"), "--policies", str(repo / "policies.yaml")),
        *(str(repo / "approvers.yaml"), "--now", "2026-11-21T12:00:00Z", "--user", "requester"),
        *("--env", "prod"),
    )


def _policies(repo: Path) -> tuple[str, ...]:
    return ("--policies", str(repo / "policies.yaml"), str(repo / "approvers.yaml"))


def test_approve_refuses_a_signature_without_user_verification_before_writing(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """carol's agent holds her security key file with its flags edited (no PIN): approve
    with the policies (or a bundle, or her Approver as --public-key) knows her key requires
    user verification and says so, writing nothing; without them it cannot know, the record
    is written, and verify says why it does not count."""
    line = made.verified.with_suffix(".pub").read_text()
    repo = _repo(tmp_path, line)
    code, output = _approve(capsys, repo, str(repo / "alice.key"), "alice")
    assert code == 0, output
    before = (repo / "run.yaml").read_text()
    pub = str(made.verified.with_suffix(".pub"))
    with tools.agent(tmp_path) as agent:
        agent.add(made.stolen)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(agent.socket))
        for more in (_policies(repo), ("--public-key", str(repo / "carol.yaml"))):
            code, output = _approve(capsys, repo, f"ssh-agent:{pub}", "carol", *more)
            assert code == 1, output
            assert "Traceback" not in output
            assert "the security key signed without user verification (no PIN)" in output, output
            assert "userVerification: required: the record would not count" in output
            assert "nothing was written" in output
            assert "ssh-keygen -t ed25519-sk -O verify-required" in output
            assert (repo / "run.yaml").read_text() == before
        code, output = _approve(capsys, repo, f"ssh-agent:{pub}", "carol")
        assert code == 0, output
    code, output = _verify(capsys, repo)
    assert code == 1, output
    assert f"by carol: signed with carol's security key {SK}" in output, output
    assert WITHOUT_PIN in output
    code, output = _cli(
        capsys,
        *("explain", str(repo / "run.yaml"), *_policies(repo), "--env", "prod"),
        *("--now", "2026-11-21T12:00:00Z", "--user", "requester"),
    )
    assert "Traceback" not in output
    assert f"carol: signed with carol's security key {SK}" in output, output
    assert WITHOUT_PIN in output


def test_approve_with_the_pin_counts(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    line = made.verified.with_suffix(".pub").read_text()
    repo = _repo(tmp_path, line)
    code, output = _approve(capsys, repo, str(repo / "alice.key"), "alice")
    assert code == 0, output
    pub = str(made.verified.with_suffix(".pub"))
    # the agent asks the security key for the PIN through its askpass (sk-dummy takes any)
    with tools.agent(tmp_path) as agent:
        agent.add(made.verified)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(agent.socket))
        code, output = _approve(capsys, repo, f"ssh-agent:{pub}", "carol", *_policies(repo))
        assert code == 0, output
    code, output = _verify(capsys, repo)
    assert output.startswith(
        "ADMITTED agents/codex-run-sample in prod (approved; approved by alice, carol)"
    ), output
    assert code == 0


def test_keygen_import_writes_user_verification_of_a_security_key_only(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pub = made.verified.with_suffix(".pub")
    argv = ["keygen", "ivy", "--out", str(tmp_path), "--usernames", "ivy", "--groups", "g"]
    code, output = _cli(capsys, *argv, "--import", str(pub), "--user-verification")
    assert code == 0, output
    doc = load_manifests((tmp_path / "ivy.yaml").read_text(), "ivy.yaml")[0].obj
    assert doc is not None
    (key,) = doc["spec"]["keys"]
    assert key["userVerification"] == "required", doc
    assert keys.load_public_key(key["publicKey"]) == keys.load_public_key(pub.read_text())
    compiled, problems = compile_bundle([*_base({"ivy"}), doc], SETTINGS)
    assert compiled is not None, problems
    (ivy,) = [a for a in compiled["approvers"] if a["name"] == "ivy"]
    assert ivy["keys"][0]["userVerification"] == "required"
    # on a key whose signatures carry no flags, and without --import: usage errors
    plain = tools.keygen(made.folder, "kg-plain", "ssh-ed25519").with_suffix(".pub")
    code, output = _cli(capsys, *argv, "--import", str(plain), "--user-verification", "--force")
    assert code == 2, output
    assert "--user-verification is for security keys (sk-...)" in output
    code, output = _cli(capsys, *argv, "--user-verification", "--force")
    assert code == 2, output
    assert "ssh-keygen -t ed25519-sk -O verify-required" in output
    assert "Traceback" not in output


def test_compile_writes_user_verification_into_every_output_deterministically(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example repo with bob's key a security key requiring the PIN: the bundle and the
    chart values (which carry the bundle) say so, the same bytes on every compile; the
    example's committed outputs (no such key) are unchanged (tests/unit/test_compiler.py)."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "gitops-repo", repo)
    path = repo / "approvers" / "bob.yaml"
    doc = load_manifests(path.read_text(), "bob.yaml")[0].obj
    assert doc is not None
    line = " ".join((KEYS / "bob-sk.pub").read_text().split()[:2])
    doc["spec"]["keys"] = [{"publicKey": line, "userVerification": "required"}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    outputs = []
    for out in ("one", "two"):
        code, output = _cli(capsys, "compile", str(repo), "--out", str(tmp_path / out))
        assert code == 0, output
        outputs.append(
            {
                p.relative_to(tmp_path / out): p.read_bytes()
                for p in (tmp_path / out).rglob("*")
                if p.is_file()
            }
        )
    assert outputs[0] == outputs[1]
    for env in ("dev", "staging", "prod"):
        bundle = json.loads(outputs[0][Path(env) / "bundle.json"])
        (bob,) = [a for a in bundle["approvers"] if a["name"] == "bob"]
        keyid = keys.load_public_key(line).keyid
        entry = {"keyid": keyid, "publicKey": line, "userVerification": "required"}
        assert bob["keys"] == [entry]
        values = yaml.safe_load(outputs[0][Path(env) / "approvalgate-values.yaml"])
        assert json.loads(values["policyBundle"]["content"]) == bundle
        loaded = parse_bundle_text(values["policyBundle"]["content"])
        assert [k.user_verification for k in loaded.approvers["bob"].keys] == [True]


def test_an_ecdsa_security_key_without_the_pin_does_not_count_either(made: Made) -> None:
    line = made.verified_ecdsa.with_suffix(".pub").read_text().strip()
    required = dump_bundle(_compiled({"publicKey": line, "userVerification": "required"}))
    stolen = tools.with_flags(made.verified_ecdsa, made.folder / "stolen-ecdsa", 0x01)
    alice = _record(_run(), "alice", _alice())
    decision = _judged(required, alice, _record(_run(), "bob", tools.KeygenSigner(stolen)))
    assert (decision.allowed, decision.reason) == (False, "missing-approvals"), decision.message
    assert f"signed with bob's security key {ECDSA_SK} " in decision.message, decision.message
    assert WITHOUT_PIN in decision.message
    pinned = tools.KeygenSigner(made.verified_ecdsa)
    decision = _judged(required, alice, _record(_run(), "bob", pinned))
    assert (decision.allowed, decision.reason) == (True, "approved"), decision.message


def test_a_signer_of_another_form_of_a_key_requiring_the_pin_writes_nothing(
    made: Made, tmp_path: Path
) -> None:
    """The key under bob's security key, as a PEM key file (sk-dummy's key handle), with a
    bundle requiring the PIN of that key through its security key entry: its signatures
    would count nowhere, so the signer refuses them before anything is written."""
    from approvalgate.approvals.errors import RecordError
    from approvalgate.commands import _signer

    line = made.verified.with_suffix(".pub").read_text().strip()
    bundle = parse_bundle_text(
        dump_bundle(_compiled({"publicKey": line, "userVerification": "required"}))
    )
    handle = tools.read_sk_private(made.verified).key_handle
    private = Ed25519PrivateKey.from_private_bytes(handle[:32])
    pem = tmp_path / "bob.key"
    pem.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    signer = _signer.load(str(pem), bundle=bundle, approver="bob")
    with pytest.raises(RecordError) as caught:
        signer.sign(b"DSSEv1 the PAE of an approval")
    message = caught.value.render()
    assert "its ed25519 signatures cannot show user verification" in message, message
    assert "nothing was written" in message
    # a key file the bundle asks nothing of signs as before
    other = _signer.load(str(KEYS / "alice.key"), bundle=bundle, approver="alice")
    assert other.sign(b"DSSEv1 the PAE of an approval").signature
