"""A small scapy DHCP server that answers with one kind of malformed reply.

Run inside a lab namespace (see :meth:`bootpull_lab.netlab.Lab.hostile_dhcp`):

    python -m bootpull_lab.hostile_dhcp --serve s1:loop-119:10.77.1.1:10.77.1.77:24 \\
        --serve s2:nak:10.77.2.1:10.77.2.77:24

It answers DISCOVER with an OFFER and REQUEST with an ACK (or whatever the case
says), built byte by byte so that the damage is exactly what the case names.
:data:`CASES` maps each case to a one-line description.
"""

from __future__ import annotations

import argparse
import select
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from bootpull import dhcp

CASES: dict[str, str] = {
    "truncated": "a 100-byte reply, shorter than any DHCP message",
    "option-overrun": "an option whose length runs past the end of the packet",
    "no-server-id": "an OFFER without a server identifier (option 54)",
    "wrong-xid": "replies for another transaction id",
    "bad-mask": "a subnet mask (option 1) three bytes long",
    "bad-43": "option 43 whose sub-option 1 runs past the end of option 43",
    "bad-43-good-67": "a broken option 43 but a good option 67 URL",
    "loop-119": "an option 119 domain list with a compression loop, and no option 15",
    "non-utf8-67": "an option 67 that is not UTF-8",
    "overlong-hostname": "an option 12 hostname of 255 bytes",
    "nak": "a NAK for every REQUEST",
    "garbage": "random bytes for every request, then nothing else",
    "file-field": "not hostile: a good lease with the URL in the BOOTP file field only, "
                  "as QEMU's user network sends it",
}


def _request_info(payload: bytes) -> tuple[int, bytes, int] | None:
    """(xid, chaddr, message type) of a BOOTREQUEST, or None."""
    if len(payload) < 244 or payload[0] != dhcp.BOOTREQUEST:
        return None
    xid = struct.unpack_from("!I", payload, 4)[0]
    chaddr = payload[28:34]
    found: dict[int, bytearray] = {}
    try:
        dhcp._scan_options(payload[240:], "options", found)
    except dhcp.MalformedDhcp:
        return None
    kind = found.get(dhcp.MESSAGE_TYPE)
    return xid, chaddr, kind[0] if kind else 0


def build_reply(case: str, *, kind: int, xid: int, chaddr: bytes, server: IPv4Address,
                offer: IPv4Address, prefix: int) -> bytes:
    """The reply payload for ``case`` to a request of ``kind`` (DISCOVER or REQUEST)."""
    if case == "garbage":
        return bytes(range(256)) * 2
    if case == "truncated":
        return b"\x02\x01\x06\x00" + bytes(96)
    reply_type = dhcp.OFFER if kind == dhcp.DISCOVER else dhcp.ACK
    if case == "nak" and kind == dhcp.REQUEST:
        reply_type = dhcp.NAK
    if case == "wrong-xid":
        xid = (xid + 1) & 0xFFFFFFFF
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    options: list[tuple[int, bytes]] = [(dhcp.MESSAGE_TYPE, bytes([reply_type]))]
    if case != "no-server-id":
        options.append((dhcp.SERVER_ID, server.packed))
    if reply_type != dhcp.NAK:
        options += [
            (dhcp.SUBNET_MASK, struct.pack("!I", mask)[:3] if case == "bad-mask"
             else struct.pack("!I", mask)),
            (dhcp.ROUTER, server.packed),
            (dhcp.DNS_SERVER, server.packed),
            (dhcp.LEASE_TIME, struct.pack("!I", 3600)),
        ]
    raw_tail = b""
    if case in ("bad-43", "bad-43-good-67"):
        options.append((dhcp.VENDOR_SPECIFIC, b"\x01\x40http://10.0.0.1/"))
    if case == "bad-43-good-67":
        options.append((dhcp.BOOTFILE, f"http://{server}/repo.git\0".encode()))
    if case == "loop-119":
        options.append((dhcp.DOMAIN_SEARCH, b"\x03lab\x04test\x00\x03foo\xc0\x0a"))
    if case == "non-utf8-67":
        options.append((dhcp.BOOTFILE, b"http://\xff\xfe\xfd/repo.git"))
    if case == "overlong-hostname":
        options.append((dhcp.HOSTNAME, b"a" * 255))
    if case == "option-overrun":
        raw_tail = bytes([dhcp.HOSTNAME, 200]) + b"node"
    file = f"http://{server}/from-file.git".encode() if case == "file-field" else b""
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s", dhcp.BOOTREPLY, 1, 6, 0, xid, 0, 0, bytes(4),
        offer.packed if reply_type != dhcp.NAK else bytes(4), server.packed, bytes(4),
        chaddr.ljust(16, b"\0"), bytes(64), file.ljust(128, b"\0"))
    body = dhcp.encode_options(options)
    if raw_tail:
        body = body[:-1] + raw_tail  # no END: the overrunning option is the last thing
    return header + dhcp.MAGIC_COOKIE + body


@dataclass(frozen=True)
class Post:
    """One interface the server answers on, and how."""

    iface: str
    case: str
    server: IPv4Address
    offer: IPv4Address
    prefix: int

    @classmethod
    def parse(cls, text: str) -> Post:
        """``IFACE:CASE:SERVER_IP:OFFER_IP:PREFIX``."""
        iface, case, server, offer, prefix = text.split(":")
        if case not in CASES:
            raise ValueError(f"unknown case {case!r}")
        return cls(iface, case, IPv4Address(server), IPv4Address(offer), int(prefix))


def serve(posts: list[Post], ready: Callable[[], None], max_seconds: float = 900.0) -> None:
    """Answer on every post's interface (one process, one socket each) until killed."""
    import time

    from scapy.arch.linux import L2Socket
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    sockets: dict[Any, Post] = {L2Socket(iface=p.iface, type=0x0800): p for p in posts}
    ready()
    answered_garbage: set[str] = set()
    end = time.monotonic() + max_seconds
    while time.monotonic() < end:
        readable, _, _ = select.select(list(sockets), [], [], 1.0)
        for sock in readable:
            post = sockets[sock]
            _cls, data, _ts = sock.recv_raw()
            if not data:
                continue
            frame = Ether(data)
            if UDP not in frame or frame[UDP].dport != 67:
                continue
            info = _request_info(bytes(frame[UDP].payload))
            if info is None:
                continue
            xid, chaddr, kind = info
            if kind not in (dhcp.DISCOVER, dhcp.REQUEST):
                continue
            if post.case == "garbage":
                if post.iface in answered_garbage:
                    continue
                answered_garbage.add(post.iface)
            payload = build_reply(post.case, kind=kind, xid=xid, chaddr=chaddr,
                                  server=post.server, offer=post.offer, prefix=post.prefix)
            mac = ":".join(f"{b:02x}" for b in chaddr)
            sock.send(Ether(dst=mac) / IP(src=str(post.server), dst="255.255.255.255")
                      / UDP(sport=67, dport=68) / Raw(load=payload))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--serve", action="append", required=True, type=Post.parse,
                        metavar="IFACE:CASE:SERVER_IP:OFFER_IP:PREFIX",
                        help=f"repeatable; cases: {', '.join(CASES)}")
    parser.add_argument("--ready", type=Path, help="touch this file once listening")
    args = parser.parse_args()

    def ready() -> None:
        if args.ready:
            args.ready.touch()

    serve(args.serve, ready)


if __name__ == "__main__":
    main()
