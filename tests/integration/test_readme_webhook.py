"""The README's two webhook lines, run as written: `webhook serve --dev` and curl."""

from __future__ import annotations

import json
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.paths import ROOT


def readme_commands() -> tuple[list[str], list[str]]:
    text = (ROOT / "README.md").read_text()
    serve = re.search(r"^approvalgate webhook serve .*--dev.*$", text, re.M)
    curl = re.search(r"^curl .*/validate$", text, re.M)
    assert serve and curl, "the README lost its webhook quick start"
    return shlex.split(serve.group(0)), shlex.split(curl.group(0))


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_readme_dev_server_and_curl_line_get_a_denial(tmp_path: Path) -> None:
    serve, curl = readme_commands()
    ca = Path(serve[serve.index("--dev-ca-out") + 1])
    port = int(re.search(r":(\d+)/validate", curl[-1]).group(1))  # type: ignore[union-attr]
    assert _port_free(port), f"port {port} is busy on this machine"
    ca.unlink(missing_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "approvalgate", *serve[1:], "--metrics-port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not ca.exists() or _port_free(port):
            assert server.poll() is None, server.communicate()[1].decode()
            assert time.monotonic() < deadline, "the --dev server did not come up"
            time.sleep(0.1)
        done = subprocess.run(curl, cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        response = json.loads(done.stdout)["response"]
        assert response["allowed"] is False
        assert response["status"]["code"] == 403
        assert response["status"]["message"].startswith(
            "approvalgate denied creating AgentRun agents/codex-onboarding:"
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    assert server.returncode == 0
