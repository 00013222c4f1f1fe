"""A fault between a client and the real API server: a plain-HTTP proxy on 127.0.0.1 that
forwards each request over TLS to the API server, and can throw away the answer of the next
AgentRun create after the API server has stored the run (a connection lost, a timeout: the
client cannot tell whether its create happened).

One request per client connection (the proxy asks the API server for ``Connection: close``
and streams the answer back as it comes, watches included), so a client using it reconnects
for every request; nothing else changes. The fault is bounded: armed for ``n`` creates, it
passes everything once they were dropped, and the proxy lives as long as its ``with`` block.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import struct
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_CREATE = re.compile(rb"^POST /apis/agents\.proompteng\.ai/v1alpha1/namespaces/[^/]+/agentruns[? ]")


class DropCreateAnswers:
    def __init__(self, server: str, ca_file: Path) -> None:
        target = urlsplit(server)
        self.upstream = (str(target.hostname), int(target.port or 443))
        self.context = ssl.create_default_context(cafile=str(ca_file))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._armed = 0
        self.dropped: list[str] = []
        """The status line the API server gave each create whose answer was thrown away."""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)

    # --- what tests use -----------------------------------------------------------------

    def __enter__(self) -> DropCreateAnswers:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._listener.close()
        self._thread.join(5)

    def arm(self, creates: int = 1) -> None:
        with self._lock:
            self._armed = creates

    def kubeconfig(self, through: Path, path: Path) -> Path:
        """``through`` (a kubeconfig of the API server) sending its requests to the proxy."""
        config: dict[str, Any] = json.loads(through.read_text())
        for cluster in config["clusters"]:
            cluster["cluster"] = {"server": f"http://127.0.0.1:{self.port}"}
        path.write_text(json.dumps(config))
        return path

    # --- the proxy --------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(client,), daemon=True).start()

    def _one(self, client: socket.socket) -> None:
        with client:
            try:
                head, body = _read_request(client)
            except (OSError, ValueError):
                return
            if head is None:
                return
            drop = False
            if _CREATE.match(head):
                with self._lock:
                    if self._armed > 0:
                        self._armed -= 1
                        drop = True
            try:
                upstream = self.context.wrap_socket(
                    socket.create_connection(self.upstream, timeout=30),
                    server_hostname=self.upstream[0],
                )
            except OSError:
                return
            with upstream:
                upstream.settimeout(None)
                upstream.sendall(_closing(head) + body)
                if drop:
                    answer = _read_all(upstream)
                    self.dropped.append(answer.split(b"\r\n", 1)[0].decode(errors="replace"))
                    # reset, not a clean close: no answer at all reaches the client
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                try:
                    while chunk := upstream.recv(65536):
                        client.sendall(chunk)
                except OSError:
                    return


def _read_request(sock: socket.socket) -> tuple[bytes | None, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("the request body ended early")
        rest += chunk
    return head + b"\r\n\r\n", rest[:length]


def _closing(head: bytes) -> bytes:
    """The request head asking the API server to close the connection after its answer."""
    lines = [
        line
        for line in head.rstrip(b"\r\n").split(b"\r\n")
        if not line.lower().startswith((b"connection:", b"keep-alive:"))
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data
