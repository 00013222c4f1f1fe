"""``hsm:`` signers: an ECDSA key on a PKCS#11 token (a YubiKey's PIV applet, a Nitrokey, an
HSM, SoftHSM2), through securesystemslib's HSMSigner. The private key never leaves the token:
the payload is hashed here and the token signs the digest.

REF is securesystemslib's URI: ``hsm:[KEYID][?label=TOKEN]``. KEYID is the key's CKA_ID as a
number (default 2, the PIV signature slot 9c); TOKEN picks the token by its label when
several are present. The key is ECDSA P-256 or P-384 (what HSMSigner signs with).

- the PKCS#11 module: environment APPROVALGATE_PKCS11_MODULE, else securesystemslib's
  PYKCS11LIB (e.g. ``/usr/lib/softhsm/libsofthsm2.so``,
  ``/usr/lib/x86_64-linux-gnu/libykcs11.so``);
- the user PIN: environment APPROVALGATE_PKCS11_PIN, else asked on the terminal (never
  a command-line flag: it would be in the shell history and the process list);
- the public key is read from the token (its public key object), so
  ``approve --signer hsm:2?label=TOKEN`` needs nothing else.

python-pkcs11 (``pip install 'approvalgate[hsm]'``) is imported only when a key is used.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Final
from urllib import parse

from securesystemslib.signer import Key, SecretsHandler, Signature, Signer, SSlibKey

from approvalgate.approvals import keys
from approvalgate.approvals.errors import ApprovalgateError, RecordError, UsageError

SCHEME: Final = "hsm"
MODULE_ENV: Final = "APPROVALGATE_PKCS11_MODULE"
SSLIB_MODULE_ENV: Final = "PYKCS11LIB"
PIN_ENV: Final = "APPROVALGATE_PKCS11_PIN"
DEFAULT_KEY_ID: Final = 2
EXAMPLE: Final = "hsm:2?label=approvers"
INSTALL: Final = "pip install 'approvalgate[hsm]'  (python-pkcs11)"


@dataclass(frozen=True)
class TokenKey:
    """Where an ``hsm:`` REF says the key is."""

    key_id: int
    label: str | None

    @property
    def uri(self) -> str:
        query = f"?{parse.urlencode({'label': self.label})}" if self.label else ""
        return f"{SCHEME}:{self.key_id}{query}"

    @property
    def token(self) -> str:
        return f"PKCS#11 token {self.label!r}" if self.label else "the PKCS#11 token"

    def where(self) -> str:
        """Where the private key lives, for keygen's output."""
        return f"on {self.token} (key id {self.key_id}), never exported: it signs there"


def parse_ref(location: str) -> TokenKey:
    """``KEYID?label=TOKEN`` (the part after ``hsm:``); UsageError when malformed."""
    ref = f"{SCHEME}:{location}"
    path, _, query = location.partition("?")
    if path and not path.isdigit():
        raise UsageError(
            f"{ref}: the key id {path!r} is not a number (the key's CKA_ID, e.g. {EXAMPLE})",
            advice="the form is hsm:[KEYID][?label=TOKEN]",
        )
    try:
        fields = parse.parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise UsageError(f"{ref}: {exc}", advice=f"e.g. {EXAMPLE}") from exc
    unknown = sorted(set(fields) - {"label"})
    if unknown or len(fields.get("label", [])) > 1:
        raise UsageError(
            f"{ref}: only one label=TOKEN may follow '?' (found {query!r})",
            advice=f"e.g. {EXAMPLE}",
        )
    label = fields["label"][0] if "label" in fields else None
    return TokenKey(int(path) if path else DEFAULT_KEY_ID, label or None)


def module_path() -> str:
    """The PKCS#11 module to load (also put where securesystemslib reads it)."""
    path = os.environ.get(MODULE_ENV) or os.environ.get(SSLIB_MODULE_ENV)
    if not path:
        raise UsageError(
            f"hsm: signers need the token's PKCS#11 module: set {MODULE_ENV}",
            advice=f"e.g. export {MODULE_ENV}=/usr/lib/softhsm/libsofthsm2.so (SoftHSM2) or "
            "/usr/lib/x86_64-linux-gnu/libykcs11.so (YubiKey)",
        )
    if not os.path.isfile(path):
        raise UsageError(
            f"PKCS#11 module {path} does not exist",
            advice=f"set {MODULE_ENV} to the module your token's software installed",
        )
    os.environ[SSLIB_MODULE_ENV] = path
    return path


class Pin:
    """securesystemslib's secrets handler: the user PIN, asked for once."""

    def __init__(self, token: TokenKey) -> None:
        self._token = token
        self._pin: str | None = None

    def __call__(self, _secret: str) -> str:
        if self._pin is None:
            self._pin = os.environ.get(PIN_ENV) or self._ask()
        return self._pin

    def _ask(self) -> str:
        import getpass

        if not sys.stdin.isatty():
            raise UsageError(
                f"the user PIN of {self._token.token} is needed and there is no terminal to "
                "ask it on",
                advice=f"set {PIN_ENV} (never pass a PIN as a flag)",
            )
        return getpass.getpass(f"PIN for {self._token.token}: ")


def _require_library() -> None:
    import importlib.util

    if importlib.util.find_spec("pkcs11") is None:
        raise ApprovalgateError(
            "hsm: signers need python-pkcs11, which is not installed",
            advice=f"install it: {INSTALL}",
        )


def _token_error(token: TokenKey, exc: Exception) -> ApprovalgateError:
    """The user's words for what python-pkcs11 or HSMSigner raised."""
    import pkcs11.exceptions as errors

    module = os.environ.get(SSLIB_MODULE_ENV, "")
    if isinstance(exc, errors.PinIncorrect):
        return RecordError(
            f"{token.token}: the PIN is wrong",
            advice=f"check {PIN_ENV} (a token locks itself after a few wrong PINs)",
        )
    if isinstance(exc, errors.PinLocked):
        return RecordError(
            f"{token.token}: the PIN is locked", advice="unlock it with the token's SO PIN"
        )
    if isinstance(exc, ValueError) and str(exc).startswith("No PKCS#11 token found"):
        named = f"PKCS#11 token {token.label!r}" if token.label else "initialised PKCS#11 token"
        return RecordError(
            f"no {named} in PKCS#11 module {module}",
            advice="plug the token in, or check the label in the REF (hsm:KEYID?label=TOKEN)",
        )
    if isinstance(exc, ValueError) and "Multiple PKCS#11 tokens" in str(exc):
        return UsageError(
            f"several PKCS#11 tokens in module {module}",
            advice="name one by its label: hsm:KEYID?label=TOKEN",
        )
    if isinstance(exc, ValueError) and "is not a supported EC curve" in str(exc):
        return RecordError(
            f"{token.token}: key {token.key_id} is on curve {str(exc).split()[0]}",
            advice="keys on a token sign approvals on curve P-256 or P-384 (securesystemslib's "
            "HSM signer)",
        )
    if isinstance(exc, ValueError) and "key" in str(exc):
        return RecordError(
            f"{token.token} holds no ECDSA P-256 or P-384 key pair with id {token.key_id}",
            advice="list the token's objects (e.g. `pkcs11-tool --module MODULE "
            "--list-objects --login`) and name the key's CKA_ID: hsm:ID?label=TOKEN",
        )
    if isinstance(exc, errors.PKCS11Error) and str(exc).startswith("OS exception"):
        return UsageError(
            f"cannot load PKCS#11 module {module}: {exc}",
            advice=f"set {MODULE_ENV} to your token's PKCS#11 module",
        )
    name = type(exc).__name__
    return RecordError(f"{token.token}: {name} {exc}".rstrip(), advice="check the token")


def read_public_key(token: TokenKey, pin: Pin) -> SSlibKey:
    """The public key of ``token``'s key pair, read from the token."""
    _require_library()
    module_path()
    import pkcs11.exceptions
    from securesystemslib.signer import HSMSigner

    try:
        _, public = HSMSigner.import_(token.key_id, token.label, pin)
    except (ValueError, pkcs11.exceptions.PKCS11Error) as exc:
        raise _token_error(token, exc) from exc
    # the form Approver documents and bundles hold (same key id as the compiler computes)
    return keys.load_public_key(keys.public_key_pem(public))


def _check_login(token: TokenKey, pin: Pin) -> None:
    """Log in and find the private key now, so a wrong PIN is said before anything else."""
    import pkcs11
    import pkcs11.util

    try:
        found = pkcs11.lib(module_path()).get_token(
            token_label=token.label, token_flags=pkcs11.TokenFlag.TOKEN_INITIALIZED
        )
        with found.open(user_pin=pin("pin")) as session:
            session.get_key(
                pkcs11.ObjectClass.PRIVATE_KEY,
                pkcs11.KeyType.EC,
                id=pkcs11.util.biginteger(token.key_id),
            )
    except pkcs11.exceptions.NoSuchToken as exc:
        raise _token_error(token, ValueError("No PKCS#11 token found")) from exc
    except pkcs11.exceptions.MultipleTokensReturned as exc:
        raise _token_error(token, ValueError("Multiple PKCS#11 tokens found")) from exc
    except (pkcs11.exceptions.NoSuchKey, pkcs11.exceptions.MultipleObjectsReturned) as exc:
        raise _token_error(token, ValueError("no such key")) from exc
    except pkcs11.exceptions.PKCS11Error as exc:
        raise _token_error(token, exc) from exc


def load(location: str, _read: keys.Read) -> Signer:
    """The signer for ``hsm:LOCATION``: public key read from the token, PIN checked."""
    token = parse_ref(location)
    pin = Pin(token)
    public = read_public_key(token, pin)
    _check_login(token, pin)
    return TokenSigner.create(token, public, pin)


def import_key(location: str) -> tuple[SSlibKey, str]:
    """keygen --import: the token's public key, and where the private key lives."""
    token = parse_ref(location)
    return read_public_key(token, Pin(token)), token.where()


class TokenSigner(Signer):
    """HSMSigner whose failures are ApprovalgateErrors (the CLI says them, no traceback)."""

    def __init__(self, token: TokenKey, inner: Signer) -> None:
        self._token = token
        self._inner = inner

    @classmethod
    def create(cls, token: TokenKey, public: SSlibKey, pin: Pin) -> TokenSigner:
        from securesystemslib.signer import HSMSigner

        return cls(token, HSMSigner.from_priv_key_uri(token.uri, public, pin))

    @property
    def public_key(self) -> Key:
        return self._inner.public_key

    def sign(self, payload: bytes) -> Signature:
        import pkcs11.exceptions

        try:
            return self._inner.sign(payload)
        except (ValueError, pkcs11.exceptions.PKCS11Error) as exc:
            raise _token_error(self._token, exc) from exc

    @classmethod
    def from_priv_key_uri(
        cls,
        priv_key_uri: str,
        public_key: Key,
        secrets_handler: SecretsHandler | None = None,
    ) -> TokenSigner:
        token = parse_ref(priv_key_uri.removeprefix(f"{SCHEME}:"))
        if not isinstance(public_key, SSlibKey):
            raise UsageError(f"{priv_key_uri}: needs a securesystemslib SSlibKey")
        return cls.create(token, public_key, Pin(token))


HSM: Final = keys.SignerKind(
    scheme=SCHEME,
    description="a PKCS#11 token or HSM: hsm:KEYID?label=TOKEN; module from "
    f"${MODULE_ENV}, PIN from ${PIN_ENV} or asked",
    load=load,
)
