"""The DHCP client's I/O: frames on one interface, through scapy (RFC 2131).

Everything about the bytes lives in :mod:`bootpull.dhcp`; this module sends and
receives them. Only the scapy layers needed are imported (``Ether``, ``IP``, ``UDP``
and the Linux packet socket), never ``scapy.all``: the import alone would cost a
second on a small VM. They are imported when the first lease is asked for.

The exchange (RFC 2131 §4.4):

1. Wait a random initial delay (0..``initial_delay`` seconds) so that a rack of
   nodes powered on together does not answer in lockstep.
2. Broadcast DISCOVER; retransmit with "equal jitter" exponential backoff: the n-th
   wait is half of ``Backoff.ceiling(n)`` plus ``Backoff.delay(n)/2``, 2-4 s then
   4-8 s, 8-16 s... The first wait is long enough for dnsmasq, which pings an address
   (~3 s) before offering it. Every retransmission is counted and logged.
3. Take the first OFFER that names our transaction id and our MAC and that decodes
   (it must have a server identifier, option 54, and a usable address).
4. REQUEST it from that server; accept only an ACK or NAK carrying that server's
   identifier. A NAK, or no answer after three REQUESTs, starts over from DISCOVER
   with a new transaction id.
5. Check the address (RFC 5227): ``arp_probes`` ARP probes ``arp_interval`` apart, then
   ``arp_wait`` more (3 × 0.2 s + 0.4 s, about 1 s). An ARP packet from another MAC
   that sends from the address, or probes for it too, is a conflict: DHCPDECLINE to
   the server, counted (``retries:dhcp-decline``), and a new DISCOVER.

:func:`renew` is one REQUEST of the RENEWING (unicast) or REBINDING (broadcast) state
over a UDP socket on the leased address; :mod:`bootpull.lease_keeper` decides when.

Replies that are malformed, for someone else, or for another transaction are
ignored; the first few reasons are kept, so a failure says what was seen.
"""

from __future__ import annotations

import dataclasses
import random
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from bootpull import dhcp
from bootpull.backoff import Backoff, Counters
from bootpull.console import Console
from bootpull.errors import DiscoveryError
from bootpull.mac import Mac

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
#: How many REQUESTs before starting over with DISCOVER.
REQUEST_TRIES = 3


class DhcpFailed(DiscoveryError):
    """No lease on this interface. ``what`` is the reason, for ``tried[]``."""


@dataclass(frozen=True)
class DhcpSettings:
    #: Upper bound of the random wait before the first DISCOVER (RFC 2131 §4.4.1).
    initial_delay: float = 1.0
    backoff: Backoff = field(default_factory=lambda: Backoff(base=4.0, cap=32.0))
    #: A hostname to send in option 12 (none by default: the repo assigns names).
    hostname: str | None = None
    #: The address check (RFC 5227) before an address is used; 0 probes: no check.
    arp_probes: int = 3
    arp_interval: float = 0.2
    arp_wait: float = 0.4


@dataclass
class _Seen:
    """What was ignored, for the failure reason: reason -> how many times."""

    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str) -> None:
        if reason in self.reasons or len(self.reasons) < 8:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def summary(self) -> str:
        return "; ".join(f"{n}x {r}" if n > 1 else r for r, n in self.reasons.items())


def preload() -> None:
    """Import the scapy layers now (discover runs this in a thread while it waits for
    carrier, so the import overlaps the link coming up)."""
    from scapy.config import conf

    # Every frame names its interface and addresses, so scapy need not read the
    # routing tables when it loads (about a fifth of its import time).
    conf.route_autoload = False
    conf.route6_autoload = False
    import scapy.layers.l2  # noqa: F401
    from scapy.arch.linux import L2Socket  # noqa: F401
    from scapy.layers.inet import IP  # noqa: F401


class _Link:
    """A packet socket on one interface: DHCP payloads in and out."""

    def __init__(self, iface: str, mac: Mac) -> None:
        preload()  # registers Ethernet before the socket asks, without the route tables
        from scapy.arch.linux import L2Socket

        self.iface = iface
        self.mac = mac
        self._sock: Any = L2Socket(iface=iface, type=ETH_P_IP)

    def send(self, payload: bytes) -> None:
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import Ether
        from scapy.packet import Raw

        frame = (Ether(src=self.mac.colons, dst=BROADCAST_MAC)
                 / IP(src="0.0.0.0", dst="255.255.255.255")  # noqa: S104 - RFC 2131 source
                 / UDP(sport=68, dport=67) / Raw(load=payload))
        self._sock.send(frame)

    def receive(self, timeout: float) -> bytes | None:
        """One DHCP payload sent to port 68, or None when ``timeout`` passes first."""
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import Ether

        end = time.monotonic() + max(0.0, timeout)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._sock], [], [], left)
            if not ready:
                return None
            _cls, data, _ts = self._sock.recv_raw()
            if not data:
                continue  # our own outgoing frame
            try:
                frame = Ether(data)
            except Exception:  # noqa: BLE001, S112 - scapy raises anything on garbage
                continue
            if IP not in frame or UDP not in frame or frame[UDP].dport != 68:
                continue
            return bytes(frame[UDP].payload)

    def close(self) -> None:
        self._sock.close()

    def address_in_use(self, ip: IPv4Address, settings: DhcpSettings) -> str | None:
        """ARP-probe ``ip`` (RFC 5227 §2.1): the MAC of another holder, or None."""
        from scapy.arch.linux import L2Socket
        from scapy.layers.l2 import ARP, Ether

        from bootpull.lease import arp_conflict

        sock: Any = L2Socket(iface=self.iface, type=ETH_P_ARP)
        probe = (Ether(src=self.mac.colons, dst=BROADCAST_MAC)
                 / ARP(op=1, hwsrc=self.mac.colons, psrc="0.0.0.0",  # noqa: S104 - a probe
                       hwdst="00:00:00:00:00:00", pdst=str(ip)))
        try:
            for n in range(settings.arp_probes):
                sock.send(probe)
                end = time.monotonic() + (settings.arp_interval if n + 1 < settings.arp_probes
                                          else settings.arp_wait)
                while (left := end - time.monotonic()) > 0:
                    ready, _, _ = select.select([sock], [], [], left)
                    if not ready:
                        break
                    _cls, data, _ts = sock.recv_raw()
                    try:
                        frame = Ether(data) if data else None
                    except Exception:  # noqa: BLE001, S112 - scapy raises anything on garbage
                        continue
                    if frame is None or ARP not in frame:
                        continue
                    arp = frame[ARP]
                    if arp_conflict(sender_mac=str(arp.hwsrc), sender_ip=str(arp.psrc),
                                    target_ip=str(arp.pdst), our_mac=self.mac.colons,
                                    address=str(ip)):
                        return str(arp.hwsrc)
        finally:
            sock.close()
        return None


def acquire(
    iface: str,
    mac: Mac,
    *,
    deadline: float,
    console: Console,
    counters: Counters,
    settings: DhcpSettings = DhcpSettings(),
    rng: random.Random | None = None,
    lock: threading.Lock | None = None,
    stop: threading.Event | None = None,
    link_factory: Callable[[str, Mac], Any] = _Link,
) -> dhcp.Lease:
    """DISCOVER → OFFER → REQUEST → ACK on ``iface``, by the monotonic ``deadline``.

    Raises :class:`DhcpFailed` with the reason when no lease comes in time.
    """
    rng = rng or random.Random()
    lock = lock or threading.Lock()
    stop = stop or threading.Event()
    delay = rng.uniform(0.0, max(0.0, settings.initial_delay))
    if delay:
        console.debug(f"dhcp {iface}: waiting {delay:.2f}s before the first DISCOVER")
        stop.wait(min(delay, max(0.0, deadline - time.monotonic())))
    seen = _Seen()
    try:
        link = link_factory(iface, mac)
    except OSError as exc:
        raise DhcpFailed(f"cannot open a packet socket on {iface}: {exc}") from None
    started = time.monotonic()
    attempt = 0

    def retry(what: str, wait: float, reason: str = "dhcp") -> None:
        nonlocal attempt
        attempt += 1
        with lock:
            counters.count("retries", reason)
        console.info(f"dhcp {iface}: {what} after {wait:.1f}s; retry {attempt}")

    def running() -> bool:
        return time.monotonic() < deadline and not stop.is_set()

    def wait_for(n: int) -> float:
        ceiling = settings.backoff.ceiling(n)
        return min(ceiling / 2 + settings.backoff.delay(n, rng) / 2,
                   max(0.0, deadline - time.monotonic()))

    try:
        return _exchange(link, iface, mac, started=started, seen=seen, console=console,
                         settings=settings, rng=rng, stop=stop, running=running,
                         wait_for=wait_for, retry=retry)
    except OSError as exc:
        raise DhcpFailed(f"sending or receiving on {iface} failed: {exc}") from None
    except _NoLease as exc:
        discovers = exc.discovers
    finally:
        link.close()
    took = time.monotonic() - started
    if discovers == 0 and not stop.is_set():
        raise DhcpFailed(f"the time limit ran out before the first DISCOVER on {iface} "
                         "(a slow or busy machine): raise --timeout")
    reason = f"no lease after {took:.1f}s and {discovers} DISCOVER(s)"
    if seen.reasons:
        reason += f"; ignored: {seen.summary()}"
    raise DhcpFailed(reason)


class _NoLease(Exception):
    def __init__(self, discovers: int) -> None:
        super().__init__(discovers)
        self.discovers = discovers


def _exchange(
    link: Any, iface: str, mac: Mac, *, started: float, seen: _Seen, console: Console,
    settings: DhcpSettings, rng: random.Random, stop: threading.Event,
    running: Callable[[], bool], wait_for: Callable[[int], float],
    retry: Callable[..., None],
) -> dhcp.Lease:
    """The RFC 2131 exchange; raises _NoLease when time runs out or ``stop`` is set."""
    discovers = 0
    while running():
        xid = rng.getrandbits(32)
        offer = None
        while offer is None and running():
            secs = int(time.monotonic() - started)
            link.send(dhcp.encode_request(
                xid=xid, mac=mac.octets, secs=secs,
                options=dhcp.discover_options(mac=mac.octets, hostname=settings.hostname)))
            discovers += 1
            console.debug(f"dhcp {iface}: DISCOVER xid {xid:08x}")
            wait = wait_for(discovers - 1)
            offer = _collect(link, xid, mac, dhcp.OFFER, None, wait, seen, stop)
            if offer is None and running():
                retry("no usable OFFER", wait)
        if offer is None:
            break
        console.debug(f"dhcp {iface}: OFFER {offer.ip} from {offer.server_id}")
        for n in range(REQUEST_TRIES):
            if not running():
                break
            link.send(dhcp.encode_request(
                xid=xid, mac=mac.octets, secs=int(time.monotonic() - started),
                options=dhcp.request_options(
                    mac=mac.octets, requested_ip=offer.ip, server_id=offer.server_id,
                    hostname=settings.hostname)))
            wait = wait_for(n)
            answer = _collect(link, xid, mac, dhcp.ACK, offer.server_id, wait, seen, stop)
            if isinstance(answer, dhcp.Lease):
                console.debug(f"dhcp {iface}: ACK {answer.ip} from {answer.server_id}, "
                              f"{time.monotonic() - started:.3f}s after the first DISCOVER")
                holder = _probe(link, answer, settings)
                if holder is None:
                    return dataclasses.replace(answer, bound_at=time.monotonic())
                seen.add(f"{answer.ip} is in use by {holder} (declined)")
                link.send(dhcp.encode_request(xid=xid, mac=mac.octets, options=dhcp.
                                              decline_options(mac=mac.octets,
                                                              address=answer.ip,
                                                              server_id=answer.server_id)))
                pause = wait_for(discovers)
                retry(f"{answer.ip} is in use by {holder}: sent DHCPDECLINE, DISCOVER",
                      pause, "dhcp-decline")
                stop.wait(pause)
                break
            if answer == "nak":
                # RFC 2131 §3.1.5: start over, after a pause so a NAK loop stays slow
                seen.add(f"NAK from {offer.server_id}")
                pause = wait_for(discovers)
                retry(f"NAK from {offer.server_id}", pause)
                stop.wait(pause)
                break
            if running():
                retry("no ACK", wait)
    raise _NoLease(discovers)


def _collect(
    link: Any, xid: int, mac: Mac, expect: int, server: object, timeout: float, seen: _Seen,
    stop: threading.Event,
) -> Any:
    """Wait for the first acceptable reply: a Lease, ``"nak"``, or None on timeout."""
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0 or stop.is_set():
            return None
        payload = link.receive(min(left, 0.25))
        if payload is None:
            continue
        try:
            reply = dhcp.parse_reply(payload)
        except dhcp.MalformedDhcp as exc:
            seen.add(f"malformed reply: {exc}")
            continue
        if reply.chaddr != mac.octets:
            continue  # another client's
        if reply.xid != xid:
            seen.add("reply with a wrong transaction id")
            continue
        if server is not None:
            sid = reply.options.get(dhcp.SERVER_ID)
            if sid is None or len(sid) != 4 or sid != server.packed:  # type: ignore[attr-defined]
                seen.add(f"reply not from the server we asked ({server})")
                continue
            if reply.message_type == dhcp.NAK:
                return "nak"
        try:
            return dhcp.lease_from_reply(reply, expect=expect)
        except dhcp.MalformedDhcp as exc:
            seen.add(f"unusable {dhcp.MESSAGE_TYPES[expect]}: {exc}")


# -- putting the lease on the interface ---------------------------------------------------


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise OSError(f"'ip {' '.join(args)}' failed: {proc.stderr.strip()}")


def configure_address(iface: str, lease: dhcp.Lease) -> None:
    """Put the leased address on ``iface``, and host routes to off-link DNS servers."""
    from ipaddress import IPv4Network

    _ip("link", "set", iface, "up")
    _ip("addr", "replace", f"{lease.ip}/{lease.prefix}", "dev", iface)
    net = IPv4Network(f"{lease.ip}/{lease.prefix}", strict=False)
    gateway = lease.gateway
    if gateway is not None and gateway in net:
        for server in lease.dns_servers:
            if server not in net:
                _ip("route", "replace", f"{server}/32", "via", str(gateway), "dev", iface)


def configure_default_route(iface: str, lease: dhcp.Lease) -> None:
    """The default route via the lease's first router (option 3), if it gave one."""
    if lease.gateway is not None:
        _ip("route", "replace", "default", "via", str(lease.gateway), "dev", iface)


def _probe(link: Any, lease: dhcp.Lease, settings: DhcpSettings) -> str | None:
    """Who else holds the leased address (a MAC), or None; links without ARP skip it."""
    check = getattr(link, "address_in_use", None)
    if check is None or settings.arp_probes <= 0:
        return None
    result: str | None = check(lease.ip, settings)
    return result


# -- the lease's later life: RENEWING, REBINDING, giving it up -----------------------


def renew(
    iface: str, mac: Mac, lease: dhcp.Lease, *, broadcast: bool, timeout: float,
    xid: int, hostname: str | None = None,
) -> dhcp.Lease | str | None:
    """One DHCPREQUEST for ``lease.ip`` (``ciaddr``): unicast to the server that gave it
    (RENEWING) or ``broadcast`` to any server (REBINDING), from port 68 of ``iface``.

    Returns the new lease (its ``bound_at`` is now), ``"nak"``, or None when no answer
    came within ``timeout``. Raises OSError when the socket cannot be used. The socket
    is bound to port 68 on the device, any address, so that a server that answers by
    broadcast is heard too.
    """
    packet = dhcp.encode_request(xid=xid, mac=mac.octets, ciaddr=lease.ip,
                                 options=dhcp.renew_options(mac=mac.octets,
                                                            hostname=hostname))
    target = "255.255.255.255" if broadcast else str(lease.server_id)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        sock.bind(("0.0.0.0", 68))  # noqa: S104 - one device (SO_BINDTODEVICE)
        sock.sendto(packet, (target, 67))
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                return None
            data = sock.recv(dhcp.MAX_REPLY_SIZE + 1)
            answer = renew_answer(data, mac=mac, xid=xid,
                                  server=None if broadcast else lease.server_id)
            if answer is not None:
                return answer
    return None


def renew_answer(data: bytes, *, mac: Mac, xid: int,
                 server: IPv4Address | None) -> dhcp.Lease | str | None:
    """A reply to :func:`renew`: the ACK's lease, ``"nak"``, or None to ignore it."""
    try:
        reply = dhcp.parse_reply(data)
    except dhcp.MalformedDhcp:
        return None
    if reply.chaddr != mac.octets or reply.xid != xid:
        return None
    sid = reply.options.get(dhcp.SERVER_ID)
    if server is not None and sid != server.packed:
        return None
    if reply.message_type == dhcp.NAK:
        return "nak"
    try:
        found = dhcp.lease_from_reply(reply, expect=dhcp.ACK)
    except dhcp.MalformedDhcp:
        return None
    return dataclasses.replace(found, bound_at=time.monotonic())


def release(iface: str, lease: dhcp.Lease) -> None:
    """Take the leased address (and its /prefix route) off ``iface``; quiet if gone."""
    proc = subprocess.run(["ip", "addr", "del", f"{lease.ip}/{lease.prefix}", "dev", iface],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0 and "Cannot assign" not in proc.stderr:
        raise OSError(f"'ip addr del {lease.ip}/{lease.prefix} dev {iface}' failed: "
                      f"{proc.stderr.strip()}")
