"""Learn and locate: ``bootpull node discover``, and the pipeline's first stage.

:func:`discover` takes the interfaces to try, gets a DHCP lease on all of them at
once (one thread each), and runs the sources of :mod:`bootpull.locate` over each
lease as it arrives. The result is one :class:`Discovery`, or a
:class:`NothingFound` (a DiscoveryError, exit 10) whose banner lists every source
tried and why each was passed over.

**Which interface wins (multi-NIC precedence).** Interfaces are ranked in candidate
order (:mod:`bootpull.interfaces`: as named by ``--interface``/``bootpull.interface=``,
else kernel index order). The winner is the highest-ranked interface whose lease
located the repository. A lower-ranked interface that located it does not wait
forever for a higher-ranked one that is still silent: after ``grace`` seconds
(default 5) the silent ones are passed over. With ``bootpull.repo=`` on the
command line the repository is already located, and the winner is the highest-
ranked interface that got a lease.

**Identity MAC.** ``mac`` (``--mac``, else ``bootpull.mac=``: see
:mod:`bootpull.settings`), else the MAC of the winning interface.

**Report URL.** :func:`bootpull.reporturl.resolve` over ``bootpull.report=``, the
winning lease's option 43 sub-option 2 and the repository URL (docs/contract.md §2.5,
orders 3 to 5).

**Configuration.** Unless ``configure`` is false, each leased interface gets its
address and prefix (so that DNS questions can reach the lease's servers), and the
winning interface alone gets the default route.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootpull import dhcp, locate, reporturl
from bootpull.backoff import Counters
from bootpull.console import Console
from bootpull.errors import DiscoveryError
from bootpull.interfaces import Interface, candidates, ethernet_interfaces
from bootpull.locate import Tried
from bootpull.mac import Mac
from bootpull.settings import DiscoverSettings, check_dhcp_allowed, unknown_key_warnings

#: Seconds a lower-ranked interface that located the repository waits for silent
#: higher-ranked ones.
GRACE = 5.0


@dataclass(frozen=True)
class Discovery:
    """What the node learned: docs/contract.md §3.2, the keys of ``node discover --json``.

    Written by discover; read by fetch (``repo_url``), report (``report_url``,
    ``log_servers``), run (``mac``, ``hostname``, ``ip``).
    """

    interface: str
    mac: Mac
    ip: str
    prefix: int
    gateway: str | None
    dns_servers: list[str]
    domain: str | None
    search: list[str]
    hostname: str | None  # DHCP option 12; the host file and node-<mac> come later
    log_servers: list[str]
    repo_url: str
    repo_url_source: str  # cmdline, dhcp-43, dhcp-67, dns-srv or well-known
    report_url: str  # bootpull.report=, else option 43.2, else the repo origin's events URL
    report_url_source: str = ""  # cmdline, dhcp-43 or origin (docs/contract.md §2.5)
    tried: list[Tried] = field(default_factory=list)
    #: the winning interface's lease, for the lease keeper (not part of the JSON)
    lease: dhcp.Lease | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON object (a dict ready for ``json.dumps``)."""
        return {
            "interface": self.interface, "mac": self.mac.canonical, "ip": self.ip,
            "prefix": self.prefix, "gateway": self.gateway,
            "dns_servers": list(self.dns_servers), "domain": self.domain,
            "search": list(self.search), "hostname": self.hostname,
            "log_servers": list(self.log_servers), "repo_url": self.repo_url,
            "repo_url_source": self.repo_url_source, "report_url": self.report_url,
            "report_url_source": self.report_url_source,
            "tried": [t.to_json() for t in self.tried],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Discovery:
        """The inverse of :meth:`to_json` (for state written to disk)."""
        return cls(**{**obj, "mac": Mac.parse(obj["mac"]),
                      "tried": [Tried.from_json(t) for t in obj["tried"]]})


class NothingFound(DiscoveryError):
    """No lease, or no source located the repository. ``tried`` says what was tried."""

    def __init__(self, what: str, *, why: str = "", hint: str = "",
                 tried: list[Tried] | None = None) -> None:
        super().__init__(what, why=why, hint=hint)
        self.tried = tried or []


@dataclass
class _Outcome:
    iface: Interface
    attempts: list[locate.Attempt]
    lease: dhcp.Lease | None = None
    found: locate.Attempt | None = None
    at: float = 0.0


def discover(
    *,
    interfaces: Sequence[str],
    timeout: float,
    configure: bool,
    console: Console,
    counters: Counters,
    dhcp_delay: float,
    repo_url: str | None = None,
    mac: Mac | None = None,
    report_url: str | None = None,
    grace: float = GRACE,
) -> Discovery:
    """Learn (DHCP) and locate (docs/contract.md §2). Raise :class:`NothingFound` (exit 10).

    ``interfaces``: the candidates, in order (empty: every Ethernet interface);
    ``repo_url``: the ``cmdline`` source (``bootpull.repo=`` or ``--repo``); ``mac``: the
    identity override; ``report_url``: ``bootpull.report=``; ``dhcp_delay``: the upper
    bound of the random wait before the first DISCOVER, in seconds.
    """
    from bootpull import dhcp_client

    started = time.monotonic()
    deadline = started + max(1.0, timeout)
    # DNS questions need a little time after the last lease can arrive.
    dhcp_deadline = deadline - min(5.0, timeout * 0.25)
    tried: list[Tried] = []
    # scapy takes a while to import: let it load while the links come up.
    threading.Thread(target=dhcp_client.preload, name="scapy-import", daemon=True).start()

    [cmd] = locate.try_sources(locate.Clues(repo_url=repo_url))
    tried.append(cmd.tried())
    console.info(f"locate cmdline: {cmd.result}: {cmd.reason}", stage="locate",
                 source="cmdline", result=cmd.result, reason=cmd.reason)
    if cmd.result == locate.FAILED:  # one failed source: the network may still know
        console.warn(f"{cmd.reason}; fix bootpull.repo= (an http:// or https:// URL). "
                     "Looking for the repository on the network instead")

    with console.step("interfaces") as step:
        ready, unusable = candidates(list(interfaces), carrier_wait=min(3.0, timeout * 0.1))
        step.note(", ".join(i.name for i in ready) or "none usable")
    for item in unusable:
        tried.append(Tried("dhcp", locate.FAILED, item.reason))
        console.warn(item.reason)
    if not ready and not interfaces and not ethernet_interfaces():
        raise _no_driver(tried)
    if not ready:
        raise NothingFound(
            "no network interface to get a lease on",
            why="\n".join(i.reason for i in unusable) or "no Ethernet interfaces",
            hint="check the cable and the link light; name the NIC with "
                 "bootpull.interface=NAME or --interface NAME",
            tried=tried)

    settings = dhcp_client.DhcpSettings(initial_delay=dhcp_delay)
    cond = threading.Condition()
    stop = threading.Event()
    outcomes: dict[str, _Outcome] = {}
    progress: dict[str, str] = {}  # name -> how far a worker got, for the time-out reason
    lock = threading.Lock()

    def worker(iface: Interface) -> None:
        outcome = _Outcome(iface, [])
        try:
            outcome = _learn_and_locate(
                iface, cmd=cmd, deadline=dhcp_deadline, dns_deadline=deadline,
                configure=configure, console=console, counters=counters, lock=lock,
                settings=settings, stop=stop, progress=progress)
        except Exception as exc:  # noqa: BLE001 - a bug on one NIC must not hang the others
            outcome.attempts.append(locate.Attempt(
                "dhcp", locate.FAILED, f"internal error: {type(exc).__name__}: {exc}"))
        outcome.at = time.monotonic()
        with cond:
            outcomes[iface.name] = outcome
            cond.notify_all()

    threads = [threading.Thread(target=worker, args=(i,), name=f"dhcp-{i.name}", daemon=True)
               for i in ready]
    for thread in threads:
        thread.start()
    order = [i.name for i in ready]
    winner: _Outcome | None = None
    passed_over: list[str] = []
    with cond:
        while True:
            winner, passed_over, done = _decide(order, outcomes, time.monotonic(), grace)
            if done or time.monotonic() >= deadline + 2.0:
                break
            cond.wait(timeout=0.2)
        stop.set()
        final = dict(outcomes)  # a late worker must not change what is reported
    for name in order:
        outcome = final.get(name)
        if outcome is None:
            reason = ("passed over: another interface located the repository and this one "
                      f"had no result {grace:.0f}s later" if name in passed_over
                      else "no result before the time limit")
            if name in progress:
                reason += f" ({progress[name]})"
            tried.append(Tried("dhcp", locate.FAILED, reason, name))
            continue
        tried.extend(a.tried(name) for a in outcome.attempts)
    if winner is None or winner.lease is None:
        raise _nothing_found(tried, any(o.lease for o in final.values()))
    lease = winner.lease
    assert winner.found is not None
    if configure:
        try:
            dhcp_client.configure_default_route(winner.iface.name, lease)
        except OSError as exc:
            console.warn(f"could not set the default route: {exc}")
    found_url = winner.found.url or ""
    report = reporturl.resolve(cmdline=report_url, dhcp_43=locate.report_url_43(lease),
                               repo_url=found_url)
    result = Discovery(
        interface=winner.iface.name, mac=mac or winner.iface.mac, ip=str(lease.ip),
        prefix=lease.prefix, gateway=str(lease.gateway) if lease.gateway else None,
        dns_servers=[str(s) for s in lease.dns_servers], domain=lease.domain,
        search=list(lease.search), hostname=lease.hostname,
        log_servers=[str(s) for s in lease.log_servers], repo_url=found_url,
        repo_url_source=winner.found.source, report_url=report.url if report else "",
        report_url_source=report.source if report else "",
        tried=tried, lease=lease,
    )
    console.info(f"identity {result.mac} ({'override' if mac else winner.iface.name}), "
                 f"repository {found_url} (from {result.repo_url_source})", stage="discover",
                 mac=result.mac.canonical, interface=result.interface, repo_url=found_url,
                 source=result.repo_url_source)
    return result


def until_found(once: Callable[[], Discovery], *, console: Console, counters: Counters,
                oneshot: bool, poll_interval: float, sleep: Callable[[float], None],
                banner: Callable[[DiscoveryError], None]) -> Discovery:
    """``node run``'s discover stage: ``once()`` until it finds the repository, with a
    jittered backoff (2 s, doubling, at most 60 s or 4 polls) and each failure's banner
    once and counted (retries ``discover``); ``--oneshot`` gives up at the first."""
    from bootpull.backoff import Backoff

    backoff = Backoff(base=2.0, cap=min(60.0, poll_interval * 4))
    attempt = 0
    while True:
        try:
            with console.step("discover") as step:
                found = once()
                step.note(f"{found.interface} {found.ip} {found.mac} repo {found.repo_url} "
                          f"({found.repo_url_source})")
            return found
        except DiscoveryError as err:
            if oneshot:
                raise
            banner(err)
            counters.count("retries", "discover")
            sleep(backoff.delay(attempt))
            attempt += 1


def _decide(
    order: list[str], outcomes: dict[str, _Outcome], now: float, grace: float,
) -> tuple[_Outcome | None, list[str], bool]:
    """(winner, pending interfaces passed over, decided?) — see the module docstring."""
    pending: list[str] = []
    for name in order:
        outcome = outcomes.get(name)
        if outcome is None:
            pending.append(name)
            continue
        if outcome.found is None:
            continue
        if not pending:
            return outcome, [], True
        if now >= outcome.at + grace:
            return outcome, pending, True
        return None, [], False
    return None, [], not pending


def _learn_and_locate(
    iface: Interface, *, cmd: locate.Attempt, deadline: float, dns_deadline: float,
    configure: bool, console: Console, counters: Counters, lock: threading.Lock,
    settings: Any, stop: threading.Event, progress: dict[str, str],
) -> _Outcome:
    from bootpull import dhcp_client

    outcome = _Outcome(iface, [])
    try:
        with console.step(f"dhcp {iface.name}") as step:
            lease = dhcp_client.acquire(
                iface.name, iface.mac, deadline=deadline, console=console,
                counters=counters, settings=settings, lock=lock, rng=random.Random(),
                stop=stop)
            step.note(f"{lease.ip}/{lease.prefix} from {lease.server_id}")
    except dhcp_client.DhcpFailed as exc:
        outcome.attempts.append(locate.Attempt("dhcp", locate.FAILED, exc.what))
        return outcome
    outcome.lease = lease
    progress[iface.name] = f"leased {lease.ip}/{lease.prefix}, still locating"
    summary = f"lease {lease.ip}/{lease.prefix} from {lease.server_id}"
    for _code, problem in sorted(lease.problems.items()):
        console.warn(f"dhcp {iface.name}: ignored: {problem}")
        summary += f"; ignored: {problem}"
    outcome.attempts.append(locate.Attempt("dhcp", locate.FOUND, summary))
    if stop.is_set():
        return outcome
    if configure:
        try:
            dhcp_client.configure_address(iface.name, lease)
        except OSError as exc:
            outcome.attempts.append(locate.Attempt(
                "dhcp", locate.FAILED, f"could not configure the address: {exc}"))
            return outcome
    if cmd.result == locate.FOUND:
        outcome.found = cmd
        return outcome

    def dns_for(found: dhcp.Lease) -> locate.Dns:
        return locate.LeaseDns(found.dns_servers, source=found.ip if configure else None,
                               lifetime=4.0, deadline=dns_deadline)

    for attempt in locate.try_sources(locate.Clues(lease=lease, dns_factory=dns_for)):
        outcome.attempts.append(attempt)
        console.info(f"locate {attempt.source} on {iface.name}: {attempt.result}: "
                     f"{attempt.url or attempt.reason}", stage="locate",
                     source=attempt.source, result=attempt.result, reason=attempt.reason,
                     interface=iface.name, url=attempt.url)
        if attempt.result == locate.FOUND:
            outcome.found = attempt
    return outcome


def _nothing_found(tried: list[Tried], leased: bool) -> NothingFound:
    why = "\n".join(f"{t.source}: {t.result}: {t.text}" for t in tried)
    if not leased:
        return NothingFound(
            "no DHCP lease on any interface", why=why,
            hint="check the cable and that a DHCP server answers on this network; or boot "
                 "with bootpull.repo=URL bootpull.mac=MAC on the kernel command line",
            tried=tried)
    return NothingFound(
        "no repository found", why=why,
        hint="tell the network where the repository is: DHCP option 43 sub-option 1 "
             "(dnsmasq: dhcp-option=vendor:bootpull,1,http://HOST/repo.git), option 67, "
             "an SRV record _bootpull._tcp.DOMAIN, a host bootpull.DOMAIN, or "
             "bootpull.repo=URL on the kernel command line",
        tried=tried)


# -- the command ------------------------------------------------------------------------


def command(args: argparse.Namespace) -> int:
    """``bootpull node discover``."""
    settings = DiscoverSettings.from_args(args)
    check_dhcp_allowed("node discover", settings.interfaces)  # before any packet
    console = Console.open(settings.console_spec, level=settings.log_level)
    try:
        for warning in unknown_key_warnings(settings.unknown_keys):
            console.warn(warning)
        if settings.mac_error is not None:
            raise DiscoveryError("bootpull.mac= is not a MAC address", why=settings.mac_error,
                                 hint="write it as 52:54:00:12:34:56")
        result = discover(
            interfaces=settings.interfaces, timeout=settings.discover_timeout,
            configure=settings.configure, console=console, counters=Counters(),
            dhcp_delay=settings.dhcp_delay, repo_url=settings.repo_url, mac=settings.mac,
            report_url=settings.report_url,
        )
    except DiscoveryError as exc:
        console.banner(exc)
        exc.reported = True
        if settings.as_json:
            tried = exc.tried if isinstance(exc, NothingFound) else []
            print(json.dumps({"error": exc.what, "why": exc.why, "hint": exc.hint,
                              "exit_code": exc.exit_code,
                              "tried": [t.to_json() for t in tried]}, indent=2))
        raise
    finally:
        console.close()
    if settings.as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        for key, value in result.to_json().items():
            if key != "tried":
                print(f"{key}: {value if value is not None else '-'}")
    return 0


def _no_driver(tried: list[Tried], sys_bus: Path | None = None) -> NothingFound:
    """No Ethernet interface at all: a driver is missing (say which devices), not a cable."""
    from bootpull.interfaces import SYS_BUS, unclaimed_network_devices

    devices = unclaimed_network_devices(sys_bus or SYS_BUS)
    if not devices:
        return NothingFound(
            "no network interface: this machine shows no network device",
            why="no Ethernet interface, and no PCI or USB network device without a driver",
            hint="plug in a network adapter (a USB one needs its own driver: check the "
                 "list in docs/image.md), then reboot", tried=tried)
    bus, ids = devices[0].split()[:2]
    vendor, device = ids.split(":", 1)
    alias = f"v0000{vendor}d0000{device}" if bus == "PCI" else f"v{vendor}p{device}"
    return NothingFound(
        "no network interface: this image has no driver for this machine's network device",
        why="no driver claimed: " + "; ".join(devices),
        hint="rebuild the image with its driver: 'bootpull image build --modules NAME' (and "
             "--firmware DIR if it needs firmware); NAME is the module that "
             f"'grep -i {alias} /lib/modules/*/modules.alias' names on a Debian machine",
        tried=tried)
