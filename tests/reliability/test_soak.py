"""60 seconds of mixed traffic at half of the capacity measured at the start of the test.

The real ``approvalgate webhook serve`` (a subprocess, TLS, 127.0.0.1); the traffic and the
checks are those of tests/reliability/soak.py, whose ``--minutes 10`` form is the long run
(docs/reliability.md). Promises: every answer exactly the expected one (so nothing wrongly
admitted), no transport error, the server's own request count equals the client's, the
server alive and exiting 0 on SIGTERM, and VmRSS flat: the mean of the last third of the
samples (after a warm-up of 5 s) at most 4 MiB (or 5 %) above the mean of the first third.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.reliability.soak import problems, run_soak

SOAK_SECONDS = 60


def test_soak_60_seconds_at_half_capacity(tmp_path: Path) -> None:
    result = run_soak(tmp_path, SOAK_SECONDS, capacity_seconds=5.0, fraction=0.5)
    print(json.dumps(result, indent=2))
    soak = result["soak"]
    # bounded in requests: exactly rate x duration were scheduled, no more
    assert soak["sent"] == soak["scheduled"]
    # real load, relative to this machine (no absolute rate): 60 s at half the capacity
    # measured over 5 s is about 6 times the capacity run's requests, at least as many
    assert soak["sent"] >= result["capacity"]["answered"] > 0, "the soak must carry real load"
    assert soak["wrongly_admitted"] == 0
    assert problems(result) == []
