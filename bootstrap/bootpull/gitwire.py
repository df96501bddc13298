"""Git protocol v2 over smart HTTP: the bytes, without the I/O.

Everything here is a pure function or a feed-driven parser over bytes, so it can be
property-tested; :mod:`bootpull.fetch` moves the bytes. The formats are git's
``gitprotocol-common`` (pkt-line), ``gitprotocol-v2`` (capabilities, ``ls-refs``,
``fetch``) and ``gitprotocol-http`` (the HTTP framing).

Why not dulwich's ``Protocol`` for this: it reads a delim-pkt (``0001``) as a
flush-pkt, but protocol v2 responses are split into sections by exactly that
difference. Writing pkt-lines is a one-liner, so both directions live here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

MAX_PKT = 65520  # git's LARGE_PACKET_MAX: the longest pkt-line, length prefix included
_OID = re.compile(rb"[0-9a-f]{40}|[0-9a-f]{64}")
_HEX4 = re.compile(rb"[0-9a-f]{4}")
_REFNAME = re.compile(r"[\x21-\x7e]+")


class WireError(ValueError):
    """The other side sent bytes that are not the git protocol (or not what we asked)."""


class ServerRefused(WireError):
    """The server answered with an ``ERR`` packet or error band: a message for a person."""


class Special(Enum):
    FLUSH = 0  # 0000: end of a message
    DELIM = 1  # 0001: end of a section (v2)
    END = 2  # 0002: response-end (v2, stateless connections)


Packet = bytes | Special


def pkt(data: bytes) -> bytes:
    """One pkt-line: four hex digits of length (prefix included), then ``data``."""
    if len(data) + 4 > MAX_PKT:
        raise ValueError(f"pkt-line payload of {len(data)} bytes is over {MAX_PKT - 4}")
    return b"%04x" % (len(data) + 4) + data


FLUSH = b"0000"
DELIM = b"0001"


class PktParser:
    """Incremental pkt-line parser: feed it bytes as they arrive, take packets out.

    Between feeds it holds only the start of the pkt-line that is not complete yet
    (at most 65519 bytes), and each feed returns the packets its bytes completed, so a
    hostile stream cannot make it grow without bound. A length prefix that is not
    four lowercase hex digits, ``0003``, or over git's 65520 is a WireError at once
    (not a wait for bytes that cannot make a pkt-line); after one, every feed raises it
    again.
    """

    def __init__(self) -> None:
        self._buf = bytearray()  # appended to, consumed from the front: linear in the input
        self._error: WireError | None = None

    def feed(self, data: bytes) -> list[Packet]:
        if self._error is not None:
            raise self._error
        buf: bytes | bytearray = data
        if self._buf:
            self._buf += data
            buf = self._buf
        out: list[Packet] = []
        at, end = 0, len(buf)
        try:
            while end - at >= 4:
                size = _length(bytes(buf[at:at + 4]))
                if size < 4:
                    out.append(Special(size))
                    at += 4
                    continue
                if end - at < size:
                    break
                out.append(bytes(buf[at + 4:at + size]))
                at += size
        except WireError as exc:
            self._error = exc
            raise
        finally:
            if buf is self._buf:
                del self._buf[:at]
            else:
                self._buf = bytearray(buf[at:])
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete pkt-line still waiting for the rest."""
        return len(self._buf)


def _length(head: bytes) -> int:
    """A pkt-line's length prefix: 0, 1 or 2 (special packets), or 4 to MAX_PKT."""
    if not _HEX4.fullmatch(head):
        raise WireError(f"not a pkt-line length prefix: {head!r}")
    size = int(head, 16)
    if size == 3:
        raise WireError("invalid pkt-line length 0003")
    if size > MAX_PKT:
        raise WireError(f"pkt-line of {size} bytes is over git's limit of {MAX_PKT}")
    return size


def parse_packets(data: bytes) -> list[Packet]:
    """A whole, complete message as packets (raises WireError if it ends mid-line)."""
    parser = PktParser()
    packets = parser.feed(data)
    if parser.pending:
        raise WireError(f"the response ends in the middle of a pkt-line ({parser.pending} "
                        "bytes left over)")
    return packets


# -- small answers, capped ------------------------------------------------------------

#: The cap on an answer that is not pack data (the capability advertisement, an
#: ``ls-refs`` answer), and on what a fetch response carries besides its pack
#: (progress messages, acknowledgments, shallow lines). git's are kilobytes: more is a
#: server that is broken or hostile, and every byte of it would be held in memory.
MAX_ANSWER = 2**20


class TooLarge(WireError):
    """``what`` was larger than ``limit`` bytes: the server is broken or hostile.

    Not worth another try, so callers turn it into a permanent error."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} was larger than {_size(limit)}")
        self.what = what
        self.limit = limit


def _size(n: int) -> str:
    return f"{n // 2**20} MiB" if n % 2**20 == 0 else f"{n} bytes"


class SmallAnswer:
    """A small answer (an advertisement, an ``ls-refs`` answer) parsed as it streams.

    ``feed`` parses each chunk as it arrives and keeps its packets; a byte past
    ``limit`` raises :class:`TooLarge` at once, so what it holds (the bytes and their
    packets) stays within a few MiB whatever the server sends. An answer that is not
    pkt-lines is not an error here: ``not_git`` says why, and its bytes (up to the
    cap, in ``data``) are the caller's to report.
    """

    def __init__(self, what: str, limit: int = MAX_ANSWER) -> None:
        self.what = what
        self.limit = limit
        self.packets: list[Packet] = []
        self.not_git: WireError | None = None
        self._parser = PktParser()
        self._data = bytearray()

    def feed(self, data: bytes) -> None:
        if len(self._data) + len(data) > self.limit:
            raise TooLarge(self.what, self.limit)
        self._data += data
        if self.not_git is None:
            try:
                self.packets += self._parser.feed(data)
            except WireError as exc:
                self.not_git = exc

    @property
    def data(self) -> bytes:
        """Every byte of the answer so far."""
        return bytes(self._data)

    @property
    def cut_short(self) -> bool:
        """Pkt-lines that stop before the flush-pkt (or response-end) that ends a git
        answer: the server died mid-way. An ``ERR`` line ends an answer too."""
        if self.not_git is not None:
            return False
        if self._parser.pending or not self.packets:
            return True
        last = self.packets[-1]
        if isinstance(last, bytes):
            return not last.startswith(b"ERR ")
        return last not in (Special.FLUSH, Special.END)


def _text(packet: Packet) -> str:
    if isinstance(packet, Special):
        raise WireError(f"expected a line, got a {packet.name.lower()}-pkt")
    if packet.startswith(b"ERR "):
        raise ServerRefused(packet[4:].decode("utf-8", "replace").strip())
    return packet.rstrip(b"\n").decode("utf-8", "replace")


# -- capability advertisement (GET info/refs with Git-Protocol: version=2) -----------


@dataclass(frozen=True)
class Capabilities:
    """What a v2 server offers: ``{"fetch": {"shallow", "filter"}, "ls-refs": ...}``."""

    commands: dict[str, frozenset[str]]
    values: dict[str, str] = field(default_factory=dict)  # agent=…, object-format=…

    def supports(self, command: str, feature: str = "") -> bool:
        if command not in self.commands:
            return False
        return not feature or feature in self.commands[command]

    @property
    def object_format(self) -> str:
        return self.values.get("object-format", "sha1")


def _packets(answer: bytes | Sequence[Packet]) -> list[Packet]:
    """A whole answer as packets: its bytes, or the packets a :class:`SmallAnswer` kept."""
    if isinstance(answer, bytes | bytearray):
        return parse_packets(bytes(answer))
    return list(answer)


def parse_capabilities(body: bytes | Sequence[Packet]) -> Capabilities:
    """Parse the v2 capability advertisement; WireError if the server is not v2.

    Over HTTP the advertisement may be preceded by ``# service=git-upload-pack`` and a
    flush (git does that only for v0, but some servers always do).
    """
    packets = _packets(body)
    if packets and isinstance(packets[0], bytes) and packets[0].startswith(b"# service="):
        packets = packets[1:]
        if packets and packets[0] is Special.FLUSH:
            packets = packets[1:]
    lines = [p for p in packets if isinstance(p, bytes)]
    if not lines:
        raise WireError("the server sent an empty capability advertisement")
    first = _text(lines[0])
    if first != "version 2":
        raise WireError(f"the server speaks git protocol v0/v1, not v2 (it began {first[:60]!r})")
    commands: dict[str, frozenset[str]] = {}
    values: dict[str, str] = {}
    for raw in lines[1:]:
        key, _, value = _text(raw).partition("=")
        if key in ("agent", "object-format", "server-option", "session-id"):
            values[key] = value
        commands[key] = frozenset(value.split()) if value else frozenset()
    return Capabilities(commands, values)


# -- ls-refs ---------------------------------------------------------------------------


def _command(command: str, args: Iterable[str], *, agent: str) -> bytes:
    parts = [pkt(f"command={command}\n".encode()), pkt(f"agent={agent}\n".encode()), DELIM]
    parts += [pkt(f"{arg}\n".encode()) for arg in args]
    parts.append(FLUSH)
    return b"".join(parts)


def ls_refs_request(prefixes: Iterable[str], *, agent: str = "bootpull") -> bytes:
    """``ls-refs`` asking only for refs under ``prefixes``, with tags peeled."""
    args = ["peel", "symrefs"]
    for prefix in prefixes:
        if not _REFNAME.fullmatch(prefix):
            raise ValueError(f"{prefix!r} is not a valid ref prefix")
        args.append(f"ref-prefix {prefix}")
    return _command("ls-refs", args, agent=agent)


@dataclass(frozen=True)
class RemoteRef:
    name: str
    oid: str  # what the ref points at (a tag object for annotated tags)
    peeled: str | None = None  # the commit an annotated tag points at

    @property
    def target(self) -> str:
        return self.peeled or self.oid


def _oid(text: str, what: str) -> str:
    if not _OID.fullmatch(text.encode()):
        raise WireError(f"{what}: {text[:80]!r} is not a git object id")
    return text


def parse_ls_refs(body: bytes | Sequence[Packet]) -> dict[str, RemoteRef]:
    """The ``ls-refs`` response: ``oid refname [symref-target:…] [peeled:oid]`` lines."""
    refs: dict[str, RemoteRef] = {}
    packets = _packets(body)
    if packets and packets[-1] is Special.END:  # response-end after the flush-pkt
        packets.pop()
    if not packets or packets[-1] is not Special.FLUSH:
        raise WireError("the ls-refs response does not end with a flush-pkt (cut short?)")
    for packet in packets[:-1]:
        words = _text(packet).split(" ")
        if len(words) < 2:
            raise WireError(f"malformed ls-refs line {_text(packet)[:80]!r}")
        if words[0] == "unborn":
            continue
        oid, name, attrs = _oid(words[0], "ls-refs"), words[1], words[2:]
        peeled = None
        for attr in attrs:
            if attr.startswith("peeled:"):
                peeled = _oid(attr[len("peeled:"):], "ls-refs peeled")
        refs[name] = RemoteRef(name, oid, peeled)
    return refs


def candidate_refs(ref: str) -> list[str]:
    """Full ref names that ``ref`` may mean, most specific first (git's DWIM, shortened).

    ``main`` → ``refs/heads/main``, ``refs/tags/main``; a full ``refs/…`` name or
    ``HEAD`` means itself.
    """
    if not ref or not _REFNAME.fullmatch(ref) or ".." in ref or ref.endswith("/"):
        raise ValueError(f"{ref!r} is not a valid git ref name")
    if ref == "HEAD" or ref.startswith("refs/"):
        return [ref]
    return [f"refs/heads/{ref}", f"refs/tags/{ref}"]


# -- fetch -----------------------------------------------------------------------------


def shallow_and_filter(depth: int | None, filter_spec: str | None) -> list[str]:
    """The ``deepen N`` and ``filter SPEC`` lines of a fetch (v2 and v0 alike), checked."""
    lines = []
    if depth is not None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        lines.append(f"deepen {depth}")
    if filter_spec is not None:
        if not re.fullmatch(r"[a-z:0-9.+-]+", filter_spec):
            raise ValueError(f"{filter_spec!r} is not a filter spec")
        lines.append(f"filter {filter_spec}")
    return lines


def fetch_request(
    wants: Iterable[str],
    *,
    depth: int | None = None,
    filter_spec: str | None = None,
    agent: str = "bootpull",
) -> bytes:
    """A complete, stateless v2 ``fetch``: we say ``done`` at once (no negotiation).

    No ``thin-pack``: the pack we get back is self-contained, so nothing in it can
    refer to an object outside it.
    """
    args = ["no-progress", "ofs-delta", *shallow_and_filter(depth, filter_spec)]
    count = 0
    for want in wants:
        args.append(f"want {_oid(want, 'want')}")
        count += 1
    if not count:
        raise ValueError("a fetch needs at least one want")
    args.append("done")
    return _command("fetch", args, agent=agent)


def side_band(packet: bytes, progress: list[str], keep: int) -> bytes:
    """One side-band-64k packet of a pack: band 1's payload (pack data) is returned;
    band 2 (progress) goes to ``progress``, up to ``keep`` lines; band 3 (an error for a
    person) raises :class:`ServerRefused`."""
    band, payload = packet[0], packet[1:]
    if band == 1:
        return payload
    if band == 2:
        if len(progress) < keep:
            progress.append(payload.decode("utf-8", "replace").strip())
        return b""
    if band == 3:
        raise ServerRefused(payload.decode("utf-8", "replace").strip())
    raise WireError(f"unknown side-band {band} in the pack")


class FetchResponse:
    """Feed-driven parser for a v2 ``fetch`` response.

    ``feed(data)`` returns the pack bytes found in ``data`` (side-band 1); progress
    (band 2) is collected in ``progress`` (the first 100 messages); an error band or
    ``ERR`` line raises :class:`ServerRefused`. ``done`` turns true at the flush-pkt
    that closes the ``packfile`` section: only then is the pack complete.

    Everything but pack data (progress, the other sections, their delimiters) counts
    against ``limit`` (:data:`MAX_ANSWER`); past it, :class:`TooLarge`. So a server
    that streams progress, or acknowledgments, forever is stopped at once rather than
    at the pull's byte cap or deadline. Pack data is the caller's to bound.
    """

    _SECTIONS = ("acknowledgments", "shallow-info", "wanted-refs", "packfile-uris")
    MAX_PROGRESS = 100  # progress messages kept; the rest are counted, then dropped

    def __init__(self, limit: int = MAX_ANSWER) -> None:
        self._parser = PktParser()
        self._section: str | None = None
        self.limit = limit
        self.non_pack_bytes = 0
        self.shallow: list[str] = []
        self.progress: list[str] = []
        self.done = False

    def _count(self, packet: Packet) -> None:
        self.non_pack_bytes += 4 + (len(packet) if isinstance(packet, bytes) else 0)
        if self.non_pack_bytes > self.limit:
            raise TooLarge("what the fetch response carried besides the pack (progress "
                           "messages, acknowledgments)", self.limit)

    def feed(self, data: bytes) -> bytes:
        pack = bytearray()
        for packet in self._parser.feed(data):
            if not (self._section == "packfile" and isinstance(packet, bytes)
                    and packet[:1] == b"\x01"):
                self._count(packet)
            if self.done:
                if packet is Special.END:
                    continue
                raise WireError("the server sent more after the end of the packfile")
            if self._section is None:
                name = _text(packet)
                if name not in (*self._SECTIONS, "packfile"):
                    raise WireError(f"unexpected section {name[:60]!r} in a fetch response")
                self._section = name
                continue
            if self._section == "packfile":
                if packet is Special.FLUSH or packet is Special.END:
                    self.done = True
                    continue
                if not isinstance(packet, bytes) or not packet:
                    raise WireError("a delim-pkt or empty line inside the packfile section")
                pack += side_band(packet, self.progress, self.MAX_PROGRESS)
                continue
            if packet is Special.DELIM:
                self._section = None
                continue
            if packet is Special.FLUSH or packet is Special.END:
                # A response that ends without a packfile: only valid for negotiation,
                # which we never ask for (we always send "done").
                raise WireError(f"the fetch response ended in section {self._section!r} "
                                "without a packfile")
            line = _text(packet)
            if self._section == "shallow-info":
                kind, _, oid = line.partition(" ")
                if kind == "shallow":
                    self.shallow.append(_oid(oid, "shallow-info"))
        return bytes(pack)

    def finish(self) -> None:
        """The stream ended: raise WireError unless the pack was complete."""
        if not self.done:
            raise WireError("the fetch response was cut short before the end of the pack")
