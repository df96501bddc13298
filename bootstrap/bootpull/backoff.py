"""Retry with full-jitter exponential backoff, counting every retry.

Every part of the node that retries (DHCP, fetch, report) uses this one policy, so a
retry is always counted in :class:`Counters` and always said on the console.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Full jitter: the n-th wait is uniform in [0, min(cap, base * factor**n)]."""

    base: float = 1.0
    cap: float = 30.0
    factor: float = 2.0

    def ceiling(self, attempt: int) -> float:
        """The largest wait before retry number ``attempt`` (0 for the first retry)."""
        return min(self.cap, self.base * self.factor ** min(attempt, 64))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        return (rng or random).uniform(0.0, self.ceiling(attempt))


@dataclass
class Counters:
    """What the node counts and reports (docs/contract.md §7.1 event ``counters``)."""

    retries: int = 0
    restarts: int = 0
    fallbacks: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, reason: str) -> None:
        """Add one ``retries``, ``restarts`` or ``fallbacks``, remembering why."""
        if kind not in ("retries", "restarts", "fallbacks"):
            raise ValueError(f"unknown counter {kind!r}")
        setattr(self, kind, getattr(self, kind) + 1)
        key = f"{kind}:{reason}"
        self.by_reason[key] = self.by_reason.get(key, 0) + 1

    def as_event(self) -> dict[str, int]:
        return {"retries": self.retries, "restarts": self.restarts, "fallbacks": self.fallbacks}
