"""Issue 17's benchmark (bench/signatures.py) runs in its quick mode so it cannot rot.

Not a timing test: only the shape of what it prints is checked, never how long anything
took. Every signature in it must verify and every admission be allowed (the script exits
non-zero otherwise), so this also checks that a run approved by two approvers holding keys
of each type (SSH keys in a real ssh-agent, a security key among them) is admitted with the
verified-signature memo off.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

from tests.support.paths import ROOT

BENCH = ROOT / "bench"
TYPES = (
    "Ed25519",
    "ECDSA P-256",
    "ECDSA P-384",
    "RSA-3072 (PSS)",
    "SSH ed25519",
    "SSH sk-ed25519",
)


def test_signatures_quick() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "signatures.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["setup"] == {**figures["setup"], "signatures": 5, "runs": 5, "rounds": 2}
    assert figures["setup"]["memo"] == "off"
    verification, admission = figures["verification"], figures["admission"]
    assert tuple(verification) == TYPES  # SSH keys too: make test installs ssh-agent
    assert tuple(admission) == (
        "2 x Ed25519 (baseline)",
        *(f"2 x {name}" for name in TYPES[1:]),
    )
    for table in (verification, admission):
        for row in table.values():
            assert row["count"] == 10
            assert 0 < row["p50_us"] <= row["p90_us"]
        assert next(iter(table.values()))["ratio_p50"] == 1.0
    sys.path.insert(0, str(BENCH))
    try:
        text = importlib.import_module("signatures").markdown(figures)
    finally:
        sys.path.remove(str(BENCH))
    assert text.startswith("## Signature verification per key type (bench/signatures.py)")
    assert "| RSA-3072 (PSS) | 10 |" in text
    assert "| 2 x ECDSA P-256 | 10 |" in text
