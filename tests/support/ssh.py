"""The real OpenSSH tools for the SSH key tests: ``ssh-keygen``, ``ssh-agent``, ``ssh-add`` and
OpenSSH's software security key (``sk-dummy.so`` from Debian's ``openssh-tests``), installed
by ``make system-packages``. A missing tool fails the test (never a skip): these tests are
the proof that our SSHSIG agrees with OpenSSH's, both ways.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest

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


def sign(key: Path, data: bytes, *, namespace: str = NAMESPACE, hashalg: str = "") -> str:
    """``ssh-keygen -Y sign`` of ``data`` with the private key file ``key``: the armour."""
    options = ["-O", f"hashalg={hashalg}"] if hashalg else []
    argv = ["ssh-keygen", "-Y", "sign", "-n", namespace, "-f", str(key), *options]
    return run(argv, data=data).decode("ascii")


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
        while not socket.exists():
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
