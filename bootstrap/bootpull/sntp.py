"""A small SNTP client (RFC 4330): one UDP request per server, the reply checked hard.

The packet codec (:func:`encode_request`, :func:`parse_reply`, :func:`check_reply`,
:func:`sample`) is pure: bytes in, typed values out, and any bytes either parse or raise
:class:`BadReply` whose text is the reason. :func:`query` does one exchange with one
server; :func:`query_first` asks the servers in order and stops at the first good answer.

What a reply must be to count (RFC 4330 §5):

- at least 48 bytes (anything after the header, extension fields or a MAC, is ignored);
- mode 4 (server), version 1 to 4;
- stratum 1 to 15: 0 is a kiss-o'-death (its reference id, ``RATE`` or ``DENY``, is the
  reason) and 16 means the server is not synchronized;
- leap indicator not 3 (alarm: the server's clock is not synchronized);
- the originate timestamp equal to the transmit timestamp of our request, to the bit
  (our low fraction bits are random, so a reply not to this request cannot match);
- non-zero receive and transmit timestamps.

Timestamps are NTP's 64-bit fixed point seconds since 1900. Era 0 ends in February
2036; as RFC 4330 §3 says, a timestamp whose top bit is 0 is in era 1 (2036 to 2104).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PORT = 123
PACKET = struct.Struct("!BBbbII4sQQQQ")
SIZE = PACKET.size  # 48
#: seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (the Unix epoch)
NTP_UNIX_DELTA = 2_208_988_800
ERA = 1 << 32
MODE_CLIENT, MODE_SERVER = 3, 4
VERSION = 4
LEAP_ALARM = 3
#: the longest reply read (a 48-byte header and generous room for extensions)
MAX_REPLY = 1024
DEFAULT_TIMEOUT = 2.0


class BadReply(ValueError):
    """A reply that cannot be used; ``str(exc)`` is the reason. ``final``: the server
    means it (a kiss-o'-death, not synchronized), so waiting for another reply is no use."""

    def __init__(self, reason: str, *, final: bool = False) -> None:
        super().__init__(reason)
        self.final = final


@dataclass(frozen=True)
class Reply:
    """An NTP header as sent; timestamps raw (64-bit fixed point)."""

    leap: int
    version: int
    mode: int
    stratum: int
    poll: int
    precision: int
    root_delay: int
    root_dispersion: int
    ref_id: bytes
    reference: int
    originate: int
    receive: int
    transmit: int

    def encode(self) -> bytes:
        """The 48 bytes (for tests and fake servers)."""
        return PACKET.pack((self.leap << 6) | (self.version << 3) | self.mode,
                           self.stratum, self.poll, self.precision, self.root_delay,
                           self.root_dispersion, self.ref_id, self.reference,
                           self.originate, self.receive, self.transmit)


@dataclass(frozen=True)
class Sample:
    """One good answer: how far this clock is from the server's, as seen at ``local``."""

    server: str
    offset: float  # seconds to add to the local clock
    delay: float  # round trip, less the server's own time
    stratum: int
    local: float  # the local clock (Unix seconds) when the reply came

    @property
    def server_time(self) -> float:
        """The server's time when the reply came, by this answer."""
        return self.local + self.offset


def to_ntp(unix: float) -> int:
    """Unix seconds as a 64-bit NTP timestamp (era 1 wraps to the same bits)."""
    whole = int(unix // 1)
    fraction = int((unix - whole) * ERA) & (ERA - 1)
    return (((whole + NTP_UNIX_DELTA) % ERA) << 32) | fraction


def to_unix(stamp: int) -> float:
    """A 64-bit NTP timestamp as Unix seconds; top bit 0 is era 1 (RFC 4330 §3)."""
    seconds, fraction = stamp >> 32, stamp & (ERA - 1)
    if not seconds & 0x8000_0000:
        seconds += ERA
    return seconds - NTP_UNIX_DELTA + fraction / ERA


def encode_request(transmit: int) -> bytes:
    """A client request (mode 3, version 4) whose transmit timestamp is ``transmit``."""
    return Reply(leap=0, version=VERSION, mode=MODE_CLIENT, stratum=0, poll=0, precision=0,
                 root_delay=0, root_dispersion=0, ref_id=bytes(4), reference=0,
                 originate=0, receive=0, transmit=transmit).encode()


def parse_reply(data: bytes) -> Reply:
    """The header of ``data``; raises :class:`BadReply` when it is not an NTP packet."""
    if len(data) < SIZE:
        raise BadReply(f"{len(data)} bytes is too short for an NTP reply (at least {SIZE})")
    if len(data) > MAX_REPLY:
        raise BadReply(f"{len(data)} bytes is over the limit of {MAX_REPLY}")
    (first, stratum, poll, precision, root_delay, root_dispersion, ref_id, reference,
     originate, receive, transmit) = PACKET.unpack_from(data)
    return Reply(leap=first >> 6, version=(first >> 3) & 7, mode=first & 7,
                 stratum=stratum, poll=poll, precision=precision, root_delay=root_delay,
                 root_dispersion=root_dispersion, ref_id=ref_id, reference=reference,
                 originate=originate, receive=receive, transmit=transmit)


def _kiss_code(ref_id: bytes) -> str:
    text = ref_id.rstrip(b"\0").decode("ascii", "replace")
    return "".join(c if c.isprintable() else "?" for c in text) or "?"


def check_reply(reply: Reply, sent: int) -> None:
    """Raise :class:`BadReply` unless ``reply`` answers the request sent with ``sent``."""
    if reply.mode != MODE_SERVER:
        raise BadReply(f"mode {reply.mode} is not a server reply (4)")
    if not 1 <= reply.version <= 4:
        raise BadReply(f"version {reply.version} is not NTP 1 to 4")
    if reply.originate != sent:
        raise BadReply("the originate timestamp is not the one sent: not a reply to "
                       "this request")
    if reply.stratum == 0:
        raise BadReply(f"kiss-o'-death {_kiss_code(reply.ref_id)!r}: the server refuses "
                       "to answer", final=True)
    if reply.stratum > 15:
        raise BadReply(f"stratum {reply.stratum}: the server is not synchronized",
                       final=True)
    if reply.leap == LEAP_ALARM:
        raise BadReply("leap indicator 3: the server's clock is not synchronized",
                       final=True)
    if reply.receive == 0 or reply.transmit == 0:
        raise BadReply("a zero receive or transmit timestamp")


def sample(reply: Reply, server: str, t1: float, t4: float) -> Sample:
    """The offset and delay of a checked reply; ``t1`` sent and ``t4`` received, local."""
    t2, t3 = to_unix(reply.receive), to_unix(reply.transmit)
    offset = ((t2 - t1) + (t3 - t4)) / 2
    delay = (t4 - t1) - (t3 - t2)
    return Sample(server=server, offset=offset, delay=max(0.0, delay),
                  stratum=reply.stratum, local=t4)


def split_server(spec: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[V6]`` or ``[V6]:PORT``; raises ValueError when not one."""
    spec = spec.strip()
    port = PORT
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{spec!r} is not [ADDRESS] or [ADDRESS]:PORT")
        port_text = rest[1:] if rest else ""
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
    else:
        host, port_text = spec, ""
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{spec!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    if not host or any(c.isspace() or c in "/?#@" for c in host):
        raise ValueError(f"{spec!r} is not a host name or address")
    return host, port


def query(server: str, *, timeout: float = DEFAULT_TIMEOUT,
          clock: Callable[[], float] = time.time) -> Sample:
    """One request to ``server`` (``HOST[:PORT]``), one reply within ``timeout`` seconds.

    Raises :class:`BadReply` (with the reason) for anything but a good answer: a name
    that does not resolve, no answer in time, a reply that fails :func:`check_reply`.
    Replies from another address, or that are not for this request, are skipped while
    the time lasts.
    """
    try:
        host, port = split_server(server)
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_DGRAM)
    except (ValueError, OSError) as exc:
        raise BadReply(f"{server}: {exc}") from None
    family, kind, proto, _name, address = infos[0]
    deadline = time.monotonic() + timeout
    with socket.socket(family, kind, proto) as sock:
        try:
            sock.connect(address)  # the kernel drops datagrams from any other address
            t1 = clock()
            sent = (to_ntp(t1) & ~0xFFFF) | int.from_bytes(os.urandom(2), "big")
            sock.send(encode_request(sent))
            last = "no answer"
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data = sock.recv(MAX_REPLY + 1)
                except TimeoutError:
                    break
                t4 = clock()
                try:
                    reply = parse_reply(data)
                    check_reply(reply, sent)
                except BadReply as exc:
                    last = str(exc)
                    if exc.final:
                        raise BadReply(f"{server}: {exc}", final=True) from None
                    continue
                return sample(reply, server, t1, t4)
        except OSError as exc:
            raise BadReply(f"{server}: {exc.strerror or exc}") from None
    raise BadReply(f"{server}: {last} within {timeout:g} s")


def query_first(servers: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT,
                clock: Callable[[], float] = time.time,
                ask: Callable[..., Sample] | None = None,
                ) -> tuple[Sample | None, list[str]]:
    """Ask ``servers`` in order; the first good sample, and why each one before failed."""
    ask = ask or query
    failures: list[str] = []
    for server in servers:
        try:
            return ask(server, timeout=timeout, clock=clock), failures
        except BadReply as exc:
            failures.append(str(exc))
    return None, failures
