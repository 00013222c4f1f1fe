"""approvals.bundle_trust: a bundle is enforced only when enough pinned keys signed its exact
bytes and its revision does not go back. Every attack of issue 17 at the core's level:
unsigned, signatures stripped, signed by another key, signed over other content, below the
threshold (a key counted once however often it signs), a lying key id, rollback below the
bundle in force or the pinned minimum, a revision reused for other content; and the
configuration traps (no key pinned means refuse, never "not checked")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey

from approvalgate.approvals import bundle_trust as bt
from approvalgate.approvals import keys
from approvalgate.approvals.errors import UsageError
from approvalgate.approvals.policy import bundle_generation, dump_bundle
from tests.support import ssh as ssh_tools
from tests.support.paths import ROOT

EXAMPLE = ROOT / "examples" / "gitops-repo" / "rendered" / "prod" / "bundle.json"


def _bundle(revision: int, **changes: Any) -> bytes:
    obj = json.loads(Path(EXAMPLE).read_text())
    obj.update(changes)
    obj["revision"] = revision
    obj["generation"] = bundle_generation(obj)
    return dump_bundle(obj).encode()


@pytest.fixture(scope="module")
def signers() -> dict[str, CryptoSigner]:
    return {
        "release": keys.generate("ed25519"),
        "backup": keys.generate("ecdsa-p256"),
        "hsm": keys.generate("ecdsa-p384"),
        "mallory": keys.generate("ed25519"),
    }


def _trust(signers: dict[str, CryptoSigner], threshold: int = 1, **kw: Any) -> bt.BundleTrust:
    pinned = tuple(signers[n].public_key for n in ("release", "backup", "hsm"))
    return bt.BundleTrust(pinned, threshold, **kw)


def _signed(raw: bytes, *who: CryptoSigner) -> str:
    return bt.dump_signatures(bt.sign_bundle(raw, list(who)))


def _refusal(raw: bytes, sigs: str | None, trust: bt.BundleTrust, **kw: Any) -> bt.BundleRefused:
    with pytest.raises(bt.BundleRefused) as caught:
        bt.open_bundle(raw, sigs, trust, **kw)
    return caught.value


def test_a_bundle_signed_by_enough_pinned_keys_of_any_type_opens(signers: dict[str, Any]) -> None:
    raw = _bundle(3)
    bundle = bt.open_bundle(
        raw, _signed(raw, signers["backup"], signers["hsm"]), _trust(signers, 2)
    )
    assert (bundle.revision, bundle.environment) == (3, "prod")


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        ("unsigned", bt.UNSIGNED),
        ("empty file", bt.UNSIGNED),
        ("stripped", bt.STRIPPED),
        ("not json", bt.MALFORMED),
        ("another payload type", bt.MALFORMED),
        ("another key", bt.UNTRUSTED),
        ("another key under a pinned key id", bt.INVALID_SIGNATURE),
        ("bundle edited after signing", bt.OTHER_PAYLOAD),
        ("one key twice for threshold 2", bt.THRESHOLD),
    ],
)
def test_each_signature_attack_is_refused_with_its_reason(
    signers: dict[str, CryptoSigner], attack: str, reason: str
) -> None:
    raw = _bundle(3)
    threshold = 1
    sigs: str | None
    if attack == "unsigned":
        sigs = None
    elif attack == "empty file":
        sigs = "\n"
    elif attack == "stripped":
        sigs = bt.dump_signatures(bt.signatures_document(raw, []))
    elif attack == "not json":
        sigs = "{"
    elif attack == "another payload type":
        doc = bt.sign_bundle(raw, [signers["release"]])
        doc["payloadType"] = "application/vnd.in-toto+json"
        sigs = bt.dump_signatures(doc)
    elif attack == "another key":
        sigs = _signed(raw, signers["mallory"])
    elif attack == "another key under a pinned key id":
        doc = bt.sign_bundle(raw, [signers["mallory"]])
        doc["signatures"][0]["keyid"] = signers["release"].public_key.keyid
        sigs = bt.dump_signatures(doc)
    elif attack == "bundle edited after signing":
        sigs = _signed(raw, signers["release"])
        raw = _bundle(3, enforcement="warn")
    else:
        threshold = 2
        doc = bt.sign_bundle(raw, [signers["release"], signers["release"]])
        sigs = bt.dump_signatures(doc)
    refused = _refusal(raw, sigs, _trust(signers, threshold))
    assert refused.reason == reason, refused.message
    assert refused.reason in bt.REASONS


def test_the_revision_never_goes_back_nor_is_reused(signers: dict[str, CryptoSigner]) -> None:
    trust = _trust(signers, min_revision=2)
    r3 = _bundle(3)
    in_force = bt.open_bundle(r3, _signed(r3, signers["release"]), trust)
    r2 = _bundle(2)
    refused = _refusal(r2, _signed(r2, signers["release"]), trust, in_force=in_force)
    assert refused.reason == bt.ROLLBACK
    assert "revision 2, older than revision 3 in force" in refused.message
    r1 = _bundle(1)
    assert _refusal(r1, _signed(r1, signers["release"]), trust).reason == bt.BELOW_MINIMUM
    other3 = _bundle(3, enforcement="warn")
    refused = _refusal(other3, _signed(other3, signers["release"]), trust, in_force=in_force)
    assert refused.reason == bt.REUSED
    again = bt.open_bundle(r3, _signed(r3, signers["backup"]), trust, in_force=in_force)
    assert again.generation == in_force.generation
    r4 = _bundle(4, enforcement="warn")
    assert bt.open_bundle(r4, _signed(r4, signers["hsm"]), trust, in_force=in_force).revision == 4


def test_unsigned_bundles_open_only_by_the_explicit_setting_and_still_never_roll_back() -> None:
    dev = bt.BundleTrust(allow_unsigned=True)
    assert "UNSIGNED" in dev.describe()
    r3 = _bundle(3)
    in_force = bt.open_bundle(r3, None, dev)
    assert _refusal(_bundle(2), None, dev, in_force=in_force).reason == bt.ROLLBACK
    assert _refusal(b"{", None, dev).reason == bt.INVALID


def test_no_pinned_key_is_a_configuration_error_never_an_unchecked_signature(
    signers: dict[str, CryptoSigner],
) -> None:
    with pytest.raises(UsageError, match="no bundle-signing key is pinned"):
        bt.BundleTrust()
    with pytest.raises(UsageError, match="choose one"):
        bt.BundleTrust((signers["release"].public_key,), allow_unsigned=True)
    with pytest.raises(UsageError, match="threshold 3 needs between 1 and 2"):
        bt.BundleTrust((signers["release"].public_key, signers["backup"].public_key), 3)
    same = signers["release"].public_key
    with pytest.raises(UsageError, match="threshold 2 needs between 1 and 1"):
        bt.BundleTrust((same, same), 2)
    with pytest.raises(UsageError, match=r"^k\.pub: not a bundle-signing public key"):
        bt.trust_from_texts([("k.pub", "not a key")])


def test_a_signature_over_the_bundle_is_not_a_record_signature_and_vice_versa(
    signers: dict[str, CryptoSigner],
) -> None:
    """Domain separation: the PAE names the bundle payload type, so a signature made for
    another payload type over the same bytes does not open the bundle."""
    raw = _bundle(3)
    other = Envelope(raw, "application/vnd.in-toto+json", {}).pae()
    signature = signers["release"].sign(other)
    sigs = bt.dump_signatures(
        bt.signatures_document(raw, [{"keyid": signature.keyid, "sig": signature.signature}])
    )
    assert _refusal(raw, sigs, _trust(signers)).reason == bt.INVALID_SIGNATURE


def test_another_environments_signed_bundle_is_refused_where_the_environment_is_pinned(
    signers: dict[str, CryptoSigner],
) -> None:
    """One key may sign every environment: dev's signed bundle (enforcement warn, a higher
    revision) must not open in prod."""
    dev = _bundle(9, environment="dev", enforcement="warn")
    sigs = _signed(dev, signers["release"])
    prod = _trust(signers, environment="prod")
    assert _refusal(dev, sigs, prod).reason == bt.OTHER_ENVIRONMENT
    assert bt.open_bundle(dev, sigs, _trust(signers, environment="dev")).environment == "dev"


@pytest.mark.parametrize("keytype", ["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"])
def test_one_key_pinned_in_two_forms_counts_once(tmp_path: Path, keytype: str) -> None:
    """A key's PEM and its OpenSSH line have two key ids but one private key: its holder
    signs for both (a raw signature and an SSHSIG made by ``ssh-keygen -Y sign``), so the
    pair is one of the threshold, never two, and pinning only the pair cannot reach 2."""
    ssh_tools.require_tools()
    path = ssh_tools.keygen(tmp_path, "release", keytype)
    private = serialization.load_ssh_private_key(path.read_bytes(), None)
    as_pem = CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))  # type: ignore[arg-type]
    as_ssh = keys.load_public_key(path.with_suffix(".pub").read_text())
    assert as_pem.public_key.keyid != as_ssh.keyid
    other = keys.generate("ecdsa-p256")
    trust = bt.BundleTrust((as_pem.public_key, as_ssh, other.public_key), 2)
    raw = _bundle(3)
    document = bt.sign_bundle(raw, [as_pem])
    sshsig = keys.ssh.dearmor(ssh_tools.sign(path, bt.pae(raw))).hex()
    document["signatures"].append({"keyid": as_ssh.keyid, "sig": sshsig})
    both_forms = bt.dump_signatures(document)
    refused = _refusal(raw, both_forms, trust)
    assert refused.reason == bt.THRESHOLD, refused.message
    assert "signed by 1 of the pinned keys, 2 required" in refused.message
    assert bt.open_bundle(raw, _signed(raw, as_pem, other), trust).revision == 3
    document["signatures"] += bt.sign_bundle(raw, [other])["signatures"]
    assert bt.open_bundle(raw, bt.dump_signatures(document), trust).revision == 3
    with pytest.raises(UsageError, match=r"threshold 2 needs between 1 and 1 \(the distinct"):
        bt.BundleTrust((as_pem.public_key, as_ssh), 2)
