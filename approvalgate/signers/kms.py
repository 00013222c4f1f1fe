"""Cloud KMS and Vault signers: ``gcpkms:``, ``awskms:``, ``azurekms:``, ``hv:`` REFs are
securesystemslib's private key URIs, signed with by its GCPSigner, AWSSigner, AzureSigner and
VaultSigner. The private key stays in the service: the payload is hashed here (Vault: sent)
and the service signs; the signatures are the ones key files make (ECDSA DER, RSA-PSS,
Ed25519), so they are verified offline by the same code as every other approval.

The service's client library is not a dependency of approvalgate: a signer of a kind whose
library is missing is refused with the pip command to run. Credentials are the library's
ambient ones (GOOGLE_APPLICATION_CREDENTIALS or gcloud's, AWS_PROFILE/AWS_REGION or the
instance role, DefaultAzureCredential, VAULT_ADDR and VAULT_TOKEN).

The public key: ``--public-key FILE`` (the Approver document ``keygen --import`` wrote, or a
PEM) signs without asking the service for it; without it the key is fetched from the service
(securesystemslib's ``import_``), which needs the permission to read it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from securesystemslib.signer import Key, SecretsHandler, Signature, Signer, SSlibKey

from approvalgate.approvals import keys
from approvalgate.approvals.errors import ApprovalgateError, RecordError, UsageError


@dataclass(frozen=True)
class Provider:
    """One KMS (or Vault) as securesystemslib signs with it."""

    scheme: str
    name: str
    signer_class: str
    """The class in securesystemslib.signer."""
    modules: tuple[str, ...]
    """What must import for its signer (the client library)."""
    install: str
    example: str
    form: str
    """The LOCATION's form, for messages."""
    pattern: str
    """A full match of the LOCATION."""
    credentials: str
    """Where its credentials come from, for advice."""
    key_types: str
    """The accepted key types it can hold."""
    short: str
    """A REF's form in a line of --help."""

    def where(self, location: str) -> str:
        """Where the private key lives, for keygen's output."""
        return f"in {self.name}, key {self.scheme}:{location}, never exported: it signs there"


GCP: Final = Provider(
    scheme="gcpkms",
    name="Google Cloud KMS",
    signer_class="GCPSigner",
    modules=("google.cloud.kms",),
    install="pip install google-cloud-kms",
    example="gcpkms:projects/P/locations/global/keyRings/R/cryptoKeys/K/cryptoKeyVersions/1",
    form="projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/V",
    pattern=r"projects/[^/\s]+/locations/[^/\s]+/keyRings/[^/\s]+/cryptoKeys/[^/\s]+"
    r"/cryptoKeyVersions/[^/\s]+",
    credentials="gcloud auth application-default login (or GOOGLE_APPLICATION_CREDENTIALS); "
    "roles/cloudkms.signer and roles/cloudkms.publicKeyViewer on the key",
    key_types="EC_SIGN_P256_SHA256, EC_SIGN_P384_SHA384, RSA_SIGN_PSS_*_SHA256",
    short="gcpkms:projects/P/.../cryptoKeyVersions/V",
)
AWS: Final = Provider(
    scheme="awskms",
    name="AWS KMS",
    signer_class="AWSSigner",
    modules=("boto3", "botocore"),
    install="pip install boto3",
    example="awskms:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    form="KEY-ID, a key ARN, alias/NAME or an alias ARN",
    pattern=r"[^\s/][^\s]*",
    credentials="AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and AWS_REGION; "
    "kms:Sign and kms:GetPublicKey on the key",
    key_types="ECC_NIST_P256, ECC_NIST_P384, RSA_2048/3072/4096 (RSASSA_PSS_SHA_256)",
    short="awskms:alias/NAME",
)
AZURE: Final = Provider(
    scheme="azurekms",
    name="Azure Key Vault",
    signer_class="AzureSigner",
    modules=("azure.identity", "azure.keyvault.keys"),
    install="pip install azure-identity azure-keyvault-keys",
    example="azurekms://my-vault.vault.azure.net/keys/alice/0123456789abcdef0123456789abcdef",
    form="//VAULT.vault.azure.net/keys/NAME/VERSION",
    pattern=r"//[a-zA-Z0-9-]+\.vault\.azure\.net/keys/[^/\s]+(/[^/\s]+)?",
    credentials="az login (DefaultAzureCredential, or AZURE_CLIENT_ID/AZURE_TENANT_ID/"
    "AZURE_CLIENT_SECRET); the Key Vault Crypto User role",
    key_types="EC P-256, EC P-384",
    short="azurekms://VAULT.vault.azure.net/keys/NAME/VERSION",
)
VAULT: Final = Provider(
    scheme="hv",
    name="HashiCorp Vault (transit)",
    signer_class="VaultSigner",
    modules=("hvac",),
    install="pip install hvac",
    example="hv:alice/1",
    form="NAME/VERSION (transit key NAME; NAME alone for keygen --import: the newest version)",
    pattern=r"[^/\s]+(/[0-9]+)?",
    credentials="VAULT_ADDR and VAULT_TOKEN; update on transit/sign/NAME, read on "
    "transit/keys/NAME",
    key_types="ed25519",
    short="hv:NAME/VERSION",
)
PROVIDERS: Final = (GCP, AWS, AZURE, VAULT)


def provider(scheme: str) -> Provider:
    for candidate in PROVIDERS:
        if candidate.scheme == scheme:
            return candidate
    raise KeyError(scheme)


def check_location(kms: Provider, location: str) -> str:
    """``location`` when it has the provider's form; UsageError otherwise."""
    if not re.fullmatch(kms.pattern, location):
        raise UsageError(
            f"{kms.scheme}:{location}: not a {kms.name} key: the form is {kms.scheme}:{kms.form}",
            advice=f"e.g. {kms.example}",
        )
    return location


def require_library(kms: Provider) -> None:
    """The provider's client library imports, or an error with the pip command."""
    missing = [m for m in kms.modules if _find(m) is None]
    if missing:
        raise ApprovalgateError(
            f"{kms.scheme}: signers need {kms.name}'s client library ({', '.join(missing)}), "
            "which is not installed (approvalgate does not depend on it)",
            advice=f"install it in approvalgate's environment: {kms.install}",
        )


def _find(module: str) -> object:
    import importlib.util

    try:
        return importlib.util.find_spec(module)
    except ModuleNotFoundError:  # a missing parent package (google, azure)
        return None


def _signer_class(kms: Provider) -> type[Signer]:
    import securesystemslib.signer as sslib

    found: type[Signer] = getattr(sslib, kms.signer_class)
    return found


def _service_error(kms: Provider, ref: str, exc: Exception) -> ApprovalgateError:
    return RecordError(
        f"{kms.name} ({ref}): {type(exc).__name__}: {exc}",
        advice=f"check the key name and your credentials: {kms.credentials}",
    )


def accepted(kms: Provider, ref: str, key: Key) -> SSlibKey:
    """``key`` as the Approver documents hold it (same key id), or why it is refused."""
    if not isinstance(key, SSlibKey):
        raise RecordError(f"{ref}: {kms.name} gave a {type(key).__name__}, not a public key")
    try:
        public = keys.load_public_key(keys.public_key_pem(key))
    except ValueError as exc:
        raise RecordError(
            f"{ref}: the key in {kms.name} is refused: {exc}",
            advice=f"use a key of type {kms.key_types}",
        ) from exc
    if (public.keytype, public.scheme) != (key.keytype, key.scheme):
        # e.g. an RSA key whose algorithm is PKCS#1 v1.5 or PSS with SHA-512: the service
        # would sign with that algorithm, which approvals do not verify
        raise RecordError(
            f"{ref}: the key in {kms.name} signs with {key.scheme}, approvals verify "
            f"{public.scheme}",
            advice=f"use a key of type {kms.key_types}",
        )
    return public


def _fetch(kms: Provider, location: str) -> tuple[str, SSlibKey]:
    """securesystemslib's ``import_``: the signer URI (with the key version where the
    service has versions) and the public key, accepted."""
    ref = f"{kms.scheme}:{check_location(kms, location)}"
    require_library(kms)
    cls = _signer_class(kms)
    try:
        if kms is AZURE:
            vault, _, rest = location.removeprefix("//").partition(".")
            uri, public = cls.import_(vault, rest.split("/")[2])  # type: ignore[attr-defined]
        elif kms is VAULT:
            uri, public = cls.import_(location.partition("/")[0])  # type: ignore[attr-defined]
        else:
            uri, public = cls.import_(location)  # type: ignore[attr-defined]
    except ApprovalgateError:
        raise
    except Exception as exc:  # the client libraries' errors: they are not importable here
        raise _service_error(kms, ref, exc) from exc
    versioned = location.count("/") == (4 if kms is AZURE else 1)
    if kms in (AZURE, VAULT) and versioned and uri != ref:
        raise RecordError(
            f"{ref}: {kms.name}'s newest version of the key is {uri}, not the one named",
            advice="pass --public-key FILE with that version's public key, or name the "
            f"newest: {uri}",
        )
    return str(uri), accepted(kms, ref, public)


def import_key(kms: Provider, location: str) -> tuple[SSlibKey, str]:
    """keygen --import: the public key the service holds, and where the private key is."""
    uri, public = _fetch(kms, location)
    return public, kms.where(uri.partition(":")[2])


def with_key(kms: Provider, location: str, public: SSlibKey) -> Signer:
    """The signer for ``location`` whose public key is ``public`` (nothing fetched)."""
    ref = f"{kms.scheme}:{check_location(kms, location)}"
    if kms is VAULT and "/" not in location:
        raise UsageError(
            f"{ref}: name the key version to sign with: {ref}/VERSION",
            advice="`vault read transit/keys/NAME` lists the versions",
        )
    require_library(kms)
    try:
        inner = _signer_class(kms).from_priv_key_uri(ref, public)
    except Exception as exc:  # unsupported key type, client set-up
        raise _service_error(kms, ref, exc) from exc
    return ServiceSigner(kms, ref, inner)


def load(kms: Provider, location: str) -> Signer:
    """The signer for ``location``, its public key fetched from the service."""
    uri, public = _fetch(kms, location)
    return with_key(kms, uri.partition(":")[2], public)


class ServiceSigner(Signer):
    """A KMS signer whose failures are ApprovalgateErrors (said, no traceback)."""

    def __init__(self, kms: Provider, ref: str, inner: Signer) -> None:
        self._kms = kms
        self._ref = ref
        self._inner = inner

    @property
    def public_key(self) -> Key:
        return self._inner.public_key

    def sign(self, payload: bytes) -> Signature:
        try:
            return self._inner.sign(payload)
        except Exception as exc:  # the client libraries' errors
            raise _service_error(self._kms, self._ref, exc) from exc

    @classmethod
    def from_priv_key_uri(
        cls,
        priv_key_uri: str,
        public_key: Key,
        secrets_handler: SecretsHandler | None = None,
    ) -> ServiceSigner:
        scheme, _, location = priv_key_uri.partition(":")
        if not isinstance(public_key, SSlibKey):
            raise UsageError(f"{priv_key_uri}: needs a securesystemslib SSlibKey")
        signer = with_key(provider(scheme), location, public_key)
        assert isinstance(signer, ServiceSigner)
        return signer


def _kind(kms: Provider) -> keys.SignerKind:
    def load_kind(location: str, _read: keys.Read) -> Signer:
        return load(kms, location)

    def load_with_key(location: str, _read: keys.Read, public: SSlibKey) -> Signer:
        return with_key(kms, location, public)

    return keys.SignerKind(
        scheme=kms.scheme,
        description=f"{kms.name}: {kms.short}; needs {kms.install}",
        load=load_kind,
        load_with_key=load_with_key,
    )


KINDS: Final = tuple(_kind(kms) for kms in PROVIDERS)


def importer(scheme: str) -> Callable[[str], tuple[SSlibKey, str]]:
    """``keygen --import`` for the provider of ``scheme``."""
    kms = provider(scheme)

    def run(location: str) -> tuple[SSlibKey, str]:
        return import_key(kms, location)

    return run
