"""The node's memory against hostile or broken git servers (issue 10, item 5).

Each case is a small HTTP server on 127.0.0.1, written here, that answers like a git
server until it does not: an endless capability advertisement, an endless ``ls-refs``
answer, pkt-line lengths that are too large or never arrive, an endless side-band
progress channel, an endless pack stream, a zlib bomb, and a real pack far larger than
the role. Against each one the real node runs as a process (``bootpull node run
--oneshot``) and its peak memory is measured: ``ru_maxrss`` from ``wait4`` (the node
and its children: every page it touched, those of the files it mapped included; read
by a small parent process, see :data:`MEASURE`) and
``RssAnon`` sampled while it runs (what cannot be given back, so what gets a 192 MB
node OOM-killed). Both must stay under :data:`RSS_LIMIT`, and the node must end with a
clear reason: exit 11 (12 for a hostile pack) and the banner on stderr, or, with a
last-known-good installed, running it.

The servers stop by themselves: a stream ends when the node hangs up, after
:data:`STREAM_LIMIT` bytes, or when the test ends. ``-s`` shows the figures measured.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import itertools
import os
import re
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from bootpull import gitwire
from bootpull.gitwire import FLUSH, pkt
from eventsink import EventSink
from gitserver import GitHttpServer
from marker_role import add_marker_role
from signed_repo import MAC_NEW, SignedRepo

MIB = 2**20
RSS_LIMIT = 160 * MIB
STREAM_LIMIT = 600 * MIB  # an endless answer stops here, even if the node never hangs up
ADVERTISEMENT_TYPE = "application/x-git-upload-pack-advertisement"
RESULT_TYPE = "application/x-git-upload-pack-result"
COMMIT = "c0ffee" + "0" * 34  # what the hostile servers say refs/heads/main is
MAC = "52:54:00:12:34:56"
UPLOAD_PACK = "POST /repo.git/git-upload-pack"  # as Hostile.requests records it

#: a git 2.43 v2 advertisement: what a node expects before it lists refs
ADVERTISEMENT = b"".join([
    pkt(b"version 2\n"), pkt(b"agent=git/2.43.0\n"), pkt(b"ls-refs=unborn\n"),
    pkt(b"fetch=shallow wait-for-done filter\n"), pkt(b"server-option\n"),
    pkt(b"object-format=sha1\n"), FLUSH])
LS_REFS = pkt(f"{COMMIT} refs/heads/main\n".encode()) + FLUSH
PACKFILE = pkt(b"packfile\n")


# -- the servers -------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """One request to a :class:`Hostile` server: its ``answer`` writes the response."""

    server: _Server
    protocol_version = "HTTP/1.0"  # the body ends when the connection does

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        self._serve(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _serve(self, body: bytes) -> None:
        self.server.owner.requests.append(f"{self.command} {self.path}")
        if self.path.endswith("/api/v1/events"):  # the origin's report URL: take them
            self.send_response(204)
            self.end_headers()
            return
        # the node hanging up is what every endless answer hopes for
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.server.owner.answer(self, body)

    def stream(self, content_type: str, chunks: Iterable[bytes]) -> None:
        """200 with ``content_type``, then ``chunks`` until they end, the node hangs up,
        the test ends or :data:`STREAM_LIMIT` bytes went out."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.end_headers()
        sent = 0
        for chunk in chunks:
            if self.server.owner.stopping.is_set() or sent > STREAM_LIMIT:
                return
            self.wfile.write(chunk)
            sent += len(chunk)


Answer = Callable[[Handler, bytes], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: Hostile


class Hostile:
    """A server on 127.0.0.1 whose every answer is ``answer(handler, body)``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[str] = []
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/repo.git"

    def __enter__(self) -> Hostile:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def v2_server(*, ls_refs: Callable[[], Iterable[bytes]] = lambda: [LS_REFS],
              fetch: Callable[[], Iterable[bytes]] | None = None,
              advertisement: Callable[[], Iterable[bytes]] = lambda: [ADVERTISEMENT]
              ) -> Answer:
    """A protocol v2 server: each answer is what the callable yields (a real git 2.43
    advertisement and ``refs/heads/main`` unless told otherwise)."""
    def answer(handler: Handler, body: bytes) -> None:
        if handler.command == "GET" and "/info/refs" in handler.path:
            handler.stream(ADVERTISEMENT_TYPE, advertisement())
        elif handler.command == "POST" and b"command=ls-refs" in body:
            handler.stream(RESULT_TYPE, ls_refs())
        elif handler.command == "POST" and b"command=fetch" in body and fetch is not None:
            handler.stream(RESULT_TYPE, fetch())
        else:
            handler.send_error(404)
    return answer


def forever(first: bytes, block: bytes) -> Iterator[bytes]:
    """``first``, then ``block`` again and again (each ``block`` whole pkt-lines)."""
    return itertools.chain([first], itertools.repeat(block))


def block_of(line: bytes, size: int = MIB) -> bytes:
    return pkt(line) * (size // (len(line) + 4))


def side_band(band: int, data: bytes) -> Iterator[bytes]:
    for at in range(0, len(data), 65515):
        yield pkt(bytes([band]) + data[at:at + 65515])


def pack_entry(kind: int, size: int, data: Iterable[bytes], base_offset: int = 0) -> bytes:
    """One pack entry: type and size, an ofs-delta's base offset, then ``data`` deflated."""
    header = bytearray([(kind << 4) | (size & 0x0F)])
    size >>= 4
    while size:
        header[-1] |= 0x80
        header.append(size & 0x7F)
        size >>= 7
    if kind == 6:  # git's offset encoding: 7 bits a byte, most significant first, minus 1
        offset = bytearray([base_offset & 0x7F])
        base_offset >>= 7
        while base_offset:
            base_offset -= 1
            offset.insert(0, 0x80 | (base_offset & 0x7F))
            base_offset >>= 7
        header += offset
    deflate = zlib.compressobj(9)
    return bytes(header) + b"".join(deflate.compress(d) for d in data) + deflate.flush()


def make_pack(*entries: bytes) -> bytes:
    data = b"PACK" + struct.pack(">LL", 2, len(entries)) + b"".join(entries)
    return data + hashlib.sha1(data).digest()


def zeros(size: int) -> Iterator[bytes]:
    return itertools.repeat(bytes(MIB), size // MIB)


def bomb_pack(size: int) -> bytes:
    """A valid pack of one blob of ``size`` zero bytes: about size/1000 on the wire."""
    return make_pack(pack_entry(3, size, zeros(size)))


def largest_allowed_pack() -> bytes:
    """The worst a pack can be and still pass the caps on objects: a whole 32 MiB blob,
    a 16 MiB blob, and a delta from it to another 16 MiB blob (copy its first 8 MiB,
    then the next 8 MiB less 10 bytes, then insert 10). About 50 KB on the wire."""
    base = pack_entry(3, 16 * MIB, zeros(16 * MIB))
    delta = (b"\x80\x80\x80\x08" * 2  # source and result: 16 MiB each (varints)
             + b"\xc0\x80"  # copy from 0, 0x800000 bytes
             + b"\xf4\x80\xf6\xff\x7f"  # copy from 0x800000, 0x7ffff6 bytes
             + b"\x0a0123456789")  # insert 10 bytes
    whole = pack_entry(3, 32 * MIB, zeros(32 * MIB))
    return make_pack(whole, base, pack_entry(6, len(delta), [delta], base_offset=len(base)))


def without_filter(upstream: GitHttpServer) -> Answer:
    """A proxy to a real ``git http-backend`` that drops ``filter`` from every fetch: a
    node asking for a commit and its root tree gets every object in the commit."""
    def answer(handler: Handler, body: bytes) -> None:
        if b"command=fetch" in body:
            packets = [p for p in gitwire.parse_packets(body)
                       if not (isinstance(p, bytes) and p.startswith(b"filter "))]
            body = b"".join(pkt(p) if isinstance(p, bytes) else b"%04d" % p.value
                            for p in packets)
        conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=120)
        try:
            headers = {k: v for k, v in handler.headers.items()
                       if k.lower() in ("git-protocol", "content-type", "accept")}
            conn.request(handler.command, handler.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            if resp.status != 200:
                handler.send_error(resp.status)
                return
            handler.stream(resp.getheader("Content-Type") or "",
                           iter(lambda: resp.read1(65536), b""))
        finally:
            conn.close()
    return answer


# -- the node, measured ------------------------------------------------------------------


@dataclass(frozen=True)
class NodeRun:
    code: int
    console: str  # stderr: the steps, warnings and the banner
    peak_rss: int  # bytes: ru_maxrss of the node and its children (wait4)
    peak_anon: int  # bytes: the highest RssAnon seen, sampled every 20 ms
    seconds: float

    @property
    def flat(self) -> str:
        return " ".join(self.console.split())

    def say(self, case: str) -> None:
        print(f"\n{case}: exit {self.code} in {self.seconds:.1f}s, peak RSS "
              f"{self.peak_rss / MIB:.0f} MiB, peak RssAnon {self.peak_anon / MIB:.0f} MiB")

    def check_memory(self) -> None:
        assert self.peak_anon < RSS_LIMIT, (self.peak_anon, self.console[-3000:])
        assert self.peak_rss < RSS_LIMIT, (self.peak_rss, self.console[-3000:])


# The node runs as the child of a small Python process, which reports the child's
# ru_maxrss. Started straight from pytest it would not be the node's own: Linux keeps
# in ru_maxrss the high-water mark of the memory a process had before exec, and a
# child of pytest starts in pytest's (hundreds of MiB late in a full run).
MEASURE = """
import os, sys
from pathlib import Path
report = Path(sys.argv[1])
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
report.with_suffix(".pid").write_text(str(pid))
_, status, usage = os.wait4(pid, 0)
report.with_suffix(".rss").write_text(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_node(url: str, trust: Path, state: Path, *, mac: str = MAC,
             timeout: float = 120.0) -> NodeRun:
    """``bootpull node run --oneshot`` against ``url``: exit code, console, peak memory."""
    cmdline = state.parent / "cmdline"
    cmdline.write_text("quiet\n")  # not this machine's /proc/cmdline
    log = state.parent / f"node-{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", "bootpull", "node", "run", "--oneshot", "--repo", url,
           "--mac", mac, "--trust", str(trust), "--state-dir", str(state),
           "--cmdline", str(cmdline)]
    started = time.monotonic()
    report = state.parent / f"rusage-{time.monotonic_ns()}"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", MEASURE, str(report), *cmd[1:]],
                                stdout=subprocess.DEVNULL, stderr=err)
    anon, node_pid = 0, 0
    while proc.poll() is None:
        if not node_pid and report.with_suffix(".pid").exists():
            node_pid = int(report.with_suffix(".pid").read_text() or 0)
        try:
            found = re.search(r"RssAnon:\s+(\d+) kB",
                              Path(f"/proc/{node_pid}/status").read_text()) if node_pid else None
        except OSError:
            found = None
        if found:
            anon = max(anon, int(found.group(1)) * 1024)
        if time.monotonic() - started > timeout:
            proc.kill()
            proc.wait()
            raise AssertionError(f"the node ran for more than {timeout}s:\n"
                                 f"{log.read_text()[-3000:]}")
        time.sleep(0.02)
    maxrss_kib = int(report.with_suffix(".rss").read_text())
    return NodeRun(proc.returncode, log.read_text(), maxrss_kib * 1024, anon,
                   time.monotonic() - started)


@pytest.fixture
def trust(signed_repo_template: SignedRepo, tmp_path: Path) -> Path:
    path = tmp_path / "trust.json"
    path.write_bytes(signed_repo_template.trust)
    return path


def fails_clearly(run: NodeRun, *words: str, code: int = 11) -> None:
    assert run.code == code, run.console[-3000:]
    assert f"(exit {code})" in run.flat, run.console[-3000:]
    for word in words:
        assert word in run.flat, (word, run.console[-3000:])


# -- non-pack answers: 1 MiB each, parsed as they stream ------------------------------------


def endless(first: bytes, block: bytes) -> Iterator[bytes]:
    """Valid pkt-lines for as long as the node reads them."""
    return forever(first, block)


def ends_at_250_mib(first: bytes, block: bytes) -> Iterator[bytes]:
    """Whole and valid, just under the pull's 256 MiB byte cap: before the 1 MiB caps,
    the worst case (collected, then parsed at the end: about 1.1 GiB peak RSS)."""
    return itertools.chain([first], itertools.repeat(block, 250 * MIB // len(block)), [FLUSH])


STREAMS = pytest.mark.parametrize("stream", [endless, ends_at_250_mib])


@STREAMS
def test_a_huge_advertisement_stops_at_1_mib(
        stream: Callable[[bytes, bytes], Iterator[bytes]], trust: Path, tmp_path: Path) -> None:
    lines = block_of(b"x-capability=" + b"v" * 1000 + b"\n")
    with Hostile(v2_server(advertisement=lambda: stream(pkt(b"version 2\n"), lines))) as srv:
        run = run_node(srv.url, trust, tmp_path / "state")
    run.say(f"advertisement, {stream.__name__}")
    fails_clearly(run, "info/refs", "larger than 1 MiB", "broken or hostile")
    assert srv.requests.count("GET /repo.git/info/refs?service=git-upload-pack") == 1
    run.check_memory()


@STREAMS
def test_a_huge_ls_refs_answer_stops_at_1_mib(
        stream: Callable[[bytes, bytes], Iterator[bytes]], trust: Path, tmp_path: Path) -> None:
    lines = block_of(f"{COMMIT} refs/heads/main\n".encode())
    with Hostile(v2_server(ls_refs=lambda: stream(b"", lines))) as srv:
        run = run_node(srv.url, trust, tmp_path / "state")
    run.say(f"ls-refs answer, {stream.__name__}")
    fails_clearly(run, "answer to ls-refs was larger than 1 MiB", "broken or hostile")
    assert srv.requests.count(UPLOAD_PACK) == 1  # not retried
    run.check_memory()


def test_a_giant_declared_length_is_refused_at_once(trust: Path, tmp_path: Path) -> None:
    # ffff is over git's 65520, and what follows never makes a pkt-line
    with Hostile(v2_server(ls_refs=lambda: forever(b"ffff", b"\xff" * MIB))) as srv:
        run = run_node(srv.url, trust, tmp_path / "state")
    run.say("giant declared length")
    fails_clearly(run, "answer to ls-refs was larger than 1 MiB", "is not git",
                  "over git's limit of 65520")
    assert srv.requests.count(UPLOAD_PACK) == 1
    run.check_memory()


@pytest.mark.slow
def test_a_length_that_never_arrives_is_cut_short_and_the_lkg_runs(
        signed_repo: SignedRepo, sink: EventSink, git_http_server: Callable[..., GitHttpServer],
        tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    add_marker_role(signed_repo, markers, sink.url)
    trust = tmp_path / "trust.json"
    trust.write_bytes(signed_repo.trust)
    state = tmp_path / "state"
    installed = run_node(git_http_server(signed_repo.root).url, trust, state,
                         mac=MAC_NEW.colons)
    assert installed.code == 0, installed.console[-3000:]
    # fff0 promises a 65520-byte line; 1000 bytes come, then the server hangs up
    with Hostile(v2_server(ls_refs=lambda: [b"fff0" + b"x" * 1000])) as srv:
        run = run_node(srv.url, trust, state, mac=MAC_NEW.colons)
    run.say("a length that never arrives, with a last-known-good")
    assert run.code == 0, run.console[-3000:]
    assert "the response was cut short" in run.flat and "retry 1 of 3" in run.flat
    assert "FETCH FAILED" in run.flat and "running the installed version" in run.flat
    assert srv.requests.count(UPLOAD_PACK) == 4  # retried: a git answer that stopped
    runs = (markers / "runs").read_text().split()
    assert len(runs) == 2 and runs[0] == runs[1]  # the last-known-good, once more
    run.check_memory()


# -- fetch responses: pack data streams to disk, the rest is capped -------------------------


def test_an_endless_progress_channel_stops_at_1_mib(trust: Path, tmp_path: Path) -> None:
    progress = b"".join(side_band(2, b"Counting objects: 100% (1/1), done.\r" * 2000))
    with Hostile(v2_server(fetch=lambda: forever(PACKFILE, progress))) as srv:
        run = run_node(srv.url, trust, tmp_path / "state")
    run.say("endless progress")
    fails_clearly(run, "progress", "1 MiB", "broken or hostile")
    assert srv.requests.count(UPLOAD_PACK) == 2  # ls-refs, one fetch
    run.check_memory()


def test_an_endless_pack_stream_stops_at_the_byte_cap(trust: Path, tmp_path: Path) -> None:
    pack = b"".join(side_band(1, os.urandom(MIB)))
    with Hostile(v2_server(fetch=lambda: forever(PACKFILE, pack))) as srv:
        run = run_node(srv.url, trust, tmp_path / "state")
    run.say("endless pack stream")
    fails_clearly(run, "passed its cap of 268435456 bytes")
    run.check_memory()
    assert not list((tmp_path / "state").rglob("*.pack"))  # the partial pack is gone


def test_a_zlib_bomb_is_refused_before_it_is_inflated(trust: Path, tmp_path: Path) -> None:
    pack = bomb_pack(512 * MIB)  # 0.5 MB that inflates to 512 MiB, under max_inflated
    with Hostile(v2_server(fetch=lambda: [PACKFILE, *side_band(1, pack), FLUSH])) as srv:
        run = run_node(srv.url, trust, tmp_path / "state")
    run.say("zlib bomb (512 MiB blob)")
    fails_clearly(run, "malformed or hostile pack", code=12)
    run.check_memory()


def test_the_largest_objects_the_caps_let_through_are_indexed_in_bounded_memory(
        trust: Path, tmp_path: Path) -> None:
    pack = largest_allowed_pack()
    with Hostile(v2_server(fetch=lambda: [PACKFILE, *side_band(1, pack), FLUSH])) as srv:
        run = run_node(srv.url, trust, tmp_path / "state")
    run.say("largest objects allowed (32 MiB whole, 16 MiB delta)")
    # indexed and checked in full; the commit asked for is not among them
    fails_clearly(run, "lacks 1 of the objects asked for", code=12)
    run.check_memory()


@pytest.mark.slow
def test_a_pack_far_larger_than_the_role_is_indexed_in_bounded_memory(
        signed_repo: SignedRepo, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    for n in range(26):  # 104 MiB that no compression shrinks, outside the role
        signed_repo.write(f"junk/{n:02}.bin", os.urandom(4 * MIB))
    add_marker_role(signed_repo, markers, None)
    signed_repo.git("repack", "-a", "-d", "-q")  # served as stored, not compressed per fetch
    trust = tmp_path / "trust.json"
    trust.write_bytes(signed_repo.trust)
    with GitHttpServer({"repo.git": signed_repo.root}) as upstream, \
            Hostile(without_filter(upstream)) as srv:
        run = run_node(srv.url, trust, tmp_path / "state", mac=MAC_NEW.colons, timeout=300)
    run.say("pack of 104 MiB, role of 1 KiB")
    assert run.code == 0, run.console[-3000:]  # installed and ran (events: the proxy takes them)
    assert len((markers / "runs").read_text().split()) == 1
    cached = sum(p.stat().st_size for p in (tmp_path / "state").rglob("*.pack"))
    assert cached > 100 * MIB  # the whole commit came, junk and all, in one pack
    run.check_memory()
