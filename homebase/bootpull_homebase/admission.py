"""Admission control for the events API: token buckets in events and in bytes.

A request of N events takes N tokens. When the bucket holds too few, the request is
refused whole (429) with the number of seconds after which it would fit
(``Retry-After``), so a flood of reports slows down instead of piling up in memory.

Besides the one bucket of events for everyone, :class:`KeyedBuckets` keeps a bucket of
bytes per client address and per node, so one client (or one node, through any
number of addresses) cannot fill the disk while the others still fit in the event
rate; and :class:`UnknownNodes` bounds how many nodes the repository does not name
can appear at all (docs/homebase.md, "Hardening").
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Container


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


class KeyedBuckets:
    """One :class:`TokenBucket`'s arithmetic per key (a client address, a node), in bytes
    or events. At most ``max_keys`` are kept: past that, the buckets that have refilled
    (idle keys, which a fresh bucket would equal) are dropped, then the oldest."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 65536,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("the rate must be positive and the burst at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, stamp)
        self._lock = threading.Lock()

    def take(self, key: str, n: float) -> float:
        """Take ``n`` from ``key``'s bucket and return 0, or nothing and the seconds to
        wait. A request larger than the burst passes when the bucket is full."""
        with self._lock:
            now = self._clock()
            tokens, stamp = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            need = min(float(n), self.burst)
            wait = 0.0
            if tokens >= need:
                tokens -= need
            else:
                wait = (need - tokens) / self.rate
            self._buckets[key] = (tokens, now)  # re-inserted: the dict is oldest first
            if len(self._buckets) > self.max_keys:
                self._prune(now)
            return wait

    def take_all(self, amounts: dict[str, float]) -> float:
        """All of ``amounts`` (key -> n), or none: 0, or the longest wait."""
        with self._lock:
            now = self._clock()
            state = {}
            wait = 0.0
            for key, n in amounts.items():
                tokens, stamp = self._buckets.get(key, (self.burst, now))
                tokens = min(self.burst, tokens + (now - stamp) * self.rate)
                need = min(float(n), self.burst)
                if tokens < need:
                    wait = max(wait, (need - tokens) / self.rate)
                state[key] = tokens - need
            if wait > 0:
                return wait
            for key, tokens in state.items():
                self._buckets.pop(key, None)
                self._buckets[key] = (tokens, now)
            if len(self._buckets) > self.max_keys:
                self._prune(now)
            return 0.0

    def _prune(self, now: float) -> None:
        full = [key for key, (tokens, stamp) in self._buckets.items()
                if tokens + (now - stamp) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        while len(self._buckets) > self.max_keys:
            del self._buckets[next(iter(self._buckets))]


class UnknownNodes:
    """At most ``limit`` nodes that the repository does not name (no ``hosts/<mac>.toml``)
    may appear in the event store; a new one past that is refused.

    ``seen`` is every node the store holds (loaded once); ``admit`` reserves new nodes
    before they are stored, so concurrent requests cannot overshoot the limit."""

    def __init__(self, limit: int, seen: set[str],
                 named: Callable[[], Container[str]]) -> None:
        self.limit = limit
        self._seen = set(seen)
        self._named = named  # the nodes the repository names, as it says now
        self._lock = threading.Lock()

    def admit(self, nodes: set[str]) -> list[str]:
        """Reserve ``nodes``; return the new unnamed ones refused (then none is reserved)."""
        with self._lock:
            new = nodes - self._seen
            if not new:
                return []
            named = self._named()
            unnamed = sorted(n for n in new if n not in named)
            if unnamed and self.limit >= 0:
                count = sum(1 for n in self._seen if n not in named)
                if count + len(unnamed) > self.limit:
                    return unnamed
            self._seen |= new
            return []

    def reload(self, seen: set[str]) -> None:
        """The store's nodes now (some were forgotten)."""
        with self._lock:
            self._seen = set(seen)

    def count(self) -> int:
        """Nodes in the store (or reserved) that the repository does not name."""
        with self._lock:
            named = self._named()
            return sum(1 for n in self._seen if n not in named)


#: why a POST /api/v1/events was refused, by its status (a 429 over a byte budget says
#: which: ``client_bytes``, ``node_bytes``); ``/metrics`` counts each
REFUSAL_REASONS = {400: "invalid", 401: "identity", 403: "unknown_node", 408: "deadline",
                   413: "too_large", 429: "rate", 500: "internal", 503: "store_unavailable"}
