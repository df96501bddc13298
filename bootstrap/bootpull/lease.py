"""The DHCP lease life cycle (RFC 2131 §4.4.5), as pure values: no clock, no socket.

A lease is *bound* until T1, *renewing* (REQUEST unicast to the server that gave it)
until T2, *rebinding* (REQUEST broadcast to any server) until it runs out, then
*expired*: the node must stop using the address. :class:`LeaseTimes` turns a lease's
options 51, 58 and 59 into those instants; :class:`LeaseClock` adds when the next
REQUEST is due. Every transition returns a new value, so the rules are tested with
numbers, not sleeps (``tests/test_lease.py``); :mod:`bootpull.lease_keeper` does the I/O.

Rules (docs/node.md "The lease life cycle"):

- T1 is option 58, else 0.5 × the lease; T2 is option 59, else 0.875 × the lease. A
  server's T1/T2 that is not ``0 <= T1 <= T2 <= lease`` is replaced by the defaults.
- No option 51, or 0xFFFFFFFF, is an infinite lease: never renewed, never expires.
- In RENEWING and REBINDING a REQUEST that is not answered is sent again after half
  the time left until T2 (renewing) or the end of the lease (rebinding), but not
  sooner than :data:`MIN_RETRANSMIT` (RFC 2131 says 60 s; shorter leases get a tenth
  of the lease, at least 1 s) and never past the next phase's start.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

BOUND, RENEWING, REBINDING, EXPIRED = "bound", "renewing", "rebinding", "expired"
INFINITE = 0xFFFFFFFF
MIN_RETRANSMIT = 60.0
T1_SHARE, T2_SHARE = 0.5, 0.875


@dataclass(frozen=True)
class LeaseTimes:
    """When a lease's phases start, in seconds of the monotonic clock."""

    bound_at: float
    renew_at: float  # T1
    rebind_at: float  # T2
    expires_at: float  # float("inf") for an infinite lease

    @classmethod
    def of(cls, bound_at: float, lease_time: int | None, t1: int | None = None,
           t2: int | None = None) -> LeaseTimes:
        if lease_time is None or lease_time >= INFINITE:
            inf = float("inf")
            return cls(bound_at, inf, inf, inf)
        length = float(lease_time)
        r1 = float(t1) if t1 is not None else T1_SHARE * length
        r2 = float(t2) if t2 is not None else T2_SHARE * length
        if not 0 <= r1 <= r2 <= length:
            r1, r2 = T1_SHARE * length, T2_SHARE * length
        return cls(bound_at, bound_at + r1, bound_at + r2, bound_at + length)

    @property
    def length(self) -> float:
        return self.expires_at - self.bound_at

    def phase(self, now: float) -> str:
        if now >= self.expires_at:
            return EXPIRED
        if now >= self.rebind_at:
            return REBINDING
        if now >= self.renew_at:
            return RENEWING
        return BOUND

    def to_json(self, wall_offset: float) -> dict[str, float | None]:
        """The instants as Unix times (``wall_offset`` = wall clock - monotonic clock);
        null for an infinite lease."""
        def wall(t: float) -> float | None:
            return round(t + wall_offset, 3) if t != float("inf") else None
        return {"bound": wall(self.bound_at), "renew": wall(self.renew_at),
                "rebind": wall(self.rebind_at), "expires": wall(self.expires_at)}


def min_retransmit(times: LeaseTimes) -> float:
    """The shortest wait between two REQUESTs of one phase."""
    return min(MIN_RETRANSMIT, max(1.0, times.length / 10))


#: What :meth:`LeaseClock.due` asks the caller to do.
SEND_UNICAST, SEND_BROADCAST, GIVE_UP = "unicast", "broadcast", "expire"


@dataclass(frozen=True)
class LeaseClock:
    """A lease's times and when its next REQUEST is due."""

    times: LeaseTimes
    send_at: float  # the next REQUEST (RENEWING or REBINDING), inf if none

    @classmethod
    def bound(cls, times: LeaseTimes) -> LeaseClock:
        return cls(times, times.renew_at)

    def due(self, now: float) -> str | None:
        """What to do now: send a unicast or a broadcast REQUEST, give the address up,
        or nothing (None)."""
        phase = self.times.phase(now)
        if phase == EXPIRED:
            return GIVE_UP
        if phase == BOUND or now < self.send_at:
            return None
        return SEND_UNICAST if phase == RENEWING else SEND_BROADCAST

    def sent(self, now: float) -> LeaseClock:
        """A REQUEST went out at ``now``: when the next one is due if none is answered."""
        t = self.times
        end = t.rebind_at if t.phase(now) == RENEWING else t.expires_at
        wait = max(min_retransmit(t), (end - now) / 2)
        return replace(self, send_at=min(now + wait, end))

    def next_due(self, now: float) -> float:
        """Seconds until :meth:`due` may say something other than None."""
        return max(0.0, min(self.send_at, self.times.expires_at) - now)


def arp_conflict(*, sender_mac: str, sender_ip: str, target_ip: str, our_mac: str,
                 address: str) -> bool:
    """Does this ARP packet (request or reply) say ``address`` is someone else's
    (RFC 5227 §2.1.1)? Yes if another MAC sends from it, or probes for it too."""
    if sender_mac.lower() == our_mac.lower():
        return False
    return sender_ip == address or (sender_ip == "0.0.0.0" and target_ip == address)  # noqa: S104
