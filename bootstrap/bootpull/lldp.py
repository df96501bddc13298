"""The LLDP neighbour (IEEE 802.1AB): which switch, and which port, the box is plugged into.

An admin who enrolls a new box (docs/admin.md, "Trust a box's key") wants to know where
it is. Switches send an LLDP frame (ethertype 0x88cc, to 01:80:c2:00:00:0e) every 30 s
or so; :class:`Listener` listens on the node's interface, passively, from discovery on,
for at most ``window`` seconds, and hands the first neighbour it hears to a callback.
The node then repeats its ``identity`` event with ``facts.lldp``. Nothing is sent.

Only the standard library: an ``AF_PACKET`` socket for the one ethertype, and the
multicast membership that makes a real NIC pass the frames up. Without the privilege
for raw sockets (a test run as a user) the listener says so in one debug line and does
nothing. :func:`parse` reads the TLVs; anything malformed is ``None``, never an error.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

ETHERTYPE = 0x88CC
GROUP = bytes.fromhex("0180c200000e")  # nearest-bridge LLDP multicast
WINDOW = 120.0  # seconds of listening, at most
_SOL_PACKET = 263
_PACKET_ADD_MEMBERSHIP = 1
_PACKET_MR_MULTICAST = 0
_TEXT = 200  # characters kept of any string
_MAC_SUBTYPE = {"chassis": 4, "port": 3}
_NAME_SUBTYPES = {"chassis": (6, 7), "port": (1, 2, 5, 7)}  # interface name, local ...


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").replace("\x00", "")[:_TEXT].strip()


def _ident(kind: str, value: bytes) -> str | None:
    if not value:
        return None
    subtype, body = value[0], value[1:]
    if subtype == _MAC_SUBTYPE[kind] and len(body) == 6:
        return ":".join(f"{b:02x}" for b in body)
    if kind == "chassis" and subtype == 5 and len(body) in (5, 17) and body[0] in (1, 2):
        family = socket.AF_INET if body[0] == 1 else socket.AF_INET6
        return socket.inet_ntop(family, body[1:])
    return _text(body) or None


def parse(frame: bytes, *, ethernet: bool = True) -> dict[str, Any] | None:
    """The neighbour an LLDP frame describes (``chassis``, ``port``, ``ttl``, and when
    present ``system_name``, ``port_description``, ``system_description``,
    ``management``), or None when it is not a well-formed LLDP frame."""
    if ethernet:
        if len(frame) < 14 or struct.unpack("!H", frame[12:14])[0] != ETHERTYPE:
            return None
        frame = frame[14:]
    out: dict[str, Any] = {}
    at = 0
    while at + 2 <= len(frame):
        head = struct.unpack("!H", frame[at:at + 2])[0]
        kind, length = head >> 9, head & 0x1FF
        value = frame[at + 2:at + 2 + length]
        if len(value) != length:
            return None
        at += 2 + length
        if kind == 0:
            break
        if kind == 1:
            out["chassis"] = _ident("chassis", value)
        elif kind == 2:
            out["port"] = _ident("port", value)
        elif kind == 3 and length == 2:
            out["ttl"] = struct.unpack("!H", value)[0]
        elif kind in (4, 5, 6):
            name = {4: "port_description", 5: "system_name", 6: "system_description"}[kind]
            out[name] = _text(value)
        elif kind == 8 and length >= 2 and 1 + value[0] <= length and value[0] >= 2:
            family, address = value[1], value[2:1 + value[0]]
            with contextlib.suppress(ValueError, OSError):
                if family == 1 and len(address) == 4:
                    out["management"] = socket.inet_ntop(socket.AF_INET, address)
                elif family == 2 and len(address) == 16:
                    out["management"] = socket.inet_ntop(socket.AF_INET6, address)
    if not out.get("chassis") or not out.get("port") or "ttl" not in out:
        return None  # the three mandatory TLVs (802.1AB 8.2)
    return out


class Listener:
    """Listen for one LLDP neighbour on ``interface`` in a daemon thread; it is then in
    :attr:`neighbour` (the node's main loop reads it: reports are sent from one thread)."""

    def __init__(self, interface: str, *, window: float = WINDOW,
                 on_neighbour: Callable[[dict[str, Any]], None] | None = None,
                 debug: Callable[[str], None] | None = None) -> None:
        self.interface = interface
        self.window = window
        self._on_neighbour = on_neighbour or (lambda _found: None)
        self._debug = debug or (lambda _line: None)
        self._stop = threading.Event()
        self.neighbour: dict[str, Any] | None = None
        self._thread = threading.Thread(target=self._run, name="bootpull-lldp", daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
        except (OSError, AttributeError) as exc:
            self._debug(f"LLDP: no raw socket ({exc}); the neighbour is not listened for")
            return None
        try:
            sock.bind((self.interface, 0))
            index = socket.if_nametoindex(self.interface)
            membership = struct.pack("iHH8s", index, _PACKET_MR_MULTICAST, 6, GROUP)
            with contextlib.suppress(OSError):  # veths pass every frame anyway
                sock.setsockopt(_SOL_PACKET, _PACKET_ADD_MEMBERSHIP, membership)
            sock.settimeout(0.5)
            return sock
        except OSError as exc:
            sock.close()
            self._debug(f"LLDP: cannot listen on {self.interface} ({exc})")
            return None

    def _run(self) -> None:
        sock = self._open()
        if sock is None:
            return
        deadline = time.monotonic() + self.window
        with sock:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    frame = sock.recv(1600)
                except TimeoutError:
                    continue
                except OSError as exc:
                    self._debug(f"LLDP: listening on {self.interface} stopped ({exc})")
                    return
                found = parse(frame)
                if found is not None:
                    self.neighbour = found
                    try:
                        self._on_neighbour(found)
                    except Exception as exc:  # noqa: BLE001 - the node goes on regardless
                        self._debug(f"LLDP: the neighbour could not be reported: {exc!r}")
                    return
