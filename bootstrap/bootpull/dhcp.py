"""DHCP and BOOTP messages as bytes in, typed values out. No I/O, no scapy.

The node's DHCP client (:mod:`bootpull.dhcp_client`) only moves the bytes built and
parsed here. Every reply is hostile until proven otherwise:

- :func:`parse_reply` checks the BOOTP frame (RFC 951/2131), the magic cookie, every
  option's length (RFC 2132), option overload (option 52) and long options split
  over several instances (RFC 3396). A frame that cannot be read raises
  :class:`MalformedDhcp` whose text is the reason.
- :func:`lease_from_reply` decodes the options bootpull uses into a :class:`Lease`.
  An option that is essential to an address (53, 54, 1, ``yiaddr``) and wrong rejects
  the reply; any other option that is wrong is left out of the lease and its reason
  kept in :attr:`Lease.problems`, so the source that needed it can say why it was
  passed over, and the node can still use the rest.

Strings from the wire (hostnames, domains, URLs, the BOOTP ``file`` and ``sname``
fields) must be UTF-8 without control characters and within a length limit. Domain
lists (option 119, RFC 3397) use RFC 1035 compression: a pointer must point strictly
backwards, which makes loops impossible, and a name may not exceed 255 octets.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

# Message types (option 53, RFC 2132 §9.6)
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
MESSAGE_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK",
                 7: "RELEASE", 8: "INFORM"}

# Option codes
SUBNET_MASK = 1
ROUTER = 3
DNS_SERVER = 6
LOG_SERVER = 7
HOSTNAME = 12
DOMAIN_NAME = 15
NTP_SERVERS = 42
VENDOR_SPECIFIC = 43
REQUESTED_IP = 50
LEASE_TIME = 51
OVERLOAD = 52
MESSAGE_TYPE = 53
SERVER_ID = 54
PARAMETER_REQUEST_LIST = 55
MESSAGE = 56
MAX_MESSAGE_SIZE = 57
RENEWAL_TIME = 58  # T1 (RFC 2132 §9.11)
REBINDING_TIME = 59  # T2 (RFC 2132 §9.12)
VENDOR_CLASS = 60
CLIENT_ID = 61
TFTP_SERVER = 66
BOOTFILE = 67
DOMAIN_SEARCH = 119
PAD = 0
END = 255

#: bootpull's vendor class (option 60); dnsmasq matches it with ``vendor:bootpull``.
VENDOR_CLASS_ID = b"bootpull"
#: Option 43 sub-options (docs/contract.md §2.2).
SUBOPT_REPO_URL = 1
SUBOPT_REPORT_URL = 2

#: What bootpull asks for (option 55), in the order of RFC 2132.
PARAMETERS = (SUBNET_MASK, ROUTER, DNS_SERVER, LOG_SERVER, HOSTNAME, DOMAIN_NAME,
              NTP_SERVERS, VENDOR_SPECIFIC, LEASE_TIME, SERVER_ID, RENEWAL_TIME, REBINDING_TIME,
              TFTP_SERVER, BOOTFILE, DOMAIN_SEARCH)

MAGIC_COOKIE = b"\x63\x82\x53\x63"
BOOTREQUEST, BOOTREPLY = 1, 2
HTYPE_ETHERNET = 1
FLAG_BROADCAST = 0x8000
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
HEADER_SIZE = _HEADER.size  # 236, then the 4-byte magic cookie
#: Our largest accepted reply: more than any Ethernet frame carries.
MAX_REPLY_SIZE = 4096
#: Longest URL accepted from option 43 or 67, after RFC 3396 concatenation.
MAX_URL = 2048
MAX_NAME = 253


class MalformedDhcp(ValueError):
    """A reply that cannot be used. ``str(exc)`` is the reason, for ``tried[]``."""


# -- building requests -----------------------------------------------------------------


def discover_options(*, mac: bytes, hostname: str | None = None) -> list[tuple[int, bytes]]:
    """The options of a DHCPDISCOVER, in the order they are sent."""
    opts = [
        (MESSAGE_TYPE, bytes([DISCOVER])),
        (CLIENT_ID, b"\x01" + mac),
        (MAX_MESSAGE_SIZE, struct.pack("!H", 1472)),
        (VENDOR_CLASS, VENDOR_CLASS_ID),
        (PARAMETER_REQUEST_LIST, bytes(PARAMETERS)),
    ]
    if hostname:
        opts.append((HOSTNAME, hostname.encode("ascii")))
    return opts


def request_options(
    *, mac: bytes, requested_ip: IPv4Address, server_id: IPv4Address,
    hostname: str | None = None,
) -> list[tuple[int, bytes]]:
    """The options of a DHCPREQUEST in the SELECTING state (RFC 2131 §4.3.2)."""
    opts = [
        (MESSAGE_TYPE, bytes([REQUEST])),
        (CLIENT_ID, b"\x01" + mac),
        (REQUESTED_IP, requested_ip.packed),
        (SERVER_ID, server_id.packed),
        (MAX_MESSAGE_SIZE, struct.pack("!H", 1472)),
        (VENDOR_CLASS, VENDOR_CLASS_ID),
        (PARAMETER_REQUEST_LIST, bytes(PARAMETERS)),
    ]
    if hostname:
        opts.append((HOSTNAME, hostname.encode("ascii")))
    return opts


def renew_options(*, mac: bytes, hostname: str | None = None) -> list[tuple[int, bytes]]:
    """A DHCPREQUEST in the RENEWING or REBINDING state (RFC 2131 §4.3.2): the address
    goes in ``ciaddr`` (see :func:`encode_request`), never in option 50 or 54."""
    opts = [(MESSAGE_TYPE, bytes([REQUEST])), (CLIENT_ID, b"\x01" + mac),
            (MAX_MESSAGE_SIZE, struct.pack("!H", 1472)), (VENDOR_CLASS, VENDOR_CLASS_ID),
            (PARAMETER_REQUEST_LIST, bytes(PARAMETERS))]
    if hostname:
        opts.append((HOSTNAME, hostname.encode("ascii")))
    return opts


def decline_options(*, mac: bytes, address: IPv4Address, server_id: IPv4Address,
                    kind: int = DECLINE) -> list[tuple[int, bytes]]:
    """A DHCPDECLINE (the address is in use, RFC 2131 §4.4.1) or, with ``kind=RELEASE``,
    a DHCPRELEASE (§4.4.6; the address then goes in ``ciaddr`` too)."""
    opts = [(MESSAGE_TYPE, bytes([kind])), (CLIENT_ID, b"\x01" + mac),
            (SERVER_ID, server_id.packed)]
    if kind == DECLINE:
        opts.insert(2, (REQUESTED_IP, address.packed))
    return opts


def encode_options(options: Iterable[tuple[int, bytes]]) -> bytes:
    """Options as TLVs, values over 255 bytes split per RFC 3396, then END."""
    out = bytearray()
    for code, value in options:
        if not 0 < code < 255:
            raise ValueError(f"option code {code} is not 1..254")
        chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [b""]
        for chunk in chunks:
            out += bytes([code, len(chunk)]) + chunk
    out.append(END)
    return bytes(out)


def encode_request(
    *, xid: int, mac: bytes, options: Iterable[tuple[int, bytes]], secs: int = 0,
    broadcast: bool = False, ciaddr: IPv4Address | None = None,
) -> bytes:
    """A whole BOOTREQUEST (the UDP payload), padded to the BOOTP minimum of 300 bytes."""
    if len(mac) != 6:
        raise ValueError("an Ethernet MAC has 6 octets")
    header = _HEADER.pack(
        BOOTREQUEST, HTYPE_ETHERNET, 6, 0, xid & 0xFFFFFFFF, min(secs, 0xFFFF),
        FLAG_BROADCAST if broadcast else 0, ciaddr.packed if ciaddr else bytes(4),
        bytes(4), bytes(4), bytes(4),
        mac.ljust(16, b"\0"), bytes(64), bytes(128),
    )
    packet = header + MAGIC_COOKIE + encode_options(options)
    return packet.ljust(300, b"\0")


# -- parsing replies -------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A BOOTREPLY whose frame and option encoding are sound. Values are still raw."""

    xid: int
    yiaddr: IPv4Address
    siaddr: IPv4Address
    chaddr: bytes
    sname: bytes
    file: bytes
    options: dict[int, bytes]
    #: Which of ``file`` and ``sname`` carried options (option 52) rather than text.
    overloaded: frozenset[str] = frozenset()

    @property
    def message_type(self) -> int | None:
        value = self.options.get(MESSAGE_TYPE)
        return value[0] if value and len(value) == 1 else None


def _scan_options(data: bytes, where: str, into: dict[int, bytearray]) -> None:
    """Read TLVs from ``data`` into ``into``, concatenating repeats (RFC 3396)."""
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == PAD:
            i += 1
            continue
        if code == END:
            return
        if i + 1 >= n:
            raise MalformedDhcp(f"option {code} in {where} has no length byte")
        length = data[i + 1]
        if i + 2 + length > n:
            raise MalformedDhcp(
                f"option {code} in {where} says {length} bytes but only {n - i - 2} remain"
            )
        into.setdefault(code, bytearray()).extend(data[i + 2:i + 2 + length])
        i += 2 + length
    if where == "options":
        raise MalformedDhcp("the options have no END (255) marker")


def parse_reply(data: bytes) -> Reply:
    """Check a BOOTREPLY's frame and options; raise :class:`MalformedDhcp` with the reason."""
    if len(data) < HEADER_SIZE + 4:
        raise MalformedDhcp(f"{len(data)} bytes is too short for a DHCP message "
                            f"(at least {HEADER_SIZE + 4})")
    if len(data) > MAX_REPLY_SIZE:
        raise MalformedDhcp(f"{len(data)} bytes is over the limit of {MAX_REPLY_SIZE}")
    (op, htype, hlen, _hops, xid, _secs, _flags, _ciaddr, yiaddr, siaddr, _giaddr, chaddr,
     sname, file) = _HEADER.unpack_from(data)
    if op != BOOTREPLY:
        raise MalformedDhcp(f"op {op} is not a BOOTREPLY (2)")
    if htype != HTYPE_ETHERNET or hlen != 6:
        raise MalformedDhcp(f"hardware type {htype}/length {hlen} is not Ethernet (1/6)")
    if data[HEADER_SIZE:HEADER_SIZE + 4] != MAGIC_COOKIE:
        raise MalformedDhcp("no DHCP magic cookie (a plain BOOTP reply is not enough)")
    found: dict[int, bytearray] = {}
    _scan_options(data[HEADER_SIZE + 4:], "options", found)
    overloaded: set[str] = set()
    if OVERLOAD in found:
        flag = bytes(found.pop(OVERLOAD))
        if len(flag) != 1 or flag[0] not in (1, 2, 3):
            raise MalformedDhcp(f"option 52 (overload) must be one byte 1, 2 or 3, not {flag!r}")
        # RFC 2131 §4.1: options, then file, then sname.
        if flag[0] & 1:
            _scan_options(file, "the file field (option 52)", found)
            overloaded.add("file")
        if flag[0] & 2:
            _scan_options(sname, "the sname field (option 52)", found)
            overloaded.add("sname")
    return Reply(
        xid=xid, yiaddr=IPv4Address(yiaddr), siaddr=IPv4Address(siaddr),
        chaddr=bytes(chaddr[:6]), sname=bytes(sname), file=bytes(file),
        options={code: bytes(value) for code, value in found.items()},
        overloaded=frozenset(overloaded),
    )


# -- decoding option values --------------------------------------------------------------


def decode_text(raw: bytes, what: str, *, limit: int) -> str:
    """A string option: UTF-8, no control characters, trailing NULs dropped."""
    text_bytes = raw.rstrip(b"\0")
    if b"\0" in text_bytes:
        raise MalformedDhcp(f"{what} has a NUL byte inside it")
    if len(text_bytes) > limit:
        raise MalformedDhcp(f"{what} is {len(text_bytes)} bytes, over the limit of {limit}")
    try:
        text = text_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedDhcp(f"{what} is not valid UTF-8 (byte {exc.start})") from None
    bad = next((c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0), None)
    if bad is not None:
        raise MalformedDhcp(f"{what} contains the control character {bad!r}")
    return text


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def check_domain(name: str, what: str) -> str:
    """A DNS name, as text: labels of letters, digits, ``-`` and ``_``; lowercase."""
    name = name.rstrip(".")
    if not name:
        raise MalformedDhcp(f"{what} is empty")
    if len(name) > MAX_NAME:
        raise MalformedDhcp(f"{what} is {len(name)} characters, over the limit of {MAX_NAME}")
    for label in name.split("."):
        if not _LABEL.match(label):
            raise MalformedDhcp(f"{what} {name[:80]!r} has an invalid label {label[:63]!r}")
    return name.lower()


def decode_addresses(raw: bytes, what: str) -> tuple[IPv4Address, ...]:
    if not raw or len(raw) % 4:
        raise MalformedDhcp(f"{what} has length {len(raw)}, not a non-zero multiple of 4")
    return tuple(IPv4Address(raw[i:i + 4]) for i in range(0, len(raw), 4))


def decode_prefix(raw: bytes) -> int:
    """Option 1 as a prefix length; the mask must be contiguous."""
    if len(raw) != 4:
        raise MalformedDhcp(f"option 1 (subnet mask) has length {len(raw)}, must be 4")
    value = int.from_bytes(raw, "big")
    prefix = bin(value).count("1")
    if value != (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF or prefix == 0:
        raise MalformedDhcp(f"option 1 (subnet mask) {IPv4Address(raw)} is not a valid netmask")
    return prefix


def decode_domain_list(raw: bytes) -> tuple[str, ...]:
    """Option 119 (RFC 3397): RFC 1035 names, compressed, pointers into the option itself."""
    names: list[str] = []
    pos = 0
    while pos < len(raw):
        labels: list[str] = []
        cursor = pos
        next_name: int | None = None  # where the following name starts, once known
        floor = pos  # a pointer must point before the label that holds it
        total = 0
        while True:
            if cursor >= len(raw):
                raise MalformedDhcp(f"option 119: name at offset {pos} runs past the end")
            length = raw[cursor]
            if length == 0:
                if next_name is None:
                    next_name = cursor + 1
                break
            if length & 0xC0 == 0xC0:
                if cursor + 1 >= len(raw):
                    raise MalformedDhcp(f"option 119: pointer at offset {cursor} is cut short")
                target = ((length & 0x3F) << 8) | raw[cursor + 1]
                if next_name is None:
                    next_name = cursor + 2
                if target >= floor:
                    raise MalformedDhcp(
                        f"option 119: pointer at offset {cursor} to {target} does not point "
                        "backwards (a compression loop)"
                    )
                cursor = floor = target
                continue
            if length & 0xC0:
                raise MalformedDhcp(f"option 119: label type {length >> 6} at offset {cursor} "
                                    "is not supported")
            end = cursor + 1 + length
            if end > len(raw):
                raise MalformedDhcp(f"option 119: label at offset {cursor} runs past the end")
            total += length + 1
            if total > 255:
                raise MalformedDhcp(f"option 119: name at offset {pos} is over 255 octets")
            try:
                labels.append(raw[cursor + 1:end].decode("ascii"))
            except UnicodeDecodeError:
                raise MalformedDhcp(f"option 119: label at offset {cursor} is not ASCII") from None
            cursor = end
        names.append(check_domain(".".join(labels), "option 119 name"))
        pos = next_name
    if not names:
        raise MalformedDhcp("option 119 is empty")
    return tuple(names)


def encode_domain_list(names: Sequence[str], *, compress: bool = True) -> bytes:
    """The inverse of :func:`decode_domain_list` (for tests and the lab's fake servers)."""
    out = bytearray()
    seen: dict[tuple[str, ...], int] = {}
    for name in names:
        labels = tuple(name.rstrip(".").split("."))
        for i in range(len(labels)):
            suffix = labels[i:]
            if compress and suffix in seen:
                out += struct.pack("!H", 0xC000 | seen[suffix])
                break
            if len(out) < 0x3FFF:
                seen[suffix] = len(out)
            label = labels[i].encode("ascii")
            out += bytes([len(label)]) + label
        else:
            out.append(0)
    return bytes(out)


def decode_suboptions(raw: bytes) -> dict[int, bytes]:
    """Option 43 as vendor sub-options (code, length, value), RFC 2132 §8.4."""
    found: dict[int, bytearray] = {}
    i = 0
    while i < len(raw):
        code = raw[i]
        if code == PAD:
            i += 1
            continue
        if code == END:
            break
        if i + 1 >= len(raw):
            raise MalformedDhcp(f"option 43: sub-option {code} has no length byte")
        length = raw[i + 1]
        if i + 2 + length > len(raw):
            raise MalformedDhcp(f"option 43: sub-option {code} says {length} bytes but only "
                                f"{len(raw) - i - 2} remain")
        found.setdefault(code, bytearray()).extend(raw[i + 2:i + 2 + length])
        i += 2 + length
    return {code: bytes(value) for code, value in found.items()}


def check_url(text: str, what: str) -> str:
    """An ``http://`` or ``https://`` URL with a host, a port that is a port, no spaces
    and no control characters: a URL the fetch can use as it is. Anything else raises
    :class:`MalformedDhcp` with the reason (the source then counts as failed)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise MalformedDhcp(f"{what} {text[:100]!r} contains a control character")
    if not re.match(r"^https?://[^/\s?#]+", text, re.IGNORECASE) or any(
            c.isspace() for c in text):
        raise MalformedDhcp(f"{what} {text[:100]!r} is not an http:// or https:// URL")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError as exc:
        raise MalformedDhcp(f"{what} {text[:100]!r} is not a usable URL: {exc}") from None
    if not parts.hostname:
        raise MalformedDhcp(f"{what} {text[:100]!r} has no host name")
    return text


# -- the lease -------------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    """What one DHCP server told one interface. ``None``/empty means "not given"."""

    xid: int
    ip: IPv4Address
    server_id: IPv4Address
    prefix: int
    routers: tuple[IPv4Address, ...] = ()
    dns_servers: tuple[IPv4Address, ...] = ()
    log_servers: tuple[IPv4Address, ...] = ()
    hostname: str | None = None
    domain: str | None = None
    search: tuple[str, ...] = ()
    lease_time: int | None = None
    renewal_time: int | None = None  # option 58, T1
    rebinding_time: int | None = None  # option 59, T2
    tftp_server: str | None = None
    bootfile: str | None = None  # option 67
    file: str | None = None  # the BOOTP file field
    sname: str | None = None  # the BOOTP sname field
    vendor: dict[int, bytes] = field(default_factory=dict)  # option 43 sub-options
    vendor_class_echo: bool = False
    ntp_servers: tuple[IPv4Address, ...] = ()  # option 42 (RFC 2132 §8.3), in order
    #: option code (0 for the BOOTP fields) -> why it was left out of this lease
    problems: dict[int, str] = field(default_factory=dict)
    #: the monotonic time the ACK came (set by the client; T1, T2 and the end count from it)
    bound_at: float = 0.0

    @property
    def gateway(self) -> IPv4Address | None:
        return self.routers[0] if self.routers else None

    @property
    def dns_domain(self) -> str | None:
        """Option 15, or failing that the first entry of option 119 (docs/contract.md §2.3)."""
        return self.domain or (self.search[0] if self.search else None)


def lease_from_reply(reply: Reply, *, expect: int = ACK) -> Lease:
    """Decode an OFFER or ACK. Raise :class:`MalformedDhcp` if it cannot give an address."""
    opts = reply.options
    kind = reply.message_type
    if kind != expect:
        name = MESSAGE_TYPES.get(kind or 0, f"type {kind}")
        raise MalformedDhcp(f"expected a {MESSAGE_TYPES[expect]} but got a {name}")
    if SERVER_ID not in opts:
        raise MalformedDhcp(f"the {MESSAGE_TYPES[expect]} has no server identifier (option 54)")
    server = decode_addresses(opts[SERVER_ID], "option 54 (server identifier)")
    if len(server) != 1:
        raise MalformedDhcp("option 54 (server identifier) must hold exactly one address")
    ip = reply.yiaddr
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback or ip == IPv4Address(
            "255.255.255.255"):
        raise MalformedDhcp(f"the offered address {ip} cannot be used on an interface")
    problems: dict[int, str] = {}
    if SUBNET_MASK in opts:
        prefix = decode_prefix(opts[SUBNET_MASK])
    else:
        first = ip.packed[0]
        prefix = 8 if first < 128 else 16 if first < 192 else 24
        problems[SUBNET_MASK] = f"no subnet mask (option 1): assumed the classful /{prefix}"

    def optional(code: int, decode: Callable[[bytes], T]) -> T | None:
        if code not in opts:
            return None
        try:
            return decode(opts[code])
        except MalformedDhcp as exc:
            problems[code] = str(exc)
            return None

    def text(what: str, limit: int) -> Callable[[bytes], str]:
        return lambda raw: decode_text(raw, what, limit=limit)

    def dns_name(what: str) -> Callable[[bytes], str]:
        return lambda raw: check_domain(decode_text(raw, what, limit=MAX_NAME), what)

    def addresses(what: str) -> Callable[[bytes], tuple[IPv4Address, ...]]:
        return lambda raw: decode_addresses(raw, what)

    file_text = sname_text = None
    if "file" not in reply.overloaded and reply.file.strip(b"\0"):
        try:
            file_text = decode_text(_cstring(reply.file), "the BOOTP file field", limit=128)
        except MalformedDhcp as exc:
            problems[0] = str(exc)
    if "sname" not in reply.overloaded and reply.sname.strip(b"\0"):
        try:
            sname_text = decode_text(_cstring(reply.sname), "the BOOTP sname field", limit=64)
        except MalformedDhcp as exc:
            problems.setdefault(0, str(exc))
    return Lease(
        xid=reply.xid, ip=ip, server_id=server[0], prefix=prefix,
        routers=optional(ROUTER, addresses("option 3 (router)")) or (),
        dns_servers=optional(DNS_SERVER, addresses("option 6 (DNS servers)")) or (),
        log_servers=optional(LOG_SERVER, addresses("option 7 (log servers)")) or (),
        hostname=optional(HOSTNAME, dns_name("option 12 (hostname)")),
        domain=optional(DOMAIN_NAME, dns_name("option 15 (domain name)")),
        search=optional(DOMAIN_SEARCH, decode_domain_list) or (),
        lease_time=optional(LEASE_TIME, _u32("option 51 (lease time)")),
        renewal_time=optional(RENEWAL_TIME, _u32("option 58 (renewal time)")),
        rebinding_time=optional(REBINDING_TIME, _u32("option 59 (rebinding time)")),
        tftp_server=optional(TFTP_SERVER, text("option 66 (TFTP server)", MAX_NAME)),
        bootfile=optional(BOOTFILE, text("option 67 (bootfile)", MAX_URL)),
        file=file_text, sname=sname_text,
        vendor=optional(VENDOR_SPECIFIC, decode_suboptions) or {},
        vendor_class_echo=opts.get(VENDOR_CLASS) == VENDOR_CLASS_ID,
        ntp_servers=optional(NTP_SERVERS, addresses("option 42 (NTP servers)")) or (),
        problems=problems,
    )


def _u32(what: str) -> Callable[[bytes], int]:
    def decode(raw: bytes) -> int:
        if len(raw) != 4:
            raise MalformedDhcp(f"{what} has length {len(raw)}, must be 4")
        return int.from_bytes(raw, "big")
    return decode


def _cstring(raw: bytes) -> bytes:
    """A fixed-size BOOTP field: the bytes before the first NUL."""
    return raw.split(b"\0", 1)[0]


def describe_problems(lease: Lease, codes: Iterable[int]) -> str:
    """The recorded problems with ``codes``, joined for a ``tried[]`` reason."""
    return "; ".join(lease.problems[c] for c in codes if c in lease.problems)
