"""Issue 16's benchmark (bench/parents_admission.py) runs in its quick mode so it cannot rot.

Not a timing test: only the shape of what it prints is checked, never how long anything
took. Every admission in it must be allowed (the script exits non-zero otherwise), so this
also checks that a platform-made run and a step run derive from their approved parents.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

from tests.support.paths import ROOT

BENCH = ROOT / "bench"
WAYS = ("records", "records + content", "schedule run", "orchestration step")


def test_parents_admission_quick() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "parents_admission.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["setup"]["runs"] == 5 and figures["setup"]["rounds"] == 2
    ways = figures["ways"]
    assert tuple(ways) == WAYS
    for row in ways.values():
        assert row["admissions"] == 10
        assert 0 < row["p50_us"] <= row["p90_us"]
    assert ways["records"]["ratio_p50"] == 1.0
    sys.path.insert(0, str(BENCH))
    try:
        text = importlib.import_module("parents_admission").markdown(figures)
    finally:
        sys.path.remove(str(BENCH))
    assert text.startswith("## Admission of runs the platform creates")
    assert "| schedule run | 10 |" in text
