"""Garbage-collector settings for the batch commands: compile, check, validate.

Compiling a repo allocates millions of small objects (parsed specs, rendered manifests,
their text) and almost no reference cycles. With CPython's default thresholds the cyclic
collector runs about 1,800 times for 10,000 specs, walking an ever larger heap: about a
fifth of the CPU time of the whole compile (docs/benchmarks.md). Collecting less often
changes nothing else: peak memory stayed the same in the benchmark, since reference
counting frees almost everything.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable  # not typing: it would cost `--version` 3 ms

#: gen0 collections every 100,000 allocations (default 700), gen1 every 50, gen2 every 100.
BATCH_THRESHOLDS = (100_000, 50, 100)


def fewer_collections(run: Callable[..., int]) -> Callable[..., int]:
    """Run the command with :data:`BATCH_THRESHOLDS`, then restore the previous ones."""

    @functools.wraps(run)
    def wrapper(*args: object, **kwargs: object) -> int:
        previous = gc.get_threshold()
        gc.set_threshold(*BATCH_THRESHOLDS)
        try:
            return run(*args, **kwargs)
        finally:
            gc.set_threshold(*previous)

    return wrapper
