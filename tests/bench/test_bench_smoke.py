"""The benchmark scripts run (tiny sizes, one repetition) so they cannot rot.

Not a timing test: nothing here looks at how long anything took. The one command,
`bench/run.py --quick`, writes its report to a temporary file (never docs/benchmarks.md)
and must produce the tables.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.paths import ROOT

BENCH = ROOT / "bench"


def test_run_quick_writes_the_tables(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = output.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks")
    for heading in ("## How to read this", "## Machine", "## Compiler", "## CLI"):
        assert heading in text
    assert "| N specs | approvalgate compile (s) |" in text
    assert "| 10 |" in text
    assert "| `approvalgate --version` |" in text
    assert "growth exponent" in text
    assert "load average before" in text
    assert "bench/run.py --quick" in text  # the exact command is recorded
    # the helm baseline, when there is helm, renders the same objects as approvalgate
    assert "**NO**" not in text
    assert "(exit " not in text  # every compile of a generated repo succeeded
    # issue 15: decide() with a cluster view, in process (the queue's needs a control plane)
    assert "## Webhook CPU per admission with a cluster view" in text
    # issue 17: signature verification per key type, admission with approvals of each type
    assert "## Signature verification per key type (bench/signatures.py)" in text


def test_generated_repo_compiles_cleanly(tmp_path: Path) -> None:
    """Every generated spec is valid, and without warnings (they would distort timings)."""
    sys.path.insert(0, str(BENCH))
    try:
        import gen_repo
    finally:
        sys.path.remove(str(BENCH))
    repo, values = gen_repo.generate(40, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "approvalgate", "compile", str(repo)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    rendered = sorted((repo / "rendered" / "bench" / "networkpolicies").glob("*.yaml"))
    assert len(rendered) == 40
    helm_values = yaml.safe_load(values.read_text(encoding="utf-8"))
    assert len(helm_values["policies"]) == 40
    kinds = {
        key
        for entry in helm_values["policies"]
        for dest in entry["destinations"]
        for key in ("cidrs", "namespace", "anyOf", "podSelector", "allPorts")
        if key in dest
    }
    assert kinds == {"cidrs", "namespace", "anyOf", "podSelector", "allPorts"}


def test_apiserver_admission_quick_creates_every_run() -> None:
    """`make bench`'s API-server section on the real control plane, at 20 creates.

    `bench/run.py --quick` leaves this section out (it starts a control plane), so it is run
    here on its own: once, the namespace it used as its ungated baseline became enforced
    (every namespace is, unless excluded by name) and only the full `make bench` noticed.
    """
    result = subprocess.run(
        [sys.executable, str(BENCH / "apiserver_admission.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"count": 20.0' in result.stdout  # every gated create reached our webhook once
