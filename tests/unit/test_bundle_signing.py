"""The signed bundle, compiler and CLI side (issue 17): revision, compile --sign, check,
approvalgate.yaml bundleSigning, and verify/explain --bundle refusing every attack."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from approvalgate.approvals import keys
from approvalgate.approvals.bundle import parse_bundle_text
from approvalgate.approvals.bundle_trust import check_signatures, pae, trust_from_texts
from approvalgate.approvals.keys import ssh
from approvalgate.cli import main
from tests.support import ssh as ssh_tools

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gitops-repo"
RELEASE_KEY = ROOT / "examples" / "keys" / "release-bundle-signing.key"  # example only
RELEASE_PUB = EXAMPLE / "bundle-signing" / "release.pub"
PROD_RUN = "rendered/prod/agentruns/agents.codex-release-notes.yaml"
ARGOCD = (
    *("--user", "system:serviceaccount:argocd:argocd-application-controller"),
    *("--pod", "argocd-application-controller-0", "--now", "2026-11-21T12:00:00Z"),
)
POLICY = "policies/default-approval.yaml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return code, out, err


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(EXAMPLE, target)
    return target


def new_key(folder: Path, name: str, type_name: str = "ed25519") -> tuple[Path, Path]:
    """A key pair of ``type_name`` (a cli name): (private key file, public key file)."""
    signer = keys.generate(keys.key_type_named(type_name).name)
    private, public = folder / f"{name}.key", folder / f"{name}.pub"
    private.write_bytes(signer.private_bytes)
    public.write_text(keys.public_key_pem(signer.public_key))
    return private, public


def configure(repo: Path, signing: dict[str, object] | None, env: str | None = None) -> None:
    """Set approvalgate.yaml's bundleSigning (top level, or environment ``env``'s)."""
    path = repo / "approvalgate.yaml"
    config = yaml.safe_load(path.read_text())
    place = config if env is None else config["environments"][env]
    if signing is None:
        place.pop("bundleSigning", None)
    else:
        place["bundleSigning"] = signing
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def change_policy(repo: Path, seconds: int = 43200) -> None:
    policy = repo / POLICY
    text = policy.read_text()
    policy.write_text(re.sub(r"timeoutSeconds: \d+", f"timeoutSeconds: {seconds}", text))


def bundle_of(repo: Path, env: str = "prod") -> dict[str, object]:
    loaded: dict[str, object] = json.loads((repo / "rendered" / env / "bundle.json").read_text())
    return loaded


def tree(repo: Path) -> dict[str, bytes]:
    out = repo / "rendered"
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def signed_by(repo: Path, env: str, *public: Path, threshold: int = 1) -> int:
    """How many of the ``public`` keys signed ``env``'s bundle (raises below threshold)."""
    folder = repo / "rendered" / env
    trust = trust_from_texts([(str(p), p.read_text()) for p in public], threshold=threshold)
    signatures = (folder / "bundle.sig.json").read_text()
    return len(check_signatures((folder / "bundle.json").read_bytes(), signatures, trust, "b"))


# --- revision ----------------------------------------------------------------------------------


def test_the_revision_is_kept_while_the_content_is_unchanged_and_raised_when_it_changes(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    assert bundle_of(repo)["revision"] == 1
    before = tree(repo)
    assert run(capsys, "compile", repo) == (0, "up to date: dev, prod, staging\n", "")
    assert tree(repo) == before  # compiling twice: the same bytes, signatures included
    change_policy(repo)
    assert run(capsys, "compile", repo)[0] == 0
    assert bundle_of(repo)["revision"] == 2
    change_policy(repo, 86400)  # back to the first content: a new revision all the same
    assert run(capsys, "compile", repo)[0] == 0
    third = bundle_of(repo)
    assert third["revision"] == 3
    assert run(capsys, "compile", repo)[0] == 0
    assert bundle_of(repo) == third
    # the generation names the exact bundle (revision included) and it loads
    text = (repo / "rendered" / "prod" / "bundle.json").read_text()
    assert parse_bundle_text(text).revision == 3
    values = yaml.safe_load((repo / "rendered/prod/approvalgate-values.yaml").read_text())
    assert values["policyBundle"]["revision"] == 3
    assert values["policyBundle"]["generation"] == third["generation"]


def test_a_first_compile_is_revision_1_and_a_bundle_without_revision_becomes_1(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path
) -> None:
    assert run(capsys, "compile", repo, "--out", tmp_path / "preview")[0] == 0
    # a preview follows the repo's own output: same revision, same signatures
    assert (tmp_path / "preview/prod/bundle.json").read_bytes() == (
        repo / "rendered/prod/bundle.json"
    ).read_bytes()
    shutil.rmtree(repo / "rendered")
    assert run(capsys, "compile", repo)[0] == 0
    assert bundle_of(repo)["revision"] == 1
    legacy = bundle_of(repo)
    del legacy["revision"]
    (repo / "rendered/prod/bundle.json").write_text(json.dumps(legacy))
    assert run(capsys, "compile", repo)[0] == 0
    assert bundle_of(repo)["revision"] == 1


def test_check_agrees_with_compile_about_the_revision(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    change_policy(repo)
    code, out, err = run(capsys, "check", repo)
    assert code == 1
    assert '-  "revision": 1,\n+  "revision": 2,\n' in out
    assert "stale: rendered/prod/bundle.json\n" in err
    # a bundle whose revision was lowered by hand is stale too
    text = (repo / "rendered/prod/bundle.json").read_text()
    change_policy(repo, 86400)
    (repo / "rendered/prod/bundle.json").write_text(text.replace('"revision": 1', '"revision": 0'))
    code, _, err = run(capsys, "check", repo, "--quiet")
    assert code == 1 and "stale: rendered/prod/bundle.json\n" in err


def test_an_unreadable_previous_bundle_stops_compile_without_losing_the_revision(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    path = repo / "rendered/prod/bundle.json"
    path.write_text("<<<<<<< HEAD\n" + path.read_text() + "=======\n>>>>>>> other\n")
    before = tree(repo)
    code, out, err = run(capsys, "compile", repo)
    assert (code, out) == (1, "")
    assert err.startswith("error: rendered/prod/bundle.json is not valid JSON (")
    assert "its revision cannot be read" in err
    assert "git checkout -- rendered/prod/bundle.json" in err
    assert tree(repo) == before
    path.write_text('{"revision": "7"}')
    code, _, err = run(capsys, "compile", repo)
    assert code == 1 and "has no readable revision" in err


# --- approvalgate.yaml bundleSigning ------------------------------------------------------------


def test_bundle_signing_settings_are_validated_with_their_location(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    configure(repo, {"publicKeys": ["bundle-signing/missing.pub"]})
    code, _, err = run(capsys, "validate", repo)
    assert code == 1
    assert "approvalgate.yaml:" in err and "$.bundleSigning.publicKeys[0]" in err
    assert "missing.pub" in err
    (repo / "bundle-signing/bad.pub").write_text("not a key\n")
    configure(repo, {"publicKeys": ["bundle-signing/bad.pub"]})
    code, _, err = run(capsys, "compile", repo)
    assert code == 1
    assert "bundle-signing/bad.pub is not a bundle-signing public key" in err
    configure(repo, {"publicKeys": ["bundle-signing/release.pub"], "threshold": 2})
    code, _, err = run(capsys, "check", repo)
    assert code == 1
    assert "$.bundleSigning.threshold: threshold 2 is more than the 1 distinct" in err
    configure(repo, {"publicKeys": ["bundle-signing/release.pub"], "allowUnsigned": True})
    code, _, err = run(capsys, "compile", repo)
    assert code == 1 and "needs either publicKeys" in err and "not both" in err
    configure(repo, {"publicKey": ["bundle-signing/release.pub"]})
    code, _, err = run(capsys, "compile", repo)
    assert code == 1 and "approvalgate.yaml:" in err and "publicKey" in err
    configure(repo, {"publicKeys": ["/etc/release.pub"]})
    assert run(capsys, "compile", repo)[0] == 1


def test_an_environment_may_replace_the_bundle_signing_of_the_others(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    configure(repo, {"allowUnsigned": True}, env="dev")
    code, _, err = run(capsys, "compile", repo)
    assert code == 0
    assert "rendered/dev/bundle.sig.json: 1 signature(s) removed" in err
    assert not (repo / "rendered/dev/bundle.sig.json").exists()
    assert (repo / "rendered/prod/bundle.sig.json").exists()
    assert run(capsys, "check", repo)[0] == 0  # dev is allowed unsigned; prod still signed
    values = yaml.safe_load((repo / "rendered/dev/approvalgate-values.yaml").read_text())
    assert values["policyBundle"]["signatures"] == ""
    code, _, err = run(capsys, "compile", repo, "--sign", RELEASE_KEY)
    assert code == 0 and not (repo / "rendered/dev/bundle.sig.json").exists()


# --- compile --sign ------------------------------------------------------------------------------


def test_sign_writes_the_signatures_into_the_output_and_the_values(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    change_policy(repo)
    code, _, err = run(capsys, "compile", repo)
    assert code == 0
    assert "note: rendered/prod/bundle.sig.json: 1 signature(s) removed: they do not verify" in err
    assert "the bundle is now unsigned" in err
    assert "warning: rendered/prod/bundle.json is not signed: bundleSigning" in err
    assert not (repo / "rendered/prod/bundle.sig.json").exists()
    assert "bundle.sig.json" not in (repo / "rendered/prod/SHA256SUMS").read_text()
    code, _, err = run(capsys, "compile", repo, "--sign", RELEASE_KEY)
    assert code == 0 and err == ""
    for env in ("dev", "prod", "staging"):
        folder = repo / "rendered" / env
        sig = (folder / "bundle.sig.json").read_text()
        values = yaml.safe_load((folder / "approvalgate-values.yaml").read_text())
        assert values["policyBundle"]["signatures"] == sig
        assert values["policyBundle"]["content"] == (folder / "bundle.json").read_text()
        assert "  bundle.sig.json\n" in (folder / "SHA256SUMS").read_text()
        assert signed_by(repo, env, RELEASE_PUB) == 1
    assert run(capsys, "check", repo)[0] == 0


def test_threshold_two_with_two_key_types_signed_by_two_holders(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path
) -> None:
    """An Ed25519 key file and an ECDSA P-256 key file, threshold 2, each holder signing in
    a compile of their own: the first signature is kept when the second is added, and
    re-signing with ECDSA (other bytes every time) never makes check fail."""
    ecdsa_key, ecdsa_pub = new_key(tmp_path, "ci", "ecdsa-p256")
    shutil.copy(ecdsa_pub, repo / "bundle-signing/ci.pub")
    keys_ = ["bundle-signing/release.pub", "bundle-signing/ci.pub"]
    configure(repo, {"publicKeys": keys_, "threshold": 2})
    code, _, err = run(capsys, "compile", repo)
    assert code == 0
    assert "warning: rendered/prod/bundle.json is signed by 1 of its keys: bundleSigning" in err
    code, _, err = run(capsys, "check", repo)
    assert code == 1
    assert (
        "unsigned: rendered/prod/bundle.json is signed by 1 of its keys: bundleSigning "
        "(approvalgate.yaml:"
    ) in err
    assert "requires 2 signature(s) by its publicKeys; run `approvalgate compile " in err
    assert run(capsys, "compile", repo, "--sign", ecdsa_key)[0] == 0
    assert signed_by(repo, "prod", RELEASE_PUB, ecdsa_pub, threshold=2) == 2
    assert run(capsys, "check", repo) == (0, "up to date: dev, prod, staging\n", "")
    first = (repo / "rendered/prod/bundle.sig.json").read_bytes()
    assert run(capsys, "compile", repo, "--sign", ecdsa_key)[0] == 0
    assert (repo / "rendered/prod/bundle.sig.json").read_bytes() != first  # ECDSA: random
    assert run(capsys, "check", repo)[0] == 0
    signatures = json.loads((repo / "rendered/prod/bundle.sig.json").read_text())["signatures"]
    assert len(signatures) == 2  # replaced, not piled up
    # both keys at once after a change
    change_policy(repo)
    code, _, err = run(capsys, "compile", repo, "--sign", RELEASE_KEY, "--sign", ecdsa_key)
    assert (code, err) == (0, "")
    assert run(capsys, "check", repo)[0] == 0
    # a key dropped from publicKeys: its signature goes, and check wants another
    configure(repo, {"publicKeys": ["bundle-signing/release.pub"]})
    code, _, err = run(capsys, "compile", repo)
    assert code == 0 and "1 signature(s) removed" in err
    assert run(capsys, "check", repo)[0] == 0


def test_sign_with_a_key_not_listed_is_a_usage_error_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path
) -> None:
    other, _ = new_key(tmp_path, "other")
    change_policy(repo)
    before = tree(repo)
    code, out, err = run(capsys, "compile", repo, "--sign", other)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: --sign {other}: its key (keyid ")
    assert "is not among the bundleSigning.publicKeys of any environment compiled" in err
    assert "prod: approvalgate.yaml:" in err
    assert tree(repo) == before
    configure(repo, None)
    code, _, err = run(capsys, "compile", repo, "--sign", RELEASE_KEY)
    assert code == 2
    assert "declares bundleSigning.publicKeys in approvalgate.yaml, so no key may sign" in err
    code, _, err = run(capsys, "compile", repo, "--sign", tmp_path / "nowhere.key")
    assert code in (1, 2) and "nowhere.key" in err
    # without bundleSigning nothing can verify the old signatures: they go
    code, _, err = run(capsys, "compile", repo)
    assert code == 0
    assert "lists no bundleSigning.publicKeys to verify them with" in err
    assert not (repo / "rendered/prod/bundle.sig.json").exists()
    assert run(capsys, "check", repo)[0] == 0


# --- verify --bundle -----------------------------------------------------------------------------


def verify(
    capsys: pytest.CaptureFixture[str], repo: Path, bundle: Path, *extra: str
) -> tuple[int, str, str]:
    return run(capsys, "verify", repo / PROD_RUN, "--bundle", bundle, *ARGOCD, *extra)


def test_verify_checks_the_signature_with_the_keys_of_the_repo(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    code, out, _ = verify(capsys, repo, repo / "rendered/prod/bundle.json")
    assert code == 0 and out.startswith("ADMITTED agents/codex-release-notes in prod")
    code, out, _ = run(
        capsys, "explain", repo / PROD_RUN, "--bundle", repo / "rendered/prod/bundle.json"
    )
    assert code == 0
    (repo / "rendered/prod/bundle.sig.json").unlink()
    code, out, err = verify(capsys, repo, repo / "rendered/prod/bundle.json")
    assert (code, out) == (1, "")
    assert err.startswith(
        f"error: {repo / 'rendered/prod/bundle.json'} is not signed: there is no "
        f"{repo / 'rendered/prod/bundle.sig.json'} [unsigned] (trust: 1 of 1 pinned keys ("
    )
    assert f"from {repo.resolve()}/approvalgate.yaml:" in err
    assert "hint: do not use this bundle: sign it in its policy repo" in err
    code, _, err = run(
        capsys, "explain", repo / PROD_RUN, "--bundle", repo / "rendered/prod/bundle.json"
    )
    assert code == 1 and "[unsigned]" in err


@pytest.mark.parametrize(
    "attack",
    [
        "unsigned",
        "signature-stripped",
        "signatures-malformed",
        "untrusted-key",
        "signed-other-content",
        "signature-invalid",
        "below-threshold",
        "below-min-revision",
    ],
)
def test_verify_refuses_each_attack_with_its_reason(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path, attack: str
) -> None:
    folder = tmp_path / "swapped"
    shutil.copytree(repo / "rendered/prod", folder)
    bundle, sig = folder / "bundle.json", folder / "bundle.sig.json"
    document = json.loads(sig.read_text())
    pins = ["--bundle-key", str(RELEASE_PUB)]
    if attack == "unsigned":
        sig.unlink()
    elif attack == "signature-stripped":
        sig.write_text(json.dumps({**document, "signatures": []}))
    elif attack == "signatures-malformed":
        sig.write_text("{not json")
    elif attack == "untrusted-key":  # a valid signature by a key nobody pinned
        other, _ = new_key(tmp_path, "mallory")
        signer = keys.load_signer(str(other), lambda p: Path(p).read_bytes())
        from approvalgate.approvals.bundle_trust import dump_signatures, sign_bundle

        sig.write_text(dump_signatures(sign_bundle(bundle.read_bytes(), [signer])))
    elif attack == "signed-other-content":  # the signed bundle of another revision
        change_policy(repo)
        assert run(capsys, "compile", repo)[0] == 0
        shutil.copy(repo / "rendered/prod/bundle.json", bundle)
    elif attack == "signature-invalid":
        signature = document["signatures"][0]
        flipped = ("0" if signature["sig"][0] != "0" else "1") + signature["sig"][1:]
        sig.write_text(json.dumps({**document, "signatures": [{**signature, "sig": flipped}]}))
    elif attack == "below-threshold":
        _, second = new_key(tmp_path, "second")
        pins += ["--bundle-key", second.read_text(), "--bundle-threshold", "2"]  # text form
    elif attack == "below-min-revision":
        pins += ["--bundle-min-revision", "2"]
    code, out, err = verify(capsys, repo, bundle, *pins)
    assert (code, out) == (1, ""), err
    assert f"[{attack}]" in err.splitlines()[0]
    assert "(trust: " in err and "from --bundle-key)" in err
    assert "\n  hint: " in err


def test_verify_without_a_pinned_key_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(repo / "rendered/prod", outside)
    code, out, err = verify(capsys, repo, outside / "bundle.json")
    assert (code, out) == (2, "")
    assert err == (
        f"error: {outside / 'bundle.json'}: no pinned bundle-signing key: the bundle's "
        "signatures cannot be checked\n"
        "  hint: pass --bundle-key KEY (or --allow-unsigned-bundle, development only), or keep "
        "the bundle in a policy repo whose approvalgate.yaml declares bundleSigning.publicKeys\n"
    )
    code, _, err = verify(capsys, repo, outside / "bundle.json", "--bundle-key", RELEASE_PUB)
    assert code == 0
    code, _, err = verify(
        capsys,
        repo,
        outside / "bundle.json",
        "--bundle-key",
        RELEASE_PUB,
        "--allow-unsigned-bundle",
    )
    assert code == 2 and "choose one" in err
    code, _, err = verify(capsys, repo, outside / "bundle.json", "--bundle-key", "nope.pub")
    assert code == 2 and "--bundle-key nope.pub: neither a public key's text nor a readable" in err
    code, _, err = verify(capsys, repo, outside / "bundle.json", "--allow-unsigned-bundle")
    assert code == 0
    assert err.startswith(f"warning: {outside / 'bundle.json'}: signatures not checked")
    code, _, err = run(
        capsys,
        *("verify", repo / PROD_RUN, "--policies", repo / "policies", repo / "approvers"),
        *("--env", "prod", "--bundle-key", RELEASE_PUB),
    )
    assert code == 2 and "--bundle-key: for --bundle FILE only" in err
    # a repo that declares no bundleSigning pins nothing either
    configure(repo, None)
    code, _, err = verify(capsys, repo, repo / "rendered/prod/bundle.json")
    assert code == 2
    assert "declares no bundleSigning for environment prod" in err


def test_one_key_pinned_in_two_forms_is_one_signer_of_the_threshold(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path
) -> None:
    """The release key as PEM and as its OpenSSH line (two key ids, one private key),
    signed in both forms (its key file, and ``ssh-keygen -Y sign``): verify counts one
    signer, and approvalgate.yaml listing both forms for threshold 2 is a finding."""
    ssh_tools.require_tools()
    private = serialization.load_pem_private_key(RELEASE_KEY.read_bytes(), None)
    openssh = tmp_path / "release_ssh"
    openssh.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    openssh.chmod(0o600)
    line = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    (repo / "bundle-signing/release-ssh.pub").write_bytes(line + b"\n")
    folder = tmp_path / "signed"
    shutil.copytree(repo / "rendered/prod", folder)
    document = json.loads((folder / "bundle.sig.json").read_text())
    armoured = ssh_tools.sign(openssh, pae((folder / "bundle.json").read_bytes()))
    as_ssh = keys.load_public_key(line.decode())
    document["signatures"].append({"keyid": as_ssh.keyid, "sig": ssh.dearmor(armoured).hex()})
    (folder / "bundle.sig.json").write_text(json.dumps(document))
    both = ("--bundle-key", RELEASE_PUB, "--bundle-key", repo / "bundle-signing/release-ssh.pub")
    code, out, err = verify(capsys, repo, folder / "bundle.json", *both)
    assert code == 0, err  # threshold 1: either form opens it
    code, out, err = verify(capsys, repo, folder / "bundle.json", *both, "--bundle-threshold", "2")
    assert (code, out) == (2, ""), out
    assert "threshold 2 needs between 1 and 1 (the distinct pinned keys" in err
    _, third = new_key(tmp_path, "third")
    three = (*both, "--bundle-key", third, "--bundle-threshold", "2")
    code, out, err = verify(capsys, repo, folder / "bundle.json", *three)
    assert (code, out) == (1, ""), out
    assert "signed by 1 of the pinned keys, 2 required [below-threshold]" in err
    keys_ = ["bundle-signing/release.pub", "bundle-signing/release-ssh.pub"]
    configure(repo, {"publicKeys": keys_, "threshold": 2})
    code, _, err = run(capsys, "check", repo)
    assert code == 1
    assert "$.bundleSigning.threshold: threshold 2 is more than the 1 distinct" in err


def test_verify_refuses_a_bundle_moved_to_another_environments_folder(
    capsys: pytest.CaptureFixture[str], repo: Path
) -> None:
    """Signed by the same key, dev's bundle (enforcement: warn) put in prod's folder."""
    for name in ("bundle.json", "bundle.sig.json"):
        shutil.copy(repo / "rendered/dev" / name, repo / "rendered/prod" / name)
    code, _, err = verify(capsys, repo, repo / "rendered/prod/bundle.json")
    assert code == 1
    assert "is the bundle of environment dev, in the output folder of prod" in err


def test_status_opens_its_bundle_the_same_way_before_reading_the_cluster(
    capsys: pytest.CaptureFixture[str], repo: Path, tmp_path: Path
) -> None:
    (repo / "rendered/prod/bundle.sig.json").unlink()
    code, out, err = run(
        capsys, "status", "agentrun/agents/x", "--bundle", repo / "rendered/prod/bundle.json"
    )
    assert (code, out) == (1, "")
    assert "[unsigned]" in err
    code, _, err = run(capsys, "status", "agents/x", "--bundle-key", RELEASE_PUB)
    assert code == 2 and "are for KIND/NS/NAME" in err
