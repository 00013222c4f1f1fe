"""The aiohttp application: ``POST /validate``, ``GET /healthz``, ``GET /readyz``.

A thin HTTP layer around :func:`approvals.decide.decide` (no HTTP inside the decision):

- the body is read with a size limit (default 3 MiB: an UPDATE carries object and
  oldObject) and a read timeout, then parsed strictly (:mod:`webhook.review`); a body that
  is not an AdmissionReview gets HTTP 400 (413 too large, 408 too slow), never an allow;
- a readable review is always answered 200 with a review: decide()'s verdict, or, when
  anything inside the webhook fails, a denial with a generic message and the detail in the
  log (fail closed, never a 500 that a ``failurePolicy: Ignore`` would turn into an allow);
- one JSON log line per admission with the object reference and the verdict: at info for
  denials, warnings and other noteworthy allows, at debug for ordinary allows (every
  decision is also in ``auditAnnotations`` and the metrics; see docs/design.md,
  "Admission hot path").

``/healthz`` says the process is alive; ``/readyz`` says a bundle and a certificate are
loaded, the cluster view is synced when the bundle requires it (:mod:`webhook.view`), and we
are not draining. decide() reads the view in memory: no admission calls the API server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from aiohttp import web

from approvalgate.approvals import records
from approvalgate.approvals.bundle import Bundle
from approvalgate.approvals.decide import GENERIC_ERROR, Decision, decide
from approvalgate.runtime.drain import InFlight
from approvalgate.runtime.logs import fields
from approvalgate.webhook.logs import get_logger
from approvalgate.webhook.metrics import Metrics
from approvalgate.webhook.review import (
    MalformedReview,
    Review,
    build_response,
    internal_error_response,
    parse_review,
)
from approvalgate.webhook.state import BundleState
from approvalgate.webhook.strictjson import DEFAULT_MAX_DEPTH
from approvalgate.webhook.tls import CertificateState
from approvalgate.webhook.view import ViewState

DEFAULT_MAX_BODY_BYTES: Final = 3 * 1024 * 1024
DEFAULT_READ_TIMEOUT: Final = 10.0
_CHUNK: Final = 256 * 1024
_HTTP_STATUS: Final = {"too-large": 413, "read-timeout": 408}
INTERNAL_ERROR: Final = Decision(
    False,
    403,
    "internal-error",
    GENERIC_ERROR,
    audit_annotations={"decision": "deny", "reason": "internal-error"},
)

log = get_logger("admission")


class Admission:
    """The request handlers and what they share (state, limits, metrics, clock)."""

    def __init__(
        self,
        state: BundleState,
        certificate: CertificateState | None,
        metrics: Metrics,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_depth: int = DEFAULT_MAX_DEPTH,
        clock: Callable[[], datetime] = records.now_utc,
        views: ViewState | None = None,
    ) -> None:
        self.state = state
        self.views = views
        self.certificate = certificate
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.read_timeout = read_timeout
        self.max_depth = max_depth
        self.clock = clock
        # admission requests being read or answered; ``draining`` once the server stops
        self.in_flight = InFlight()
        # told when a request begins and when it is answered (the listener's Listener.touch)
        self.touch: Callable[[asyncio.Transport | None], None] | None = None

    async def validate(self, request: web.Request) -> web.Response:
        start = time.perf_counter()
        if self.touch is not None:
            self.touch(request.transport)
        self.in_flight.begin()
        self.metrics.in_flight.inc()
        try:
            try:
                review = parse_review(await self._read_body(request), max_depth=self.max_depth)
            except MalformedReview as exc:
                response = self._malformed(request, exc)
            else:
                response = self._answer(review, start)
        finally:
            self.metrics.in_flight.dec()
            self.in_flight.end()
        if self.in_flight.draining:
            response.force_close()  # tell keep-alive clients to go elsewhere
        if self.touch is not None:
            self.touch(request.transport)
        return response

    async def drain(self, timeout: float) -> bool:
        """Wait until no admission request is being read or answered; False on timeout.

        Called after the listener is closed and before aiohttp closes the connections: aiohttp's
        own shutdown stops reading from every connection at once, which would strand a request
        whose body is still arriving.
        """
        return await self.in_flight.drain(timeout)

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, _: web.Request) -> web.Response:
        problems = []
        bundle = self.state.bundle
        if bundle is None:
            refused = self.state.refusal
            problems.append(
                f"no bundle loaded from {self.state.path}"
                + (f" (refused: {refused})" if refused else "")
            )
        elif not any(approver.keys for approver in bundle.approvers.values()):
            # security.md 15: an empty keyring can approve nothing; fail closed and say so
            problems.append("the bundle holds no approver keys")
        if self.views is not None and (why := self.views.readiness(bundle)):
            problems.append(why)
        if self.certificate is not None and not self.certificate.loaded:
            problems.append("no TLS certificate loaded")
        if self.in_flight.draining:
            problems.append("shutting down")
        if problems:
            return web.Response(status=503, text="not ready: " + "; ".join(problems) + "\n")
        return web.Response(text=f"ready: bundle {self.state.generation}\n")

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise MalformedReview(
                "too-large", f"body of {request.content_length} bytes exceeds {limit} bytes"
            )
        content = request.content
        if content.is_eof():  # the whole body came with the headers: no wait, no timer
            try:
                data = content.read_nowait(-1)
            except Exception as exc:
                raise MalformedReview(
                    "incomplete-body", f"body could not be read: {type(exc).__name__}: {exc}"
                ) from None
            if len(data) > limit:
                raise MalformedReview("too-large", f"body exceeds {limit} bytes")
            return data
        body = bytearray()
        try:
            async with asyncio.timeout(self.read_timeout):
                while chunk := await content.read(_CHUNK):
                    body += chunk
                    if len(body) > limit:
                        raise MalformedReview("too-large", f"body exceeds {limit} bytes")
        except TimeoutError:
            raise MalformedReview(
                "read-timeout", f"body not received within {self.read_timeout:g} s"
            ) from None
        except MalformedReview:
            raise
        except Exception as exc:  # client gone, broken chunking...: there is no review to answer
            raise MalformedReview(
                "incomplete-body", f"body could not be read: {type(exc).__name__}: {exc}"
            ) from None
        return bytes(body)

    def _malformed(self, request: web.Request, exc: MalformedReview) -> web.Response:
        self.metrics.malformed.labels(exc.kind).inc()
        log.warning(
            "malformed request",
            extra=fields(kind=exc.kind, error=exc.message, peer=request.remote),
        )
        status = _HTTP_STATUS.get(exc.kind, 400)
        response = web.Response(status=status, text=f"malformed AdmissionReview: {exc.message}\n")
        if status != 400:
            response.force_close()  # do not read (or wait for) the rest of that body
        return response

    def _answer(self, review: Review, start: float) -> web.Response:
        bundle = self.state.bundle
        try:
            view = self.views.current if self.views is not None else None
            decision = decide(review.request, bundle, self.clock(), view)
            if bundle is None and (refused := self.state.refusal):
                decision = _with_refusal(decision, refused)
            body = _encode(build_response(review.api_version, review.uid, decision))
        except Exception:
            log.exception("internal error; request denied", extra=fields(**_reference(review)))
            decision = INTERNAL_ERROR
            body = _encode(internal_error_response(review.api_version, review.uid))
        try:
            self._record(review, decision, start, bundle)
        except Exception:
            log.exception("recording an admission failed", extra=fields(uid=review.uid))
        return web.Response(body=body, content_type="application/json")

    def _record(
        self, review: Review, decision: Decision, start: float, bundle: Bundle | None
    ) -> None:
        elapsed = time.perf_counter() - start
        self.metrics.observe(decision, elapsed)
        if decision.internal_error:
            log.error(
                "decide() failed; request denied",
                extra=fields(**_reference(review), error=decision.internal_error),
            )
        level = logging.INFO if _noteworthy(decision) else logging.DEBUG
        if not log.isEnabledFor(level):
            return
        log.log(
            level,
            "admission",
            extra=fields(
                **_reference(review),
                decision="allow" if decision.allowed else "deny",
                reason=decision.reason,
                policies=list(decision.policies),
                approvers=list(decision.approvers),
                warnings=len(decision.warnings),
                generation=bundle.generation if bundle is not None else "",
                latency_ms=round(elapsed * 1000, 3),
            ),
        )


_NOTEWORTHY_AUDIT: Final = ("audit-would-deny", "trusted-submitter", "bypass-reason")


def _noteworthy(decision: Decision) -> bool:
    """Logged at info: denials, warnings (warn mode, bypass), audit-mode would-denies,
    trusted submitters and runs no policy selects. Other allows (approved, not gated,
    unchanged spec...) are logged at debug: each is still in the API server's audit log
    (``auditAnnotations``) and in ``approvalgate_admission_requests_total``."""
    if not decision.allowed or decision.warnings or decision.reason == "no-policy":
        return True
    audit = decision.audit_annotations
    return any(key in audit for key in _NOTEWORTHY_AUDIT)


def _reference(review: Review) -> dict[str, Any]:
    """The log fields naming the request and its object."""
    try:
        return _fields_of(review)
    except Exception:  # logging must never be what fails a request
        return {"uid": review.uid}


def _fields_of(review: Review) -> dict[str, Any]:
    request = review.request
    obj: dict[str, Any] = request.get("object") or request.get("oldObject") or {}
    meta: dict[str, Any] = obj["metadata"] if isinstance(obj.get("metadata"), dict) else {}
    name = request.get("name") or meta.get("name") or ""
    if not name and meta.get("generateName"):
        name = f"{meta['generateName']}*"
    return {
        "uid": review.uid,
        "namespace": request.get("namespace") or meta.get("namespace") or "",
        "name": name,
        "user": request["userInfo"].get("username", ""),
        "operation": request["operation"],
        "resource": request["resource"]["resource"],
        "subresource": request.get("subResource", ""),
        "dry_run": bool(request.get("dryRun", False)),
        "api_version": review.api_version,
    }


# one encoder for every answer: json.dumps with separators= builds a new one per call
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))


def _encode(payload: object) -> bytes:
    return _ENCODER.encode(payload).encode("ascii")


ADMISSION: Final = web.AppKey("admission", Admission)


def create_app(
    state: BundleState,
    certificate: CertificateState | None,
    metrics: Metrics,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    max_depth: int = DEFAULT_MAX_DEPTH,
    clock: Callable[[], datetime] | None = None,
    views: ViewState | None = None,
) -> web.Application:
    """The webhook app. ``clock`` is for tests only (decide() as of a fixed time); ``views``
    holds the cluster view decide() reads (None: none, as ``--cluster-view off``)."""
    admission = Admission(
        state,
        certificate,
        metrics,
        max_body_bytes=max_body_bytes,
        read_timeout=read_timeout,
        max_depth=max_depth,
        clock=clock or records.now_utc,
        views=views,
    )
    app = web.Application(client_max_size=max_body_bytes)
    app[ADMISSION] = admission
    app.router.add_post("/validate", admission.validate)
    app.router.add_get("/healthz", admission.healthz)
    app.router.add_get("/readyz", admission.readyz)
    return app


def _with_refusal(decision: Decision, refused: str) -> Decision:
    """The no-bundle denial, naming why the bundle on disk was refused (e.g. below-floor:
    an older bundle put back), so that whoever is denied learns what to ask for."""
    return dataclasses.replace(
        decision,
        message=f"{decision.message} The deployed bundle was refused ({refused}): see the"
        " webhook's log and /readyz.",
    )
