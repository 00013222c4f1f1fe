"""The real OpenSSH tools for the SSH key tests: ``ssh-keygen``, ``ssh-agent``, ``ssh-add`` and
OpenSSH's software security key (``sk-dummy.so`` from Debian's ``openssh-tests``), installed
by ``make system-packages``. A missing tool fails the test (never a skip): these tests are
the proof that our SSHSIG agrees with OpenSSH's, both ways.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest
from securesystemslib.signer import Key, SecretsHandler, Signature, Signer, SSlibKey

from approvalgate.approvals import keys
from approvalgate.approvals.keys import ssh

SK_DUMMY: Final = Path("/usr/lib/openssh/regress/misc/sk-dummy/sk-dummy.so")
NAMESPACE: Final = "gates.proompteng.ai"
TIMEOUT: Final = 60
"""Seconds any one tool run may take (RSA key generation is the slowest)."""

KEY_TYPES: Final = {
    "ssh-ed25519": ["-t", "ed25519"],
    "sk-ssh-ed25519@openssh.com": ["-t", "ed25519-sk"],
    "ecdsa-sha2-nistp256": ["-t", "ecdsa", "-b", "256"],
    "ecdsa-sha2-nistp384": ["-t", "ecdsa", "-b", "384"],
    "sk-ecdsa-sha2-nistp256@openssh.com": ["-t", "ecdsa-sk"],
    "ssh-rsa": ["-t", "rsa", "-b", "3072"],
}
"""``ssh-keygen`` arguments for each accepted OpenSSH key type."""


def require_tools() -> None:
    """Fail (not skip) when a tool is missing."""
    missing = [tool for tool in ("ssh-keygen", "ssh-agent", "ssh-add") if not shutil.which(tool)]
    if not SK_DUMMY.exists():
        missing.append(str(SK_DUMMY))
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: run `make system-packages` (Debian openssh-client "
            "and openssh-tests)"
        )


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for a tool: the software security key, no agent unless given."""
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID")}
    env["SSH_SK_PROVIDER"] = str(SK_DUMMY)
    env.update(extra)
    return env


def run(argv: list[str], *, data: bytes = b"", env: dict[str, str] | None = None) -> bytes:
    """Run a tool to completion (bounded); its stdout. Fails the test on a non-zero exit."""
    result = subprocess.run(
        argv, input=data, capture_output=True, timeout=TIMEOUT, env=env or tool_env(), check=False
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.decode()}")
    return result.stdout


def keygen(folder: Path, name: str, keytype: str, *options: str) -> Path:
    """A new key pair ``folder/name`` (and ``name.pub``) of an OpenSSH ``keytype``."""
    path = folder / name
    args = KEY_TYPES.get(keytype, ["-t", keytype])
    run(["ssh-keygen", "-q", *args, "-N", "", "-C", f"{name}@test", "-f", str(path), *options])
    return path


def sign(
    key: Path,
    data: bytes,
    *,
    namespace: str = NAMESPACE,
    hashalg: str = "",
    env: dict[str, str] | None = None,
) -> str:
    """``ssh-keygen -Y sign`` of ``data`` with the private key file ``key``: the armour."""
    options = ["-O", f"hashalg={hashalg}"] if hashalg else []
    argv = ["ssh-keygen", "-Y", "sign", "-n", namespace, "-f", str(key), *options]
    return run(argv, data=data, env=env).decode("ascii")


def pin_env(folder: Path) -> dict[str, str]:
    """:func:`tool_env` with an askpass that answers the security key's PIN prompt (a key
    made with ``-O verify-required``): without it ``ssh-keygen -Y sign`` reads the PIN from
    stdin, the data to sign. sk-dummy takes any PIN."""
    askpass = folder / "pin"
    askpass.write_text("#!/bin/sh\necho 123456\n")
    askpass.chmod(0o700)
    return tool_env(SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")


def verify(
    folder: Path, public_line: str, data: bytes, armoured: str, *, options: str = ""
) -> subprocess.CompletedProcess[bytes]:
    """``ssh-keygen -Y verify`` with an allowed_signers file holding ``public_line``."""
    allowed = folder / "allowed_signers"
    allowed.write_text(f'approver namespaces="{NAMESPACE}"{options} {public_line}\n')
    signature = folder / "data.sig"
    signature.write_text(armoured)
    argv = ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "approver"]
    argv += ["-n", NAMESPACE, "-s", str(signature)]
    return subprocess.run(
        argv, input=data, capture_output=True, timeout=TIMEOUT, env=tool_env(), check=False
    )


@dataclass
class Agent:
    """A real ``ssh-agent`` on a socket in a test folder (sk-dummy allowed as provider)."""

    socket: Path
    process: subprocess.Popen[bytes]
    added: list[Path] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return tool_env(SSH_AUTH_SOCK=str(self.socket))

    def add(self, key: Path, *options: str) -> None:
        """``ssh-add [options] key`` (a security key through sk-dummy)."""
        run(["ssh-add", "-q", *options, str(key)], env=self.env())
        self.added.append(key)


def _accepts(path: Path) -> bool:
    import socket as sockets

    with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


@contextmanager
def agent(folder: Path, **environment: str) -> Iterator[Agent]:
    """Start ``ssh-agent -D`` in ``folder`` (killed on exit); ``environment`` is the agent's."""
    require_tools()
    socket = folder / "agent.sock"
    # a key added with `ssh-add -c` is refused: the confirmation dialog always says no
    env = tool_env(SSH_ASKPASS="/bin/false", SSH_ASKPASS_REQUIRE="force", **environment)
    process = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(socket), "-P", f"{SK_DUMMY.parent}/*"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 10
        # the socket file exists from bind(); connections succeed only after listen()
        while not _accepts(socket):
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"ssh-agent did not start: {stderr}")
            time.sleep(0.02)
        yield Agent(socket, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


# --- a security key's private key file (sixth red-team pass, user verification) ------------

_PRIVATE_ARMOUR: Final = (
    "-----BEGIN OPENSSH PRIVATE KEY-----",
    "-----END OPENSSH PRIVATE KEY-----",
)
_SK_FIELDS_BEFORE_FLAGS: Final = {
    "sk-ssh-ed25519@openssh.com": 2,  # public key, application
    "sk-ecdsa-sha2-nistp256@openssh.com": 3,  # curve, point, application
}


@dataclass(frozen=True)
class SKPrivate:
    """The parts of an unencrypted security key file (PROTOCOL.key, PROTOCOL.u2f) a test
    needs: the whole binary, where its flags byte is, and the key handle."""

    binary: bytearray
    flags_at: int
    key_handle: bytes

    @property
    def flags(self) -> int:
        return self.binary[self.flags_at]


def read_sk_private(private: Path) -> SKPrivate:
    """Parse ``private`` (``ssh-keygen -t ed25519-sk|ecdsa-sk -N ""``)."""
    lines = private.read_text().strip().splitlines()
    assert (lines[0], lines[-1]) == _PRIVATE_ARMOUR, lines[0]
    binary = bytearray(base64.b64decode("".join(lines[1:-1])))
    at = len(b"openssh-key-v1\0")

    def string() -> bytes:
        nonlocal at
        (n,) = struct.unpack(">I", binary[at : at + 4])
        at += 4 + n
        return bytes(binary[at - n : at])

    assert string() == b"none", "an unencrypted key file (-N '')"
    string(), string()  # kdf name and options
    (count,) = struct.unpack(">I", binary[at : at + 4])
    at += 4
    for _ in range(count):
        string()  # public keys
    at += 4 + 8  # the private section's length, then check1 and check2
    keytype = string().decode()
    for _ in range(_SK_FIELDS_BEFORE_FLAGS[keytype]):
        string()
    flags_at = at
    at += 1
    return SKPrivate(binary, flags_at, string())


def with_flags(private: Path, copy: Path, flags: int) -> Path:
    """A copy of the security key file ``private`` whose stored flags are ``flags``: what
    whoever holds the key handle file does to sign without the PIN (the flags it asks the
    security key for are the file's, not the public key's); ``copy.pub`` too."""
    parsed = read_sk_private(private)
    parsed.binary[parsed.flags_at] = flags
    encoded = base64.b64encode(bytes(parsed.binary)).decode("ascii")
    body = [encoded[i : i + 70] for i in range(0, len(encoded), 70)]
    copy.write_text("\n".join([_PRIVATE_ARMOUR[0], *body, _PRIVATE_ARMOUR[1], ""]))
    copy.chmod(0o600)
    shutil.copyfile(private.with_suffix(".pub"), copy.with_suffix(".pub"))
    return copy


SK_USER_PRESENCE: Final = 0x01
SK_USER_VERIFICATION: Final = 0x04
"""The key file's flags (OpenSSH's SSH_SK_USER_PRESENCE_REQD, SSH_SK_USER_VERIFICATION_REQD),
which sk-dummy echoes into each signature's flags as a security key sets them."""


class KeygenSigner(Signer):
    """``ssh-keygen -Y sign`` with a security key file through sk-dummy, as a
    securesystemslib signer; ``flags``: sign with a copy of the file whose stored flags are
    these (:func:`with_flags`), as whoever holds the key handle file may."""

    def __init__(self, private: Path, flags: int | None = None) -> None:
        self.private = private
        self.flags = flags
        self._public = keys.load_public_key(private.with_suffix(".pub").read_text())

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Key, secrets_handler: SecretsHandler | None = None
    ) -> KeygenSigner:
        raise NotImplementedError

    @property
    def public_key(self) -> SSlibKey:
        return self._public

    def sign(self, payload: bytes) -> Signature:
        with tempfile.TemporaryDirectory(prefix="sk-") as folder:
            copy = Path(folder) / "key"
            flags = read_sk_private(self.private).flags if self.flags is None else self.flags
            with_flags(self.private, copy, flags)
            blob = ssh.dearmor(sign(copy, payload, env=pin_env(Path(folder))))
        return Signature(self._public.keyid, blob.hex())
