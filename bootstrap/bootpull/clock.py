"""The clock stage: before verification, ask NTP and step the clock when it is far off.

A box with a dead RTC battery boots in 2000 or 2020; its events carry wrong times and,
worse, it judges signed metadata's expiry by that clock. The node asks the NTP servers
of ``bootpull.ntp=HOST[,HOST]`` or else DHCP option 42, in order, with one SNTP request
each (:mod:`bootpull.sntp`), and takes the first good answer.

- An offset of at most :data:`STEP_THRESHOLD` (1 s) is left alone: the node has no
  time daemon to slew with, and one second does not matter to expiry (days) or to
  events. A larger one is stepped with ``clock_settime(CLOCK_REALTIME)``.
- The clock is set only as root inside the boot image (:func:`may_set`), never on a
  developer's or CI machine; there the node says how far off the clock is and leaves
  it. Tests hand :func:`sync` a setter of their own.
- A step to a time before the clock floor (the image's build time, the last good
  verification) is refused: such an answer is wrong, and the floor would overrule it
  for expiry anyway (:func:`bootpull.trust.reference_time`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bootpull import sntp
from bootpull.console import Console
from bootpull.names import IMAGE_MARKER

#: offsets up to this many seconds are left alone
STEP_THRESHOLD = 1.0

Setter = Callable[[float], None]

STEPPED, IN_SYNC, NOT_SET, REFUSED, FAILED, UNREACHABLE = (
    "stepped", "in-sync", "not-set", "refused", "failed", "unreachable")


def set_system_clock(unix: float) -> None:
    """Set CLOCK_REALTIME (needs CAP_SYS_TIME). Called only where :func:`may_set` allows."""
    time.clock_settime(time.CLOCK_REALTIME, unix)


def may_set(marker: Path = IMAGE_MARKER) -> str | None:
    """None when this process may set the system clock; else the reason it may not."""
    if not marker.is_file():
        return f"not in the boot image ({marker} is absent)"
    if os.geteuid() != 0:
        return "not running as root"
    return None


def iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Outcome:
    """What the clock stage did; :meth:`details` goes into the ``clock`` event."""

    action: str  # one of STEPPED, IN_SYNC, NOT_SET, REFUSED, FAILED, UNREACHABLE
    message: str
    server: str = ""
    offset: float | None = None
    old: float | None = None  # the clock before the step (Unix seconds)
    new: float | None = None  # the clock it was set to, or would have been
    failures: list[str] = field(default_factory=list)

    @property
    def status(self) -> str | None:
        """The event's status; None when there is nothing to report."""
        return {STEPPED: "ok", IN_SYNC: None}.get(self.action, "warn")

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "server": self.server,
                               "offset": None if self.offset is None
                               else round(self.offset, 3),
                               "old": iso(self.old) if self.old is not None else None,
                               "new": iso(self.new) if self.new is not None else None}
        if self.failures:
            out["failures"] = list(self.failures)
        return out


def sync(servers: Sequence[str], *, setter: Setter | None, not_allowed: str = "",
         floor: datetime | None = None, threshold: float = STEP_THRESHOLD,
         timeout: float = sntp.DEFAULT_TIMEOUT, clock: Callable[[], float] = time.time,
         ask: Callable[..., sntp.Sample] | None = None) -> Outcome:
    """Ask ``servers`` in order and step the clock with ``setter`` if it is off by more
    than ``threshold`` seconds. ``setter`` None: only say so (``not_allowed`` is why)."""
    found, failures = sntp.query_first(servers, timeout=timeout, clock=clock, ask=ask)
    if found is None:
        return Outcome(UNREACHABLE, "no NTP server answered (" + "; ".join(failures)
                       + "): the clock is not checked", failures=failures)
    offset = found.offset
    where = f"{found.server} (stratum {found.stratum})"
    if abs(offset) <= threshold:
        return Outcome(IN_SYNC, f"the clock is within {abs(offset):.3f} s of {where}",
                       server=found.server, offset=offset, failures=failures)
    old = clock()
    new = old + offset

    def outcome(action: str, message: str) -> Outcome:
        return Outcome(action, message, server=found.server, offset=offset, old=old,
                       new=new, failures=failures)

    if floor is not None and new < floor.timestamp():
        return outcome(REFUSED, f"{where} says {iso(new)}, before the clock floor "
                       f"{floor.isoformat()} (the image build or the last good "
                       "verification): the clock is not set")
    if setter is None:
        return outcome(NOT_SET, f"the clock is {offset:+.3f} s off {where}; not set: "
                       f"{not_allowed or 'not allowed here'}")
    try:
        setter(clock() + offset)
    except OSError as exc:
        return outcome(FAILED, f"the clock is {offset:+.3f} s off {where}; setting it "
                       f"failed: {exc.strerror or exc}")
    return outcome(STEPPED, f"the clock was set from {iso(old)} to {iso(new)} "
                   f"({offset:+.3f} s) by {where}")


def check(servers: Sequence[str], *, setter: Setter | None, build_time_file: Path,
          state_root: Path, console: Console) -> Outcome | None:
    """The node's clock stage, before verification: ask ``servers`` and step the clock
    if it is off by more than :data:`STEP_THRESHOLD`, never below the clock floor (the
    image's build time and the last good verification). ``setter`` None: the system
    clock, only inside the boot image as root (:func:`may_set`). None when there are no
    servers (nothing to ask)."""
    from bootpull.errors import BootpullError
    from bootpull.trust import image_build_time, load_floor

    if not servers:
        console.info("no NTP servers (bootpull.ntp=, DHCP option 42): the clock is not "
                     "checked", stage="clock")
        return None
    why = ""
    if setter is None:
        why = may_set() or ""
        setter = None if why else set_system_clock
    floor = image_build_time(build_time_file)
    with contextlib.suppress(BootpullError):
        last = load_floor(state_root).last_good_time
        floor = max(floor, last) if floor and last else floor or last
    with console.step("clock") as step:
        outcome = sync(servers, setter=setter, not_allowed=why, floor=floor)
        step.note(outcome.message)
    return outcome


def servers(from_cmdline: Sequence[str], lease: Any | None) -> list[str]:
    """Whom to ask: ``bootpull.ntp=`` if given, else the lease's option 42 (a
    :class:`bootpull.dhcp.Lease`; None with ``--repo`` and ``--mac``)."""
    if from_cmdline:
        return list(from_cmdline)
    return [str(a) for a in lease.ntp_servers] if lease is not None else []
