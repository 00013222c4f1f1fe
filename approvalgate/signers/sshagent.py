"""``ssh-agent:LOCATION``: sign approvals with a key held by the user's ssh-agent.

LOCATION names the key: the path of its ``.pub`` file (``ssh-agent:~/.ssh/id_ed25519_sk.pub``),
its fingerprint as ``ssh-add -l`` prints it (``ssh-agent:SHA256:...``), or nothing
(``ssh-agent:``) when the agent holds exactly one key. The agent is the one
``SSH_AUTH_SOCK`` names; the private key never leaves it (nor the security key behind it).

The signature is an SSHSIG blob (PROTOCOL.sshsig) over the DSSE PAE in namespace
``gates.proompteng.ai``, hash sha512 (RSA keys: ``rsa-sha2-512``), the same bytes
``ssh-keygen -Y sign -n gates.proompteng.ai`` makes, so ``ssh-keygen -Y verify`` checks
them too. The signer checks its own signature before returning it, so a signature the gate
would refuse (a security key made with ``-O no-touch-required``, an agent that signs RSA with
SHA-1) is an error here, not a denial later.

The agent protocol is paramiko's (imported only when such a signer is loaded).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from securesystemslib.signer import Signature, Signer, SSlibKey

from approvalgate.approvals import keys
from approvalgate.approvals.errors import RecordError
from approvalgate.approvals.keys import ssh

if TYPE_CHECKING:
    from paramiko.agent import AgentKey, AgentSSH
    from securesystemslib.signer import Key, SecretsHandler

SCHEME: Final = "ssh-agent"
CONNECT_TIMEOUT: Final = 10.0
"""Seconds to reach the agent and list its keys."""
SIGN_TIMEOUT: Final = 120.0
"""Seconds the agent may take to sign (a security key waits for a touch or a PIN)."""

START_AGENT: Final = 'start one and add your key: eval "$(ssh-agent)" && ssh-add ~/.ssh/id_ed25519'


class SSHAgentSigner(Signer):
    """A securesystemslib signer whose private key is in the ssh-agent at ``socket_path``.

    Each :meth:`sign` is one short session with the agent (connect, sign, hang up): nothing
    stays open between signatures.
    """

    def __init__(self, socket_path: str, public: SSlibKey) -> None:
        self._socket_path = socket_path
        self._public = public
        self._ssh_key = ssh.parse_key(public)

    @classmethod
    def from_priv_key_uri(
        cls,
        priv_key_uri: str,
        public_key: Key,
        secrets_handler: SecretsHandler | None = None,
    ) -> SSHAgentSigner:
        """``ssh-agent:LOCATION`` (securesystemslib's factory); the key must be ``public_key``."""
        scheme, _, location = priv_key_uri.partition(":")
        if scheme != SCHEME:
            raise ValueError(f"not an {SCHEME}: URI: {priv_key_uri}")
        signer = load(location, lambda path: Path(path).read_bytes())
        if signer.public_key != public_key:
            raise ValueError(f"{priv_key_uri} holds another key than the one given")
        return signer

    @property
    def public_key(self) -> SSlibKey:
        return self._public

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` of the key (as ``ssh-add -l`` shows it)."""
        return self._ssh_key.fingerprint

    def sign(self, payload: bytes) -> Signature:
        """The SSHSIG blob over ``payload`` (the DSSE PAE), made by the agent."""
        from paramiko.ssh_exception import SSHException

        data = ssh.signed_data(payload)
        algorithm = "rsa-sha2-512" if self._ssh_key.keytype == ssh.RSA else None
        with _session(self._socket_path) as (agent, conn):
            held = [k for k in agent.get_keys() if k.blob == self._ssh_key.blob]
            if not held:
                raise RecordError(
                    f"the ssh-agent no longer holds the {self._describe()}",
                    advice="add it again: ssh-add PATH-OF-THE-PRIVATE-KEY",
                )
            conn.settimeout(SIGN_TIMEOUT)
            try:
                raw = bytes(held[0].sign_ssh_data(data, algorithm))
            except (SSHException, OSError) as exc:
                raise RecordError(
                    f"the ssh-agent refused to sign with the {self._describe()}: {exc}",
                    advice="a security key waits for a touch (and asks for its PIN when it "
                    "has one): run the command again and touch the key when it blinks; a key "
                    "added with `ssh-add -c` needs the confirmation dialog answered",
                ) from None
        blob = ssh.sshsig(self._ssh_key.blob, raw)
        try:
            ssh.verify_sshsig(self._ssh_key, blob, payload)
        except ssh.SSHSignatureError as exc:
            raise RecordError(
                f"the ssh-agent's signature with the {self._describe()} would be refused: {exc}",
                advice="use a security key that requires a touch (not made with "
                "-O no-touch-required) and an OpenSSH agent that signs RSA with rsa-sha2-512",
            ) from None
        return Signature(self._public.keyid, blob.hex())

    def _describe(self) -> str:
        return f"{self._ssh_key.keytype} key {self.fingerprint}"


def load(location: str, read: keys.Read) -> SSHAgentSigner:
    """The signer for ``ssh-agent:LOCATION``; every problem is a RecordError with advice."""
    wanted_blob, wanted = _wanted(location, read)
    path = os.environ.get("SSH_AUTH_SOCK", "")
    if not path:
        raise RecordError(
            f"{SCHEME}:{location}: SSH_AUTH_SOCK is not set, so there is no ssh-agent to ask",
            advice=START_AGENT,
        )
    with _session(path) as (agent, _):
        agent_key = _choose(agent.get_keys(), wanted_blob, wanted, location)
    try:
        public = ssh.key_from_blob(agent_key.blob)
    except ssh.SSHSignatureError as exc:
        why = str(exc)
    else:
        why = keys.refusal(public)
    if why:
        raise RecordError(
            f"{SCHEME}:{location}: the agent's key {ssh.fingerprint(agent_key.blob)} cannot "
            f"approve: {why}",
            advice=f"approval keys are {keys.accepted_names()}",
        )
    return SSHAgentSigner(path, public)


def _wanted(location: str, read: keys.Read) -> tuple[bytes | None, str]:
    """The key LOCATION names: its blob (a .pub file), else a fingerprint or ""."""
    if not location or location.startswith("SHA256:"):
        return None, location
    path = os.path.expanduser(location)
    text = read(path).decode("utf-8", "replace")
    if "PRIVATE KEY-----" in text:
        raise RecordError(
            f"{SCHEME}:{location} is a private key file",
            advice=f"name its public key instead: --signer {SCHEME}:{location}.pub "
            f"(the key itself goes into the agent: ssh-add {location})",
        )
    try:
        key = ssh.parse_line(text)
    except ssh.SSHSignatureError as exc:
        raise RecordError(
            f"{path}: not an OpenSSH public key: {exc}",
            advice=f"{SCHEME}:LOCATION is a .pub file, a fingerprint (SHA256:..., as "
            "`ssh-add -l` prints it) or empty when the agent holds one key",
        ) from None
    return key.blob, key.fingerprint


@contextmanager
def _session(path: str) -> Iterator[tuple[AgentSSH, socket.socket]]:
    """A session with the agent on ``path`` (its keys listed), hung up on exit.

    The socket is ours, with a timeout: paramiko's ``Agent()`` opens one without a timeout
    and reports an unreachable agent as an agent without keys.
    """
    try:
        from paramiko.agent import AgentSSH
        from paramiko.ssh_exception import SSHException
    except ImportError as exc:
        raise RecordError(
            f"the {SCHEME}: signer needs paramiko, which is not installed: {exc}",
            advice="reinstall approvalgate (pip install approvalgate installs paramiko)",
        ) from None

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(CONNECT_TIMEOUT)
        try:
            conn.connect(path)
        except OSError as exc:
            raise RecordError(
                f"cannot reach the ssh-agent at {path} (SSH_AUTH_SOCK): {exc.strerror or exc}",
                advice="is the agent still running? " + START_AGENT,
            ) from None
        agent = AgentSSH()
        try:
            # AgentSSH._connect lists the identities over the connection it is given
            # (what paramiko's Agent does with the socket it opens itself)
            cast(Any, agent)._connect(conn)
        except (SSHException, OSError) as exc:
            raise RecordError(
                f"the ssh-agent at {path} (SSH_AUTH_SOCK) did not list its keys: {exc}",
                advice="is it an ssh-agent (OpenSSH's, or one that speaks its protocol)? "
                + START_AGENT,
            ) from None
        yield agent, conn
    finally:
        conn.close()


def _choose(
    held: tuple[AgentKey, ...], wanted_blob: bytes | None, wanted: str, location: str
) -> AgentKey:
    fingerprints = [ssh.fingerprint(k.blob) for k in held]
    if wanted_blob is not None or wanted:
        for agent_key, fingerprint in zip(held, fingerprints, strict=True):
            if agent_key.blob == wanted_blob or fingerprint == wanted:
                return agent_key
        raise RecordError(
            f"{SCHEME}:{location}: the ssh-agent does not hold the key {wanted}"
            + (f" (it holds {', '.join(fingerprints)})" if held else " (it holds no key)"),
            advice="add it: ssh-add PATH-OF-THE-PRIVATE-KEY (a security key: ssh-add -K, "
            "or the key's handle file)",
        )
    if len(held) == 1:
        return held[0]
    if not held:
        raise RecordError(
            f"{SCHEME}: the ssh-agent holds no key",
            advice="add yours: ssh-add ~/.ssh/id_ed25519 (then --signer ssh-agent:)",
        )
    raise RecordError(
        f"{SCHEME}: the ssh-agent holds {len(held)} keys: name the one to sign with",
        advice="--signer ssh-agent:PATH.pub or one of "
        + ", ".join(f"ssh-agent:{f}" for f in fingerprints),
    )


def _load_kind(location: str, read: keys.Read) -> Signer:
    return load(location, read)


KIND: Final = keys.SignerKind(
    scheme=SCHEME,
    description="a key in your ssh-agent: its .pub file, its SHA256: fingerprint, or "
    "nothing when the agent holds one key; e.g. ssh-agent:~/.ssh/id_ed25519_sk.pub",
    load=_load_kind,
)
