"""Cloud KMS and Vault signers (``gcpkms:``, ``awskms:``, ``azurekms:``, ``hv:``).

The services cannot run here (no network but package registries), and their client
libraries are not dependencies of approvalgate, so what is tested is what runs here:

- each REF's form, and the error (exit 2) with the form and an example when it is wrong;
- the error (exit 1) with the pip command when the service's client library is missing,
  for ``approve --signer`` and ``keygen --import`` alike;
- the signatures the services make, of the key types they hold (ECDSA P-256 and P-384 as DER,
  RSA-PSS with SHA-256, Ed25519), are made here the way each service makes them (the digest
  computed locally and signed as a prehashed digest; Azure's raw r||s re-encoded as DER as
  securesystemslib's AzureSigner does; RSA-PSS with a salt as long as the digest), and are
  verified by the one offline path every approval goes through (approvals.keys), through
  ``approve --signer ... --public-key APPROVER.yaml`` and ``verify``.

What was not run here: a signature from the real services (docs/signers.md says so).
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from securesystemslib.signer import Key, SecretsHandler, Signature, Signer, SSlibKey

from approvalgate import signers
from approvalgate.approvals import keys
from approvalgate.cli import main
from approvalgate.commands.keygen import approver_document
from approvalgate.signers import kms
from tests.support.cli_output import OFFLINE_WARNING
from tests.support.corpus import BASE, KEYS, compile_case_bundle


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# --- REF forms -------------------------------------------------------------------------------

GOOD = {
    "gcpkms": [
        "projects/acme/locations/global/keyRings/approvers/cryptoKeys/carol/cryptoKeyVersions/1",
    ],
    "awskms": [
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "alias/approvals-carol",
        "arn:aws:kms:eu-west-1:111122223333:alias/approvals-carol",
    ],
    "azurekms": [
        "//acme-vault.vault.azure.net/keys/carol/0123456789abcdef0123456789abcdef",
        "//acme-vault.vault.azure.net/keys/carol",
    ],
    "hv": ["carol/1", "carol"],
}
BAD = {
    "gcpkms": ["carol", "projects/acme/locations/global/keyRings/r/cryptoKeys/carol", ""],
    "awskms": ["", "/carol", "key with spaces"],
    "azurekms": ["carol", "https://acme.vault.azure.net/keys/carol", "//acme.example.com/keys/c"],
    "hv": ["", "carol/one", "a/b/c"],
}


@pytest.mark.parametrize(("scheme", "location"), [(s, loc) for s in GOOD for loc in GOOD[s]])
def test_the_forms_each_service_names_a_key_with(scheme: str, location: str) -> None:
    assert kms.check_location(kms.provider(scheme), location) == location


@pytest.mark.parametrize(("scheme", "location"), [(s, loc) for s in BAD for loc in BAD[s]])
def test_a_malformed_ref_says_the_form_and_an_example(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, scheme: str, location: str
) -> None:
    provider = kms.provider(scheme)
    code, out, err = _run(
        capsys,
        *("keygen", "carol", "--import", f"{scheme}:{location}", "--usernames", "carol"),
        *("--out", str(tmp_path)),
    )
    assert (code, out) == (2, "")
    assert err == (
        f"error: {scheme}:{location}: not a {provider.name} key: the form is "
        f"{scheme}:{provider.form}\n  hint: e.g. {provider.example}\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_every_kind_is_registered_and_described() -> None:
    schemes = {k.scheme: k for k in signers.register_all()}
    for provider in kms.PROVIDERS:
        kind = schemes[provider.scheme]
        assert kind.load_with_key is not None
        assert provider.install in kind.description
    assert "hsm" in schemes


# --- the client libraries are not dependencies -------------------------------------------------


def test_the_client_libraries_are_not_installed_here() -> None:
    """approvalgate does not depend on them; the next test checks what a user without them
    is told (if one is ever installed in the dev environment, this says why that test would
    no longer test the message)."""
    installed = [
        module
        for provider in kms.PROVIDERS
        for module in provider.modules
        if kms._find(module) is not None
    ]
    assert installed == [], "a KMS client library is installed in the test environment"


@pytest.mark.parametrize("provider", kms.PROVIDERS, ids=lambda p: p.scheme)
def test_a_missing_client_library_is_said_with_the_pip_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, provider: kms.Provider
) -> None:
    location = GOOD[provider.scheme][0]
    missing = ", ".join(provider.modules)
    expected = (
        f"error: {provider.scheme}: signers need {provider.name}'s client library ({missing}), "
        "which is not installed (approvalgate does not depend on it)\n"
        f"  hint: install it in approvalgate's environment: {provider.install}\n"
    )
    code, _, err = _run(
        capsys,
        *("keygen", "carol", "--import", f"{provider.scheme}:{location}"),
        *("--usernames", "carol", "--out", str(tmp_path)),
    )
    assert (code, err) == (1, expected)
    # approve, with the public key given (nothing to fetch) and without
    shutil.copy(BASE / "run.yaml", tmp_path / "run.yaml")
    pem = keys.public_key_pem(keys.generate("ecdsa-p256").public_key)
    (tmp_path / "carol.yaml").write_text(approver_document("carol", pem, [], ["carol"]))
    for extra in (("--public-key", str(tmp_path / "carol.yaml")), ()):
        code, _, err = _run(
            capsys,
            *("approve", str(tmp_path / "run.yaml"), "--env", "prod", "--approver", "carol"),
            *("--signer", f"{provider.scheme}:{location}", *extra),
        )
        assert (code, err) == (1, expected)


def test_a_library_named_but_absent_is_found_missing() -> None:
    absent = kms.Provider(**{**vars(kms.VAULT), "modules": ("approvalgate_no_such.module",)})
    with pytest.raises(Exception, match=r"client library \(approvalgate_no_such\.module\)"):
        kms.require_library(absent)


def test_vault_needs_a_key_version_to_sign_with_a_given_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shutil.copy(BASE / "run.yaml", tmp_path / "run.yaml")
    pem = keys.public_key_pem(keys.generate().public_key)
    (tmp_path / "carol.yaml").write_text(approver_document("carol", pem, [], ["carol"]))
    code, _, err = _run(
        capsys,
        *("approve", str(tmp_path / "run.yaml"), "--env", "prod", "--approver", "carol"),
        *("--signer", "hv:carol", "--public-key", str(tmp_path / "carol.yaml")),
    )
    assert (code, err) == (
        2,
        "error: hv:carol: name the key version to sign with: hv:carol/VERSION\n"
        "  hint: `vault read transit/keys/NAME` lists the versions\n",
    )


def test_public_key_takes_one_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    shutil.copy(BASE / "run.yaml", tmp_path / "run.yaml")
    code, _, err = _run(
        capsys,
        *("approve", str(tmp_path / "run.yaml"), "--env", "prod", "--approver", "carol"),
        *("--signer", f"gcpkms:{GOOD['gcpkms'][0]}"),
        *("--public-key", str(BASE / "approvers.yaml")),
    )
    assert code == 1
    assert err.startswith(f"error: {BASE / 'approvers.yaml'}: --public-key needs one key, ")


# --- the services' signatures verify offline, through approve and verify -----------------------


@dataclass(frozen=True)
class Shape:
    """One service and key type, signing here as the service signs there."""

    provider: kms.Provider
    key_type: str
    private: Callable[[], object]
    sign: Callable[[object, bytes], bytes]


def _prehashed_ecdsa(digest: type[hashes.HashAlgorithm]) -> Callable[[object, bytes], bytes]:
    """GCP and AWS: the digest is computed locally and the service signs it; DER out."""

    def sign(private: object, payload: bytes) -> bytes:
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        algorithm = digest()
        prehashed = hashlib.new(algorithm.name, payload).digest()
        return private.sign(prehashed, ec.ECDSA(utils.Prehashed(algorithm)))

    return sign


def _azure_ecdsa(digest: type[hashes.HashAlgorithm]) -> Callable[[object, bytes], bytes]:
    """Azure Key Vault returns r||s (JWS); securesystemslib's AzureSigner encodes it as DER."""

    def sign(private: object, payload: bytes) -> bytes:
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        der = _prehashed_ecdsa(digest)(private, payload)
        r, s = utils.decode_dss_signature(der)
        size = (private.curve.key_size + 7) // 8
        raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")  # what the service sends
        half = len(raw) // 2
        return utils.encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )

    return sign


def _rsa_pss(private: object, payload: bytes) -> bytes:
    """GCP RSA_SIGN_PSS_*_SHA256 and AWS RSASSA_PSS_SHA_256: salt as long as the digest."""
    assert isinstance(private, rsa.RSAPrivateKey)
    digest = hashlib.sha256(payload).digest()
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    return private.sign(digest, pss, utils.Prehashed(hashes.SHA256()))


def _ed25519(private: object, payload: bytes) -> bytes:
    """Vault transit ed25519: the payload is sent and signed as it is."""
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    return private.sign(payload)


def _p256() -> object:
    return ec.generate_private_key(ec.SECP256R1())


def _p384() -> object:
    return ec.generate_private_key(ec.SECP384R1())


def _rsa3072() -> object:
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


SHAPES = [
    Shape(kms.GCP, "ECDSA P-256", _p256, _prehashed_ecdsa(hashes.SHA256)),
    Shape(kms.GCP, "ECDSA P-384", _p384, _prehashed_ecdsa(hashes.SHA384)),
    Shape(kms.GCP, "RSA-PSS", _rsa3072, _rsa_pss),
    Shape(kms.AWS, "ECDSA P-256", _p256, _prehashed_ecdsa(hashes.SHA256)),
    Shape(kms.AWS, "ECDSA P-384", _p384, _prehashed_ecdsa(hashes.SHA384)),
    Shape(kms.AWS, "RSA-PSS", _rsa3072, _rsa_pss),
    Shape(kms.AZURE, "ECDSA P-256", _p256, _azure_ecdsa(hashes.SHA256)),
    Shape(kms.AZURE, "ECDSA P-384", _p384, _azure_ecdsa(hashes.SHA384)),
    Shape(kms.VAULT, "Ed25519", ed25519.Ed25519PrivateKey.generate, _ed25519),
]


class ServiceLike(Signer):
    """Signs as the service would, with a private key held by the test (the service's part)."""

    def __init__(self, shape: Shape, private: object, public: SSlibKey) -> None:
        self._shape = shape
        self._private = private
        self._public = public

    @property
    def public_key(self) -> Key:
        return self._public

    def sign(self, payload: bytes) -> Signature:
        return Signature(self._public.keyid, self._shape.sign(self._private, payload).hex())

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Key, secrets_handler: SecretsHandler | None = None
    ) -> ServiceLike:
        raise NotImplementedError(priv_key_uri)


def _public_pem(private: object) -> str:
    public = private.public_key()  # type: ignore[attr-defined]
    pem: bytes = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode("ascii")


@pytest.fixture
def service(request: pytest.FixtureRequest) -> Iterator[tuple[Shape, object]]:
    """A signer kind ``test-SCHEME:`` standing in for the service: like the real kind, it
    signs with the public key given by --public-key (``load_with_key``)."""
    shape: Shape = request.param
    private = shape.private()

    def load_with_key(location: str, _read: keys.Read, public: SSlibKey) -> Signer:
        kms.check_location(shape.provider, location)
        return ServiceLike(shape, private, public)

    def load(location: str, _read: keys.Read) -> Signer:
        raise AssertionError("the test always gives --public-key")

    kind = keys.SignerKind(f"test-{shape.provider.scheme}", "test", load, load_with_key)
    keys.register_signer_kind(kind)
    try:
        yield shape, private
    finally:
        keys.unregister_signer_kind(kind)


@pytest.mark.parametrize(
    "service",
    SHAPES,
    indirect=True,
    ids=[f"{s.provider.scheme}-{s.key_type}" for s in SHAPES],
)
def test_a_services_signature_verifies_offline_like_a_key_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, service: tuple[Shape, object]
) -> None:
    shape, private = service
    for name in ("policies.yaml", "run.yaml"):
        shutil.copy(BASE / name, tmp_path / name)
    public = keys.load_public_key(_public_pem(private))
    assert keys.key_type_of(public) is not None
    assert keys.key_type_of(public).name == shape.key_type  # type: ignore[union-attr]
    carol = approver_document("carol", _public_pem(private), ["reviewers"], ["carol"])
    (tmp_path / "carol.yaml").write_text(carol)
    docs = (BASE / "approvers.yaml").read_text().split("\n---\n")
    (index,) = [i for i, doc in enumerate(docs) if "\n  name: carol\n" in doc]
    docs[index] = carol.rstrip("\n")
    (tmp_path / "approvers.yaml").write_text("\n---\n".join(docs))
    ref = f"test-{shape.provider.scheme}:{GOOD[shape.provider.scheme][0]}"
    for signer_ref, approver, extra in (
        (str(KEYS / "alice.key"), "alice", ()),
        (ref, "carol", ("--public-key", str(tmp_path / "carol.yaml"))),
    ):
        code, _, err = _run(
            capsys,
            *("approve", str(tmp_path / "run.yaml"), "--signer", signer_ref),
            *("--approver", approver, "--in-place", "--now", "2026-11-21T11:00:00Z"),
            *("--env", "prod", *extra),
        )
        assert code == 0 and err.startswith("signed "), err
    code, out, err = _run(
        capsys,
        *("verify", str(tmp_path / "run.yaml"), "--policies", str(tmp_path / "policies.yaml")),
        *(str(tmp_path / "approvers.yaml"), "--now", "2026-11-21T12:00:00Z"),
        *("--user", "requester", "--env", "prod"),
    )
    assert out + err == (
        "ADMITTED agents/codex-run-sample in prod (approved; approved by alice, carol)\n"
        + OFFLINE_WARNING
    )


@pytest.mark.parametrize("service", SHAPES[:1], indirect=True, ids=["gcpkms-ECDSA P-256"])
def test_a_service_signing_with_another_key_than_the_one_given_is_an_error_not_a_record(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, service: tuple[Shape, object]
) -> None:
    """--public-key names the Approver's key, the KMS key (another version, another key)
    signs with its own: ``approve`` checks its signature before writing, says so, and
    writes nothing, instead of a record that never counts."""
    shape, _ = service
    shutil.copy(BASE / "run.yaml", tmp_path / "run.yaml")
    other = _public_pem(_p256())
    (tmp_path / "carol.yaml").write_text(approver_document("carol", other, [], ["carol"]))
    before = (tmp_path / "run.yaml").read_bytes()
    ref = f"test-{shape.provider.scheme}:{GOOD[shape.provider.scheme][0]}"
    code, _, err = _run(
        capsys,
        *("approve", str(tmp_path / "run.yaml"), "--signer", ref, "--approver", "carol"),
        *("--in-place", "--now", "2026-11-21T11:00:00Z", "--env", "prod"),
        *("--public-key", str(tmp_path / "carol.yaml")),
    )
    assert code == 1, err
    assert err.startswith(f"error: {ref}: its signature does not verify with its public key ")
    assert "name the key version the Approver's public key is of" in err
    assert (tmp_path / "run.yaml").read_bytes() == before


def test_a_service_key_of_a_refused_type_is_refused() -> None:
    """Azure holds P-521 keys, GCP PKCS#1 v1.5 ones: not approval key types."""
    p521 = ec.generate_private_key(ec.SECP521R1())
    pem = _public_pem(p521)
    key = SSlibKey("id", "ecdsa", "ecdsa-sha2-nistp521", {"public": pem})
    with pytest.raises(Exception, match=r"azurekms:x: the key in Azure Key Vault is refused"):
        kms.accepted(kms.AZURE, "azurekms:x", key)


def test_the_libraries_are_imported_only_when_a_key_is_used() -> None:
    assert importlib.util.find_spec("approvalgate.signers.kms") is not None
    source = Path(kms.__file__).read_text()
    for provider in kms.PROVIDERS:
        for module in provider.modules:
            assert f"import {module}" not in source


@pytest.mark.parametrize("service", SHAPES[:1], indirect=True, ids=["gcpkms-ECDSA P-256"])
def test_with_a_bundle_the_approvers_one_key_is_the_signers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, service: tuple[Shape, object]
) -> None:
    """approve --bundle: the approver's key in the bundle is given to the KMS signer, nothing
    is fetched from the service (the stand-in's ``load`` would fail the test)."""
    shape, private = service
    shutil.copy(BASE / "policies.yaml", tmp_path / "policies.yaml")
    shutil.copy(BASE / "run.yaml", tmp_path / "run.yaml")
    carol = approver_document("carol", _public_pem(private), ["reviewers"], ["carol"])
    docs = (BASE / "approvers.yaml").read_text().split("\n---\n")
    (index,) = [i for i, doc in enumerate(docs) if "\n  name: carol\n" in doc]
    docs[index] = carol.rstrip("\n")
    (tmp_path / "approvers.yaml").write_text("\n---\n".join(docs))
    bundle = tmp_path / "bundle.json"
    bundle.write_text(compile_case_bundle(tmp_path))
    for signer_ref, approver in ((str(KEYS / "alice.key"), "alice"), (_ref(shape), "carol")):
        code, _, err = _run(
            capsys,
            *("approve", str(tmp_path / "run.yaml"), "--signer", signer_ref),
            *("--approver", approver, "--in-place", "--now", "2026-11-21T11:00:00Z"),
            *("--bundle", str(bundle)),
        )
        assert code == 0 and err.startswith("signed "), err
    code, out, _ = _run(
        capsys,
        *("verify", str(tmp_path / "run.yaml"), "--bundle", str(bundle), "--allow-unsigned-bundle"),
        *("--now", "2026-11-21T12:00:00Z", "--user", "requester"),
    )
    assert (code, out.splitlines()[0]) == (
        0,
        "ADMITTED agents/codex-run-sample in prod (approved; approved by alice, carol)",
    )


def _ref(shape: Shape) -> str:
    return f"test-{shape.provider.scheme}:{GOOD[shape.provider.scheme][0]}"


def test_a_service_key_with_another_algorithm_is_refused() -> None:
    """GCP RSA_SIGN_PKCS1_3072_SHA256: the service would sign PKCS#1 v1.5, which approvals
    do not verify; refused before anything is signed."""
    pem = _public_pem(_rsa3072())
    key = SSlibKey("id", "rsa", "rsa-pkcs1v15-sha256", {"public": pem})
    with pytest.raises(Exception, match=r"signs with rsa-pkcs1v15-sha256, approvals verify "):
        kms.accepted(kms.GCP, "gcpkms:x", key)
    pss = SSlibKey("id", "rsa", "rsassa-pss-sha256", {"public": pem})
    assert kms.accepted(kms.GCP, "gcpkms:x", pss) == keys.load_public_key(pem)
