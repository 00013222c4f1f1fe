"""A bounded smoke of fuzz/fuzz_admission.py: its pure-Python mutator in-process (fixed seed,
so a failure reproduces), and atheris itself (a dev
dependency in pyproject.toml). Long runs: docs/reliability.md."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from tests.integration.harness import cli_env
from tests.support.paths import ROOT

TARGET = ROOT / "fuzz" / "fuzz_admission.py"
SEED = 20261121
INPUTS = 12_000  # a count, not a time budget: the same inputs on any machine (fixed seed)
HANG_SECONDS = 600.0  # only an upper bound on a hang (2-8 s on our 2-core machine)


def _target() -> object:
    spec = importlib.util.spec_from_file_location("fuzz_admission", TARGET)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fallback_fuzzer_finds_nothing_and_reaches_every_outcome() -> None:
    target = _target()
    result = target.run_fallback(  # type: ignore[attr-defined]
        seconds=HANG_SECONDS, max_inputs=INPUTS, seed=SEED, keep_going=True
    )
    print(f"\nfuzz-fallback: {json.dumps(result)[:3000]}")
    assert result["findings"] == {}
    outcomes = result["outcomes"]
    assert result["inputs"] == INPUTS
    # the mutator gets through parsing into every part of decide(): signatures checked and
    # failed on the digest, pass-throughs, malformed bodies
    assert outcomes.get("deny missing-approvals (signature checked)", 0) > 0
    assert any(k.startswith("400 ") for k in outcomes)
    assert any(k.startswith("allow ") for k in outcomes)
    assert outcomes.get("deny no-policy", 0) > 0


def test_atheris_runs_the_target(tmp_path: Path) -> None:
    import atheris  # type: ignore[import-untyped]  # noqa: F401  (a dev dependency: absent = failure, not a skip)

    corpus = tmp_path / "corpus"
    done = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            "-runs=3000",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=180,
    )
    tail = "\n".join(line for line in done.stderr.splitlines() if "Instrumenting" not in line)
    print(f"\nfuzz-atheris: {tail[-1500:]}")
    assert done.returncode == 0, tail[-3000:]
    assert "Done 3000 runs" in done.stderr
    assert len(list(corpus.iterdir())) >= 16  # seeded, then grown
