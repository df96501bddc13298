"""Git protocol v0/v1 over smart HTTP: the bytes, without the I/O.

A server that does not get (or does not honour) the ``Git-Protocol: version=2``
header answers in protocol v0: python's ``http.server --cgi`` and many CGI hosts drop
the header, and some git servers never spoke v2. The formats are git's
``gitprotocol-pack`` and ``gitprotocol-http``:

- the advertisement (``GET info/refs?service=git-upload-pack``) lists every ref, the
  first one carrying the capabilities after a NUL; tags are peeled on ``^{}`` lines;
- a fetch (``POST git-upload-pack``) is ``want`` lines (the first with the
  capabilities asked for), an optional ``deepen`` and ``filter``, a flush-pkt and
  ``done``: stateless, no negotiation;
- the answer is the shallow lines (if ``deepen`` was sent) and a flush-pkt, ``NAK``,
  then the pack on side-band 1 until a flush-pkt.

:class:`FetchResponse` has the interface of :class:`bootpull.gitwire.FetchResponse`,
so :mod:`bootpull.fetch` streams either into its object store the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from bootpull.gitwire import (
    FLUSH,
    MAX_ANSWER,
    PktParser,
    RemoteRef,
    ServerRefused,
    Special,
    TooLarge,
    WireError,
    pkt,
    shallow_and_filter,
    side_band,
)

_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_ZERO = "0" * 40
#: capabilities a fetch asks for, when the server offers them
#: (thin-pack: with no ``have`` lines a pack has nothing to be thin against; dulwich's
#: server insists on being offered it)
WANTED_CAPS = ("side-band-64k", "ofs-delta", "thin-pack", "no-progress")


@dataclass(frozen=True)
class Advertisement:
    """The refs and capabilities of a v0/v1 ``info/refs`` answer."""

    refs: dict[str, RemoteRef]
    caps: frozenset[str]
    values: dict[str, str] = field(default_factory=dict)  # agent=…, object-format=…

    def supports(self, cap: str) -> bool:
        return cap in self.caps

    @property
    def object_format(self) -> str:
        return self.values.get("object-format", "sha1")

    @property
    def by_id(self) -> bool:
        """Whether objects that no ref names may be asked for (a lazy fetch by id)."""
        return bool(self.caps & {"allow-reachable-sha1-in-want", "allow-any-sha1-in-want"})


def _line(packet: bytes | Special, where: str) -> str:
    if isinstance(packet, Special):
        raise WireError(f"expected a line in {where}, got a {packet.name.lower()}-pkt")
    if packet.startswith(b"ERR "):
        raise ServerRefused(packet[4:].decode("utf-8", "replace").strip())
    return packet.rstrip(b"\n").decode("utf-8", "replace")


def _oid(text: str, where: str) -> str:
    if not _OID.fullmatch(text):
        raise WireError(f"{where}: {text[:80]!r} is not a git object id")
    return text


def parse_advertisement(packets: Iterable[bytes | Special]) -> Advertisement:
    """The packets of a v0/v1 advertisement (a ``# service=`` line and its flush-pkt
    may come first, then ``version 1``) → refs and capabilities."""
    items = list(packets)
    if items and isinstance(items[0], bytes) and items[0].startswith(b"# service="):
        items = items[1:]
        if items and items[0] is Special.FLUSH:
            items = items[1:]
    if not items or items[-1] is not Special.FLUSH:
        raise WireError("the ref advertisement does not end with a flush-pkt (cut short?)")
    lines = [_line(p, "the ref advertisement") for p in items[:-1]]
    if lines and lines[0] == "version 1":
        lines = lines[1:]
    refs: dict[str, RemoteRef] = {}
    caps: frozenset[str] = frozenset()
    values: dict[str, str] = {}
    for n, text in enumerate(lines):
        if n == 0:
            text, _, cap_text = text.partition("\0")
            words = cap_text.split()
            caps = frozenset(w.partition("=")[0] for w in words)
            values = {k: v for k, _, v in (w.partition("=") for w in words) if v}
        oid_text, _, name = text.partition(" ")
        oid = _oid(oid_text, "the ref advertisement")
        if not name or " " in name:
            raise WireError(f"malformed advertisement line {text[:80]!r}")
        if name == "capabilities^{}" and oid == _ZERO:
            continue  # an empty repository: capabilities only
        if name.endswith("^{}"):
            base = name[:-3]
            if base in refs:
                refs[base] = RemoteRef(base, refs[base].oid, oid)
            continue
        refs[name] = RemoteRef(name, oid)
    return Advertisement(refs, caps, values)


def fetch_request(wants: Iterable[str], *, caps: Iterable[str], depth: int | None = None,
                  filter_spec: str | None = None, agent: str = "bootpull") -> bytes:
    """A stateless v0 upload-pack request: the wants, then ``done`` (no negotiation).
    ``shallow`` and ``filter`` are asked for with the first want when they are used."""
    wanted = [_oid(w, "want") for w in wants]
    if not wanted:
        raise ValueError("a fetch needs at least one want")
    asked = [*caps, *(["shallow"] if depth is not None else []),
             *(["filter"] if filter_spec is not None else [])]
    cap_text = " ".join([*dict.fromkeys(asked), f"agent={agent}"])
    lines = [f"want {wanted[0]} {cap_text}", *(f"want {w}" for w in wanted[1:]),
             *shallow_and_filter(depth, filter_spec)]
    return b"".join(pkt(f"{x}\n".encode()) for x in lines) + FLUSH + pkt(b"done\n")


class FetchResponse:
    """Feed-driven parser for a v0 upload-pack answer with side-band-64k.

    ``feed(data)`` returns the pack bytes in ``data``; ``done`` turns true at the
    flush-pkt after the pack. ``shallow`` lists the commits the server cut history at.
    All but the pack data counts against ``limit``; past it, :class:`TooLarge`.
    """

    MAX_PROGRESS = 100  # progress lines kept (the rest are dropped, not buffered)

    def __init__(self, *, deepen: bool, limit: int = MAX_ANSWER) -> None:
        self._parser = PktParser()
        self.limit = limit  # on all but the pack data, as gitwire.FetchResponse's
        self.non_pack_bytes = 0
        self._state = "shallow" if deepen else "ack"
        self.shallow: list[str] = []
        self.progress: list[str] = []
        self.done = False

    def feed(self, data: bytes) -> bytes:
        pack = bytearray()
        for packet in self._parser.feed(data):
            if self.done:
                raise WireError("the server sent more after the end of the pack")
            if not (self._state == "pack" and isinstance(packet, bytes) and packet[:1] == b"\x01"):
                self.non_pack_bytes += 4 + (len(packet) if isinstance(packet, bytes) else 0)
                if self.non_pack_bytes > self.limit:
                    raise TooLarge("what the fetch response carried besides the pack "
                                   "(progress messages, shallow lines)", self.limit)
            if self._state == "shallow":
                if packet is Special.FLUSH:
                    self._state = "ack"
                    continue
                kind, _, oid = _line(packet, "the shallow list").partition(" ")
                if kind not in ("shallow", "unshallow"):
                    raise WireError(f"unexpected {kind[:40]!r} line before the pack")
                if kind == "shallow":
                    self.shallow.append(_oid(oid, "shallow"))
            elif self._state == "ack":
                text = _line(packet, "the acknowledgement")
                if text == "NAK" or text.startswith("ACK "):
                    self._state = "pack"
                else:
                    raise WireError(f"expected NAK before the pack, got {text[:60]!r}")
            else:
                if packet is Special.FLUSH:
                    self.done = True
                    continue
                if not isinstance(packet, bytes) or not packet:
                    raise WireError("an empty or special packet inside the pack")
                pack += side_band(packet, self.progress, self.MAX_PROGRESS)
        return bytes(pack)

    def finish(self) -> None:
        """The stream ended: raise WireError unless the pack was complete."""
        if not self.done:
            raise WireError("the fetch response was cut short before the end of the pack")
