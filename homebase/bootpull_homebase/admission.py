"""Admission control for the events API: a token bucket counted in events.

A request of N events takes N tokens. When the bucket holds too few, the request is
refused whole (429) with the number of seconds after which it would fit
(``Retry-After``), so a flood of reports slows down instead of piling up in memory.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("the rate must be positive and the burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self, n: int = 1) -> float:
        """Take ``n`` tokens and return 0, or take nothing and return the seconds to wait."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            need = min(float(n), self.burst)
            if self._tokens >= need:
                self._tokens -= need
                return 0.0
            return (need - self._tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> int:
        """``Retry-After`` is whole seconds: round up, never 0."""
        return max(1, math.ceil(wait))
