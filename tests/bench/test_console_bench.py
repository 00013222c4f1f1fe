"""Issue 19's render benchmark (bench/console_render.py) runs in its quick mode so it cannot
rot. Not a timing test: only the shape of what it prints is checked."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.paths import ROOT

PAGES = (
    "queue, all",
    "queue, needs me",
    "queue, all, with --bundle",
    "queue fragment",
    "request",
    "request, with --bundle",
)


def _run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "console_render.py"), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_console_render_quick_json() -> None:
    figures = json.loads(_run("--json"))
    assert figures["setup"]["pending"] == 50 and figures["setup"]["repeats"] == 2
    assert figures["setup"]["decisions"] == 100
    assert tuple(figures["pages"]) == PAGES
    for row in figures["pages"].values():
        assert 0 < row["median_ms"] <= row["max_ms"] and row["cpu_median_ms"] >= 0
        assert row["bytes"] > 1000


def test_console_render_quick_markdown() -> None:
    text = _run()
    assert text.startswith("Console render times: 50 pending requests, 100 decisions")
    assert "| page | median ms | max ms | CPU median ms | HTML bytes | under the bar |" in text
    for page in PAGES:
        assert f"| {page} |" in text
