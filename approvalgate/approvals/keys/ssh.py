"""SSH keys as approval keys: OpenSSH public key lines and SSHSIG signatures, checked offline.

An approver may pin the public key of the SSH key they already have (in their ssh-agent,
often on a security key): an Approver's ``publicKey`` is then the ``.pub`` line. Such a key
is an ``SSlibKey`` whose keytype is the OpenSSH key type name, scheme ``sshsig``, keyval
``{"public": "<type> <base64>"}`` (no comment) and securesystemslib's default key id.

A signature by such a key (hex in the DSSE envelope like any other) is the binary SSHSIG
blob of OpenSSH's PROTOCOL.sshsig over the DSSE PAE, in namespace :data:`SSH_NAMESPACE`,
hash sha512 (sha256 accepted, nothing else): exactly what ``ssh-keygen -Y sign -n
gates.proompteng.ai`` makes (without the armour), so ``ssh-keygen -Y verify`` agrees with
the check here both ways (tests/unit/test_ssh_keys.py). The check, built once per key:

- the blob is SSHSIG version 1, parsed strictly (no short field, no trailing byte);
- its embedded public key is byte for byte the pinned key (not merely a key that verifies);
- namespace ``gates.proompteng.ai``; hash sha512 or sha256;
- the signature: ``ssh-ed25519``; ECDSA nistp256/384 (SHA-256/SHA-384); RSA
  ``rsa-sha2-512``/``rsa-sha2-256`` only (never ``ssh-rsa``, SHA-1), keys of 2048 bits or
  more; security keys (``sk-``) per PROTOCOL.u2f: the signed message is
  ``sha256(application) || flags || counter || sha256(data)``, the user-presence flag must
  be set, and the application must start with ``ssh:`` as OpenSSH requires.

Pure: the agent that makes such signatures is :mod:`approvalgate.signers.sshagent`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner, SSlibKey

from approvalgate.approvals.errors import RecordError
from approvalgate.approvals.keys.types import (
    ED25519_PUBLIC_BYTES,
    RSA_MIN_BITS,
    Check,
    KeyType,
    ed25519_refusal,
    ed25519_verify,
    register_key_type,
)

SSH_NAMESPACE: Final = "gates.proompteng.ai"
"""The SSHSIG namespace of approval signatures (``ssh-keygen -Y sign -n ...``)."""
SCHEME: Final = "sshsig"
"""securesystemslib scheme of every SSH key."""
SIGN_HASH: Final = "sha512"
"""The hash our signers use (OpenSSH's default)."""
HASHES: Final = {"sha512": hashlib.sha512, "sha256": hashlib.sha256}
"""The SSHSIG hashes accepted on verify (PROTOCOL.sshsig allows exactly these)."""

MAGIC: Final = b"SSHSIG"
VERSION: Final = 1
USER_PRESENCE: Final = 0x01
"""PROTOCOL.u2f flag: the user touched the security key."""
USER_VERIFICATION: Final = 0x04
"""PROTOCOL.u2f flag: the security key verified the user (their PIN) before signing, what a
key made with ``ssh-keygen -O verify-required`` asks for every time."""
SK_APPLICATION_PREFIX: Final = "ssh:"

ED25519: Final = "ssh-ed25519"
SK_ED25519: Final = "sk-ssh-ed25519@openssh.com"
ECDSA_P256: Final = "ecdsa-sha2-nistp256"
ECDSA_P384: Final = "ecdsa-sha2-nistp384"
SK_ECDSA_P256: Final = "sk-ecdsa-sha2-nistp256@openssh.com"
RSA: Final = "ssh-rsa"
RSA_SIGNATURES: Final = {"rsa-sha2-512": hashes.SHA512, "rsa-sha2-256": hashes.SHA256}
"""RSA signature algorithms accepted (``ssh-rsa``, SHA-1, is not)."""

FAMILY: Final = "OpenSSH (ed25519, ecdsa, rsa, sk-*)"
"""How messages list the SSH key types together."""


class SSHSignatureError(ValueError):
    """An SSH key or SSHSIG signature that is malformed or does not verify (why, in words)."""


# --------------------------------------------------------------------------- wire format


class _Reader:
    """PROTOCOL's ``string``/``uint32``/``byte``/``mpint``, strict: a short field raises."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._at = 0
        self._what = what

    def take(self, n: int) -> bytes:
        if n < 0 or self._at + n > len(self._data):
            raise SSHSignatureError(f"{self._what} is truncated")
        chunk = self._data[self._at : self._at + n]
        self._at += n
        return chunk

    def uint32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def byte(self) -> int:
        return self.take(1)[0]

    def string(self) -> bytes:
        return self.take(self.uint32())

    def text(self) -> str:
        try:
            return self.string().decode("ascii")
        except UnicodeDecodeError:
            raise SSHSignatureError(f"{self._what} has a field that is not ASCII") from None

    def mpint(self, *, minimal: bool = False) -> int:
        """An mpint; ``minimal``: written as OpenSSH writes it (RFC 4251: no leading zero
        byte the sign does not need), so that one key has one blob."""
        raw = self.string()
        if raw and raw[0] & 0x80:
            raise SSHSignatureError(f"{self._what} has a negative number")
        if minimal and raw[:1] == b"\0" and (len(raw) == 1 or not raw[1] & 0x80):
            raise SSHSignatureError(
                f"{self._what} has a number with leading zero bytes: not as OpenSSH writes "
                "it (use the .pub line ssh-keygen wrote)"
            )
        return int.from_bytes(raw, "big")

    def end(self) -> None:
        if self._at != len(self._data):
            raise SSHSignatureError(f"{self._what} has {len(self._data) - self._at} extra bytes")


def _string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


# --------------------------------------------------------------------------- public keys


_Verify = Callable[[bytes, bytes], None]
"""``(signature field of the SSHSIG blob, signed data)``; raises on a bad signature."""


@dataclass(frozen=True)
class SSHPublicKey:
    """A parsed OpenSSH public key: its wire blob and a verifier for its signatures."""

    keytype: str
    blob: bytes
    verify: _Verify
    bits: int = 0
    """RSA modulus size (0 for other types)."""
    application: str = ""
    """Security keys: the FIDO application (``ssh:`` by default)."""
    spki: bytes = b""
    """The key under the line as DER SubjectPublicKeyInfo (a security key's too, its
    application aside): what one private key is in every form (keys.public.key_material)."""

    @property
    def line(self) -> str:
        """``<type> <base64>``: the ``.pub`` line without comment."""
        return f"{self.keytype} {base64.b64encode(self.blob).decode('ascii')}"

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` as ``ssh-keygen -l`` and ``ssh-add -l`` print it."""
        return fingerprint(self.blob)


def fingerprint(blob: bytes) -> str:
    """OpenSSH's ``SHA256:<base64 without padding>`` of a public key blob."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return "SHA256:" + digest.rstrip("=")


def _signature_fields(signature: bytes, keytype: str, sk: bool) -> tuple[bytes, int, int]:
    """The raw signature (and sk flags and counter) of an SSH signature for ``keytype``."""
    reader = _Reader(signature, "the signature")
    algorithm = reader.text()
    if algorithm != keytype:
        raise SSHSignatureError(f"a {algorithm} signature for a {keytype} key")
    raw = reader.string()
    flags = counter = 0
    if sk:
        flags = reader.byte()
        counter = reader.uint32()
    reader.end()
    return raw, flags, counter


def is_security_key(keytype: str) -> bool:
    """Whether ``keytype`` is a security key's (``sk-``): its signatures carry flags."""
    return keytype in (SK_ED25519, SK_ECDSA_P256)


def user_verified(blob: bytes) -> bool:
    """Whether the SSHSIG ``blob`` is a security key's signature whose flags say the key
    verified the user (:data:`USER_VERIFICATION`); False for any other signature, or one
    that does not parse. Read after the signature verified (the flags are signed): one
    walk over a few hundred bytes, for keys whose Approver entry requires it."""
    try:
        reader = _Reader(blob, "the SSH signature")
        reader.take(len(MAGIC) + 4)
        for _ in range(4):  # public key, namespace, reserved, hash
            reader.string()
        signature = reader.string()
        keytype = _Reader(signature, "the signature").text()
        if not is_security_key(keytype):
            return False
        _, flags, _ = _signature_fields(signature, keytype, sk=True)
        return bool(flags & USER_VERIFICATION)
    except SSHSignatureError:
        return False


def _u2f_message(application: str, flags: int, counter: int, data: bytes) -> bytes:
    """What a security key signs (PROTOCOL.u2f): the user-presence flag is required."""
    if not flags & USER_PRESENCE:
        raise SSHSignatureError("the security key signed without user presence (no touch): refused")
    return (
        hashlib.sha256(application.encode("utf-8")).digest()
        + bytes([flags])
        + struct.pack(">I", counter)
        + hashlib.sha256(data).digest()
    )


def _ed25519(keytype: str, raw: bytes, application: str) -> _Verify:
    if len(raw) == ED25519_PUBLIC_BYTES and (why := ed25519_refusal(raw)):
        raise SSHSignatureError(why)
    try:
        check = ed25519_verify(raw)
    except ValueError as exc:
        raise SSHSignatureError(f"not an Ed25519 public key: {exc}") from None
    sk = keytype == SK_ED25519

    def verify(signature: bytes, data: bytes) -> None:
        sig, flags, counter = _signature_fields(signature, keytype, sk)
        message = _u2f_message(application, flags, counter, data) if sk else data
        check(sig, message)

    return verify


_CURVES: Final[dict[str, tuple[ec.EllipticCurve, hashes.HashAlgorithm]]] = {
    "nistp256": (ec.SECP256R1(), hashes.SHA256()),
    "nistp384": (ec.SECP384R1(), hashes.SHA384()),
}


def _ecdsa(keytype: str, curve_name: str, point: bytes, application: str) -> _Verify:
    sk = keytype == SK_ECDSA_P256
    expected = "nistp256" if sk else keytype.removeprefix("ecdsa-sha2-")
    if curve_name != expected or curve_name not in _CURVES:
        raise SSHSignatureError(f"a {keytype} key on curve {curve_name!r}")
    curve, digest = _CURVES[curve_name]
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except ValueError as exc:
        raise SSHSignatureError(f"not a point on {curve_name}: {exc}") from None
    algorithm = ec.ECDSA(digest)

    def verify(signature: bytes, data: bytes) -> None:
        sig, flags, counter = _signature_fields(signature, keytype, sk)
        numbers = _Reader(sig, "the ECDSA signature")
        r, s = numbers.mpint(), numbers.mpint()
        numbers.end()
        # sk: ECDSA with SHA-256 over the u2f message, as OpenSSH checks it
        message = _u2f_message(application, flags, counter, data) if sk else data
        public.verify(encode_dss_signature(r, s), message, algorithm)

    return verify


def _rsa(e: int, n: int) -> tuple[_Verify, int]:
    try:
        public = rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise SSHSignatureError(f"not an RSA public key: {exc}") from None
    pkcs1 = padding.PKCS1v15()

    def verify(signature: bytes, data: bytes) -> None:
        reader = _Reader(signature, "the signature")
        algorithm = reader.text()
        if algorithm not in RSA_SIGNATURES:
            raise SSHSignatureError(
                f"an RSA signature made with {algorithm}: only rsa-sha2-512 or rsa-sha2-256 "
                "are accepted (ssh-rsa is SHA-1)"
            )
        sig = reader.string()
        reader.end()
        public.verify(sig, data, pkcs1, RSA_SIGNATURES[algorithm]())

    return verify, public.key_size


def parse_blob(blob: bytes) -> SSHPublicKey:
    """An OpenSSH public key from its wire form. Raises SSHSignatureError."""
    reader = _Reader(blob, "the SSH public key")
    keytype = reader.text()
    application = ""
    bits = 0
    if keytype in (ED25519, SK_ED25519):
        raw = reader.string()
        if keytype == SK_ED25519:
            application = reader.text()
        verify = _ed25519(keytype, raw, application)
    elif keytype in (ECDSA_P256, ECDSA_P384, SK_ECDSA_P256):
        curve_name = reader.text()
        point = reader.string()
        if keytype == SK_ECDSA_P256:
            application = reader.text()
        verify = _ecdsa(keytype, curve_name, point, application)
    elif keytype == RSA:
        e = reader.mpint(minimal=True)
        n = reader.mpint(minimal=True)
        verify, bits = _rsa(e, n)
    else:
        raise SSHSignatureError(f"{keytype} keys are not accepted (accepted: {_type_list()})")
    reader.end()
    underlying: PublicKeyTypes
    if keytype in (ED25519, SK_ED25519):
        underlying = Ed25519PublicKey.from_public_bytes(raw)
    elif keytype == RSA:
        underlying = rsa.RSAPublicNumbers(e, n).public_key()
    else:
        underlying = ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[curve_name][0], point)
    spki = underlying.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if keytype.startswith("sk-") and not application.startswith(SK_APPLICATION_PREFIX):
        raise SSHSignatureError(
            f"the security key's application {application!r} does not start with "
            f"{SK_APPLICATION_PREFIX!r}, as OpenSSH requires"
        )
    return SSHPublicKey(keytype, blob, verify, bits, application, spki)


def parse_line(line: str) -> SSHPublicKey:
    """An OpenSSH public key line ``<type> <base64> [comment]``. Raises SSHSignatureError."""
    if "\n" in line.strip():
        raise SSHSignatureError("one OpenSSH public key line is expected, not several lines")
    fields = line.strip().split(maxsplit=2)
    if len(fields) < 2:
        raise SSHSignatureError("not an OpenSSH public key line (`<type> <base64> [comment]`)")
    keytype, encoded = fields[0], fields[1]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SSHSignatureError(f"the {keytype} key is not valid base64") from None
    key = parse_blob(blob)
    if key.keytype != keytype:
        raise SSHSignatureError(f"the line says {keytype} but the key is {key.keytype}")
    return key


def is_ssh_line(text: str) -> bool:
    """Whether ``text`` looks like an OpenSSH public key line (not PEM)."""
    first = text.strip().split(maxsplit=1)
    return bool(first) and (
        first[0].startswith(("ssh-", "sk-", "ecdsa-")) or first[0] in _TYPES_BY_NAME
    )


def sslib_key(key: SSHPublicKey) -> SSlibKey:
    """The securesystemslib key of an SSH key.

    The key id is securesystemslib's default (``compute_default_keyid``, which it does not
    export): sha256 of the canonical JSON of keytype, scheme and keyval.
    """
    keyval = {"public": key.line}
    canonical = encode_canonical({"keytype": key.keytype, "scheme": SCHEME, "keyval": keyval})
    keyid = hashlib.sha256(str(canonical).encode("utf-8")).hexdigest()
    return SSlibKey(keyid, key.keytype, SCHEME, keyval)


def key_from_line(line: str) -> SSlibKey:
    """``sslib_key(parse_line(line))``; the comment is dropped. Raises SSHSignatureError."""
    return sslib_key(parse_line(line))


def key_from_blob(blob: bytes) -> SSlibKey:
    """``sslib_key(parse_blob(blob))``. Raises SSHSignatureError."""
    return sslib_key(parse_blob(blob))


def parse_key(key: SSlibKey) -> SSHPublicKey:
    """The SSH key an ``sshsig`` SSlibKey holds. Raises SSHSignatureError."""
    parsed = parse_line(key.keyval["public"])
    if parsed.keytype != key.keytype:
        raise SSHSignatureError(f"a {parsed.keytype} key labelled {key.keytype}")
    return parsed


# --------------------------------------------------------------------------- SSHSIG


def signed_data(message: bytes, hash_name: str = SIGN_HASH) -> bytes:
    """What the SSH key signs for ``message`` (PROTOCOL.sshsig), in :data:`SSH_NAMESPACE`."""
    digest = HASHES[hash_name](message).digest()
    return (
        MAGIC
        + _string(SSH_NAMESPACE.encode("ascii"))
        + _string(b"")
        + _string(hash_name.encode("ascii"))
        + _string(digest)
    )


def sshsig(public_blob: bytes, signature: bytes, hash_name: str = SIGN_HASH) -> bytes:
    """The SSHSIG blob (``ssh-keygen -Y sign`` without armour) of an SSH ``signature``."""
    return (
        MAGIC
        + struct.pack(">I", VERSION)
        + _string(public_blob)
        + _string(SSH_NAMESPACE.encode("ascii"))
        + _string(b"")
        + _string(hash_name.encode("ascii"))
        + _string(signature)
    )


def armor(blob: bytes) -> str:
    """The blob armoured as ``ssh-keygen -Y sign`` writes it (``.sig`` file)."""
    encoded = base64.b64encode(blob).decode("ascii")
    lines = [encoded[i : i + 70] for i in range(0, len(encoded), 70)]
    return "\n".join(["-----BEGIN SSH SIGNATURE-----", *lines, "-----END SSH SIGNATURE-----", ""])


def dearmor(text: str) -> bytes:
    """The blob of an armoured SSH signature. Raises SSHSignatureError."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if (
        len(lines) < 2
        or lines[0] != "-----BEGIN SSH SIGNATURE-----"
        or (lines[-1] != "-----END SSH SIGNATURE-----")
    ):
        raise SSHSignatureError("not an armoured SSH signature")
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise SSHSignatureError("the SSH signature is not valid base64") from None


def verify_sshsig(key: SSHPublicKey, blob: bytes, message: bytes) -> None:
    """Raise unless ``blob`` is an SSHSIG by exactly ``key`` over ``message``."""
    reader = _Reader(blob, "the SSH signature")
    if reader.take(len(MAGIC)) != MAGIC:
        raise SSHSignatureError("not an SSH signature (no SSHSIG preamble)")
    version = reader.uint32()
    if version != VERSION:
        raise SSHSignatureError(f"SSH signature version {version} (only {VERSION} is known)")
    embedded = reader.string()
    namespace = reader.string()
    reserved = reader.string()
    hash_name = reader.text()
    signature = reader.string()
    reader.end()
    if embedded != key.blob:
        raise SSHSignatureError("the SSH signature was made by another key than the pinned one")
    if namespace != SSH_NAMESPACE.encode("ascii"):
        shown = namespace.decode("ascii", "replace")
        raise SSHSignatureError(
            f"the SSH signature is for namespace {shown!r}, not {SSH_NAMESPACE}"
        )
    if reserved:
        raise SSHSignatureError("the SSH signature's reserved field is not empty")
    if hash_name not in HASHES:
        raise SSHSignatureError(
            f"the SSH signature hashes with {hash_name}: only sha512 or sha256 are accepted"
        )
    try:
        key.verify(signature, signed_data(message, hash_name))
    except InvalidSignature:
        raise SSHSignatureError("the SSH signature does not verify") from None


# --------------------------------------------------------------------------- key types


def _check(key: SSlibKey) -> Check:
    parsed = parse_key(key)
    if parsed.bits and parsed.bits < RSA_MIN_BITS:
        raise SSHSignatureError(_too_short(parsed.bits))

    def check(sig: bytes, data: bytes) -> None:
        verify_sshsig(parsed, sig, data)

    return check


def _too_short(bits: int) -> str:
    return f"RSA keys need at least {RSA_MIN_BITS} bits, this one has {bits}"


def _accepts(key: SSlibKey) -> str:
    try:
        parsed = parse_key(key)
    except SSHSignatureError as exc:
        return str(exc)
    if parsed.bits and parsed.bits < RSA_MIN_BITS:
        return _too_short(parsed.bits)
    return ""


def _no_generate() -> CryptoSigner:
    raise RecordError(
        "approvalgate keygen does not make SSH keys",
        advice="make one with `ssh-keygen -t ed25519-sk` (or -t ed25519), load it with "
        "`ssh-add`, put its .pub line in the Approver's publicKey and sign with "
        "`--signer ssh-agent:PATH.pub`",
    )


def _key_type(keytype: str, name: str) -> KeyType:
    return KeyType(
        name=name,
        keytype=keytype,
        scheme=SCHEME,
        generate=_no_generate,
        check=_check,
        accepts=_accepts,
        family=FAMILY,
    )


SSH_KEY_TYPES: Final = (
    _key_type(ED25519, "SSH Ed25519"),
    _key_type(SK_ED25519, "SSH Ed25519 security key"),
    _key_type(ECDSA_P256, "SSH ECDSA P-256"),
    _key_type(ECDSA_P384, "SSH ECDSA P-384"),
    _key_type(SK_ECDSA_P256, "SSH ECDSA P-256 security key"),
    _key_type(RSA, "SSH RSA"),
)
_TYPES_BY_NAME: Final = {t.keytype: t for t in SSH_KEY_TYPES}


def _type_list() -> str:
    return ", ".join(_TYPES_BY_NAME)


def type_names() -> tuple[str, ...]:
    """The accepted OpenSSH key type names."""
    return tuple(_TYPES_BY_NAME)


for _key_type_entry in SSH_KEY_TYPES:
    register_key_type(_key_type_entry)
