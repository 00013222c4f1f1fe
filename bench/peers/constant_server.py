"""The constant-answer webhook of the peers benchmark (arm ``constant``, bench/peers/local.py).

bench/webhook_bench.py's bare aiohttp TLS server (read the body, answer a constant
"allowed"), except that it copies the request's uid into the answer, found with a bytes
search (no JSON parsed): a real API server rejects an answer whose uid is not the
request's. Standard library and aiohttp only, so that its memory is the server's own.

    python bench/peers/constant_server.py PORT CERT KEY
"""

from __future__ import annotations

import re
import ssl
import sys

_UID = re.compile(rb'"uid":"([^"]*)"')  # the AdmissionRequest's uid is its first field


def constant_server(port: int, cert: str, key: str) -> None:
    """bench/webhook_bench.py's bare server, answering with the request's uid (the API
    server requires it): aiohttp over TLS, read the body, a constant "allowed"."""
    from aiohttp import web

    head = b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"'
    tail = b'","allowed":true}}'

    async def validate(request: web.Request) -> web.Response:
        body = await request.read()
        found = _UID.search(body)
        uid = found.group(1) if found else b""
        return web.Response(body=head + uid + tail, content_type="application/json")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    app = web.Application(client_max_size=3 * 1024 * 1024)
    app.router.add_post("/validate", validate)
    app.router.add_get("/readyz", readyz)
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=context, access_log=None, print=None)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python bench/peers/constant_server.py PORT CERT KEY")
    constant_server(int(sys.argv[1]), sys.argv[2], sys.argv[3])
