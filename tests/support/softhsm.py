"""A real PKCS#11 token for tests: SoftHSM2 (Debian ``softhsm2``, installed by
tools/system-packages.sh), initialised in a folder of the test's own, with ECDSA key pairs
generated ON the token (sensitive, never extractable: the private key never leaves it).

    token = SoftHSM.create(tmp_path, "approvers", monkeypatch.setenv)  # sets SOFTHSM2_CONF
    token.generate_ec(key_id=2, curve="secp256r1")
    env = token.signer_env()                               # APPROVALGATE_PKCS11_MODULE/PIN
    ref = token.ref(2)                                     # hsm:2?label=approvers

A missing SoftHSM2 fails the test (``pytest.fail``), it never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib import parse

import pkcs11
import pkcs11.util
import pkcs11.util.ec
import pytest
from pkcs11 import Attribute, KeyType

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "314159"
SO_PIN = "27182818"


def softhsm2_util() -> str:
    found = shutil.which("softhsm2-util")
    if found is None or not Path(MODULE).is_file():
        pytest.fail(
            f"SoftHSM2 is not installed (softhsm2-util, {MODULE}): run `make system-packages` "
            "(tools/system-packages.sh installs Debian's softhsm2)"
        )
    return found


@dataclass(frozen=True)
class SoftHSM:
    """One initialised SoftHSM2 token in its own token folder."""

    conf: Path
    label: str
    pin: str = PIN

    @classmethod
    def create(
        cls,
        folder: Path,
        label: str = "approvalgate-test",
        setenv: Callable[[str, str], None] = os.environ.__setitem__,
    ) -> SoftHSM:
        """Initialise a token labelled ``label`` under ``folder``; SOFTHSM2_CONF is set with
        ``setenv`` in this process (python-pkcs11 loads SoftHSM2 here): pass a
        ``pytest.MonkeyPatch``'s ``setenv`` to have it put back."""
        util = softhsm2_util()
        (folder / "tokens").mkdir(parents=True)
        conf = folder / "softhsm2.conf"
        conf.write_text(
            f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n"
            "log.level = ERROR\n"
        )
        setenv("SOFTHSM2_CONF", str(conf))
        subprocess.run(
            [util, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN],
            check=True,
            capture_output=True,
            env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        )
        # this process may have loaded SoftHSM2 with another token folder's configuration
        pkcs11.lib(MODULE).reinitialize()
        return cls(conf, label)

    def token(self) -> pkcs11.Token:
        return pkcs11.lib(MODULE).get_token(token_label=self.label)

    def generate_ec(self, key_id: int, curve: str = "secp256r1") -> None:
        """An ECDSA key pair on the token: CKA_ID ``key_id``, the private half sensitive and
        never extractable, the public half readable without logging in."""
        with self.token().open(rw=True, user_pin=self.pin) as session:
            params = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: pkcs11.util.ec.encode_named_curve_parameters(curve)},
                local=True,
            )
            params.generate_keypair(
                store=True,
                id=pkcs11.util.biginteger(key_id),
                label=f"key-{key_id}-{curve}",
                public_template={Attribute.VERIFY: True, Attribute.PRIVATE: False},
                private_template={
                    Attribute.SIGN: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.PRIVATE: True,
                },
            )

    def ref(self, key_id: int) -> str:
        """The ``--signer`` REF of key ``key_id``."""
        return f"hsm:{key_id}?{parse.urlencode({'label': self.label})}"

    def signer_env(self) -> dict[str, str]:
        """What an approver exports to sign with the token (the PIN never as a flag)."""
        return {
            "SOFTHSM2_CONF": str(self.conf),
            "APPROVALGATE_PKCS11_MODULE": MODULE,
            "APPROVALGATE_PKCS11_PIN": self.pin,
        }
