"""Issue 15's benchmarks run in their quick modes so they cannot rot.

bench/view_admission.py (decide() CPU with a cluster view of N decisions, against none) in
process and through the real API server's watches, and bench/queue_latency.py (last approval
to run on the real API server with the real controller). Not timing tests: only the shape
of what they print is checked, never how long anything took.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.support.paths import ROOT

BENCH = ROOT / "bench"
WAYS = ("no view", "empty view", "decisions view")


@pytest.fixture(scope="module")
def bench_module() -> Iterator[Any]:
    sys.path.insert(0, str(BENCH))
    loaded: dict[str, ModuleType] = {}

    def load(name: str) -> ModuleType:
        if name not in loaded:
            loaded[name] = importlib.import_module(name)
        return loaded[name]

    try:
        yield load
    finally:
        sys.path.remove(str(BENCH))


def run_bench(script: str, *args: str, timeout: float) -> Any:
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def check_ways(ways: dict[str, Any], admissions: int) -> None:
    assert tuple(ways) == WAYS
    for figures in ways.values():
        assert figures["admissions"] == admissions
        assert figures["p50_us"] > 0
        assert figures["p50_us"] <= figures["p90_us"] <= figures["p99_us"]
    assert ways["no view"]["ratio_p50_to_no_view"] == 1.0
    assert ways["empty view"]["ratio_p50_to_empty_view"] == 1.0


def test_view_admission_quick_in_process(bench_module: Any) -> None:
    result = run_bench("view_admission.py", "--quick", timeout=300)
    assert result["setup"] == {
        "decisions": 50,
        "uses": result["setup"]["uses"],
        "requests": 5,
        "reviews": 5,
        "run_names": result["setup"]["run_names"],
        "rounds": 2,
    }
    assert result["setup"]["uses"] > 0
    assert result["setup"]["run_names"] > 5  # the other decisions name other runs
    check_ways(result["a"]["ways"], admissions=5 * 2)
    assert "b" not in result
    text = bench_module("view_admission").markdown(result)
    assert text.startswith("## Webhook CPU per admission with a cluster view")
    assert "### (a) In process" in text
    assert "| decisions view | 10 |" in text
    assert "(b) through the watch-fed view: not run (pass --apiserver)" in text


def test_view_admission_quick_through_the_api_servers_watches(bench_module: Any) -> None:
    """Level (b): the objects created on a real kube-apiserver, read by kube.view.WatchedView."""
    result = run_bench("view_admission.py", "--quick", "--apiserver", timeout=600)
    b = result["b"]
    assert b["view_objects"] == {
        "ApprovalRequest": 5,
        "ApprovalDecision": 50,
        "ApprovalUse": result["setup"]["uses"],
        # the agents platform's kinds, watched too (none created here)
        **dict.fromkeys(
            (
                "Schedule",
                "OrchestrationRun",
                "Orchestration",
                "Swarm",
                "ImplementationSpec",
                "Agent",
                "AgentProvider",
            ),
            0,
        ),
    }
    check_ways(b["ways"], admissions=5 * 2)
    text = bench_module("view_admission").markdown(result)
    assert "### (b) Through `kube.view.WatchedView` fed by a real kube-apiserver" in text


@pytest.mark.parametrize("webhook", ["--webhook", "--no-webhook"])
def test_queue_latency_quick(bench_module: Any, webhook: str) -> None:
    """The real controller creates each approved run once (through the registered webhook,
    people as themselves, or without it); the output has every column."""
    (result,) = run_bench("queue_latency.py", "--quick", webhook, timeout=600)
    assert result["webhook"] is (webhook == "--webhook")
    assert result["pending"] == 5
    assert result["sample"] == 2
    assert len(result["latency_s"]) == 2
    assert all(s > 0 for s in result["latency_s"])
    assert result["controller_cpu_s"] >= 0
    assert result["sampling_s"] > 0
    for key in ("memory_idle_kib", "memory_pending_kib", "memory_after_kib"):
        assert result[key]["VmRSS"] > 0
        assert result[key]["VmHWM"] >= result[key]["VmRSS"]
    # the N stay pending; each approved sample left Pending (Approved, then Submitted)
    assert result["phases_after"]["Pending"] == 5
    assert sum(result["phases_after"].values()) == 5 + 2
    text = bench_module("queue_latency").markdown([result])
    if result["webhook"]:
        assert "**The webhook is registered**" in text
        assert result["webhook_memory_after_kib"]["VmRSS"] > 0
    else:
        assert "**The webhook is not registered**" in text
        assert "| (not registered) |" in text
    assert "| pending requests | approvals timed | last approval to run p50 | p99 |" in text
    assert "| 5 | 2 | " in text
    assert " MiB |" in text
    assert " % of a core |" in text
