"""``hsm:`` signers on a real PKCS#11 token: SoftHSM2 (Debian ``softhsm2``, installed by
tools/system-packages.sh), no mocks.

One token per module, in a temporary folder, with an ECDSA P-256 key pair (CKA_ID 2) and a
P-384 one (CKA_ID 3) generated ON the token, sensitive and never extractable:

- the private keys cannot be read out of the token (the token refuses, and approvalgate's
  signer holds no key material: it has the token sign);
- ``keygen --import hsm:...`` writes the Approver document from the token's public key;
- ``approve --signer hsm:...`` signs and ``verify`` admits, beside a key file approver; a
  tampered record is refused;
- wrong PIN, no PIN, a missing module, a missing token or key, a bad REF: one clear error
  each, exit 1 or 2, never a traceback.

Without SoftHSM2 these tests fail (they never skip): run `make system-packages`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pkcs11.exceptions
import pkcs11.util
import pkcs11.util.ec
import pytest
from cryptography.hazmat.primitives import serialization
from pkcs11 import Attribute, KeyType, ObjectClass

from approvalgate.approvals import keys
from approvalgate.cli import main
from approvalgate.signers import pkcs11 as hsm
from tests.support.cli_output import OFFLINE_WARNING
from tests.support.corpus import BASE, KEYS
from tests.support.softhsm import MODULE, PIN, SO_PIN, SoftHSM, softhsm2_util

LABEL = "approvalgate-test"
P256_ID, P384_ID, P521_ID = 2, 3, 4
REF = f"hsm:{P256_ID}?label={LABEL}"
REF_384 = f"hsm:{P384_ID}?label={LABEL}"


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pkcs11.Token]:
    """A fresh SoftHSM2 token with a P-256 and a P-384 key pair made on it."""
    with pytest.MonkeyPatch.context() as env:
        softhsm = SoftHSM.create(tmp_path_factory.mktemp("softhsm2"), LABEL, env.setenv)
        softhsm.generate_ec(P256_ID, "secp256r1")
        softhsm.generate_ec(P384_ID, "secp384r1")
        softhsm.generate_ec(P521_ID, "secp521r1")  # not an approval key type
        assert softhsm.ref(P256_ID) == REF
        yield softhsm.token()


@pytest.fixture
def token_env(token: pkcs11.Token, monkeypatch: pytest.MonkeyPatch) -> pkcs11.Token:
    """The module and PIN as a user sets them (environment, never flags)."""
    monkeypatch.setenv(hsm.MODULE_ENV, MODULE)
    monkeypatch.setenv(hsm.PIN_ENV, PIN)
    monkeypatch.delenv(hsm.SSLIB_MODULE_ENV, raising=False)
    return token


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _token_public_pem(token: pkcs11.Token, key_id: int) -> str:
    with token.open() as session:
        public = session.get_key(
            ObjectClass.PUBLIC_KEY, KeyType.EC, id=pkcs11.util.biginteger(key_id)
        )
        der = pkcs11.util.ec.encode_ec_public_key(public)
    loaded = serialization.load_der_public_key(der)
    return loaded.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


# --- the private key never leaves the token --------------------------------------------------


def test_the_private_keys_are_sensitive_and_never_extractable(token: pkcs11.Token) -> None:
    with token.open(user_pin=PIN) as session:
        private = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
        assert len(private) == 3
        for key in private:
            assert key[Attribute.SENSITIVE] is True
            assert key[Attribute.EXTRACTABLE] is False
            assert key[Attribute.ALWAYS_SENSITIVE] is True
            assert key[Attribute.NEVER_EXTRACTABLE] is True
            # the private scalar: the token refuses to give it, even to its logged-in user
            with pytest.raises(pkcs11.exceptions.AttributeSensitive):
                key[Attribute.VALUE]
            # and it cannot be wrapped out under a key we would hold
            wrapping = session.generate_key(
                KeyType.AES, 256, template={Attribute.WRAP: True, Attribute.TOKEN: False}
            )
            with pytest.raises(pkcs11.exceptions.KeyUnextractable):
                wrapping.wrap_key(key, mechanism=pkcs11.Mechanism.AES_KEY_WRAP_PAD)


def test_the_signer_holds_no_key_material_and_the_token_signs(token_env: pkcs11.Token) -> None:
    from approvalgate import signers

    signers.register_all()
    signer = keys.load_signer(REF, lambda _: b"")
    assert not hasattr(signer, "private_bytes")
    held = [v for v in vars(signer).values() if not isinstance(v, (str, int, type(None)))]
    assert all("private" not in type(v).__name__.lower() for v in held)
    public = keys.load_public_key(_token_public_pem(token_env, P256_ID))
    assert signer.public_key == public
    signature = signer.sign(b"payload")
    public.verify_signature(signature, b"payload")  # DER ECDSA, verified offline


# --- keygen --import, approve, verify --------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path, token_env: pkcs11.Token, capsys: pytest.CaptureFixture[str]) -> Path:
    """The decision corpus' repo: alice holds a key file, carol's key is on the token."""
    for name in ("policies.yaml", "run.yaml"):
        shutil.copy(BASE / name, tmp_path / name)
    shutil.copy(KEYS / "alice.key", tmp_path / "alice.key")
    code, out, err = _run(
        capsys,
        *("keygen", "carol", "--import", REF, "--usernames", "carol"),
        *("--groups", "reviewers", "--out", str(tmp_path)),
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[1:] == [
        f"private key: on PKCS#11 token '{LABEL}' (key id 2), never exported: it signs there",
        f"approver:    {tmp_path}/carol.yaml (commit it to your policy repo's approvers/ folder)",
        f"sign with:   approvalgate approve ... --signer {REF} --approver carol",
    ]
    assert not (tmp_path / "carol.key").exists()
    carol = (tmp_path / "carol.yaml").read_text()
    docs = (BASE / "approvers.yaml").read_text().split("\n---\n")
    (index,) = [i for i, doc in enumerate(docs) if "\n  name: carol\n" in doc]
    docs[index] = carol.rstrip("\n")
    (tmp_path / "approvers.yaml").write_text("\n---\n".join(docs))
    return tmp_path


def _approve(
    capsys: pytest.CaptureFixture[str], repo: Path, signer: str, approver: str, *extra: str
) -> tuple[int, str]:
    code, _, err = _run(
        capsys,
        *("approve", str(repo / "run.yaml"), "--signer", signer, "--approver", approver),
        *("--in-place", "--now", "2026-11-21T11:00:00Z", "--env", "prod", *extra),
    )
    return code, err


def _verify(capsys: pytest.CaptureFixture[str], repo: Path) -> str:
    _, out, err = _run(
        capsys,
        *("verify", str(repo / "run.yaml"), "--policies", str(repo / "policies.yaml")),
        *(str(repo / "approvers.yaml"), "--now", "2026-11-21T12:00:00Z", "--user", "requester"),
        *("--env", "prod"),
    )
    return out + err


def test_keygen_imports_the_tokens_public_key(repo: Path, token_env: pkcs11.Token) -> None:
    doc = (repo / "carol.yaml").read_text()
    pem = _token_public_pem(token_env, P256_ID)
    assert "".join(f"        {line}\n" for line in pem.splitlines()) in doc
    assert "PRIVATE" not in doc


def test_a_token_key_and_a_key_file_approve_and_verify_admits(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    assert _approve(capsys, repo, str(repo / "alice.key"), "alice")[0] == 0
    code, err = _approve(capsys, repo, REF, "carol")
    assert code == 0 and err.startswith("signed "), err
    assert _verify(capsys, repo) == (
        "ADMITTED agents/codex-run-sample in prod (approved; approved by alice, carol)\n"
        + OFFLINE_WARNING
    )


def test_a_p384_token_key_approves_too(
    capsys: pytest.CaptureFixture[str], repo: Path, token_env: pkcs11.Token
) -> None:
    code, _, err = _run(
        capsys,
        *("keygen", "carol", "--import", REF_384, "--usernames", "carol", "--force"),
        *("--groups", "reviewers", "--out", str(repo)),
    )
    assert (code, err) == (0, "")
    approvers = (repo / "approvers.yaml").read_text()
    old = _token_public_pem(token_env, P256_ID)
    new = _token_public_pem(token_env, P384_ID)
    indent = "        "
    (repo / "approvers.yaml").write_text(
        approvers.replace(
            "".join(indent + line + "\n" for line in old.splitlines()),
            "".join(indent + line + "\n" for line in new.splitlines()),
        )
    )
    assert _approve(capsys, repo, str(repo / "alice.key"), "alice")[0] == 0
    assert _approve(capsys, repo, REF_384, "carol")[0] == 0
    assert _verify(capsys, repo).startswith(
        "ADMITTED agents/codex-run-sample in prod (approved; approved by alice, carol)\n"
    )


def test_a_tampered_token_signature_is_refused(
    capsys: pytest.CaptureFixture[str], repo: Path, token_env: pkcs11.Token
) -> None:
    assert _approve(capsys, repo, str(repo / "alice.key"), "alice")[0] == 0
    assert _approve(capsys, repo, REF, "carol")[0] == 0
    run = (repo / "run.yaml").read_text()
    prefix = "    approvals.proompteng.ai/approvals: '"
    start = run.index(prefix) + len(prefix)
    end = run.index("'\n", start)
    envelopes = json.loads(run[start:end])
    carol = envelopes[-1]["signatures"][0]
    assert carol["keyid"] == keys.load_public_key(_token_public_pem(token_env, P256_ID)).keyid
    middle = len(carol["sig"]) // 2
    carol["sig"] = (
        carol["sig"][:middle]
        + ("0" if carol["sig"][middle] != "0" else "1")
        + carol["sig"][middle + 1 :]
    )
    tampered = json.dumps(envelopes, separators=(",", ":"))
    (repo / "run.yaml").write_text(run[:start] + tampered + run[end:])
    out = _verify(capsys, repo)
    assert out.startswith("DENIED agents/codex-run-sample in prod\n"), out
    assert "  - record 1 by carol: signature does not verify with a key of carol" in out, out


MISMATCHED_ID = 7


def _mismatched_pair(token: pkcs11.Token) -> None:
    """CKA_ID 7: the public key object of one pair and the private key of another (a token
    whose objects were re-labelled or half-deleted): the token shows one key, signs with
    another."""
    softhsm = SoftHSM(Path(os.environ["SOFTHSM2_CONF"]), LABEL)
    softhsm.generate_ec(MISMATCHED_ID, "secp256r1")
    softhsm.generate_ec(MISMATCHED_ID + 1, "secp256r1")
    with token.open(rw=True, user_pin=PIN) as session:
        ours = pkcs11.util.biginteger(MISMATCHED_ID)
        session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, id=ours).destroy()
        other = session.get_key(
            ObjectClass.PRIVATE_KEY, KeyType.EC, id=pkcs11.util.biginteger(MISMATCHED_ID + 1)
        )
        other[Attribute.ID] = ours


def test_a_token_signing_with_another_key_than_it_shows_is_an_error_not_a_record(
    capsys: pytest.CaptureFixture[str], repo: Path, token_env: pkcs11.Token
) -> None:
    """The approver must not believe they approved: a signature that does not verify with
    the public key the signer shows (and keygen --import put in the Approver) is refused by
    ``approve`` with advice, and nothing is written."""
    _mismatched_pair(token_env)
    ref = f"hsm:{MISMATCHED_ID}?label={LABEL}"
    approvers = (repo / "approvers.yaml").read_text()
    indent = "        "
    old = _token_public_pem(token_env, P256_ID)
    new = _token_public_pem(token_env, MISMATCHED_ID)
    (repo / "approvers.yaml").write_text(
        approvers.replace(
            "".join(indent + line + "\n" for line in old.splitlines()),
            "".join(indent + line + "\n" for line in new.splitlines()),
        )
    )
    assert _approve(capsys, repo, str(repo / "alice.key"), "alice")[0] == 0
    before = (repo / "run.yaml").read_bytes()
    code, err = _approve(capsys, repo, ref, "carol")
    assert code == 1, err
    assert err.startswith(f"error: {ref}: its signature does not verify with its public key "), err
    assert "signs with another key than the public key it shows" in err
    assert (repo / "run.yaml").read_bytes() == before
    assert _verify(capsys, repo).startswith("DENIED agents/codex-run-sample in prod\n")


def test_two_tokens_of_one_label_are_a_usage_error_never_a_guess(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path, token_env: pkcs11.Token
) -> None:
    """Tried, already refused: a second token given the label of the approver's (a token
    someone plugged in, labelled alike, holding its own key 2) makes ``hsm:2?label=twin``
    ambiguous: a usage error naming the fix, never the first token found."""
    try:
        with pytest.MonkeyPatch.context() as env:
            twin = SoftHSM.create(tmp_path / "twin", "twin", env.setenv)
            twin.generate_ec(P256_ID)
            init = [softhsm2_util(), "--init-token", "--free", "--label", "twin"]
            subprocess.run(
                [*init, "--pin", PIN, "--so-pin", SO_PIN],
                check=True,
                capture_output=True,
                env={**os.environ, "SOFTHSM2_CONF": str(twin.conf)},
            )
            pkcs11.lib(MODULE).reinitialize()
            before = (repo / "run.yaml").read_bytes()
            code, err = _approve(capsys, repo, f"hsm:{P256_ID}?label=twin", "carol")
            assert code == 2, err
            assert err.startswith(f"error: several PKCS#11 tokens in module {MODULE}\n"), err
            assert "name one by its label: hsm:KEYID?label=TOKEN" in err
            assert (repo / "run.yaml").read_bytes() == before
    finally:
        pkcs11.lib(MODULE).reinitialize()  # the module's token again


# --- errors a user can act on ----------------------------------------------------------------


def test_a_wrong_pin_is_said_with_advice(
    capsys: pytest.CaptureFixture[str], repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(hsm.PIN_ENV, "000000")
    code, err = _approve(capsys, repo, REF, "carol")
    assert (code, err) == (
        1,
        f"error: PKCS#11 token '{LABEL}': the PIN is wrong\n"
        f"  hint: check {hsm.PIN_ENV} (a token locks itself after a few wrong PINs)\n",
    )


def test_no_pin_and_no_terminal_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(hsm.PIN_ENV)
    code, err = _approve(capsys, repo, REF, "carol")
    assert (code, err) == (
        2,
        f"error: the user PIN of PKCS#11 token '{LABEL}' is needed and there is no terminal "
        f"to ask it on\n  hint: set {hsm.PIN_ENV} (never pass a PIN as a flag)\n",
    )


def test_a_missing_module_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
    repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv(hsm.MODULE_ENV)
    monkeypatch.delenv(hsm.SSLIB_MODULE_ENV)  # approvalgate set it for securesystemslib
    code, err = _approve(capsys, repo, REF, "carol")
    assert code == 2
    assert err.startswith(
        f"error: hsm: signers need the token's PKCS#11 module: set {hsm.MODULE_ENV}\n"
        f"  hint: e.g. export {hsm.MODULE_ENV}=/usr/lib/softhsm/libsofthsm2.so"
    )
    monkeypatch.setenv(hsm.MODULE_ENV, str(tmp_path / "nope.so"))
    code, err = _approve(capsys, repo, REF, "carol")
    assert (code, err) == (
        2,
        f"error: PKCS#11 module {tmp_path}/nope.so does not exist\n"
        f"  hint: set {hsm.MODULE_ENV} to the module your token's software installed\n",
    )
    # securesystemslib's own variable works too
    monkeypatch.delenv(hsm.MODULE_ENV)
    monkeypatch.setenv(hsm.SSLIB_MODULE_ENV, MODULE)
    assert _approve(capsys, repo, REF, "carol")[0] == 0


def test_a_missing_token_or_key_is_said(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    code, err = _approve(capsys, repo, "hsm:2?label=no-such-token", "carol")
    assert (code, err) == (
        1,
        f"error: no PKCS#11 token 'no-such-token' in PKCS#11 module {MODULE}\n"
        "  hint: plug the token in, or check the label in the REF (hsm:KEYID?label=TOKEN)\n",
    )
    code, err = _approve(capsys, repo, f"hsm:9?label={LABEL}", "carol")
    assert code == 1
    assert err.startswith(
        f"error: PKCS#11 token '{LABEL}' holds no ECDSA P-256 or P-384 key pair with id 9\n"
    )


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("hsm:carol", "hsm:carol: the key id 'carol' is not a number"),
        ("hsm:2?slot=1", "hsm:2?slot=1: only one label=TOKEN may follow '?'"),
        ("hsm:2?label=a&label=b", "hsm:2?label=a&label=b: only one label=TOKEN may follow"),
    ],
)
def test_a_malformed_ref_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], repo: Path, ref: str, message: str
) -> None:
    code, err = _approve(capsys, repo, ref, "carol")
    assert code == 2 and err.startswith(f"error: {message}"), err


def test_the_ref_forms(token_env: pkcs11.Token) -> None:
    assert hsm.parse_ref("") == hsm.TokenKey(2, None)
    assert hsm.parse_ref("7") == hsm.TokenKey(7, None)
    assert hsm.parse_ref("?label=My+Token") == hsm.TokenKey(2, "My Token")
    assert hsm.parse_ref("3?label=a%23b").uri == "hsm:3?label=a%23b"


def test_public_key_must_match_the_tokens(capsys: pytest.CaptureFixture[str], repo: Path) -> None:
    code, err = _approve(capsys, repo, REF, "carol", "--public-key", str(repo / "carol.yaml"))
    assert code == 0, err
    alice_pub = repo / "alice.pub"
    alice_pub.write_text(
        keys.public_key_pem(keys.signer_from_pem((KEYS / "alice.key").read_bytes()).public_key)
    )
    code, err = _approve(capsys, repo, REF, "carol", "--public-key", str(alice_pub))
    assert code == 1
    assert err.startswith(f"error: {REF} holds key "), err
    assert os.environ[hsm.MODULE_ENV] == MODULE


def test_without_the_pin_in_the_environment_it_is_asked_once_on_the_terminal(
    repo: Path, token_env: pkcs11.Token
) -> None:
    """A real terminal (a pty): the PIN is read with getpass, once for reading the key and
    signing, and never echoed."""
    import pty
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if k != hsm.PIN_ENV}
    argv = [sys.executable, "-m", "approvalgate", "approve", str(repo / "run.yaml")]
    argv += ["--signer", REF, "--approver", "carol", "--env", "prod", "--in-place"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        os.execve(sys.executable, argv, env)
    seen = b""
    deadline = time.monotonic() + 60
    while b"PIN for" not in seen and time.monotonic() < deadline:
        seen += os.read(fd, 1024)
    os.write(fd, PIN.encode() + b"\n")
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    text = seen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert text.count(f"PIN for PKCS#11 token '{LABEL}': ") == 1
    assert PIN not in text
    assert "signed approve of AgentRun agents/codex-run-sample" in text


def test_a_key_on_another_curve_is_refused(
    capsys: pytest.CaptureFixture[str], token_env: pkcs11.Token, tmp_path: Path
) -> None:
    code, _, err = _run(
        capsys,
        *("keygen", "x", "--import", f"hsm:{P521_ID}?label={LABEL}", "--usernames", "x"),
        *("--out", str(tmp_path)),
    )
    assert (code, err) == (
        1,
        f"error: PKCS#11 token '{LABEL}': key {P521_ID} is on curve secp521r1\n"
        "  hint: keys on a token sign approvals on curve P-256 or P-384 (securesystemslib's HSM "
        "signer)\n",
    )
    assert list(tmp_path.iterdir()) == []


def test_without_a_label_the_one_initialised_token_is_used(
    capsys: pytest.CaptureFixture[str], token_env: pkcs11.Token, tmp_path: Path
) -> None:
    """SoftHSM2 always shows one more, uninitialised, token: it is not a candidate."""
    code, out, err = _run(
        capsys, "keygen", "x", "--import", "hsm:", "--usernames", "x", "--out", str(tmp_path)
    )
    assert (code, err) == (0, "")
    assert "private key: on the PKCS#11 token (key id 2), never exported" in out
    assert keys.load_public_key(_token_public_pem(token_env, P256_ID)).keyid in out
