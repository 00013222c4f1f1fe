"""`make bench-peers`'s driver (bench/peers/run.py) runs, so it cannot rot (issue 18).

A smoke test of the scripts, never of speed: the quick mode (10 creates per arm and phase,
one round) on the real control plane, its section written into a copy of a benchmarks file,
and every decision right for approvalgate. The arms that need no peer binary always run;
the Kyverno and Gatekeeper arms run when `make peers` has built them, else they are skipped
with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.paths import ROOT

RUN = ROOT / "bench" / "peers" / "run.py"
START, END = "<!-- peers:start -->", "<!-- peers:end -->"
LOCAL_ARMS = ("none", "constant", "approvalgate")
PEER_ARMS = ("kyverno-presence", "kyverno-manifests", "gatekeeper-presence")


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _quick(tmp_path: Path, arms: tuple[str, ...], *extra: str) -> tuple[str, dict[str, Any]]:
    """Run the driver's quick mode writing into a copy of a benchmarks file: (the file's
    text, the --json figures)."""
    target = tmp_path / "benchmarks.md"
    target.write_text("# Benchmarks\n\n## Machine\n\nkept as it is\n", encoding="utf-8")
    figures = tmp_path / "peers.json"
    done = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--quick",
            "--arms",
            ",".join(arms),
            "--write",
            str(target),
            "--json",
            str(figures),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return target.read_text(encoding="utf-8"), json.loads(figures.read_text(encoding="utf-8"))


def test_quick_run_of_the_arms_without_peers_writes_the_section(tmp_path: Path) -> None:
    text, figures = _quick(tmp_path, LOCAL_ARMS, "--no-cli")
    assert text.startswith("# Benchmarks\n\n## Machine\n\nkept as it is\n")  # the rest kept
    assert text.count(START) == 1
    assert text.count(END) == 1
    section = text[text.index(START) :]
    for heading in (
        "## Peers",
        "### What each arm checks",
        "### Admission latency",
        "### Wrong decisions",
        "### CPU and memory of each webhook",
        "### One webhook per namespace",
        "### Targets (issue 18)",
    ):
        assert heading in section
    assert "bench/peers/run.py --quick" in section  # the exact command is recorded
    assert "load average before" in section
    for arm in LOCAL_ARMS:
        for phase in ("sequential", "concurrent"):
            cell = figures["cells"][f"{arm}/{phase}"]
            assert cell["creates"] == 10
            # every webhook judged its creates, and only those (checked by the driver too)
            assert cell["count"] == (0 if arm == "none" else 10)
    # correctness, not speed: approvalgate admitted every valid run, denied the invalid one
    for phase in ("sequential", "concurrent"):
        cell = figures["cells"][f"approvalgate/{phase}"]
        assert cell["wrong"] == 0, cell["messages"]
        assert cell["admitted"] == 9
    for arm in ("none", "constant"):  # the baselines judge nothing: all admitted
        assert figures["cells"][f"{arm}/concurrent"]["admitted"] == 10
    assert figures["chunks_checked"] == 9  # 2 phases x 3 arms, and each arm's warm-up
    met = {t["what"]: t["met"] for t in figures["targets"]}
    assert met["0 wrong decisions under concurrency for approvalgate"] is True

    # run again: the section is replaced between the markers, not appended
    again, _ = _quick(tmp_path, ("none",), "--no-cli")
    assert again.count(START) == 1
    assert "| no webhook (the API server alone) | sequential | 10 |" in again
    assert "constant answer" not in again


def test_quick_run_with_the_peers(tmp_path: Path) -> None:
    """Every arm and the CLI part, when `make peers` built Kyverno and Gatekeeper."""
    testbin = _load(ROOT / "tools" / "testbin.py", "peers_smoke_testbin")
    missing = [name for name, tool in testbin.PEERS.items() if not testbin.is_built(tool)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not built: run `make peers`")
    text, figures = _quick(tmp_path, LOCAL_ARMS + PEER_ARMS)
    section = text[text.index(START) :]
    assert "### CLI" in section
    for arm in PEER_ARMS:
        assert figures["cells"][f"{arm}/sequential"]["count"] == 10
    assert figures["cells"]["approvalgate/concurrent"]["wrong"] == 0


def test_a_missing_peer_module_is_a_clear_error(tmp_path: Path) -> None:
    """An arm whose module is not there stops the driver before anything starts."""
    run = _load(RUN, "peers_smoke_run")
    original = dict(run.ARMS)
    run.ARMS["kyverno-presence"] = ("bench.peers.not_there", "Nothing", None)
    try:
        with pytest.raises(run.BenchError, match="peer arm module missing"):
            run.load_arm("kyverno-presence")
    finally:
        run.ARMS.clear()
        run.ARMS.update(original)


def test_the_section_is_rewritten_between_the_markers_only(tmp_path: Path) -> None:
    run = _load(RUN, "peers_smoke_run")
    target = tmp_path / "benchmarks.md"
    run.write_section(target, f"{START}\none\n{END}\n")  # no file: the section alone
    assert target.read_text() == f"{START}\none\n{END}\n"
    target.write_text(f"# Benchmarks\n\nbefore\n\n{START}\nold\n{END}\n\nafter\n")
    run.write_section(target, f"{START}\nnew\n{END}\n")
    assert target.read_text() == f"# Benchmarks\n\nbefore\n\n{START}\nnew\n{END}\n\nafter\n"
    target.write_text("# Benchmarks\n\nno markers\n")  # appended when absent
    run.write_section(target, f"{START}\nnew\n{END}\n")
    assert target.read_text() == f"# Benchmarks\n\nno markers\n\n{START}\nnew\n{END}\n"


def test_make_bench_keeps_the_peers_section(tmp_path: Path) -> None:
    """bench/run.py rewrites docs/benchmarks.md whole, except the Peers section."""
    bench_run = _load(ROOT / "bench" / "run.py", "peers_smoke_bench_run")
    target = tmp_path / "benchmarks.md"
    assert bench_run.peers_section(target) == ""
    target.write_text(f"# Benchmarks\n\nold figures\n\n{START}\n## Peers\n\nkept\n{END}\n")
    assert bench_run.peers_section(target) == f"{START}\n## Peers\n\nkept\n{END}"


def test_the_cli_target_is_found_in_the_cli_result() -> None:
    run = _load(RUN, "peers_smoke_run")
    verify = {"median_s": 2.0}
    result = {"figures": {"1000": {"approvalgate-verify": verify}}}
    assert run.cli_figures(result) is None  # kyverno apply not measured
    result["figures"]["1000"]["kyverno-apply"] = {"median_s": 5.0}
    assert run.cli_figures(result) == (2.0, 5.0, "bench/peers/cli.py's target()")
    assert run.cli_figures(None) is None


def test_a_wrong_answer_stays_in_its_table_cell() -> None:
    """Peers' denial messages span lines and hold pipes: one cell, one line, bounded."""
    run = _load(RUN, "peers_smoke_run")
    text = run._cell_text("resource AgentRun/x was blocked:\n\n  policy: 'a | b'\n" + "y" * 900)
    assert "\n" not in text and "\\|" in text and len(text) <= 401
    assert text.startswith("resource AgentRun/x was blocked: policy: 'a \\| b'")
