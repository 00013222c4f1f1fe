"""The serving certificate, reloaded without a restart when its files change.

How: aiohttp (asyncio) takes one ``ssl.SSLContext`` when the listener is created and wraps
every new connection with it. We give it a *dispatch* context that holds no certificate
and whose ``sni_callback`` runs during every handshake (OpenSSL calls it for every
ClientHello, with ``server_name=None`` when the client sends no SNI) and points the
connection at the current certificate's context (``sslobj.context = current``: documented
by the ``ssl`` module for exactly this use). A reload builds a complete new context with
``load_cert_chain`` and swaps one attribute; open connections keep the certificate they
negotiated, new handshakes get the new one.

We do not call ``load_cert_chain`` again on the live context: OpenSSL drops the private key
when a new certificate does not match it, so a half-rotated pair (certificate written, key
not yet) would break every handshake until the key arrives. Here a mismatched pair just
fails to load, is logged and counted, and the previous pair keeps serving until the next
poll sees the matching key. The files are hashed before and after loading so that a pair
changing while it is read is retried on the next poll instead of being recorded as loaded.

Noticing changes (stat marks, digests, the poll loop) is :mod:`runtime.filewatch`'s; the pair
is not a :class:`runtime.filewatch.WatchedFile` because it is two files that must match and
OpenSSL loads them from their paths, not from the bytes we read.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

from cryptography import x509

from approvalgate.approvals.errors import ApprovalgateError
from approvalgate.runtime import filewatch
from approvalgate.runtime.logs import fields
from approvalgate.webhook.logs import get_logger
from approvalgate.webhook.metrics import Metrics

log = get_logger("tls")


class CertificateError(ApprovalgateError):
    """The certificate or key cannot be loaded (at start-up)."""


def server_context() -> ssl.SSLContext:
    """A TLS server context with our settings and no certificate yet."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


class CertificateState:
    def __init__(self, cert_path: Path, key_path: Path, metrics: Metrics | None = None) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self.metrics = metrics
        self.context = server_context()
        self.context.sni_callback = self._select
        self.current: ssl.SSLContext | None = None
        self.serial: int | None = None
        self.not_after: float | None = None
        self.loaded_at: float | None = None
        self.loads = 0
        self.failures = 0
        self._marks: tuple[filewatch.StatMark | None, filewatch.StatMark | None] | None = None
        self._digest = ""
        self._failed_digest = ""

    @property
    def loaded(self) -> bool:
        return self.current is not None

    def _select(self, sslobj: Any, server_name: str | None, _: ssl.SSLContext) -> None:
        current = self.current
        if current is not None:
            sslobj.context = current

    def load(self) -> bool:
        """Load the pair if its files changed; True when a new pair is in force.

        Raises :class:`CertificateError` when nothing was ever loaded and the pair cannot be
        (at start-up: a server without a certificate cannot serve anything).
        """
        marks = (filewatch.stat_mark(self.cert_path), filewatch.stat_mark(self.key_path))
        if marks == self._marks:
            return False
        try:
            built = self._build()
        except (OSError, ssl.SSLError, ValueError) as exc:
            detail = _describe(exc)
            if self.current is None:
                raise CertificateError(
                    f"cannot load TLS certificate {self.cert_path} and key {self.key_path}: "
                    f"{detail}",
                    advice="pass a PEM certificate (chain) and its private key, or --dev",
                ) from None
            self._marks = marks
            self._failed(detail)
            return False
        except _Changed:
            return False  # files moving under us: try again at the next poll
        self._marks = marks
        if built is None:
            return False  # same content (a touch, a re-mount)
        self._switch(*built)
        return True

    async def watch(self, interval: float) -> None:
        """Poll forever (until cancelled); an error in one poll never stops the next."""
        await filewatch.poll(
            interval,
            self.load,
            log=log,
            message="certificate poll failed",
            context={"cert": str(self.cert_path)},
        )

    def _build(self) -> tuple[ssl.SSLContext, str, x509.Certificate] | None:
        """A context for the pair on disk; None when its content is the one in force."""
        cert_pem, key_pem = self.cert_path.read_bytes(), self.key_path.read_bytes()
        before = filewatch.digest(cert_pem, key_pem)
        if before == self._digest:
            return None
        context = server_context()
        context.load_cert_chain(self.cert_path, self.key_path, password=_no_password)
        if filewatch.digest(self.cert_path.read_bytes(), self.key_path.read_bytes()) != before:
            raise _Changed
        return context, before, x509.load_pem_x509_certificates(cert_pem)[0]

    def _failed(self, detail: str) -> None:
        try:
            digest = filewatch.digest(self.cert_path.read_bytes(), self.key_path.read_bytes())
        except OSError:
            digest = "unreadable"
        if digest == self._failed_digest:
            return
        self._failed_digest = digest
        self.failures += 1
        if self.metrics is not None:
            self.metrics.certificate_reload_failures.inc()
        log.error(
            "new TLS certificate/key cannot be loaded; keeping the previous pair",
            extra=fields(cert=str(self.cert_path), key=str(self.key_path), error=detail),
        )

    def _switch(self, context: ssl.SSLContext, digest: str, cert: x509.Certificate) -> None:
        self.current = context
        self._digest = digest
        self._failed_digest = ""
        self.serial = cert.serial_number
        self.not_after = cert.not_valid_after_utc.timestamp()
        self.loaded_at = time.time()
        self.loads += 1
        if self.metrics is not None:
            self.metrics.certificate_loaded.set(self.loaded_at)
            self.metrics.certificate_expiry.set(self.not_after)
        log.info(
            "TLS certificate loaded",
            extra=fields(
                cert=str(self.cert_path),
                serial=format(cert.serial_number, "x"),
                subject=cert.subject.rfc4514_string(),
                not_after=cert.not_valid_after_utc.isoformat(),
            ),
        )


class _Changed(Exception):
    pass


def _no_password() -> bytes:
    """Never prompt on a terminal for an encrypted key: a server has nobody to answer."""
    raise ValueError("the private key is encrypted; give the webhook an unencrypted key")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    return str(exc) or type(exc).__name__
