"""When the running node does its periodic work next: pure functions over clock readings.

The supervise loop polls the repository and sends heartbeats on their own intervals;
a failing poll backs off (jittered, by the caller's :class:`~bootpull.backoff.Backoff`)
and a good one goes back to the interval. :class:`Schedule` holds only the due times
and the count of polls failed in a row, and each transition returns a new value, so
the timing rules can be tested without a clock or a sleep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

MIN_POLL_WAIT = 0.1  # a poll never follows another sooner than this
MAX_SLEEP = 1.0  # the loop wakes at least this often (signals, the role's exits)
MIN_SLEEP = 0.01


@dataclass(frozen=True)
class Schedule:
    poll_at: float  # monotonic time the next poll is due
    heartbeat_at: float  # monotonic time the next heartbeat is due
    poll_failures: int = 0  # polls failed in a row

    @classmethod
    def start(cls, now: float, *, poll_interval: float, heartbeat_interval: float
              ) -> Schedule:
        return cls(poll_at=now + poll_interval, heartbeat_at=now + heartbeat_interval)

    def poll_due(self, now: float) -> bool:
        return now >= self.poll_at

    def heartbeat_due(self, now: float) -> bool:
        return now >= self.heartbeat_at

    def polled(self, now: float, *, failed: bool, poll_interval: float,
               backoff: Callable[[int], float]) -> Schedule:
        """After a poll: back off by ``backoff(failures in a row)``, or the interval."""
        failures = self.poll_failures + 1 if failed else 0
        wait = backoff(failures) if failed else poll_interval
        return replace(self, poll_at=now + max(MIN_POLL_WAIT, wait), poll_failures=failures)

    def heartbeat_sent(self, now: float, *, heartbeat_interval: float) -> Schedule:
        return replace(self, heartbeat_at=now + heartbeat_interval)

    def sleep_for(self, now: float, *other_waits: float) -> float:
        """Seconds to sleep: until the first thing due (``other_waits`` are seconds from
        ``now``, e.g. the supervisor's next check), at most :data:`MAX_SLEEP`."""
        waits = [self.poll_at - now, self.heartbeat_at - now, MAX_SLEEP, *other_waits]
        return max(MIN_SLEEP, min(waits))
