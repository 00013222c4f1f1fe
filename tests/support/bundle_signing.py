"""A bundle-signing key for the tests: sign the bundles the tests serve, pin its public key.

One Ed25519 key per test process (made in memory); :func:`sign_file` writes
``bundle.sig.json`` beside a bundle the way ``approvalgate compile --sign`` does, and
:func:`cli_args` / :func:`serve_options` pin the public key for ``webhook serve``,
``controller`` and :class:`webhook.config.ServeConfig`.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, Key, SecretsHandler, Signature, Signer, SSlibKey

from approvalgate.approvals.bundle_trust import (
    SIGNATURES_FILE,
    dump_signatures,
    sign_bundle,
    signatures_document,
)
from approvalgate.approvals.keys import ssh
from approvalgate.approvals.keys.public import public_key_pem
from approvalgate.approvals.policy import bundle_generation, dump_bundle


@functools.cache
def signer() -> CryptoSigner:
    """The tests' bundle-signing key."""
    return CryptoSigner.generate_ed25519()


def other_signer() -> CryptoSigner:
    """A key nobody pinned (a new one each call)."""
    return CryptoSigner.generate_ed25519()


def public_pem(key: CryptoSigner | None = None) -> str:
    return public_key_pem((key or signer()).public_key)


def signatures_text(content: bytes, *signers: CryptoSigner) -> str:
    return dump_signatures(sign_bundle(content, list(signers) or [signer()]))


def sign_file(bundle: Path, *signers: CryptoSigner) -> Path:
    """Write the signatures of ``bundle`` beside it (bundle.sig.json); returns that path."""
    out = bundle.parent / SIGNATURES_FILE
    out.write_text(signatures_text(bundle.read_bytes(), *signers), encoding="utf-8")
    return out


def with_revision(text: str | bytes, revision: int) -> str:
    """The bundle text with ``revision`` set, its generation recomputed as compile would."""
    obj: dict[str, Any] = json.loads(text)
    obj["revision"] = revision
    obj["generation"] = bundle_generation(obj)
    return dump_bundle(obj)


def publish(bundle: Path, text: str | bytes, revision: int) -> str:
    """Replace the served ``bundle`` by ``text`` at ``revision``, signed, without a moment
    where the files disagree (the signatures file first holds the signatures of both the
    bundle in place and the new one: each verifies over its own bytes). The new generation.
    """
    new = with_revision(text, revision).encode()
    signatures = sign_bundle(new, [signer()])["signatures"]
    if bundle.exists():
        signatures += sign_bundle(bundle.read_bytes(), [signer()])["signatures"]
    write_atomic(
        bundle.parent / SIGNATURES_FILE, dump_signatures(signatures_document(new, signatures))
    )
    write_atomic(bundle, new)
    return str(json.loads(new)["generation"])


def write_atomic(path: Path, content: bytes | str) -> None:
    data = content.encode() if isinstance(content, str) else content
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def public_key_file(folder: Path) -> Path:
    path = folder / "bundle-signing.pub"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(public_pem(), encoding="utf-8")
    return path


def cli_args(folder: Path | None = None) -> list[str]:
    """``--bundle-key`` pinning the test key: its file under ``folder``, else its text."""
    if folder is not None:
        return ["--bundle-key", str(public_key_file(folder))]
    return ["--bundle-key", public_pem()]


def serve_options() -> dict[str, Any]:
    """ServeConfig / ControllerConfig fields pinning the test key."""
    return {"bundle_keys": (public_pem(),)}


class SSHForm(Signer):
    """An Ed25519 key of :func:`other_signer` signing as its OpenSSH line: the SSHSIG
    ``ssh-keygen -Y sign -n gates.proompteng.ai`` makes (tests/unit/test_ssh_keys.py shows
    they agree), so a test can pin one key in two forms without the tools."""

    def __init__(self, key: CryptoSigner) -> None:
        private = serialization.load_pem_private_key(key.private_bytes, None)
        assert isinstance(private, Ed25519PrivateKey)
        self._private = private
        line = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        self.line = line.decode("ascii")
        self._key = ssh.parse_line(self.line)
        self._public = ssh.sslib_key(self._key)

    @property
    def public_key(self) -> SSlibKey:
        return self._public

    def sign(self, payload: bytes) -> Signature:
        raw = self._private.sign(ssh.signed_data(payload))
        field = ssh._string(ssh.ED25519.encode()) + ssh._string(raw)
        return Signature(self._public.keyid, ssh.sshsig(self._key.blob, field).hex())

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Key, secrets_handler: SecretsHandler | None = None
    ) -> SSHForm:
        raise NotImplementedError
