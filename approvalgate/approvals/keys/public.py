"""Approvers' public keys: read from PEM or an OpenSSH line into securesystemslib ``Key``
objects, and back.

:func:`load_public_key` is the only reader of an Approver document's ``publicKey`` (the
compiler) and of a bundle's (the webhook, ``verify``, ``explain``, the audit); it accepts
the types of :mod:`approvals.keys.types`: PEM SubjectPublicKeyInfo, or an OpenSSH public
key line (``ssh-ed25519 AAAA... comment``, the comment ignored) for the SSH types of
:mod:`approvals.keys.ssh`.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from securesystemslib.signer import SSlibKey

from approvalgate.approvals.keys import ssh
from approvalgate.approvals.keys.types import accepted_names, key_type_of, key_types, refusal


def load_public_key(text: str) -> SSlibKey:
    """Parse a public key: PEM (SubjectPublicKeyInfo) or an OpenSSH line. Raises ValueError.

    A PEM key gets securesystemslib's default scheme and key id for its type; an SSH key
    the keytype of its OpenSSH name, scheme ``sshsig`` and the default key id.
    """
    if not text.lstrip().startswith("-----BEGIN") and ssh.is_ssh_line(text):
        key: SSlibKey | None = ssh.key_from_line(text)
    else:
        _one_pem_block(text)
        public = serialization.load_pem_public_key(text.encode("ascii"))
        try:
            key = SSlibKey.from_crypto(public)
        except ValueError:
            key = None
    if key is None or key_type_of(key) is None:
        raise ValueError(f"not an {accepted_names()} public key")
    if why := refusal(key):
        raise ValueError(why)
    return key


def _one_pem_block(text: str) -> None:
    """Refuse PEM text that is not exactly one block: cryptography reads the first block
    and ignores whatever surrounds it, so two keys, or a key and text, would be one key to
    the gate and something else to whoever reviews the Approver (fifth red-team pass)."""
    stripped = text.strip()
    lines = stripped.splitlines()
    blocks = stripped.count("-----BEGIN ")
    framed = (
        bool(lines) and lines[0].startswith("-----BEGIN ") and lines[-1].startswith("-----END ")
    )
    if blocks == 0 or (blocks == 1 and stripped.count("-----END ") == 1 and framed):
        return  # no PEM at all: cryptography says what it is not
    found = f"{blocks} block{'s' if blocks != 1 else ''}" + ("" if framed else " and other text")
    raise ValueError(
        f"one PEM public key block is expected, and nothing before or after it (found "
        f"{found}): one key per publicKey (an Approver lists each key as its own keys entry)"
    )


def public_key_pem(key: SSlibKey) -> str:
    """The key as PEM SubjectPublicKeyInfo (the form a bundle carries); an SSH key as its
    OpenSSH line (``<type> <base64>``, no comment)."""
    if key.scheme == ssh.SCHEME:
        line: str = key.keyval["public"]
        return line
    # securesystemslib keeps Ed25519 keys as raw hex and every other type as PEM; it has
    # no public API for the conversion (``SSlibKey._crypto_key`` is private).
    public: PublicKeyTypes
    if key.keytype == "ed25519":
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key.keyval["public"]))
    else:
        public = serialization.load_pem_public_key(key.keyval["public"].encode("ascii"))
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


public_key_text = public_key_pem


def key_material(text: str) -> bytes:
    """The public key ``text`` holds (PEM or OpenSSH line), whatever its form: DER
    SubjectPublicKeyInfo of the key (an OpenSSH line as :mod:`keys.ssh` reads it, a
    security key's too, its application aside), else the text of a line nothing reads. A
    key's id covers its form (an OpenSSH line of an Ed25519 key has another id than its
    PEM), so "one key, one approver" compares this instead: one private key signs for
    either form."""
    stripped = text.strip()
    if not stripped.startswith("-----BEGIN") and ssh.is_ssh_line(stripped):
        # the gate's own reading of the line, not the installed cryptography's (which reads
        # security keys only from 43.0: an sk- line was compared as text before)
        try:
            return ssh.parse_line(stripped).spki
        except ssh.SSHSignatureError:
            pass
    try:
        if not stripped.startswith("-----BEGIN") and ssh.is_ssh_line(stripped):
            public: PublicKeyTypes = serialization.load_ssh_public_key(stripped.encode("ascii"))
        else:
            public = serialization.load_pem_public_key(stripped.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm):
        fields = stripped.split()
        return " ".join(fields[:2]).encode()
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


"""The name-neutral alias: PEM, or the OpenSSH line for an SSH key."""


def key_identity(key: SSlibKey) -> bytes:
    """:func:`key_material` of a loaded key: the same bytes for one private key whatever
    its form (PEM, OpenSSH line), where its key id differs. Count keys by this, never by
    key id: whoever holds the key signs for each form (a raw signature for the PEM, an
    SSHSIG for the line), so pinning both must not make one holder two signers."""
    return key_material(public_key_text(key))


def distinct_keys(keys: Iterable[SSlibKey]) -> int:
    """How many different private keys ``keys`` are (:func:`key_identity`)."""
    return len({key_identity(k) for k in keys})


def accepted_forms() -> str:
    """What ``publicKey`` may be, for messages: the PEM types and the OpenSSH types."""
    pem = [t.name for t in key_types() if t.scheme != ssh.SCHEME]
    openssh = [t.keytype for t in key_types() if t.scheme == ssh.SCHEME]
    forms = []
    if pem:
        forms.append(f"a PEM public key ({', '.join(dict.fromkeys(pem))})")
    if openssh:
        forms.append(f"an OpenSSH public key line ({', '.join(openssh)})")
    return " or ".join(forms)
