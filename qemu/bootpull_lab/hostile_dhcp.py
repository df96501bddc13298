"""A small scapy DHCP server that answers with one kind of malformed reply.

Run inside a lab namespace (see :meth:`bootpull_lab.netlab.Lab.hostile_dhcp`):

    python -m bootpull_lab.hostile_dhcp --iface s1 --server-ip 10.77.1.1 \\
        --offer-ip 10.77.1.77 --prefix 24 --case loop-119

It answers DISCOVER with an OFFER and REQUEST with an ACK (or whatever the case
says), built byte by byte so that the damage is exactly what the case names.
:data:`CASES` maps each case to a one-line description.
"""

from __future__ import annotations

import argparse
import select
import struct
from collections.abc import Callable
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
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s", dhcp.BOOTREPLY, 1, 6, 0, xid, 0, 0, bytes(4),
        offer.packed if reply_type != dhcp.NAK else bytes(4), server.packed, bytes(4),
        chaddr.ljust(16, b"\0"), bytes(64), bytes(128))
    body = dhcp.encode_options(options)
    if raw_tail:
        body = body[:-1] + raw_tail  # no END: the overrunning option is the last thing
    return header + dhcp.MAGIC_COOKIE + body


def serve(iface: str, case: str, server: IPv4Address, offer: IPv4Address, prefix: int,
          ready: Callable[[], None], max_seconds: float = 600.0) -> None:
    import time

    from scapy.arch.linux import L2Socket
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    sock: Any = L2Socket(iface=iface, type=0x0800)
    ready()
    answered_garbage = False
    end = time.monotonic() + max_seconds
    while time.monotonic() < end:
        readable, _, _ = select.select([sock], [], [], 1.0)
        if not readable:
            continue
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
        if case == "garbage" and answered_garbage:
            continue
        answered_garbage = True
        payload = build_reply(case, kind=kind, xid=xid, chaddr=chaddr, server=server,
                              offer=offer, prefix=prefix)
        mac = ":".join(f"{b:02x}" for b in chaddr)
        sock.send(Ether(dst=mac) / IP(src=str(server), dst="255.255.255.255")
                  / UDP(sport=67, dport=68) / Raw(load=payload))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--iface", required=True)
    parser.add_argument("--case", required=True, choices=sorted(CASES))
    parser.add_argument("--server-ip", required=True, type=IPv4Address)
    parser.add_argument("--offer-ip", required=True, type=IPv4Address)
    parser.add_argument("--prefix", type=int, default=24)
    parser.add_argument("--ready", type=Path, help="touch this file once listening")
    args = parser.parse_args()

    def ready() -> None:
        if args.ready:
            args.ready.touch()

    serve(args.iface, args.case, args.server_ip, args.offer_ip, args.prefix, ready)


if __name__ == "__main__":
    main()
