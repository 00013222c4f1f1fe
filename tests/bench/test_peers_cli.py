"""bench/peers/cli.py runs (quick mode: N = 1 and 10, one repeat) and every tool judges right.

A smoke test of the script, never of speed: nothing here looks at how long anything took.
`approvalgate verify` always runs; the peers (kyverno, gator) only when their binaries are
built (`make peers`), else the test that needs them is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.peers import cli
from tests.support.paths import ROOT

PEERS = ("kyverno-apply", "kyverno-test", "gator-verify", "gator-test")


def _check_figures(result: dict[str, Any], keys: tuple[str, ...]) -> None:
    assert [t["key"] for t in result["tools"]] == list(keys)
    assert set(result["negative"]) == set(keys)  # each tool reported the run without approvals
    assert list(result["figures"]) == ["1", "10"]
    for figures in result["figures"].values():
        assert list(figures) == list(keys)
        for entry in figures.values():
            assert entry["repeats"] == 1
            assert len(entry["walls_s"]) == 1
            assert entry["min_s"] <= entry["median_s"] <= entry["max_s"]
            assert entry["peak_rss_mb"] > 0
            assert entry["cpu_median_s"] >= 0
        assert figures[cli.BASELINE]["ratio"] == 1.0


def test_quick_verify_admits_every_run_and_denies_the_unapproved_one() -> None:
    """approvalgate verify alone: its runs admitted at each N (checked inside run(), which
    raises on a wrong verdict), and the negative check denied."""
    result = cli.run(quick=True, only=[cli.BASELINE], log=print)
    _check_figures(result, (cli.BASELINE,))
    assert result["skipped"] == {}
    assert result["verify_vs_kyverno_apply_1000"] is None  # no N = 1000 in quick mode
    text = cli.markdown(result)
    assert "| `approvalgate verify` |" in text
    assert "N = 10 (1 repeats)" in text
    assert "Negative check" in text


def test_a_wrong_verdict_is_an_error_not_a_figure(tmp_path: Path) -> None:
    """A judge that sees fewer runs admitted than were given refuses the run."""
    policy = cli.prepare_policy(tmp_path / "policy")
    runs = cli.agent_runs(policy.signers, 2, missing=[0])
    tool = next(t for t in cli.tools() if t.key == cli.BASELINE)
    invocation = tool.prepare(tmp_path, runs, policy)
    with pytest.raises(cli.BenchError, match="expected 2 passed, got 1 ADMITTED, 1 DENIED"):
        cli.checked(tool, invocation, tmp_path / "run", 2, 0)


def test_quick_with_the_peers_judges_alike() -> None:
    missing = [t.missing() for t in cli.tools() if t.key in PEERS]
    reasons = [m for m in missing if m is not None]
    if reasons:
        pytest.skip(f"peer binaries not built: run `make peers` ({'; '.join(reasons)})")
    result = cli.run(quick=True, log=print)
    _check_figures(result, (cli.BASELINE, *PEERS))
    text = cli.markdown(result)
    for title in ("`kyverno apply`", "`kyverno test`", "`gator verify`", "`gator test`"):
        assert title in text


def test_main_prints_json_and_skips_missing_peers_with_a_reason(tmp_path: Path) -> None:
    """The command itself, with the peers' cache pointed at an empty folder: they are skipped
    with the reason printed, approvalgate verify still measured."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "peers" / "cli.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "APPROVALGATE_TESTBIN": str(tmp_path / "empty")},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert set(result["skipped"]) == set(PEERS)
    assert "not built: run `make peers`" in done.stderr
    _check_figures(result, (cli.BASELINE,))


@pytest.mark.parametrize(
    ("key", "said"), [("kyverno-apply", "pass: 0"), ("gator-test", "0 objects")]
)
def test_a_peer_that_matches_nothing_is_an_error_not_a_figure(
    tmp_path: Path, key: str, said: str
) -> None:
    """Runs in a namespace the peer's policy does not match: it evaluates nothing and exits 0,
    which the judge refuses (N resources must be evaluated)."""
    tool = next(t for t in cli.tools() if t.key == key)
    reason = tool.missing()
    if reason is not None:
        pytest.skip(f"{key}: {reason}")
    policy = cli.prepare_policy(tmp_path / "policy")
    runs = cli.agent_runs(policy.signers, 2)
    invocation = tool.prepare(tmp_path, runs, policy)
    manifest = tmp_path / ("runs.yaml" if key == "kyverno-apply" else "gator-runs.yaml")
    manifest.write_text(cli.multi_document(runs))  # left in "agents": no policy of theirs there
    with pytest.raises(cli.BenchError, match=f"expected 2 passed, got {said}"):
        cli.checked(tool, invocation, tmp_path / "run", 2, 0)


def test_target_reads_the_medians_at_1000_from_the_result() -> None:
    """What bench/peers/run.py reads for the issue's CLI target."""
    entry = {"median_s": 2.0, "cpu_median_s": 1.0}
    figures = {"1000": {cli.BASELINE: entry, "kyverno-apply": {**entry, "median_s": 4.0}}}
    assert cli.target({"figures": figures}) == (2.0, 4.0)
    assert cli.target({"figures": {"10": figures["1000"]}}) is None
