"""Outgoing notifications: Slack-compatible JSON (``{"text": ..., "mrkdwn": false}``)
POSTed to one URL.

Reconciliation never waits for them: :meth:`Notifier.send` puts the message in a bounded
queue (a full queue drops the message, counted) and a thread posts it, with a timeout per
attempt and a bounded number of retries (backoff doubling). A 2xx answer is delivered; a
4xx other than 408/429 is not retried (the receiver refuses the message: retrying will not
help); anything else is retried. The URL is a secret (a Slack webhook URL is a token): it is
never logged, only its scheme and host.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import urlsplit

from approvalgate.runtime.logs import fields

log = logging.getLogger("approvalgate.controller.notify")

QUEUE_SIZE: Final = 1000
USER_AGENT: Final = "approvalgate-controller"


def redacted(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/…"


class Notifier:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 1.0,
        on_result: Callable[[str, str], None] = lambda kind, result: None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.on_result = on_result
        self._queue: queue.Queue[tuple[str, Mapping[str, object]] | None] = queue.Queue(QUEUE_SIZE)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._opener = urllib.request.build_opener()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notifications", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the message being sent (queued ones are dropped)."""
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def send(self, kind: str, message: Mapping[str, object]) -> bool:
        """Queue ``message`` (never blocks); False when the queue is full (dropped)."""
        try:
            self._queue.put_nowait((kind, message))
        except queue.Full:
            self.on_result(kind, "dropped")
            return False
        return True

    def _run(self) -> None:
        while not self._stopping.is_set():
            item = self._queue.get()
            if item is None:
                return
            kind, message = item
            result = self._deliver(message)
            self.on_result(kind, result)
            if result != "delivered":
                log.warning(
                    "notification not delivered",
                    extra=fields(kind=kind, result=result, url=redacted(self.url)),
                )

    def _deliver(self, message: Mapping[str, object]) -> str:
        body = json.dumps(dict(message)).encode()
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(  # noqa: S310 (the operator's URL, http or https)
                self.url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
            )
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    response.read(1024)
                return "delivered"
            except urllib.error.HTTPError as exc:
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    return "refused"
            except (urllib.error.URLError, OSError, TimeoutError):
                pass
            if attempt < self.attempts and self._stopping.wait(delay):
                return "stopped"
            delay *= 2
        return "failed"
