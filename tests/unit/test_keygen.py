"""``approvalgate keygen``: --type (every key type it can create) and --import (an Approver
document for a key that lives elsewhere), and the line saying where the private key lives.

``--import hsm:...`` on a real token is in tests/unit/test_pkcs11.py; the KMS URIs in
tests/unit/test_kms_signers.py.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from securesystemslib.signer import SSlibKey

from approvalgate.approvals import keys
from approvalgate.cli import main
from tests.support.corpus import KEYS


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """argparse's own refusal: exit 2 and its message."""
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2
    return capsys.readouterr().err


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _public_of(doc: Path) -> SSlibKey:
    text = doc.read_text()
    pem = "".join(line.strip() + "\n" for line in text.split("publicKey: |\n", 1)[1].splitlines())
    return keys.load_public_key(pem)


@pytest.mark.parametrize(
    ("cli_name", "name"),
    [
        ("ed25519", "Ed25519"),
        ("ecdsa-p256", "ECDSA P-256"),
        ("ecdsa-p384", "ECDSA P-384"),
        ("rsa", "RSA-PSS"),
    ],
)
def test_type_creates_a_key_of_that_type(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, cli_name: str, name: str
) -> None:
    code, out, err = _run(
        capsys, "keygen", "dana", "--type", cli_name, "--usernames", "d", "--out", str(tmp_path)
    )
    assert (code, err) == (0, "")
    key_file, doc = tmp_path / "dana.key", tmp_path / "dana.yaml"
    signer = keys.signer_from_pem(key_file.read_bytes())
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert keys.key_type_of(signer.public_key).name == name  # type: ignore[union-attr]
    assert _public_of(doc) == signer.public_key
    assert out.splitlines() == [
        f"key id {signer.public_key.keyid} ({name})",
        f"private key: {key_file} (mode 0600, never commit it)",
        f"approver:    {doc} (commit it to your policy repo's approvers/ folder)",
        f"sign with:   approvalgate approve ... --signer {key_file} --approver dana",
    ]
    if cli_name == "rsa":
        assert isinstance(signer._private_key, rsa.RSAPrivateKey)
        assert signer._private_key.key_size == 3072
    if cli_name == "ecdsa-p384":
        assert isinstance(signer._private_key, ec.EllipticCurvePrivateKey)
        assert signer._private_key.curve.name == "secp384r1"


def test_the_default_type_is_ed25519(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "keygen", "dana", "--usernames", "d", "--out", str(tmp_path))
    assert code == 0 and out.splitlines()[0].endswith(" (Ed25519)")


def test_an_unknown_type_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    err = _usage_error(
        capsys, "keygen", "dana", "--type", "dsa", "--usernames", "d", "--out", str(tmp_path)
    )
    assert "argument --type: invalid choice: 'dsa'" in err
    assert "'ed25519', 'ecdsa-p256', 'ecdsa-p384', 'rsa'" in err


def test_import_a_pem_public_key_writes_only_the_approver(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    signer = keys.generate("ecdsa-p256")
    pem = tmp_path / "erin.pub.pem"
    pem.write_text(keys.public_key_pem(signer.public_key))
    out_dir = tmp_path / "out"
    code, out, err = _run(
        capsys,
        *("keygen", "erin", "--import", str(pem), "--usernames", "erin", "--groups", "g"),
        *("--out", str(out_dir)),
    )
    assert (code, err) == (0, "")
    assert sorted(p.name for p in out_dir.iterdir()) == ["erin.yaml"]
    assert _public_of(out_dir / "erin.yaml") == signer.public_key
    assert out.splitlines() == [
        f"key id {signer.public_key.keyid} (ECDSA P-256)",
        f"private key: wherever the owner of {pem} keeps it (approvalgate never sees it): "
        "sign with a --signer REF that reaches it",
        f"approver:    {out_dir}/erin.yaml (commit it to your policy repo's approvers/ folder)",
    ]
    # the same key under file: names the same file
    code, _, _ = _run(
        capsys,
        *("keygen", "erin", "--import", f"file:{pem}", "--usernames", "erin", "--force"),
        *("--out", str(out_dir)),
    )
    assert code == 0 and _public_of(out_dir / "erin.yaml") == signer.public_key


def test_import_refuses_a_private_key_and_what_is_not_a_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    private = KEYS / "alice.key"
    code, _, err = _run(
        capsys, "keygen", "x", "--import", str(private), "--usernames", "x", "--out", str(tmp_path)
    )
    assert code == 1
    assert err.startswith(f"error: {private} is a private key: --import takes a public key\n")
    assert f"openssl pkey -in {private} -pubout" in err
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    code, _, err = _run(
        capsys, "keygen", "x", "--import", str(junk), "--usernames", "x", "--out", str(tmp_path)
    )
    assert code == 1 and err.startswith(f"error: {junk}: not a public key: "), err
    code, _, err = _run(
        capsys,
        *("keygen", "x", "--import", str(tmp_path / "missing.pem"), "--usernames", "x"),
        *("--out", str(tmp_path)),
    )
    assert code == 1 and err.startswith(f"error: {tmp_path}/missing.pem: cannot read key: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pem"]


def test_import_and_type_exclude_each_other(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    err = _usage_error(
        capsys, "keygen", "x", "--type", "rsa", "--import", "k.pem", "--usernames", "x"
    )
    assert "argument --import: not allowed with argument --type" in err


def test_import_overwrites_only_with_force(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pem = tmp_path / "k.pem"
    pem.write_text(keys.public_key_pem(keys.generate().public_key))
    (tmp_path / "x.yaml").write_text("mine\n")
    code, _, err = _run(
        capsys, "keygen", "x", "--import", str(pem), "--usernames", "x", "--out", str(tmp_path)
    )
    assert (code, err) == (
        2,
        f"error: {tmp_path}/x.yaml exists\n  hint: pass --force to overwrite it\n",
    )
    # an existing x.key does not matter to --import: it writes no key
    (tmp_path / "x.yaml").unlink()
    (tmp_path / "x.key").write_text("unrelated\n")
    code, _, _ = _run(
        capsys, "keygen", "x", "--import", str(pem), "--usernames", "x", "--out", str(tmp_path)
    )
    assert code == 0 and (tmp_path / "x.key").read_text() == "unrelated\n"


def test_help_has_an_example_for_each_kind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["keygen", "--help"])
    out = capsys.readouterr().out
    for example in (
        "--type ecdsa-p256",
        "--import 'hsm:2?label=",
        "--import \\\n      gcpkms:projects/",
        "--import awskms:",
        "--import azurekms://",
        "--import hv:",
        "--import hank.pub.pem",
        "--import ~/.ssh/id_ed25519_sk.pub",
    ):
        assert example in out, example


def test_import_from_any_registered_signer_kind(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A kind without an importer of its own (an in-memory signer standing in for one):
    keygen loads the signer and takes its public key."""
    held = keys.generate("ecdsa-p384")
    kind = keys.SignerKind("test-agent", "keys held in memory", lambda _name, _read: held)
    keys.register_signer_kind(kind)
    try:
        code, out, err = _run(
            capsys,
            *("keygen", "gus", "--import", "test-agent:gus", "--usernames", "gus"),
            *("--out", str(tmp_path)),
        )
    finally:
        keys.unregister_signer_kind(kind)
    assert (code, err) == (0, "")
    assert _public_of(tmp_path / "gus.yaml") == held.public_key
    assert out.splitlines()[1] == (
        "private key: where test-agent:gus names it (keys held in memory)"
    )
    assert out.splitlines()[3] == (
        "sign with:   approvalgate approve ... --signer test-agent:gus --approver gus"
    )


def test_import_an_openssh_public_key_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    line = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode("ascii")
    )
    pub = tmp_path / "id_ed25519.pub"
    pub.write_text(line + " ivy@laptop\n")
    code, out, err = _run(
        capsys,
        *("keygen", "ivy", "--import", str(pub), "--usernames", "ivy"),
        *("--out", str(tmp_path / "out")),
    )
    assert (code, err) == (0, "")
    doc = (tmp_path / "out" / "ivy.yaml").read_text()
    assert f"        {line}\n" in doc
    assert keys.load_public_key(line).keyid in out
    assert out.splitlines()[1:] == [
        "private key: in your ssh-agent or on your security key, never exported: the agent signs",
        f"approver:    {tmp_path}/out/ivy.yaml (commit it to your policy repo's approvers/ folder)",
        f"sign with:   approvalgate approve ... --signer ssh-agent:{pub} --approver ivy",
    ]
