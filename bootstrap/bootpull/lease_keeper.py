"""Keeps the node's DHCP lease alive while it runs: the I/O around :mod:`bootpull.lease`.

``pipeline.Node.supervise_forever`` calls :meth:`LeaseKeeper.tick` from its loop and
sleeps no longer than :meth:`LeaseKeeper.next_due`; :func:`sleep_renewing` does the
same while the node waits for its first install. A tick sends at most one REQUEST
and waits at most ``reply_timeout`` for its answer, so the role's supervision goes on.
What happened comes back as :class:`LeaseNews`, which the pipeline reports as events
of stage ``lease`` (docs/contract.md §7.2). ``<state>/lease.json`` says where the lease
is, for the role (docs/contract.md §9.2):

- RENEWING (from T1): REQUEST unicast to the server; REBINDING (from T2): broadcast.
  Every REQUEST is counted (``retries:dhcp-renew``, ``retries:dhcp-rebind``).
- An ACK: the lease runs on with the new times (event ``ok``). A NAK, or the end of
  the lease: the address is taken off the interface (event ``warn``), the file says
  ``"state": "expired"`` or ``"nak"``, and discovery runs again, with backoff while it
  fails (``retries:discover``). Its new lease and repository come back in the news.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootpull import dhcp, dhcp_client
from bootpull.backoff import Backoff, Counters
from bootpull.console import Console
from bootpull.errors import DiscoveryError
from bootpull.interfaces import Unusable, describe
from bootpull.lease import EXPIRED, GIVE_UP, SEND_UNICAST, LeaseClock, LeaseTimes
from bootpull.mac import Mac
from bootpull.state import write_json

if TYPE_CHECKING:
    from bootpull.discover import Discovery

LEASE_FILE = "lease.json"


@dataclass(frozen=True)
class LeaseNews:
    """One thing to report: ``status`` and ``message`` of a ``lease`` event."""

    status: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    #: set when discovery ran again after the lease was lost
    discovery: Discovery | None = None


class LeaseKeeper:
    def __init__(
        self, iface: str, lease: dhcp.Lease, *, mac: Mac | None = None, state_dir: Path,
        console: Console, counters: Counters, rediscover: Callable[[], Discovery],
        exchange: Callable[..., dhcp.Lease | str | None] = dhcp_client.renew,
        release: Callable[[str, dhcp.Lease], None] = dhcp_client.release,
        clock: Callable[[], float] = time.monotonic, reply_timeout: float = 2.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.iface, self.lease = iface, lease
        self.mac = mac or _nic_mac(iface)
        self.file = state_dir / LEASE_FILE
        self.console, self.counters = console, counters
        self._rediscover, self._exchange, self._release = rediscover, exchange, release
        self._clock, self.reply_timeout = clock, reply_timeout
        self._backoff = backoff or Backoff(base=2.0, cap=60.0)
        self._rng = random.Random()
        self.renewals = 0
        self.lost: str | None = None  # "expired" or "nak" while there is no lease
        self._retry_at = 0.0
        self._failures = 0
        self._bind(lease)

    def _bind(self, lease: dhcp.Lease) -> None:
        self.lease, self.lost = lease, None
        bound = lease.bound_at or self._clock()
        self.plan = LeaseClock.bound(LeaseTimes.of(bound, lease.lease_time,
                                                   lease.renewal_time, lease.rebinding_time))
        self._written = ""
        self._write(self.plan.times.phase(self._clock()))

    # -- the state file ---------------------------------------------------------------

    def _write(self, state: str) -> None:
        if state == self._written:
            return
        self._written = state
        lease = self.lease
        obj: dict[str, Any] = {
            "state": state, "interface": self.iface, "ip": str(lease.ip),
            "prefix": lease.prefix, "server": str(lease.server_id),
            "lease_time": lease.lease_time, "renewals": self.renewals,
            **self.plan.times.to_json(time.time() - self._clock())}
        try:
            write_json(self.file, obj)
        except OSError as exc:
            self.console.warn(f"could not write {self.file}: {exc}")

    # -- the loop's side -----------------------------------------------------------------

    def next_due(self) -> float:
        """Seconds until :meth:`tick` has something to do."""
        now = self._clock()
        if self.lost:
            return max(0.0, self._retry_at - now)
        return self.plan.next_due(now)

    def tick(self) -> list[LeaseNews]:
        now = self._clock()
        if self.lost:
            return self._try_rediscover(now)
        action = self.plan.due(now)
        phase = self.plan.times.phase(now)
        if action is None:
            self._write(phase)
            return []
        if action == GIVE_UP:
            return [self._give_up(EXPIRED, f"the lease of {self.lease.ip} on {self.iface} "
                                  "ran out without a renewal")]
        self._write(phase)
        unicast = action == SEND_UNICAST
        self.counters.count("retries", "dhcp-renew" if unicast else "dhcp-rebind")
        self.console.info(f"dhcp {self.iface}: {phase} {self.lease.ip}: REQUEST "
                          f"{'to ' + str(self.lease.server_id) if unicast else 'broadcast'}",
                          stage="lease")
        self.plan = self.plan.sent(now)
        try:
            answer = self._exchange(self.iface, self.mac, self.lease, broadcast=not unicast,
                                    timeout=self.reply_timeout,
                                    xid=self._rng.getrandbits(32))
        except OSError as exc:
            self.console.warn(f"dhcp {self.iface}: the {phase} REQUEST failed: {exc}")
            return []
        if answer is None:
            return []
        if answer == "nak" or not isinstance(answer, dhcp.Lease) or answer.ip != self.lease.ip:
            server = answer.server_id if isinstance(answer, dhcp.Lease) else (
                self.lease.server_id if unicast else "a server")
            return [self._give_up("nak", f"{server} refused the renewal of {self.lease.ip} "
                                  f"on {self.iface} (DHCPNAK)")]
        self.renewals += 1
        self._bind(answer)
        until = self.plan.times.expires_at - self._clock()
        message = (f"lease of {answer.ip} on {self.iface} "
                   f"{'renewed' if unicast else 'rebound'} from {answer.server_id} for "
                   f"{until:.0f}s" if until != float("inf") else "for ever")
        self.console.info(message, stage="lease")
        return [LeaseNews("ok", message, self._details(phase))]

    def _details(self, phase: str) -> dict[str, Any]:
        return {"lease": {"state": phase, "interface": self.iface, "ip": str(self.lease.ip),
                          "server": str(self.lease.server_id),
                          "lease_time": self.lease.lease_time, "renewals": self.renewals}}

    def _give_up(self, why: str, message: str) -> LeaseNews:
        """Stop using the address: off the interface, the file says so, discover again."""
        try:
            self._release(self.iface, self.lease)
        except OSError as exc:
            self.console.warn(f"dhcp {self.iface}: {exc}")
        self.lost = why
        self._write(why)
        self._retry_at = self._clock()
        message += ": the address was removed; discovering again"
        self.console.warn(message, stage="lease")
        return LeaseNews("warn", message, self._details(why))

    def _try_rediscover(self, now: float) -> list[LeaseNews]:
        if now < self._retry_at:
            return []
        old = self.lease
        try:
            found = self._rediscover()
        except DiscoveryError as err:
            self.counters.count("retries", "discover")
            self._retry_at = self._clock() + self._backoff.delay(self._failures)
            self._failures += 1
            self.console.warn(f"discovery after the lease was lost: {err.what}", stage="lease")
            return []
        self._failures = 0
        if found.interface != self.iface:
            self.iface, self.mac = found.interface, _nic_mac(found.interface)
        if found.lease is None:  # discovery without DHCP: nothing to keep
            self.lost = "no-lease"
            self._retry_at = float("inf")
            return []
        self._bind(found.lease)
        changed = found.lease.ip != old.ip
        message = (f"new lease {found.lease.ip} on {self.iface}"
                   + (f" (the address changed from {old.ip})" if changed else ""))
        details = self._details(self.plan.times.phase(self._clock()))
        details["lease"]["previous_ip"] = str(old.ip)
        details["lease"]["address_changed"] = changed
        return [LeaseNews("warn" if changed else "ok", message, details, discovery=found)]


def _nic_mac(iface: str) -> Mac:
    """The interface's own MAC: DHCP's ``chaddr`` (an identity override is not it)."""
    nic = describe(iface)
    if isinstance(nic, Unusable):
        raise DiscoveryError(f"cannot keep the lease on {iface}: {nic.reason}")
    return nic.mac


def sleep_renewing(keeper: LeaseKeeper | None, seconds: float, *,
                   sleep: Callable[[float], None],
                   on_news: Callable[[LeaseNews], None]) -> None:
    """Sleep ``seconds`` (a node waiting for its first install), keeping the lease:
    ``keeper`` ticks whenever it is due and what it reports goes to ``on_news``."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        for news in keeper.tick() if keeper is not None else []:
            on_news(news)
        sleep(min(left, keeper.next_due() + 0.01) if keeper is not None else left)
