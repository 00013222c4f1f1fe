"""A real HTTP server answering the bundle revision floor's ConfigMap as the API server does
(GET only), and a kubeconfig pointing at it: for tests of a floor reader whose credentials
load late (kube.floor.ConnectingFloor)."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path
from typing import Any


class FloorApiServer:
    """A real HTTP server answering the floor's ConfigMap as the API server does."""

    def __init__(self, data: dict[str, str]) -> None:
        self.data = data
        self.gets = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.gets += 1
                expected = "/api/v1/namespaces/approvalgate-system/configmaps/"
                if self.path != expected + "approvalgate-bundle-floor":
                    self.send_error(404)
                    return
                body = json.dumps(
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}, "data": outer.data}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_kubeconfig(path: Path, server: str) -> None:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
