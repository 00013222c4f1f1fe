"""Bounded exponential backoff between retries of a failed list or watch."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """``initial``, doubling up to ``maximum`` seconds; :meth:`reset` after a success.

    Each delay is shortened by up to ``jitter`` (a fraction) at random, so many replicas that
    lost the API server at the same moment do not all come back at the same moment.
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    _next: float = field(default=0.0, init=False, repr=False)
    _random: random.Random = field(default_factory=random.Random, init=False, repr=False)

    def delay(self) -> float:
        """The next delay in seconds (and grow the one after)."""
        current = self._next or self.initial
        self._next = min(current * self.factor, self.maximum)
        # not a secret: spreading retries out needs no cryptographic randomness
        return current * (1 - self.jitter * self._random.random())

    def reset(self) -> None:
        self._next = 0.0
