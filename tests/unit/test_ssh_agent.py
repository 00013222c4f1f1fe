"""``--signer ssh-agent:LOCATION`` against the real ``ssh-agent`` (security keys through
OpenSSH's sk-dummy), and our signatures checked by the real ``ssh-keygen -Y verify``.

- for every accepted type, the agent's SSHSIG over the PAE verifies with ``ssh-keygen -Y
  verify`` (allowed_signers) and with our check; the signer's public key is the .pub line's;
- LOCATION: a .pub path, a ``SHA256:`` fingerprint, or nothing when the agent holds one key;
- clear errors: SSH_AUTH_SOCK unset, the agent unreachable, the key not in the agent (or
  gone before signing), a private key file named, the agent refusing (a key added with
  ``ssh-add -c`` whose confirmation says no), a security key that signs without touch, an
  RSA signature made with SHA-1 (``ssh-rsa``);
- end to end through the CLI: an Approver holding an OpenSSH public key, ``approve
  --signer ssh-agent:...`` then ``verify`` admits, for every type; a tampered signature is
  not counted; a key we do not accept is a compiler message naming the accepted forms.

The agent is started per module in a temporary folder and killed after (tests/support/ssh.py).
"""

from __future__ import annotations

import base64
import json
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from approvalgate.approvals import bundle_trust, keys, records
from approvalgate.approvals.bundle_trust import pae
from approvalgate.approvals.errors import RecordError
from approvalgate.approvals.keys import ssh
from approvalgate.cli import main
from approvalgate.signers import sshagent
from tests.support import ssh as tools
from tests.support.corpus import BASE, KEYS

TYPES = list(tools.KEY_TYPES)
DATA = pae(b'{"what": "the bytes an approval signs"}')
ADMITTED = "ADMITTED agents/codex-run-sample in prod (approved; approved by alice, carol)\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Private keys of every accepted type, a security key without touch, a spare key."""
    tools.require_tools()
    where = tmp_path_factory.mktemp("ssh-agent")
    for i, keytype in enumerate(TYPES):
        tools.keygen(where, f"k{i}", keytype)
    tools.keygen(where, "notouch", "sk-ssh-ed25519@openssh.com", "-O", "no-touch-required")
    tools.keygen(where, "confirm", "ssh-ed25519")
    tools.keygen(where, "absent", "ssh-ed25519")
    tools.keygen(where, "removed", "ssh-ed25519")
    return where


def _private(folder: Path, keytype: str) -> Path:
    return folder / f"k{TYPES.index(keytype)}"


def _pub(private: Path) -> Path:
    return private.with_suffix(".pub")


@pytest.fixture(scope="module")
def agent(folder: Path) -> Iterator[tools.Agent]:
    """One ssh-agent for the module holding every key but ``absent`` (``confirm`` with -c)."""
    with tools.agent(folder) as running:
        for keytype in TYPES:
            running.add(_private(folder, keytype))
        running.add(folder / "notouch")
        running.add(folder / "removed")
        running.add(folder / "confirm", "-c")
        yield running


@pytest.fixture
def in_agent(agent: tools.Agent, monkeypatch: pytest.MonkeyPatch) -> tools.Agent:
    """The module's agent as the user's (SSH_AUTH_SOCK)."""
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent.socket))
    return agent


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def _load(location: str) -> sshagent.SSHAgentSigner:
    return sshagent.load(location, _read)


def _refused(location: str) -> str:
    with pytest.raises(RecordError) as caught:
        _load(location).sign(DATA)
    return caught.value.render()


# --- our signatures, checked by ssh-keygen and by us ---------------------------------------


@pytest.mark.parametrize("keytype", TYPES)
def test_agent_signatures_verify_with_ssh_keygen_and_here(
    folder: Path, in_agent: tools.Agent, keytype: str
) -> None:
    pub = _pub(_private(folder, keytype))
    signer = _load(str(pub))
    assert signer.public_key == keys.load_public_key(pub.read_text())
    signature = signer.sign(DATA)
    assert signature.keyid == signer.public_key.keyid
    blob = bytes.fromhex(signature.signature)
    result = tools.verify(folder, pub.read_text(), DATA, ssh.armor(blob))
    assert result.returncode == 0, result.stderr
    assert b'Good "gates.proompteng.ai" signature for approver' in result.stdout
    key_type = keys.key_type_of(signer.public_key)
    assert key_type is not None
    assert key_type.check is not None
    key_type.check(signer.public_key)(blob, DATA)
    if keytype == "ssh-rsa":
        assert b"rsa-sha2-512" in blob
    # through a record: signed by the agent, verified by the one verifier
    envelope = records.sign(_claim(), signer)
    parsed, problems = records.parse_annotation(json.dumps([envelope]))
    assert problems == []
    assert records.signed_by(parsed[0], [signer.public_key]) == signer.public_key


def _claim() -> records.Claim:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    return records.Claim(
        subject=records.subject_name("agents", "run-1"),
        digest="ab" * 32,
        decision="approve",
        approver="carol",
        reason="",
        issued_at=now - timedelta(hours=1),
        expires_at=now + timedelta(hours=1),
        nonce="n1",
        environment="prod",
    )


# --- naming the key ------------------------------------------------------------------------


def test_a_key_is_named_by_its_pub_file_or_its_fingerprint(
    folder: Path, in_agent: tools.Agent
) -> None:
    pub = _pub(_private(folder, "sk-ecdsa-sha2-nistp256@openssh.com"))
    printed = tools.run(["ssh-keygen", "-l", "-f", str(pub)]).split()[1].decode()
    assert printed.startswith("SHA256:")
    by_file, by_fingerprint = _load(str(pub)), _load(printed)
    assert by_file.public_key == by_fingerprint.public_key == keys.load_public_key(pub.read_text())
    assert by_file.fingerprint == printed
    # the registered kind: --signer ssh-agent:PATH.pub
    from approvalgate import signers

    signers.register_all()
    assert keys.load_signer(f"ssh-agent:{pub}", _read).public_key == by_file.public_key


def test_nothing_names_the_only_key_of_an_agent(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub = _pub(_private(folder, "sk-ssh-ed25519@openssh.com"))
    with tools.agent(tmp_path) as lone:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(lone.socket))
        with pytest.raises(RecordError) as caught:
            _load("")
        assert caught.value.render() == (
            "ssh-agent: the ssh-agent holds no key\n"
            "  hint: add yours: ssh-add ~/.ssh/id_ed25519 (then --signer ssh-agent:)"
        )
        lone.add(_private(folder, "sk-ssh-ed25519@openssh.com"))
        signer = _load("")
        assert signer.public_key == keys.load_public_key(pub.read_text())
        result = tools.verify(
            tmp_path, pub.read_text(), DATA, ssh.armor(bytes.fromhex(signer.sign(DATA).signature))
        )
        assert result.returncode == 0, result.stderr


def test_nothing_is_not_enough_when_the_agent_holds_several_keys(in_agent: tools.Agent) -> None:
    message = _refused("")
    head, hint = message.split("\n")
    assert (
        head
        == f"ssh-agent: the ssh-agent holds {len(in_agent.added)} keys: name the one to sign with"
    )
    assert hint.startswith("  hint: --signer ssh-agent:PATH.pub or one of ssh-agent:SHA256:")
    assert hint.count("ssh-agent:SHA256:") == len(in_agent.added)


# --- clear errors ----------------------------------------------------------------------------


def test_without_ssh_auth_sock_there_is_no_agent(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    pub = _pub(_private(folder, "ssh-ed25519"))
    assert _refused(str(pub)) == (
        f"ssh-agent:{pub}: SSH_AUTH_SOCK is not set, so there is no ssh-agent to ask\n"
        '  hint: start one and add your key: eval "$(ssh-agent)" && ssh-add ~/.ssh/id_ed25519'
    )


def test_an_unreachable_agent_is_named(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "gone.sock"
    monkeypatch.setenv("SSH_AUTH_SOCK", str(gone))
    assert _refused("") == (
        f"cannot reach the ssh-agent at {gone} (SSH_AUTH_SOCK): No such file or directory\n"
        '  hint: is the agent still running? start one and add your key: eval "$(ssh-agent)" '
        "&& ssh-add ~/.ssh/id_ed25519"
    )
    # an agent that stopped: its socket path is left to nothing
    with tools.agent(tmp_path) as stopping:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(stopping.socket))
    assert _refused("").startswith(
        f"cannot reach the ssh-agent at {stopping.socket} (SSH_AUTH_SOCK): "
    )


def test_a_key_not_in_the_agent_is_named_with_what_it_holds(
    folder: Path, in_agent: tools.Agent
) -> None:
    pub = _pub(folder / "absent")
    fingerprint = ssh.parse_line(pub.read_text()).fingerprint
    message = _refused(str(pub))
    assert message.startswith(
        f"ssh-agent:{pub}: the ssh-agent does not hold the key {fingerprint} (it holds SHA256:"
    )
    assert message.endswith(
        "  hint: add it: ssh-add PATH-OF-THE-PRIVATE-KEY (a security key: ssh-add -K, or the "
        "key's handle file)"
    )
    assert _refused("SHA256:nothing").startswith(
        "ssh-agent:SHA256:nothing: the ssh-agent does not hold the key SHA256:nothing"
    )


def test_a_key_removed_before_signing_is_named(folder: Path, in_agent: tools.Agent) -> None:
    signer = _load(str(_pub(folder / "removed")))
    tools.run(["ssh-add", "-d", str(folder / "removed")], env=in_agent.env())
    in_agent.added.remove(folder / "removed")
    with pytest.raises(
        RecordError, match=r"^the ssh-agent no longer holds the ssh-ed25519 key SHA256:"
    ):
        signer.sign(DATA)


def test_a_private_key_file_is_not_a_location(folder: Path, in_agent: tools.Agent) -> None:
    private = _private(folder, "ssh-ed25519")
    assert _refused(str(private)) == (
        f"ssh-agent:{private} is a private key file\n"
        f"  hint: name its public key instead: --signer ssh-agent:{private}.pub (the key itself "
        f"goes into the agent: ssh-add {private})"
    )
    (folder / "not-a-key.pub").write_text("hello\n")
    assert _refused(str(folder / "not-a-key.pub")).startswith(
        f"{folder / 'not-a-key.pub'}: not an OpenSSH public key: not an OpenSSH public key line"
    )


def test_the_agent_refusing_to_sign_is_an_error(folder: Path, in_agent: tools.Agent) -> None:
    """``ssh-add -c``: the agent asks for confirmation, the answer is no (SSH_ASKPASS=false)."""
    message = _refused(str(_pub(folder / "confirm")))
    assert message.startswith("the ssh-agent refused to sign with the ssh-ed25519 key SHA256:"), (
        message
    )
    assert "key cannot be used for signing" in message
    assert "touch the key when it blinks" in message


def test_a_security_key_that_signs_without_touch_is_refused_before_use(
    folder: Path, in_agent: tools.Agent
) -> None:
    message = _refused(str(_pub(folder / "notouch")))
    assert message.startswith(
        "the ssh-agent's signature with the sk-ssh-ed25519@openssh.com key SHA256:"
    )
    assert "would be refused: the security key signed without user presence (no touch)" in message


def test_an_rsa_signature_the_agent_makes_with_sha1_is_refused(
    folder: Path, in_agent: tools.Agent
) -> None:
    """The agent still signs ``ssh-rsa`` (SHA-1) when asked with no flag; nobody accepts it."""
    import paramiko

    pub = _pub(_private(folder, "ssh-rsa"))
    blob = ssh.parse_line(pub.read_text()).blob
    agent = paramiko.Agent()
    try:
        (held,) = [k for k in agent.get_keys() if k.blob == blob]
        raw = bytes(held.sign_ssh_data(ssh.signed_data(DATA), None))
    finally:
        agent.close()
    assert raw.startswith(struct.pack(">I", 7) + b"ssh-rsa")
    sshsig = ssh.sshsig(blob, raw)
    key = keys.load_public_key(pub.read_text())
    key_type = keys.key_type_of(key)
    assert key_type is not None
    assert key_type.check is not None
    with pytest.raises(ssh.SSHSignatureError, match=r"made with ssh-rsa: only rsa-sha2-512"):
        key_type.check(key)(sshsig, DATA)
    assert tools.verify(folder, pub.read_text(), DATA, ssh.armor(sshsig)).returncode != 0


# --- end to end through the CLI ----------------------------------------------------------------


def _approver(name: str, public: str) -> str:
    """An Approver document with an OpenSSH public key, as a user writes it."""
    return (
        "apiVersion: gates.proompteng.ai/v1alpha1\n"
        "kind: Approver\n"
        f"metadata:\n  name: {name}\n"
        f'spec:\n  usernames:\n    - "{name}"\n  groups:\n    - reviewers\n'
        f"  keys:\n    - publicKey: {public.strip()}\n"
    )


def _repo(tmp_path: Path, carol_public: str) -> Path:
    for name in ("policies.yaml", "run.yaml"):
        shutil.copy(BASE / name, tmp_path / name)
    shutil.copy(KEYS / "alice.key", tmp_path / "alice.key")
    docs = (BASE / "approvers.yaml").read_text().split("\n---\n")
    (index,) = [i for i, doc in enumerate(docs) if "\n  name: carol\n" in doc]
    docs[index] = _approver("carol", carol_public).rstrip("\n")
    (tmp_path / "approvers.yaml").write_text("\n---\n".join(docs))
    return tmp_path


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def _approve(capsys: pytest.CaptureFixture[str], repo: Path, signer: str, approver: str) -> str:
    code, output = _cli(
        capsys,
        *("approve", str(repo / "run.yaml"), "--signer", signer, "--approver", approver),
        *("--in-place", "--now", "2026-11-21T11:00:00Z", "--env", "prod"),
    )
    assert code == 0, output
    return output


def _verify(capsys: pytest.CaptureFixture[str], repo: Path) -> tuple[int, str]:
    return _cli(
        capsys,
        *("verify", str(repo / "run.yaml"), "--policies", str(repo / "policies.yaml")),
        *(str(repo / "approvers.yaml"), "--now", "2026-11-21T12:00:00Z", "--user", "requester"),
        *("--env", "prod"),
    )


@pytest.mark.parametrize("keytype", TYPES)
def test_an_approver_with_an_ssh_key_approves_through_the_agent(
    folder: Path,
    in_agent: tools.Agent,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    keytype: str,
) -> None:
    pub = _pub(_private(folder, keytype))
    repo = _repo(tmp_path, pub.read_text())
    _approve(capsys, repo, str(repo / "alice.key"), "alice")
    assert _approve(capsys, repo, f"ssh-agent:{pub}", "carol").startswith("signed ")
    code, output = _verify(capsys, repo)
    assert output.startswith(ADMITTED), output
    assert code == 0


def test_a_tampered_ssh_signature_is_not_counted(
    folder: Path, in_agent: tools.Agent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pub = _pub(_private(folder, "sk-ssh-ed25519@openssh.com"))
    repo = _repo(tmp_path, pub.read_text())
    _approve(capsys, repo, str(repo / "alice.key"), "alice")
    fingerprint = ssh.parse_line(pub.read_text()).fingerprint
    _approve(capsys, repo, f"ssh-agent:{fingerprint}", "carol")
    run = (repo / "run.yaml").read_text()
    keyid = keys.load_public_key(pub.read_text()).keyid
    start = run.index(keyid)
    # the envelope's signature follows its keyid in the annotation (JSON, keys sorted): flip
    # one base64 letter inside the SSHSIG blob's signature field
    marker = '"sig":"'
    at = run.index(marker, start) + len(marker) + 600
    tampered = run[:at] + ("A" if run[at] != "A" else "B") + run[at + 1 :]
    (repo / "run.yaml").write_text(tampered)
    code, output = _verify(capsys, repo)
    assert not output.startswith("ADMITTED"), output
    assert code != 0


def test_a_key_we_do_not_accept_is_a_compiler_message_naming_the_forms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tools.require_tools()
    p521 = _pub(tools.keygen(tmp_path, "p521", "ecdsa", "-b", "521")).read_text()
    repo = _repo(tmp_path, p521)
    _, output = _verify(capsys, repo)
    assert (
        "spec.keys[0].publicKey: not a usable public key: ecdsa-sha2-nistp521 keys are not "
        "accepted (accepted: ssh-ed25519, sk-ssh-ed25519@openssh.com, ecdsa-sha2-nistp256, "
        "ecdsa-sha2-nistp384, sk-ecdsa-sha2-nistp256@openssh.com, ssh-rsa)\n"
        "  hint: publicKey is a PEM public key (Ed25519, ECDSA P-256, ECDSA P-384, RSA-PSS) or "
        "an OpenSSH public key line (ssh-ed25519, sk-ssh-ed25519@openssh.com, "
        "ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, sk-ecdsa-sha2-nistp256@openssh.com, "
        "ssh-rsa); `approvalgate keygen NAME` writes an Approver with a new key, an SSH key's "
        "line is its .pub file"
    ) in output, output


def test_approve_help_names_the_ssh_agent_signer(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["approve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "ssh-agent:... (a key in your ssh-agent: its .pub file, its SHA256: fingerprint" in out
    assert "agent:~/.ssh/id_ed25519_sk.pub)" in out  # argparse wraps at the hyphen


def test_the_annotation_carries_the_sshsig_blob(folder: Path, in_agent: tools.Agent) -> None:
    """The DSSE signature is the binary SSHSIG blob (base64 in the envelope)."""
    signer = _load(str(_pub(_private(folder, "ssh-ed25519"))))
    envelope = records.sign(_claim(), signer)
    blob = base64.b64decode(envelope["signatures"][0]["sig"])
    assert blob.startswith(b"SSHSIG" + struct.pack(">I", 1))
    assert (
        ssh.verify_sshsig(
            ssh.parse_key(signer.public_key),
            blob,
            records.parse_annotation(json.dumps([envelope]))[0][0].envelope.pae(),
        )
        is None
    )


def test_an_agent_key_signs_a_bundle_that_its_openssh_line_opens(
    folder: Path, in_agent: tools.Agent
) -> None:
    """Bundle signing takes any signer and any accepted key: an sk key pinned as its .pub line."""
    pub = _pub(_private(folder, "sk-ecdsa-sha2-nistp256@openssh.com"))
    signer = _load(str(pub))
    bundle = b'{"kind": "ApprovalBundle", "revision": 3}'
    text = bundle_trust.dump_signatures(bundle_trust.sign_bundle(bundle, [signer]))
    trust = bundle_trust.trust_from_texts([("carol.pub", pub.read_text())])
    assert bundle_trust.check_signatures(bundle, text, trust, "bundle") == [signer.public_key]
    document = json.loads(text)
    sig = document["signatures"][0]["sig"]
    document["signatures"][0]["sig"] = sig[:-20] + ("0" if sig[-20] != "0" else "1") + sig[-19:]
    with pytest.raises(bundle_trust.BundleRefused) as caught:
        bundle_trust.check_signatures(bundle, json.dumps(document), trust, "bundle")
    assert caught.value.reason == "signature-invalid"


def test_an_openssh_private_key_file_is_pointed_to_the_agent(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private = _private(folder, "ssh-ed25519")
    code, output = _cli(
        capsys,
        *("approve", str(BASE / "run.yaml"), "--signer", str(private), "--approver", "carol"),
        *("--now", "2026-11-21T11:00:00Z", "--env", "prod"),
    )
    assert (code, output) == (
        1,
        f"error: {private} is an OpenSSH private key: SSH keys sign through the ssh-agent\n"
        f"  hint: add it to your agent (ssh-add {private}) and sign with "
        f"--signer ssh-agent:{private}.pub\n",
    )
