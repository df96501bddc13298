"""LLDP frames for the tests, built by hand from IEEE 802.1AB's TLV layout."""

from __future__ import annotations

import socket
import struct

from bootpull.lldp import ETHERTYPE, GROUP


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!H", (kind << 9) | len(value)) + value


def frame(*, chassis_mac: bytes = bytes.fromhex("00163e112233"), port: str = "ge-0/0/12",
          name: str = "switch-7", source: bytes = bytes.fromhex("00163e112233"),
          management: str | None = "192.0.2.7") -> bytes:
    tlvs = [tlv(1, b"\x04" + chassis_mac), tlv(2, b"\x05" + port.encode()),
            tlv(3, struct.pack("!H", 120)), tlv(4, b"uplink to rack 3"),
            tlv(5, name.encode()), tlv(6, b"a switch")]
    if management is not None:
        address = socket.inet_aton(management)
        tlvs.append(tlv(8, bytes([1 + len(address), 1]) + address + b"\x02\x00\x00\x00\x01\x00"))
    return GROUP + source + struct.pack("!H", ETHERTYPE) + b"".join(tlvs) + tlv(0, b"")


SENDER = """
import socket, sys, time
sys.path.insert(0, sys.argv[3])
from lldp_frames import frame
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((sys.argv[1], 0))
print("ready", flush=True)
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    sock.send(frame())
    time.sleep(0.2)
"""
